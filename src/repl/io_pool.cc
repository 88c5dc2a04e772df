#include "repl/io_pool.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <cstdlib>

namespace tandem::repl {

IoPool::IoPool(size_t threads) {
  TANDEM_CHECK(threads >= 1 && threads <= kThreadsMax);
  for (size_t i = 1; i < threads; ++i) {
    workers_.emplace_back([this] {
      // Signals belong to the daemon's loop (signalfd), never to a worker.
      sigset_t all;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);
      Warm();
      Work();
    });
  }
}

IoPool::~IoPool() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
    background_.clear();
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

// A worker's first job would otherwise fault in its stack pages and make
// the thread's malloc arena (a job opens a file: a new File object), in the
// middle of a sync or a commit; page faults can be dear (a virtual
// machine's shadow page tables). Done once, at start.
void IoPool::Warm() {
  uint8_t stack[kWarmStackBytes];
  explicit_bzero(stack, sizeof stack);  // not optimized away
  std::free(std::malloc(64));
}

void IoPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !urgent_.empty() || !background_.empty(); });
    if (stopping_ && urgent_.empty()) return;
    bool urgent = !urgent_.empty();
    std::function<void()> job = std::move(urgent ? urgent_.front() : background_.front());
    (urgent ? urgent_ : background_).pop_front();
    if (urgent) running_++;
    lock.unlock();
    job();
    lock.lock();
    if (urgent && --running_ == 0 && urgent_.empty()) idle_.notify_all();
  }
}

Status IoPool::RunAll(std::vector<std::function<Status()>> jobs) {
  std::vector<Status> results(jobs.size());
  if (jobs.size() <= 1 || workers_.empty()) {
    for (size_t i = 0; i < jobs.size(); ++i) results[i] = jobs[i]();
  } else {
    {
      std::lock_guard<std::mutex> g(mu_);
      for (size_t i = 1; i < jobs.size(); ++i) {
        urgent_.push_back([&results, &jobs, i] { results[i] = jobs[i](); });
      }
    }
    wake_.notify_all();
    results[0] = jobs[0]();
    // Help with what the workers have not taken yet, then wait for theirs.
    std::unique_lock<std::mutex> lock(mu_);
    while (!urgent_.empty()) {
      std::function<void()> job = std::move(urgent_.front());
      urgent_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
    idle_.wait(lock, [this] { return running_ == 0; });
  }
  for (const Status& st : results) {
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

bool IoPool::Post(std::function<void()> job) {
  if (workers_.empty()) return false;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (background_.size() >= kBackgroundQueueMax) return false;
    background_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

}  // namespace tandem::repl
