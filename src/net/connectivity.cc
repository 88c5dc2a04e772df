#include "net/connectivity.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem::net {

struct ConnectivityTester::Impl {
  struct Probe {
    int fd = -1;
    os::EventLoop::TimerId timer = 0;
    int64_t started_ms = 0;
    bool done = false;
  };
  os::EventLoop& loop;
  std::vector<config::Endpoint> peers;
  int64_t timeout_ms;
  bool require_all;
  bool running = false;
  std::vector<Probe> probes;
  TestReport current, last;
  std::vector<std::function<void(const TestReport&)>> waiters;

  void Start();
  void StartProbe(size_t i);
  void Finish(size_t i, bool ok, const std::string& error);
  void Complete();
  void Close(Probe& p);
};

void ConnectivityTester::Impl::Close(Probe& p) {
  if (p.timer) loop.CancelTimer(p.timer);
  p.timer = 0;
  if (p.fd >= 0) {
    loop.RemoveFd(p.fd);
    close(p.fd);
    p.fd = -1;
  }
}

void ConnectivityTester::Impl::Start() {
  running = true;
  current = TestReport{};
  probes.assign(peers.size(), Probe{});
  for (const auto& p : peers) current.probes.push_back(ProbeResult{p, false, -1, ""});
  for (size_t i = 0; i < peers.size(); ++i) StartProbe(i);
  if (peers.empty()) loop.Post([this] { Complete(); });
}

void ConnectivityTester::Impl::StartProbe(size_t i) {
  Probe& p = probes[i];
  p.started_ms = loop.clock().NowMs();
  p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p.fd < 0) {
    loop.Post([this, i, e = std::string(std::strerror(errno))] { Finish(i, false, e); });
    return;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(peers[i].port);
  inet_pton(AF_INET, peers[i].host.c_str(), &sa.sin_addr);
  int rc = connect(p.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  if (rc != 0 && errno != EINPROGRESS) {
    loop.Post([this, i, e = std::string(std::strerror(errno))] { Finish(i, false, e); });
    return;
  }
  Status st = loop.AddFd(p.fd, EPOLLOUT, [this, i](uint32_t) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(probes[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
    Finish(i, err == 0, err == 0 ? "" : std::strerror(err));
  });
  if (!st.ok()) {
    loop.Post([this, i, e = st.message()] { Finish(i, false, e); });
    return;
  }
  p.timer = loop.AddTimer(timeout_ms, [this, i] {
    probes[i].timer = 0;
    Finish(i, false, "timed out after " + std::to_string(timeout_ms) + " ms");
  });
}

void ConnectivityTester::Impl::Finish(size_t i, bool ok, const std::string& error) {
  Probe& p = probes[i];
  if (p.done) return;
  p.done = true;
  Close(p);
  ProbeResult& r = current.probes[i];
  r.ok = ok;
  r.error = error;
  if (ok) r.rtt_ms = loop.clock().NowMs() - p.started_ms;
  for (const Probe& q : probes) {
    if (!q.done) return;
  }
  Complete();
}

void ConnectivityTester::Impl::Complete() {
  size_t ok = 0;
  for (const auto& r : current.probes) ok += r.ok;
  current.ok = peers.empty() || (require_all ? ok == peers.size() : ok > 0);
  last = current;
  running = false;
  std::vector<std::function<void(const TestReport&)>> w;
  w.swap(waiters);
  for (auto& cb : w) cb(last);
}

std::string TestReport::Summary() const {
  if (probes.empty()) return "no test peers configured";
  size_t answered = 0;
  std::string failures;
  for (const auto& r : probes) {
    answered += r.ok;
    if (!r.ok) failures += "; " + r.peer.ToString() + ": " + r.error;
  }
  return std::to_string(answered) + "/" + std::to_string(probes.size()) + " test peers answered" +
         failures;
}

ConnectivityTester::ConnectivityTester(os::EventLoop& loop, std::vector<config::Endpoint> peers,
                                       int64_t timeout_ms, bool require_all)
    : impl_(new Impl{loop, std::move(peers), timeout_ms, require_all, false, {}, {}, {}, {}}) {}

ConnectivityTester::~ConnectivityTester() {
  for (auto& p : impl_->probes) impl_->Close(p);
}

void ConnectivityTester::Run(std::function<void(const TestReport&)> done) {
  impl_->waiters.push_back(std::move(done));
  if (!impl_->running) impl_->Start();
}

bool ConnectivityTester::running() const { return impl_->running; }
const TestReport& ConnectivityTester::last() const { return impl_->last; }

}  // namespace tandem::net
