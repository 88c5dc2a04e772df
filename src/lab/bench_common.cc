// Helpers shared by the benchmarks (lab/bench.h): clocks, latency statistics,
// peak memory, the machine's description and waiting for a settled lab.
#include <signal.h>
#include <sys/wait.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "api/control.h"
#include "lab/bench.h"
#include "lab/lab.h"
#include "os/files.h"

namespace tandem::lab {

using nlohmann::json;

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
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

double SteadyNowS() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

double RoundTo(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

int64_t ProcStatusKib(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  int64_t value = 0;
  while (in >> key) {
    if (key == field) {
      in >> value;
      return value;
    }
  }
  return 0;
}

int64_t PeakRssKib(int pid) { return ProcStatusKib(pid, "VmHWM:"); }

double CpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 > text.size()) return 0;
  std::istringstream rest(text.substr(paren + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

namespace {

std::atomic<bool> g_interrupted{false};
void OnBenchSignal(int) { g_interrupted.store(true); }

}  // namespace

// Filesystem type and options of the mount holding `path` (/proc/mounts).
json MountOf(const std::string& path) {
  std::error_code ec;
  std::string p = std::filesystem::weakly_canonical(path, ec).string();
  std::ifstream in("/proc/mounts");
  std::string src, mnt, type, opts, a, b;
  json best = json{{"mount", ""}};
  size_t best_len = 0;
  while (in >> src >> mnt >> type >> opts >> a >> b) {
    bool under = p == mnt || mnt == "/" || p.rfind(mnt + "/", 0) == 0;
    if (under && mnt.size() >= best_len) {
      best_len = mnt.size();
      best = json{{"mount", mnt}, {"device", src}, {"fstype", type}, {"options", opts}};
    }
  }
  return best;
}

struct BenchSignalScope::Saved {
  struct sigaction old_int {}, old_term {};
};

BenchSignalScope::BenchSignalScope() : saved_(new Saved) {
  g_interrupted.store(false);
  struct sigaction sa {};
  sa.sa_handler = OnBenchSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &saved_->old_int);
  sigaction(SIGTERM, &sa, &saved_->old_term);
}

BenchSignalScope::~BenchSignalScope() {
  sigaction(SIGINT, &saved_->old_int, nullptr);
  sigaction(SIGTERM, &saved_->old_term, nullptr);
  delete saved_;
}

bool BenchInterruptRequested() { return g_interrupted.load(); }

Status BenchInterrupted() {
  return g_interrupted.load() ? Status::Error("interrupted (SIGINT/SIGTERM): stopping the lab")
                              : Status::Ok();
}

json MachineJson(const std::string& dir) {
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
  std::ifstream mem("/proc/meminfo");
  std::string key;
  int64_t mem_kib = 0;
  while (mem >> key) {
    if (key == "MemTotal:") {
      mem >> mem_kib;
      break;
    }
  }
  double load = 0;
  std::ifstream("/proc/loadavg") >> load;
  json j{{"cpus", std::thread::hardware_concurrency()}, {"cpu_model", model},
         {"kernel", std::string(u.release)}, {"mem_mib", mem_kib / 1024},
         {"load_avg", load}};
  if (!dir.empty()) j["lab_filesystem"] = MountOf(dir);
  return j;
}

std::string LabHostStatus(const json& lab, size_t i) {
  std::string dir =
      std::filesystem::path(lab["hosts"][i]["config"].get<std::string>()).parent_path();
  auto r = api::Call(dir + "/run/tandemd.sock", json{{"cmd", "status"}}, 2000);
  return r.ok() ? (*r)["local"].value("status", "") : "";
}

int WaitActiveStandby(const json& lab, int64_t ms) {
  for (int64_t t0 = SteadyNowMs(); SteadyNowMs() - t0 < ms;) {
    std::string a = LabHostStatus(lab, 0), b = LabHostStatus(lab, 1);
    if (a == "ACTIVE" && b == "STANDBY") return 0;
    if (a == "STANDBY" && b == "ACTIVE") return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

// ---- Lab hosts of the benchmarks ----

void NoteRss(BenchHost& h) {
  if (h.pid > 0) h.peak_rss_kib = std::max(h.peak_rss_kib, PeakRssKib(h.pid));
}

Result<nlohmann::json> HostStatus(const BenchHost& h) {
  auto r = api::Call(h.control, nlohmann::json{{"cmd", "status"}}, kBenchStatusTimeoutMs);
  if (!r.ok()) return r.status();
  if (!r->value("ok", false)) return Status::Error(h.which + ": status: " + r->value("error", "?"));
  return *r;
}

Result<nlohmann::json> HostReplication(const BenchHost& h) {
  auto r = HostStatus(h);
  if (!r.ok()) return r.status();
  if (!r->contains("replication") || !(*r)["replication"].is_object()) {
    return Status::Error(h.which + ": the status has no replication object");
  }
  return (*r)["replication"];
}

bool ReplicasInSync(const nlohmann::json& a, const nlohmann::json& b) {
  return a.value("replication", "") == "Established" && b.value("replication", "") == "Established" &&
         a.value("disk", "") == "UpToDate" && b.value("disk", "") == "UpToDate" &&
         a.value("generations", "") == b.value("generations", "");
}

Status WaitInSync(const BenchHost& p, const BenchHost& s, int64_t ms) {
  nlohmann::json last_a, last_b;
  for (double end = SteadyNowS() + static_cast<double>(ms) / 1000.0; SteadyNowS() < end;) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    auto a = HostReplication(p), b = HostReplication(s);
    if (a.ok() && b.ok()) {
      if (ReplicasInSync(*a, *b)) return Status::Ok();
      last_a = *a;
      last_b = *b;
    }
    SleepMs(kBenchPollMs);
  }
  return Status::Error("the hosts did not get in sync within " + std::to_string(ms) +
                       " ms; primary: " + last_a.dump() + " secondary: " + last_b.dump());
}

Status WaitPeerGone(const BenchHost& p, int64_t ms) {
  for (double end = SteadyNowS() + static_cast<double>(ms) / 1000.0; SteadyNowS() < end;) {
    TANDEM_RETURN_IF_ERROR(BenchInterrupted());
    auto a = HostReplication(p);
    if (a.ok() && !(*a)["peer"].value("connected", true) && !a->value("protected", true)) {
      return Status::Ok();
    }
    SleepMs(kBenchPollMs);
  }
  return Status::Error("the primary still sees its peer connected after the secondary stopped");
}

Status StopBenchHost(const std::string& lab_dir, BenchHost& h) {
  if (h.pid <= 0) return Status::Ok();
  NoteRss(h);
  ::kill(h.pid, SIGTERM);
  double end = SteadyNowS() + static_cast<double>(kBenchStopWaitMs) / 1000.0;
  for (;;) {
    int ws = 0;
    pid_t r = ::waitpid(h.pid, &ws, WNOHANG);
    if (r == h.pid || (r < 0 && errno == ECHILD && ::kill(h.pid, 0) != 0)) break;
    if (SteadyNowS() > end) {
      ::kill(h.pid, SIGKILL);
      ::waitpid(h.pid, &ws, 0);
      h.pid = 0;
      return Status::Error(h.which + " tandemd ignored SIGTERM (killed); see " + h.dir + "/tandemd.log");
    }
    SleepMs(5);
  }
  h.pid = 0;
  auto lab = Describe(lab_dir);
  if (!lab.ok()) return lab.status();
  (*lab)["hosts"][h.which == "primary" ? 0 : 1]["pid"] = 0;
  return os::WriteFileAtomic(lab_dir + "/lab.json", lab->dump(2) + "\n", 0644);
}

Status StartBenchHost(const std::string& lab_dir, BenchHost& h) {
  auto pid = StartHost(lab_dir, h.which);
  if (!pid.ok()) return pid.status().Prefix("starting " + h.which + ": ");
  h.pid = *pid;
  return Status::Ok();
}

}  // namespace tandem::lab
