// The collector in a real two-host lab (loopback, protocol C replication):
// util-linux `logger` sends syslog over UDP and TCP to the VIP, the active
// host stores it in segments through the replicated volume, and the events
// are found in BOTH hosts' store directories. Then the active is killed -9:
// the new active collects on the VIP, and everything either host stored is
// searchable on it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <thread>

#include "lab/lab.h"
#include "os/fs.h"
#include "store/search.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-collect");
    lab::LabOptions o = FastLabOptions(dir_);
    o.replication = true;
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << LabLogTails(dir_);
    EXPECT_TRUE(lab::Down(dir_).ok());
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  std::string Store(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["store_dir"]; }
  std::string StatusOf(int i) { return LocalOf(HostStatus(Config(i))).value("status", ""); }
  json Collector(int i) {
    json s = HostStatus(Config(i));
    return s.is_object() ? s["collector"] : json();
  }
  std::string Port(const char* which) { return std::to_string(lab_["ports"][which].get<int>()); }
  // `logger` to the VIP. kind: "udp" | "tcp" (RFC 6587 octet counting).
  void Log(const std::string& kind, const std::string& tag, const std::string& msg) {
    std::vector<std::string> argv = {"logger", "--rfc5424", "-n", lab_["vip"], "-t", tag};
    if (kind == "udp") {
      argv.insert(argv.end(), {"-d", "-P", Port("syslog_udp")});
    } else {
      argv.insert(argv.end(), {"-T", "--octet-count", "-P", Port("syslog_tcp")});
    }
    argv.push_back(msg);
    auto r = RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // How many stored events on host i contain `text`.
  uint64_t Count(int i, const std::string& text) {
    store::EventQuery q;
    q.contains = text;
    q.count_only = true;
    auto r = store::SearchEvents(os::RealFileSystem(), Store(i), q);
    return r.ok() ? r->total : 0;
  }

  std::string dir_;
  json lab_;
};

TEST_F(CollectorTest, LabUpAdvertisesTheCollectorPorts) {
  for (const char* k : {"syslog_udp", "syslog_tcp", "relp", "netflow"}) {
    ASSERT_TRUE(lab_["ports"].contains(k)) << k;
    EXPECT_GT(lab_["ports"][k].get<int>(), 1024) << k;
  }
  ASSERT_TRUE(WaitFor(5000, [&] { return Collector(0).value("running", false); }))
      << Collector(0).dump();
  EXPECT_FALSE(Collector(1).value("running", true)) << "the standby must not collect";
  auto a = RunCommand({BinDir() + "/ha", "status", "--config", Config(0)});
  EXPECT_NE(a.output.find("Collector: running, 0 records stored"), std::string::npos) << a.output;
  auto b = RunCommand({BinDir() + "/ha", "status", "--config", Config(1)});
  EXPECT_NE(b.output.find("Collector: not running (standby)"), std::string::npos) << b.output;
}

TEST_F(CollectorTest, EventsOverUdpAndTcpAreStoredOnBothHostsAndSurviveAFailover) {
  ASSERT_TRUE(WaitFor(5000, [&] { return Collector(0).value("running", false); }))
      << Collector(0).dump();
  for (int n = 0; n < 5; ++n) Log("udp", "itest", "before-failover udp " + std::to_string(n));
  for (int n = 0; n < 5; ++n) Log("tcp", "itest", "before-failover tcp " + std::to_string(n));
  // Durable on the active, and replicated (protocol C) to the standby.
  EXPECT_TRUE(WaitFor(10000, [&] { return Count(0, "before-failover") == 10; }))
      << Count(0, "before-failover") << " " << Collector(0).dump();
  EXPECT_TRUE(WaitFor(10000, [&] { return Count(1, "before-failover") == 10; }))
      << "not on the standby: " << Count(1, "before-failover");

  int pid = (*lab::Describe(dir_))["hosts"][0]["pid"];
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  ASSERT_TRUE(WaitFor(5000, [&] { return Collector(1).value("running", false); }))
      << Collector(1).dump();
  for (int n = 0; n < 5; ++n) Log("tcp", "itest", "after-failover tcp " + std::to_string(n));
  EXPECT_TRUE(WaitFor(10000, [&] { return Count(1, "after-failover") == 5; }))
      << Count(1, "after-failover") << " " << Collector(1).dump();
  EXPECT_EQ(Count(1, "before-failover"), 10u) << "what the old active stored";
}

// A new active whose collector ports are still held by the old one (here:
// the old active frozen with SIGSTOP, so it keeps its sockets while the
// standby takes over) cannot bind at first; it retries while it is active
// and collects as soon as the old host lets go (SIGCONT: it sees the newer
// active, steps down and closes its listeners).
TEST_F(CollectorTest, ANewActiveCollectsOnceTheOldActiveLetsGoOfThePorts) {
  ASSERT_TRUE(WaitFor(5000, [&] { return Collector(0).value("running", false); }))
      << Collector(0).dump();
  int pid = (*lab::Describe(dir_))["hosts"][0]["pid"];
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  bool took_over = WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; });
  bool blocked = took_over && WaitFor(5000, [&] {
    return Collector(1).value("last_error", "").find("in use") != std::string::npos;
  });
  json while_frozen = Collector(1);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ASSERT_TRUE(took_over);
  EXPECT_TRUE(blocked) << "the ports were held: " << while_frozen.dump();
  EXPECT_FALSE(while_frozen.value("running", true)) << while_frozen.dump();
  ASSERT_TRUE(WaitFor(10000, [&] { return StatusOf(0) == "STANDBY"; })) << StatusOf(0);
  ASSERT_TRUE(WaitFor(10000, [&] { return Collector(1).value("running", false); }))
      << Collector(1).dump();
  for (int n = 0; n < 3; ++n) Log("tcp", "itest", "after-release tcp " + std::to_string(n));
  EXPECT_TRUE(WaitFor(10000, [&] { return Count(1, "after-release") == 3; }))
      << Count(1, "after-release") << " " << Collector(1).dump();
}

// The acceptance test of the collection issue: rsyslogd (its own config and
// work directory) forwards 100,000 numbered events over RELP (omrelp) to the
// VIP; the active host is SIGKILLed in the middle of the stream. rsyslog
// resends what was not acknowledged to the new active, and since a RELP ack
// means "durable on both hosts", every event is found on the new active:
// zero lost. Duplicates (events stored, but whose ack died with the host)
// are counted and reported.
constexpr int kAcceptanceEvents = 100000;

std::string EventText(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "accept-%06d", i);
  return buf;
}

TEST_F(CollectorTest, RsyslogOverRelpLosesNothingWhenTheActiveIsKilledMidStream) {
  if (std::string why = RsyslogMissing(true); !why.empty()) GTEST_SKIP() << why;
  ASSERT_TRUE(WaitFor(5000, [&] { return Collector(0).value("running", false); }));
  const std::string rs = dir_ + "/rsyslog";
  Rsyslogd rsyslogd(rs, "module(load=\"omrelp\")",
                    "action(type=\"omrelp\" target=\"" + lab_["vip"].get<std::string>() + "\" port=\"" +
                        Port("relp") + "\" template=\"fwd\" queue.type=\"LinkedList\" queue.size=\"200000\" "
                        "action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")");
  ASSERT_TRUE(rsyslogd.started());
  {
    std::ofstream lines(rs + "/lines");
    for (int i = 0; i < kAcceptanceEvents; ++i) lines << EventText(i) << "\n";
  }
  ASSERT_TRUE(rsyslogd.WaitReady(10000));
  // The sender runs in the background; the active dies while it sends.
  std::thread sender([&] {
    RunCommand({"logger", "-d", "-u", rs + "/log.sock", "-t", "acceptance", "-f", rs + "/lines"});
  });
  struct Join {
    std::thread* t;
    ~Join() {
      if (t->joinable()) t->join();
    }
  } join{&sender};
  bool midway = WaitFor(60000, [&] { return Count(0, "accept-") >= kAcceptanceEvents / 5; });
  int pid = (*lab::Describe(dir_))["hosts"][0]["pid"];
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  uint64_t at_kill = Count(0, "accept-");
  EXPECT_TRUE(midway) << "the stream was too slow to reach the midpoint";
  EXPECT_LT(at_kill, static_cast<uint64_t>(kAcceptanceEvents)) << "killed after the stream ended";
  ASSERT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  sender.join();
  // Every event, at least once, on the new active.
  std::set<std::string> seen;
  uint64_t total = 0;
  auto collect = [&] {
    for (bool newest : {false, true}) {
      store::EventQuery q;
      q.contains = "accept-";
      q.limit = store::kSearchLimitMax;
      q.newest_first = newest;
      auto r = store::SearchEvents(os::RealFileSystem(), Store(1), q);
      if (!r.ok()) continue;
      total = r->total;
      for (const auto& e : r->events) {
        size_t at = e.message.find("accept-");
        if (at != std::string::npos) seen.insert(e.message.substr(at, 13));
      }
    }
    return seen.size() == static_cast<size_t>(kAcceptanceEvents);
  };
  EXPECT_TRUE(WaitFor(120000, collect))
      << "lost " << (kAcceptanceEvents - static_cast<int>(seen.size())) << " events; "
      << Collector(1).dump();
  std::cout << "acceptance: " << kAcceptanceEvents << " events sent, " << at_kill
            << " stored when the active was killed, " << seen.size() << " distinct found on the new active, "
            << (total - seen.size()) << " duplicates (resent after the failover)\n";
}

}  // namespace
}  // namespace tandem::itest
