// `tandem bench ingest`: syslog ingest measured end to end (docs/PERFORMANCE.md,
// "Ingest"). One in-process sender (C++ threads) sends the same numbered
// 256-byte RFC 5424 messages over UDP, TCP (LF framing, RFC 6587) and RELP
// (window of 1024 transactions) to:
//  - the collector of a loopback lab with replication (protocol C: stored =
//    durable on both hosts), and the same primary with its secondary stopped
//    (unreplicated: stored = after the local fdatasync);
//  - rsyslogd (imudp / imtcp / imrelp -> omfile), in the same run, with two
//    omfile set-ups: buffered (no sync) and synced at the end of each batch.
// The sustained rate is events stored / time, from the first byte sent until
// the target holds them all (Tandem: the collector's records_written;
// rsyslog: the lines in its omfile output; RELP also waits for every ack).
// UDP: a ladder of paced rates; rsyslog's UDP rate is the highest it takes
// without loss, and the collector's loss at each rate is reported.
// Then search latency over 10,000,000 stored events (a one-minute window, a
// text filter over the whole range) through the daemon's control socket,
// bytes stored per event, and tandemd's peak RSS (idle, after ingest).
// Every wait is bounded; the lab and rsyslogd are stopped on every path
// (errors and SIGINT/SIGTERM included) and the lab's stores removed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "api/control.h"
#include "collect/syslog.h"
#include "config/config.h"
#include "lab/bench.h"
#include "lab/lab.h"
#include "lab/store_tool.h"
#include "os/files.h"
#include "os/process.h"
#include "store/segment.h"

namespace tandem::lab {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMessageBytes = 256;             // every message, without framing
constexpr size_t kRelpWindow = 1024;              // RELP transactions in flight
constexpr int64_t kPollMs = 20;                   // polling the targets' counts
constexpr int64_t kSearchTimeoutMs = 120000;      // one search
constexpr int64_t kSettleMs = 120000;             // in sync / peer gone
constexpr int kSocketTimeoutS = 30;               // one blocked send/recv
constexpr double kIdleEndS = 3.0;                 // no progress this long: the run is over
constexpr int64_t kFillEventSpacingUs = 1000;     // search fill: 1000 events/s of record time
constexpr uint64_t kFillSegmentBytes = 256ull << 20;  // the collector's default segment_mb
constexpr int kSearchReps = 5;





double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}






uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// "YYYY-MM-DDTHH:MM:SS.mmmZ" for microseconds since the epoch.
std::string Rfc3339Ms(int64_t us) {
  time_t s = static_cast<time_t>(us / 1000000);
  tm t{};
  gmtime_r(&s, &t);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>((us / 1000) % 1000));
  return buf;
}

// The benchmark's messages: exactly kMessageBytes of RFC 5424 each,
//   <134>1 TIMESTAMP bench-sender tandem-bench 4242 ingest - seq=NNNNNNNNNN user=... (padding)
// numbered by `seq` (10 digits), everything else fixed for a given timestamp.
class Messages {
 public:
  explicit Messages(int64_t time_us) { SetTime(time_us); }

  void SetTime(int64_t time_us) {
    std::string head = "<134>1 " + Rfc3339Ms(time_us) + " bench-sender tandem-bench 4242 ingest - seq=";
    seq_at_ = head.size();
    std::string m = head + "0000000000 ";
    static const char kFill[] =
        "user=alice action=login src=10.1.2.3 dst=10.4.5.6 proto=tcp port=443 result=ok ";
    while (m.size() < kMessageBytes) m += kFill;
    m.resize(kMessageBytes - 1);
    m += '.';
    template_ = m;
  }

  // Writes message `seq` (kMessageBytes) at `out`.
  void Write(uint64_t seq, char* out) const {
    std::memcpy(out, template_.data(), kMessageBytes);
    for (int i = 9; i >= 0; --i) {
      out[seq_at_ + static_cast<size_t>(i)] = static_cast<char>('0' + seq % 10);
      seq /= 10;
    }
  }

  std::string Text(uint64_t seq) const {
    std::string s(kMessageBytes, '\0');
    Write(seq, s.data());
    return s;
  }

  // The substring that identifies message `seq`.
  static std::string Tag(uint64_t seq) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "seq=%010llu ", static_cast<unsigned long long>(seq));
    return buf;
  }

 private:
  std::string template_;
  size_t seq_at_ = 0;
};

Result<int> FreePort(int type) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::string e = std::strerror(errno);
    ::close(fd);
    return Status::Error("no free port on 127.0.0.1: " + e);
  }
  ::close(fd);
  return static_cast<int>(ntohs(a.sin_port));
}

sockaddr_in Addr(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Result<int> ConnectTcp(const std::string& ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
  timeval tv{kSocketTimeoutS, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a = Addr(ip, port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string e = std::strerror(errno);
    ::close(fd);
    return Status::Error("connect " + ip + ":" + std::to_string(port) + ": " + e);
  }
  return fd;
}

Status SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR && !BenchInterruptRequested()) continue;
      return Status::Error(std::string("send: ") + (errno == EAGAIN ? "timed out" : std::strerror(errno)));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// ---- The sender ----------------------------------------------------------

// Plain TCP, LF framing: `n` messages from `first` over one connection.
Status SendTcp(const std::string& ip, int port, const Messages& m, uint64_t first, uint64_t n,
               const std::atomic<bool>& stop) {
  auto fd = ConnectTcp(ip, port);
  if (!fd.ok()) return fd.status();
  Fd hold(*fd);
  constexpr uint64_t kPerWrite = 256;  // 64 KiB and a bit per send
  std::string buf((kMessageBytes + 1) * kPerWrite, '\n');
  for (uint64_t done = 0; done < n;) {
    if (stop.load() || BenchInterruptRequested()) return Status::Error("stopped");
    uint64_t k = std::min(kPerWrite, n - done);
    for (uint64_t i = 0; i < k; ++i) m.Write(first + done + i, &buf[i * (kMessageBytes + 1)]);
    TANDEM_RETURN_IF_ERROR(SendAll(*fd, buf.data(), k * (kMessageBytes + 1)));
    done += k;
  }
  return Status::Ok();
}

// UDP at `rate` datagrams/s (paced every ~0.2 ms, sendmmsg batches).
// Returns the seconds the sending took.
Result<double> SendUdp(const std::string& ip, int port, const Messages& m, uint64_t first, uint64_t n,
                       double rate) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
  Fd hold(fd);
  sockaddr_in a = Addr(ip, port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return Status::Error(std::string("udp connect: ") + std::strerror(errno));
  }
  constexpr size_t kBatch = 32;
  std::vector<std::string> bufs(kBatch, std::string(kMessageBytes, '\0'));
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  double t0 = SteadyNowS();
  uint64_t sent = 0;
  while (sent < n) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    double due = (SteadyNowS() - t0) * rate;
    if (static_cast<double>(sent) >= due) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    uint64_t k = std::min<uint64_t>({kBatch, n - sent, static_cast<uint64_t>(due - static_cast<double>(sent)) + 1});
    for (uint64_t i = 0; i < k; ++i) {
      m.Write(first + sent + i, bufs[i].data());
      iov[i] = iovec{bufs[i].data(), kMessageBytes};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = ::sendmmsg(fd, msgs, static_cast<unsigned>(k), 0);
    if (r < 0) {
      if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
      return Status::Error(std::string("sendmmsg: ") + std::strerror(errno));
    }
    sent += static_cast<uint64_t>(r);
  }
  return SteadyNowS() - t0;
}

// A small RELP client (docs/formats/relp.md): open, `n` syslog
// transactions with up to kRelpWindow unacknowledged, close. Returns when
// every transaction was answered; `acked` counts the "200" answers.
struct RelpResult {
  uint64_t acked = 0, refused = 0;
  double all_answered_s = 0;  // SteadyNowS() when the last answer arrived
};

class RelpClient {
 public:
  Result<RelpResult> Run(const std::string& ip, int port, const Messages& m, uint64_t first, uint64_t n,
                         const std::atomic<bool>& stop) {
    auto fd = ConnectTcp(ip, port);
    if (!fd.ok()) return fd.status();
    Fd hold(*fd);
    int one = 1;
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK);
    fd_ = *fd;
    const std::string offers = "relp_version=0\nrelp_software=tandem-bench\ncommands=syslog";
    out_ = "1 open " + std::to_string(offers.size()) + " " + offers + "\n";
    next_txnr_ = 2;
    // The open's answer first (as librelp does).
    TANDEM_RETURN_IF_ERROR(Pump(stop, [&] { return open_answered_; }));
    if (!open_ok_) return Status::Error("RELP open refused: " + open_answer_);
    RelpResult r;
    uint64_t sent = 0;
    char msg[kMessageBytes];
    std::string head;
    TANDEM_RETURN_IF_ERROR(Pump(stop, [&] {
      while (sent < n && sent - answered_ < kRelpWindow && out_.size() < (1u << 20)) {
        m.Write(first + sent, msg);
        out_ += std::to_string(next_txnr_++);
        out_ += " syslog 256 ";
        out_.append(msg, kMessageBytes);
        out_ += '\n';
        ++sent;
      }
      return answered_ >= n;
    }));
    r.all_answered_s = SteadyNowS();
    r.acked = acked_;
    r.refused = answered_ - acked_;
    uint64_t close_txnr = next_txnr_++;
    out_ += std::to_string(close_txnr) + " close 0\n";
    close_txnr_ = close_txnr;
    // The close's answer (or the server closing) ends the session; bounded.
    (void)Pump(stop, [&] { return close_answered_ || eof_; });
    return r;
  }

 private:
  // Writes out_, reads answers, until done() or an error / timeout.
  Status Pump(const std::atomic<bool>& stop, const std::function<bool()>& done) {
    double last_progress = SteadyNowS();
    for (;;) {
      if (done()) return Status::Ok();
      if (stop.load() || BenchInterruptRequested()) return Status::Error("stopped");
      if (eof_) return Status::Error("RELP: the server closed the connection");
      if (SteadyNowS() - last_progress > kSocketTimeoutS) {
        return Status::Error("RELP: no progress for " + std::to_string(kSocketTimeoutS) + " s");
      }
      pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
      int r = ::poll(&p, 1, 100);
      if (r < 0 && errno != EINTR) return Status::Error(std::string("poll: ") + std::strerror(errno));
      if (r <= 0) continue;
      if ((p.revents & POLLOUT) && !out_.empty()) {
        ssize_t w = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
        if (w > 0) {
          out_.erase(0, static_cast<size_t>(w));
          last_progress = SteadyNowS();
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          return Status::Error(std::string("RELP send: ") + std::strerror(errno));
        }
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
        if (got > 0) {
          in_.append(buf, static_cast<size_t>(got));
          TANDEM_RETURN_IF_ERROR(Parse());
          last_progress = SteadyNowS();
        } else if (got == 0) {
          eof_ = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return Status::Error(std::string("RELP recv: ") + std::strerror(errno));
        }
      }
    }
  }

  // Frames "TXNR SP COMMAND SP DATALEN [SP DATA] LF" from the server.
  Status Parse() {
    size_t pos = 0;
    for (;;) {
      size_t sp1 = in_.find(' ', pos);
      if (sp1 == std::string::npos) break;
      size_t sp2 = in_.find(' ', sp1 + 1);
      if (sp2 == std::string::npos) break;
      size_t i = sp2 + 1;
      uint64_t len = 0;
      while (i < in_.size() && in_[i] >= '0' && in_[i] <= '9') len = len * 10 + static_cast<uint64_t>(in_[i++] - '0');
      if (i >= in_.size()) break;
      size_t data_at = i;
      if (len > 0) {
        if (in_[i] != ' ') return Status::Error("RELP: bad frame from the server");
        data_at = i + 1;
      }
      if (in_.size() < data_at + len + 1) break;
      uint64_t txnr = std::stoull(in_.substr(pos, sp1 - pos));
      std::string command = in_.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string_view data(in_.data() + data_at, len);
      if (command == "rsp") {
        bool ok = data.substr(0, 3) == "200";
        if (txnr == 1 && !open_answered_) {
          open_answered_ = true;
          open_ok_ = ok;
          open_answer_ = std::string(data.substr(0, 80));
        } else if (txnr == close_txnr_) {
          close_answered_ = true;
        } else {
          ++answered_;
          if (ok) ++acked_;
        }
      } else if (command == "serverclose") {
        eof_ = true;
      }
      pos = data_at + len + 1;
    }
    in_.erase(0, pos);
    return Status::Ok();
  }

  int fd_ = -1;
  std::string out_, in_;
  uint64_t next_txnr_ = 1, close_txnr_ = 0;
  uint64_t answered_ = 0, acked_ = 0;
  bool open_answered_ = false, open_ok_ = false, close_answered_ = false, eof_ = false;
  std::string open_answer_;
};

// ---- The targets ---------------------------------------------------------

struct Target {
  std::string name;
  std::string ip;
  int udp = 0, tcp = 0, relp = 0;
  int pid = 0;  // the receiving process (CPU time)
  // Events the target holds (for the input named "udp" | "tcp" | "relp").
  std::function<Result<uint64_t>(const std::string&)> count;
};

// Waits until `count(input)` reaches `want`; ends early when it stops
// growing for kIdleEndS after `sender_done` (then the run failed or lost
// events: the caller decides). Returns {time reached or last growth, count}.
struct WaitResult {
  double at_s = 0;
  uint64_t count = 0;
  bool reached = false;
};
Result<WaitResult> WaitCount(const Target& t, const std::string& input, uint64_t want,
                             const std::atomic<bool>& sender_done, double timeout_s) {
  WaitResult w;
  double end = SteadyNowS() + timeout_s, last_growth = SteadyNowS();
  uint64_t last = 0;
  for (;;) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    auto c = t.count(input);
    if (!c.ok()) return c.status();
    double now = SteadyNowS();
    if (*c != last) {
      last = *c;
      last_growth = now;
    }
    w.count = *c;
    w.at_s = last_growth;
    if (*c >= want) {
      w.reached = true;
      w.at_s = now;
      return w;
    }
    if (sender_done.load() && now - last_growth > kIdleEndS) return w;
    if (now > end) return w;
    SleepMs(kPollMs);
  }
}

double EventsPerS(uint64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0; }

// One stream run over TCP or RELP: `n` messages, timed to the last stored.
Result<json> StreamRun(const Target& t, const std::string& input, const Messages& m, uint64_t* seq,
                       uint64_t n) {
  auto base = t.count(input);
  if (!base.ok()) return base.status();
  uint64_t first = *seq;
  *seq += n;
  std::atomic<bool> done{false}, stop{false};
  Status send_status = Status::Ok();
  RelpResult relp;
  double cpu0 = t.pid > 0 ? CpuSeconds(t.pid) : 0;
  double t0 = SteadyNowS();
  std::thread sender([&] {
    if (input == "tcp") {
      send_status = SendTcp(t.ip, t.tcp, m, first, n, stop);
    } else {
      RelpClient c;
      auto r = c.Run(t.ip, t.relp, m, first, n, stop);
      if (r.ok()) relp = *r; else send_status = r.status();
    }
    done.store(true);
  });
  double timeout_s = 60.0 + static_cast<double>(n) / 5000.0;
  auto w = WaitCount(t, input, *base + n, done, timeout_s);
  stop.store(true);
  sender.join();
  if (!w.ok()) return w.status();
  TANDEM_RETURN_IF_ERROR(BenchInterrupted());
  if (!send_status.ok()) return send_status.Prefix(t.name + " " + input + ": ");
  uint64_t stored = w->count - *base;
  if (!w->reached) {
    return Status::Error(t.name + " " + input + ": only " + std::to_string(stored) + " of " +
                         std::to_string(n) + " events stored (see its log)");
  }
  double end = w->at_s;
  json r = {{"events", n}};
  if (input == "relp") {
    if (relp.acked != n) {
      return Status::Error(t.name + " relp: " + std::to_string(relp.acked) + " of " + std::to_string(n) +
                           " acked, " + std::to_string(relp.refused) + " refused");
    }
    end = std::max(end, relp.all_answered_s);
    r["acked"] = relp.acked;
    r["all_acked_s"] = RoundTo(relp.all_answered_s - t0, 3);
  }
  r["seconds"] = RoundTo(end - t0, 3);
  r["events_per_s"] = RoundTo(EventsPerS(n, end - t0), 0);
  if (t.pid > 0) r["receiver_cpu_s"] = RoundTo(CpuSeconds(t.pid) - cpu0, 2);
  return r;
}

// UDP at a paced rate: loss = sent - stored once the count stops growing.
Result<json> UdpRun(const Target& t, const Messages& m, uint64_t* seq, double rate, double seconds) {
  auto base = t.count("udp");
  if (!base.ok()) return base.status();
  uint64_t n = static_cast<uint64_t>(rate * seconds);
  uint64_t first = *seq;
  *seq += n;
  auto took = SendUdp(t.ip, t.udp, m, first, n, rate);
  if (!took.ok()) return took.status();
  std::atomic<bool> done{true};
  auto w = WaitCount(t, "udp", *base + n, done, 60.0);
  if (!w.ok()) return w.status();
  uint64_t stored = w->count - *base;
  return json{{"rate_set", rate},
              {"sent", n},
              {"rate_sent", RoundTo(EventsPerS(n, *took), 0)},
              {"stored", stored},
              {"lost", n - std::min(n, stored)},
              {"loss_pct", RoundTo(100.0 * static_cast<double>(n - std::min(n, stored)) / static_cast<double>(n), 3)}};
}

// ---- rsyslogd ------------------------------------------------------------

std::string FindModule(const std::string& name) {
  for (const char* d : {"/usr/lib/x86_64-linux-gnu/rsyslog/", "/usr/lib/aarch64-linux-gnu/rsyslog/",
                        "/usr/lib/rsyslog/"}) {
    std::string p = std::string(d) + name + ".so";
    if (::access(p.c_str(), R_OK) == 0) return p;
  }
  return "";
}

// The first line of `rsyslogd -v` (bounded: 10 s).
std::string RsyslogVersion(const std::string& dir) {
  std::string out = dir + "/rsyslogd-version.txt";
  os::SpawnOptions so;
  so.stdout_path = out;
  auto pid = os::Spawn({"/usr/sbin/rsyslogd", "-v"}, so);
  if (!pid.ok()) return "unknown: " + pid.status().message();
  int ws = 0;
  for (double end = SteadyNowS() + 10; ::waitpid(*pid, &ws, WNOHANG) != *pid; SleepMs(10)) {
    if (SteadyNowS() > end) {
      ::kill(*pid, SIGKILL);
      ::waitpid(*pid, &ws, 0);
      return "unknown (rsyslogd -v did not finish)";
    }
  }
  auto text = os::ReadFile(out, 1 << 16);
  std::remove(out.c_str());
  if (!text.ok()) return "unknown";
  std::string line = text->substr(0, text->find('\n'));
  size_t cut = line.find(" compiled with");
  return cut == std::string::npos ? line : line.substr(0, cut);
}

class Rsyslog {
 public:
  ~Rsyslog() { (void)Stop(); }

  // rsyslogd in the foreground, its own config / work dir / pid file, with
  // imudp, imtcp and imrelp on free loopback ports, each into its own
  // omfile (template "%rawmsg%\n": 257 bytes a message).
  Status Start(const std::string& dir, bool synced) {
    dir_ = dir;
    synced_ = synced;
    std::error_code ec;
    fs::remove_all(dir, ec);
    TANDEM_RETURN_IF_ERROR(os::MakeDirs(dir + "/work", 0755));
    for (int* p : {&udp_, &tcp_, &relp_}) {
      auto port = FreePort(p == &udp_ ? SOCK_DGRAM : SOCK_STREAM);
      if (!port.ok()) return port.status();
      *p = *port;
    }
    std::ostringstream c;
    c << "global(workDirectory=\"" << dir << "/work\" maxMessageSize=\"8k\")\n"
      << "module(load=\"imudp\")\nmodule(load=\"imtcp\")\nmodule(load=\"imrelp\")\n"
      << "main_queue(queue.type=\"FixedArray\" queue.size=\"100000\" queue.dequeueBatchSize=\"1024\")\n"
      << "template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n";
    for (const char* in : {"udp", "tcp", "relp"}) {
      c << "ruleset(name=\"" << in << "\") {\n  action(type=\"omfile\" file=\"" << dir << "/" << in
        << ".log\" template=\"raw\" " << OmfileParams() << ")\n}\n";
    }
    c << "input(type=\"imudp\" address=\"127.0.0.1\" port=\"" << udp_ << "\" ruleset=\"udp\")\n"
      << "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"" << tcp_ << "\" ruleset=\"tcp\")\n"
      << "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"" << relp_ << "\" ruleset=\"relp\")\n";
    config_ = c.str();
    TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(dir + "/rsyslog.conf", config_, 0644));
    os::SpawnOptions so;
    so.stdout_path = dir + "/rsyslogd.log";
    auto pid = os::Spawn({"/usr/sbin/rsyslogd", "-n", "-f", dir + "/rsyslog.conf", "-i", dir + "/rsyslogd.pid"}, so);
    if (!pid.ok()) return pid.status();
    pid_ = *pid;
    // Ready when both TCP listeners accept (imudp binds before them).
    for (double end = SteadyNowS() + 15; ; SleepMs(50)) {
      TANDEM_RETURN_IF_ERROR(BenchInterrupted());
      int ws = 0;
      if (::waitpid(pid_, &ws, WNOHANG) == pid_) {
        pid_ = 0;
        return Status::Error("rsyslogd exited at start (" + os::DescribeWaitStatus(ws) + "); see " + dir +
                             "/rsyslogd.log");
      }
      auto a = ConnectTcp("127.0.0.1", tcp_), b = ConnectTcp("127.0.0.1", relp_);
      bool up = a.ok() && b.ok();
      if (a.ok()) ::close(*a);
      if (b.ok()) ::close(*b);
      if (up) break;
      if (SteadyNowS() > end) return Status::Error("rsyslogd did not listen within 15 s; see " + dir + "/rsyslogd.log");
    }
    SleepMs(300);
    return Status::Ok();
  }

  Status Stop() {
    if (pid_ <= 0) return Status::Ok();
    ::kill(pid_, SIGTERM);
    int ws = 0;
    for (double end = SteadyNowS() + 10; ::waitpid(pid_, &ws, WNOHANG) != pid_; SleepMs(10)) {
      if (SteadyNowS() > end) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &ws, 0);
        break;
      }
    }
    pid_ = 0;
    std::error_code ec;
    for (const char* in : {"udp", "tcp", "relp"}) fs::remove(dir_ + "/" + in + ".log", ec);
    return Status::Ok();
  }

  Target AsTarget() const {
    Target t;
    t.name = synced_ ? "rsyslog_synced" : "rsyslog_buffered";
    t.ip = "127.0.0.1";
    t.udp = udp_;
    t.tcp = tcp_;
    t.relp = relp_;
    t.pid = pid_;
    std::string dir = dir_;
    int pid = pid_;
    t.count = [dir, pid](const std::string& input) -> Result<uint64_t> {
      if (::kill(pid, 0) != 0) return Status::Error("rsyslogd is gone; see " + dir + "/rsyslogd.log");
      return FileSize(dir + "/" + input + ".log") / (kMessageBytes + 1);
    };
    return t;
  }

  std::string OmfileParams() const {
    // Buffered: writes to the page cache at the end of each batch, never
    // synced (asyncWriting stays off: with it the last buffer reaches the file
    // only after flushInterval, >= 1 s, which would be timed as ingest).
    // Synced: the same plus sync="on" (fdatasync of the file at the end of
    // each batch) behind its own action queue of batches of up to 1024.
    if (!synced_) return "ioBufferSize=\"256k\" flushOnTXEnd=\"on\"";
    return "ioBufferSize=\"256k\" flushOnTXEnd=\"on\" sync=\"on\" queue.type=\"LinkedList\" "
           "queue.size=\"100000\" queue.dequeueBatchSize=\"1024\"";
  }

  int pid() const { return pid_; }

 private:
  std::string dir_, config_;
  bool synced_ = false;
  int udp_ = 0, tcp_ = 0, relp_ = 0;
  int pid_ = 0;
};

// ---- The lab ---------------------------------------------------------------

using Host = BenchHost;

class Bench {
 public:
  explicit Bench(const IngestBenchOptions& o) : o_(o) {}
  Result<json> Run();
  Status Stop();
  void RemoveStoreData();

 private:
  Status Setup();
  Target TandemTarget(const std::string& name);
  Result<json> SearchSuite();
  Result<json> StreamSuite();
  Result<json> UdpSuite();
  Result<json> StreamPair(const Target& t, uint64_t n);

  IngestBenchOptions o_;
  bool lab_up_ = false;
  Host p_, s_;
  std::string vip_;
  int udp_ = 0, tcp_ = 0, relp_ = 0;
  uint64_t seq_ = 1;
  Messages messages_{0};
  Rsyslog rsyslog_;
};

Status Bench::Setup() {
  if (::access("/usr/sbin/rsyslogd", X_OK) != 0 || FindModule("imrelp").empty()) {
    return Status::Error("rsyslogd with imrelp is needed (Debian packages rsyslog and rsyslog-relp; "
                         "scripts/install-deps.sh)");
  }
  LabOptions lo;
  lo.dir = o_.dir;
  lo.bin_dir = o_.bin_dir;
  lo.replication = true;
  lo.collector = true;
  lo.sync_rate_mb = 4096;  // resyncs after the unreplicated runs are quick
  auto up = Up(lo);
  if (!up.ok()) return up.status().Prefix("lab up: ");
  lab_up_ = true;
  vip_ = (*up)["vip"].get<std::string>();
  const json& ports = (*up)["ports"];
  udp_ = ports["syslog_udp"].get<int>();
  tcp_ = ports["syslog_tcp"].get<int>();
  relp_ = ports["relp"].get<int>();
  Host* hosts[2] = {&p_, &s_};
  for (size_t i = 0; i < 2; ++i) {
    const json& h = (*up)["hosts"][i];
    Host& x = *hosts[i];
    x.which = h["role"].get<std::string>();
    x.config = h["config"].get<std::string>();
    x.dir = fs::path(x.config).parent_path().string();
    x.pid = h["pid"].get<int>();
    auto cfg = config::Load(x.config, /*read_key=*/false);
    if (!cfg.ok()) return cfg.status();
    x.control = cfg->control_socket;
  }
  if (p_.which != "primary" || s_.which != "secondary") return Status::Error("unexpected lab hosts");
  // The collector runs on the active host (the primary) once it took over.
  for (double end = SteadyNowS() + 30; ; SleepMs(50)) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    auto st = HostStatus(p_);
    if (st.ok() && (*st)["collector"].is_object() && (*st)["collector"].value("running", false)) break;
    if (SteadyNowS() > end) {
      return Status::Error("the primary's collector is not running: " + (st.ok() ? (*st)["collector"].dump()
                                                                                   : st.status().message()));
    }
  }
  return WaitInSync(p_, s_, kSettleMs);
}

Target Bench::TandemTarget(const std::string& name) {
  Target t;
  t.name = name;
  t.ip = vip_;
  t.udp = udp_;
  t.tcp = tcp_;
  t.relp = relp_;
  t.pid = p_.pid;
  t.count = [this](const std::string&) -> Result<uint64_t> {
    auto st = HostStatus(p_);
    if (!st.ok()) return st.status();
    const json& c = (*st)["collector"];
    if (!c.is_object() || !c.value("running", false)) return Status::Error("the collector is not running: " + c.dump());
    if (!c.value("last_error", std::string()).empty() && c["store"].value("append_errors", uint64_t{0}) > 0) {
      return Status::Error("collector: " + c.value("last_error", std::string()));
    }
    return c["store"].value("records_written", uint64_t{0});
  };
  return t;
}

// ---- Search over 10M stored events.

Result<json> Bench::SearchSuite() {
  const uint64_t events = o_.search_events;
  // Record times: 1000 events per second of record time, ending an hour ago.
  int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  int64_t base_us = (now_us / 60000000 - 60) * 60000000 - static_cast<int64_t>(events) * kFillEventSpacingUs;
  base_us -= base_us % 60000000;
  double t0 = SteadyNowS();
  uint64_t seg_seq = 1, bytes = 0, segments = 0;
  std::string file;
  store::EventRecord rec;
  Messages m(base_us);
  auto new_writer = [&](int64_t created_us) {
    return store::SegmentWriter::Create(store::SegmentName{store::SegmentKind::kEvents, "bench-fill", 1, seg_seq},
                                        created_us);
  };
  auto w = new_writer(base_us);
  if (!w.ok()) return w.status();
  auto append = [&](std::vector<uint8_t> b) { file.append(reinterpret_cast<const char*>(b.data()), b.size()); };
  append(w->Header());
  auto put = [&]() -> Status {
    append(w->Seal());
    TANDEM_RETURN_IF_ERROR(StorePut(p_.config, w->path(), file));
    bytes += file.size();
    ++segments;
    file.clear();
    return Status::Ok();
  };
  const std::string sender = "127.0.0.1:40000";
  for (uint64_t i = 0; i < events; ++i) {
    if (i % 65536 == 0) TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    int64_t t = base_us + static_cast<int64_t>(i) * kFillEventSpacingUs;
    m.SetTime(t);  // the message's own RFC 5424 timestamp is the record time
    std::string text = m.Text(i + 1);
    collect::ParseSyslogInto(text, t + 500, sender, &rec);
    TANDEM_RETURN_IF_ERROR(w->Add(rec));
    if (w->BlockReady()) append(w->TakeBlock());
    if (file.size() + w->pending_bytes() >= kFillSegmentBytes) {
      TANDEM_RETURN_IF_ERROR(put());
      ++seg_seq;
      w = new_writer(t);
      if (!w.ok()) return w.status();
      append(w->Header());
    }
  }
  if (w->records() > 0) TANDEM_RETURN_IF_ERROR(put());
  double fill_s = SteadyNowS() - t0;
  // Replicated: the files are on both hosts (protocol C).
  std::string store_dir = p_.dir + "/store/events";
  uint64_t on_disk = 0;
  {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(store_dir, ec)) {
      if (e.path().filename().string().rfind("bench-fill-", 0) == 0) on_disk += e.file_size(ec);
    }
  }
  // Queries through the daemon (as `tandem search events` sends them).
  int64_t win_from = base_us + static_cast<int64_t>(events / 2) * kFillEventSpacingUs;
  win_from -= win_from % 60000000;
  uint64_t target_seq = events / 2 + 12345 % std::max<uint64_t>(1, events / 2);
  struct Query {
    std::string name;
    json req;
    uint64_t expect_total;
  };
  std::vector<Query> queries = {
      {"one_minute_window",
       json{{"cmd", "search"}, {"kind", "events"}, {"from_us", win_from}, {"to_us", win_from + 60000000}},
       std::min<uint64_t>(60000000 / kFillEventSpacingUs, events)},
      {"contains_whole_range",
       json{{"cmd", "search"}, {"kind", "events"}, {"from_us", base_us},
            {"to_us", base_us + static_cast<int64_t>(events) * kFillEventSpacingUs},
            {"contains", Messages::Tag(target_seq)}},
       1},
  };
  json out = {{"events", events},
              {"segments", segments},
              {"fill", {{"how", "records parsed (collect::ParseSyslogInto) from the benchmark's own 256-byte "
                                "messages with record times 1 ms apart, encoded by store::SegmentWriter "
                                "into sealed 256 MiB segments and written through the primary's volume "
                                "socket (lab::StorePut: replicated, protocol C)"},
                        {"seconds", RoundTo(fill_s, 1)},
                        {"record_time_span_s", RoundTo(static_cast<double>(events) * kFillEventSpacingUs / 1e6, 0)}}},
              {"store_bytes", on_disk},
              {"bytes_per_event", RoundTo(static_cast<double>(on_disk) / static_cast<double>(events), 1)}};
  json results = json::object();
  for (const Query& q : queries) {
    std::vector<double> ms;
    json last;
    for (int rep = 0; rep < kSearchReps; ++rep) {
      TANDEM_RETURN_IF_ERROR(BenchInterrupted());
      double a = SteadyNowS();
      auto r = api::Call(p_.control, q.req, kSearchTimeoutMs);
      double b = SteadyNowS();
      if (!r.ok()) return r.status().Prefix("search " + q.name + ": ");
      if (!r->value("ok", false)) return Status::Error("search " + q.name + ": " + r->value("error", "?"));
      const json& res = r->contains("result") ? (*r)["result"] : *r;
      if (res.value("total", uint64_t{0}) != q.expect_total) {
        return Status::Error("search " + q.name + ": total " + std::to_string(res.value("total", uint64_t{0})) +
                             ", expected " + std::to_string(q.expect_total));
      }
      ms.push_back((b - a) * 1000.0);
      last = res["stats"];
    }
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    json all = json::array();
    for (double x : ms) all.push_back(RoundTo(x, 1));
    results[q.name] = {{"request", q.req},
                       {"total", q.expect_total},
                       {"p50_ms", RoundTo(Median(ms), 1)},
                       {"max_ms", RoundTo(sorted.back(), 1)},
                       {"runs_ms", all},
                       {"stats_last", last}};
  }
  out["queries"] = results;
  out["how"] = "each query " + std::to_string(kSearchReps) +
               " times over the control socket (the request `tandem search events --from --to "
               "[--contains]` sends, default limit 100), timed by the caller; the store was just "
               "written, so it is in the page cache (warm)";
  return out;
}

// ---- Streams: TCP and RELP, every target, paired, repeated.

Result<json> Bench::StreamPair(const Target& t, uint64_t n) {
  json r = json::object();
  for (const char* in : {"tcp", "relp"}) {
    auto x = StreamRun(t, in, messages_, &seq_, n);
    if (!x.ok()) return x.status();
    r[in] = *x;
  }
  return r;
}

Result<json> Bench::StreamSuite() {
  const uint64_t n = o_.events;
  const int reps = o_.quick ? 1 : 3;
  const std::vector<std::string> names = {"tandem_replicated", "tandem_single", "rsyslog_buffered",
                                          "rsyslog_synced"};
  std::map<std::string, json> runs;
  for (const auto& name : names) runs[name] = json::array();
  json loads = json::array();
  for (int rep = 0; rep < reps; ++rep) {
    loads.push_back(LoadAverage());
    // Tandem replicated, then the primary alone, then rsyslog both ways:
    // back to back, so every target sees the same machine.
    TANDEM_RETURN_IF_ERROR(WaitInSync(p_, s_, kSettleMs));
    auto a = StreamPair(TandemTarget("tandem_replicated"), n);
    if (!a.ok()) return a.status();
    {
      auto st = HostReplication(p_);
      if (!st.ok()) return st.status();
      if (!st->value("protected", false)) return Status::Error("replicated runs: the primary lost its peer");
    }
    runs["tandem_replicated"].push_back(*a);
    TANDEM_RETURN_IF_ERROR(StopBenchHost(o_.dir, s_));
    TANDEM_RETURN_IF_ERROR(WaitPeerGone(p_, kSettleMs));
    auto b = StreamPair(TandemTarget("tandem_single"), n);
    if (!b.ok()) return b.status();
    runs["tandem_single"].push_back(*b);
    NoteRss(p_);
    TANDEM_RETURN_IF_ERROR(StartBenchHost(o_.dir, s_));
    for (bool synced : {false, true}) {
      TANDEM_RETURN_IF_ERROR(rsyslog_.Start(o_.dir + "/rsyslog", synced));
      auto c = StreamPair(rsyslog_.AsTarget(), n);
      Status down = rsyslog_.Stop();
      if (!c.ok()) return c.status();
      TANDEM_RETURN_IF_ERROR(down);
      runs[synced ? "rsyslog_synced" : "rsyslog_buffered"].push_back(*c);
    }
  }
  json out = {{"events_per_run", n}, {"repetitions", reps}, {"load_average_before_each", loads}};
  std::map<std::string, std::map<std::string, double>> med;
  for (const auto& name : names) {
    json x = {{"runs", runs[name]}};
    for (const char* in : {"tcp", "relp"}) {
      std::vector<double> v;
      for (const json& r : runs[name]) v.push_back(r[in]["events_per_s"].get<double>());
      med[name][in] = Median(v);
      x[std::string(in) + "_events_per_s"] = RoundTo(Median(v), 0);
    }
    out[name] = x;
  }
  // Ratios Tandem / rsyslog, per repetition (paired), then the median.
  json ratios = json::object();
  for (const char* tn : {"tandem_replicated", "tandem_single"}) {
    for (const char* rn : {"rsyslog_buffered", "rsyslog_synced"}) {
      for (const char* in : {"tcp", "relp"}) {
        std::vector<double> v;
        for (int rep = 0; rep < reps; ++rep) {
          v.push_back(runs[tn][rep][in]["events_per_s"].get<double>() /
                      std::max(1.0, runs[rn][rep][in]["events_per_s"].get<double>()));
        }
        ratios[std::string(tn) + "/" + rn + "/" + in] = RoundTo(Median(v), 2);
      }
    }
  }
  out["ratios_paired_median"] = ratios;
  double tcp_repl = med["tandem_replicated"]["tcp"];
  double relp_repl = med["tandem_replicated"]["relp"];
  out["targets"] = {
      {"tcp_replicated_ge_100000", {{"value", RoundTo(tcp_repl, 0)}, {"met", tcp_repl >= 100000}}},
      {"tcp_replicated_ge_rsyslog_synced",
       {{"ratio", ratios["tandem_replicated/rsyslog_synced/tcp"]},
        {"met", ratios["tandem_replicated/rsyslog_synced/tcp"].get<double>() >= 1.0}}},
      {"relp_replicated_ge_rsyslog_synced",
       {{"ratio", ratios["tandem_replicated/rsyslog_synced/relp"]},
        {"met", relp_repl > 0 && ratios["tandem_replicated/rsyslog_synced/relp"].get<double>() >= 1.0}}}};
  return out;
}

// ---- UDP: rsyslog's lossless rate, then the collector at the same rates.

Result<json> Bench::UdpSuite() {
  const double seconds = o_.quick ? 1.0 : 2.0;
  const std::vector<double> rates = {5000, 10000, 25000, 50000, 100000, 200000};
  const int reps = o_.quick ? 1 : 2;
  json out = {{"seconds_per_rate", seconds}, {"repetitions", reps}, {"runs", json::array()}};
  std::vector<double> rs_rates;
  std::vector<uint64_t> tandem_loss_at;
  for (int rep = 0; rep < reps; ++rep) {
    json run = {{"load_average", LoadAverage()}};
    TANDEM_RETURN_IF_ERROR(rsyslog_.Start(o_.dir + "/rsyslog", false));
    json rs = json::array();
    double best = 0;
    for (double rate : rates) {
      auto r = UdpRun(rsyslog_.AsTarget(), messages_, &seq_, rate, seconds);
      if (!r.ok()) {
        (void)rsyslog_.Stop();
        return r.status();
      }
      rs.push_back(*r);
      if ((*r)["lost"].get<uint64_t>() == 0) best = std::max(best, rate);
    }
    TANDEM_RETURN_IF_ERROR(rsyslog_.Stop());
    TANDEM_RETURN_IF_ERROR(WaitInSync(p_, s_, kSettleMs));
    json tr = json::array();
    uint64_t loss_at_best = 0;
    for (double rate : rates) {
      auto r = UdpRun(TandemTarget("tandem_replicated"), messages_, &seq_, rate, seconds);
      if (!r.ok()) return r.status();
      tr.push_back(*r);
      if (rate == best) loss_at_best = (*r)["lost"].get<uint64_t>();
    }
    run["rsyslog_buffered"] = rs;
    run["tandem_replicated"] = tr;
    run["rsyslog_lossless_rate"] = best;
    run["tandem_lost_at_that_rate"] = loss_at_best;
    rs_rates.push_back(best);
    tandem_loss_at.push_back(loss_at_best);
    out["runs"].push_back(run);
  }
  bool met = true;
  for (size_t i = 0; i < rs_rates.size(); ++i) met = met && rs_rates[i] > 0 && tandem_loss_at[i] == 0;
  out["target"] = {{"what", "no loss at rsyslog's lossless UDP rate (highest rate of the ladder it took "
                            "without loss), in every repetition"},
                   {"met", met}};
  return out;
}

Result<json> Bench::Run() {
  TANDEM_RETURN_IF_ERROR(Setup());
  json out = {{"bench", "ingest"}, {"quick", o_.quick}, {"dir", o_.dir}, {"message_bytes", kMessageBytes}};
  json load = {{"start", LoadAverage()}};
  int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  messages_.SetTime(now_us);
  out["message_example"] = messages_.Text(1);
  // Idle memory: the lab up, the collector running, nothing received.
  SleepMs(1000);
  json idle = {{"vm_rss_mib", RoundTo(static_cast<double>(ProcStatusKib(p_.pid, "VmRSS:")) / 1024.0, 1)},
               {"vm_hwm_mib", RoundTo(static_cast<double>(ProcStatusKib(p_.pid, "VmHWM:")) / 1024.0, 1)}};
  NoteRss(p_);
  NoteRss(s_);

  load["before_streams"] = LoadAverage();
  auto streams = StreamSuite();
  if (!streams.ok()) return streams.status();
  out["streams"] = *streams;

  // Bytes per event as the collector stored the ingest (its own counters).
  {
    auto st = HostStatus(p_);
    if (!st.ok()) return st.status();
    const json& s = (*st)["collector"]["store"];
    uint64_t b = s.value("bytes_written", uint64_t{0}), r = s.value("records_written", uint64_t{0});
    out["collector_store"] = {{"bytes_written", b}, {"records_written", r},
                              {"bytes_per_event", r ? RoundTo(static_cast<double>(b) / static_cast<double>(r), 1) : 0.0},
                              {"queue", (*st)["collector"]["queue"]}};
  }

  load["before_udp"] = LoadAverage();
  auto udp = UdpSuite();
  if (!udp.ok()) return udp.status();
  out["udp"] = *udp;

  NoteRss(p_);
  const double after_ingest_mib = static_cast<double>(p_.peak_rss_kib) / 1024.0;
  load["before_search"] = LoadAverage();
  TANDEM_RETURN_IF_ERROR(WaitInSync(p_, s_, kSettleMs));
  auto search = SearchSuite();
  if (!search.ok()) return search.status();
  out["search"] = *search;

  NoteRss(p_);
  NoteRss(s_);
  double peak = static_cast<double>(p_.peak_rss_kib) / 1024.0;
  double idle_hwm = idle["vm_hwm_mib"].get<double>();
  out["memory"] = {{"primary_idle", idle},
                   {"primary_vm_hwm_after_ingest_mib", RoundTo(after_ingest_mib, 1)},
                   {"primary_peak_vm_hwm_mib", RoundTo(peak, 1)},
                   {"secondary_peak_vm_hwm_mib", RoundTo(static_cast<double>(s_.peak_rss_kib) / 1024.0, 1)},
                   {"queue_mb", out["collector_store"]["queue"].value("bytes_max", uint64_t{0}) >> 20},
                   {"targets", {{"idle_le_32_mib", idle_hwm <= 32.0}, {"ingest_le_512_mib", after_ingest_mib <= 512.0},
                                {"with_search_le_512_mib", peak <= 512.0}}},
                   {"how", "VmHWM of /proc/<pid>/status of the primary tandemd (the collector's host): "
                           "idle = 1 s after the lab came up; after_ingest = after the TCP/RELP/UDP runs; peak = also after the search fill and queries"}};
  load["end"] = LoadAverage();
  out["load_average_1_5_15min"] = load;
  out["machine"] = MachineJson();
  out["rsyslog"] = {{"version", RsyslogVersion(o_.dir)},
                    {"buffered_omfile", "ioBufferSize=\"256k\" flushOnTXEnd=\"on\""},
                    {"synced_omfile", "ioBufferSize=\"256k\" flushOnTXEnd=\"on\" sync=\"on\" queue.type=\"LinkedList\" "
                                      "queue.size=\"100000\" queue.dequeueBatchSize=\"1024\""},
                    {"common", "main_queue FixedArray size 100000 dequeueBatchSize 1024; template \"%rawmsg%\\n\"; "
                               "imudp/imtcp/imrelp on 127.0.0.1; one omfile per input"}};
  return out;
}

Status Bench::Stop() {
  Status rs = rsyslog_.Stop();
  if (!lab_up_) return rs;
  NoteRss(p_);
  NoteRss(s_);
  lab_up_ = false;
  Status d = Down(o_.dir);
  return d.ok() ? rs : d;
}

void Bench::RemoveStoreData() {
  std::error_code ec;
  for (const Host* h : {&p_, &s_}) {
    if (!h->dir.empty()) fs::remove_all(h->dir + "/store", ec);
  }
  fs::remove_all(o_.dir + "/rsyslog/work", ec);
}

}  // namespace

Result<json> BenchIngest(const IngestBenchOptions& o) {
  if (o.dir.empty()) return Status::Error("--dir is required");
  if (o.events < 1000) return Status::Error("--events must be at least 1000");
  if (o.search_events < 100000) return Status::Error("--search-events must be at least 100000");
  Status made = os::MakeDirs(o.dir, 0755);
  if (!made.ok()) return made;
  BenchSignalScope signals;
  Result<json> r = Status::Error("not run");
  {
    Bench bench(o);
    try {
      r = bench.Run();
    } catch (const std::exception& e) {
      r = Status::Error(std::string("bench ingest: ") + e.what());
    }
    Status down = bench.Stop();
    bench.RemoveStoreData();
    if (r.ok() && !down.ok()) r = down;
  }
  if (!r.ok()) return r;
  json result = *r;
  Status w = os::WriteFileAtomic(o.dir + "/bench-ingest.json", result.dump(2) + "\n", 0644);
  if (!w.ok()) return w;
  return result;
}

}  // namespace tandem::lab
