//===- thread_pool.h - libmoert's worker threads -------------------------===//
//
// A small persistent pool behind the kernels' parallel hook
// (moert_parallel_hook): parallel_for(n, fn) runs fn over [0, n) on the
// calling thread plus the workers, handing out indices one at a time so a
// large task (a hot expert) does not hold the others up. One job at a time;
// the pool belongs to one session, which is used by one thread at a time.
//
// Between jobs the workers, and the caller waiting for them, spin for a
// short while (kSpinMicros) before they block: a layer call is a burst of
// several short jobs (routing, the expert kernel's two phases, combine), and
// waking a blocked thread costs tens of microseconds, more on a virtual
// machine whose idle vCPU the host has descheduled.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_THREAD_POOL_H
#define MOERT_SRC_THREAD_POOL_H

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace moert {

class ThreadPool {
public:
  using Task = void (*)(void *arg, int64_t begin, int64_t end);

  /// A pool running jobs on `num_threads` threads in total (the caller
  /// counts as one); workers are started on first use.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int num_threads() const { return num_threads_; }

  /// Runs task(arg, i, i + 1) for every i in [0, n); returns when all ran.
  void ParallelFor(int64_t n, Task task, void *arg);

  /// Tells the workers that jobs are coming: blocked ones wake up (starting
  /// them if none ran yet) and, like those still spinning, spin for at
  /// least about kSpinMicros from now. A caller about to run a burst of
  /// jobs (a model call) thereby has the wake-up latency pass during its
  /// own serial work (argument checks, routing) instead of at its first
  /// job, where the worker would start its share late.
  void Wake();

  /// Number of hardware threads available to this process (at least 1).
  static int HardwareThreads();

  /// How long an idle worker (or the caller waiting for the workers) spins
  /// before it blocks.
  static constexpr int64_t kSpinMicros = 100;

private:
  void StartWorkers();
  void Work();
  void RunIndices();

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0}; // bumped when a job is published
  std::atomic<uint64_t> wakes_{0};      // bumped by Wake()
  std::atomic<int> active_{0}; // workers still inside the current job
  // The current job.
  Task task_ = nullptr;
  void *arg_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
};

} // namespace moert

#endif // MOERT_SRC_THREAD_POOL_H
