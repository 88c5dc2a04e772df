// The real network path: a lab on network namespaces (198.18.0.0/24, a
// bridge, a client and two managed hosts, a crossover link). The VIP is an
// interface alias that moves between namespaces with gratuitous ARP; the
// client in its own namespace sees which host serves it. Failures are
// injected for real (links down, daemons killed). Everything is torn down.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "lab/lab.h"
#include "lab/store_tool.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class NetnsTest : public ::testing::Test {
 protected:
  virtual bool UseWitnesses() const { return true; }
  virtual bool UseReplication() const { return false; }
  void SetUp() override {
    dir_ = MakeTempDir("tandem-netns");
    lab::LabOptions o = FastLabOptions(dir_);
    o.netns = true;
    o.crossover = true;
    o.use_witnesses = UseWitnesses();
    o.replication = UseReplication();
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << LabLogTails(dir_);
    tandem::Status st = lab::Down(dir_);
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_FALSE(std::filesystem::exists("/run/netns/" + Ns("primary"))) << "namespaces left";
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::string Ns(const std::string& which) const { return lab_["netns"][which]; }
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  std::string StatusOf(int i) { return LocalOf(HostStatus(Config(i))).value("status", ""); }
  std::string Reason(int i) { return LocalOf(HostStatus(Config(i))).value("reason", ""); }
  int Pid(int i) { return (*lab::Describe(dir_))["hosts"][static_cast<size_t>(i)]["pid"]; }
  // What the client (in its own namespace) gets from the VIP service.
  std::string ClientProbe() {
    auto r = RunCommand({"ip", "netns", "exec", Ns("client"), BinDir() + "/tandem", "probe",
                         "--addr", "198.18.0.10:8080", "--timeout-ms", "300"});
    std::string out = r.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return r.exit_code == 0 ? out : "";
  }
  bool ClientServedBy(const std::string& name, int64_t ms = 10000) {
    return WaitFor(ms, [&] { return ClientProbe() == name; });
  }
  bool HasVip(const std::string& ns) {
    auto r = RunCommand({"ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"});
    return r.output.find("198.18.0.10/24") != std::string::npos &&
           r.output.find("eth0:0") != std::string::npos;
  }
  std::string Mac(const std::string& ns) {
    auto r = RunCommand({"ip", "-n", ns, "-o", "link", "show", "eth0"});
    size_t at = r.output.find("link/ether ");
    return at == std::string::npos ? "" : r.output.substr(at + 11, 17);
  }
  // The MAC the client's neighbour table holds for the VIP (after a probe).
  std::string ClientVipMac() {
    auto r = RunCommand({"ip", "-n", Ns("client"), "neigh", "show", "198.18.0.10"});
    size_t at = r.output.find("lladdr ");
    return at == std::string::npos ? "" : r.output.substr(at + 7, 17);
  }
  // The VIP answers from exactly one host: its name, and the MAC the client
  // resolved is that host's.
  // `other_alive` false: the other host is dead (its namespace may still
  // hold the address it had, unreachable, as a powered-off machine would).
  bool ServedOnlyBy(int i, bool other_alive = true) {
    std::string ns = Ns(i == 0 ? "primary" : "secondary");
    std::string other = Ns(i == 0 ? "secondary" : "primary");
    return WaitFor(20000, [&] {
      return ClientProbe() == (i == 0 ? "lab-primary" : "lab-secondary") &&
             ClientVipMac() == Mac(ns) && HasVip(ns) && (!other_alive || !HasVip(other));
    });
  }
  void Link(const std::string& ns, const std::string& dev, const char* state) {
    auto r = RunCommand({"ip", "-n", ns, "link", "set", dev, state});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Cuts primary <-> secondary (both links) while both still reach the
  // managed hosts and the client.
  void Partition(bool on) {
    const char* verb = on ? "add" : "del";
    auto a = RunCommand({"ip", "-n", Ns("primary"), "route", verb, "blackhole", "198.18.0.2/32"});
    auto b = RunCommand({"ip", "-n", Ns("secondary"), "route", verb, "blackhole", "198.18.0.1/32"});
    ASSERT_EQ(a.exit_code + b.exit_code, 0) << a.output << b.output;
    Link(Ns("primary"), "xo0", on ? "down" : "up");
  }

  std::string dir_;
  json lab_;
};

class NetnsNoWitnessTest : public NetnsTest {
 protected:
  bool UseWitnesses() const override { return false; }
};

// /store replicated over the crossover link; no witnesses, so a cut between
// the hosts makes two actives (a split brain of the data).
class NetnsSplitBrainTest : public NetnsTest {
 protected:
  bool UseWitnesses() const override { return false; }
  bool UseReplication() const override { return true; }
  json Repl(int i) { return HostStatus(Config(i))["replication"]; }
  bool InSync() {
    json a = Repl(0), b = Repl(1);
    return a.is_object() && b.is_object() && a.value("replication", "") == "Established" &&
           b.value("replication", "") == "Established" && a.value("disk", "") == "UpToDate" &&
           b.value("disk", "") == "UpToDate" && a.value("generations", "") == b.value("generations", "");
  }
  void Fill(int i, const std::string& prefix, uint64_t seed) {
    lab::FillOptions fo;
    fo.config = Config(i);
    fo.files = 2;
    fo.bytes = 300'000;
    fo.prefix = prefix;
    fo.seed = seed;
    auto r = lab::StoreFill(fo);
    ASSERT_TRUE(r.ok()) << r.status().message();
  }
  // Every byte of what Fill(prefix, seed) wrote, on host i.
  bool HasFill(int i, const std::string& prefix, uint64_t seed) {
    std::string store = lab_["hosts"][static_cast<size_t>(i)]["store_dir"];
    for (int f = 0; f < 2; ++f) {
      std::ifstream in(store + "/" + prefix + std::to_string(f) + ".dat", std::ios::binary);
      std::string d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (d.size() != 300'000) return false;
      for (uint64_t k = 0; k < d.size(); ++k) {
        if (static_cast<uint8_t>(d[k]) != lab::FillByte(seed, f, k)) return false;
      }
    }
    return true;
  }
};

// /store replicated and the collector on the VIP (10514/tcp+udp, 12514 RELP,
// 12055 NetFlow), with witnesses.
class NetnsCollectorTest : public NetnsTest {
 protected:
  bool UseReplication() const override { return true; }
  json Collector(int i) {
    json s = HostStatus(Config(i));
    return s.is_object() && s.contains("collector") ? s["collector"] : json::object();
  }
};

TEST_F(NetnsTest, HostDeathMovesTheVipToTheSecondary) {
  ASSERT_TRUE(ClientServedBy("lab-primary"));
  EXPECT_TRUE(HasVip(Ns("primary")));
  EXPECT_FALSE(HasVip(Ns("secondary")));
  // Power loss: the daemon dies and the host drops off both links.
  ASSERT_EQ(kill(Pid(0), SIGKILL), 0);
  Link(Ns("primary"), "eth0", "down");
  Link(Ns("primary"), "xo0", "down");
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  EXPECT_TRUE(HasVip(Ns("secondary")));
  EXPECT_TRUE(ClientServedBy("lab-secondary")) << "gratuitous ARP should repoint the client";
  // Power back: the restarted daemon first removes the VIP it does not own,
  // then rejoins as standby.
  Link(Ns("primary"), "eth0", "up");
  Link(Ns("primary"), "xo0", "up");
  ASSERT_TRUE(lab::StartHost(dir_, "primary").ok());
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(0) == "STANDBY"; }));
  EXPECT_FALSE(HasVip(Ns("primary")));
  EXPECT_TRUE(ServedOnlyBy(1)) << "the client's ARP entry points at the new active";
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(StatusOf(1), "ACTIVE") << "no failback";
}

TEST_F(NetnsTest, HungActiveIsReplacedAndRemovesItsAliasWhenItResumes) {
  ASSERT_TRUE(ServedOnlyBy(0));
  int pid = Pid(0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(0) == "STANDBY"; }));
  EXPECT_TRUE(ServedOnlyBy(1));
}

TEST_F(NetnsTest, CrossoverLossWithManagementHeartbeatsIsNoFailover) {
  ASSERT_TRUE(ServedOnlyBy(0));
  Link(Ns("primary"), "xo0", "down");
  EXPECT_TRUE(WaitFor(5000, [&] {
    return LocalOf(HostStatus(Config(1)))["heartbeat"].value("paths_up", -1) == 1;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // three timeouts
  EXPECT_EQ(StatusOf(0), "ACTIVE");
  EXPECT_EQ(StatusOf(1), "STANDBY");
  EXPECT_TRUE(ServedOnlyBy(0));
}

TEST_F(NetnsTest, ServiceCrashIsRestartedWithoutFailover) {
  ASSERT_TRUE(ServedOnlyBy(0));
  int service = LocalOf(HostStatus(Config(0)))["services"][0]["pid"];
  ASSERT_EQ(kill(service, SIGKILL), 0);
  EXPECT_TRUE(WaitFor(5000, [&] {
    return LocalOf(HostStatus(Config(0)))["services"][0].value("restarts", 0) == 1;
  }));
  EXPECT_TRUE(ServedOnlyBy(0));
  EXPECT_EQ(StatusOf(1), "STANDBY");
}

TEST_F(NetnsTest, OfflineOnlineAndGivebackMoveTheVip) {
  ASSERT_TRUE(ServedOnlyBy(0));
  auto r = RunCommand({BinDir() + "/ha", "offline", "--config", Config(0)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(ServedOnlyBy(1));
  r = RunCommand({BinDir() + "/ha", "online", "--config", Config(0)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(0) == "STANDBY"; }));
  r = RunCommand({BinDir() + "/ha", "giveback", "--config", Config(1)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(ServedOnlyBy(0));
}

TEST_F(NetnsTest, ManagementLinkLossIsAControlledFailoverOverTheCrossover) {
  ASSERT_TRUE(ClientServedBy("lab-primary"));
  // The primary loses its management network; heartbeats continue on the
  // crossover link, so the secondary is asked to test its own reachability
  // of the managed hosts, passes, and takes over (R-NC-2, R-HB-2).
  Link(Ns("primary"), "eth0", "down");
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; })) << Reason(0);
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(0) == "STANDBY"; }));
  EXPECT_NE(Reason(0).find("controlled failover"), std::string::npos) << Reason(0);
  EXPECT_TRUE(WaitFor(5000, [&] {
    return LocalOf(HostStatus(Config(1)))["heartbeat"].value("paths_up", -1) == 1;
  })) << "only the crossover path is heard";
  EXPECT_TRUE(ServedOnlyBy(1));
}

TEST_F(NetnsTest, PlannedTakeoverMovesTheVip) {
  ASSERT_TRUE(ClientServedBy("lab-primary"));
  auto r = RunCommand({BinDir() + "/ha", "takeover", "--config", Config(1)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(ServedOnlyBy(1));
}

// R-NC-4: the hosts cannot hear each other but the witnesses hear both: the
// standby must not become a second active.
TEST_F(NetnsTest, PartitionBetweenHostsWithWitnessesIsNoSecondActive) {
  ASSERT_TRUE(ServedOnlyBy(0));
  Partition(true);
  EXPECT_TRUE(WaitFor(5000, [&] { return Reason(1).find("witness") != std::string::npos; }))
      << Reason(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // four timeouts
  EXPECT_EQ(StatusOf(1), "STANDBY") << Reason(1);
  EXPECT_EQ(StatusOf(0), "ACTIVE");
  EXPECT_TRUE(ServedOnlyBy(0));
  Partition(false);
  EXPECT_TRUE(WaitFor(5000, [&] {
    return LocalOf(HostStatus(Config(1)))["heartbeat"].value("up", false);
  }));
  EXPECT_EQ(StatusOf(1), "STANDBY");
  // A real death still fails over with witnesses: they stop hearing it too.
  ASSERT_EQ(kill(Pid(0), SIGKILL), 0);
  Link(Ns("primary"), "eth0", "down");
  Link(Ns("primary"), "xo0", "down");
  EXPECT_TRUE(ServedOnlyBy(1, /*other_alive=*/false));
}

// R-NC-4, the active's side: the primary hangs, the secondary takes over,
// and the primary resumes behind a cut between the hosts. It cannot hear the
// new active, but the witnesses can: it steps down instead of staying a
// second active until the cut heals.
TEST_F(NetnsTest, ResumedActiveBehindACutStepsDownThroughTheWitnesses) {
  ASSERT_TRUE(ServedOnlyBy(0));
  int pid = Pid(0);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  Partition(true);  // before the takeover: no ACTIVE heartbeat of the new active reaches it
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(0) == "STANDBY"; })) << Reason(0);
  EXPECT_NE(Reason(0).find("witness"), std::string::npos) << Reason(0);
  std::ifstream log(std::filesystem::path(Config(0)).parent_path() / "tandemd.log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("a witness hears the peer ACTIVE"), std::string::npos);
  EXPECT_TRUE(ServedOnlyBy(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(StatusOf(0), "STANDBY") << "it must not take over again while cut off";
  EXPECT_EQ(StatusOf(1), "ACTIVE");
  Partition(false);
}

// Without witnesses the same partition makes two actives (what R-NC-4
// prevents); when it heals, the newer epoch keeps the role.
TEST_F(NetnsNoWitnessTest, PartitionWithoutWitnessesMakesTwoActivesUntilItHeals) {
  ASSERT_TRUE(ServedOnlyBy(0));
  Partition(true);
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(1) == "ACTIVE"; }));
  EXPECT_EQ(StatusOf(0), "ACTIVE");
  Partition(false);
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(0) == "STANDBY"; }));
  EXPECT_TRUE(ServedOnlyBy(1));
}

TEST_F(NetnsSplitBrainTest, BothActiveAcrossACutWriteAndTheHealedSplitBrainIsMerged) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  Fill(0, "events/before-", 1);
  Partition(true);
  ASSERT_TRUE(WaitFor(5000, [&] { return StatusOf(1) == "ACTIVE"; }));
  ASSERT_EQ(StatusOf(0), "ACTIVE");
  // Both write while they cannot see each other: segments named per writer.
  Fill(0, "events/lab-primary-", 2);
  Fill(1, "events/lab-secondary-", 3);
  EXPECT_FALSE(Repl(0)["protected"].get<bool>());
  Partition(false);
  // The HA core keeps one active; the replicas detect the split brain on
  // reconnect and, every change being an append-only segment, merge it.
  ASSERT_TRUE(WaitFor(15000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  int split_brains = Repl(0)["counters"].value("split_brains", 0) + Repl(1)["counters"].value("split_brains", 0);
  EXPECT_GE(split_brains, 1) << "the split brain was not detected";
  EXPECT_NE(Repl(0).value("split_brain", "") + Repl(1).value("split_brain", ""), "") << "not reported";
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(HasFill(i, "events/before-", 1)) << "host " << i;
    EXPECT_TRUE(HasFill(i, "events/lab-primary-", 2)) << "host " << i << ": the primary's records were lost";
    EXPECT_TRUE(HasFill(i, "events/lab-secondary-", 3)) << "host " << i << ": the secondary's records were lost";
  }
}

// A client in its own namespace sends numbered events over RELP to the VIP;
// the active host dies (daemon killed, links down) while a window of them is
// in flight. Every event acknowledged before the death ("200 OK": durable on
// both hosts) is found by `tandem search` on the new active, which then
// collects on the VIP itself.
TEST_F(NetnsCollectorTest, EveryEventAcknowledgedBeforeTheActiveDiesIsFoundOnTheNewActive) {
  ASSERT_TRUE(WaitFor(10000, [&] { return Collector(0).value("running", false); })) << Collector(0).dump();
  const int relp_port = lab_["ports"]["relp"];
  RelpClient relp("198.18.0.10", relp_port, Ns("client"));
  ASSERT_TRUE(relp.connected());
  ASSERT_TRUE(relp.Open());
  auto event = [](int i) { return "<13>1 - client itest - - - netns-relp-" + std::to_string(100000 + i); };
  std::map<int, int> txnr_to_event;
  // Windows of 100 transactions (rsyslog's default window is 128; the
  // collector's limit is 1024 unanswered).
  constexpr int kWindow = 100, kAckedFirst = 2000;
  for (int i = 0; i < kAckedFirst; i += kWindow) {
    for (int k = i; k < i + kWindow; ++k) txnr_to_event[relp.Send(event(k))] = k;
    relp.WaitRsps(30000, [&] { return relp.rsps().size() >= static_cast<size_t>(i + kWindow) + 1; });
    ASSERT_EQ(relp.rsps().size(), static_cast<size_t>(i + kWindow) + 1)
        << "not acked before the kill; eof " << relp.eof() << " " << Collector(0).dump();
  }
  // A window in flight, then power loss.
  for (int k = kAckedFirst; k < kAckedFirst + kWindow; ++k) txnr_to_event[relp.Send(event(k))] = k;
  ASSERT_EQ(kill(Pid(0), SIGKILL), 0);
  Link(Ns("primary"), "eth0", "down");
  Link(Ns("primary"), "xo0", "down");
  relp.WaitRsps(1000, [] { return false; });  // rsps already on the way
  std::set<int> acked;
  for (const auto& [t, rsp] : relp.rsps()) {
    if (txnr_to_event.count(t) && rsp.rfind("200", 0) == 0) acked.insert(txnr_to_event[t]);
  }
  ASSERT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  ASSERT_TRUE(WaitFor(10000, [&] { return Collector(1).value("running", false); })) << Collector(1).dump();
  std::set<int> found;
  json all = SearchJson(Config(1), "events", {"--contains", "netns-relp-", "--limit", "100000"});
  ASSERT_TRUE(all.is_object());
  for (const json& e : all["records"]) {
    std::string m = e.value("message", "");
    size_t at = m.find("netns-relp-");
    if (at != std::string::npos) found.insert(std::atoi(m.c_str() + at + 11) - 100000);
  }
  size_t lost = 0;
  for (int i : acked) lost += found.count(i) == 0;
  EXPECT_EQ(lost, 0u) << "acknowledged events missing on the new active (of " << acked.size() << ")";
  std::cout << "netns collector: " << acked.size() << " events acknowledged before/at the kill, "
            << found.size() << " found on the new active\n";
  // The new active collects on the VIP: a new session from the client.
  RelpClient again("198.18.0.10", relp_port, Ns("client"));
  ASSERT_TRUE(again.connected());
  ASSERT_TRUE(again.Open());
  int t = again.Send("<13>1 - client itest - - - netns-after-failover");
  again.WaitRsps(10000, [&] { return again.rsps().count(t) != 0; });
  ASSERT_TRUE(again.rsps().count(t));
  EXPECT_EQ(again.rsps().at(t).rfind("200", 0), 0u) << again.rsps().at(t);
  EXPECT_EQ(SearchCount(Config(1), "events", {"--contains", "netns-after-failover"}), 1);
}

}  // namespace
}  // namespace tandem::itest
