// Helpers for tests that feed a real exporter (softflowd): a pcap file
// writer (flows described as packet trains, `Packets`, written as a libpcap
// 2.4 file of Ethernet frames carrying IPv4/IPv6 TCP or UDP), a child
// process owner and softflowd's control-socket workaround. Shared by
// src/collect/netflow_softflowd_test.cc and the integration tests
// (test/integration/collection_clients_test.cc). Test-only: uses gtest.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace tandem::collect::pcaptest {

using Bytes = std::vector<uint8_t>;

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

inline void Be16(Bytes* b, uint64_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}

inline uint16_t Ipv4Checksum(const uint8_t* h, size_t n) {
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

inline Bytes Frame(const Packets& p, int i) {
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
inline Bytes MakePcap(const std::vector<Packets>& dirs) {
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
// A child process (softflowd, nfcapd).

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
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
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

}  // namespace tandem::collect::pcaptest
