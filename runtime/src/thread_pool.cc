//===- thread_pool.cc - libmoert's worker threads -----------------------===//

#include "thread_pool.h"

#include "cpu_relax.h"

#include <chrono>

#include <sched.h>
#include <unistd.h>

namespace moert {

namespace {

/// Spins until done() holds or about ThreadPool::kSpinMicros have passed;
/// returns done().
template <typename Done> bool SpinUntil(Done done) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point end =
      Clock::now() + std::chrono::microseconds(ThreadPool::kSpinMicros);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done())
        return true;
      moert_cpu_relax();
    }
    if (Clock::now() >= end)
      return done();
  }
}

} // namespace

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads < 1 ? 1 : num_threads) {}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread &t : workers_)
    t.join();
}

int ThreadPool::HardwareThreads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0)
      return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

void ThreadPool::RunIndices() {
  for (;;) {
    int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_)
      return;
    task_(arg_, i, i + 1);
  }
}

void ThreadPool::Work() {
  uint64_t seen = 0;
  for (;;) {
    auto published = [&] {
      return stopping_.load(std::memory_order_acquire) ||
             generation_.load(std::memory_order_acquire) != seen;
    };
    // A Wake() from here on restarts the spin.
    const uint64_t woken = wakes_.load(std::memory_order_acquire);
    if (!SpinUntil(published)) {
      // Blocking: the predicate is checked under the mutex, and the caller
      // notifies after taking it, so a job (or a Wake) published meanwhile
      // is not lost.
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return published() || wakes_.load(std::memory_order_acquire) != woken;
      });
      if (!published())
        continue; // woken without a job: spin again
    }
    if (stopping_.load(std::memory_order_acquire))
      return;
    seen = generation_.load(std::memory_order_acquire);
    RunIndices();
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // The caller may be about to block: take the mutex so the notify
      // cannot fall between its check and its wait.
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_.notify_one();
    }
  }
}

void ThreadPool::StartWorkers() {
  if (workers_.empty())
    for (int i = 1; i < num_threads_; ++i)
      workers_.emplace_back([this] { Work(); });
}

void ThreadPool::Wake() {
  if (num_threads_ == 1)
    return;
  StartWorkers();
  wakes_.fetch_add(1, std::memory_order_release);
  { std::lock_guard<std::mutex> lock(mutex_); }
  wake_.notify_all();
}

void ThreadPool::ParallelFor(int64_t n, Task task, void *arg) {
  if (n <= 0)
    return;
  if (num_threads_ == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i)
      task(arg, i, i + 1);
    return;
  }
  StartWorkers();
  // Workers are all idle here (the previous job ended with active_ == 0),
  // so the job's fields can be written before it is published.
  task_ = task;
  arg_ = arg;
  n_ = n;
  next_.store(0, std::memory_order_relaxed);
  active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  { std::lock_guard<std::mutex> lock(mutex_); }
  wake_.notify_all();
  RunIndices();
  auto finished = [&] { return active_.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
}

} // namespace moert
