#include "daemon/daemon.h"

#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <fmt/format.h>

#include <algorithm>
#include <future>

#include "config/deployment.h"
#include "os/clock.h"

namespace tandem::daemon {

using nlohmann::json;

namespace {

constexpr int64_t kTickMinMs = 5;
constexpr int64_t kTickMaxMs = 100;
// A collector that could not start (its port still held by the host that
// just stepped down, say) is tried again this often while the host is active.
constexpr int64_t kCollectorRetryMs = 250;
constexpr int kNotifyNice = 10;     // notify hooks' nice value
constexpr int kNotifyRunningMax = 8;  // notify hooks running at once; more are skipped
constexpr int kFarewellPackets = 3;   // handover heartbeats sent on a clean exit
constexpr int64_t kRestartDelayMs = 300;  // a deploy's restart waits for the agent's answer
constexpr int64_t kDeferredPersistMs = 1000;  // PersistSoon

int64_t WallMs() { return os::RealClock::Get().WallMs(); }

std::shared_ptr<spdlog::logger> MakeLogger(const config::Config& cfg) {
  std::shared_ptr<spdlog::logger> log;
  if (cfg.log_file.empty()) {
    log = std::make_shared<spdlog::logger>("tandemd",
                                           std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else {
    log = std::make_shared<spdlog::logger>(
        "tandemd", std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.log_file));
  }
  log->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l [" + cfg.host_name + "] %v");
  log->set_level(spdlog::level::from_str(cfg.log_level));
  log->flush_on(spdlog::level::trace);
  return log;
}

std::vector<peer::HeartbeatLink::Path> LinkPaths(const config::Config& cfg) {
  std::vector<peer::HeartbeatLink::Path> paths{{cfg.listen, cfg.peer}};
  if (!cfg.crossover_listen.empty()) paths.push_back({cfg.crossover_listen, cfg.crossover_peer});
  return paths;
}

}  // namespace

Daemon::Daemon(config::Config cfg)
    : cfg_(std::move(cfg)), log_(MakeLogger(cfg_)), reaper_(loop_) {}

Daemon::~Daemon() {
  if (services_) services_->KillAllNow();
  collector_.reset();  // before the store it writes to
  if (repl_) repl_->Stop();
}

Status Daemon::StartReplication() {
  repl::ServiceOptions o;
  repl::ReplicaOptions& r = o.replica;
  r.node = cfg_.host_name;
  r.store_dir = cfg_.store_dir;
  r.meta_dir = cfg_.repl_meta_dir;
  r.key = cfg_.cluster_key;
  r.protocol = static_cast<repl::Protocol>(cfg_.repl_protocol);
  r.sync_rate_bytes = static_cast<uint64_t>(cfg_.sync_rate_mb) * 1000 * 1000;
  r.merge_prefixes = cfg_.merge_prefixes;
  r.peer_timeout_ms = cfg_.repl_timeout_ms;
  r.ping_interval_ms = std::max<int64_t>(50, cfg_.repl_timeout_ms / 4);
  r.software = TANDEM_VERSION;
  r.initial_primary = cfg_.role == ha::Role::kPrimary;
  o.listen_host = cfg_.repl_listen.host;
  o.listen_port = cfg_.repl_listen.port;
  o.peer_host = cfg_.repl_peer.host;
  o.peer_port = cfg_.repl_peer.port;
  o.connect = cfg_.role == ha::Role::kPrimary;
  o.volume_socket = cfg_.volume_socket;
  repl_ = std::make_unique<repl::Service>(std::move(o));
  repl_->SetLogger([this](int level, const std::string& m) {
    static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                             spdlog::level::warn, spdlog::level::err};
    log_->log(kLevels[std::clamp(level, 0, 3)], "replication: {}", m);
  });
  repl_->SetOnChange([this](bool up_to_date, bool synchronizing, std::string detail) {
    loop_.Post([this, up_to_date, synchronizing, detail] {
      ha::DiskState d{up_to_date, synchronizing, detail};
      if (d == last_disk_) return;
      last_disk_ = d;
      Feed(d);
    });
  });
  repl_->SetOnDiskFailed([this](std::string why) {
    loop_.Post([this, why] { Feed(ha::LocalFailure{"disk failed: " + why}); });
  });
  TANDEM_RETURN_IF_ERROR(repl_->Start());
  if (cfg_.collector.enabled) collector_ = std::make_unique<CollectorHost>(cfg_, *repl_);
  return Status::Ok();
}

Status Daemon::Start() {
  // First, before any thread exists: the signals are blocked in the threads
  // started later too (they inherit the mask), so SIGTERM always reaches the
  // loop's signalfd instead of killing the process from another thread.
  for (int sig : {SIGTERM, SIGINT}) {
    TANDEM_RETURN_IF_ERROR(loop_.AddSignal(sig, [this] { Shutdown(); }));
  }
  signal(SIGPIPE, SIG_IGN);
  if (cfg_.agent_only) return StartAgentOnly();
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(cfg_.state_dir, 0700));
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(cfg_.run_dir, 0755));
  TANDEM_RETURN_IF_ERROR(lock_.Acquire(cfg_.run_dir + "/tandemd.pid"));
  state_path_ = cfg_.state_dir + "/state.json";
  auto loaded = LoadStateFile(state_path_);
  if (!loaded.ok()) return loaded.status();
  file_ = *loaded;
  file_.incarnation++;  // before any packet leaves: replay protection
  TANDEM_RETURN_IF_ERROR(SaveStateFile(state_path_, file_));

  services_ = std::make_unique<svc::Supervisor>(
      loop_, reaper_, cfg_.services, cfg_.run_dir,
      [this](const std::string& level, const std::string& msg) {
        log_->log(spdlog::level::from_str(level), "service: {}", msg);
      });
  // A restarted daemon first cleans up whatever its previous run left.
  TANDEM_RETURN_IF_ERROR(services_->CleanupStale());
  if (cfg_.vip_mode == "interface") {
    vip_ = net::MakeInterfaceVip(
        loop_, net::InterfaceVipOptions{cfg_.interface, cfg_.vip, cfg_.vip_prefix, cfg_.garp_count,
                                        cfg_.garp_repeat_count, cfg_.garp_repeat_delay_ms,
                                        cfg_.garp_refresh_ms});
  } else {
    vip_ = net::MakeLoopbackVip(cfg_.vip);
  }
  TANDEM_RETURN_IF_ERROR(vip_->Cleanup());
  if (cfg_.replication) TANDEM_RETURN_IF_ERROR(StartReplication());
  ReplaceTester();

  ha::Options o;
  o.role = cfg_.role;
  o.heartbeat_interval_ms = cfg_.heartbeat_interval_ms;
  o.heartbeat_timeout_ms = cfg_.heartbeat_timeout_ms;
  o.initial_dead_time_ms = cfg_.initial_dead_time_ms;
  o.has_connectivity_peers = !cfg_.connectivity_peers.empty() || !cfg_.witnesses.empty();
  o.connectivity_interval_ms = cfg_.connectivity_interval_ms;
  o.request_id_base = static_cast<uint32_t>(file_.incarnation << 16);
  state_ = ha::Boot(o, file_.disk, loop_.clock().NowMs());
  status_since_wall_ms_ = WallMs();
  if (repl_) {
    // The replica's state survives restarts: the state machine hears it
    // before anything else.
    auto js = repl_->StatusJson();
    last_disk_ = ha::DiskState{repl_->up_to_date(), false, js.value("disk", "") + " " + js.value("replication", "")};
    state_ = ha::Step(state_, ha::Event{loop_.clock().NowMs(), last_disk_}).state;
  }

  link_ = std::make_unique<peer::HeartbeatLink>(
      loop_, cfg_.host_name, cfg_.cluster_key, LinkPaths(cfg_), file_.incarnation,
      cfg_.heartbeat_interval_ms, [this](const ha::PeerHeartbeat& hb) { Feed(hb); },
      cfg_.witnesses);
  link_->SetAdvert(ha::MakeAdvert(state_));
  TANDEM_RETURN_IF_ERROR(link_->Open());

  control_ = std::make_unique<api::ControlServer>(
      loop_, [this](const json& req) { return HandleControl(req); });
  TANDEM_RETURN_IF_ERROR(control_->Listen(cfg_.control_socket, cfg_.admin_group));
  TANDEM_RETURN_IF_ERROR(StartSearch());
  TANDEM_RETURN_IF_ERROR(StartConsole());
  TANDEM_RETURN_IF_ERROR(StartAgent());

  log_->info("started: cluster {} role {} incarnation {} epoch {} status {} ({}); vip {}",
             cfg_.cluster_name, ha::RoleName(cfg_.role), file_.incarnation, file_.disk.epoch,
             ha::StatusName(state_.status), state_.reason, vip_->Describe());
  if (cfg_.deployment_revision > 0) {
    log_->info("configuration: {} with the cluster the console deployed (revision {}): heartbeats {} <-> {}{}",
               cfg_.path, cfg_.deployment_revision, cfg_.listen.ToString(), cfg_.peer.ToString(),
               cfg_.replication ? ", /store " + cfg_.store_dir + " replicated with " + cfg_.repl_peer.ToString()
                                : ", /store not replicated");
  }
  return Status::Ok();
}

int Daemon::Run() {
  if (cfg_.agent_only) {
    loop_.Run();
    return 0;
  }
  link_->SendNow();
  OnTick();
  loop_.Run();
  return 0;
}

void Daemon::OnTick() {
  if (stopping_) return;
  Feed(ha::Tick{});
  RetryCollector();
  // Silence is noticed within one tick of the timeout: interval/20, 5..100 ms.
  int64_t tick = std::clamp(cfg_.heartbeat_interval_ms / 20, kTickMinMs, kTickMaxMs);
  loop_.AddTimer(tick, [this] { OnTick(); });
}

ha::Output Daemon::Feed(ha::Event::Body body) {
  if (stopping_) return ha::Output{state_, {}, {}, false, "the daemon is shutting down"};
  ha::Output out = ha::Step(state_, ha::Event{loop_.clock().NowMs(), std::move(body)});
  // What this host last knew of its peer is part of its records (R-OP-7):
  // a new status or a restarted peer daemon is written down.
  bool peer_changed = out.state.peer && (!state_.peer || out.state.peer->status != state_.peer->status ||
                                         link_->peer_incarnation() != file_.peer_incarnation);
  // The peer becoming or leaving ACTIVE, or a restarted peer daemon, is
  // written down at once (R-OP-7); its other statuses soon.
  const bool peer_active_changed =
      peer_changed && (!state_.peer || link_->peer_incarnation() != file_.peer_incarnation ||
                       (out.state.peer->status == ha::HostStatus::kActive) !=
                           (state_.peer->status == ha::HostStatus::kActive));
  state_ = out.state;
  if (peer_changed) {
    file_.peer_status = std::string(ha::StatusName(state_.peer->status));
    file_.peer_epoch = state_.peer->epoch;
    file_.peer_incarnation = link_->peer_incarnation();
    file_.peer_heard_wall_ms = WallMs();
    if (peer_active_changed) {
      Persist();
    } else {
      PersistSoon();
    }
  }
  link_->SetAdvert(ha::MakeAdvert(state_));
  LogTransitions(out);
  for (const auto& n : out.notes) log_->warn("{}", n);
  Execute(out);
  if (out.admin_accepted) {
    (*out.admin_accepted ? counters_.admin_accepted : counters_.admin_refused)++;
    log_->log(*out.admin_accepted ? spdlog::level::warn : spdlog::level::info, "admin: {}: {}",
              *out.admin_accepted ? "accepted" : "refused", out.admin_message);
  }
  return out;
}

void Daemon::LogTransitions(const ha::Output& out) {
  for (const auto& t : out.transitions) {
    counters_.transitions++;
    status_since_wall_ms_ = WallMs();
    if (t.to == ha::HostStatus::kActive) file_.last_active_wall_ms = status_since_wall_ms_;
    log_->warn("status {} -> {}: {}", ha::StatusName(t.from), ha::StatusName(t.to), t.reason);
  }
}

void Daemon::PersistSoon() {
  if (persist_due_) return;
  persist_due_ = true;
  loop_.AddTimer(kDeferredPersistMs, [this] {
    if (persist_due_ && !stopping_) Persist();
  });
}

void Daemon::Persist() {
  persist_due_ = false;
  file_.disk = state_.disk;
  file_.last_status = std::string(ha::StatusName(state_.status));
  file_.last_status_wall_ms = status_since_wall_ms_;
  Status st = SaveStateFile(state_path_, file_);
  if (!st.ok()) {
    // The state file is how a restarted host knows what it was: losing it
    // silently could make it preempt. Fail this host instead.
    log_->error("cannot write state file: {}", st.message());
    loop_.Post([this, msg = st.message()] { Feed(ha::LocalFailure{"state file: " + msg}); });
  }
}

void Daemon::Execute(const ha::Output& out) {
  bool sequence_started = false;
  bool persisted = false;
  for (const ha::Action& a : out.actions) {
    if (a.sequence != 0) {
      if (!sequence_started) StartSequence(out);
      sequence_started = true;
      continue;
    }
    switch (a.type) {
      case ha::ActionType::kPersist:
        if (!persisted) Persist();
        persisted = true;
        break;
      case ha::ActionType::kSendHeartbeat: link_->SendNow(); break;
      case ha::ActionType::kRunConnectivityTest: RunConnectivityTest(); break;
      case ha::ActionType::kNotify: Notify(a.detail); break;
      default: break;
    }
  }
  if (!out.transitions.empty() && !persisted) {
    // last_status for R-OP-7: at once when ACTIVE is involved (it names
    // the most recently active host), soon otherwise.
    bool active = false;
    for (const auto& t : out.transitions) {
      active = active || t.from == ha::HostStatus::kActive || t.to == ha::HostStatus::kActive;
    }
    if (active || !(file_.disk == state_.disk)) {
      Persist();
    } else {
      PersistSoon();
    }
  }
  if (sequence_started) RunNextStep();
}

// A new sequence supersedes the one in flight: its remaining steps are
// dropped (the state machine has already ignored its completion).
void Daemon::StartSequence(const ha::Output& out) {
  exec_steps_.clear();
  for (const ha::Action& a : out.actions) {
    if (a.sequence != 0) exec_steps_.push_back(a);
  }
  exec_seq_ = exec_steps_.front().sequence;
  exec_total_ = exec_steps_.size();
  last_sequence_.clear();
  bool activate = exec_steps_.front().type == ha::ActionType::kAttachStore;
  last_sequence_kind_ = activate ? "take-over" : "release";
  log_->warn("{} sequence {} begins ({} steps): {}", last_sequence_kind_, exec_seq_, exec_total_,
             exec_steps_.front().detail);
}

void Daemon::RunNextStep() {
  if (exec_steps_.empty()) return;
  ha::Action a = exec_steps_.front();
  exec_steps_.pop_front();
  uint64_t seq = a.sequence;
  int64_t started = loop_.clock().NowMs();
  std::string name(ha::ActionName(a.type));
  if (a.type == ha::ActionType::kStopServices) {
    collector_wanted_ = false;
    services_->StopAll([this, seq, name, started] {
      if (!collector_) return FinishStep(seq, name, started, Status::Ok());
      // The collector stops on a helper thread: it waits for its appends.
      collector_->StopAsync([this, seq, name, started] {
        loop_.Post([this, seq, name, started] { FinishStep(seq, name, started, Status::Ok()); });
      });
    });
    return;
  }
  if (a.type == ha::ActionType::kDetachStore && repl_) {
    // Waits until the writes in flight are on the peer, then secondary.
    repl_->Demote([this, seq, name, started] {
      loop_.Post([this, seq, name, started] { FinishStep(seq, name, started, Status::Ok()); });
    });
    return;
  }
  FinishStep(seq, name, started, RunSyncStep(a.type));
}

Status Daemon::RunSyncStep(ha::ActionType t) {
  switch (t) {
    case ha::ActionType::kAttachStore: {
      if (!repl_) return Status::Ok();  // /store is not replicated
      Status st = repl_->Promote(false);
      if (!st.ok() && state_.promotion_forced) {
        log_->warn("attach-store: forced promotion: {}", st.message());
        st = repl_->Promote(true);
      }
      return st;
    }
    case ha::ActionType::kAddAlias: return vip_->AddAlias();
    case ha::ActionType::kAssignVip: return vip_->AssignVip();
    case ha::ActionType::kStartServices:
      services_->StartAll(ServiceEnv());
      StartCollector();
      return Status::Ok();
    case ha::ActionType::kFetchConfig: {
      // R-FO-3 step 5: the configuration the console last deployed to this
      // host (the agent keeps it; docs/CONSOLE.md, "Deploying"). Never fails
      // the take-over: the running configuration stays in force.
      if (!cfg_.agent.enabled) {
        log_->warn("fetch-config: no agent on this host: the local configuration file is the configuration");
        return Status::Ok();
      }
      auto deployed = ReadDeployedConfig(cfg_.agent.state_dir);
      if (!deployed.ok()) {
        log_->error("fetch-config: {}", deployed.status().message());
      } else if (!deployed->has_value()) {
        log_->warn("fetch-config: no configuration has been deployed by a console yet");
      } else {
        log_->warn("fetch-config: configuration revision {} (deployed at {})",
                   (**deployed)["revision"].get<int64_t>(),
                   console::Rfc3339Ms((**deployed)["deployed_at_ms"].get<int64_t>()));
      }
      return Status::Ok();
    }
    case ha::ActionType::kUnassignVip: return vip_->UnassignVip();
    case ha::ActionType::kRemoveAlias: return vip_->RemoveAlias();
    case ha::ActionType::kDetachStore: return Status::Ok();
    default: return Status::Error("not a sequence step");
  }
}

void Daemon::FinishStep(uint64_t seq, const std::string& name, int64_t started, const Status& st) {
  if (seq != exec_seq_) return;  // superseded meanwhile
  int64_t took = loop_.clock().NowMs() - started;
  size_t index = exec_total_ - exec_steps_.size();
  last_sequence_.push_back(StepRecord{name, WallMs(), took, st.ok() ? "ok" : st.message()});
  if (st.ok()) {
    log_->warn("{} step {}/{} {}: ok ({} ms)", last_sequence_kind_, index, exec_total_, name, took);
  } else {
    log_->error("{} step {}/{} {}: FAILED: {}", last_sequence_kind_, index, exec_total_, name,
                st.message());
  }
  if (!st.ok() || exec_steps_.empty()) {
    exec_seq_ = 0;
    exec_steps_.clear();
    (last_sequence_kind_ == "take-over" ? counters_.takeovers : counters_.releases) += st.ok();
    loop_.Post([this, seq, st, name] {
      Feed(ha::SequenceDone{seq, st.ok(), st.ok() ? "" : name + ": " + st.message()});
    });
    return;
  }
  RunNextStep();
}

std::map<std::string, std::string> Daemon::ServiceEnv() const {
  return {{"TANDEM_VIP", cfg_.vip},
          {"TANDEM_HOST", cfg_.host_name},
          {"TANDEM_CLUSTER", cfg_.cluster_name},
          {"TANDEM_ROLE", std::string(ha::RoleName(cfg_.role))}};
}

// The connectivity test (R-NC-1) and, while the peer is silent, the
// indirect heartbeat through the witnesses (R-NC-4); one result for both.
void Daemon::ReplaceTester() {
  tester_ = std::make_unique<net::ConnectivityTester>(loop_, cfg_.connectivity_peers, cfg_.connectivity_timeout_ms,
                                                      cfg_.connectivity_require_all);
  tester_stale_ = false;
}

void Daemon::RunConnectivityTest() {
  counters_.connectivity_tests++;
  if (tester_stale_ && !tester_->running()) ReplaceTester();  // peers deployed during a round
  struct Join {
    int pending = 2;
    bool ok = true;
    std::optional<ha::Advert> witness_peer;
    std::string detail;
  };
  auto join = std::make_shared<Join>();
  auto finish = [this, join] {
    if (--join->pending > 0) return;
    last_connectivity_ = join->detail;
    last_connectivity_wall_ms_ = WallMs();
    if (!join->ok) {
      counters_.connectivity_failures++;
      log_->warn("connectivity test failed: {}", last_connectivity_);
    }
    bool sees = join->witness_peer && join->witness_peer->status == ha::HostStatus::kActive;
    if (sees != witness_saw_peer_) {
      witness_saw_peer_ = sees;
      log_->warn("indirect heartbeat: {}", last_connectivity_);
    }
    // Always from the loop, never inside the Feed that asked for the test.
    loop_.Post([this, j = *join] {
      Feed(ha::ConnectivityResult{j.ok, j.detail, j.witness_peer});
    });
  };
  tester_->Run([join, finish](const net::TestReport& r) {
    join->ok = r.ok;
    join->detail = r.Summary() + join->detail;
    finish();
  });
  // The standby asks only when its peer is silent; the active always (what
  // it heard directly may be stale after it hung).
  bool ask = ha::PeerAlive(state_) ? state_.status == ha::HostStatus::kActive : true;
  if (!link_->has_witnesses() || !ask) {
    finish();
    return;
  }
  int64_t fresh = std::max(cfg_.heartbeat_timeout_ms / 2, cfg_.heartbeat_interval_ms * 3 / 2);
  link_->QueryWitnesses(link_->peer_name(), fresh, cfg_.connectivity_timeout_ms,
                        [join, finish](const peer::HeartbeatLink::WitnessReport& w) {
                          join->witness_peer = w.subject_advert;
                          join->detail += "; witnesses: " + w.detail;
                          finish();
                        });
}

// detail: "<from> <to> <reason...>"
void Daemon::Notify(const std::string& detail) {
  if (cfg_.notify_command.empty()) return;
  if (notify_running_ >= kNotifyRunningMax) {
    counters_.notify_failures++;
    log_->error("notify hook skipped: {} hooks still running", notify_running_);
    return;
  }
  size_t a = detail.find(' ');
  size_t b = detail.find(' ', a + 1);
  std::vector<std::string> argv = cfg_.notify_command;
  argv.insert(argv.end(), {cfg_.cluster_name, cfg_.host_name, detail.substr(0, a),
                           detail.substr(a + 1, b - a - 1), detail.substr(b + 1)});
  os::SpawnOptions opts;
  opts.stdout_path = cfg_.run_dir + "/notify.log";
  // Best effort, beside the HA core: a hook never takes CPU from the
  // heartbeats or a synchronization (docs/CONFIG.md, [notify]).
  opts.nice = kNotifyNice;
  auto pid = os::Spawn(argv, opts);
  counters_.notify_runs++;
  if (!pid.ok()) {
    counters_.notify_failures++;
    log_->error("notify hook: {}", pid.status().message());
    return;
  }
  notify_running_++;
  pid_t p = *pid;
  auto timer = loop_.AddTimer(cfg_.notify_timeout_ms, [p] { kill(-p, SIGKILL); });
  reaper_.Watch(p, [this, timer](int ws) {
    notify_running_--;
    loop_.CancelTimer(timer);
    if (!(WIFEXITED(ws) && WEXITSTATUS(ws) == 0)) {
      counters_.notify_failures++;
      log_->warn("notify hook {}", os::DescribeWaitStatus(ws));
    }
  });
}

// Collection is the appliance's job, but a collector that cannot start (a
// port taken, say) does not fail the take-over: the store and the other
// services still serve. Status and the log say why, and the start is
// retried while the host stays active.
void Daemon::StartCollector() {
  if (!collector_) return;
  collector_wanted_ = true;
  Status st = collector_->Start(state_.disk.epoch);
  if (st.ok()) {
    log_->warn("collector: collecting on {} (generation {}){}", cfg_.collector.listen_address,
               state_.disk.epoch,
               collector_failures_ > 0
                   ? fmt::format(" after {} failed attempts", collector_failures_)
                   : "");
    collector_failures_ = 0;
    return;
  }
  // The first failure is logged; the retries only when they succeed.
  if (collector_failures_++ == 0) {
    log_->error("collector: not collecting: {} (retrying every {} ms while active)",
                st.message(), kCollectorRetryMs);
  }
  collector_retry_at_ms_ = loop_.clock().NowMs() + kCollectorRetryMs;
}

void Daemon::RetryCollector() {
  if (!collector_ || !collector_wanted_ || stopping_ || !exec_steps_.empty()) return;
  if (state_.status != ha::HostStatus::kActive) return;
  if (loop_.clock().NowMs() < collector_retry_at_ms_ || collector_->Running()) return;
  StartCollector();
}

// SIGTERM/SIGINT: an active host stops its services, releases the VIP and
// hands the role to the peer before exiting, so a planned stop is a fast
// switch-over rather than a heartbeat timeout.
void Daemon::Shutdown() {
  if (stopping_) return;
  stopping_ = true;
  if (cfg_.agent_only) {
    log_->warn("shutting down (agent-only host)");
    if (agent_) agent_->Stop();
    if (console_) console_->Stop();
    loop_.Stop();
    return;
  }
  log_->warn("shutting down (status {})", ha::StatusName(state_.status));
  exec_seq_ = 0;
  exec_steps_.clear();
  collector_wanted_ = false;
  services_->StopAll([this] {
    if (!collector_) return FinishShutdown();
    collector_->StopAsync([this] { loop_.Post([this] { FinishShutdown(); }); });
  });
}

void Daemon::FinishShutdown() {
  Status a = vip_->UnassignVip();
  Status b = vip_->RemoveAlias();
  if (!a.ok() || !b.ok()) log_->error("releasing the VIP: {} {}", a.ToString(), b.ToString());
  bool was_active = state_.status == ha::HostStatus::kActive;
  if (was_active) {
    ha::Advert farewell = ha::MakeAdvert(state_);
    farewell.status = ha::HostStatus::kStandby;
    farewell.handover = true;
    link_->SetAdvert(farewell);
    for (int i = 0; i < kFarewellPackets; ++i) link_->SendNow();
  }
  file_.last_status = std::string(ha::StatusName(state_.status));
  Status st = SaveStateFile(state_path_, file_);
  if (!st.ok()) log_->error("state file: {}", st.message());
  log_->warn("stopped{}", was_active ? "; handed the active role to the peer" : "");
  control_->Close();
  if (http_) http_->Stop();
  if (console_) console_->Stop();
  if (agent_) agent_->Stop();
  if (repl_) repl_->Stop();
  loop_.Stop();
}

Status Daemon::StartConsole() {
  if (!cfg_.console.enabled) return Status::Ok();
  const config::ConsoleConfig& k = cfg_.console;
  console::ConsoleOptions o;
  o.state_dir = k.state_dir;
  o.listen_host = k.listen.host;
  o.listen_port = k.listen.port;
  o.session_ttl_s = k.session_ttl_s;
  o.poll_interval_ms = k.poll_interval_ms;
  o.tls_cert = k.tls_cert;
  o.tls_key = k.tls_key;
  o.license_keys_dir = k.license_keys_dir;
  o.host_name = cfg_.host_name;
  o.log = [log = log_](int level, const std::string& m) {
    static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                             spdlog::level::warn, spdlog::level::err};
    log->log(kLevels[std::clamp(level, 0, 3)], "{}", m);
  };
  console_ = std::make_unique<console::Console>(std::move(o));
  return console_->Start();
}

Status Daemon::StartAgent() {
  if (!cfg_.agent.enabled) return Status::Ok();
  const config::AgentConfig& k = cfg_.agent;
  AgentOptions o;
  o.state_dir = k.state_dir;
  o.packages_dir = k.packages_dir;
  o.store_dir = k.store_dir;
  o.transient_dir = k.transient_dir;
  o.external_storage = k.external_storage;
  o.virtual_appliance = k.virtual_appliance;
  o.listen_host = k.listen.host;
  o.listen_port = k.listen.port;
  o.host_name = cfg_.host_name;
  o.host_interface = cfg_.interface;
  o.heartbeat_port = k.heartbeat_port;
  o.replication_port = k.replication_port;
  o.deploy_error = cfg_.deployment_error;
  // What a factory reset removes besides the agent's own state: the HA
  // state an earlier membership left (docs/CONSOLE.md, "Host actions").
  if (!cfg_.state_dir.empty()) {
    o.ha_state_file = cfg_.state_dir + "/state.json";
    o.replica_dir = cfg_.repl_meta_dir.empty() ? cfg_.state_dir + "/replica" : cfg_.repl_meta_dir;
  }
  if (!cfg_.agent_only) {
    o.heartbeat_host = cfg_.listen.host;
    o.cluster = json{{"name", cfg_.cluster_name},
                     {"role", cfg_.role == ha::Role::kPrimary ? "primary" : "secondary"},
                     {"peer", cfg_.peer.host}};
    // Agent threads: the status is built on the loop (it owns the state);
    // null if the loop does not answer in time (stopping, say).
    os::EventLoop* loop = &loop_;
    o.ha_status = [this, loop]() -> json {
      return RunOnLoop<json>(*loop, [this] { return StatusJson(); }).value_or(nullptr);
    };
    // POST /api/v1/agent/ha: the control socket's own handler, on the loop.
    o.ha_command = [this, loop](const json& request) -> Result<json> {
      auto reply = RunOnLoop<json>(*loop, [this, request] { return HandleControl(request); });
      if (!reply) return Status::Error("no answer within " + std::to_string(kHttpStatusTimeoutMs) + " ms");
      return std::move(*reply);
    };
  }
  // PUT /api/v1/agent/config (docs/CONSOLE.md, "Deploying"): on the loop.
  // A host that runs what a console deployed (agent-only, or a pair formed
  // by a deploy) restarts when the document changes what it is (its
  // identity: cluster, role, addresses; "Clusters formed by a deploy").
  // Otherwise what can change live does (the sync rate); the rest is
  // logged as taking effect at restart.
  {
    os::EventLoop* loop = &loop_;
    const bool deployable = cfg_.agent_only || !cfg_.deployment_identity.empty();
    // On the loop (it owns the replica and the configuration).
    auto apply = [this, deployable](const json& document) -> Status {
      const int64_t revision = document["revision"].get<int64_t>();
      if (deployable) {
        const std::string identity = config::DeploymentIdentity(document);
        if (identity != cfg_.deployment_identity) {
          if (identity.empty()) {
            RequestRestart(revision, config::NoClusterReason(document) + "; this host leaves cluster " +
                                         cfg_.cluster_name + " and becomes an unclustered managed host");
          } else {
            const json& c = document["cluster"];
            RequestRestart(revision, "this host becomes " + document["host"]["name"].get<std::string>() +
                                         ", the " + document["host"]["role"].get<std::string>() +
                                         " of cluster " + c["name"].get<std::string>() + " (VIP " +
                                         c["vip"].get<std::string>() + ")");
          }
          return Status::Ok();
        }
        if (cfg_.agent_only) {
          log_->info("deploy: configuration revision {}: {}; this host stays an unclustered managed host",
                     revision, config::NoClusterReason(document));
          return Status::Ok();
        }
      }
      const json& c = document["cluster"];
      if (!c.is_object()) {
        log_->warn("deploy: configuration revision {}: the console has this host in no cluster; "
                   "its HA configuration ({}) stays as it is", revision, cfg_.path);
        return Status::Ok();
      }
      const json& opt = c["options"];
      const int64_t rate = opt["sync_rate_mb"].get<int64_t>();
      if (repl_) {
        TANDEM_RETURN_IF_ERROR(repl_->SetSyncRate(static_cast<uint64_t>(rate) * 1000 * 1000));
        log_->warn("deploy: configuration revision {}: disk synchronization rate set to {} MB/s", revision,
                   rate);
      } else {
        log_->warn("deploy: configuration revision {}: sync_rate_mb {}: /store is not replicated here",
                   revision, rate);
      }
      // Heartbeat timings: live, without a restart or a failover.
      const int64_t interval = opt["heartbeat_interval_ms"].get<int64_t>();
      const int64_t timeout = opt["heartbeat_timeout_ms"].get<int64_t>();
      if (interval != cfg_.heartbeat_interval_ms || timeout != cfg_.heartbeat_timeout_ms) {
        log_->warn("deploy: configuration revision {}: heartbeats every {} ms, the peer declared dead after {} ms "
                   "(were {} / {} ms)", revision, interval, timeout, cfg_.heartbeat_interval_ms,
                   cfg_.heartbeat_timeout_ms);
        cfg_.heartbeat_interval_ms = interval;
        cfg_.heartbeat_timeout_ms = timeout;
        state_.opts.heartbeat_interval_ms = interval;
        state_.opts.heartbeat_timeout_ms = timeout;
        link_->SetInterval(interval);
      }
      // Connectivity peers: live; the tester is replaced between rounds.
      json peers = json::array();
      for (const config::Endpoint& e : cfg_.connectivity_peers) {
        peers.push_back(e.port == 0 ? e.host : e.ToString());
      }
      if (opt["connectivity_peers"] != peers) {
        std::vector<config::Endpoint> endpoints;
        for (const json& p : opt["connectivity_peers"]) {
          const std::string text = p.get<std::string>();
          if (text.find(':') == std::string::npos) {
            endpoints.push_back(config::Endpoint{text, 0});  // ICMP
            continue;
          }
          auto e = config::ParseEndpoint(text);
          if (!e.ok()) return Status::Error("connectivity peer " + text + ": " + e.status().message());
          endpoints.push_back(*e);
        }
        log_->warn("deploy: configuration revision {}: connectivity peers {} (were {})", revision,
                   opt["connectivity_peers"].dump(), peers.dump());
        cfg_.connectivity_peers = std::move(endpoints);
        state_.opts.has_connectivity_peers = !cfg_.connectivity_peers.empty() || !cfg_.witnesses.empty();
        tester_stale_ = true;
        if (!tester_->running()) ReplaceTester();
      }
      const bool primary = document["host"]["role"] == "primary";
      const json crossover = cfg_.crossover_listen.empty() ? json(nullptr) : json(cfg_.crossover_listen.host);
      for (const auto& [key, running] :
           {std::pair<const char*, json>{"disable_replication", !cfg_.replication},
            {primary ? "crossover_primary_ip" : "crossover_secondary_ip", crossover}}) {
        if (opt[key] == running) continue;
        log_->warn("deploy: configuration revision {}: {} {} (running {}): not applied live; takes effect "
                   "at restart", revision, key, opt[key].dump(), running.dump());
      }
      return Status::Ok();
    };
    o.apply_config = [loop, apply](const json& document) -> Status {
      auto st = RunOnLoop<Status>(*loop, [document, apply] { return apply(document); });
      if (!st) return Status::Error("the daemon did not answer within " + std::to_string(kHttpStatusTimeoutMs) + " ms");
      return *st;
    };
  }
  o.log = [log = log_](int level, const std::string& m) {
    static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                             spdlog::level::warn, spdlog::level::err};
    log->log(kLevels[std::clamp(level, 0, 3)], "{}", m);
  };
  agent_ = std::make_unique<Agent>(std::move(o));
  return agent_->Start();
}

Status Daemon::StartAgentOnly() {
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(cfg_.state_dir, 0700));
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(cfg_.run_dir, 0755));
  TANDEM_RETURN_IF_ERROR(lock_.Acquire(cfg_.run_dir + "/tandemd.pid"));
  TANDEM_RETURN_IF_ERROR(StartConsole());
  TANDEM_RETURN_IF_ERROR(StartAgent());
  log_->info("started: unclustered managed host {} (agent only: no HA role, VIP or services)",
             cfg_.host_name);
  if (!cfg_.deployment_error.empty()) log_->error("deploy: {}", cfg_.deployment_error);
  return Status::Ok();
}

void Daemon::RequestRestart(int64_t revision, const std::string& why) {
  if (stopping_ || restart_) return;
  log_->warn("deploy: configuration revision {}: {}: restarting to apply it", revision, why);
  restart_ = true;
  // After the agent's answer has gone out (the call returns first).
  loop_.AddTimer(kRestartDelayMs, [this] { Shutdown(); });
}

}  // namespace tandem::daemon
