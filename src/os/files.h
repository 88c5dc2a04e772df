// Durable small files and single-instance locks. Real fsync: a state file
// written with WriteFileAtomic survives power loss as either the old or the
// new contents, never a mix.
#pragma once

#include <string>

#include "util/status.h"

namespace tandem::os {

// Writes `data` to `path` via <path>.tmp: write, fsync, rename, fsync(dir).
// Mode of the new file: `mode`. Error names the path and the failing call.
Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0600);

// Reads a whole file of at most `max_bytes`. Error if missing, unreadable
// or larger (named in the message).
Result<std::string> ReadFile(const std::string& path, size_t max_bytes);

// Creates `path` and its parents with `mode` if missing (like mkdir -p).
Status MakeDirs(const std::string& path, int mode = 0755);

// An exclusive flock(2) on `path` (created if needed) holding our pid; held
// until destruction. Acquire fails with "<path>: already locked by pid N"
// when another process holds it (e.g. a second tandemd for the same host).
class PidLock {
 public:
  PidLock() = default;
  ~PidLock();
  PidLock(const PidLock&) = delete;
  PidLock& operator=(const PidLock&) = delete;
  Status Acquire(const std::string& path);

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace tandem::os
