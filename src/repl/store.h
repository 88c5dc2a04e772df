// The local copy of /store: applies file operations to the store directory
// through the FileSystem seam, keeps a bounded cache of open files and
// remembers what must be synced at the next commit (files written, and
// directories whose entries changed). No replication logic here.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
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
  size_t dirty_files() const { return dirty_files_.size(); }  // written since the last Commit

  // Starts making `path` durable now, in the background on the IoPool
  // (an fdatasync through a handle of its own), for a file that will not be
  // written again soon (a sync target received its last chunk, or the
  // sync moved on to another file): the next Commit skips it if that sync
  // succeeded and nothing changed the file since it was started, and waits
  // for it if it is still running instead of syncing the file a second
  // time (one not started yet is taken back and synced by the Commit), so
  // the flush of a sync overlaps the transfer instead of following it.
  // True also when an early sync of the file's current content was already
  // started (nothing new is posted). False (nothing started) without a
  // pool or when its background queue is full; Commit then syncs it as
  // usual.
  bool SyncEarly(const std::string& path);
  // Files the Commits so far did not sync themselves: `used`, their early
  // sync had finished before the Commit; `waited`, it was still running
  // and the Commit waited for it.
  uint64_t early_syncs_used() const { return early_syncs_used_; }
  uint64_t early_syncs_waited() const { return early_syncs_waited_; }
  // Early syncs finished and not yet looked at by a Commit (for tests).
  size_t EarlySyncsFinished() const {
    std::lock_guard<std::mutex> g(early_->mu);
    return early_->finished;
  }

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
  // Early syncs (SyncEarly): each started one carries the file's version
  // at its start; any later change of the file gives it a new version
  // (Changed), so a sync counts only if the version still matches.
  // Versions come from one counter, never reused. A job's state is guarded
  // by EarlySyncs::mu; the worker moves it from kQueued to kRunning to
  // kSynced or kFailed, unless a Commit claimed it while still queued
  // (then the job does nothing and the Commit syncs the file).
  struct EarlyJob {
    enum class State : uint8_t { kQueued, kRunning, kSynced, kFailed, kClaimed };
    uint64_t version = 0;
    State state = State::kQueued;
  };
  struct EarlySyncs {
    mutable std::mutex mu;
    std::condition_variable finished_cv;  // a job left kRunning
    size_t finished = 0;                  // jobs finished since the last Commit
  };
  void Changed(const std::string& path);
  std::shared_ptr<EarlySyncs> early_ = std::make_shared<EarlySyncs>();
  std::unordered_map<std::string, uint64_t> versions_;  // files with an early sync started
  std::unordered_map<std::string, std::shared_ptr<EarlyJob>> early_jobs_;  // the newest per file
  uint64_t next_version_ = 0;
  uint64_t early_syncs_used_ = 0;
  uint64_t early_syncs_waited_ = 0;
  // Handles closed (evicted, renamed, removed) with unsynced data: synced
  // at close instead, so nothing escapes the next Commit.
};

}  // namespace tandem::repl
