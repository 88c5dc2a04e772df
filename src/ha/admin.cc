// Admin commands (R-OP-2, R-OP-3, R-OP-6): each either refuses with the
// reason, changing nothing, or records the request; Reconcile does the rest.
#include <string>

#include "ha/state_machine.h"

namespace tandem::ha {

void ActivateForAdmin(Output& out, const std::string& reason);
void ReleaseForAdmin(Output& out, HostStatus target, bool handover, const std::string& reason);
void SetStatusForAdmin(Output& out, HostStatus to, const std::string& reason);
uint32_t NewRequestIdForAdmin(State& s);
std::string ReplicaWhyForAdmin(const State& s);

namespace {

std::string Name(HostStatus s) { return std::string(StatusName(s)); }

void Refuse(Output& out, const std::string& why) {
  out.admin_accepted = false;
  out.admin_message = why;
}

void Accept(Output& out, const std::string& what) {
  out.admin_accepted = true;
  out.admin_message = what;
}

// The peer can take the active role right now: heard, Standby, online.
// (With replication, a peer whose replica is synchronizing is SYNCHRONIZING.)
bool PeerReadyStandby(const State& s, std::string* why) {
  if (!PeerAlive(s)) {
    *why = "the peer is not heard (heartbeats silent)";
    return false;
  }
  if (s.peer->status == HostStatus::kSynchronizing) {
    *why = "the peer is SYNCHRONIZING: its replica of /store is not in sync yet and cannot be "
           "promoted (wait until it is STANDBY)";
    return false;
  }
  if (s.peer->status != HostStatus::kStandby || s.peer->admin != AdminMode::kOnline) {
    *why = "the peer is " + Name(s.peer->status) + "/" + std::string(AdminName(s.peer->admin)) +
           ", not STANDBY/ONLINE";
    return false;
  }
  return true;
}

void SetOffline(Output& out) {
  State& s = out.state;
  HostStatus st = s.status;
  if (st == HostStatus::kOffline || st == HostStatus::kSettingOffline) {
    return Refuse(out, "this host is already offline");
  }
  if (st == HostStatus::kFailed) return Refuse(out, "this host is FAILED: restore it first");
  if (s.sequence != 0) return Refuse(out, "a transition is in progress; try again");
  std::string why;
  if (st == HostStatus::kActive && !PeerReadyStandby(s, &why)) {
    return Refuse(out, "cannot set the active host offline (a manual failover): " + why);
  }
  s.disk.admin_offline = true;
  out.actions.push_back(Action{ActionType::kPersist, 0, false, "admin offline"});
  bool handover = st == HostStatus::kActive;
  ReleaseForAdmin(out, HostStatus::kOffline, handover,
                  handover ? "set offline by the administrator (manual failover)"
                           : "set offline by the administrator");
  Accept(out, handover ? "setting offline; the peer takes over" : "setting offline");
}

void SetOnline(Output& out) {
  State& s = out.state;
  if (s.status != HostStatus::kOffline) {
    return Refuse(out, "this host is not offline (it is " + Name(s.status) + ")");
  }
  s.disk.admin_offline = false;
  s.handover = false;
  out.actions.push_back(Action{ActionType::kPersist, 0, false, "admin online"});
  SetStatusForAdmin(out, HostStatus::kSettingOnline, "set online by the administrator");
  Accept(out, "setting online");
}

std::string ForcedWarning(const State& s) {
  return "forced: promoting a replica that is not UpToDate (" +
         (s.replica.detail.empty() ? std::string("no detail") : s.replica.detail) +
         "); data written since it was last in sync may be lost";
}

// With `force`, a replica that is not UpToDate (or is synchronizing) is
// promoted anyway: through the peer's release when it is active, by the
// election when the peer holds no role (e.g. FAILED), or as automatic
// failover would (own connectivity test, witnesses) when it is silent. The
// force ends when this host is promoted, stops being a standby, or hears an
// active peer without a takeover request of its own in flight.
void Takeover(Output& out, bool force) {
  State& s = out.state;
  if (s.status != HostStatus::kStandby && s.status != HostStatus::kSynchronizing) {
    return Refuse(out, "takeover runs on the standby host; this host is " + Name(s.status));
  }
  const bool ready = ReplicaReady(s);
  const std::string not_ready = ReplicaWhyForAdmin(s);
  if (!PeerAlive(s)) {
    if (ready) {
      return Refuse(out, "the peer is silent: automatic failover handles this (see `ha status`)");
    }
    if (!force) {
      return Refuse(out, "the peer is silent, but automatic failover does not promote this host: "
                         "its " + not_ready + "; `ha takeover --force` does (data written "
                         "since it was last in sync may be lost)");
    }
    s.promotion_forced = true;
    s.promotion_refused.clear();
    s.reason = "forced takeover requested by the administrator; peer silent";
    return Accept(out, ForcedWarning(s) + "; taking over as automatic failover would");
  }
  if (s.peer->status != HostStatus::kActive) {
    if (ready || s.peer->status == HostStatus::kSettingOffline) {
      return Refuse(out, "the peer is " + Name(s.peer->status) + ", not ACTIVE");
    }
    if (!force) {
      return Refuse(out, "the peer is " + Name(s.peer->status) + ", not ACTIVE, and this host " +
                             "cannot take over: its " + not_ready + "; `ha takeover --force` " +
                             "promotes it anyway (data written since it was last in sync may " +
                             "be lost)");
    }
    s.promotion_forced = true;
    s.promotion_refused.clear();
    s.reason = "forced takeover requested by the administrator; peer is " + Name(s.peer->status);
    return Accept(out, ForcedWarning(s) + "; taking over (no host is active)");
  }
  if (s.takeover_request != 0) return Refuse(out, "a takeover is already in progress");
  if (!ready && !force) {
    return Refuse(out, "this host cannot take over: its " + not_ready +
                           "; `ha takeover --force` promotes it anyway (data written since it "
                           "was last in sync may be lost)");
  }
  s.takeover_request = NewRequestIdForAdmin(s);
  s.takeover_since_ms = s.now_ms;
  s.promotion_forced = !ready;
  s.reason = ready ? "takeover requested by the administrator"
                   : "forced takeover requested by the administrator";
  Accept(out, ready ? "takeover requested; the peer is releasing"
                    : ForcedWarning(s) + "; takeover requested; the peer is releasing");
}

void Giveback(Output& out) {
  State& s = out.state;
  if (s.status != HostStatus::kActive) {
    return Refuse(out, "giveback runs on the active host; this host is " + Name(s.status));
  }
  if (s.sequence != 0) return Refuse(out, "a transition is in progress; try again");
  std::string why;
  if (!PeerReadyStandby(s, &why)) return Refuse(out, "cannot give back: " + why);
  ReleaseForAdmin(out, HostStatus::kStandby, true, "giveback requested by the administrator");
  Accept(out, "releasing; the peer takes over");
}

void Restore(Output& out) {
  State& s = out.state;
  if (s.status != HostStatus::kFailed) {
    return Refuse(out, "restore applies to a FAILED host; this host is " + Name(s.status));
  }
  if (s.sequence != 0) return Refuse(out, "the failed host is still releasing; try again");
  s.disk.failed = false;
  s.disk.failed_reason.clear();
  out.actions.push_back(Action{ActionType::kPersist, 0, false, "restored"});
  s.started_ms = s.now_ms;
  SetStatusForAdmin(out, HostStatus::kStarting, "restored by the administrator");
  Accept(out, "restored; the host rejoins as standby (or active if the peer is gone)");
}

}  // namespace

void OnAdmin(Output& out, const AdminCommand& c) {
  switch (c.op) {
    case AdminOp::kSetOffline: return SetOffline(out);
    case AdminOp::kSetOnline: return SetOnline(out);
    case AdminOp::kTakeover: return Takeover(out, c.force);  // the only op that honours force
    case AdminOp::kGiveback: return Giveback(out);
    case AdminOp::kRestore: return Restore(out);
  }
}

}  // namespace tandem::ha
