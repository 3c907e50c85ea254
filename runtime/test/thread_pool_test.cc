//===- thread_pool_test.cc - libmoert's worker threads ------------------===//
//
// Every index of every job runs exactly once and ParallelFor returns only
// after all of them ran, both when the workers are still spinning from the
// previous job and when they have blocked (idle for longer than the spin),
// with or without a Wake() before the job.
//
//===----------------------------------------------------------------------===//

#include "thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <dirent.h>
#include <thread>
#include <vector>

namespace {

struct Job {
  std::vector<std::atomic<int>> hits;
  explicit Job(int64_t n) : hits(static_cast<size_t>(n)) {}
  static void Run(void *arg, int64_t begin, int64_t end) {
    auto *job = static_cast<Job *>(arg);
    for (int64_t i = begin; i < end; ++i)
      job->hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
  }
};

void ExpectEachOnce(const Job &job, const char *what, int round) {
  for (size_t i = 0; i < job.hits.size(); ++i)
    ASSERT_EQ(job.hits[i].load(), 1) << what << " round " << round << " index " << i;
}

TEST(ThreadPoolTest, BackToBackJobsRunEveryIndexOnce) {
  for (int threads : {2, 3, 5}) {
    moert::ThreadPool pool(threads);
    for (int round = 0; round < 2000; ++round) {
      Job job(1 + round % 37);
      pool.ParallelFor(static_cast<int64_t>(job.hits.size()), Job::Run, &job);
      ExpectEachOnce(job, "back to back", round);
    }
  }
}

TEST(ThreadPoolTest, JobsAfterTheWorkersBlocked) {
  moert::ThreadPool pool(3);
  for (int round = 0; round < 20; ++round) {
    // Longer than the spin: the workers are blocked on the condition
    // variable when the next job is published.
    std::this_thread::sleep_for(
        std::chrono::microseconds(3 * moert::ThreadPool::kSpinMicros));
    Job job(64);
    pool.ParallelFor(64, Job::Run, &job);
    ExpectEachOnce(job, "after blocking", round);
  }
}

// Threads of this process (entries of /proc/self/task), or -1.
int ProcessThreads() {
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return -1;
  int n = 0;
  while (dirent *e = readdir(d))
    if (e->d_name[0] != '.')
      ++n;
  closedir(d);
  return n;
}

TEST(ThreadPoolTest, WakeStartsTheWorkersOfAFreshPool) {
  const int before = ProcessThreads();
  if (before < 0)
    GTEST_SKIP() << "no /proc/self/task";
  {
    moert::ThreadPool serial(1);
    serial.Wake(); // one thread: nothing to wake
    EXPECT_EQ(ProcessThreads(), before);
    moert::ThreadPool pool(3);
    pool.Wake();
    EXPECT_EQ(ProcessThreads(), before + 2);
    pool.Wake(); // started once
    EXPECT_EQ(ProcessThreads(), before + 2);
  }
  EXPECT_EQ(ProcessThreads(), before); // joined, spinning or not
}

TEST(ThreadPoolTest, JobsAfterAWakeInEveryState) {
  moert::ThreadPool pool(3);
  for (int round = 0; round < 60; ++round) {
    // Workers spinning, blocked, or woken without a job and then blocked
    // again; Wake() once or twice before the job, or not at all.
    const int64_t idle = (round % 4) * moert::ThreadPool::kSpinMicros;
    std::this_thread::sleep_for(std::chrono::microseconds(idle));
    for (int w = 0; w < round % 3; ++w) {
      pool.Wake();
      if (round % 5 == 0)
        std::this_thread::sleep_for(
            std::chrono::microseconds(2 * moert::ThreadPool::kSpinMicros));
    }
    Job job(1 + round % 29);
    pool.ParallelFor(static_cast<int64_t>(job.hits.size()), Job::Run, &job);
    ExpectEachOnce(job, "after a wake", round);
  }
}

TEST(ThreadPoolTest, SlowTasksAreWaitedFor) {
  moert::ThreadPool pool(2);
  std::atomic<int> done{0};
  struct Slow {
    std::atomic<int> *done;
    static void Run(void *arg, int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      static_cast<Slow *>(arg)->done->fetch_add(1);
    }
  } slow{&done};
  pool.ParallelFor(6, Slow::Run, &slow);
  EXPECT_EQ(done.load(), 6);
}

TEST(ThreadPoolTest, SerialPoolAndEmptyJobs) {
  moert::ThreadPool serial(1);
  Job job(10);
  serial.ParallelFor(10, Job::Run, &job);
  ExpectEachOnce(job, "serial", 0);
  moert::ThreadPool pool(4);
  pool.ParallelFor(0, Job::Run, &job); // nothing runs
  ExpectEachOnce(job, "empty", 0);
}

} // namespace
