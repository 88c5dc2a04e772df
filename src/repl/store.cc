#include "repl/store.h"

namespace tandem::repl {

LocalStore::LocalStore(os::FileSystem& fs, std::string root, size_t open_files_max)
    : fs_(fs), root_(std::move(root)), open_max_(std::max<size_t>(open_files_max, 2)) {}

std::string LocalStore::Parent(const std::string& full) {
  size_t slash = full.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : full.substr(0, slash));
}

Status LocalStore::EnsureParent(const std::string& path) {
  std::string full = Full(path);
  std::string parent = Parent(full);
  if (parent != root_) TANDEM_RETURN_IF_ERROR(fs_.MakeDirs(parent));
  // The new entry (and any new directory) is durable once its parents are
  // synced; syncing the chain up to the root is cheap and rare.
  for (std::string d = parent; d.size() >= root_.size(); d = Parent(d)) {
    dirty_dirs_.insert(d);
    if (d == root_) break;
  }
  return Status::Ok();
}

Result<os::File*> LocalStore::Get(const std::string& path, bool create) {
  auto it = open_.find(path);
  if (it != open_.end()) {
    lru_.erase(it->second.lru);
    lru_.push_front(path);
    it->second.lru = lru_.begin();
    return it->second.file.get();
  }
  if (create) {
    auto size = fs_.FileSize(Full(path));
    if (!size.ok()) return size.status();
    if (!size->has_value()) TANDEM_RETURN_IF_ERROR(EnsureParent(path));
  }
  auto f = fs_.Open(Full(path), create);
  if (!f.ok()) return f.status();
  while (open_.size() >= open_max_) {
    std::string victim = lru_.back();
    if (dirty_files_.count(victim)) {
      TANDEM_RETURN_IF_ERROR(open_[victim].file->Sync());
      dirty_files_.erase(victim);
    }
    Drop(victim);
  }
  lru_.push_front(path);
  os::File* raw = f->get();
  open_[path] = Open{std::move(*f), lru_.begin()};
  return raw;
}

void LocalStore::Drop(const std::string& path) {
  auto it = open_.find(path);
  if (it == open_.end()) return;
  lru_.erase(it->second.lru);
  open_.erase(it);
}

Status LocalStore::Apply(Write* w) {
  switch (w->op) {
    case WriteOp::kCreate: {
      Changed(w->path);
      auto f = Get(w->path, true);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR((*f)->Truncate(0));
      dirty_files_.insert(w->path);
      return Status::Ok();
    }
    case WriteOp::kAppend:
    case WriteOp::kWriteAt: {
      Changed(w->path);
      auto f = Get(w->path, true);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR((*f)->WriteAt(w->offset, w->data));
      dirty_files_.insert(w->path);
      return Status::Ok();
    }
    case WriteOp::kTruncate: {
      Changed(w->path);
      auto f = Get(w->path, true);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR((*f)->Truncate(w->length));
      dirty_files_.insert(w->path);
      return Status::Ok();
    }
    case WriteOp::kRename: {
      Changed(w->path);
      Changed(w->path2);
      auto from = fs_.FileSize(Full(w->path));
      if (!from.ok()) return from.status();
      if (!from->has_value()) return Status::Error(w->path + ": No such file");
      if (dirty_files_.count(w->path)) {
        auto f = Get(w->path, false);
        if (!f.ok()) return f.status();
        TANDEM_RETURN_IF_ERROR((*f)->Sync());
        dirty_files_.erase(w->path);
      }
      Drop(w->path);
      Drop(w->path2);
      dirty_files_.erase(w->path2);
      TANDEM_RETURN_IF_ERROR(EnsureParent(w->path2));
      TANDEM_RETURN_IF_ERROR(fs_.Rename(Full(w->path), Full(w->path2)));
      dirty_dirs_.insert(Parent(Full(w->path)));
      return Status::Ok();
    }
    case WriteOp::kDelete:
      Changed(w->path);
      Drop(w->path);
      dirty_files_.erase(w->path);
      TANDEM_RETURN_IF_ERROR(fs_.Remove(Full(w->path)));
      dirty_dirs_.insert(Parent(Full(w->path)));
      return Status::Ok();
    case WriteOp::kSync: return Status::Ok();
  }
  return Status::Error("unknown operation");
}

Status LocalStore::ApplyChunk(const std::string& path, uint64_t chunk_index, uint64_t file_size,
                              std::span<const uint8_t> data) {
  Changed(path);
  auto f = Get(path, true);
  if (!f.ok()) return f.status();
  auto size = (*f)->Size();
  if (!size.ok()) return size.status();
  if (*size != file_size) TANDEM_RETURN_IF_ERROR((*f)->Truncate(file_size));
  if (!data.empty()) TANDEM_RETURN_IF_ERROR((*f)->WriteAt(chunk_index * kChunkBytes, data));
  dirty_files_.insert(path);
  return Status::Ok();
}

void LocalStore::Changed(const std::string& path) {
  auto it = versions_.find(path);
  if (it != versions_.end()) it->second = ++next_version_;
}

bool LocalStore::SyncEarly(const std::string& path) {
  if (pool_ == nullptr || !dirty_files_.count(path)) return false;
  auto v = versions_.find(path);
  auto j = early_jobs_.find(path);
  if (v != versions_.end() && j != early_jobs_.end() && j->second->version == v->second) {
    // One was started after the file's last change: it covers everything
    // written so far, unless it failed or a failed Commit took it back.
    std::lock_guard<std::mutex> g(early_->mu);
    const EarlyJob::State s = j->second->state;
    if (s != EarlyJob::State::kFailed && s != EarlyJob::State::kClaimed) return true;
  }
  auto job = std::make_shared<EarlyJob>();
  job->version = ++next_version_;
  // Everything written to the file so far was written before this job
  // starts (on this thread), so its fdatasync covers it.
  bool posted = pool_->Post([fs = &fs_, full = Full(path), job, early = early_] {
    {
      std::lock_guard<std::mutex> g(early->mu);
      if (job->state == EarlyJob::State::kClaimed) return;  // a Commit syncs the file
      job->state = EarlyJob::State::kRunning;
    }
    auto f = fs->Open(full, /*create=*/false);
    const bool ok = f.ok() && (*f)->Sync().ok();  // if not, the Commit syncs it
    {
      std::lock_guard<std::mutex> g(early->mu);
      job->state = ok ? EarlyJob::State::kSynced : EarlyJob::State::kFailed;
      early->finished++;
    }
    early->finished_cv.notify_all();
  });
  if (posted) {
    versions_[path] = job->version;
    early_jobs_[path] = std::move(job);
  }
  return posted;
}

Status LocalStore::Commit() {
  // Every dirty file is open: a handle leaving the cache (evicted, renamed,
  // removed) is synced or forgotten at that moment (see Get, Apply).
  std::vector<std::function<Status()>> syncs;
  {
    std::lock_guard<std::mutex> g(early_->mu);
    early_->finished = 0;
    for (auto it = dirty_files_.begin(); it != dirty_files_.end();) {
      const std::string& p = *it;
      auto open = open_.find(p);
      if (open == open_.end()) {
        ++it;
        continue;
      }
      os::File* f = open->second.file.get();
      // An early sync counts only if nothing changed the file after it was
      // started (same version).
      std::shared_ptr<EarlyJob> job;
      auto j = early_jobs_.find(p);
      auto v = versions_.find(p);
      if (j != early_jobs_.end() && v != versions_.end() && j->second->version == v->second) {
        job = j->second;
      }
      using State = EarlyJob::State;
      if (job && job->state == State::kSynced) {
        // Durable already.
        early_syncs_used_++;
        it = dirty_files_.erase(it);
        continue;
      }
      if (job && job->state == State::kRunning) {
        // Its fdatasync is under way: waiting for it costs less than a
        // second one (the worker running it needs nothing from us). If it
        // fails, the file is synced here.
        early_syncs_waited_++;
        syncs.push_back([f, job, early = early_] {
          {
            std::unique_lock<std::mutex> lock(early->mu);
            early->finished_cv.wait(lock, [&] { return job->state != State::kRunning; });
            if (job->state == State::kSynced) return Status::Ok();
          }
          return f->Sync();
        });
      } else {
        // None, not started yet (taken back: a queued job might wait behind
        // this commit's own work on the pool), failed, or outdated.
        if (job && job->state == State::kQueued) job->state = State::kClaimed;
        syncs.push_back([f] { return f->Sync(); });
      }
      ++it;
    }
  }
  Status st = pool_ != nullptr ? pool_->RunAll(std::move(syncs)) : RunSerially(syncs);
  if (!st.ok()) return st;
  dirty_files_.clear();
  // Early syncs still running or queued are not needed any more; when they
  // finish, nothing looks at them.
  versions_.clear();
  early_jobs_.clear();
  for (const std::string& d : dirty_dirs_) {
    st = fs_.SyncDir(d);
    if (!st.ok() && st.message().find("No such file") == std::string::npos) return st;
  }
  dirty_dirs_.clear();
  return Status::Ok();
}

Status LocalStore::RunSerially(const std::vector<std::function<Status()>>& jobs) {
  for (const auto& job : jobs) TANDEM_RETURN_IF_ERROR(job());
  return Status::Ok();
}

Result<std::optional<std::vector<uint8_t>>> LocalStore::ReadChunk(const std::string& path,
                                                                   uint64_t index,
                                                                   uint64_t* file_size) {
  auto exists = open_.count(path) ? Result<std::optional<uint64_t>>(std::optional<uint64_t>(0))
                                  : fs_.FileSize(Full(path));
  if (!exists.ok()) return exists.status();
  if (!exists->has_value()) return std::optional<std::vector<uint8_t>>();
  auto f = Get(path, false);
  if (!f.ok()) return f.status();
  auto size = (*f)->Size();
  if (!size.ok()) return size.status();
  *file_size = *size;
  std::vector<uint8_t> buf(ChunkLength(index, *size));
  if (!buf.empty()) {
    auto n = (*f)->ReadAt(index * kChunkBytes, buf);
    if (!n.ok()) return n.status();
    if (*n != buf.size()) return Status::Error(path + ": short read");
  }
  return std::optional<std::vector<uint8_t>>(std::move(buf));
}

Result<std::optional<uint64_t>> LocalStore::Size(const std::string& path) {
  auto it = open_.find(path);
  if (it != open_.end()) {
    auto s = it->second.file->Size();
    if (!s.ok()) return s.status();
    return std::optional<uint64_t>(*s);
  }
  return fs_.FileSize(Full(path));
}

Result<std::vector<std::string>> LocalStore::List() { return fs_.ListFiles(root_); }

Result<uint64_t> LocalStore::TotalBytes() {
  auto files = List();
  if (!files.ok()) return files.status();
  uint64_t total = 0;
  for (const std::string& p : *files) {
    auto s = Size(p);
    if (!s.ok()) return s.status();
    total += s->value_or(0);
  }
  return total;
}

void LocalStore::CloseAll() {
  versions_.clear();
  early_jobs_.clear();
  open_.clear();
  lru_.clear();
  dirty_files_.clear();
  dirty_dirs_.clear();
}

}  // namespace tandem::repl
