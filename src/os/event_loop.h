// One event loop per daemon (Redis `ae` style, ENGINEERING.md #8): file
// descriptors, one-shot timers and signals, all dispatched on the thread that
// calls Run(). Not thread-safe: every method must be called on that thread,
// except Wake(), which any thread may call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

#include "os/clock.h"
#include "util/status.h"

namespace tandem::os {

class EventLoop {
 public:
  using Callback = std::function<void()>;
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using TimerId = uint64_t;

  explicit EventLoop(const Clock& clock = RealClock::Get());
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` for `epoll_events` (EPOLLIN, EPOLLOUT, ...). The loop does
  // not own the fd; call RemoveFd before closing it.
  Status AddFd(int fd, uint32_t epoll_events, FdCallback cb);
  Status ModifyFd(int fd, uint32_t epoll_events);
  void RemoveFd(int fd);

  // Runs `cb` once, `delay_ms` from now (0: on the next iteration).
  TimerId AddTimer(int64_t delay_ms, Callback cb);
  void CancelTimer(TimerId id);  // no-op if already fired or cancelled

  // Blocks `signo` for the whole process and delivers it through the loop.
  // Call before starting threads. At most one callback per signal.
  Status AddSignal(int signo, Callback cb);

  void Run();    // until Stop()
  void Stop();   // from a callback on the loop thread
  void Wake();   // any thread: makes a blocked Run() iterate
  // Runs `cb` on the loop thread at the next iteration (any thread).
  void Post(Callback cb);

  const Clock& clock() const { return clock_; }

 private:
  void RunTimers();
  void DrainSignals();
  void DrainPosted();

  const Clock& clock_;
  int epfd_ = -1;
  int wakefd_ = -1;
  int sigfd_ = -1;
  bool running_ = false;
  TimerId next_timer_ = 1;
  std::multimap<int64_t, std::pair<TimerId, Callback>> timers_;  // due_ms -> timer
  std::unordered_map<TimerId, int64_t> timer_due_;
  std::unordered_map<int, std::shared_ptr<FdCallback>> fds_;
  std::unordered_map<int, Callback> signals_;
  struct Posted;
  std::unique_ptr<Posted> posted_;
};

}  // namespace tandem::os
