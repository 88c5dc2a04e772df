// tandemd: one per host. Wires the pure state machine (ha/) to the outside
// world: heartbeat link (peer/), services (svc/), VIP and connectivity tests
// (net/), control channel (api/), state file and logs. The state machine
// decides; this executor carries out its actions in order and feeds the
// outcomes back as events. One event loop, one thread.
#pragma once

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/control.h"
#include "api/http.h"
#include "config/config.h"
#include "console/console.h"
#include "daemon/agent.h"
#include "daemon/collector_host.h"
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

// ---- Search (src/daemon/search.cc, docs/SEARCH.md) ----
//
// Why a worker and an asynchronous control reply: a search reads the store
// for up to seconds (a full scan of 10 million events); on the event loop it
// would stall heartbeats and failover. The control server therefore has an
// asynchronous path (api::ControlServer::SetAsync): the loop parses and
// validates the request, hands it to the one SearchWorker thread and returns
// at once; the worker posts the reply back to the loop (EventLoop::Post),
// which sends it. The HTTP API's threads submit to the same worker and wait
// for its answer. Bounded: one search at a time, kSearchQueueMax waiting;
// beyond that the answer is the error "busy" (HTTP 503).

inline constexpr size_t kSearchQueueMax = 4;
inline constexpr int64_t kHttpSearchTimeoutMs = 120000;  // HTTP: 504 after this
inline constexpr int64_t kHttpStatusTimeoutMs = 2000;    // HTTP: 503 if the loop does not answer

// From a thread other than the loop's (HTTP, agent): runs `fn` on `loop`,
// which owns the daemon's state, and waits at most `timeout_ms` for its
// result; nullopt when the loop did not answer in time (stopping, say).
template <typename T>
std::optional<T> RunOnLoop(os::EventLoop& loop, std::function<T()> fn,
                           int64_t timeout_ms = kHttpStatusTimeoutMs) {
  auto p = std::make_shared<std::promise<T>>();
  std::future<T> f = p->get_future();
  loop.Post([p, fn = std::move(fn)] { p->set_value(fn()); });
  if (f.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) return std::nullopt;
  return f.get();
}

// Parses a search time to µs since the epoch: RFC 3339
// ("2026-12-02T10:00:00Z", "...10:00:00.5+01:00"), epoch seconds ("1796205600"),
// "now", or relative to now_us ("-15m", "-2h", "-30s", "-7d", "+1h").
// Error: a message that names the accepted forms.
Result<int64_t> ParseSearchTime(std::string_view text, int64_t now_us);

// Builds the "search" control request from text parameters (the HTTP query
// string; the CLI's options): from, to (ParseSearchTime; from defaults to
// the beginning of time, to to none), limit, newest (0|1|true|false), count
// (0|1|true|false), top, top_n; events: host, severity (a name or 0..7,
// collect::ParseSeverity), contains; flows: src, dst, port, protocol
// (0..255 or tcp|udp|icmp), top_by (count|bytes). Error: an unknown
// parameter or a bad value, named.
Result<nlohmann::json> SearchRequestFromParams(const std::string& kind,
                                               const std::map<std::string, std::string>& params,
                                               int64_t now_us);

// The one thread that runs searches. Requests are the "search" control
// requests ({"cmd":"search","kind":"events"|"flows", ...}, docs/SEARCH.md);
// responses {"ok":true, <store::ToJson(result)>...} or {"ok":false,"error"}.
// Thread-safe.
class SearchWorker {
 public:
  using Done = std::function<void(nlohmann::json response)>;
  // store_dir "": every search answers that this host has no store.
  explicit SearchWorker(std::string store_dir);
  // Waits for the running search; queued ones are answered "shutting down".
  ~SearchWorker();
  SearchWorker(const SearchWorker&) = delete;
  SearchWorker& operator=(const SearchWorker&) = delete;

  // Validates `request` strictly; an invalid one is answered at once
  // (done(error) on this thread, returns true). Otherwise queues it: done is
  // called later on the worker thread. Returns false (done not called) when
  // kSearchQueueMax requests already wait: the caller answers "busy".
  bool Submit(const nlohmann::json& request, Done done);
  // The validation Submit does: Ok, or the error naming the field.
  static Status ValidateRequest(const nlohmann::json& request);

 private:
  struct Job {
    nlohmann::json request;
    Done done;
  };
  void Work();

  const std::string store_dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // GUARDED_BY(mu_)
  bool stop_ = false;     // GUARDED_BY(mu_)
  std::thread thread_;
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
  // Run returned because a deployed configuration changes what this host
  // is (config/deployment.h): tandemd starts again with it.
  bool restart_requested() const { return restart_; }

 private:
  ha::Output Feed(ha::Event::Body body);
  void Execute(const ha::Output& out);
  void LogTransitions(const ha::Output& out);
  void Persist();
  // Records only what this host saw (R-OP-7: statuses that are not ACTIVE
  // on either side, the peer's new status): written within
  // kDeferredPersistMs, once for several changes, so that the state file's
  // fsync and rename (a commit of the file system's journal) do not land in
  // the middle of the synchronization a SYNCHRONIZING status announces.
  // Everything the HA core decides on (kPersist), and every change to or
  // from ACTIVE, is still written at once.
  void PersistSoon();
  bool persist_due_ = false;
  void StartSequence(const ha::Output& out);
  void RunNextStep();
  void StartCollector();
  void RetryCollector();
  void FinishStep(uint64_t seq, const std::string& name, int64_t started, const Status& st);
  Status RunSyncStep(ha::ActionType t);
  Status StartReplication();
  nlohmann::json HandleReplication(const std::string& cmd, const nlohmann::json& req);
  void RunConnectivityTest();
  // A tester for cfg_.connectivity_peers (at start, and when a deploy
  // changed them: between rounds, tester_stale_ meanwhile).
  void ReplaceTester();
  void Notify(const std::string& detail);
  void OnTick();
  void Shutdown();
  // Stops the daemon so that tandemd starts again (restart_requested()),
  // once the agent has answered the deploy.
  void RequestRestart(int64_t revision, const std::string& why);
  void FinishShutdown();
  std::map<std::string, std::string> ServiceEnv() const;

  nlohmann::json HandleControl(const nlohmann::json& req);
  // search.cc: the "search" control command (asynchronous) and the HTTP API.
  void HandleSearch(const nlohmann::json& req, api::Reply reply);
  Status StartSearch();
  // The console role ([console], docs/CONSOLE.md): independent of HA, in
  // threads of its own.
  Status StartConsole();
  // The agent ([agent], docs/CONSOLE.md "Hosts: pairing and the agent
  // channel"): independent of HA, in threads of its own; it reads the HA
  // status by posting to the loop (kHttpStatusTimeoutMs at most).
  Status StartAgent();
  // An agent-only host (cfg_.agent_only): the agent and [console], no HA.
  Status StartAgentOnly();
  api::HttpResponse HandleHttp(const api::HttpRequest& req);
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
  std::unique_ptr<CollectorHost> collector_;  // null: no [collector]
  // The collector should run (set by start-services, cleared when services
  // stop); a failed start is retried every kCollectorRetryMs meanwhile.
  bool collector_wanted_ = false;
  int64_t collector_retry_at_ms_ = 0;
  int collector_failures_ = 0;
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
  bool restart_ = false;
  bool tester_stale_ = false;
  int notify_running_ = 0;
  // Last: destroyed first (their threads use loop_ and search_).
  std::unique_ptr<SearchWorker> search_;
  std::unique_ptr<api::HttpServer> http_;
  std::unique_ptr<console::Console> console_;  // null: no [console]
  std::unique_ptr<Agent> agent_;               // null: no [agent]
};

}  // namespace tandem::daemon
