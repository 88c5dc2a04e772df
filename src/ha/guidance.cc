#include "ha/guidance.h"

namespace tandem::ha {

namespace {

bool Lost(HostStatus s) { return s == HostStatus::kFailed || s == HostStatus::kUnknown; }

std::string RestoreHint(const std::string& who) {
  return "Ensure that the " + who + " host is on and that you can log on to it as root (ssh). " +
         "If you can, restore it: run `ha restore` on the " + who + " host (restart it first " +
         "if its status stays Failed or Unknown).";
}

std::string SyncingHint(const std::string& who) {
  return "Wait: the " + who + " host is synchronizing its replica of /store with the active " +
         "host; the cluster is protected once it is Standby (giveback and offline on the active " +
         "host are refused until then).";
}

std::string NotPromotedHint(const std::string& who) {
  return "No host is active, and the " + who + " host's replica of /store is not UpToDate, so " +
         "it is not promoted: bring the other host back (repair and `ha restore` it), or promote " +
         "the incomplete replica with `ha takeover --force` on the " + who + " host (data " +
         "written since it was last in sync may be lost).";
}

}  // namespace

std::string PossibleAction(HostStatus p, HostStatus s) {
  using S = HostStatus;
  if (p == S::kUnknown && s == S::kUnknown) {
    return "Neither host can be reached: ensure that the network and hardware are operational.";
  }
  if (p == S::kActive && Lost(s)) return RestoreHint("secondary");
  if (Lost(p) && s == S::kActive) return RestoreHint("primary");
  if (p == S::kFailed && s == S::kFailed) {
    return "Both hosts failed: repair them, then `ha restore` the one that was most recently "
           "active first (see `ha cstate`).";
  }
  if (p == S::kOffline && s == S::kActive) {
    return "Set the primary online: `ha online` on the primary (restore it if it then fails).";
  }
  if (p == S::kActive && s == S::kOffline) {
    return "Set the secondary online: `ha online` on the secondary; the primary is unprotected "
           "until then.";
  }
  if ((p == S::kActive && s == S::kStandby) || (p == S::kStandby && s == S::kActive)) {
    return "None: the cluster is protected.";
  }
  if (p == S::kActive && s == S::kSynchronizing) return SyncingHint("secondary");
  if (p == S::kSynchronizing && s == S::kActive) return SyncingHint("primary");
  if (p == S::kStarting || s == S::kStarting || p == S::kSettingOnline ||
      s == S::kSettingOnline || p == S::kSettingOffline || s == S::kSettingOffline) {
    return "A transition is in progress: wait a few heartbeat intervals.";
  }
  if (p == S::kSynchronizing && s != S::kSynchronizing) return NotPromotedHint("primary");
  if (s == S::kSynchronizing && p != S::kSynchronizing) return NotPromotedHint("secondary");
  if (p == S::kOffline && s == S::kOffline) {
    return "Both hosts are offline and nothing runs: `ha online` on the host that should serve.";
  }
  return "Check `ha status` on both hosts and the daemon logs.";
}

}  // namespace tandem::ha
