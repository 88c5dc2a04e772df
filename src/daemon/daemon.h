// tandemd: one per host. Wires the pure state machine (ha/) to the outside
// world: heartbeat link (peer/), services (svc/), VIP and connectivity tests
// (net/), control channel (api/), state file and logs. The state machine
// decides; this executor carries out its actions in order and feeds the
// outcomes back as events. One event loop, one thread.
#pragma once

#include <spdlog/spdlog.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/control.h"
#include "config/config.h"
#include "daemon/state_file.h"
#include "ha/state_machine.h"
#include "net/connectivity.h"
#include "net/vip.h"
#include "os/event_loop.h"
#include "os/files.h"
#include "os/process.h"
#include "peer/link.h"
#include "repl/service.h"
#include "svc/supervisor.h"

namespace tandem::daemon {

// One logged step of a take-over or release sequence (R-FO-3, R-NF-3).
struct StepRecord {
  std::string step;
  int64_t wall_ms = 0;
  int64_t took_ms = 0;
  std::string result;  // "ok" or the error
};

struct Counters {
  uint64_t transitions = 0;
  uint64_t takeovers = 0;  // sequences that made this host Active
  uint64_t releases = 0;
  uint64_t admin_accepted = 0;
  uint64_t admin_refused = 0;
  uint64_t notify_runs = 0;
  uint64_t notify_failures = 0;
  uint64_t connectivity_tests = 0;
  uint64_t connectivity_failures = 0;
};

class Daemon {
 public:
  explicit Daemon(config::Config cfg);
  ~Daemon();

  // Takes the pid lock, loads and bumps the state file, cleans up what an
  // earlier run left (services, VIP), opens sockets. Error: the reason, and
  // nothing is left running.
  Status Start();
  // Runs until SIGTERM/SIGINT; returns the exit code.
  int Run();

 private:
  ha::Output Feed(ha::Event::Body body);
  void Execute(const ha::Output& out);
  void LogTransitions(const ha::Output& out);
  void Persist();
  void StartSequence(const ha::Output& out);
  void RunNextStep();
  void FinishStep(uint64_t seq, const std::string& name, int64_t started, const Status& st);
  Status RunSyncStep(ha::ActionType t);
  Status StartReplication();
  nlohmann::json HandleReplication(const std::string& cmd, const nlohmann::json& req);
  void RunConnectivityTest();
  void Notify(const std::string& detail);
  void OnTick();
  void Shutdown();
  void FinishShutdown();
  std::map<std::string, std::string> ServiceEnv() const;

  nlohmann::json HandleControl(const nlohmann::json& req);
  nlohmann::json StatusJson() const;
  nlohmann::json LocalJson() const;
  nlohmann::json RemoteJson() const;
  nlohmann::json IpsJson() const;
  std::string MetricsText() const;
  std::string MostRecentActive() const;

  config::Config cfg_;
  std::shared_ptr<spdlog::logger> log_;
  os::EventLoop loop_;
  os::ChildReaper reaper_;
  os::PidLock lock_;
  std::string state_path_;
  StateFile file_;
  ha::State state_;
  std::unique_ptr<svc::Supervisor> services_;
  std::unique_ptr<net::VipManager> vip_;
  std::unique_ptr<net::ConnectivityTester> tester_;
  std::unique_ptr<peer::HeartbeatLink> link_;
  std::unique_ptr<api::ControlServer> control_;
  std::unique_ptr<repl::Service> repl_;  // null: /store not replicated
  ha::DiskState last_disk_;

  // The sequence in flight.
  uint64_t exec_seq_ = 0;
  std::deque<ha::Action> exec_steps_;
  size_t exec_total_ = 0;
  std::vector<StepRecord> last_sequence_;  // steps of the last completed/current sequence
  std::string last_sequence_kind_;
  int64_t status_since_wall_ms_ = 0;
  std::string last_connectivity_;
  int64_t last_connectivity_wall_ms_ = 0;
  bool witness_saw_peer_ = false;  // last indirect-heartbeat verdict (logged on change)
  Counters counters_;
  bool stopping_ = false;
  int notify_running_ = 0;
};

}  // namespace tandem::daemon
