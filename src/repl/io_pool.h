// A small, fixed pool of threads for the replication thread's blocking disk
// calls that may run side by side: the fdatasync of every file a group
// commit wrote (concurrent fdatasyncs on one filesystem share its journal
// commits and the device's cache flushes, where one after the other pays
// for each), and early write-back of data received by a sync target.
//
// Thread safety: RunAll and Post may be called from any one thread at a
// time (the replication thread); the jobs run on the workers and must only
// touch what their caller hands them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "util/status.h"

namespace tandem::repl {

class IoPool {
 public:
  static constexpr size_t kThreadsMax = 16;
  static constexpr size_t kBackgroundQueueMax = 64;  // Post() beyond this is dropped

  // REQUIRES: 1 <= threads <= kThreadsMax.
  explicit IoPool(size_t threads);
  ~IoPool();  // waits for the jobs running; queued background jobs are dropped
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  // Runs every job, at most `threads` at a time (the caller's thread is one
  // of them), and returns once all have finished: OK, or the first error in
  // `jobs` order.
  Status RunAll(std::vector<std::function<Status()>> jobs);

  // Queues `job` to run in the background, after any RunAll work. Returns
  // false (and drops it) if kBackgroundQueueMax jobs are already waiting:
  // only for work that is a hint, never needed for correctness.
  bool Post(std::function<void()> job);

  size_t threads() const { return workers_.size() + 1; }

 private:
  void Work();
  static void Warm();
  static constexpr size_t kWarmStackBytes = 32 * 1024;

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> urgent_;      // RunAll's jobs
  std::deque<std::function<void()>> background_;  // Post's jobs
  size_t running_ = 0;                            // urgent jobs being run by workers
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tandem::repl
