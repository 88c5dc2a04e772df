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

// ---------------------------------------------------------------------------
// A pcap file (libpcap format 2.4, Ethernet link type), built in memory.

class Pcap {
 public:
  Pcap() {
    Le32(0xa1b2c3d4);  // magic, microsecond timestamps
    Le16(2);
    Le16(4);
    Le32(0);      // thiszone
    Le32(0);      // sigfigs
    Le32(65535);  // snaplen
    Le32(1);      // LINKTYPE_ETHERNET
  }
  void Packet(int64_t time_us, const Bytes& frame) {
    Le32(static_cast<uint64_t>(time_us / 1000000));
    Le32(static_cast<uint64_t>(time_us % 1000000));
    Le32(frame.size());
    Le32(frame.size());
    b_.insert(b_.end(), frame.begin(), frame.end());
  }
  const Bytes& bytes() const { return b_; }

 private:
  void Le16(uint64_t v) {
    for (int i = 0; i < 2; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void Le32(uint64_t v) {
    for (int i = 0; i < 4; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  Bytes b_;
};

void Be16(Bytes* b, uint64_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}

uint16_t Ipv4Checksum(const uint8_t* h, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(h[i] << 8 | h[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// One direction of one flow, as the pcap will carry it.
struct Packets {
  std::string src, dst;
  uint16_t src_port = 0, dst_port = 0;
  uint8_t protocol = 0;  // 6 or 17
  int count = 0;
  size_t payload_bytes = 0;
  int64_t first_us = 0;  // packet i at first_us + i * gap_us
  int64_t gap_us = 0;
  bool v6() const { return src.find(':') != std::string::npos; }
  size_t l4_bytes() const { return (protocol == 6 ? 20 : 8) + payload_bytes; }
  // What softflowd counts per packet: the IP datagram length.
  uint64_t ip_bytes() const { return (v6() ? 40 : 20) + l4_bytes(); }
  int64_t last_us() const { return first_us + (count - 1) * gap_us; }
};

Bytes Frame(const Packets& p, int i) {
  Bytes f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};  // dst, src MAC
  Be16(&f, p.v6() ? 0x86dd : 0x0800);
  int family = p.v6() ? AF_INET6 : AF_INET;
  size_t alen = p.v6() ? 16 : 4;
  uint8_t src[16], dst[16];
  EXPECT_EQ(inet_pton(family, p.src.c_str(), src), 1) << p.src;
  EXPECT_EQ(inet_pton(family, p.dst.c_str(), dst), 1) << p.dst;
  size_t ip_at = f.size();
  if (p.v6()) {
    f.insert(f.end(), {0x60, 0, 0, 0});
    Be16(&f, p.l4_bytes());
    f.push_back(p.protocol);
    f.push_back(64);  // hop limit
  } else {
    f.insert(f.end(), {0x45, 0});
    Be16(&f, p.ip_bytes());
    Be16(&f, static_cast<uint64_t>(i));  // id
    f.insert(f.end(), {0x40, 0, 64, p.protocol, 0, 0});
  }
  f.insert(f.end(), src, src + alen);
  f.insert(f.end(), dst, dst + alen);
  if (!p.v6()) {
    uint16_t sum = Ipv4Checksum(&f[ip_at], 20);
    f[ip_at + 10] = static_cast<uint8_t>(sum >> 8);
    f[ip_at + 11] = static_cast<uint8_t>(sum);
  }
  Be16(&f, p.src_port);
  Be16(&f, p.dst_port);
  if (p.protocol == 6) {
    f.insert(f.end(), {0, 0, 0, static_cast<uint8_t>(i), 0, 0, 0, 0});  // seq, ack
    f.insert(f.end(), {0x50, 0x18});                                    // 20 bytes, PSH|ACK
    f.insert(f.end(), {0xff, 0xff, 0, 0, 0, 0});                        // window, sum, urg
  } else {
    Be16(&f, p.l4_bytes());
    Be16(&f, 0);
  }
  f.insert(f.end(), p.payload_bytes, static_cast<uint8_t>('a' + i));
  return f;
}

// All packets of all directions, in time order.
Bytes MakePcap(const std::vector<Packets>& dirs) {
  std::vector<std::tuple<int64_t, size_t, int>> order;  // time, direction, index
  for (size_t d = 0; d < dirs.size(); ++d) {
    for (int i = 0; i < dirs[d].count; ++i) {
      order.emplace_back(dirs[d].first_us + i * dirs[d].gap_us, d, i);
    }
  }
  std::sort(order.begin(), order.end());
  Pcap pcap;
  for (const auto& [t, d, i] : order) pcap.Packet(t, Frame(dirs[d], i));
  return pcap.bytes();
}

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

// Owns a child process: killed (SIGKILL) and reaped when still running at
// destruction, so a failed assertion never leaves softflowd behind.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& s : argv) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);  // stats
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool started() const { return pid_ > 0; }
  // True once the child has exited (then `*status` is its wait status).
  bool Exited(int* status) {
    if (pid_ <= 0) return true;
    if (waitpid(pid_, status, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }

 private:
  pid_t pid_ = -1;
};

// softflowd 1.1.0 in -r mode tests the control socket with a pollfd it
// never initialised (only live capture calls poll), so depending on stack
// garbage it may block in accept() before reading the file. This keeps it
// going: each Kick() queues one connection carrying "statistics" (harmless)
// and keeps it open, so softflowd's reply never hits a closed socket (it does
// not ignore SIGPIPE). At most kConnectionsMax connections.
class ControlPump {
 public:
  static constexpr size_t kConnectionsMax = 64;
  explicit ControlPump(std::string path) : path_(std::move(path)) {}
  ~ControlPump() {
    for (int fd : fds_) close(fd);
  }
  ControlPump(const ControlPump&) = delete;
  ControlPump& operator=(const ControlPump&) = delete;
  void Kick() {
    if (fds_.size() >= kConnectionsMax) return;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path_.size() >= sizeof a.sun_path) return;
    std::memcpy(a.sun_path, path_.c_str(), path_.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return;
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);  // not listening yet (or gone)
      return;
    }
    static constexpr char kCommand[] = "statistics\n";
    (void)!write(fd, kCommand, sizeof kCommand - 1);
    fds_.push_back(fd);
  }

 private:
  std::string path_;
  std::vector<int> fds_;
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
