// A task queue for cpp-httplib servers with a bounded queue: cpp-httplib's
// own pool queues without limit; this one blocks the accepting thread when
// `queue_max` connections wait (back-pressure). Used by the search API
// (api/http.cc) and the console (console/console.cc).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "api/httplib.h"

namespace tandem::api {

class BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool(size_t threads, size_t queue_max) : queue_max_(queue_max) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> l(mu_);
    space_.wait(l, [this] { return jobs_.size() < queue_max_ || stop_; });
    jobs_.push_back(std::move(fn));  // after stop_ too: the task closes its socket
    ready_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_ && threads_.empty()) return;
      stop_ = true;
    }
    ready_.notify_all();
    space_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        ready_.wait(l, [this] { return !jobs_.empty() || stop_; });
        if (jobs_.empty()) return;  // stopping and drained
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      fn();
    }
  }

  const size_t queue_max_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<std::function<void()>> jobs_;  // GUARDED_BY(mu_)
  bool stop_ = false;                       // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace tandem::api
