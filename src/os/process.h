// Child processes: spawning with a death signal and its own process group,
// and reaping through the event loop. The only place that forks.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "os/event_loop.h"
#include "util/status.h"

namespace tandem::os {

struct SpawnOptions {
  // Extra environment entries added to (and overriding) the daemon's own.
  std::map<std::string, std::string> env;
  // Child gets SIGKILL when the spawning thread dies (PR_SET_PDEATHSIG), so
  // a daemon killed with -9 takes its children with it.
  bool die_with_parent = true;
  // Child leads a new process group (pgid == pid), so the whole tree can be
  // signalled with kill(-pid, sig).
  bool new_process_group = true;
  std::string stdout_path;  // append child's stdout+stderr here; empty: inherit
  // Nice value the child runs at (setpriority before exec); 0: the
  // daemon's. Only ever raised (a lower priority needs no privilege).
  int nice = 0;
};

// Forks and execs argv (argv[0] searched on PATH when not absolute).
// Returns the child's pid, or an error if the fork or exec failed (exec
// failure is reported back through a CLOEXEC pipe, so a missing binary is an
// error here, not a silent exit 127).
Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& opts);

// Process start time (field 22 of /proc/<pid>/stat, clock ticks since boot);
// 0 if the process does not exist. Used to tell a stale pid from a reused one.
uint64_t ProcessStartTime(pid_t pid);

// Describes a wait status: "exited with status 3", "killed by signal 9 (SIGKILL)".
std::string DescribeWaitStatus(int wait_status);

// Reaps children through SIGCHLD delivered on the loop and calls the
// callback registered for each pid with its wait status. One per process.
class ChildReaper {
 public:
  explicit ChildReaper(EventLoop& loop);
  using ExitCallback = std::function<void(int wait_status)>;
  // REQUIRES: pid was spawned by this process and is not yet watched.
  void Watch(pid_t pid, ExitCallback cb);
  size_t watched() const { return callbacks_.size(); }

 private:
  void Reap();
  std::unordered_map<pid_t, ExitCallback> callbacks_;
};

}  // namespace tandem::os
