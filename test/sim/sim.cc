#include "sim/sim.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

namespace tandem::sim {
namespace {

using ha::HostStatus;

constexpr int64_t kTickMs = 10;          // executor tick (local time)
constexpr int64_t kStepMaxMs = 10;       // one take-over/release step
constexpr int64_t kConnDelayMaxMs = 30;  // one connectivity test
constexpr int64_t kDelayMaxMs = 5;       // normal one-way network delay
constexpr int64_t kMarginMs = 60;        // scheduling slack in deadlines
constexpr double kDriftMax = 0.005;      // clock rate error (5000 ppm)

enum class Kind {
  kTick, kHbTimer, kDeliver, kConnResult, kSeqStep, kRestart, kResume, kFault, kHeal, kAdmin,
  kDiskChange,  // the replica's state on disk changes (global: survives crashes)
  kDiskReport,  // the executor feeds the replica's current state as a DiskState
};

const char* const kDiskFailure = "disk failed: /store/x: pwrite: Input/output error";

struct Ev {
  int64_t t = 0;
  uint64_t order = 0;
  Kind kind = Kind::kTick;
  int node = 0;
  uint64_t inc = 0;  // node incarnation the event belongs to
  int path = 0;
  ha::Advert advert;
  uint64_t msg_inc = 0;  // sender incarnation and sequence, as in the real packet
  uint64_t msg_seq = 0;
  uint64_t seq = 0;
  size_t step = 0;
  ha::AdminOp op = ha::AdminOp::kRestore;
  bool force = false;  // kAdmin kTakeover: `ha takeover --force`
  ha::DiskState disk;  // kDiskChange
};

struct EvLater {
  bool operator()(const Ev& a, const Ev& b) const {
    return a.t != b.t ? a.t > b.t : a.order > b.order;
  }
};

struct Node {
  int id = 0;
  ha::Persistent disk;  // what survived on disk
  ha::State state;
  bool up = true;
  bool paused = false;
  uint64_t inc = 1;
  double rate = 1.0;
  double offset = 0;
  std::vector<Ev> deferred;  // events that arrived while paused
  bool witness_ok = true;    // what its connectivity test finds
  int64_t witness_since = 0;
  bool fail_next_vip = false;
  uint64_t exec_seq = 0;
  std::vector<ha::Action> exec_steps;
  bool last_conn_ok = true;
  int64_t active_since = -1;
  uint64_t send_seq = 0;
  // Witnesses (R-NC-4): whether this host's heartbeats reach them, and what
  // they last heard from it (global time).
  bool reaches_witnesses = true;
  int64_t witness_heard = -1;
  ha::Advert witness_advert;
  // Receiver side, as the daemon does it: a replay filter per path, and the
  // newest (incarnation, seq) forwarded to the state machine.
  std::pair<uint64_t, uint64_t> replay[ha::kPathsMax] = {};
  std::pair<uint64_t, uint64_t> newest = {};
  // The local replica: its state on disk (survives crashes), and the last
  // DiskState fed to this incarnation's state machine.
  ha::DiskState replica;
  ha::DiskState fed;
  // A forced takeover was accepted while the replica could not be promoted
  // and has not led to ACTIVE yet: the one exemption of the replica invariant.
  bool forced = false;
};

bool Promotable(const ha::DiskState& d) { return d.up_to_date && !d.synchronizing; }

int64_t Settle(const ha::Options& o);

// An unplanned failover that must complete by `deadline`.
struct PendingTakeover {
  int node = -1;
  int64_t started = 0;
  int64_t deadline = 0;
  bool peer_failed = false;  // the active went FAILED (disk failure), not silent
};

class World {
 public:
  explicit World(const SimOptions& o);
  SimResult Run();

 private:
  int64_t Local(const Node& n) const { return static_cast<int64_t>(n.offset + n.rate * now_); }
  int64_t After(const Node& n, int64_t local_ms) const {
    return now_ + static_cast<int64_t>(std::ceil(static_cast<double>(local_ms) / n.rate));
  }
  int64_t Rand(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void Push(Ev e);
  void PushNode(Node& n, Ev e, int64_t local_delay);
  void Dispatch(const Ev& e);
  void DispatchNode(Node& n, const Ev& e);
  ha::Output StepNode(Node& n, ha::Event::Body body);
  void Execute(Node& n, const ha::Output& out);
  void StartSequence(Node& n, const ha::Output& out);
  void RunSeqStep(Node& n, const Ev& e);
  void SendAdvert(Node& n);
  void Receive(Node& n, const Ev& e);
  void Boot(Node& n);
  void Crash(Node& n);
  void Pause(Node& n, int64_t ms);
  void InjectFault();
  void InjectAdmin();
  void InjectDiskChange(Node& n, int64_t dur);
  void InjectDiskFailure(Node& n, int64_t dur);
  void ChangeReplica(Node& n, const ha::DiskState& d);
  void ScheduleReplica(Node& n, int64_t at, const ha::DiskState& d);
  void Heal();
  std::optional<ha::Advert> WitnessView(const Node& asker) const;
  bool Connected() const;
  void CheckTransition(Node& n, const ha::Output& out);
  void CheckReplicaStatus(const Node& n);
  void CheckGlobal();
  void MaybeArmTakeoverCheck(Node& dead);
  void Violate(const std::string& what);
  std::string Describe() const;

  SimOptions opts_;
  std::mt19937_64 rng_;
  ha::Options base_;
  Node nodes_[2];
  std::priority_queue<Ev, std::vector<Ev>, EvLater> queue_;
  uint64_t order_ = 0;
  int64_t now_ = 0;
  bool link_up_[2][ha::kPathsMax] = {{true, true}, {true, true}};  // [from][path]
  int paths_ = 1;
  bool witnesses_ = false;
  bool replication_ = false;  // DiskState events exist at all
  bool step_forces_ = false;  // the event being stepped is a forced takeover of a held replica
  int64_t dual_witnessed_since_ = -1;
  double loss_ = 0;
  int64_t delay_max_ = kDelayMaxMs;
  int64_t connected_since_ = 0;
  int64_t dual_since_ = -1;
  std::vector<PendingTakeover> pending_;
  SimResult result_;
};

World::World(const SimOptions& o) : opts_(o), rng_(o.seed) {
  const int64_t intervals[] = {100, 200, 500};
  base_.heartbeat_interval_ms = intervals[Rand(0, 2)];
  base_.heartbeat_timeout_ms = base_.heartbeat_interval_ms * Rand(3, 5);
  base_.initial_dead_time_ms = base_.heartbeat_timeout_ms * 2;
  base_.has_connectivity_peers = Chance(0.7);
  base_.connectivity_interval_ms = base_.heartbeat_interval_ms;
  paths_ = Chance(0.5) ? 2 : 1;
  witnesses_ = Chance(0.5);
  if (witnesses_) base_.has_connectivity_peers = true;  // the daemon's rule
  for (int i = 0; i < 2; ++i) {
    Node& n = nodes_[i];
    n.id = i;
    n.rate = 1.0 + std::uniform_real_distribution<double>(-kDriftMax, kDriftMax)(rng_);
    n.offset = static_cast<double>(Rand(0, 1000000));
  }
  replication_ = Chance(0.6);
  if (!replication_) return;
  for (Node& n : nodes_) n.replica = ha::DiskState{true, false, "UpToDate"};
  if (o.faults && Chance(0.3)) {  // cluster creation: the secondary's initial sync (R-DS-2)
    nodes_[1].replica = ha::DiskState{false, true, "Inconsistent, SyncTarget (initial)"};
    ScheduleReplica(nodes_[1], Rand(1000, 10000), ha::DiskState{true, false, "UpToDate"});
  }
}

void World::Push(Ev e) {
  e.order = order_++;
  queue_.push(std::move(e));
}

void World::PushNode(Node& n, Ev e, int64_t local_delay) {
  e.t = After(n, local_delay);
  e.node = n.id;
  e.inc = n.inc;
  Push(std::move(e));
}

void World::Boot(Node& n) {
  ha::Options o = base_;
  o.role = n.id == 0 ? ha::Role::kPrimary : ha::Role::kSecondary;
  o.request_id_base = static_cast<uint32_t>(n.inc << 16);
  n.state = ha::Boot(o, n.disk, Local(n));
  n.up = true;
  n.paused = false;
  n.exec_seq = 0;
  n.exec_steps.clear();
  n.active_since = -1;
  n.send_seq = 0;
  for (auto& r : n.replay) r = {};
  n.newest = {};
  n.fed = ha::DiskState{};
  n.forced = false;
  // With replication the executor reports the replica before anything else.
  if (replication_) StepNode(n, n.replica);
  PushNode(n, Ev{.kind = Kind::kTick}, Rand(0, kTickMs));
  PushNode(n, Ev{.kind = Kind::kHbTimer}, Rand(0, base_.heartbeat_interval_ms));
}

void World::SendAdvert(Node& n) {
  Node& peer = nodes_[1 - n.id];
  if (witnesses_ && n.reaches_witnesses) {
    n.witness_heard = now_;
    n.witness_advert = ha::MakeAdvert(n.state);
  }
  for (int p = 0; p < paths_; ++p) {
    if (!link_up_[n.id][p] || Chance(loss_)) continue;
    Ev e{.kind = Kind::kDeliver, .node = peer.id, .inc = peer.inc, .path = p,
         .advert = ha::MakeAdvert(n.state), .msg_inc = n.inc, .msg_seq = ++n.send_seq};
    e.t = now_ + Rand(0, delay_max_);
    Push(std::move(e));
  }
}

void World::Receive(Node& n, const Ev& e) {
  std::pair<uint64_t, uint64_t> id{e.msg_inc, e.msg_seq};
  auto& last = n.replay[e.path];
  if (id <= last) return;  // replayed or reordered on its path: dropped
  last = id;
  bool stale = id <= n.newest;
  if (!stale) n.newest = id;
  StepNode(n, ha::PeerHeartbeat{e.path, e.advert, stale});
}

ha::Output World::StepNode(Node& n, ha::Event::Body body) {
  if (const auto* d = std::get_if<ha::DiskState>(&body)) n.fed = *d;
  ha::Event ev{Local(n), std::move(body)};
  ha::Output out = ha::Step(n.state, ev);
  n.state = out.state;
  if (opts_.trace) {
    for (const auto& note : out.notes) {
      result_.trace.push_back(std::to_string(now_) + " node " + std::to_string(n.id) +
                              " note: " + note);
    }
  }
  result_.promotions_held += static_cast<int>(out.notes.size());
  CheckTransition(n, out);
  CheckReplicaStatus(n);
  Execute(n, out);
  return out;
}

void World::Execute(Node& n, const ha::Output& out) {
  bool started = false;
  for (const ha::Action& a : out.actions) {
    if (a.sequence != 0) {
      if (!started) StartSequence(n, out);
      started = true;
      continue;
    }
    switch (a.type) {
      case ha::ActionType::kPersist:
        if (out.state.disk.epoch < n.disk.epoch) Violate("persisted epoch went backwards");
        n.disk = out.state.disk;
        break;
      case ha::ActionType::kSendHeartbeat: SendAdvert(n); break;
      case ha::ActionType::kRunConnectivityTest:
        PushNode(n, Ev{.kind = Kind::kConnResult}, Rand(1, kConnDelayMaxMs));
        break;
      default: break;
    }
  }
}

// A new sequence supersedes the one in flight (the old one's steps are dropped).
void World::StartSequence(Node& n, const ha::Output& out) {
  n.exec_steps.clear();
  for (const ha::Action& a : out.actions) {
    if (a.sequence != 0) n.exec_steps.push_back(a);
  }
  n.exec_seq = n.exec_steps.front().sequence;
  PushNode(n, Ev{.kind = Kind::kSeqStep, .seq = n.exec_seq, .step = 0}, Rand(1, kStepMaxMs));
}

void World::RunSeqStep(Node& n, const Ev& e) {
  if (e.seq != n.exec_seq || e.step >= n.exec_steps.size()) return;
  const ha::Action& a = n.exec_steps[e.step];
  if (a.type == ha::ActionType::kAssignVip && n.fail_next_vip) {
    n.fail_next_vip = false;
    n.exec_seq = 0;
    StepNode(n, ha::SequenceDone{e.seq, false, "assign-vip: injected failure"});
    return;
  }
  if (a.last_in_sequence) {
    n.exec_seq = 0;
    StepNode(n, ha::SequenceDone{e.seq, true, ""});
    return;
  }
  PushNode(n, Ev{.kind = Kind::kSeqStep, .seq = e.seq, .step = e.step + 1}, Rand(1, kStepMaxMs));
}

void World::DispatchNode(Node& n, const Ev& e) {
  if (!n.up || e.inc != n.inc) return;  // belongs to a crashed incarnation
  if (n.paused) {
    n.deferred.push_back(e);
    return;
  }
  switch (e.kind) {
    case Kind::kTick:
      StepNode(n, ha::Tick{});
      PushNode(n, Ev{.kind = Kind::kTick}, kTickMs);
      break;
    case Kind::kHbTimer:
      SendAdvert(n);
      PushNode(n, Ev{.kind = Kind::kHbTimer}, base_.heartbeat_interval_ms);
      break;
    case Kind::kDeliver: Receive(n, e); break;
    case Kind::kConnResult:
      if (opts_.trace) {
        auto w = WitnessView(n);
        result_.trace.push_back(std::to_string(now_) + " node " + std::to_string(n.id) +
                                " conn result ok=" + std::to_string(n.witness_ok) + " witness=" +
                                (w ? std::string(ha::StatusName(w->status)) + "/" +
                                         std::to_string(w->epoch)
                                   : "-") +
                                " peer_alive=" + std::to_string(ha::PeerAlive(n.state)) +
                                " peer_says=" +
                                (n.state.peer ? std::string(ha::StatusName(n.state.peer->status)) +
                                                    "/" + std::to_string(n.state.peer->epoch)
                                              : "-") +
                                " status=" + std::string(ha::StatusName(n.state.status)));
      }
      n.last_conn_ok = n.witness_ok;
      StepNode(n, ha::ConnectivityResult{n.witness_ok, "", WitnessView(n)});
      break;
    case Kind::kSeqStep: RunSeqStep(n, e); break;
    case Kind::kAdmin: {
      bool held = !Promotable(n.fed) || n.state.status == HostStatus::kSynchronizing;
      step_forces_ = e.op == ha::AdminOp::kTakeover && e.force && held;
      ha::Output out = StepNode(n, ha::AdminCommand{e.op, e.force});
      bool accepted = out.admin_accepted && *out.admin_accepted;
      // Accepted, it may promote later (or did already, in this very step).
      if (step_forces_ && accepted && out.state.status != HostStatus::kActive) n.forced = true;
      step_forces_ = false;
      if (opts_.trace && e.op == ha::AdminOp::kTakeover) {
        result_.trace.push_back(std::to_string(now_) + " node " + std::to_string(n.id) +
                                " admin takeover" + (e.force ? " --force" : "") + ": " +
                                (accepted ? "accepted: " : "refused: ") + out.admin_message);
      }
      break;
    }
    case Kind::kDiskReport: StepNode(n, n.replica); break;
    default: break;
  }
}

void World::Dispatch(const Ev& e) {
  Node& n = nodes_[e.node];
  switch (e.kind) {
    case Kind::kRestart:
      if (!n.up && e.inc == n.inc) {
        // A host that comes back while its peer is active usually needs a
        // catch-up resync of what changed meanwhile (R-DS-3).
        if (replication_ && nodes_[1 - n.id].state.status == HostStatus::kActive && Chance(0.5)) {
          n.replica = ha::DiskState{false, true, "Inconsistent, SyncTarget (catch-up)"};
          ScheduleReplica(n, now_ + Rand(500, 5000), ha::DiskState{true, false, "UpToDate"});
        }
        Boot(n);
      }
      return;
    case Kind::kResume:
      if (n.up && n.paused && e.inc == n.inc) {
        n.paused = false;
        std::vector<Ev> deferred;
        deferred.swap(n.deferred);
        for (Ev& d : deferred) {
          d.t = now_;
          Push(std::move(d));
        }
      }
      return;
    case Kind::kFault:
      InjectFault();
      return;
    case Kind::kHeal:
      Heal();
      return;
    case Kind::kDiskChange:
      ChangeReplica(n, e.disk);
      return;
    default: DispatchNode(n, e);
  }
}

void World::Crash(Node& n) {
  if (!n.up) return;
  if (opts_.trace) result_.trace.push_back(std::to_string(now_) + " crash node " + std::to_string(n.id));
  MaybeArmTakeoverCheck(n);
  n.up = false;
  n.paused = false;
  n.deferred.clear();
  n.inc++;
  Ev r{.kind = Kind::kRestart, .node = n.id, .inc = n.inc};
  r.t = now_ + Rand(200, 5000);
  Push(r);
}

void World::Pause(Node& n, int64_t ms) {
  if (opts_.trace) result_.trace.push_back("  (pause for " + std::to_string(ms) + " ms)");
  if (!n.up || n.paused) return;
  if (opts_.trace) result_.trace.push_back(std::to_string(now_) + " pause node " + std::to_string(n.id));
  MaybeArmTakeoverCheck(n);
  n.paused = true;
  Ev r{.kind = Kind::kResume, .node = n.id, .inc = n.inc};
  r.t = now_ + ms;
  Push(r);
}

void World::InjectFault() {
  Push(Ev{.t = now_ + Rand(500, 4000), .kind = Kind::kFault});
  if (Chance(0.25)) InjectAdmin();
  Node& n = nodes_[Rand(0, 1)];
  int64_t timeout = base_.heartbeat_timeout_ms;
  int64_t dur = Rand(timeout / 2, timeout * 4);
  switch (Rand(0, 10)) {
    case 0: Crash(n); break;
    case 1: Pause(n, dur); break;
    case 2: {  // partition: one direction or both, one path or all
      bool both = Chance(0.5);
      for (int p = 0; p < paths_; ++p) {
        if (Chance(0.3) && p > 0) continue;
        link_up_[n.id][p] = false;
        if (both) link_up_[1 - n.id][p] = false;
      }
      connected_since_ = -1;
      Push(Ev{.t = now_ + dur, .kind = Kind::kHeal});
      break;
    }
    case 3: Heal(); break;
    case 4: loss_ = Chance(0.5) ? 0.3 : 0.05; break;
    case 5: delay_max_ = base_.heartbeat_interval_ms / 2; break;
    case 6:
      n.witness_ok = !n.witness_ok || Chance(0.3);
      n.witness_since = now_;
      break;
    case 7: n.fail_next_vip = Chance(0.5); break;
    case 8:  // this host's link to the witnesses fails (or the host-to-host link only)
      if (Chance(0.5)) {
        n.reaches_witnesses = false;
      } else {
        for (int p = 0; p < paths_; ++p) link_up_[0][p] = link_up_[1][p] = false;
      }
      Push(Ev{.t = now_ + dur, .kind = Kind::kHeal});
      break;
    case 9:
      if (replication_) InjectDiskChange(n, dur);
      break;
    case 10:
      if (Chance(0.3)) InjectDiskFailure(n, dur);
      break;
  }
}

// The replica's state on disk changes; a running executor reports it.
void World::ChangeReplica(Node& n, const ha::DiskState& d) {
  n.replica = d;
  result_.disk_changes++;
  if (opts_.trace) {
    result_.trace.push_back(std::to_string(now_) + " node " + std::to_string(n.id) +
                            " replica: up_to_date=" + std::to_string(d.up_to_date) +
                            " synchronizing=" + std::to_string(d.synchronizing) + " " + d.detail);
  }
  if (n.up) PushNode(n, Ev{.kind = Kind::kDiskReport}, 0);
}

void World::ScheduleReplica(Node& n, int64_t at, const ha::DiskState& d) {
  Push(Ev{.t = at, .kind = Kind::kDiskChange, .node = n.id, .disk = d});
}

// The replica stops being promotable for a while: a resync, the replication
// link down (Outdated), or a resync reported (oddly) as UpToDate.
void World::InjectDiskChange(Node& n, int64_t dur) {
  const ha::DiskState up{true, false, "UpToDate"};
  const ha::DiskState syncing{false, true, "Inconsistent, SyncTarget"};
  switch (Rand(0, 3)) {
    case 0: ChangeReplica(n, syncing); break;
    case 1:
      ChangeReplica(n, ha::DiskState{false, false, "Outdated"});
      ScheduleReplica(n, now_ + dur, syncing);
      dur *= 2;
      break;
    case 2: ChangeReplica(n, ha::DiskState{false, false, "Outdated"}); break;
    case 3: ChangeReplica(n, ha::DiskState{true, true, "UpToDate, SyncTarget"}); break;
  }
  ScheduleReplica(n, now_ + dur, up);
  if (opts_.admin_ops && Chance(0.3)) {  // the operator tries to promote it meanwhile
    PushNode(n, Ev{.kind = Kind::kAdmin, .op = ha::AdminOp::kTakeover, .force = Chance(0.7)},
             Rand(0, dur));
  }
}

// An I/O error on the store (R-FO-1, R-DS-8): FAILED until an operator
// repairs the disk and runs `ha restore`; then the replica resyncs.
void World::InjectDiskFailure(Node& n, int64_t dur) {
  if (!n.up || n.paused || n.state.status == HostStatus::kFailed) return;
  if (opts_.trace) {
    result_.trace.push_back(std::to_string(now_) + " disk failure on node " + std::to_string(n.id));
  }
  Node& sb = nodes_[1 - n.id];
  const ha::Options& o = base_;
  bool armed = n.state.status == HostStatus::kActive && sb.up && !sb.paused &&
               sb.state.status == HostStatus::kStandby && !sb.state.disk.admin_offline &&
               !sb.state.handover && Promotable(sb.fed) && Promotable(sb.replica) &&
               connected_since_ >= 0 && now_ - connected_since_ > o.heartbeat_timeout_ms;
  if (armed) {
    // The FAILED advert goes out at once; the standby takes over on it.
    pending_.push_back(PendingTakeover{sb.id, now_, now_ + Settle(o), true});
  }
  StepNode(n, ha::LocalFailure{kDiskFailure});
  result_.disk_failures++;
  if (replication_) {
    ChangeReplica(n, ha::DiskState{false, false, "Diskless (I/O error)"});
    ScheduleReplica(n, now_ + dur, ha::DiskState{false, false, "Inconsistent (new disk)"});
    ScheduleReplica(n, now_ + dur + Rand(500, 5000),
                    ha::DiskState{false, true, "Inconsistent, SyncTarget (full)"});
    ScheduleReplica(n, now_ + 2 * dur + Rand(1000, 8000), ha::DiskState{true, false, "UpToDate"});
  }
  // The operator repairs it and restores the host.
  PushNode(n, Ev{.kind = Kind::kAdmin, .op = ha::AdminOp::kRestore}, dur + Rand(0, 3000));
}

// What the witnesses say about the asker's peer (as the daemon asks: always
// when active, else only while the peer is silent; fresh news only).
std::optional<ha::Advert> World::WitnessView(const Node& asker) const {
  bool ask = !ha::PeerAlive(asker.state) || asker.state.status == HostStatus::kActive;
  if (!witnesses_ || !asker.reaches_witnesses || !ask) return std::nullopt;
  const Node& p = nodes_[1 - asker.id];
  int64_t fresh = std::max(base_.heartbeat_timeout_ms / 2, base_.heartbeat_interval_ms * 3 / 2);
  if (p.witness_heard < 0 || now_ - p.witness_heard > fresh) return std::nullopt;
  return p.witness_advert;
}

void World::Heal() {
  for (auto& dir : link_up_) {
    for (bool& up : dir) up = true;
  }
  for (Node& n : nodes_) n.reaches_witnesses = true;
  loss_ = 0;
  delay_max_ = kDelayMaxMs;
}

void World::InjectAdmin() {
  if (!opts_.admin_ops) return;
  Node& n = nodes_[Rand(0, 1)];
  const ha::AdminOp ops[] = {ha::AdminOp::kTakeover, ha::AdminOp::kGiveback,
                             ha::AdminOp::kSetOffline, ha::AdminOp::kSetOnline,
                             ha::AdminOp::kRestore, ha::AdminOp::kSetOnline, ha::AdminOp::kRestore};
  Ev e{.kind = Kind::kAdmin, .op = ops[Rand(0, 6)]};
  if (e.op == ha::AdminOp::kTakeover) e.force = Chance(0.5);  // `ha takeover --force`
  PushNode(n, e, 0);
  for (auto& p : pending_) {
    if (p.node == n.id) p.node = -1;  // an admin command voids the deadline check
  }
}

bool World::Connected() const {
  for (const Node& n : nodes_) {
    if (!n.up || n.paused) return false;
  }
  if (loss_ > 0 || delay_max_ > kDelayMaxMs) return false;
  for (int p = 0; p < paths_; ++p) {
    if (link_up_[0][p] && link_up_[1][p]) return true;
  }
  return false;
}

// Settling bound: one heartbeat interval on the slowest clock, delivery, one
// tick, and a release sequence.
int64_t Settle(const ha::Options& o) {
  return static_cast<int64_t>(o.heartbeat_interval_ms / (1 - kDriftMax)) + kDelayMaxMs + kTickMs +
         4 * kStepMaxMs + kMarginMs;
}

void World::MaybeArmTakeoverCheck(Node& dead) {
  Node& sb = nodes_[1 - dead.id];
  const ha::Options& o = base_;
  bool ready = dead.state.status == HostStatus::kActive && sb.up && !sb.paused &&
               sb.state.status == HostStatus::kStandby && !sb.state.disk.admin_offline &&
               !sb.state.handover && Promotable(sb.fed) && Promotable(sb.replica) &&
               connected_since_ >= 0 && now_ - connected_since_ > o.heartbeat_timeout_ms &&
               (!o.has_connectivity_peers ||
                (sb.witness_ok && now_ - sb.witness_since > o.heartbeat_timeout_ms));
  if (!ready) return;
  int64_t bound = static_cast<int64_t>(o.heartbeat_timeout_ms / (1 - kDriftMax)) +
                  o.heartbeat_interval_ms + kConnDelayMaxMs + kTickMs + kMarginMs;
  pending_.push_back(PendingTakeover{sb.id, now_, now_ + bound});
}

void World::CheckTransition(Node& n, const ha::Output& out) {
  for (const auto& t : out.transitions) {
    result_.transitions++;
    if (opts_.trace) {
      result_.trace.push_back(std::to_string(now_) + " node " + std::to_string(n.id) + " " +
                              std::string(ha::StatusName(t.from)) + " -> " +
                              std::string(ha::StatusName(t.to)) + ": " + t.reason);
    }
    if (t.to != HostStatus::kActive) {
      if (t.to != HostStatus::kStandby && t.to != HostStatus::kSynchronizing) n.forced = false;
      continue;
    }
    n.active_since = now_;
    // Promotion needs an UpToDate replica that is not synchronizing, except
    // through a forced admin takeover (R-DS-*).
    bool held = !Promotable(n.fed) || t.from == HostStatus::kSynchronizing;
    bool forced = n.forced || (step_forces_ && out.admin_accepted && *out.admin_accepted);
    if (held && !forced) {
      Violate("node " + std::to_string(n.id) + " became ACTIVE from " +
              std::string(ha::StatusName(t.from)) + " with a replica that may not be promoted (" +
              n.fed.detail + ") and no forced takeover: " + t.reason);
    } else if (held && t.reason.find("forced by the administrator") == std::string::npos) {
      Violate("node " + std::to_string(n.id) + " forced promotion not logged as forced: " +
              t.reason);
    }
    result_.forced_promotions += held;
    n.forced = false;
    // Taking over from a silent peer requires a passing own test (R-NC-3).
    if (!ha::PeerAlive(out.state) && base_.has_connectivity_peers && !n.last_conn_ok) {
      Violate("node " + std::to_string(n.id) + " took over with a failed connectivity test");
    }
    const Node& p = nodes_[1 - n.id];
    bool peer_steady = p.up && !p.paused && p.state.status == HostStatus::kActive &&
                       p.active_since >= 0 && now_ - p.active_since > Settle(base_);
    if (peer_steady && connected_since_ >= 0 && now_ - connected_since_ > Settle(base_)) {
      Violate("node " + std::to_string(n.id) + " preempted the steady active peer");
    }
  }
  if (n.state.status != HostStatus::kActive) n.active_since = -1;
}

// STANDBY and SYNCHRONIZING follow the last DiskState: a sync target is never
// STANDBY, and SYNCHRONIZING ends once the replica is UpToDate and not syncing.
void World::CheckReplicaStatus(const Node& n) {
  HostStatus st = n.state.status;
  if (st == HostStatus::kStandby && n.fed.synchronizing) {
    Violate("node " + std::to_string(n.id) + " is STANDBY while its replica synchronizes");
  }
  if (st == HostStatus::kSynchronizing && Promotable(n.fed)) {
    Violate("node " + std::to_string(n.id) + " is SYNCHRONIZING with an UpToDate replica");
  }
  if (!(n.state.replica == n.fed)) {
    Violate("node " + std::to_string(n.id) + " state machine lost the last DiskState");
  }
}

void World::CheckGlobal() {
  bool connected = Connected();
  if (!connected) connected_since_ = -1;
  if (connected && connected_since_ < 0) connected_since_ = now_;
  bool dual = true;
  for (const Node& n : nodes_) dual = dual && n.up && n.state.status == HostStatus::kActive;
  if (!dual) dual_since_ = -1;
  if (dual && dual_since_ < 0) dual_since_ = now_;
  if (dual && connected_since_ >= 0 &&
      now_ - std::max(dual_since_, connected_since_) > Settle(base_)) {
    Violate("two active hosts while they exchange heartbeats");
  }
  // R-NC-4: with witnesses, never two actives while a witness sees both.
  bool witnessed = witnesses_ && dual;
  for (const Node& n : nodes_) witnessed = witnessed && !n.paused && n.reaches_witnesses;
  if (!witnessed) dual_witnessed_since_ = -1;
  if (witnessed && dual_witnessed_since_ < 0) dual_witnessed_since_ = now_;
  int64_t settle_w = 2 * base_.heartbeat_interval_ms + Settle(base_) + kConnDelayMaxMs;
  if (witnessed && now_ - dual_witnessed_since_ > settle_w) {
    Violate("two active hosts while a witness hears both");
  }
  for (auto& p : pending_) {
    if (p.node < 0) continue;
    Node& sb = nodes_[p.node];
    Node& dead = nodes_[1 - p.node];
    // A standby whose replica may not be promoted is rightly held back.
    bool sb_ready = Promotable(sb.fed) && Promotable(sb.replica);
    bool changed = p.peer_failed
                       ? !connected || dead.state.status != HostStatus::kFailed
                       : !sb.witness_ok || (dead.up && !dead.paused);
    if (sb.state.status == HostStatus::kActive) {
      result_.takeovers++;
      result_.failed_peer_takeovers += p.peer_failed;
      p.node = -1;
    } else if (!sb.up || sb.paused || changed || !sb_ready ||
               sb.state.status != HostStatus::kStandby || sb.state.disk.admin_offline) {
      p.node = -1;  // the world changed under the check: void
    } else if (now_ > p.deadline) {
      Violate(p.peer_failed
                  ? "standby did not take over from the FAILED active within " +
                        std::to_string(p.deadline - p.started) + " ms"
                  : "standby did not replace the dead active within timeout + interval (" +
                        std::to_string(p.deadline - p.started) + " ms)");
      p.node = -1;
    }
  }
  std::erase_if(pending_, [](const PendingTakeover& p) { return p.node < 0; });
}

void World::Violate(const std::string& what) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.violation = "t=" + std::to_string(now_) + " ms: " + what + "\n" + Describe();
}

std::string World::Describe() const {
  std::ostringstream os;
  os << "options: witnesses=" << witnesses_ << " replication=" << replication_
     << " interval=" << base_.heartbeat_interval_ms
     << " timeout=" << base_.heartbeat_timeout_ms << " conn=" << base_.has_connectivity_peers
     << " paths=" << paths_ << " loss=" << loss_ << " delay_max=" << delay_max_ << "\n";
  for (const Node& n : nodes_) {
    os << "node " << n.id << ": " << (n.up ? (n.paused ? "paused" : "up") : "down") << " "
       << ha::StatusName(n.state.status) << " epoch=" << n.state.disk.epoch
       << " witness=" << n.witness_ok << " replica=" << n.fed.up_to_date << "/"
       << n.fed.synchronizing << "(" << n.fed.detail << ")" << (n.forced ? " forced" : "")
       << " | " << n.state.reason << "\n";
  }
  return os.str();
}

SimResult World::Run() {
  for (Node& n : nodes_) Boot(n);
  if (opts_.faults) Push(Ev{.t = Rand(1000, 5000), .kind = Kind::kFault});
  while (!queue_.empty() && result_.ok) {
    Ev e = queue_.top();
    queue_.pop();
    if (e.t > opts_.duration_ms) break;
    now_ = std::max(now_, e.t);
    Dispatch(e);
    CheckGlobal();
  }
  result_.failovers_checked = result_.takeovers;
  return result_;
}

}  // namespace

SimResult RunSimulation(const SimOptions& opts) { return World(opts).Run(); }

}  // namespace tandem::sim
