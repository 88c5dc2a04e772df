// Admin commands (R-OP-2, R-OP-3, R-OP-6): each either refuses with the
// reason, changing nothing, or records the request; Reconcile does the rest.
#include <string>

#include "ha/state_machine.h"

namespace tandem::ha {

void ActivateForAdmin(Output& out, const std::string& reason);
void ReleaseForAdmin(Output& out, HostStatus target, bool handover, const std::string& reason);
void SetStatusForAdmin(Output& out, HostStatus to, const std::string& reason);
uint32_t NewRequestIdForAdmin(State& s);

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
// (With replication, Standby also means synchronized.)
bool PeerReadyStandby(const State& s, std::string* why) {
  if (!PeerAlive(s)) {
    *why = "the peer is not heard (heartbeats silent)";
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

void Takeover(Output& out) {
  State& s = out.state;
  if (s.status != HostStatus::kStandby) {
    return Refuse(out, "takeover runs on the standby host; this host is " + Name(s.status));
  }
  if (!PeerAlive(s)) {
    return Refuse(out, "the peer is silent: automatic failover handles this (see `ha status`)");
  }
  if (s.peer->status != HostStatus::kActive) {
    return Refuse(out, "the peer is " + Name(s.peer->status) + ", not ACTIVE");
  }
  if (s.takeover_request != 0) return Refuse(out, "a takeover is already in progress");
  s.takeover_request = NewRequestIdForAdmin(s);
  s.takeover_since_ms = s.now_ms;
  s.reason = "takeover requested by the administrator";
  Accept(out, "takeover requested; the peer is releasing");
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
    case AdminOp::kTakeover: return Takeover(out);
    case AdminOp::kGiveback: return Giveback(out);
    case AdminOp::kRestore: return Restore(out);
  }
}

}  // namespace tandem::ha
