// The FileSystem seam (ENGINEERING.md #2, #3): everything the replicated
// store and its metadata do to a disk goes through it. RealFileSystem is the
// POSIX one (real fsync); FaultFileSystem (os/fault_fs.h) remembers what was
// synced and, on a simulated power loss, drops or tears the rest, and can
// inject I/O errors.
//
// Paths are absolute (or relative to the process's working directory); the
// caller validates them. Errors are values naming the path and the call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "util/status.h"

namespace tandem::os {

// An open regular file. Not thread-safe; one owner.
class File {
 public:
  virtual ~File() = default;
  // Writes all of `data` at `offset` (extending the file, zero-filling a gap).
  virtual Status WriteAt(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Reads up to out.size() bytes at `offset`; returns how many (short only
  // at the end of the file, 0 at or past it).
  virtual Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) = 0;
  virtual Result<uint64_t> Size() = 0;
  virtual Status Truncate(uint64_t size) = 0;
  // Makes the file's data and size durable (fdatasync). Its directory entry
  // is durable only after FileSystem::SyncDir of its directory.
  virtual Status Sync() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Opens for reading and writing; `create`: creates it (mode 0644) if missing.
  // A missing file without `create` is an error whose message contains
  // "No such file".
  virtual Result<std::unique_ptr<File>> Open(const std::string& path, bool create) = 0;
  // rename(2): replaces `to` if it exists. Durable after SyncDir of both dirs.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Removes a file; a missing file is not an error.
  virtual Status Remove(const std::string& path) = 0;
  // mkdir -p (mode 0755); existing directories are fine.
  virtual Status MakeDirs(const std::string& path) = 0;
  // fsync(2) of a directory: makes creations, renames and removals in it durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // The size of a regular file; nullopt if nothing exists at `path`.
  // Something other than a regular file there is an error.
  virtual Result<std::optional<uint64_t>> FileSize(const std::string& path) = 0;
  // Every regular file under `dir`, recursively, as paths relative to `dir`
  // ("a/b.seg"), sorted. A missing `dir` gives an empty list. Symbolic
  // links and other non-regular entries are skipped.
  virtual Result<std::vector<std::string>> ListFiles(const std::string& dir) = 0;
  // Removes empty directories under `dir` (not `dir` itself); best effort.
  virtual void PruneEmptyDirs(const std::string& dir) = 0;
};

// The real one: POSIX calls, real fsync.
FileSystem& RealFileSystem();

// Helpers on any FileSystem.
// Writes `data` to `path` via "<path>.tmp": write, Sync, Rename, SyncDir.
Status WriteWholeFileAtomic(FileSystem& fs, const std::string& path, std::span<const uint8_t> data);
// Reads a whole file of at most `max_bytes`; nullopt if it does not exist.
Result<std::optional<std::vector<uint8_t>>> ReadWholeFile(FileSystem& fs, const std::string& path,
                                                          uint64_t max_bytes);

}  // namespace tandem::os
