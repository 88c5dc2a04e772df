#include "ha/state_machine.h"

#include <string>
#include <tuple>

namespace tandem::ha {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string Str(int64_t v) { return std::to_string(v); }

bool IsPeer(const State& s, HostStatus st) { return s.peer && s.peer->status == st; }

// ---- The local replica (R-DS-*) ----

// A sync target, or an interrupted one that is not UpToDate yet: a host stays
// SYNCHRONIZING until its DiskState says UpToDate and not synchronizing.
bool Synchronizing(const State& s) {
  return s.replica.synchronizing ||
         (s.status == HostStatus::kSynchronizing && !s.replica.up_to_date);
}

bool CanPromote(const State& s) { return s.replica.up_to_date && !Synchronizing(s); }

std::string ReplicaText(const DiskState& r, bool syncing_form) {
  std::string what =
      syncing_form ? "local replica is synchronizing" : "local replica is not UpToDate";
  return r.detail.empty() ? what : what + ": " + r.detail;
}

// Why the replica keeps this host from being promoted.
std::string ReplicaWhy(const State& s) { return ReplicaText(s.replica, s.replica.up_to_date); }

// The status of a host that holds no role: STANDBY, or SYNCHRONIZING while
// its replica is being synchronized.
HostStatus StandbyStatus(const State& s) {
  return Synchronizing(s) ? HostStatus::kSynchronizing : HostStatus::kStandby;
}

// ---- Output helpers ----

void Emit(Output& out, ActionType t, std::string detail = "") {
  out.actions.push_back(Action{t, 0, false, std::move(detail)});
}

void SetStatus(Output& out, HostStatus to, const std::string& reason) {
  State& s = out.state;
  s.reason = reason;
  if (s.status == to) return;
  // A forced takeover applies to the standby that was forced, not beyond.
  if (to != HostStatus::kStandby && to != HostStatus::kSynchronizing) s.promotion_forced = false;
  out.transitions.push_back(Transition{s.status, to, reason});
  Emit(out, ActionType::kNotify,
       std::string(StatusName(s.status)) + " " + std::string(StatusName(to)) + " " + reason);
  s.status = to;
  s.status_since_ms = s.now_ms;
}

// Becomes STANDBY or SYNCHRONIZING; the reason also says what holds the
// replica back, if anything does.
void SetStandby(Output& out, const std::string& reason) {
  const State& s = out.state;
  bool syncing = Synchronizing(s);
  bool says_why = CanPromote(s) || reason.find("local replica") != std::string::npos;
  std::string why = syncing ? ReplicaText(s.replica, true) : ReplicaWhy(s);
  SetStatus(out, syncing ? HostStatus::kSynchronizing : HostStatus::kStandby,
            says_why ? reason : reason + "; " + why);
}

void BeginSequence(Output& out, SeqKind kind, std::initializer_list<ActionType> steps,
                   const std::string& reason) {
  State& s = out.state;
  s.sequence = s.next_sequence++;
  s.seq_kind = kind;
  size_t i = 0;
  for (ActionType t : steps) {
    ++i;
    out.actions.push_back(Action{t, s.sequence, i == steps.size(), reason});
  }
}

// R-FO-3: attach store, alias, VIP (+ announce), services, configuration.
void Activate(Output& out, const std::string& reason) {
  State& s = out.state;
  uint64_t peer_epoch = s.peer ? s.peer->epoch : 0;
  s.disk.epoch = (s.disk.epoch > peer_epoch ? s.disk.epoch : peer_epoch) + 1;
  s.disk.last_active_epoch = s.disk.epoch;
  s.takeover_request = 0;
  s.handover = false;
  s.promotion_forced = false;
  s.promotion_refused.clear();
  Emit(out, ActionType::kPersist, "epoch " + std::to_string(s.disk.epoch));
  SetStatus(out, HostStatus::kActive, reason);
  BeginSequence(out,
                SeqKind::kActivate,
                {ActionType::kAttachStore, ActionType::kAddAlias, ActionType::kAssignVip,
                 ActionType::kStartServices, ActionType::kFetchConfig},
                reason);
}

// The reverse of Activate. The status becomes `target` when it completes.
void Release(Output& out, HostStatus target, bool handover, const std::string& reason) {
  State& s = out.state;
  s.release_target = target;
  s.release_handover = handover;
  s.conn_check_request = 0;
  if (target == HostStatus::kOffline) SetStatus(out, HostStatus::kSettingOffline, reason);
  if (target == HostStatus::kFailed) SetStatus(out, HostStatus::kFailed, reason);
  s.reason = reason;
  BeginSequence(out,
                SeqKind::kRelease,
                {ActionType::kStopServices, ActionType::kUnassignVip, ActionType::kRemoveAlias,
                 ActionType::kDetachStore},
                reason);
}

void RequestConnTest(Output& out, const std::string& why) {
  State& s = out.state;
  if (s.conn_in_flight) return;
  s.conn_in_flight = true;
  s.conn_requested_ms = s.now_ms;
  Emit(out, ActionType::kRunConnectivityTest, why);
}

uint32_t NewRequestId(State& s) {
  uint32_t id = s.opts.request_id_base + s.next_request_id++;
  return id == 0 ? NewRequestId(s) : id;
}

// ---- Facts ----

bool ActiveInEpoch(const Persistent& d);

// Start-up / no-active election between two non-active hosts: the newer epoch
// wins, then the host that was Active in that epoch, then the primary.
bool WeWinAgainst(const State& s, const Advert& p) {
  auto ours = std::make_tuple(s.disk.epoch, ActiveInEpoch(s.disk),
                              s.opts.role == Role::kPrimary);
  auto theirs = std::make_tuple(p.epoch, p.active_in_epoch, p.role == Role::kPrimary);
  return ours > theirs;
}

bool WeWinElection(const State& s) { return WeWinAgainst(s, *s.peer); }

bool WitnessSeesPeerActive(const State& s) {
  return s.conn_witness_peer && s.conn_witness_peer->status == HostStatus::kActive;
}

bool ActiveInEpoch(const Persistent& d) { return d.epoch != 0 && d.last_active_epoch == d.epoch; }

bool PeerCanTakeRole(const Advert& p) {
  return p.admin == AdminMode::kOnline &&
         (p.status == HostStatus::kStandby || p.status == HostStatus::kStarting ||
          p.status == HostStatus::kSettingOnline);
}

// The peer is giving up the active role and has not finished yet.
bool PeerReleasing(const Advert& p) { return p.status == HostStatus::kSettingOffline; }

bool Busy(const State& s) { return s.sequence != 0; }

// A fresh connectivity verdict: one that arrived after `since_ms`.
std::optional<bool> ConnVerdictSince(const State& s, int64_t since_ms) {
  if (!s.opts.has_connectivity_peers) return true;
  if (s.conn_result_ms >= 0 && s.conn_result_ms >= since_ms) return s.conn_ok;
  return std::nullopt;
}

// ---- Reconcile: the rules of each status ----

// Every way to Active goes through here: promotion needs an UpToDate replica
// that is not synchronizing, unless the administrator forced a takeover. A
// refusal leaves the host STANDBY (or SYNCHRONIZING) with the reason, noted
// once per cause: `key` names the cause without what changes every tick.
bool MayPromote(Output& out, const std::string& what, const std::string& key) {
  State& s = out.state;
  if (CanPromote(s) || s.promotion_forced) return true;
  std::string reason = what + "; not taking over: " + ReplicaWhy(s);
  if (s.status != HostStatus::kStandby && s.status != HostStatus::kSynchronizing) {
    s.promotion_refused = key;
    SetStandby(out, reason);  // the transition says why
  } else if (s.promotion_refused != key) {
    s.promotion_refused = key;
    s.reason = reason;
    out.notes.push_back(reason);
  }
  return false;
}

// Activates unless MayPromote refuses; then, with `hand_back`, hands the role
// to the peer (it is a candidate too), so the cluster is not left without an
// active host while this one waits for its replica.
void Promote(Output& out, const std::string& what, const std::string& key, bool hand_back) {
  State& s = out.state;
  if (!MayPromote(out, what, key)) {
    if (hand_back && !s.handover) {
      s.handover = true;
      s.handover_since_ms = s.now_ms;
    }
    return;
  }
  Activate(out, CanPromote(s) ? what : what + "; forced by the administrator: " + ReplicaWhy(s));
}

// Takes over after the peer went silent, if our own test passes (R-NC-3)
// and the replica allows it (`key`: `what` without the time).
void TakeOverFromSilentPeer(Output& out, int64_t silent_since_ms, const std::string& what,
                            const std::string& key) {
  State& s = out.state;
  if (!MayPromote(out, what, key)) return;
  auto verdict = ConnVerdictSince(s, silent_since_ms);
  if (!verdict) {
    RequestConnTest(out, what + "; testing own connectivity before taking over");
    return;
  }
  if (*verdict && !WitnessSeesPeerActive(s)) {
    std::string why =
        what + (s.opts.has_connectivity_peers ? "; own connectivity test passed" : "");
    Activate(out, CanPromote(s) ? why : why + "; forced by the administrator: " + ReplicaWhy(s));
    return;
  }
  if (!s.conn_failure_noted) {
    s.conn_failure_noted = true;
    s.reason = what + (*verdict ? "; not taking over: a witness still hears the peer ACTIVE "
                                  "(indirect heartbeat)"
                                : "; not taking over: own connectivity test failed");
  }
  if (s.now_ms - s.conn_requested_ms >= s.opts.connectivity_interval_ms) {
    RequestConnTest(out, "retrying connectivity test");
  }
}

// Decides between Active and Standby when this host holds no role yet
// (Starting, Setting Online) or the cluster has no active host.
void Elect(Output& out, const std::string& context) {
  State& s = out.state;
  const Advert& p = *s.peer;
  if (p.status == HostStatus::kActive) {
    SetStandby(out, "peer is active");
  } else if (p.handover) {
    Promote(out, "peer handed the active role over", "handover", PeerCanTakeRole(p));
  } else if (PeerReleasing(p)) {
    return;  // its handover follows when its release completes
  } else if (!PeerCanTakeRole(p) && !(s.handover && p.status == HostStatus::kSynchronizing)) {
    // (A Synchronizing peer we handed the role to asked for it: a forced takeover.)
    std::string peer_is =
        "peer is " + std::string(StatusName(p.status)) + "/" + std::string(AdminName(p.admin));
    Promote(out, context + "; " + peer_is, peer_is, false);
  } else if (s.handover) {
    // We gave the role away: wait for the peer to take it.
    if (s.status != StandbyStatus(s)) SetStandby(out, s.reason);
  } else if (WeWinElection(s)) {
    Promote(out, context + "; won election (epoch " + std::to_string(s.disk.epoch) + ")",
            "won election", true);
  } else if (s.status != StandbyStatus(s)) {
    SetStandby(out, context + "; peer won election");
  }
}

void ReconcileStarting(Output& out) {
  State& s = out.state;
  if (PeerAlive(s)) {
    Elect(out, "start-up");
    return;
  }
  int64_t dead_at = s.started_ms + s.opts.initial_dead_time_ms;
  if (s.now_ms >= dead_at) {
    const std::string what = "peer not heard within initial dead time";
    TakeOverFromSilentPeer(out, dead_at, what, what);
  }
}

void ReconcileSettingOnline(Output& out) {
  State& s = out.state;
  if (PeerAlive(s)) {
    Elect(out, "set online");
  } else {
    TakeOverFromSilentPeer(out, s.status_since_ms, "set online; peer silent", "peer silent");
  }
}

void ServePeerConnCheck(Output& out) {
  State& s = out.state;
  uint32_t req = s.peer ? s.peer->conn_check_request : 0;
  if (req == 0 || req == s.conn_check_served) return;
  s.conn_check_served = req;
  s.conn_in_flight = false;  // force a fresh test for this request
  RequestConnTest(out, "peer lost its connectivity test peers and asks us to test ours");
}

// STANDBY <-> SYNCHRONIZING as the local replica's DiskState says.
void FollowReplica(Output& out) {
  State& s = out.state;
  if (s.status == HostStatus::kStandby && Synchronizing(s)) {
    SetStatus(out, HostStatus::kSynchronizing, ReplicaText(s.replica, true));
  } else if (s.status == HostStatus::kSynchronizing && !Synchronizing(s)) {
    SetStatus(out, HostStatus::kStandby, "synchronization finished: local replica is UpToDate");
  }
}

// Standby and Synchronizing: the same rules; MayPromote holds a host with a
// replica that is not UpToDate (or is synchronizing) back.
void ReconcileStandby(Output& out) {
  State& s = out.state;
  FollowReplica(out);
  if (s.takeover_request && s.now_ms - s.takeover_since_ms > s.opts.heartbeat_timeout_ms) {
    s.takeover_request = 0;
    s.reason = "takeover timed out: peer did not release";
  }
  // A force ends when another host is active (and no request of ours is out).
  if (PeerAlive(s) && IsPeer(s, HostStatus::kActive) && s.takeover_request == 0) {
    s.promotion_forced = false;
  }
  if (!PeerAlive(s)) {
    if (s.handover) return;  // we gave the role away; wait for the peer
    if (!s.peer) {  // alone since start-up; the replica held us back at the dead time
      const std::string what = "peer not heard within initial dead time";
      TakeOverFromSilentPeer(out, s.started_ms + s.opts.initial_dead_time_ms, what, what);
      return;
    }
    int64_t heard = s.peer_silent_since_ms - s.opts.heartbeat_timeout_ms;
    TakeOverFromSilentPeer(out, s.peer_silent_since_ms,
                           "peer silent for " + Str(s.now_ms - heard) + " ms (all paths)",
                           "peer silent");
    return;
  }
  s.conn_failure_noted = false;
  ServePeerConnCheck(out);
  if (!IsPeer(s, HostStatus::kActive)) {
    Elect(out, "no active host");
    return;
  }
  s.promotion_refused.clear();  // a peer is active: no promotion in question
}

void CheckConnectivityFailover(Output& out) {
  State& s = out.state;
  bool peer_ready = PeerAlive(s) && IsPeer(s, HostStatus::kStandby) &&
                    s.peer->admin == AdminMode::kOnline;
  if (!s.conn_ok && s.opts.has_connectivity_peers && PeerAlive(s) &&
      IsPeer(s, HostStatus::kSynchronizing)) {
    // Present, but no takeover candidate: no controlled failover (R-NC-2).
    s.reason = "lost connectivity test peers; the peer is SYNCHRONIZING and cannot take over: "
               "no failover";
  }
  if (s.conn_ok || !s.opts.has_connectivity_peers || !peer_ready) {
    s.conn_check_request = 0;
    return;
  }
  if (s.conn_check_request == 0) {
    if (s.conn_check_declined_ms >= 0 && s.conn_result_ms <= s.conn_check_declined_ms) return;
    // Phase 1 (R-NC-2): ask the standby to run its own test.
    s.conn_check_request = NewRequestId(s);
    s.conn_check_since_ms = s.now_ms;
    s.reason = "lost connectivity test peers; asking standby to test its own";
    return;
  }
  if (s.peer->conn_check_answer_id != s.conn_check_request) return;
  if (s.peer->conn_check_answer_ok) {
    Release(out, HostStatus::kStandby, true,
            "controlled failover: lost connectivity test peers, standby's test passed");
  } else if (s.conn_result_ms > s.conn_check_since_ms) {
    // Standby's test failed too: no failover; try again after our next test.
    s.conn_check_request = 0;
    s.conn_check_declined_ms = s.now_ms;
    s.reason = "lost connectivity test peers; standby's test failed too: no failover";
  }
}

void ReconcileActive(Output& out) {
  State& s = out.state;
  if (Busy(s)) return;
  if (PeerAlive(s) && IsPeer(s, HostStatus::kActive)) {
    // Two active hosts (after a partition or an OS hang): the newer epoch
    // keeps the role, and the other releases (no handover).
    if (!WeWinElection(s)) {
      Release(out, HostStatus::kStandby, false, "two active hosts: peer has the newer epoch");
    }
    return;
  }
  if (WitnessSeesPeerActive(s) && !WeWinAgainst(s, *s.conn_witness_peer)) {
    // A witness hears the peer ACTIVE with the newer epoch: it took over while
    // we were cut off or hung (R-NC-4). What we heard directly may be stale
    // (packets buffered while we hung), the witness's news is fresh.
    Release(out, HostStatus::kStandby, false,
            "two active hosts: a witness hears the peer ACTIVE with epoch " +
                std::to_string(s.conn_witness_peer->epoch) + "; stepping down");
    return;
  }
  uint32_t req = PeerAlive(s) && s.peer ? s.peer->takeover_request : 0;
  // A Synchronizing peer asks only when its administrator forced it.
  bool candidate = IsPeer(s, HostStatus::kStandby) || IsPeer(s, HostStatus::kSynchronizing);
  if (req != 0 && req != s.takeover_handled && candidate) {
    s.takeover_handled = req;
    Release(out, HostStatus::kStandby, true, "peer requested takeover");
    return;
  }
  CheckConnectivityFailover(out);
}

void PeriodicConnTest(Output& out) {
  State& s = out.state;
  bool testing_status = s.status == HostStatus::kActive || s.status == HostStatus::kStandby;
  if (!s.opts.has_connectivity_peers || !testing_status || s.conn_in_flight) return;
  if (s.conn_requested_ms < 0 || s.now_ms - s.conn_requested_ms >= s.opts.connectivity_interval_ms) {
    RequestConnTest(out, "periodic connectivity test");
  }
}

// A host that is not active follows the active's data generation.
void FollowActiveEpoch(Output& out) {
  State& s = out.state;
  bool follower = s.status == HostStatus::kStandby || s.status == HostStatus::kSynchronizing ||
                  s.status == HostStatus::kOffline;
  if (!follower || !PeerAlive(s) || !IsPeer(s, HostStatus::kActive)) return;
  if (s.peer->epoch <= s.disk.epoch) return;
  s.disk.epoch = s.peer->epoch;
  Emit(out, ActionType::kPersist, "epoch " + std::to_string(s.disk.epoch) + " (peer)");
}

void Reconcile(Output& out) {
  State& s = out.state;
  if (s.handover && s.now_ms - s.handover_since_ms > s.opts.heartbeat_timeout_ms) {
    s.handover = false;  // the peer never took the role; election resumes
  }
  if (Busy(s)) return;
  switch (s.status) {
    case HostStatus::kStarting: ReconcileStarting(out); break;
    case HostStatus::kSettingOnline: ReconcileSettingOnline(out); break;
    case HostStatus::kStandby:
    case HostStatus::kSynchronizing: ReconcileStandby(out); break;
    case HostStatus::kActive: ReconcileActive(out); break;
    default: break;  // Failed, Offline: admin decides
  }
  PeriodicConnTest(out);
  FollowActiveEpoch(out);
}

// ---- Event handlers ----

void OnPeerHeartbeat(Output& out, const PeerHeartbeat& hb) {
  State& s = out.state;
  if (hb.path < 0 || hb.path >= kPathsMax) return;
  // Old news (buffered while we hung): the peer may have taken over since.
  if (hb.age_ms > s.opts.heartbeat_timeout_ms) return;
  if (hb.advert.epoch < s.stale_below_epoch && s.now_ms <= s.stale_epoch_until_ms) return;
  s.path_heard_ms[static_cast<size_t>(hb.path)] = s.now_ms - std::max<int64_t>(hb.age_ms, 0);
  if (hb.stale && s.peer) return;
  s.peer = hb.advert;
  s.peer_silent_since_ms = -1;
  if (s.handover && hb.advert.status == HostStatus::kActive) s.handover = false;
}

// A witness heard the peer ACTIVE in a newer epoch than the heartbeats we
// hold from it: ours were sent before it took over and say nothing about it
// now (we hung, and read them late). The peer counts as silent from now, and
// late heartbeats of an older epoch are ignored for one heartbeat timeout --
// bounded, so that a peer whose disk was replaced (epoch back to 0) is heard
// again.
void ForgetStaleDirectNews(State& s) {
  if (!WitnessSeesPeerActive(s) || !s.peer || s.peer->epoch >= s.conn_witness_peer->epoch) return;
  s.stale_below_epoch = s.conn_witness_peer->epoch;
  s.stale_epoch_until_ms = s.now_ms + s.opts.heartbeat_timeout_ms;
  if (!PeerAlive(s)) return;
  for (int64_t& t : s.path_heard_ms) t = -1;
  s.peer_silent_since_ms = s.now_ms;
}

void OnConnectivity(Output& out, const ConnectivityResult& r) {
  State& s = out.state;
  s.conn_in_flight = false;
  s.conn_ok = r.ok;
  s.conn_witness_peer = r.witness_peer;
  s.conn_result_ms = s.now_ms;
  ForgetStaleDirectNews(s);
  if (s.conn_check_served != 0 && s.conn_check_answer_id != s.conn_check_served) {
    // A replica that may not be promoted declines the controlled failover.
    s.conn_check_answer_id = s.conn_check_served;
    s.conn_check_answer_ok = r.ok && CanPromote(s);
  }
}

void OnSequenceDone(Output& out, const SequenceDone& d) {
  State& s = out.state;
  if (d.sequence != s.sequence || s.sequence == 0) return;  // stale
  SeqKind kind = s.seq_kind;
  s.sequence = 0;
  s.seq_kind = SeqKind::kNone;
  if (!d.ok) {
    s.disk.failed = true;
    s.disk.failed_reason = d.error;
    Emit(out, ActionType::kPersist, "failed");
    if (kind == SeqKind::kActivate) {
      Release(out, HostStatus::kFailed, false, "take-over failed: " + d.error);
    } else {
      SetStatus(out, HostStatus::kFailed, "release failed: " + d.error);
    }
    return;
  }
  if (kind != SeqKind::kRelease) return;
  if (s.release_target == HostStatus::kFailed) return;
  s.handover = s.release_handover;
  s.handover_since_ms = s.now_ms;
  if (s.release_target == HostStatus::kStandby) {
    SetStandby(out, s.reason);
  } else {
    SetStatus(out, s.release_target, s.reason);
  }
}

void OnLocalFailure(Output& out, const LocalFailure& f) {
  State& s = out.state;
  if (s.status == HostStatus::kFailed) return;
  s.disk.failed = true;
  s.disk.failed_reason = f.reason;
  Emit(out, ActionType::kPersist, "failed");
  if (Busy(s)) s.sequence = 0;  // abandon; the release below supersedes it
  Release(out, HostStatus::kFailed, false, f.reason);
}

// Records the replica's state; Reconcile moves STANDBY <-> SYNCHRONIZING and
// retries a promotion it held back. An active host only records it (it is the
// sync source; a failed disk arrives as LocalFailure).
void OnDiskState(Output& out, const DiskState& d) {
  State& s = out.state;
  DiskState before = s.replica;
  s.replica = d;
  // Keep what the reason says about the replica current ("SyncTarget 43%").
  for (bool syncing_form : {false, true}) {
    std::string old_text = ReplicaText(before, syncing_form);
    size_t at = s.reason.find(old_text);
    if (at == std::string::npos) continue;
    s.reason.replace(at, old_text.size(), ReplicaText(d, syncing_form));
  }
  if (before.up_to_date == d.up_to_date && before.synchronizing == d.synchronizing) return;
  s.promotion_refused.clear();  // new facts: a refusal is noted again
  if (s.status == HostStatus::kStandby && !Synchronizing(s)) {
    s.reason = CanPromote(s) ? "local replica is UpToDate"
                             : ReplicaWhy(s) + "; this host cannot take over until it is UpToDate";
  }
}

}  // namespace

// Admin commands live in admin.cc.
void OnAdmin(Output& out, const AdminCommand& c);
void ActivateForAdmin(Output& out, const std::string& reason) { Activate(out, reason); }
void ReleaseForAdmin(Output& out, HostStatus target, bool handover, const std::string& reason) {
  Release(out, target, handover, reason);
}
void SetStatusForAdmin(Output& out, HostStatus to, const std::string& reason) {
  SetStatus(out, to, reason);
}
uint32_t NewRequestIdForAdmin(State& s) { return NewRequestId(s); }
std::string ReplicaWhyForAdmin(const State& s) { return ReplicaWhy(s); }

bool ReplicaReady(const State& s) { return CanPromote(s); }

bool PeerAlive(const State& s) {
  for (int64_t t : s.path_heard_ms) {
    if (t >= 0 && s.now_ms - t <= s.opts.heartbeat_timeout_ms) return true;
  }
  return false;
}

int PathsUp(const State& s) {
  int n = 0;
  for (int64_t t : s.path_heard_ms) n += (t >= 0 && s.now_ms - t <= s.opts.heartbeat_timeout_ms);
  return n;
}

State Boot(const Options& opts, const Persistent& disk, int64_t now_ms) {
  State s;
  s.opts = opts;
  s.disk = disk;
  s.now_ms = s.started_ms = s.status_since_ms = now_ms;
  if (disk.failed) {
    s.status = HostStatus::kFailed;
    s.reason = "failed before restart: " + disk.failed_reason + " (run `ha restore`)";
  } else if (disk.admin_offline) {
    s.status = HostStatus::kOffline;
    s.reason = "set offline by the administrator before restart";
  } else {
    s.status = HostStatus::kStarting;
    s.reason = "waiting for peer or initial dead time";
  }
  return s;
}

Advert MakeAdvert(const State& s) {
  Advert a;
  a.role = s.opts.role;
  a.status = s.status;
  a.admin = s.disk.admin_offline ? AdminMode::kOffline : AdminMode::kOnline;
  a.epoch = s.disk.epoch;
  a.active_in_epoch = ActiveInEpoch(s.disk);
  a.handover = s.handover;
  a.connectivity_ok = !s.opts.has_connectivity_peers || s.conn_ok;
  a.takeover_request = s.takeover_request;
  a.conn_check_request = s.conn_check_request;
  a.conn_check_answer_id = s.conn_check_answer_id;
  a.conn_check_answer_ok = s.conn_check_answer_ok;
  return a;
}

Output Step(const State& in, const Event& e) {
  Output out{in, {}, {}, std::nullopt, ""};
  State& s = out.state;
  if (e.now_ms > s.now_ms) s.now_ms = e.now_ms;  // time never goes backwards
  bool was_alive = PeerAlive(in);
  Advert before = MakeAdvert(in);
  std::visit(Overloaded{
                 [&](const Tick&) {},
                 [&](const PeerHeartbeat& hb) { OnPeerHeartbeat(out, hb); },
                 [&](const ConnectivityResult& r) { OnConnectivity(out, r); },
                 [&](const SequenceDone& d) { OnSequenceDone(out, d); },
                 [&](const AdminCommand& c) { OnAdmin(out, c); },
                 [&](const LocalFailure& f) { OnLocalFailure(out, f); },
                 [&](const DiskState& d) { OnDiskState(out, d); },
             },
             e.body);
  if (was_alive && !PeerAlive(s) && s.peer_silent_since_ms < 0) {
    int64_t last = -1;
    for (int64_t t : s.path_heard_ms) last = t > last ? t : last;
    s.peer_silent_since_ms = last + s.opts.heartbeat_timeout_ms;
  }
  if (!PeerAlive(s) && s.peer_silent_since_ms < 0 && s.peer) {
    s.peer_silent_since_ms = s.now_ms;  // e.g. restored from a long pause
  }
  Reconcile(out);
  if (!(MakeAdvert(s) == before)) Emit(out, ActionType::kSendHeartbeat);
  return out;
}

std::string_view ActionName(ActionType t) {
  switch (t) {
    case ActionType::kAttachStore: return "attach-store";
    case ActionType::kAddAlias: return "add-alias";
    case ActionType::kAssignVip: return "assign-vip";
    case ActionType::kStartServices: return "start-services";
    case ActionType::kFetchConfig: return "fetch-config";
    case ActionType::kStopServices: return "stop-services";
    case ActionType::kUnassignVip: return "unassign-vip";
    case ActionType::kRemoveAlias: return "remove-alias";
    case ActionType::kDetachStore: return "detach-store";
    case ActionType::kPersist: return "persist";
    case ActionType::kSendHeartbeat: return "send-heartbeat";
    case ActionType::kRunConnectivityTest: return "run-connectivity-test";
    case ActionType::kNotify: return "notify";
  }
  return "?";
}

}  // namespace tandem::ha
