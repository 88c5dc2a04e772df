// Helpers shared by the benchmarks (lab/bench.h): clocks, latency statistics,
// peak memory, the machine's description and waiting for a settled lab.
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/control.h"
#include "lab/bench.h"

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

json MachineJson() {
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
  return json{{"cpus", std::thread::hardware_concurrency()}, {"cpu_model", model},
              {"kernel", std::string(u.release)}, {"mem_mib", mem_kib / 1024},
              {"load_avg", load}};
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

}  // namespace tandem::lab
