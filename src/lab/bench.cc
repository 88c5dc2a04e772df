// `tandem bench failover`: outage of unplanned (SIGKILL of the active) and
// planned (`ha takeover`) failovers on a lab cluster, seen by a client that
// probes the VIP service every 5 ms. Each fault lands at a random phase of
// the heartbeat cycle. Prints one JSON object (docs/PERFORMANCE.md).
#include "lab/bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "api/control.h"
#include "lab/lab.h"

namespace tandem::lab {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kProbeEveryMs = 5;
constexpr int kProbeWaitMs = 50;

int64_t NowMs() { return SteadyNowMs(); }

// Connects to addr:port and reads the host name the demo service sends.
std::string Probe(const std::string& addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  std::string name;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 || errno == EINPROGRESS) {
    pollfd p{fd, POLLIN, 0};
    char buf[128];
    if (poll(&p, 1, kProbeWaitMs) == 1) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) name.assign(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  return name;
}

Result<json> HostStatus(const json& host) {
  std::string dir = std::filesystem::path(host["config"].get<std::string>()).parent_path();
  return api::Call(dir + "/run/tandemd.sock", json{{"cmd", "status"}}, 2000);
}

// Index of the host in `status` ("ACTIVE"/"STANDBY"), or -1.
int Find(const json& lab, const std::string& status) {
  for (size_t i = 0; i < 2; ++i) {
    auto st = HostStatus(lab["hosts"][i]);
    if (st.ok() && (*st)["local"].value("status", "") == status) return static_cast<int>(i);
  }
  return -1;
}

bool WaitSettled(const json& lab, int64_t ms) {
  for (int64_t t0 = NowMs(); NowMs() - t0 < ms;) {
    int a = Find(lab, "ACTIVE"), s = Find(lab, "STANDBY");
    if (a >= 0 && s >= 0 && a != s) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Probes every 5 ms until `want` answers; returns ms since t0, or -1.
int64_t OutageUntil(const json& lab, const std::string& want, int64_t t0, int64_t limit_ms) {
  std::string vip = lab["vip"];
  int port = lab["service_port"];
  while (NowMs() - t0 < limit_ms) {
    int64_t started = NowMs();
    if (Probe(vip, port) == want) return NowMs() - t0;
    int64_t spent = NowMs() - started;
    if (spent < kProbeEveryMs) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kProbeEveryMs - spent));
    }
  }
  return -1;
}

int64_t PeakRssKib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  int64_t value = 0;
  while (in >> key) {
    if (key == "VmHWM:") {
      in >> value;
      return value;
    }
  }
  return 0;
}


json Machine() {
  utsname u{};
  uname(&u);
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return json{{"cpus", std::thread::hardware_concurrency()}, {"cpu_model", model},
              {"kernel", std::string(u.release)}};
}

}  // namespace

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

json LatencyStats(std::vector<int64_t> v) {
  if (v.empty()) return json{{"samples", 0}};
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  return json{{"samples", v.size()}, {"p50_ms", pct(0.5)}, {"p95_ms", pct(0.95)},
              {"max_ms", v.back()}, {"min_ms", v.front()}, {"all_ms", v}};
}

Result<json> BenchFailover(const BenchOptions& o) {
  LabOptions lo;
  lo.dir = o.dir;
  lo.heartbeat_interval_ms = o.heartbeat_interval_ms;
  lo.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
  lo.bin_dir = o.bin_dir;
  auto up = Up(lo);
  if (!up.ok()) return up.status();
  json lab = *up;
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> phase(0, o.heartbeat_interval_ms - 1);
  int64_t limit = 10 * o.heartbeat_timeout_ms + 5000;
  int64_t settle = 4 * o.heartbeat_timeout_ms + 10000;
  std::vector<int64_t> unplanned, planned;
  int64_t peak_rss = 0;
  auto fail = [&](const std::string& why) -> Result<json> {
    (void)Down(o.dir);
    return Status::Error(why);
  };
  for (int trial = 0; trial < o.trials; ++trial) {
    if (!WaitSettled(lab, settle)) return fail("cluster did not settle before trial");
    lab = *Describe(o.dir);
    // Unplanned: SIGKILL of the active daemon (its services die with it).
    int a = Find(lab, "ACTIVE");
    if (a < 0) return fail("no active host");
    json& victim = lab["hosts"][static_cast<size_t>(a)];
    std::string other = lab["hosts"][static_cast<size_t>(1 - a)]["name"];
    peak_rss = std::max(peak_rss, PeakRssKib(victim["pid"]));
    std::this_thread::sleep_for(std::chrono::milliseconds(phase(rng)));
    int64_t t0 = NowMs();
    kill(victim["pid"].get<int>(), SIGKILL);
    int64_t out = OutageUntil(lab, other, t0, limit);
    if (out < 0) return fail("unplanned failover did not complete");
    unplanned.push_back(out);
    auto restarted = StartHost(o.dir, victim["role"]);
    if (!restarted.ok()) return fail(restarted.status().message());
    if (!WaitSettled(lab, settle)) return fail("killed host did not rejoin as standby");
    // Planned: `ha takeover` on the standby.
    lab = *Describe(o.dir);
    int s = Find(lab, "STANDBY");
    if (s < 0) return fail("no standby host");
    json& taker = lab["hosts"][static_cast<size_t>(s)];
    std::string dir = std::filesystem::path(taker["config"].get<std::string>()).parent_path();
    std::this_thread::sleep_for(std::chrono::milliseconds(phase(rng)));
    t0 = NowMs();
    auto r = api::Call(dir + "/run/tandemd.sock", json{{"cmd", "takeover"}}, 2000);
    if (!r.ok() || !r->value("ok", false)) return fail("takeover refused");
    out = OutageUntil(lab, taker["name"], t0, limit);
    if (out < 0) return fail("planned takeover did not complete");
    planned.push_back(out);
  }
  for (const auto& h : lab["hosts"]) peak_rss = std::max(peak_rss, PeakRssKib(h["pid"]));
  (void)Down(o.dir);
  return json{{"bench", "failover"},
              {"heartbeat_interval_ms", o.heartbeat_interval_ms},
              {"heartbeat_timeout_ms", o.heartbeat_timeout_ms},
              {"trials", o.trials},
              {"probe_every_ms", kProbeEveryMs},
              {"unplanned_sigkill", LatencyStats(unplanned)},
              {"planned_takeover", LatencyStats(planned)},
              {"tandemd_peak_rss_kib", peak_rss},
              {"machine", Machine()}};
}

}  // namespace tandem::lab
