// `tandem bench failover --netns`: the outage a client sees (TCP probe every
// 5 ms on the VIP, from its own namespace) after the active host's death
// (SIGKILL of its HA daemon and its link down together), each fault at a
// random phase of the heartbeat cycle — for Tandem and, in the same run and
// the same namespaces, for keepalived (Debian package) doing the same job.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include "lab/bench.h"
#include "lab/lab.h"
#include "lab/netns.h"
#include "os/files.h"
#include "os/process.h"

namespace tandem::lab {

using nlohmann::json;

namespace {

constexpr int64_t kProbeEveryMs = 5;
constexpr int kVipPort = 8080;

int64_t NowMs() { return SteadyNowMs(); }

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Runs a command to completion; true if it exited 0.
bool Run(const std::vector<std::string>& argv) {
  os::SpawnOptions so;
  so.die_with_parent = false;
  so.new_process_group = false;
  so.stdout_path = "/dev/null";
  auto pid = os::Spawn(argv, so);
  if (!pid.ok()) return false;
  int ws = 0;
  waitpid(*pid, &ws, 0);
  return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

bool HasVip(const std::string& ns) {
  return Run({"sh", "-c", "ip -n " + ns + " -o -4 addr show dev eth0 | grep -q 198.18.0.10/"});
}

void SetLink(const std::string& ns, bool up) {
  Run({"ip", "-n", ns, "link", "set", "eth0", up ? "up" : "down"});
}

// Enters (and on destruction leaves) a network namespace, for this thread.
class InNamespace {
 public:
  explicit InNamespace(const std::string& ns) {
    self_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    ok_ = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
    if (fd >= 0) close(fd);
  }
  ~InNamespace() {
    if (self_ >= 0) {
      (void)setns(self_, CLONE_NEWNET);
      close(self_);
    }
  }
  bool ok() const { return ok_; }

 private:
  int self_ = -1;
  bool ok_ = false;
};

// Probes the VIP every 5 ms until `want` answers; ms since t0, or -1.
int64_t OutageUntil(const std::string& want, int64_t t0, int64_t limit_ms) {
  const std::string addr = std::string(kNetnsVip) + ":" + std::to_string(kVipPort);
  while (NowMs() - t0 < limit_ms) {
    int64_t started = NowMs();
    auto got = Probe(addr, 50);
    if (got.ok() && *got == want) return NowMs() - t0;
    int64_t spent = NowMs() - started;
    if (spent < kProbeEveryMs) SleepMs(kProbeEveryMs - spent);
  }
  return -1;
}

// Tandem: SIGKILL of the active tandemd with its link down.
Result<std::vector<int64_t>> TandemTrials(const BenchOptions& o, const std::string& dir,
                                          std::mt19937_64& rng) {
  std::vector<int64_t> out;
  std::uniform_int_distribution<int64_t> phase(0, o.heartbeat_interval_ms - 1);
  const char* roles[] = {"primary", "secondary"};
  for (int t = 0; t < o.trials; ++t) {
    json lab = *Describe(dir);
    int active = WaitActiveStandby(lab, 4 * o.heartbeat_timeout_ms + 10000);
    if (active < 0) return Status::Error("tandem: cluster did not settle");
    size_t a = static_cast<size_t>(active);
    std::string victim_ns = lab["netns"][roles[a]];
    std::string other = lab["hosts"][1 - a]["name"];
    SleepMs(phase(rng));
    int64_t t0 = NowMs();
    kill(lab["hosts"][a]["pid"].get<int>(), SIGKILL);
    SetLink(victim_ns, false);
    int64_t ms;
    {
      InNamespace client(lab["netns"]["client"]);
      if (!client.ok()) return Status::Error("cannot enter the client namespace");
      ms = OutageUntil(other, t0, 10 * o.heartbeat_timeout_ms + 5000);
    }
    if (ms < 0) return Status::Error("tandem: failover did not complete");
    out.push_back(ms);
    SetLink(victim_ns, true);
    auto pid = StartHost(dir, roles[a]);
    if (!pid.ok()) return pid.status();
  }
  return out;
}

std::string KeepalivedConfig(const std::string& name, int priority, int64_t advert_ms) {
  char advert[32];
  std::snprintf(advert, sizeof advert, "%.3f", static_cast<double>(advert_ms) / 1000.0);
  return "global_defs {\n  router_id " + name + "\n  vrrp_version 3\n}\n"
         "vrrp_instance VI_1 {\n  state BACKUP\n  nopreempt\n  interface eth0\n"
         "  virtual_router_id 51\n  priority " + std::to_string(priority) + "\n"
         "  advert_int " + advert + "\n"
         "  virtual_ipaddress {\n    198.18.0.10/24 dev eth0 label eth0:0\n  }\n}\n";
}

struct Keepalived {
  std::string ns, name, conf, dir;
  pid_t pid = -1;
  pid_t service = -1;
};

Status StartKeepalived(Keepalived* k) {
  // A rebooted host has no pid files of its previous run.
  std::remove((k->dir + "/ka-" + k->name + ".pid").c_str());
  std::remove((k->dir + "/ka-" + k->name + "-vrrp.pid").c_str());
  os::SpawnOptions so;
  so.die_with_parent = false;
  so.stdout_path = k->dir + "/keepalived-" + k->name + ".log";
  auto pid = os::Spawn({"ip", "netns", "exec", k->ns, "keepalived", "--dont-fork", "--log-console",
                        "--vrrp", "--pid", k->dir + "/ka-" + k->name + ".pid", "--vrrp_pid",
                        k->dir + "/ka-" + k->name + "-vrrp.pid", "-f", k->conf}, so);
  if (!pid.ok()) return pid.status();
  k->pid = *pid;
  return Status::Ok();
}

void StopKeepalived(Keepalived* k, int sig) {
  if (k->pid > 0) {
    kill(-k->pid, sig);  // its own process group: the VRRP child too
    waitpid(k->pid, nullptr, 0);
  }
  k->pid = -1;
}

// The usual do-it-yourself set-up: keepalived moves the VIP, the service runs
// on both hosts bound to the wildcard address.
Result<std::vector<Keepalived>> SetUpKeepalived(const json& lab, const std::string& dir,
                                                int64_t advert_ms) {
  std::vector<Keepalived> ks(2);
  const char* roles[] = {"primary", "secondary"};
  for (size_t i = 0; i < 2; ++i) {
    Keepalived& k = ks[i];
    k.ns = lab["netns"][roles[i]];
    k.name = lab["hosts"][i]["name"];
    k.dir = dir;
    k.conf = dir + "/keepalived-" + k.name + ".conf";
    TANDEM_RETURN_IF_ERROR(
        os::WriteFileAtomic(k.conf, KeepalivedConfig(k.name, i == 0 ? 150 : 100, advert_ms), 0644));
    os::SpawnOptions so;
    so.die_with_parent = true;
    so.stdout_path = dir + "/ka-service-" + k.name + ".log";
    auto svc = os::Spawn({"ip", "netns", "exec", k.ns, lab["bin_dir"].get<std::string>() + "/tandem",
                          "demo-service", "--bind", "0.0.0.0:" + std::to_string(kVipPort), "--name",
                          k.name}, so);
    if (!svc.ok()) return svc.status();
    k.service = *svc;
    TANDEM_RETURN_IF_ERROR(StartKeepalived(&k));
  }
  return ks;
}

int VipHolder(const std::vector<Keepalived>& ks, int64_t wait_ms) {
  for (int64_t t0 = NowMs(); NowMs() - t0 < wait_ms; SleepMs(20)) {
    bool a = HasVip(ks[0].ns), b = HasVip(ks[1].ns);
    if (a != b) return a ? 0 : 1;
  }
  return -1;
}

Result<std::vector<int64_t>> KeepalivedTrials(const BenchOptions& o, const json& lab,
                                              const std::string& dir, std::mt19937_64& rng) {
  auto set_up = SetUpKeepalived(lab, dir, o.keepalived_advert_ms);
  if (!set_up.ok()) return set_up.status();
  std::vector<Keepalived> ks = std::move(set_up).value();
  std::uniform_int_distribution<int64_t> phase(0, o.keepalived_advert_ms - 1);
  std::vector<int64_t> out;
  Status error = Status::Ok();
  for (int t = 0; t < o.trials && error.ok(); ++t) {
    SleepMs(5 * o.keepalived_advert_ms + 500);  // the restarted one settles as BACKUP
    int m = VipHolder(ks, 10 * o.keepalived_advert_ms + 10000);
    if (m < 0) {
      error = Status::Error("keepalived: no single VIP holder");
      break;
    }
    SleepMs(phase(rng));
    int64_t t0 = NowMs();
    StopKeepalived(&ks[m], SIGKILL);
    SetLink(ks[m].ns, false);
    int64_t ms;
    {
      InNamespace client(lab["netns"]["client"]);
      ms = OutageUntil(ks[1 - m].name, t0, 10 * o.keepalived_advert_ms + 10000);
    }
    if (ms < 0) error = Status::Error("keepalived: failover did not complete");
    out.push_back(ms);
    // Power back: a rebooted host has lost its addresses; keepalived restarts.
    Run({"ip", "-n", ks[m].ns, "addr", "del", "198.18.0.10/24", "dev", "eth0"});
    SetLink(ks[m].ns, true);
    if (error.ok()) error = StartKeepalived(&ks[m]);
  }
  for (auto& k : ks) {
    StopKeepalived(&k, SIGTERM);
    if (k.service > 0) {
      kill(k.service, SIGKILL);
      waitpid(k.service, nullptr, 0);
    }
  }
  if (!error.ok()) return error;
  return out;
}

void StopTandemDaemons(const std::string& dir) {
  json lab = *Describe(dir);
  for (auto& h : lab["hosts"]) {
    int pid = h["pid"];
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
}

}  // namespace

Result<json> BenchFailoverNetns(const BenchOptions& o) {
  LabOptions lo;
  lo.dir = o.dir;
  lo.heartbeat_interval_ms = o.heartbeat_interval_ms;
  lo.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
  lo.bin_dir = o.bin_dir;
  lo.netns = true;
  auto up = Up(lo);
  if (!up.ok()) return up.status();
  std::mt19937_64 rng(std::random_device{}());
  auto tandem = TandemTrials(o, o.dir, rng);
  Result<std::vector<int64_t>> keepalived = std::vector<int64_t>{};
  if (tandem.ok()) {
    StopTandemDaemons(o.dir);  // same namespaces, now for keepalived
    keepalived = KeepalivedTrials(o, *up, o.dir, rng);
  }
  (void)Down(o.dir);
  if (!tandem.ok()) return tandem.status();
  if (!keepalived.ok()) return keepalived.status();
  return json{{"bench", "failover-netns"},
              {"fault", "SIGKILL of the active HA daemon + its link down, random phase"},
              {"probe_every_ms", kProbeEveryMs},
              {"trials", o.trials},
              {"tandem", {{"heartbeat_interval_ms", o.heartbeat_interval_ms},
                          {"heartbeat_timeout_ms", o.heartbeat_timeout_ms},
                          {"outage", LatencyStats(*tandem)}}},
              {"keepalived", {{"advert_int_ms", o.keepalived_advert_ms},
                              {"version", "2.2.7 (Debian 12), VRRPv3, nopreempt"},
                              {"outage", LatencyStats(*keepalived)}}}};
}

}  // namespace tandem::lab
