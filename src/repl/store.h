// The local copy of /store: applies file operations to the store directory
// through the FileSystem seam, keeps a bounded cache of open files and
// remembers what must be synced at the next commit (files written, and
// directories whose entries changed). No replication logic here.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "os/fs.h"
#include "repl/frame.h"
#include "repl/io_pool.h"
#include "util/status.h"

namespace tandem::repl {

class LocalStore {
 public:
  LocalStore(os::FileSystem& fs, std::string root, size_t open_files_max = 128);

  const std::string& root() const { return root_; }
  std::string Full(const std::string& path) const { return root_ + "/" + path; }

  // Applies one operation (paths already validated). kAppend writes at
  // `w->offset`, which the primary sets to the file's size before the
  // append, so both replicas put the data at the same place. kSync is a
  // no-op here (see Commit).
  Status Apply(Write* w);
  // A resync chunk: the file takes `file_size` and, if data is non-empty,
  // `data` at chunk `chunk_index`. Creates the file if missing.
  Status ApplyChunk(const std::string& path, uint64_t chunk_index, uint64_t file_size,
                    std::span<const uint8_t> data);

  // Makes every change applied since the last Commit durable: Sync of each
  // written file, SyncDir of each changed directory. The group commit. With
  // an IoPool the files are synced side by side on its threads.
  Status Commit();
  // Commit's file syncs run on `pool` (not owned; nullptr: one after the
  // other on the caller's thread). REQUIRES: the FileSystem's files may be
  // synced from several threads at once (the real one; not the fault one).
  void SetIoPool(IoPool* pool) { pool_ = pool; }
  bool HasUncommitted() const { return !dirty_files_.empty() || !dirty_dirs_.empty(); }

  // Reads chunk `index` of `path` as it is now; nullopt: the file does not
  // exist. *file_size receives its size.
  Result<std::optional<std::vector<uint8_t>>> ReadChunk(const std::string& path, uint64_t index,
                                                         uint64_t* file_size);
  Result<std::optional<uint64_t>> Size(const std::string& path);
  Result<std::vector<std::string>> List();
  // Bytes of all files (for status and full-sync progress).
  Result<uint64_t> TotalBytes();

  void CloseAll();  // drops cached handles (e.g. after a power loss in tests)

 private:
  Result<os::File*> Get(const std::string& path, bool create);
  void Drop(const std::string& path);
  Status EnsureParent(const std::string& path);
  static std::string Parent(const std::string& full);
  static Status RunSerially(const std::vector<std::function<Status()>>& jobs);

  os::FileSystem& fs_;
  std::string root_;
  size_t open_max_;
  IoPool* pool_ = nullptr;
  struct Open {
    std::unique_ptr<os::File> file;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Open> open_;
  std::list<std::string> lru_;  // most recent first
  std::set<std::string> dirty_files_;  // store-relative
  std::set<std::string> dirty_dirs_;   // absolute
  // Handles closed (evicted, renamed, removed) with unsynced data: synced
  // at close instead, so nothing escapes the next Commit.
};

}  // namespace tandem::repl
