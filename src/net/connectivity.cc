#include "net/connectivity.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

namespace tandem::net {

namespace {

using Done = std::function<void(const TestReport&)>;

// "Connection refused" -> "connection refused" (reads well after "host:port: ").
std::string ErrorText(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

// Endpoint::ToString lives in tandem_config, which tandem_net does not link.
// Port 0 is an ICMP echo peer.
std::string PeerText(const config::Endpoint& e) {
  return e.port == 0 ? "icmp:" + e.host : e.host + ":" + std::to_string(e.port);
}

uint16_t InternetChecksum(const uint8_t* data, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(data[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

struct ConnectivityTester::Impl {
  struct Probe {
    int fd = -1;
    os::EventLoop::TimerId timer = 0;  // the timeout, or a deferred early failure
    int64_t started_ms = 0;
    bool done = false;
    bool raw = false;      // ICMP over a raw socket (no ping-socket permission)
    uint16_t echo_id = 0;  // raw ICMP: our echo id (ping sockets get theirs from the kernel)
    uint16_t echo_seq_no = 0;
  };

  Impl(os::EventLoop& l, std::vector<config::Endpoint> p, int64_t t, bool all)
      : loop(l), peers(std::move(p)), timeout_ms(t), require_all(all) {}

  os::EventLoop& loop;
  const std::vector<config::Endpoint> peers;
  const int64_t timeout_ms;
  const bool require_all;
  bool running = false;
  std::vector<Probe> probes;
  os::EventLoop::TimerId empty_round_timer = 0;  // completes a round without peers
  TestReport current;
  TestReport last;
  std::vector<Done> waiters;
  // Cleared by the destructor: a waiter that destroys the tester stops the rest.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  void Start();
  void StartProbe(size_t i);
  Status Connect(size_t i);
  Status Ping(size_t i);
  void OnWritable(size_t i);
  void OnIcmp(size_t i);
  uint16_t next_echo_seq = 1;
  void FailLater(size_t i, std::string error);
  void Finish(size_t i, bool ok, const std::string& error);
  void Complete();
  void Release(Probe& p);
};

void ConnectivityTester::Impl::Release(Probe& p) {
  if (p.timer != 0) loop.CancelTimer(p.timer);
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
  for (const auto& peer : peers) current.probes.push_back(ProbeResult{peer, false, -1, ""});
  if (peers.empty()) {
    empty_round_timer = loop.AddTimer(0, [this] {
      empty_round_timer = 0;
      Complete();
    });
    return;
  }
  for (size_t i = 0; i < peers.size(); ++i) StartProbe(i);
}

// Reports an error found while starting probe `i` from the loop, never from
// inside Run(), so `done` always runs on a later iteration.
void ConnectivityTester::Impl::FailLater(size_t i, std::string error) {
  Release(probes[i]);
  probes[i].timer = loop.AddTimer(0, [this, i, e = std::move(error)] {
    probes[i].timer = 0;
    Finish(i, false, e);
  });
}

void ConnectivityTester::Impl::StartProbe(size_t i) {
  Probe& p = probes[i];
  p.started_ms = loop.clock().NowMs();
  Status st = Connect(i);
  if (!st.ok()) return FailLater(i, st.message());
  p.timer = loop.AddTimer(timeout_ms, [this, i] {
    probes[i].timer = 0;
    Finish(i, false, "timed out after " + std::to_string(timeout_ms) + " ms");
  });
}

// Opens the socket of probe `i` and starts a non-blocking connect (or, for
// an ICMP peer, sends an echo request).
Status ConnectivityTester::Impl::Connect(size_t i) {
  if (peers[i].port == 0) return Ping(i);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(peers[i].port);
  if (inet_pton(AF_INET, peers[i].host.c_str(), &sa.sin_addr) != 1) {
    return Status::Error("invalid IPv4 address '" + peers[i].host + "'");
  }
  Probe& p = probes[i];
  p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p.fd < 0) return Status::Error("socket: " + ErrorText(errno));
  int rc = connect(p.fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  if (rc != 0 && errno != EINPROGRESS) return Status::Error(ErrorText(errno));
  // Connected at once (rc == 0) or not: EPOLLOUT reports the outcome.
  return loop.AddFd(p.fd, EPOLLOUT, [this, i](uint32_t) { OnWritable(i); });
}

// ICMP echo: a ping socket (SOCK_DGRAM, net.ipv4.ping_group_range) if
// allowed, else a raw socket (root).
Status ConnectivityTester::Impl::Ping(size_t i) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, peers[i].host.c_str(), &sa.sin_addr) != 1) {
    return Status::Error("invalid IPv4 address '" + peers[i].host + "'");
  }
  Probe& p = probes[i];
  p.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (p.fd < 0) {
    p.raw = true;
    p.fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
  }
  if (p.fd < 0) return Status::Error("ICMP socket: " + ErrorText(errno));
  p.echo_seq_no = next_echo_seq++;
  p.echo_id = static_cast<uint16_t>(getpid() ^ (i << 8));
  icmphdr h{};
  h.type = ICMP_ECHO;
  h.un.echo.id = htons(p.echo_id);
  h.un.echo.sequence = htons(p.echo_seq_no);
  h.checksum = htons(InternetChecksum(reinterpret_cast<const uint8_t*>(&h), sizeof h));
  if (sendto(p.fd, &h, sizeof h, 0, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) {
    return Status::Error(ErrorText(errno));
  }
  return loop.AddFd(p.fd, EPOLLIN, [this, i](uint32_t) { OnIcmp(i); });
}

// Reads replies until ours (type 0, our sequence, from the peer) arrives.
void ConnectivityTester::Impl::OnIcmp(size_t i) {
  Probe& p = probes[i];
  in_addr want{};
  inet_pton(AF_INET, peers[i].host.c_str(), &want);
  uint8_t buf[1500];
  for (;;) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(p.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;  // drained; keep waiting until the timeout
    size_t off = p.raw ? static_cast<size_t>((buf[0] & 0x0f) * 4) : 0;
    if (static_cast<size_t>(n) < off + sizeof(icmphdr)) continue;
    icmphdr h;
    std::memcpy(&h, buf + off, sizeof h);
    bool ours = h.type == ICMP_ECHOREPLY && ntohs(h.un.echo.sequence) == p.echo_seq_no &&
                (!p.raw || ntohs(h.un.echo.id) == p.echo_id) &&
                from.sin_addr.s_addr == want.s_addr;
    if (ours) return Finish(i, true, "");
  }
}

void ConnectivityTester::Impl::OnWritable(size_t i) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(probes[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  Finish(i, err == 0, err == 0 ? "" : ErrorText(err));
}

void ConnectivityTester::Impl::Finish(size_t i, bool ok, const std::string& error) {
  Probe& p = probes[i];
  if (p.done) return;
  p.done = true;
  Release(p);
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
  size_t answered = 0;
  for (const auto& r : current.probes) answered += r.ok ? 1 : 0;
  current.ok = peers.empty() || (require_all ? answered == peers.size() : answered > 0);
  last = current;
  running = false;
  // Copies: a waiter may start the next round or destroy the tester.
  std::vector<Done> w;
  w.swap(waiters);
  TestReport report = last;
  std::shared_ptr<bool> still_alive = alive;
  for (auto& cb : w) {
    if (!*still_alive) return;
    cb(report);
  }
}

std::string TestReport::Summary() const {
  if (probes.empty()) return "no test peers configured";
  size_t answered = 0;
  std::string failures;
  for (const auto& r : probes) {
    if (r.ok) {
      ++answered;
    } else {
      failures += "; " + PeerText(r.peer) + ": " + r.error;
    }
  }
  return std::to_string(answered) + "/" + std::to_string(probes.size()) + " test peers answered" +
         failures;
}

ConnectivityTester::ConnectivityTester(os::EventLoop& loop, std::vector<config::Endpoint> peers,
                                       int64_t timeout_ms, bool require_all)
    : impl_(std::make_unique<Impl>(loop, std::move(peers), timeout_ms, require_all)) {}

ConnectivityTester::~ConnectivityTester() {
  *impl_->alive = false;
  if (impl_->empty_round_timer != 0) impl_->loop.CancelTimer(impl_->empty_round_timer);
  for (auto& p : impl_->probes) impl_->Release(p);
}

void ConnectivityTester::Run(std::function<void(const TestReport&)> done) {
  impl_->waiters.push_back(std::move(done));
  if (!impl_->running) impl_->Start();
}

bool ConnectivityTester::running() const { return impl_->running; }
const TestReport& ConnectivityTester::last() const { return impl_->last; }

}  // namespace tandem::net
