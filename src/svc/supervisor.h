// Supervised services (R-FO-2): started when the host becomes Active, stopped
// on Standby/Offline, restarted with exponential backoff when they exit on
// their own. A crash never causes failover; it is counted and shown.
// Services never outlive the daemon: each is spawned with a death signal in
// its own process group, and its pgid is recorded under run_dir so that a
// restarted daemon kills what a previous (killed) run left (CleanupStale).
// Single-threaded: all calls on the event loop thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "os/event_loop.h"
#include "os/process.h"

namespace tandem::svc {

struct ServiceStatus {
  std::string name;
  std::string state;       // "stopped" | "running" | "backoff" | "stopping"
  int pid = 0;             // 0 unless running/stopping
  int restarts = 0;        // restarts after unexpected exits since last StartAll
  std::string last_exit;   // "" or DescribeWaitStatus of the last unexpected exit
  int64_t since_ms = 0;    // monotonic time of the last state change
};

class Supervisor {
 public:
  // `log(level, message)` receives one line per service event
  // (level: "info" | "warn" | "error").
  using LogFn = std::function<void(const std::string& level, const std::string& msg)>;
  Supervisor(os::EventLoop& loop, os::ChildReaper& reaper,
             std::vector<config::ServiceConfig> services, std::string run_dir, LogFn log);
  ~Supervisor();

  // Kills (SIGKILL to the process group) every service recorded in
  // <run_dir>/services.pids by an earlier run whose pid still has the same
  // start time, then removes the file. Call once at daemon start.
  tandem::Status CleanupStale();

  // Starts every stopped service; environment `env` is added to each
  // (TANDEM_VIP, TANDEM_HOST, ...). Idempotent.
  void StartAll(const std::map<std::string, std::string>& env);

  // SIGTERM to each running service's process group, SIGKILL after its
  // stop_timeout_ms; cancels pending restarts. `done` runs (on the loop) once
  // every service has exited (immediately if none runs). Idempotent.
  void StopAll(std::function<void()> done);

  // Synchronous SIGKILL of every process group; for daemon exit paths.
  void KillAllNow();

  bool AllRunning() const;  // every configured service has a live process
  std::vector<ServiceStatus> Status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::svc
