// The collector against real clients, in a real two-host lab (loopback,
// protocol C replication, the collector on the VIP):
//
// - syslog-ng's `loggen` (unpacked by scripts/install-deps.sh, see
//   LoggenRoot) sends 20,000 events over TCP (RFC 6587 octet counting) and
//   2,000 over UDP: every TCP event is stored, on both hosts;
// - rsyslogd forwards numbered events with omfwd over plain TCP (RFC 6587
//   octet-counted framing): every one is stored;
// - softflowd exports flows of a pcap this test writes (NetFlow v5 and
//   IPFIX); a UDP tee hands every export datagram both to the lab and to
//   nfcapd, and `tandem search flows` must match `nfdump` flow by flow;
// - the capacity guard end to end: the hosts' store directories are small
//   tmpfs mounts; filled past the stop mark, TCP is not read, RELP is
//   answered "500", UDP drops are counted, searches answer, status says why
//   and nothing fails over; freed, collection resumes by itself.
//
// Every external tool is optional: a missing one skips its test with a
// message saying what to install.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "collect/test_pcap.h"
#include "lab/lab.h"
#include "lab/store_tool.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class CollectionClientsTest : public ::testing::Test {
 protected:
  // Options a subclass may change before the lab starts.
  virtual void Configure(lab::LabOptions*) {}
  void SetUp() override {
    dir_ = MakeTempDir("tandem-clients");
    lab::LabOptions o = FastLabOptions(dir_);
    // Not the 500 ms heartbeat timeout of the fast profile: these tests load
    // the active host on purpose (loggen at full speed on a shared two-core
    // machine), and none of them is about failover — the capacity test even
    // checks that there is none.
    o.heartbeat_interval_ms = 250;
    o.heartbeat_timeout_ms = 3000;
    o.replication = true;
    Configure(&o);
    if (HasFatalFailure() || IsSkipped()) return;
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
    up_ = true;
    ASSERT_TRUE(WaitFor(10000, [&] { return Collector(0).value("running", false); }))
        << Collector(0).dump();
  }
  void TearDown() override {
    if (up_) {
      if (HasFailure()) std::cerr << LabLogTails(dir_);
      EXPECT_TRUE(lab::Down(dir_).ok());
    }
    Cleanup();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  virtual void Cleanup() {}
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  std::string Vip() const { return lab_["vip"]; }
  int Port(const char* which) const { return lab_["ports"][which].get<int>(); }
  std::string StatusOf(int i) { return LocalOf(HostStatus(Config(i))).value("status", ""); }
  json Collector(int i) {
    json s = HostStatus(Config(i));
    return s.is_object() && s.contains("collector") ? s["collector"] : json::object();
  }
  int64_t Events(int i, const std::string& contains) {
    return SearchCount(Config(i), "events", {"--contains", contains});
  }

  std::string dir_;
  json lab_;
  bool up_ = false;
};

// ---------------------------------------------------------------------------
// loggen (syslog-ng)

// Where scripts/install-deps.sh unpacks syslog-ng-core (it conflicts with
// rsyslog as a package); $TANDEM_LOGGEN_ROOT overrides it.
std::string LoggenRoot() {
  const char* env = std::getenv("TANDEM_LOGGEN_ROOT");
  return env && *env ? env : "/opt/tandem-tools/syslog-ng";
}

// Runs loggen with its libraries and plugins from LoggenRoot(); returns its
// exit code and output, and the count it reports having sent (-1 if none).
CommandResult Loggen(const std::vector<std::string>& args, int64_t* sent) {
  std::string root = LoggenRoot();
  std::vector<std::string> argv = {"env", "LD_LIBRARY_PATH=" + root + "/usr/lib/syslog-ng",
                                   "SYSLOGNG_PREFIX=" + root + "/usr", root + "/usr/bin/loggen"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  *sent = -1;
  size_t at = r.output.rfind("count=");
  if (at != std::string::npos) *sent = std::atoll(r.output.c_str() + at + 6);
  return r;
}

constexpr int kLoggenTcpEvents = 20000;
constexpr int kLoggenUdpEvents = 2000;

TEST_F(CollectionClientsTest, LoggenOverTcpStoresEveryEventOnBothHosts) {
  if (access((LoggenRoot() + "/usr/bin/loggen").c_str(), X_OK) != 0) {
    GTEST_SKIP() << "loggen not found under " << LoggenRoot()
                 << " (scripts/install-deps.sh unpacks syslog-ng-core there; or set TANDEM_LOGGEN_ROOT)";
  }
  // TCP: RFC 5424 messages (-P) with octet-counting framing, one connection,
  // at most 20,000/s so the run stays short and bounded.
  int64_t sent = -1;
  auto r = Loggen({"--inet", "--stream", "--syslog-proto", "--size", "256", "--number",
                   std::to_string(kLoggenTcpEvents), "--rate", "20000", "--interval", "60", Vip(),
                   std::to_string(Port("syslog_tcp"))},
                  &sent);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(sent, kLoggenTcpEvents) << r.output;
  EXPECT_TRUE(WaitFor(30000, [&] { return Events(0, "seq: ") == kLoggenTcpEvents; }))
      << Events(0, "seq: ") << " " << Collector(0).dump();
  EXPECT_TRUE(WaitFor(10000, [&] { return Events(1, "seq: ") == kLoggenTcpEvents; }))
      << "the standby's replica has " << Events(1, "seq: ");
  // Every sequence number once (not a count that hides a loss behind a
  // duplicate).
  json all = SearchJson(Config(0), "events", {"--contains", "seq: ", "--limit", "100000"});
  ASSERT_TRUE(all.is_object());
  std::set<long> seqs;
  for (const json& e : all["records"]) {
    std::string m = e.value("message", "");
    size_t at = m.find("seq: ");
    if (at != std::string::npos) seqs.insert(std::atol(m.c_str() + at + 5));
  }
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kLoggenTcpEvents));
  EXPECT_EQ(*seqs.begin(), 0);
  EXPECT_EQ(*seqs.rbegin(), kLoggenTcpEvents - 1);

  // UDP (RFC 3164, one message per datagram): no acknowledgement, so only
  // what the collector read can be stored; on loopback at 2,000/s that is
  // normally all of it, and what it did not store must be counted dropped.
  r = Loggen({"--inet", "--dgram", "--size", "200", "--number", std::to_string(kLoggenUdpEvents),
              "--rate", "2000", "--interval", "60", Vip(), std::to_string(Port("syslog_udp"))},
             &sent);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(sent, kLoggenUdpEvents) << r.output << RunCommand({"ss", "-ulpn"}).output << Collector(0).dump();
  auto udp_accounted = [&] {
    json l = Collector(0)["listeners"]["syslog_udp"];
    int64_t stored = Events(0, "seq: ") - kLoggenTcpEvents;
    return l.is_object() && stored + l.value("udp_dropped", int64_t{0}) >= kLoggenUdpEvents;
  };
  EXPECT_TRUE(WaitFor(20000, udp_accounted)) << Collector(0).dump();
  int64_t udp_stored = Events(0, "seq: ") - kLoggenTcpEvents;
  EXPECT_GT(udp_stored, 0);
  EXPECT_LE(udp_stored, kLoggenUdpEvents);
  std::cout << "loggen: " << kLoggenTcpEvents << " TCP events sent and stored on both hosts; "
            << udp_stored << " of " << kLoggenUdpEvents << " UDP events stored\n";
}

// ---------------------------------------------------------------------------
// rsyslog over plain TCP

constexpr int kRsyslogTcpEvents = 5000;

TEST_F(CollectionClientsTest, RsyslogOverTcpStoresEveryEvent) {
  if (std::string why = RsyslogMissing(false); !why.empty()) GTEST_SKIP() << why;
  const std::string rs = dir_ + "/rsyslog";
  Rsyslogd rsyslogd(rs, "",
                    "action(type=\"omfwd\" target=\"" + Vip() + "\" port=\"" +
                        std::to_string(Port("syslog_tcp")) +
                        "\" protocol=\"tcp\" TCP_Framing=\"octet-counted\" template=\"fwd\" "
                        "queue.type=\"LinkedList\" queue.size=\"100000\" "
                        "action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")");
  ASSERT_TRUE(rsyslogd.started());
  ASSERT_TRUE(rsyslogd.WaitReady(10000)) << "rsyslogd did not open its socket; see " << rs;
  {
    std::ofstream lines(rs + "/lines");
    for (int i = 0; i < kRsyslogTcpEvents; ++i) lines << "omfwd-tcp-" << (100000 + i) << "\n";
  }
  auto r = RunCommand({"logger", "-d", "-u", rsyslogd.socket(), "-t", "omfwd", "-f", rs + "/lines"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(WaitFor(30000, [&] { return Events(0, "omfwd-tcp-") >= kRsyslogTcpEvents; }))
      << Events(0, "omfwd-tcp-") << " " << Collector(0).dump();
  json all = SearchJson(Config(0), "events", {"--contains", "omfwd-tcp-", "--limit", "100000"});
  ASSERT_TRUE(all.is_object());
  std::set<std::string> seen;
  for (const json& e : all["records"]) {
    std::string m = e.value("message", "");
    size_t at = m.find("omfwd-tcp-");
    if (at != std::string::npos) seen.insert(m.substr(at, 16));
    EXPECT_EQ(e.value("app", ""), "omfwd") << e.dump();
    EXPECT_EQ(e.value("format", ""), "rfc5424") << e.dump();
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kRsyslogTcpEvents)) << "events lost";
  EXPECT_EQ(all.value("total", 0), kRsyslogTcpEvents) << "events duplicated";
  EXPECT_TRUE(WaitFor(10000, [&] { return Events(1, "omfwd-tcp-") == kRsyslogTcpEvents; }))
      << "the standby's replica has " << Events(1, "omfwd-tcp-");
}

// ---------------------------------------------------------------------------
// softflowd -> (tee) -> the lab and nfcapd; `tandem search flows` vs nfdump

using collect::pcaptest::Child;
using collect::pcaptest::ControlPump;
using collect::pcaptest::Packets;

constexpr char kSoftflowd[] = "/usr/sbin/softflowd";
constexpr int kExportWaitMs = 15000;

// A UDP socket on 127.0.0.1 that forwards every datagram it receives to
// each target, from one socket: both decoders see the same exporter.
class UdpTee {
 public:
  UdpTee() {
    in_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    out_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int buf = 4 << 20;
    (void)setsockopt(in_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    in_port_ = BindEphemeral(in_, "127.0.0.1");
    out_port_ = BindEphemeral(out_, "127.0.0.1");
  }
  ~UdpTee() {
    close(in_);
    close(out_);
  }
  UdpTee(const UdpTee&) = delete;
  UdpTee& operator=(const UdpTee&) = delete;
  int in_port() const { return in_port_; }
  int out_port() const { return out_port_; }
  void AddTarget(const std::string& addr, int port) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr.c_str(), &to.sin_addr);
    targets_.push_back(to);
  }
  // Forwards what arrives within `ms`; returns the datagrams forwarded.
  int Pump(int ms) {
    int n = 0;
    pollfd p{in_, POLLIN, 0};
    while (poll(&p, 1, ms) == 1) {
      char buf[65536];
      ssize_t len = recv(in_, buf, sizeof buf, 0);
      if (len <= 0) break;
      for (const sockaddr_in& to : targets_) {
        sendto(out_, buf, static_cast<size_t>(len), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
      }
      ++n;
      // Paced: the receivers' socket buffers never overflow.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ms = 0;
    }
    return n;
  }

 private:
  int in_ = -1, out_ = -1, in_port_ = 0, out_port_ = 0;
  std::vector<sockaddr_in> targets_;
};

// `count` flows (each one direction of a TCP or UDP conversation) in
// 10.<net>.0.0/16 (and, with v6, 2001:db8:<net>::/48), 1..4 packets each,
// a minute ago.
std::vector<Packets> GeneratedFlows(int net, int count, bool v6) {
  int64_t t0 = (std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count() -
                60000000) /
               1000 * 1000;
  std::vector<Packets> out;
  for (int i = 0; i < count; ++i) {
    Packets p;
    bool six = v6 && i % 5 == 4;
    std::string n = std::to_string(net);
    p.src = six ? "2001:db8:" + n + "::" + std::to_string(i + 1) : "10." + n + ".1." + std::to_string(i % 250 + 1);
    p.dst = six ? "2001:db8:" + n + ":1::53" : "10." + n + ".2." + std::to_string(i / 250 + 1);
    p.src_port = static_cast<uint16_t>(20000 + i);
    p.dst_port = static_cast<uint16_t>(i % 2 ? 443 : 53);
    p.protocol = static_cast<uint8_t>(i % 2 ? 6 : 17);
    p.count = 1 + i % 4;
    p.payload_bytes = static_cast<size_t>(10 + (i * 37) % 900);
    p.first_us = t0 + i * 1000;
    p.gap_us = 200000;
    out.push_back(p);
  }
  return out;
}

using FlowKey = std::tuple<std::string, std::string, int, int, int>;
struct FlowCounts {
  uint64_t packets = 0, bytes = 0;
  std::string exporter_ip;
  int seen = 0;
};

// softflowd exports `pcap` (with `extra` options) through a tee to the lab's
// netflow port and to nfcapd; returns nfdump's flows and the tee's exporter
// port. Fails the test on any tool failure.
std::map<FlowKey, FlowCounts> ExportAndDecodeWithNfdump(const std::string& dir, const std::string& vip,
                                                        int netflow_port, const collect::pcaptest::Bytes& pcap,
                                                        const std::vector<std::string>& extra, int* exporter_port) {
  std::map<FlowKey, FlowCounts> out;
  std::filesystem::create_directories(dir + "/nfcapd");
  {
    std::ofstream f(dir + "/in.pcap", std::ios::binary);
    f.write(reinterpret_cast<const char*>(pcap.data()), static_cast<std::streamsize>(pcap.size()));
  }
  int nf_port = FreeUdpPort("127.0.0.1");
  Child nfcapd({"/usr/bin/nfcapd", "-b", "127.0.0.1", "-p", std::to_string(nf_port), "-w", dir + "/nfcapd",
                "-t", "3600"});
  EXPECT_TRUE(nfcapd.started());
  UdpTee tee;
  tee.AddTarget(vip, netflow_port);
  tee.AddTarget("127.0.0.1", nf_port);
  *exporter_port = tee.out_port();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // nfcapd binds its socket
  std::vector<std::string> argv = {kSoftflowd, "-d", "-r", dir + "/in.pcap", "-n",
                                   "127.0.0.1:" + std::to_string(tee.in_port()), "-c", dir + "/ctl",
                                   "-p", dir + "/pid"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  int datagrams = 0;
  {
    ControlPump pump(dir + "/ctl");
    Child softflowd(argv);
    EXPECT_TRUE(softflowd.started());
    int status = 0;
    bool exited = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kExportWaitMs);
    while (!exited && std::chrono::steady_clock::now() < deadline) {
      int n = tee.Pump(50);
      datagrams += n;
      if (n == 0) pump.Kick();
      exited = softflowd.Exited(&status);
    }
    datagrams += tee.Pump(300);
    EXPECT_TRUE(exited) << "softflowd still running after " << kExportWaitMs << " ms";
    EXPECT_TRUE(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  }
  EXPECT_GT(datagrams, 0);
  // nfcapd writes its file when it terminates.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  nfcapd.Signal(SIGTERM);
  int status = 0;
  EXPECT_TRUE(WaitFor(10000, [&] { return nfcapd.Exited(&status); })) << "nfcapd did not stop";
  auto r = RunCommand({"nfdump", "-R", dir + "/nfcapd", "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  json flows = json::parse(r.output, nullptr, false);
  EXPECT_TRUE(flows.is_array()) << r.output.substr(0, 2000);
  if (!flows.is_array()) return out;
  for (const json& f : flows) {
    if (f.value("type", "") != "FLOW") continue;
    std::string src = f.contains("src4_addr") ? f.value("src4_addr", "") : f.value("src6_addr", "");
    std::string dst = f.contains("dst4_addr") ? f.value("dst4_addr", "") : f.value("dst6_addr", "");
    FlowCounts& c = out[FlowKey{src, dst, f.value("src_port", 0), f.value("dst_port", 0), f.value("proto", 0)}];
    c.packets += f.value("in_packets", uint64_t{0});
    c.bytes += f.value("in_bytes", uint64_t{0});
    c.exporter_ip = f.contains("ip4_router") ? f.value("ip4_router", "") : f.value("ip6_router", "");
    ++c.seen;
  }
  return out;
}

// The lab's flows from one exporter, by 5-tuple.
std::map<FlowKey, FlowCounts> LabFlows(const std::string& config, const std::string& exporter, int version) {
  std::map<FlowKey, FlowCounts> out;
  json all = SearchJson(config, "flows", {"--limit", "100000"});
  if (!all.is_object()) return out;
  for (const json& f : all["records"]) {
    if (f.value("exporter", "") != exporter) continue;
    EXPECT_EQ(f.value("version", 0), version) << f.dump();
    FlowCounts& c = out[FlowKey{f.value("src", ""), f.value("dst", ""), f.value("src_port", 0),
                                f.value("dst_port", 0), f.value("protocol", 0)}];
    c.packets += f.value("packets", uint64_t{0});
    c.bytes += f.value("bytes", uint64_t{0});
    c.exporter_ip = exporter.substr(0, exporter.rfind(':'));
    ++c.seen;
  }
  return out;
}

void CompareWithNfdump(const std::map<FlowKey, FlowCounts>& lab, const std::map<FlowKey, FlowCounts>& nfdump,
                       const std::vector<Packets>& pcap) {
  EXPECT_EQ(nfdump.size(), pcap.size()) << "nfdump decoded a different number of flows than the pcap holds";
  EXPECT_EQ(lab.size(), nfdump.size());
  for (const auto& [k, want] : nfdump) {
    SCOPED_TRACE(std::get<0>(k) + ":" + std::to_string(std::get<2>(k)) + " -> " + std::get<1>(k) + ":" +
                 std::to_string(std::get<3>(k)) + " proto " + std::to_string(std::get<4>(k)));
    auto it = lab.find(k);
    ASSERT_NE(it, lab.end()) << "flow missing in the lab";
    EXPECT_EQ(it->second.packets, want.packets);
    EXPECT_EQ(it->second.bytes, want.bytes);
    EXPECT_EQ(it->second.exporter_ip, want.exporter_ip);
    EXPECT_EQ(it->second.seen, want.seen) << "records for this 5-tuple";
  }
  // And both against the pcap itself.
  for (const Packets& p : pcap) {
    auto it = nfdump.find(FlowKey{p.src, p.dst, p.src_port, p.dst_port, p.protocol});
    ASSERT_NE(it, nfdump.end()) << p.src << " -> " << p.dst << " missing in nfdump";
    EXPECT_EQ(it->second.packets, static_cast<uint64_t>(p.count));
    EXPECT_EQ(it->second.bytes, p.count * p.ip_bytes());
  }
}

constexpr int kFlowsPerExport = 300;

TEST_F(CollectionClientsTest, SoftflowdExportsMatchNfdumpFlowByFlow) {
  if (access(kSoftflowd, X_OK) != 0) GTEST_SKIP() << "softflowd not installed (Debian: softflowd)";
  if (access("/usr/bin/nfcapd", X_OK) != 0 || access("/usr/bin/nfdump", X_OK) != 0) {
    GTEST_SKIP() << "nfcapd/nfdump not installed (Debian: nfdump)";
  }
  struct Run {
    const char* name;
    int net;
    bool v6;
    std::vector<std::string> options;
    int version;
  };
  const Run runs[] = {{"v5", 31, false, {"-v", "5"}, 5}, {"ipfix", 32, true, {"-v", "10", "-6"}, 10}};
  for (const Run& run : runs) {
    SCOPED_TRACE(run.name);
    std::vector<Packets> flows = GeneratedFlows(run.net, kFlowsPerExport, run.v6);
    int exporter_port = 0;
    auto nf = ExportAndDecodeWithNfdump(dir_ + "/softflowd-" + run.name, Vip(), Port("netflow"),
                                        collect::pcaptest::MakePcap(flows), run.options, &exporter_port);
    std::string exporter = "127.0.0.1:" + std::to_string(exporter_port);
    std::map<FlowKey, FlowCounts> got;
    EXPECT_TRUE(WaitFor(20000, [&] {
      got = LabFlows(Config(0), exporter, run.version);
      return got.size() >= nf.size() && !nf.empty();
    })) << got.size() << " flows stored of " << nf.size() << "; " << Collector(0).dump();
    CompareWithNfdump(got, nf, flows);
    EXPECT_EQ(LabFlows(Config(1), exporter, run.version).size(), got.size()) << "not on the standby's replica";
  }
}

// ---------------------------------------------------------------------------
// The capacity guard, end to end, on a truly full file system.

constexpr int kStopPercent = 90;
constexpr int kResumePercent = 80;
constexpr uint64_t kStoreFsBytes = 16 << 20;

class CapacityGuardTest : public CollectionClientsTest {
 protected:
  // Each host's store on its own 16 MiB tmpfs.
  void Configure(lab::LabOptions* o) override {
    if (geteuid() != 0) GTEST_SKIP() << "mounting the store's tmpfs needs root";
    for (const char* h : {"primary", "secondary"}) {
      std::string m = dir_ + "/store-fs-" + h;
      std::filesystem::create_directories(m);
      std::string opts = "size=" + std::to_string(kStoreFsBytes) + ",mode=0755";
      ASSERT_EQ(mount("tandem-itest", m.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()), 0)
          << "mount tmpfs on " << m << ": " << std::strerror(errno);
      mounts_.push_back(m);
      o->store_dirs.push_back(m);
    }
    o->capacity_stop_percent = kStopPercent;
    o->capacity_resume_percent = kResumePercent;
  }
  void Cleanup() override {
    for (const std::string& m : mounts_) {
      if (umount2(m.c_str(), 0) != 0) {
        EXPECT_EQ(umount2(m.c_str(), MNT_DETACH), 0) << "umount " << m << ": " << std::strerror(errno);
      }
    }
  }
  double UsedPercent(const std::string& path) {
    struct statvfs v {};
    if (statvfs(path.c_str(), &v) != 0) return -1;
    double used = static_cast<double>(v.f_blocks - v.f_bfree);
    return 100.0 * used / (used + static_cast<double>(v.f_bavail));
  }
  std::string VolumeSocket(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["volume_socket"]; }
  std::string Capacity(int i) { return Collector(i)["capacity"].value("state", ""); }
  int64_t Counter(const char* listener, const char* name) {
    json l = Collector(0)["listeners"][listener];
    return l.is_object() ? l.value(name, int64_t{0}) : -1;
  }

  std::vector<std::string> mounts_;
};

TEST_F(CapacityGuardTest, FullStoreStopsCollectionWithoutFailoverAndResumesWhenFreed) {
  const std::string store = lab_["hosts"][0]["store_dir"];
  auto tcp_send = [&](int fd, const std::string& prefix, int n) {
    std::string data;
    for (int i = 0; i < n; ++i) data += OctetCounted("capacity", prefix + std::to_string(i));
    return WriteAll(fd, data);
  };
  int fd = ConnectTcp(Vip(), Port("syslog_tcp"));
  ASSERT_GE(fd, 0);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  ASSERT_TRUE(tcp_send(fd, "before-full-", 10));
  ASSERT_TRUE(WaitFor(10000, [&] { return Events(0, "before-full-") == 10; }));

  // Fill the store's file system (through the volume: both hosts' copies)
  // to 95%, past the stop mark.
  double used = UsedPercent(store);
  ASSERT_GE(used, 0);
  auto fill = static_cast<size_t>((95.0 - used) / 100.0 * kStoreFsBytes);
  ASSERT_TRUE(lab::StorePut(Config(0), "fill/blob", std::string(fill, 'x')).ok());
  ASSERT_GE(UsedPercent(store), kStopPercent);
  ASSERT_TRUE(WaitFor(10000, [&] { return Capacity(0) == "stopped"; })) << Collector(0).dump();
  std::string reason = Collector(0)["capacity"].value("reason", "");
  EXPECT_NE(reason.find("capacity_stop_percent"), std::string::npos) << reason;
  EXPECT_NE(reason.find(std::to_string(kStopPercent)), std::string::npos) << reason;
  auto ha = RunCommand({BinDir() + "/ha", "status", "--json", "--config", Config(0)});
  EXPECT_NE(ha.output.find("\"stopped\""), std::string::npos) << "ha status does not show it: " << ha.output;

  // TCP: not read (back-pressure); nothing of it is stored while full.
  const int64_t tcp_before = Counter("syslog_tcp", "received");
  ASSERT_TRUE(tcp_send(fd, "while-full-tcp-", 50));
  // RELP: every message answered 500 at once, none acked.
  RelpClient relp(Vip(), Port("relp"));
  ASSERT_TRUE(relp.connected());
  ASSERT_TRUE(relp.Open());
  std::vector<int> txnrs;
  for (int i = 0; i < 5; ++i) txnrs.push_back(relp.Send("<13>1 - itest capacity - - - while-full-relp-" + std::to_string(i)));
  relp.WaitRsps(10000, [&] { return relp.rsps().count(txnrs.back()) != 0; });
  for (int t : txnrs) {
    ASSERT_TRUE(relp.rsps().count(t)) << "no rsp for txnr " << t;
    EXPECT_EQ(relp.rsps().at(t).rfind("500", 0), 0u) << relp.rsps().at(t);
  }
  // UDP: read and dropped, counted.
  const int64_t dropped_before = Counter("syslog_udp", "udp_dropped");
  FakePeer udp("127.0.0.1");
  for (int i = 0; i < 100; ++i) {
    std::string m = "<13>1 - itest capacity - - - while-full-udp-" + std::to_string(i);
    udp.SendTo(Vip(), Port("syslog_udp"), std::vector<uint8_t>(m.begin(), m.end()));
  }
  EXPECT_TRUE(WaitFor(10000, [&] { return Counter("syslog_udp", "udp_dropped") >= dropped_before + 100; }))
      << Collector(0).dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // what would have been stored, would be
  EXPECT_EQ(Events(0, "while-full-"), 0) << "stored while the store was full";
  EXPECT_EQ(Counter("syslog_tcp", "received"), tcp_before) << "TCP was read while stopped";
  // Queries keep working, on both hosts; nobody failed over.
  EXPECT_EQ(Events(0, "before-full-"), 10);
  EXPECT_EQ(Events(1, "before-full-"), 10);
  EXPECT_EQ(StatusOf(0), "ACTIVE");
  EXPECT_EQ(StatusOf(1), "STANDBY");
  EXPECT_EQ(Capacity(0), "stopped");

  // Free the space: collection resumes by itself; the TCP events waiting in
  // the kernel are read and stored, RELP is acked again, UDP stored.
  json del = VolumeCall(VolumeSocket(0), {{"op", "delete"}, {"path", "fill/blob"}});
  ASSERT_TRUE(del.value("ok", false)) << del.dump();
  ASSERT_LT(UsedPercent(store), kResumePercent);
  EXPECT_TRUE(WaitFor(10000, [&] { return Capacity(0) == "ok"; })) << Collector(0).dump();
  EXPECT_TRUE(WaitFor(10000, [&] { return Events(0, "while-full-tcp-") == 50; }))
      << Events(0, "while-full-tcp-") << " " << Collector(0).dump();
  int t = relp.Send("<13>1 - itest capacity - - - after-full-relp");
  relp.WaitRsps(10000, [&] { return relp.rsps().count(t) != 0; });
  ASSERT_TRUE(relp.rsps().count(t));
  EXPECT_EQ(relp.rsps().at(t).rfind("200", 0), 0u) << relp.rsps().at(t);
  EXPECT_EQ(Events(0, "after-full-relp"), 1) << "acked but not found";
  std::string m = "<13>1 - itest capacity - - - after-full-udp";
  udp.SendTo(Vip(), Port("syslog_udp"), std::vector<uint8_t>(m.begin(), m.end()));
  EXPECT_TRUE(WaitFor(10000, [&] { return Events(0, "after-full-udp") == 1; }));
  EXPECT_EQ(Events(0, "while-full-relp-"), 0) << "a message answered 500 was stored";
  EXPECT_TRUE(WaitFor(10000, [&] { return Events(1, "while-full-tcp-") == 50; })) << "not on the standby";
  EXPECT_EQ(StatusOf(0), "ACTIVE");
  EXPECT_EQ(StatusOf(1), "STANDBY");
}

}  // namespace
}  // namespace tandem::itest
