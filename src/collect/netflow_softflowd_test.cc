// FlowDecoder against a real exporter: softflowd (Debian package
// `softflowd`) reads a small pcap file this test writes (TCP and UDP flows
// over IPv4, a UDP flow over IPv6, timestamped a few seconds ago), exports
// it as NetFlow v5, v9 and IPFIX to a UDP socket on 127.0.0.1, and the
// decoded flows must match what the pcap holds: addresses, ports, protocol,
// packets, bytes (IP lengths) and times. Skipped when softflowd is missing.
// Every wait is bounded (kExportWaitMs) and softflowd is killed if the test
// ends while it still runs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "collect/netflow.h"
#include "collect/test_pcap.h"

extern char** environ;

namespace tandem::collect {
namespace {

using store::FlowRecord;
using Bytes = std::vector<uint8_t>;
using SteadyClock = std::chrono::steady_clock;

constexpr char kSoftflowd[] = "/usr/sbin/softflowd";
constexpr int kExportWaitMs = 10000;   // softflowd's whole run, at most
constexpr int kQuietAfterExitMs = 300;  // datagrams still in the socket buffer
constexpr size_t kDatagramsMax = 1000;  // more means something is very wrong
constexpr int64_t kTimeSlackUs = 1100000;  // v5/v9 header times are whole seconds

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using pcaptest::Child;
using pcaptest::ControlPump;
using pcaptest::MakePcap;
using pcaptest::Packets;

// ---------------------------------------------------------------------------
// A UDP socket on 127.0.0.1 and a softflowd child process.

class UdpSink {
 public:
  UdpSink() {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int buf = 4 << 20;
    (void)setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~UdpSink() {
    if (fd_ >= 0) close(fd_);
  }
  UdpSink(const UdpSink&) = delete;
  UdpSink& operator=(const UdpSink&) = delete;
  uint16_t port() const { return port_; }

  // One datagram within `timeout_ms`; false on timeout. `from` = "addr:port".
  bool Receive(int timeout_ms, Bytes* d, std::string* from) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    d->resize(65536);
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ssize_t n = recvfrom(fd_, d->data(), d->size(), 0, reinterpret_cast<sockaddr*>(&a), &len);
    if (n < 0) return false;
    d->resize(static_cast<size_t>(n));
    char ip[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    *from = std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
    return true;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tandem_softflowd_XXXXXX";
    const char* p = mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p ? p : "/tmp";
  }
  ~TempDir() {
    for (const char* f : {"/in.pcap", "/ctl", "/pid"}) unlink((path_ + f).c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool WriteFile(const std::string& path, const Bytes& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

// Runs softflowd over `pcap` with `extra` options, decodes everything it
// sends; fails the test on any decode error or a softflowd failure.
std::vector<FlowRecord> RunSoftflowd(const Bytes& pcap, const std::vector<std::string>& extra,
                                     FlowDecoder* dec) {
  TempDir dir;
  std::string pcap_path = dir.path() + "/in.pcap";
  EXPECT_TRUE(WriteFile(pcap_path, pcap));
  UdpSink sink;
  std::vector<std::string> argv = {kSoftflowd, "-d", "-r", pcap_path,
                                   "-n", "127.0.0.1:" + std::to_string(sink.port()),
                                   "-c", dir.path() + "/ctl", "-p", dir.path() + "/pid"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ControlPump pump(dir.path() + "/ctl");  // outlives the child: see ControlPump
  Child child(argv);
  EXPECT_TRUE(child.started());
  std::vector<FlowRecord> flows;
  size_t datagrams = 0;
  auto deadline = SteadyClock::now() + std::chrono::milliseconds(kExportWaitMs);
  std::optional<SteadyClock::time_point> exited_at;
  int status = 0;
  while (SteadyClock::now() < deadline && datagrams < kDatagramsMax) {
    if (!exited_at && child.Exited(&status)) exited_at = SteadyClock::now();
    if (exited_at && SteadyClock::now() - *exited_at > std::chrono::milliseconds(kQuietAfterExitMs)) {
      break;
    }
    Bytes d;
    std::string from;
    if (!sink.Receive(50, &d, &from)) {
      if (!exited_at) pump.Kick();
      continue;
    }
    ++datagrams;
    Status st = dec->Decode(d, from, NowUs(), &flows);
    EXPECT_TRUE(st.ok()) << st.message();
  }
  EXPECT_TRUE(exited_at.has_value()) << "softflowd still running after " << kExportWaitMs << " ms";
  if (exited_at) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  }
  EXPECT_GT(datagrams, 0u);
  EXPECT_EQ(dec->counters().sets_skipped, 0u) << dec->last_skip_reason();
  return flows;
}

using FlowKey = std::tuple<std::string, std::string, uint16_t, uint16_t, uint8_t>;

void ExpectFlows(const std::vector<FlowRecord>& got, const std::vector<Packets>& want,
                 uint16_t version) {
  std::map<FlowKey, FlowRecord> by_key;
  for (const FlowRecord& f : got) {
    EXPECT_EQ(f.version, version);
    EXPECT_EQ(f.exporter.rfind("127.0.0.1:", 0), 0u) << f.exporter;
    FlowKey k{f.src, f.dst, f.src_port, f.dst_port, f.protocol};
    EXPECT_TRUE(by_key.emplace(k, f).second) << "duplicate flow " << f.src << " -> " << f.dst;
  }
  EXPECT_EQ(got.size(), want.size());
  for (const Packets& p : want) {
    SCOPED_TRACE(p.src + ":" + std::to_string(p.src_port) + " -> " + p.dst + ":" +
                 std::to_string(p.dst_port));
    auto it = by_key.find(FlowKey{p.src, p.dst, p.src_port, p.dst_port, p.protocol});
    ASSERT_NE(it, by_key.end()) << "flow missing";
    const FlowRecord& f = it->second;
    EXPECT_EQ(f.packets, static_cast<uint64_t>(p.count));
    EXPECT_EQ(f.bytes, p.count * p.ip_bytes());
    EXPECT_NEAR(static_cast<double>(f.start_us), static_cast<double>(p.first_us), kTimeSlackUs);
    EXPECT_NEAR(static_cast<double>(f.end_us), static_cast<double>(p.last_us()), kTimeSlackUs);
    EXPECT_LE(f.start_us, f.end_us);
  }
}

// Flows 20 s old: times that fell back to the export time would be off by
// far more than kTimeSlackUs, so the sysUptime arithmetic is really checked.
std::vector<Packets> TestFlows(bool with_v6) {
  int64_t t0 = (NowUs() - 20000000) / 1000 * 1000;
  std::vector<Packets> dirs = {
      {"10.1.0.1", "10.2.0.2", 40000, 80, 6, 5, 100, t0, 300000},         // client -> server
      {"10.2.0.2", "10.1.0.1", 80, 40000, 6, 3, 1000, t0 + 10000, 500000},  // server -> client
      {"10.1.0.3", "10.2.0.4", 5353, 53, 17, 4, 50, t0 + 2000000, 1500000},
      {"192.168.7.9", "172.16.0.1", 123, 123, 17, 1, 48, t0 + 3000000, 0},
  };
  if (with_v6) {
    dirs.push_back({"2001:db8::1", "2001:db8:1::53", 34567, 53, 17, 3, 60, t0 + 1000000, 700000});
  }
  return dirs;
}

bool HaveSoftflowd() { return access(kSoftflowd, X_OK) == 0; }

TEST(NetflowSoftflowd, NetflowV5) {
  if (!HaveSoftflowd()) GTEST_SKIP() << kSoftflowd << " not installed (Debian: softflowd)";
  std::vector<Packets> dirs = TestFlows(false);
  FlowDecoder dec;
  std::vector<FlowRecord> got = RunSoftflowd(MakePcap(dirs), {"-v", "5"}, &dec);
  ExpectFlows(got, dirs, 5);
}

TEST(NetflowSoftflowd, NetflowV9) {
  if (!HaveSoftflowd()) GTEST_SKIP() << kSoftflowd << " not installed (Debian: softflowd)";
  std::vector<Packets> dirs = TestFlows(true);
  FlowDecoder dec;
  std::vector<FlowRecord> got = RunSoftflowd(MakePcap(dirs), {"-v", "9", "-6"}, &dec);
  ExpectFlows(got, dirs, 9);
  EXPECT_GT(dec.counters().templates_added, 0u);
  EXPECT_EQ(dec.counters().times_unknown, 0u);
}

TEST(NetflowSoftflowd, Ipfix) {
  if (!HaveSoftflowd()) GTEST_SKIP() << kSoftflowd << " not installed (Debian: softflowd)";
  std::vector<Packets> dirs = TestFlows(true);
  FlowDecoder dec;
  std::vector<FlowRecord> got = RunSoftflowd(MakePcap(dirs), {"-v", "10", "-6"}, &dec);
  ExpectFlows(got, dirs, 10);
  EXPECT_GT(dec.counters().templates_added, 0u);
  EXPECT_EQ(dec.counters().times_unknown, 0u);
}

TEST(NetflowSoftflowd, IpfixAbsoluteMilliseconds) {
  if (!HaveSoftflowd()) GTEST_SKIP() << kSoftflowd << " not installed (Debian: softflowd)";
  std::vector<Packets> dirs = TestFlows(true);
  FlowDecoder dec;
  std::vector<FlowRecord> got =
      RunSoftflowd(MakePcap(dirs), {"-v", "10", "-6", "-A", "milli"}, &dec);
  ExpectFlows(got, dirs, 10);
  EXPECT_EQ(dec.counters().times_unknown, 0u);
}

}  // namespace
}  // namespace tandem::collect
