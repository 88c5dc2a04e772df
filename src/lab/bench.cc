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


}  // namespace

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
    lab = *Describe(o.dir);
    // Unplanned: SIGKILL of the active daemon (its services die with it).
    int a = WaitActiveStandby(lab, settle);
    if (a < 0) return fail("cluster did not settle before trial");
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
    // Planned: `ha takeover` on the standby.
    lab = *Describe(o.dir);
    a = WaitActiveStandby(lab, settle);
    if (a < 0) return fail("killed host did not rejoin as standby");
    int s = 1 - a;
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
              {"machine", MachineJson()}};
}

}  // namespace tandem::lab
