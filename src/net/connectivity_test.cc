// Real sockets, loopback only (127.0.0.1): never any other address.
#include "net/connectivity.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

namespace tandem::net {
namespace {

constexpr int64_t kProbeTimeoutMs = 1000;
constexpr int64_t kShortTimeoutMs = 200;
constexpr int64_t kDeadlineMs = 5000;      // a bug fails the test instead of hanging it
constexpr int kStuckPollMs = 100;          // a connect pending this long is stuck
constexpr int kBacklogFillersMax = 16;

// A listening TCP socket on 127.0.0.1:<ephemeral>.
int Listen(uint16_t* port, int backlog = 16) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_EQ(listen(fd, backlog), 0);
  socklen_t len = sizeof sa;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

config::Endpoint Loopback(uint16_t port) { return config::Endpoint{"127.0.0.1", port}; }

// A port on 127.0.0.1 nobody listens on (bound once, then closed).
config::Endpoint ClosedPort() {
  uint16_t port = 0;
  close(Listen(&port));
  return Loopback(port);
}

// A listener whose accept queue is full and never drained: Linux drops
// further SYNs, so a connect to it stays pending until its timeout. Returns
// false if no connect got stuck (then the caller skips).
bool StuckListener(uint16_t* port, std::vector<int>* fds) {
  fds->push_back(Listen(port, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(*port);
  for (int i = 0; i < kBacklogFillersMax; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fds->push_back(fd);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) continue;
    if (errno != EINPROGRESS) return false;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, kStuckPollMs) == 0) return true;
  }
  return false;
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

struct Outcome {
  TestReport report;
  int calls = 0;
};

// One round, with a second Run() joining it; the loop stops on completion.
Outcome RunOnce(std::vector<config::Endpoint> peers, bool require_all,
                int64_t timeout_ms = kProbeTimeoutMs) {
  os::EventLoop loop;
  ConnectivityTester t(loop, std::move(peers), timeout_ms, require_all);
  Outcome out;
  t.Run([&](const TestReport& r) {
    out.report = r;
    ++out.calls;
    loop.Stop();
  });
  EXPECT_TRUE(t.running());
  t.Run([&](const TestReport&) { ++out.calls; });  // joins the same round
  EXPECT_EQ(out.calls, 0) << "done never runs inside Run()";
  loop.AddTimer(kDeadlineMs, [&] { loop.Stop(); });
  loop.Run();
  EXPECT_EQ(out.calls, 2);
  EXPECT_FALSE(t.running());
  EXPECT_EQ(t.last().Summary(), out.report.Summary());
  return out;
}

TEST(Connectivity, ListenerAnswersWithRtt) {
  uint16_t port = 0;
  int fd = Listen(&port);
  TestReport r = RunOnce({Loopback(port)}, false).report;
  EXPECT_TRUE(r.ok);
  ASSERT_EQ(r.probes.size(), 1u);
  EXPECT_TRUE(r.probes[0].ok);
  EXPECT_GE(r.probes[0].rtt_ms, 0);
  EXPECT_LT(r.probes[0].rtt_ms, kProbeTimeoutMs);
  EXPECT_EQ(r.probes[0].error, "");
  EXPECT_EQ(r.probes[0].peer, Loopback(port));
  EXPECT_EQ(r.Summary(), "1/1 test peers answered");
  close(fd);
}

TEST(Connectivity, IcmpEchoToLoopbackAnswers) {
  TestReport r = RunOnce({config::Endpoint{"127.0.0.1", 0}}, false).report;
  EXPECT_TRUE(r.ok) << r.Summary();
  ASSERT_EQ(r.probes.size(), 1u);
  EXPECT_TRUE(r.probes[0].ok);
  EXPECT_GE(r.probes[0].rtt_ms, 0);
}

TEST(Connectivity, ClosedPortIsRefused) {
  config::Endpoint down = ClosedPort();
  TestReport r = RunOnce({down}, false).report;
  EXPECT_FALSE(r.ok);
  ASSERT_EQ(r.probes.size(), 1u);
  EXPECT_FALSE(r.probes[0].ok);
  EXPECT_EQ(r.probes[0].rtt_ms, -1);
  EXPECT_EQ(r.probes[0].error, "connection refused");
  EXPECT_EQ(r.Summary(), "0/1 test peers answered; 127.0.0.1:" + std::to_string(down.port) +
                             ": connection refused");
}

TEST(Connectivity, AnyVersusAll) {
  uint16_t port = 0;
  int fd = Listen(&port);
  config::Endpoint up = Loopback(port);
  config::Endpoint down = ClosedPort();
  TestReport any = RunOnce({up, down, up}, false).report;
  EXPECT_TRUE(any.ok);
  EXPECT_EQ(any.Summary(), "2/3 test peers answered; 127.0.0.1:" + std::to_string(down.port) +
                               ": connection refused");
  EXPECT_FALSE(RunOnce({up, down}, true).report.ok) << "all";
  EXPECT_TRUE(RunOnce({up, up}, true).report.ok) << "all answered";
  EXPECT_FALSE(RunOnce({down, down}, false).report.ok) << "none answered";
  close(fd);
}

TEST(Connectivity, NoPeersPasses) {
  TestReport r = RunOnce({}, false).report;
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.probes.empty());
  EXPECT_EQ(r.Summary(), "no test peers configured");
  EXPECT_TRUE(RunOnce({}, true).report.ok) << "require_all with no peers";
}

TEST(Connectivity, InvalidAddressFailsThatProbe) {
  uint16_t port = 0;
  int fd = Listen(&port);
  TestReport r = RunOnce({config::Endpoint{"not-an-ip", 22}, Loopback(port)}, false).report;
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.probes[0].error, "invalid IPv4 address 'not-an-ip'");
  EXPECT_TRUE(r.probes[1].ok);
  close(fd);
}

TEST(Connectivity, UnansweredConnectTimesOut) {
  uint16_t port = 0;
  std::vector<int> fds;
  if (!StuckListener(&port, &fds)) {
    CloseAll(fds);
    GTEST_SKIP() << "could not fill a loopback accept queue; timeout path not testable here";
  }
  TestReport r = RunOnce({Loopback(port)}, false, kShortTimeoutMs).report;
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.probes[0].error, "timed out after 200 ms");
  EXPECT_EQ(r.Summary(), "0/1 test peers answered; 127.0.0.1:" + std::to_string(port) +
                             ": timed out after 200 ms");
  CloseAll(fds);
}

TEST(Connectivity, RoundsRepeatAndRunFromCallbackStartsANewRound) {
  uint16_t port = 0;
  int fd = Listen(&port);
  os::EventLoop loop;
  ConnectivityTester t(loop, {Loopback(port)}, kProbeTimeoutMs, false);
  int rounds = 0;
  std::function<void(const TestReport&)> again = [&](const TestReport& r) {
    EXPECT_TRUE(r.ok);
    EXPECT_FALSE(t.running());
    if (++rounds < 3) {
      t.Run(again);
    } else {
      loop.Stop();
    }
  };
  t.Run(again);
  loop.AddTimer(kDeadlineMs, [&] { loop.Stop(); });
  loop.Run();
  EXPECT_EQ(rounds, 3);
  EXPECT_TRUE(t.last().ok);
  close(fd);
}

TEST(Connectivity, DestroyedMidRoundNeverCallsBack) {
  uint16_t port = 0;
  std::vector<int> fds;
  bool stuck = StuckListener(&port, &fds);
  os::EventLoop loop;
  // Without a stuck listener the refused probe still completes on a later
  // iteration, after the tester is gone.
  config::Endpoint peer = stuck ? Loopback(port) : ClosedPort();
  auto t = std::make_unique<ConnectivityTester>(loop, std::vector{peer}, kProbeTimeoutMs, false);
  int calls = 0;
  t->Run([&](const TestReport&) { ++calls; });
  t.reset();  // cancels timers and closes sockets
  loop.AddTimer(kProbeTimeoutMs + kShortTimeoutMs, [&] { loop.Stop(); });
  loop.Run();
  EXPECT_EQ(calls, 0);
  CloseAll(fds);
}

TEST(Connectivity, WaiterDestroyingTheTesterStopsTheRest) {
  os::EventLoop loop;
  auto t = std::make_unique<ConnectivityTester>(loop, std::vector{ClosedPort()}, kProbeTimeoutMs,
                                                false);
  int calls = 0;
  t->Run([&](const TestReport&) {
    ++calls;
    t.reset();
    loop.Stop();
  });
  t->Run([&](const TestReport&) { ++calls; });
  loop.AddTimer(kDeadlineMs, [&] { loop.Stop(); });
  loop.Run();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(t, nullptr);
}

}  // namespace
}  // namespace tandem::net
