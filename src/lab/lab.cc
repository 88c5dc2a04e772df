#include "lab/lab.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "api/control.h"
#include "lab/netns.h"
#include "os/files.h"
#include "os/process.h"

namespace tandem::lab {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kPollMs = 50;
constexpr int64_t kStopWaitMs = 10000;
const char* kHosts[] = {"primary", "secondary"};

std::string SelfDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

// A free port on `addr` for `type` (SOCK_DGRAM / SOCK_STREAM), found by
// binding port 0. Another process could take it before we do; the lab then
// fails to start and says so.
Result<int> FreePort(const std::string& addr, int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Error("socket failed");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  socklen_t len = sizeof sa;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    close(fd);
    return Status::Error("cannot bind " + addr + ": " + std::strerror(errno));
  }
  close(fd);
  return static_cast<int>(ntohs(sa.sin_port));
}

std::string RandomSubnet() {
  std::random_device rd;
  std::mt19937 rng(rd());
  // 127.100.0.0 - 127.199.255.0: clear of 127.0.0.1 and of test subnets.
  return "127." + std::to_string(100 + rng() % 100) + "." + std::to_string(rng() % 256);
}

std::string Hex(const unsigned char* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

std::string TomlList(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json(v[i]).dump();
  return s + "]";
}

// The collector's ports on the VIP (the same on both hosts: only the active
// listens).
struct CollectorPorts {
  int syslog_udp = 0, syslog_tcp = 0, relp = 0, netflow = 0;
};
constexpr CollectorPorts kNetnsCollectorPorts{10514, 10514, 12514, 12055};

// Free ports on the VIP; the two TCP ones and the two UDP ones distinct.
Result<CollectorPorts> PlanCollectorPorts(const std::string& vip) {
  CollectorPorts p;
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto a = FreePort(vip, SOCK_DGRAM), b = FreePort(vip, SOCK_STREAM);
    auto c = FreePort(vip, SOCK_STREAM), d = FreePort(vip, SOCK_DGRAM);
    for (auto* r : {&a, &b, &c, &d}) {
      if (!r->ok()) return r->status();
    }
    p = {*a, *b, *c, *d};
    if (p.syslog_tcp != p.relp && p.syslog_udp != p.netflow) return p;
  }
  return Status::Error("no distinct free ports for the collector on " + vip);
}

std::string CollectorLines(const LabOptions& o, const CollectorPorts& p) {
  if (!o.replication || !o.collector) return "";
  return "[collector]\nsyslog_udp_port = " + std::to_string(p.syslog_udp) +
         "\nsyslog_tcp_port = " + std::to_string(p.syslog_tcp) +
         "\nrelp_port = " + std::to_string(p.relp) +
         "\nnetflow_port = " + std::to_string(p.netflow) + "\n" +
         (o.capacity_stop_percent > 0
              ? "capacity_stop_percent = " + std::to_string(o.capacity_stop_percent) + "\n"
              : "") +
         (o.capacity_resume_percent > 0
              ? "capacity_resume_percent = " + std::to_string(o.capacity_resume_percent) + "\n"
              : "") +
         "\n";
}

struct HostPlan {
  std::string name, role, addr, dir;
  int hb_port = 0;
  std::string xo_addr;  // crossover address (netns lab with --crossover)
  int repl_port = 0;    // replication (7789 in a netns lab)
  std::string store_dir = "store";  // [replication] store_dir (relative: to the host dir)
  int console_port = 0; // the console's HTTPS port (primary, with --console)
  int agent_port = 0;   // the agent's HTTPS port (every host, with --console)
};

constexpr int kNetnsAgentPort = 7790;         // the appliance default (docs/CONSOLE.md)
constexpr int kNetnsManagedAgentPort = 7791;  // next to the managed namespaces' witness
constexpr int kMaxManaged = 8;

// [agent] on a host of the cluster, with --console: listening on the host's
// own lab address.
std::string AgentLines(const LabOptions& o, const HostPlan& h) {
  if (!o.console || h.agent_port == 0) return "";
  return "[agent]\nlisten = \"" + h.addr + ":" + std::to_string(h.agent_port) + "\"\n\n";
}

// A managed host of --managed: an agent-only tandemd (no [cluster], no
// [heartbeat]: docs/CONFIG.md), its own state, store and packages.
struct ManagedPlan {
  std::string name, addr, dir, netns;
  int agent_port = 0;
  // The ports of a pair a console's deploy forms (0: the defaults, 7788 and
  // 7789): on loopback, free ones, the same on every managed host.
  int hb_port = 0, repl_port = 0;
};

std::string ManagedConfig(const ManagedPlan& m) {
  std::string ports;
  if (m.hb_port != 0) ports += "heartbeat_port = " + std::to_string(m.hb_port) + "\n";
  if (m.repl_port != 0) ports += "replication_port = " + std::to_string(m.repl_port) + "\n";
  return "# Written by `tandem lab up --managed`: an unclustered managed host (agent only);\n"
         "# reference: docs/CONFIG.md\n"
         "[host]\nname = \"" + m.name + "\"\nstate_dir = \"state\"\nrun_dir = \"run\"\n\n"
         "[agent]\nlisten = \"" + m.addr + ":" + std::to_string(m.agent_port) + "\"\n"
         "store_dir = \"store\"\npackages_dir = \"packages\"\n" + ports + "\n"
         "[log]\nlevel = \"info\"\nfile = \"tandemd.log\"\n";
}

std::string ManagedName(int i) { return "lab-managed-" + std::to_string(i + 1); }

constexpr int kNetnsConsolePort = 8443;

// [console] on the primary (docs/CONSOLE.md): its state (database, first
// admin's password, certificate) under the host's state directory.
std::string ConsoleLines(const LabOptions& o, const HostPlan& h) {
  if (!o.console || h.console_port == 0) return "";
  return "[console]\nlisten = \"" + h.addr + ":" + std::to_string(h.console_port) +
         "\"\nsession_ttl_s = " + std::to_string(o.console_session_ttl_s) + "\n\n";
}

// [replication]: each host's store_dir next to its config; the replication
// connection uses the crossover link when there is one (R-DS-6).
std::string ReplicationLines(const LabOptions& o, const HostPlan& h, const HostPlan& peer) {
  if (!o.replication) return "";
  const std::string& a = h.xo_addr.empty() ? h.addr : h.xo_addr;
  const std::string& b = peer.xo_addr.empty() ? peer.addr : peer.xo_addr;
  return "[replication]\nstore_dir = " + json(h.store_dir).dump() + "\nlisten = \"" + a + ":" + std::to_string(h.repl_port) +
         "\"\npeer = \"" + b + ":" + std::to_string(peer.repl_port) + "\"\nsync_rate_mb = " +
         std::to_string(o.sync_rate_mb) +
         // Not the 500 ms heartbeat timeout of the fast profile: a sync target
         // under ASan on a loaded two-core machine may be that slow to answer,
         // and a dropped connection restarts the resync.
         "\ntimeout_ms = " + std::to_string(std::max<int64_t>(2000, o.heartbeat_timeout_ms)) + "\n\n";
}

// The [cluster] VIP lines and the host's interface for each lab kind.
std::string VipLines(const LabOptions& o, const std::string& vip) {
  std::string s = "vip = \"" + vip + "\"\n";
  if (o.netns) s += "vip_mode = \"interface\"\nvip_prefix = 24\n";
  return s;
}

std::string HeartbeatPaths(const HostPlan& h, const HostPlan& peer) {
  std::string s = "listen = \"" + h.addr + ":" + std::to_string(h.hb_port) + "\"\npeer = \"" +
                  peer.addr + ":" + std::to_string(peer.hb_port) + "\"\n";
  if (!h.xo_addr.empty()) {
    s += "crossover_listen = \"" + h.xo_addr + ":" + std::to_string(h.hb_port) +
         "\"\ncrossover_peer = \"" + peer.xo_addr + ":" + std::to_string(peer.hb_port) + "\"\n";
  }
  return s;
}

// Connectivity tests as often as heartbeats, but never with less than 200 ms
// to answer: one failed test on the active moves the role (R-NC-2), and on a
// loaded machine (CI: two cores, tests running side by side) 50 ms is too
// short for the managed hosts' answers.
int64_t ConnIntervalMs(const LabOptions& o) {
  return std::max<int64_t>(o.heartbeat_interval_ms, 200);
}

std::string HostConfig(const LabOptions& o, const HostPlan& h, const HostPlan& peer,
                       const std::string& vip, int service_port, const std::string& bin,
                       const CollectorPorts& cp) {
  std::string notify = "echo \"$(date +%Y-%m-%dT%H:%M:%S.%N) $*\" >> " + o.dir + "/notify.log";
  std::vector<std::string> demo = {bin + "/tandem", "demo-service", "--bind",
                                   vip + ":" + std::to_string(service_port), "--name", h.name};
  return "# Written by `tandem lab up`; reference: docs/CONFIG.md\n"
         "[cluster]\nname = \"lab\"\nkey_file = \"../cluster.key\"\n" + VipLines(o, vip) + "\n"
         "[host]\nname = \"" + h.name + "\"\nrole = \"" + h.role + "\"\n"
         "state_dir = \"state\"\nrun_dir = \"run\"\n" +
         (o.netns ? "interface = \"eth0\"\n" : "") + "\n"
         "[heartbeat]\ninterval_ms = " + std::to_string(o.heartbeat_interval_ms) +
         "\ntimeout_ms = " + std::to_string(o.heartbeat_timeout_ms) +
         "\ninitial_dead_time_ms = " + std::to_string(2 * o.heartbeat_timeout_ms) + "\n" +
         HeartbeatPaths(h, peer) + "\n"
         "[connectivity]\npeers = " + TomlList(o.connectivity_peers) +
         "\nicmp_peers = " + TomlList(o.icmp_peers) + "\nwitnesses = " + TomlList(o.witnesses) +
         "\ninterval_ms = " + std::to_string(ConnIntervalMs(o)) +
         "\ntimeout_ms = " + std::to_string(ConnIntervalMs(o)) +
         "\n\n[[service]]\nname = \"demo\"\ncommand = " + TomlList(demo) +
         "\nrestart_backoff_min_ms = 20\nrestart_backoff_max_ms = 1000\n\n"
         "[notify]\ncommand = " + TomlList({"/bin/sh", "-c", notify, "notify"}) +
         "\n\n[log]\nlevel = \"info\"\nfile = \"tandemd.log\"\n\n" + ReplicationLines(o, h, peer) + CollectorLines(o, cp) +
         ConsoleLines(o, h) + AgentLines(o, h);
}

Result<json> QueryStatus(const std::string& config_dir) {
  return api::Call(config_dir + "/run/tandemd.sock", json{{"cmd", "status"}}, 2000);
}

// Both daemons answer and one is ACTIVE, the other STANDBY.
bool Settled(const std::string& dir) {
  int active = 0, standby = 0;
  for (const char* h : kHosts) {
    auto st = QueryStatus(dir + "/" + h);
    if (!st.ok()) return false;
    std::string s = (*st)["local"].value("status", "");
    active += s == "ACTIVE";
    standby += s == "STANDBY";
    // The active's take-over sequence has finished: its services run.
    if (s == "ACTIVE") {
      for (const json& svc : (*st)["local"].value("services", json::array())) {
        if (svc.value("state", "") != "running") return false;
      }
    }
    // With replication: connected, in sync, both UpToDate.
    const json& r = (*st)["replication"];
    if (r.is_object() && (r.value("replication", "") != "Established" || r.value("disk", "") != "UpToDate")) {
      return false;
    }
  }
  return active == 1 && standby == 1;
}

constexpr int kNetnsHeartbeatPort = 7788;
constexpr int kNetnsReplicationPort = 7789;
constexpr int kNetnsServicePort = 8080;
constexpr int kNetnsManagedPort = 7000;  // the managed hosts' responder (connectivity tests)
constexpr int kNetnsWitnessPort = 7790;  // the managed hosts' witness (indirect heartbeat)

// Loopback lab: a random 127.x.y.0/24 and free ports.
Status PlanLoopback(const LabOptions& o, HostPlan (&hosts)[2], std::string* vip, int* port) {
  std::string subnet = o.subnet.empty() ? RandomSubnet() : o.subnet;
  *vip = subnet + ".10";
  hosts[0].addr = subnet + ".1";
  hosts[1].addr = subnet + ".2";
  for (HostPlan& h : hosts) {
    auto p = FreePort(h.addr, SOCK_DGRAM);
    if (!p.ok()) return p.status();
    h.hb_port = *p;
    auto r = FreePort(h.addr, SOCK_STREAM);
    if (!r.ok()) return r.status();
    h.repl_port = *r;
  }
  auto sp = FreePort(*vip, SOCK_STREAM);
  if (!sp.ok()) return sp.status();
  *port = *sp;
  return Status::Ok();
}

// Netns lab: fixed addresses in fresh namespaces (198.18.0.0/24).
void PlanNetns(LabOptions& o, HostPlan (&hosts)[2], std::string* vip, int* port) {
  *vip = kNetnsVip;
  *port = kNetnsServicePort;
  hosts[0].addr = kNetnsPrimary;
  hosts[1].addr = kNetnsSecondary;
  for (HostPlan& h : hosts) {
    h.hb_port = kNetnsHeartbeatPort;
    h.repl_port = kNetnsReplicationPort;
  }
  if (o.crossover) {
    hosts[0].xo_addr = kNetnsCrossoverPrimary;
    hosts[1].xo_addr = kNetnsCrossoverSecondary;
  }
  if (o.connectivity_peers.empty()) {  // default: every managed host (R-CL-2)
    for (const char* m : kNetnsManaged) {
      o.connectivity_peers.push_back(std::string(m) + ":" + std::to_string(kNetnsManagedPort));
    }
  }
  if (o.icmp_peers.empty()) {
    for (const char* m : kNetnsManaged) o.icmp_peers.push_back(m);
  }
  if (o.use_witnesses) {
    for (const char* m : kNetnsManaged) {
      o.witnesses.push_back(std::string(m) + ":" + std::to_string(kNetnsWitnessPort));
    }
  }
}

json NetnsJson(const NetnsPlan& plan) {
  return {{"id", plan.id}, {"primary", plan.Ns("p")}, {"secondary", plan.Ns("s")},
          {"client", plan.Ns("c")}, {"switch", plan.Ns("sw")},
          {"managed", {plan.Ns("m1"), plan.Ns("m2")}}, {"crossover", plan.crossover}};
}

Status WriteLab(LabOptions o, const NetnsPlan* plan, json* lab) {
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(o.dir, 0755));
  std::string bin = o.bin_dir.empty() ? SelfDir() : o.bin_dir;
  std::string vip;
  int service_port = 0;
  HostPlan hosts[2] = {{"lab-primary", "primary", "", o.dir + "/primary", 0, ""},
                       {"lab-secondary", "secondary", "", o.dir + "/secondary", 0, ""}};
  if (plan) {
    PlanNetns(o, hosts, &vip, &service_port);
  } else {
    TANDEM_RETURN_IF_ERROR(PlanLoopback(o, hosts, &vip, &service_port));
  }
  if (o.console) {
    if (plan) {
      hosts[0].console_port = kNetnsConsolePort;
    } else {
      auto p = FreePort(hosts[0].addr, SOCK_STREAM);
      if (!p.ok()) return p.status();
      hosts[0].console_port = *p;
    }
    for (HostPlan& h : hosts) {
      if (plan) {
        h.agent_port = kNetnsAgentPort;
        continue;
      }
      // Distinct from the host's other TCP ports.
      for (int attempt = 0; attempt < 16 && h.agent_port == 0; ++attempt) {
        auto p = FreePort(h.addr, SOCK_STREAM);
        if (!p.ok()) return p.status();
        if (*p != h.repl_port && *p != h.console_port) h.agent_port = *p;
      }
      if (h.agent_port == 0) return Status::Error("no free port for the agent on " + h.addr);
    }
  }
  std::vector<ManagedPlan> managed;
  int managed_hb_port = 0, managed_repl_port = 0;
  if (o.managed > 0 && !plan) {
    auto hb = FreePort("127.0.0.1", SOCK_DGRAM);
    if (!hb.ok()) return hb.status();
    auto rp = FreePort("127.0.0.1", SOCK_STREAM);
    if (!rp.ok()) return rp.status();
    managed_hb_port = *hb;
    managed_repl_port = *rp;
  }
  for (int i = 0; i < o.managed; ++i) {
    ManagedPlan m{ManagedName(i), "", o.dir + "/" + ManagedName(i), "", 0};
    if (plan) {
      m.addr = kNetnsManaged[i];
      m.netns = plan->Ns(i == 0 ? "m1" : "m2");
      m.agent_port = kNetnsManagedAgentPort;
    } else {
      // 127.0.0.1: on loopback it is the only address an interface holds
      // (lo, 127.0.0.1/8), and the console's cluster checks (R-CL-3) want a
      // managed host's address on one of its interfaces.
      m.addr = "127.0.0.1";
      auto p = FreePort(m.addr, SOCK_STREAM);
      if (!p.ok()) return p.status();
      m.agent_port = *p;
      m.hb_port = managed_hb_port;
      m.repl_port = managed_repl_port;
    }
    managed.push_back(m);
  }
  CollectorPorts cp = kNetnsCollectorPorts;
  const bool collector = o.replication && o.collector;
  if (collector && !plan) {
    auto p = PlanCollectorPorts(vip);
    if (!p.ok()) return p.status();
    cp = *p;
  }
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1) return Status::Error("RAND_bytes failed");
  TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(o.dir + "/cluster.key", Hex(key, sizeof key) + "\n", 0600));
  if (!o.store_dirs.empty()) {
    if (o.store_dirs.size() != 2) return Status::Error("store_dirs: give both hosts' store directories");
    for (int i = 0; i < 2; ++i) hosts[i].store_dir = o.store_dirs[static_cast<size_t>(i)];
  }
  json hj = json::array();
  for (int i = 0; i < 2; ++i) {
    TANDEM_RETURN_IF_ERROR(os::MakeDirs(hosts[i].dir, 0755));
    std::string cfg = hosts[i].dir + "/tandemd.toml";
    TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(
        cfg, HostConfig(o, hosts[i], hosts[1 - i], vip, service_port, bin, cp), 0644));
    hj.push_back({{"name", hosts[i].name}, {"role", hosts[i].role}, {"pid", 0},
                  {"config", cfg}, {"address", hosts[i].addr}});
    if (hosts[i].agent_port != 0) {
      hj.back()["agent"] = {{"address", hosts[i].addr + ":" + std::to_string(hosts[i].agent_port)}};
      hj.back()["pairing_file"] = o.dir + "/" + hosts[i].role + ".pairing";
    }
    if (o.replication) {
      hj.back()["store_dir"] = o.store_dirs.empty() ? hosts[i].dir + "/store" : hosts[i].store_dir;
      hj.back()["repl_port"] = hosts[i].repl_port;
      hj.back()["volume_socket"] = hosts[i].dir + "/run/volume.sock";
    }
  }
  *lab = {{"vip", vip}, {"service_port", service_port}, {"hosts", hj}, {"dir", o.dir},
          {"bin_dir", bin}, {"heartbeat_interval_ms", o.heartbeat_interval_ms},
          {"heartbeat_timeout_ms", o.heartbeat_timeout_ms}};
  if (plan) (*lab)["netns"] = NetnsJson(*plan);
  if (o.managed > 0) {
    json mj = json::array();
    for (const ManagedPlan& m : managed) {
      TANDEM_RETURN_IF_ERROR(os::MakeDirs(m.dir + "/packages", 0755));
      TANDEM_RETURN_IF_ERROR(os::MakeDirs(m.dir + "/store", 0755));
      const std::string cfg = m.dir + "/tandemd.toml";
      TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(cfg, ManagedConfig(m), 0644));
      mj.push_back({{"name", m.name}, {"role", "managed"}, {"pid", 0}, {"config", cfg},
                    {"address", m.addr},
                    {"agent", {{"address", m.addr + ":" + std::to_string(m.agent_port)}}},
                    {"pairing_file", o.dir + "/" + m.name + ".pairing"},
                    {"packages_dir", m.dir + "/packages"}, {"store_dir", m.dir + "/store"}});
      if (!m.netns.empty()) mj.back()["netns"] = m.netns;
    }
    (*lab)["managed_hosts"] = mj;
  }
  if (o.console) {
    const std::string console_dir = hosts[0].dir + "/state/console";
    (*lab)["api"] = {{"url", "https://" + hosts[0].addr + ":" + std::to_string(hosts[0].console_port)},
                     {"user", "admin"},
                     {"password_file", console_dir + "/admin.password"},
                     {"tls_cert", console_dir + "/tls/cert.pem"},
                     {"license_keys_dir", console_dir + "/license-keys"}};
  }
  if (collector) {
    (*lab)["ports"] = {{"syslog_udp", cp.syslog_udp}, {"syslog_tcp", cp.syslog_tcp},
                       {"relp", cp.relp}, {"netflow", cp.netflow}};
  }
  return os::WriteFileAtomic(o.dir + "/lab.json", lab->dump(2) + "\n", 0644);
}

// Reaps `pid` if it is our child (in-process labs: tests, benchmarks).
bool Alive(int pid) {
  if (pid <= 0) return false;
  if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
  return kill(pid, 0) == 0;
}

// Waits for `pid` (not our child) to vanish.
bool WaitGone(int pid, int64_t ms) {
  for (int64_t waited = 0; waited < ms; waited += kPollMs) {
    if (!Alive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
  return !Alive(pid);
}

}  // namespace

Result<json> Describe(const std::string& dir) {
  auto text = os::ReadFile(dir + "/lab.json", 1 << 20);
  if (!text.ok()) return Status::Error("no lab in " + dir + ": " + text.status().message());
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return Status::Error(dir + "/lab.json: not valid JSON");
  return j;
}

Result<int> StartHost(const std::string& dir, const std::string& which) {
  auto lab = Describe(dir);
  if (!lab.ok()) return lab.status();
  int index = which == "primary" ? 0 : which == "secondary" ? 1 : -1;
  json* managed = nullptr;
  if (index < 0 && lab->contains("managed_hosts")) {
    for (json& m : (*lab)["managed_hosts"]) {
      if (m.value("name", "") == which) managed = &m;
    }
  }
  if (index < 0 && managed == nullptr) {
    return Status::Error("host must be 'primary', 'secondary' or a managed host's name, got '" +
                         which + "'");
  }
  json& h = managed != nullptr ? *managed : (*lab)["hosts"][static_cast<size_t>(index)];
  if (Alive(h.value("pid", 0))) return Status::Error(which + " is already running (pid " +
                                                     std::to_string(h.value("pid", 0)) + ")");
  os::SpawnOptions so;
  so.die_with_parent = false;  // the lab outlives `tandem lab up`
  so.stdout_path = dir + "/" + which + "/tandemd.out";
  std::vector<std::string> argv;
  if (managed != nullptr) {
    if (managed->contains("netns")) argv = InNetns((*managed)["netns"].get<std::string>());
  } else if (lab->contains("netns")) {
    argv = InNetns((*lab)["netns"][which].get<std::string>());
  }
  argv.insert(argv.end(), {(*lab)["bin_dir"].get<std::string>() + "/tandemd", "--config",
                           h["config"].get<std::string>()});
  auto pid = os::Spawn(argv, so);
  if (!pid.ok()) return pid.status();
  h["pid"] = *pid;
  TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(dir + "/lab.json", lab->dump(2) + "\n", 0644));
  return static_cast<int>(*pid);
}

// Every agent's one-time pairing string (`tandemd pair-token`), into the
// host's "pairing_file" (0600; the secret is never printed). Waits for each
// daemon to have made its agent certificate, so that the string pins the
// certificate the agent serves.
Status WritePairingFiles(const std::string& dir, std::chrono::steady_clock::time_point deadline) {
  auto lab = Describe(dir);
  if (!lab.ok()) return lab.status();
  json all = (*lab)["hosts"];
  for (const auto& m : lab->value("managed_hosts", json::array())) all.push_back(m);
  for (const json& h : all) {
    if (!h.contains("pairing_file")) continue;
    const std::string config = h["config"].get<std::string>();
    const std::string tls = fs::path(config).parent_path().string() + "/state/agent/tls/";
    while (!(fs::exists(tls + "cert.pem") && fs::exists(tls + "key.pem"))) {
      if (!Alive(h.value("pid", 0))) {
        return Status::Error(h.value("name", "") + "'s tandemd exited; see " +
                             fs::path(config).parent_path().string() + "/tandemd.log");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Status::Error(h.value("name", "") + "'s agent made no certificate in time");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
    }
    const std::string file = h["pairing_file"].get<std::string>();
    TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(file, "", 0600));
    os::SpawnOptions so;
    so.stdout_path = file;
    auto pid = os::Spawn({(*lab)["bin_dir"].get<std::string>() + "/tandemd", "pair-token",
                          "--config", config},
                         so);
    if (!pid.ok()) return pid.status();
    int ws = 0;
    if (waitpid(*pid, &ws, 0) != *pid) return Status::Error("waitpid failed");
    auto text = os::ReadFile(file, 4096);
    if (!text.ok()) return text.status();
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || text->rfind("tp1.", 0) != 0) {
      std::string why = *text;
      std::remove(file.c_str());
      return Status::Error("tandemd pair-token --config " + config + " " +
                           os::DescribeWaitStatus(ws) + ": " + why);
    }
  }
  return Status::Ok();
}

// The managed hosts of a netns lab answer TCP on kNetnsManagedPort: they are
// the cluster's connectivity test peers.
Status StartManagedHosts(const std::string& dir) {
  auto lab = Describe(dir);
  if (!lab.ok()) return lab.status();
  json managed = json::array();
  for (size_t i = 0; i < 2; ++i) {
    std::string ns = (*lab)["netns"]["managed"][i];
    std::string name = "managed-" + std::to_string(i + 1);
    std::vector<std::string> argv = InNetns(ns);
    argv.insert(argv.end(), {(*lab)["bin_dir"].get<std::string>() + "/tandem", "demo-service",
                             "--bind", std::string(kNetnsManaged[i]) + ":" +
                                           std::to_string(kNetnsManagedPort), "--name", name});
    os::SpawnOptions so;
    so.die_with_parent = false;
    so.stdout_path = dir + "/" + name + ".out";
    auto pid = os::Spawn(argv, so);
    if (!pid.ok()) return pid.status();
    std::vector<std::string> wargv = InNetns(ns);
    wargv.insert(wargv.end(), {(*lab)["bin_dir"].get<std::string>() + "/tandem", "witness",
                               "--listen", std::string(kNetnsManaged[i]) + ":" +
                                               std::to_string(kNetnsWitnessPort),
                               "--key-file", dir + "/cluster.key", "--name", name});
    so.stdout_path = dir + "/" + name + "-witness.out";
    auto wpid = os::Spawn(wargv, so);
    if (!wpid.ok()) return wpid.status();
    managed.push_back({{"name", name}, {"netns", ns}, {"address", kNetnsManaged[i]},
                       {"pid", *pid}, {"witness_pid", *wpid}});
  }
  (*lab)["managed"] = managed;
  return os::WriteFileAtomic(dir + "/lab.json", lab->dump(2) + "\n", 0644);
}

Result<json> Up(const LabOptions& o) {
  if (o.dir.empty()) return Status::Error("--dir is required");
  if (o.managed < 0 || o.managed > kMaxManaged) {
    return Status::Error("--managed must be 0.." + std::to_string(kMaxManaged));
  }
  if (o.managed > 0 && !o.console) return Status::Error("--managed needs --console");
  if (o.managed > 2 && o.netns) {
    return Status::Error("--managed: a netns lab has 2 managed hosts' namespaces");
  }
  auto existing = Describe(o.dir);
  if (existing.ok()) {
    json all = (*existing)["hosts"];
    for (const auto& m : existing->value("managed_hosts", json::array())) all.push_back(m);
    for (const auto& h : all) {
      if (Alive(h.value("pid", 0))) {
        return Status::Error("a lab is already running in " + o.dir + " (run `tandem lab down`)");
      }
    }
  }
  // A new lab starts from nothing: an earlier lab's state (epochs, FAILED,
  // OFFLINE, pairings) in the same directory would decide the election.
  for (const char* h : kHosts) {
    std::error_code ec;
    fs::remove_all(o.dir + "/" + h, ec);
    fs::remove((o.dir + "/" + h + ".pairing"), ec);
  }
  for (int i = 0; i < kMaxManaged; ++i) {
    std::error_code ec;
    fs::remove_all(o.dir + "/" + ManagedName(i), ec);
    fs::remove(o.dir + "/" + ManagedName(i) + ".pairing", ec);
  }
  std::remove((o.dir + "/notify.log").c_str());
  json lab;
  std::optional<NetnsPlan> plan;
  if (o.netns) {
    plan = NetnsPlan{NewNetnsId(), o.crossover};
    TANDEM_RETURN_IF_ERROR(CreateNetns(*plan));
  }
  Status written = WriteLab(o, plan ? &*plan : nullptr, &lab);
  if (written.ok() && plan) written = StartManagedHosts(o.dir);
  if (!written.ok()) {
    if (plan) DestroyNetns(*plan);
    return written;
  }
  std::vector<std::string> names(std::begin(kHosts), std::end(kHosts));
  for (int i = 0; i < o.managed; ++i) names.push_back(ManagedName(i));
  for (const std::string& h : names) {
    auto pid = StartHost(o.dir, h);
    if (!pid.ok()) {
      (void)Down(o.dir);
      return pid.status();
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.wait_ms);
  while (!Settled(o.dir)) {
    if (std::chrono::steady_clock::now() > deadline) {
      (void)Down(o.dir);
      return Status::Error("the lab did not settle into ACTIVE/STANDBY within " +
                           std::to_string(o.wait_ms) + " ms; see " + o.dir + "/*/tandemd.log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
  if (o.console) {
    Status st = WritePairingFiles(o.dir, deadline);
    if (!st.ok()) {
      (void)Down(o.dir);
      return st;
    }
  }
  return Describe(o.dir);
}

Status Down(const std::string& dir) {
  auto lab = Describe(dir);
  if (!lab.ok()) return lab.status();
  std::string problems;
  for (auto& h : (*lab)["hosts"]) {
    int pid = h.value("pid", 0);
    if (!Alive(pid)) continue;
    kill(pid, SIGTERM);  // the daemon stops its services and releases the VIP
    if (!WaitGone(pid, kStopWaitMs)) {
      kill(pid, SIGKILL);  // its services die with it (death signal)
      if (!WaitGone(pid, kStopWaitMs)) problems += " pid " + std::to_string(pid) + " survived;";
    }
  }
  // Services of a daemon that was SIGKILLed and never restarted: the pids
  // file is the supervisor's record (name pid starttime).
  for (const char* h : kHosts) {
    std::ifstream pids(dir + "/" + h + "/run/services.pids");
    std::string name;
    long pid = 0;
    unsigned long long start = 0;
    while (pids >> name >> pid >> start) {
      if (pid > 0 && os::ProcessStartTime(static_cast<pid_t>(pid)) == start) {
        kill(-static_cast<pid_t>(pid), SIGKILL);
      }
    }
    std::error_code ec;
    fs::remove_all(dir + "/" + h + "/run", ec);
  }
  for (const auto& m : lab->value("managed_hosts", json::array())) {
    int pid = m.value("pid", 0);
    if (!Alive(pid)) continue;
    kill(pid, SIGTERM);
    if (!WaitGone(pid, kStopWaitMs)) {
      kill(pid, SIGKILL);
      if (!WaitGone(pid, kStopWaitMs)) problems += " pid " + std::to_string(pid) + " survived;";
    }
  }
  for (const auto& m : lab->value("managed", json::array())) {
    for (const char* k : {"pid", "witness_pid"}) {
      int pid = m.value(k, 0);
      if (Alive(pid)) kill(pid, SIGKILL);
      WaitGone(pid, kStopWaitMs);
    }
  }
  if (lab->contains("netns")) {
    const json& n = (*lab)["netns"];
    DestroyNetns(NetnsPlan{n["id"].get<std::string>(), n.value("crossover", false)});
  }
  if (!problems.empty()) return Status::Error("lab down:" + problems);
  return Status::Ok();
}

}  // namespace tandem::lab
