// Helpers for the integration tests (real processes on loopback).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/control.h"
#include "lab/lab.h"
#include "peer/packet.h"
#include "os/process.h"

namespace tandem::itest {

inline std::string BinDir() { return std::string(TANDEM_BINARY_DIR) + "/bin"; }

// The options every lab-based test starts from: the lab in `dir`, fast
// heartbeats (100 ms interval, 500 ms timeout), this build's binaries.
inline lab::LabOptions FastLabOptions(const std::string& dir) {
  lab::LabOptions o;
  o.dir = dir;
  o.heartbeat_interval_ms = 100;
  o.heartbeat_timeout_ms = 500;
  o.bin_dir = BinDir();
  return o;
}

inline std::string MakeTempDir(const std::string& prefix) {
  std::string t = "/tmp/" + prefix + "-XXXXXX";
  char* d = mkdtemp(t.data());
  return d ? std::string(d) : std::string();
}

inline bool WaitFor(int64_t ms, const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// The last `lines` lines of every host's tandemd.log under a lab directory,
// for a failing test's output (what each daemon decided, and why).
inline std::string LabLogTails(const std::string& lab_dir, size_t lines = 40) {
  std::string out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(lab_dir, ec)) {
    if (e.path().filename() != "tandemd.log") continue;
    std::ifstream in(e.path());
    std::vector<std::string> all;
    for (std::string l; std::getline(in, l);) all.push_back(l);
    out += "---- " + e.path().string() + " (last " + std::to_string(lines) + " lines)\n";
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
      out += all[i] + "\n";
    }
  }
  return out;
}

// Every regular file under `dir`: relative path -> contents (two stores
// compare byte for byte).
inline std::map<std::string, std::string> ReadTree(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file()) continue;
    std::ifstream f(it->path(), std::ios::binary);
    out[fs::relative(it->path(), dir).string()] =
        std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  return out;
}

// Status JSON of the daemon behind `config` (null if it does not answer).
inline nlohmann::json HostStatus(const std::string& config) {
  std::string dir = std::filesystem::path(config).parent_path().string();
  auto r = api::Call(dir + "/run/tandemd.sock", nlohmann::json{{"cmd", "status"}}, 2000);
  return r.ok() ? *r : nlohmann::json();
}

// The "local" object of a status (empty object if the daemon did not answer).
inline nlohmann::json LocalOf(const nlohmann::json& status) {
  return status.is_object() && status.contains("local") ? status["local"] : nlohmann::json::object();
}

// Connects to addr:port and returns what the demo service answers ("" if none).
inline std::string ProbeName(const std::string& addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    pollfd p{fd, POLLIN, 0};
    char buf[128];
    if (poll(&p, 1, 500) == 1) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) out.assign(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

inline CommandResult RunCommand(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += "'" + a + "' ";
  cmd += "2>&1";
  CommandResult r;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  int ws = pclose(f);
  r.exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  return r;
}

inline unsigned long long StartTimeOf(int pid) {
  return os::ProcessStartTime(static_cast<pid_t>(pid));
}

// Binds the socket `fd` to an ephemeral port of `addr`; returns the port
// (0 when the bind failed).
inline int BindEphemeral(int fd, const std::string& addr) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) return 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return 0;
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return 0;
  return ntohs(sa.sin_port);
}

// A UDP port of `addr` that was free a moment ago (for a program the test
// starts and that binds it itself).
inline int FreeUdpPort(const std::string& addr) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int port = BindEphemeral(fd, addr);
  close(fd);
  return port;
}

// Plays the peer daemon on a UDP socket bound to `addr` (an ephemeral port).
class FakePeer {
 public:
  explicit FakePeer(const std::string& addr) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    port_ = BindEphemeral(fd_, addr);
  }
  ~FakePeer() { close(fd_); }
  int port() const { return port_; }
  void SendTo(const std::string& addr, int port, const std::vector<uint8_t>& bytes) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr.c_str(), &to.sin_addr);
    sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  }
  // Reads the daemon's packets for a while; returns the last one decoded.
  bool Receive(const std::string& key, peer::Packet* out, int ms) {
    pollfd p{fd_, POLLIN, 0};
    bool got = false;
    while (poll(&p, 1, ms) == 1) {
      uint8_t buf[1024];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      peer::DropReason why;
      if (n > 0 && peer::Decode(std::span<const uint8_t>(buf, static_cast<size_t>(n)), key, out, &why)) {
        got = true;
      }
      ms = 0;
    }
    return got;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// ---------------------------------------------------------------------------
// Real syslog clients and helpers shared by collector_test.cc,
// collection_clients_test.cc and netns_test.cc.

// `tandem search KIND --config CONFIG --count [args]`: the number of
// matches, or -1 if the command failed.
inline int64_t SearchCount(const std::string& config, const std::string& kind,
                           const std::vector<std::string>& args = {}) {
  std::vector<std::string> argv = {BinDir() + "/tandem", "search", kind, "--config", config, "--count"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  if (r.exit_code != 0) return -1;
  try {
    return std::stoll(r.output);
  } catch (...) {
    return -1;
  }
}

// `tandem search KIND --config CONFIG --json [args]` (null if it failed).
inline nlohmann::json SearchJson(const std::string& config, const std::string& kind,
                                 const std::vector<std::string>& args = {}) {
  std::vector<std::string> argv = {BinDir() + "/tandem", "search", kind, "--config", config, "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  if (r.exit_code != 0) return nlohmann::json();
  nlohmann::json j = nlohmann::json::parse(r.output, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

// rsyslogd (Debian rsyslog, + rsyslog-relp for omrelp), empty if present,
// else why the test has to be skipped.
inline std::string RsyslogMissing(bool relp) {
  if (access("/usr/sbin/rsyslogd", X_OK) != 0) return "rsyslog not installed";
  if (!relp) return "";
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so", "/usr/lib/rsyslog/omrelp.so"}) {
    if (access(p, R_OK) == 0) return "";
  }
  return "rsyslog-relp not installed";
}

// rsyslogd with its own config and work directory `dir`: imuxsock on
// DIR/log.sock (no rate limit) feeds a ruleset whose single action is
// `action` (e.g. omrelp or omfwd to the VIP). The template "fwd" (RFC 5424
// with the message as sent) is defined for the action. Killed (SIGKILL) and
// reaped on destruction. `logger -u DIR/log.sock` feeds it.
class Rsyslogd {
 public:
  Rsyslogd(const std::string& dir, const std::string& modules, const std::string& action) : dir_(dir) {
    std::filesystem::create_directories(dir);
    {
      std::ofstream conf(dir + "/rsyslog.conf");
      conf << "global(workDirectory=\"" << dir << "\")\n"
           << "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
           << modules << "\n"
           << "template(name=\"fwd\" type=\"string\" string=\"<%PRI%>1 %TIMESTAMP:::date-rfc3339% "
              "%HOSTNAME% %APP-NAME% - - - %msg%\")\n"
           << "ruleset(name=\"fwd\") {\n  " << action << "\n}\n"
           << "input(type=\"imuxsock\" Socket=\"" << dir << "/log.sock\" RateLimit.Interval=\"0\" "
           << "ruleset=\"fwd\")\n";
    }
    const char* rsyslogd = "/usr/sbin/rsyslogd";
    std::string log = dir + "/rsyslogd.log", conf = dir + "/rsyslog.conf", pidf = dir + "/rsyslogd.pid";
    pid_ = fork();
    if (pid_ == 0) {
      (void)!freopen(log.c_str(), "w", stderr);
      (void)!freopen(log.c_str(), "a", stdout);
      execl(rsyslogd, rsyslogd, "-n", "-f", conf.c_str(), "-i", pidf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Rsyslogd() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Rsyslogd(const Rsyslogd&) = delete;
  Rsyslogd& operator=(const Rsyslogd&) = delete;
  bool started() const { return pid_ > 0; }
  std::string socket() const { return dir_ + "/log.sock"; }
  // Its input socket exists (it is ready to take lines).
  bool WaitReady(int64_t ms) const {
    return WaitFor(ms, [&] { return access(socket().c_str(), F_OK) == 0; });
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// A TCP connection to addr:port (blocking, -1 on failure). `netns`
// non-empty: the socket is made inside that named network namespace (a
// helper thread enters it; the socket stays there), so a test can be a
// client in the lab's client namespace.
inline int ConnectTcp(const std::string& addr, int port, const std::string& netns = "") {
  int fd = -1;
  auto work = [&] {
    if (!netns.empty()) {
      int nsfd = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0) return;
      int rc = setns(nsfd, CLONE_NEWNET);
      close(nsfd);
      if (rc != 0) return;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
    if (s >= 0 && connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      fd = s;
    } else if (s >= 0) {
      close(s);
    }
  };
  if (netns.empty()) {
    work();
  } else {
    std::thread t(work);  // setns changes only this thread's namespace
    t.join();
  }
  return fd;
}

inline bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// A minimal RELP client speaking raw frames (docs/formats/relp.md), so a
// test sees every rsp: "200 OK" (durable on both hosts), "500 ...".
class RelpClient {
 public:
  RelpClient(const std::string& addr, int port, const std::string& netns = "")
      : fd_(ConnectTcp(addr, port, netns)) {}
  ~RelpClient() {
    if (fd_ >= 0) close(fd_);
  }
  RelpClient(const RelpClient&) = delete;
  RelpClient& operator=(const RelpClient&) = delete;
  bool connected() const { return fd_ >= 0; }
  // Sends `open` and waits for its rsp; true on "200".
  bool Open(int timeout_ms = 5000) {
    int t = Frame("open", "relp_version=0\nrelp_software=tandem-itest\ncommands=syslog");
    if (t < 0) return false;
    WaitRsps(timeout_ms, [&] { return rsps_.count(t) != 0; });
    return rsps_.count(t) != 0 && rsps_[t].rfind("200", 0) == 0;
  }
  // Sends one syslog message; returns its txnr (-1 if the write failed).
  int Send(const std::string& msg) { return Frame("syslog", msg); }
  // Reads rsps until `done()` or the timeout or the connection ends.
  void WaitRsps(int64_t timeout_ms, const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fd_ >= 0 && !eof_ && !done()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100))) != 1) continue;
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      in_.append(buf, static_cast<size_t>(n));
      Parse();
    }
  }
  // txnr -> rsp data ("200 OK", "500 store full", ...), of every rsp so far.
  const std::map<int, std::string>& rsps() const { return rsps_; }
  bool eof() const { return eof_; }

 private:
  int Frame(const std::string& cmd, const std::string& data) {
    int t = next_++;
    std::string f = std::to_string(t) + " " + cmd + " " + std::to_string(data.size()) + " " + data + "\n";
    return fd_ >= 0 && WriteAll(fd_, f) ? t : -1;
  }
  // Frames "TXNR rsp LEN DATA\n" (and hints "0 serverclose 0\n").
  void Parse() {
    for (;;) {
      size_t a = in_.find(' ');
      if (a == std::string::npos) return;
      size_t b = in_.find(' ', a + 1);
      if (b == std::string::npos) return;
      size_t c = b + 1;
      while (c < in_.size() && in_[c] >= '0' && in_[c] <= '9') ++c;
      if (c >= in_.size()) return;
      size_t len = std::stoul(in_.substr(b + 1, c - b - 1));
      size_t data_at = len == 0 ? c : c + 1;
      if (in_.size() < data_at + len + 1) return;
      int txnr = std::stoi(in_.substr(0, a));
      if (in_.compare(a + 1, b - a - 1, "rsp") == 0) rsps_[txnr] = in_.substr(data_at, len);
      in_.erase(0, data_at + len + 1);
    }
  }

  int fd_ = -1;
  int next_ = 1;
  bool eof_ = false;
  std::string in_;
  std::map<int, std::string> rsps_;
};

// One RFC 6587 octet-counted RFC 5424 message carrying `text`.
inline std::string OctetCounted(const std::string& app, const std::string& text) {
  std::string m = "<13>1 - itest " + app + " - - - " + text;
  return std::to_string(m.size()) + " " + m;
}

// A request on a host's volume socket (docs/REPLICATION.md, "The volume"):
// e.g. {"op": "delete", "path": "fill/a"}. Returns the reply (null on an
// I/O error or after `timeout_ms`).
inline nlohmann::json VolumeCall(const std::string& socket_path, nlohmann::json req, int timeout_ms = 10000) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (fd < 0 || socket_path.size() >= sizeof a.sun_path) {
    if (fd >= 0) close(fd);
    return nlohmann::json();
  }
  std::memcpy(a.sun_path, socket_path.c_str(), socket_path.size() + 1);
  nlohmann::json out;
  req["id"] = 1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && WriteAll(fd, req.dump() + "\n")) {
    std::string line;
    pollfd p{fd, POLLIN, 0};
    char buf[4096];
    while (line.find('\n') == std::string::npos && poll(&p, 1, timeout_ms) == 1) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    if (line.find('\n') != std::string::npos) {
      out = nlohmann::json::parse(line.substr(0, line.find('\n')), nullptr, false);
      if (out.is_discarded()) out = nlohmann::json();
    }
  }
  close(fd);
  return out;
}

}  // namespace tandem::itest
