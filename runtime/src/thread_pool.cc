//===- thread_pool.cc - libmoert's worker threads -----------------------===//

#include "thread_pool.h"

#include <sched.h>
#include <unistd.h>

namespace moert {

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads < 1 ? 1 : num_threads) {}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
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
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_)
        return;
      seen = generation_;
    }
    RunIndices();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0)
        done_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, Task task, void *arg) {
  if (n <= 0)
    return;
  if (num_threads_ == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i)
      task(arg, i, i + 1);
    return;
  }
  if (workers_.empty())
    for (int i = 1; i < num_threads_; ++i)
      workers_.emplace_back([this] { Work(); });
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = task;
    arg_ = arg;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    active_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  RunIndices();
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return active_ == 0; });
}

} // namespace moert
