// The host's local state file (<state_dir>/state.json, never in /store):
// what this host was, so that a restarted daemon knows (R-OP-7, R-FO-4).
// Written atomically with fsync on every change of the persistent state.
#pragma once

#include <cstdint>
#include <string>

#include "ha/state_machine.h"
#include "util/status.h"

namespace tandem::daemon {

struct StateFile {
  uint64_t incarnation = 0;  // +1 at every daemon start (heartbeat replay protection)
  ha::Persistent disk;
  std::string last_status;        // "ACTIVE", ... at the last write
  int64_t last_status_wall_ms = 0;
  int64_t last_active_wall_ms = 0;  // when this host last became Active (display only)
  std::string peer_status;          // last status heard from the peer
  uint64_t peer_epoch = 0;
  uint64_t peer_incarnation = 0;    // the peer's daemon start counter when last heard
  int64_t peer_heard_wall_ms = 0;
};

// Missing file: a fresh StateFile (not an error). Corrupt file: an error
// naming the file (the daemon refuses to start rather than guess).
Result<StateFile> LoadStateFile(const std::string& path);
Status SaveStateFile(const std::string& path, const StateFile& s);

}  // namespace tandem::daemon
