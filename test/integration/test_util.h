// Helpers for the integration tests (real processes on loopback).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/control.h"
#include "peer/packet.h"
#include "os/process.h"

namespace tandem::itest {

inline std::string BinDir() { return std::string(TANDEM_BINARY_DIR) + "/bin"; }

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

// Plays the peer daemon on a UDP socket bound to `addr` (an ephemeral port).
class FakePeer {
 public:
  explicit FakePeer(const std::string& addr) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
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

}  // namespace tandem::itest
