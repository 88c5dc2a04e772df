#include "os/event_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace tandem::os {

struct EventLoop::Posted {
  std::mutex mu;
  std::vector<Callback> queue;  // GUARDED_BY(mu)
};

namespace {
Status Errno(const std::string& what) { return Status::Error(what + ": " + std::strerror(errno)); }
constexpr int kEventsMax = 64;  // epoll events handled per wakeup
}  // namespace

EventLoop::EventLoop(const Clock& clock) : clock_(clock), posted_(std::make_unique<Posted>()) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  TANDEM_CHECK(epfd_ >= 0);
  wakefd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  TANDEM_CHECK(wakefd_ >= 0);
  TANDEM_CHECK(AddFd(wakefd_, EPOLLIN, [this](uint32_t) {
                 uint64_t v;
                 while (read(wakefd_, &v, sizeof v) > 0) {
                 }
                 DrainPosted();
               }).ok());
}

EventLoop::~EventLoop() {
  if (sigfd_ >= 0) close(sigfd_);
  close(wakefd_);
  close(epfd_);
}

Status EventLoop::AddFd(int fd, uint32_t epoll_events, FdCallback cb) {
  epoll_event ev{};
  ev.events = epoll_events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return Errno("epoll_ctl(ADD)");
  fds_[fd] = std::make_shared<FdCallback>(std::move(cb));
  return Status::Ok();
}

Status EventLoop::ModifyFd(int fd, uint32_t epoll_events) {
  epoll_event ev{};
  ev.events = epoll_events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0) return Errno("epoll_ctl(MOD)");
  return Status::Ok();
}

void EventLoop::RemoveFd(int fd) {
  if (fds_.erase(fd) > 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::AddTimer(int64_t delay_ms, Callback cb) {
  TimerId id = next_timer_++;
  int64_t due = clock_.NowMs() + (delay_ms < 0 ? 0 : delay_ms);
  timers_.emplace(due, std::make_pair(id, std::move(cb)));
  timer_due_[id] = due;
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timer_due_.find(id);
  if (it == timer_due_.end()) return;
  auto range = timers_.equal_range(it->second);
  for (auto t = range.first; t != range.second; ++t) {
    if (t->second.first == id) {
      timers_.erase(t);
      break;
    }
  }
  timer_due_.erase(it);
}

Status EventLoop::AddSignal(int signo, Callback cb) {
  signals_[signo] = std::move(cb);
  sigset_t set;
  sigemptyset(&set);
  for (auto& [s, _] : signals_) sigaddset(&set, s);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return Errno("sigprocmask");
  if (sigfd_ >= 0) {
    if (signalfd(sigfd_, &set, SFD_NONBLOCK | SFD_CLOEXEC) < 0) return Errno("signalfd");
    return Status::Ok();
  }
  sigfd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd_ < 0) return Errno("signalfd");
  return AddFd(sigfd_, EPOLLIN, [this](uint32_t) { DrainSignals(); });
}

void EventLoop::DrainSignals() {
  signalfd_siginfo info;
  while (read(sigfd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    auto it = signals_.find(static_cast<int>(info.ssi_signo));
    if (it != signals_.end()) it->second();
  }
}

void EventLoop::Post(Callback cb) {
  {
    std::lock_guard<std::mutex> lock(posted_->mu);
    posted_->queue.push_back(std::move(cb));
  }
  Wake();
}

void EventLoop::DrainPosted() {
  std::vector<Callback> q;
  {
    std::lock_guard<std::mutex> lock(posted_->mu);
    q.swap(posted_->queue);
  }
  for (auto& cb : q) cb();
}

void EventLoop::Wake() {
  uint64_t one = 1;
  ssize_t n = write(wakefd_, &one, sizeof one);
  (void)n;
}

void EventLoop::Stop() { running_ = false; }

void EventLoop::RunTimers() {
  int64_t now = clock_.NowMs();
  // Timers added by callbacks for "now" run on the next iteration, so a
  // zero-delay timer that re-arms itself cannot starve file descriptors; a
  // timer cancelled by an earlier callback of this iteration does not run.
  std::vector<TimerId> due;
  for (auto it = timers_.begin(); it != timers_.end() && it->first <= now; ++it) {
    due.push_back(it->second.first);
  }
  for (TimerId id : due) {
    auto d = timer_due_.find(id);
    if (d == timer_due_.end()) continue;
    auto range = timers_.equal_range(d->second);
    for (auto t = range.first; t != range.second; ++t) {
      if (t->second.first != id) continue;
      Callback cb = std::move(t->second.second);
      timers_.erase(t);
      timer_due_.erase(d);
      cb();
      break;
    }
  }
}

void EventLoop::Run() {
  running_ = true;
  epoll_event events[kEventsMax];
  while (running_) {
    int timeout = -1;
    if (!timers_.empty()) {
      int64_t wait = timers_.begin()->first - clock_.NowMs();
      timeout = wait <= 0 ? 0 : static_cast<int>(wait > 60000 ? 60000 : wait);
    }
    int n = epoll_wait(epfd_, events, kEventsMax, timeout);
    if (n < 0 && errno != EINTR) TANDEM_CHECK(false && "epoll_wait failed");
    for (int i = 0; i < n && running_; ++i) {
      auto it = fds_.find(events[i].data.fd);
      if (it == fds_.end()) continue;  // removed by an earlier callback
      auto cb = it->second;            // keep alive even if the callback removes itself
      (*cb)(events[i].events);
    }
    if (running_) RunTimers();
  }
}

}  // namespace tandem::os
