// An in-memory FileSystem for crash and fault tests (ENGINEERING.md #3, in
// the spirit of leveldb's fault_injection_test and FoundationDB's
// AsyncFileNonDurable): it remembers what was made durable and, on a
// simulated power loss, drops or tears everything after it; it can also
// inject I/O errors and a full disk.
//
// The durability model is POSIX's, strictly:
//  - a file's content (data and size) is durable as of its last File::Sync;
//  - a directory's entries (names -> files and subdirectories) are durable
//    as of its last SyncDir. Creating a file, Rename, Remove, MakeDirs (a new
//    directory is an entry of its parent) and PruneEmptyDirs change only the
//    current entries until the directory holding the entry is synced.
// The two are independent: a synced file whose (new) entry was never synced
// disappears at a power loss, and a durable entry can point at a file whose
// unsynced writes are lost. A directory that was created but whose parent was
// never synced disappears with everything in it.
//
// Paths: as for FileSystem, but there is no working directory: a relative
// path is taken from "/", and "." and ".." are resolved lexically (there are
// no symbolic links). Error messages follow RealFileSystem's
// ("<path>: pwrite: No space left on device"). Files are limited to
// kFileBytesMax bytes (beyond: "File too large"), since they live in memory.
//
// Thread-safe: every method (also of the File objects it returns) takes one
// internal mutex. File objects share the internal state, so they may outlive
// the FaultFileSystem (they keep working on it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "os/fs.h"

namespace tandem::os {

class FaultFileSystem final : public FileSystem {
 public:
  static constexpr uint64_t kFileBytesMax = uint64_t{1} << 30;

  enum class Mode {
    // Every file reverts to its content at its last Sync, every directory to
    // its entries at its last SyncDir.
    kDropUnsynced,
    // Like kDropUnsynced, but part of what came after survives, chosen by
    // the seed: for each file, the first k of its unsynced writes and
    // truncations (in order), and possibly a prefix of write k+1 (a torn
    // write); for each directory, each entry changed since its last SyncDir
    // is independently either the durable or the current one.
    kTearUnsynced,
  };

  FaultFileSystem();
  ~FaultFileSystem() override;
  FaultFileSystem(const FaultFileSystem&) = delete;
  FaultFileSystem& operator=(const FaultFileSystem&) = delete;

  Result<std::unique_ptr<File>> Open(const std::string& path, bool create) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  Status MakeDirs(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  Result<std::optional<uint64_t>> FileSize(const std::string& path) override;
  Result<std::vector<std::string>> ListFiles(const std::string& dir) override;
  void PruneEmptyDirs(const std::string& dir) override;

  // Simulates a power loss and reboot as described by `mode`; the same
  // history, seed and mode always give the same result. Afterwards
  // everything that survived is durable, and every File opened before
  // returns "<path>: stale file handle after power loss" from every method.
  // A directory reachable twice (possible when only one side of a
  // cross-directory rename was synced) keeps only the place met first in a
  // depth-first walk in name order; a file reachable twice keeps both names
  // (like a hard link).
  void PowerLoss(uint64_t seed, Mode mode);

  // After `ops_until_failure` more data operations (WriteAt, ReadAt,
  // Truncate, Sync) on files opened under a path starting with
  // `path_prefix` (the string given to Open), every such operation fails
  // with "<path>: <call>: <error>" and changes nothing, until ClearFaults().
  // Several rules may be active; each counts on its own.
  void FailAfter(std::string path_prefix, uint64_t ops_until_failure, std::string error);
  // While set, a WriteAt that would grow its file fails with
  // "<path>: pwrite: No space left on device" (writes inside the file and
  // Truncate still succeed).
  void SetFull(bool full);
  // Removes every FailAfter rule and clears SetFull.
  void ClearFaults();

  // Successful File::Sync and SyncDir calls, all together and SyncDir alone.
  uint64_t syncs() const;
  uint64_t dir_syncs() const;
  // Bytes accepted by successful WriteAt calls.
  uint64_t bytes_written() const;

  // The current content of the regular file at `path` (nullopt: none there).
  std::optional<std::vector<uint8_t>> Contents(const std::string& path) const;
  // Whether a file or directory is at `path` now.
  bool Exists(const std::string& path) const;

  struct State;  // internal; public only so the .cc's helpers can name it

 private:
  std::shared_ptr<State> state_;
};

}  // namespace tandem::os
