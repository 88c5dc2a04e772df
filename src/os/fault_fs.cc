#include "os/fault_fs.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <utility>

namespace tandem::os {

namespace {

struct Inode;
struct Dir;

// One name in a directory: a file or a subdirectory (exactly one is set).
// Files are shared (an open File keeps its inode after Remove); directories
// are owned by State::dirs and referenced by pointer, so a directory that
// moved or was removed stays valid for the durable entries still naming it.
struct Entry {
  std::shared_ptr<Inode> file;
  Dir* dir = nullptr;
  bool operator==(const Entry&) const = default;  // same object, not same content
};

// A write (truncate == false) or a truncation, as it was applied.
struct Op {
  bool truncate = false;
  uint64_t offset = 0;  // write: where; truncate: the new size
  std::vector<uint8_t> bytes;
};

struct Inode {
  std::vector<uint8_t> data;     // now
  std::vector<uint8_t> durable;  // at the last Sync
  std::vector<Op> unsynced;      // since the last Sync, in order: durable + these = data
};

struct Dir {
  std::map<std::string, Entry> entries;  // now
  std::map<std::string, Entry> durable;  // at the last SyncDir
};

struct FailRule {
  std::string prefix;
  uint64_t ops_left = 0;
  std::string error;
};

// splitmix64: tiny, and the same sequence everywhere for a seed (unlike
// the standard distributions).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }  // REQUIRES: n > 0

 private:
  uint64_t s_;
};

Status Errno(const std::string& path, const char* call, int err) {
  return Status::Error(path + ": " + call + ": " + std::strerror(err));
}

// "/a/./b//c/../d" -> {"a", "b", "d"}; relative paths start at the root.
std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(begin, end - begin);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    begin = end + 1;
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += "/" + parts[i];
  return out.empty() ? "/" : out;
}

void Apply(const Op& op, std::vector<uint8_t>* data) {
  if (op.truncate) {
    data->resize(static_cast<size_t>(op.offset));
    return;
  }
  const size_t end = static_cast<size_t>(op.offset) + op.bytes.size();
  if (end > data->size()) data->resize(end);
  std::copy(op.bytes.begin(), op.bytes.end(),
            data->begin() + static_cast<std::ptrdiff_t>(op.offset));
}

}  // namespace

struct FaultFileSystem::State {
  std::mutex mu;
  // Everything below is GUARDED_BY(mu).
  std::vector<std::unique_ptr<Dir>> dirs;  // every directory not yet collected; [0] is "/"
  Dir* root = nullptr;
  uint64_t epoch = 0;  // PowerLoss count: a File of an older epoch is stale
  std::vector<FailRule> rules;
  bool full = false;
  uint64_t syncs = 0;
  uint64_t dir_syncs = 0;
  uint64_t bytes_written = 0;

  State() {
    dirs.push_back(std::make_unique<Dir>());
    root = dirs[0].get();
  }

  Dir* NewDir() {
    dirs.push_back(std::make_unique<Dir>());
    return dirs.back().get();
  }

  // The directory named by the first `n` of `parts`, or the errno why not.
  std::pair<Dir*, int> FindDir(const std::vector<std::string>& parts, size_t n) {
    Dir* d = root;
    for (size_t i = 0; i < n; ++i) {
      auto it = d->entries.find(parts[i]);
      if (it == d->entries.end()) return {nullptr, ENOENT};
      if (it->second.dir == nullptr) return {nullptr, ENOTDIR};
      d = it->second.dir;
    }
    return {d, 0};
  }

  // The entry at `path` now; nullptr if none (root: a synthetic entry).
  const Entry* Find(const std::string& path, Entry* root_entry) {
    std::vector<std::string> parts = Split(path);
    if (parts.empty()) {
      root_entry->dir = root;
      return root_entry;
    }
    auto [d, err] = FindDir(parts, parts.size() - 1);
    if (d == nullptr) return nullptr;
    auto it = d->entries.find(parts.back());
    return it == d->entries.end() ? nullptr : &it->second;
  }

  // Counts one data operation on a file opened as `path`; the injected error
  // once a rule has run out.
  const std::string* Fault(const std::string& path) {
    const std::string* error = nullptr;
    for (FailRule& r : rules) {
      if (path.compare(0, r.prefix.size(), r.prefix) != 0) continue;
      if (r.ops_left == 0) {
        if (error == nullptr) error = &r.error;
      } else {
        --r.ops_left;
      }
    }
    return error;
  }

  // ---- PowerLoss.

  // The entries of `d` after the loss, from its durable and current ones.
  std::map<std::string, Entry> Survivors(Dir* d, Mode mode, Rng& rng) {
    if (mode == Mode::kDropUnsynced) return d->durable;
    std::set<std::string> names;
    for (const auto& [name, e] : d->durable) names.insert(name);
    for (const auto& [name, e] : d->entries) names.insert(name);
    std::map<std::string, Entry> out;
    for (const std::string& name : names) {
      auto was = d->durable.find(name);
      auto now = d->entries.find(name);
      bool same = was != d->durable.end() && now != d->entries.end() && was->second == now->second;
      bool take_now = same || rng.Below(2) == 1;
      if (take_now && now != d->entries.end()) out[name] = now->second;
      if (!take_now && was != d->durable.end()) out[name] = was->second;
    }
    return out;
  }

  static void RecoverFile(Inode* f, Mode mode, Rng& rng) {
    if (mode == Mode::kTearUnsynced && !f->unsynced.empty()) {
      const size_t n = f->unsynced.size();
      const size_t k = static_cast<size_t>(rng.Below(n + 1));
      std::vector<uint8_t> data = f->durable;
      for (size_t i = 0; i < k; ++i) Apply(f->unsynced[i], &data);
      const Op* next = k < n ? &f->unsynced[k] : nullptr;
      if (next != nullptr && !next->truncate && !next->bytes.empty() && rng.Below(2) == 1) {
        Op torn{false, next->offset, {}};
        torn.bytes.assign(next->bytes.begin(),
                          next->bytes.begin() +
                              static_cast<std::ptrdiff_t>(rng.Below(next->bytes.size())));
        Apply(torn, &data);
      }
      f->durable = std::move(data);
    }
    f->data = f->durable;
    f->unsynced.clear();
  }

  // Depth-first from `d` in sorted order; `seen` holds every directory and
  // file already recovered. A directory seen before is cut from `d` (one
  // parent per directory, and no cycles).
  void Recover(Dir* d, Mode mode, Rng& rng, std::set<const void*>& seen) {
    d->entries = Survivors(d, mode, rng);
    for (auto it = d->entries.begin(); it != d->entries.end();) {
      const void* id = it->second.dir != nullptr ? static_cast<const void*>(it->second.dir)
                                                 : static_cast<const void*>(it->second.file.get());
      if (!seen.insert(id).second) {
        it = it->second.dir != nullptr ? d->entries.erase(it) : std::next(it);
        continue;
      }
      if (it->second.dir != nullptr) {
        Recover(it->second.dir, mode, rng, seen);
      } else {
        RecoverFile(it->second.file.get(), mode, rng);
      }
      ++it;
    }
    d->durable = d->entries;
  }
};

namespace {

using State = FaultFileSystem::State;

class FaultFile final : public File {
 public:
  FaultFile(std::shared_ptr<State> state, std::shared_ptr<Inode> inode, std::string path,
            uint64_t epoch)
      : state_(std::move(state)), inode_(std::move(inode)), path_(std::move(path)), epoch_(epoch) {}

  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    TANDEM_RETURN_IF_ERROR(Check("pwrite", /*data_op=*/true));
    if (offset > FaultFileSystem::kFileBytesMax ||
        data.size() > FaultFileSystem::kFileBytesMax - offset) {
      return Errno(path_, "pwrite", EFBIG);
    }
    if (data.empty()) return Status::Ok();
    if (state_->full && offset + data.size() > inode_->data.size()) {
      return Errno(path_, "pwrite", ENOSPC);
    }
    Op op{false, offset, std::vector<uint8_t>(data.begin(), data.end())};
    Apply(op, &inode_->data);
    inode_->unsynced.push_back(std::move(op));
    state_->bytes_written += data.size();
    return Status::Ok();
  }

  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    TANDEM_RETURN_IF_ERROR(Check("pread", /*data_op=*/true));
    const std::vector<uint8_t>& data = inode_->data;
    if (offset >= data.size()) return size_t{0};
    const size_t n = std::min(out.size(), data.size() - static_cast<size_t>(offset));
    std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(offset), n, out.begin());
    return n;
  }

  Result<uint64_t> Size() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    TANDEM_RETURN_IF_ERROR(Check("fstat", /*data_op=*/false));
    return uint64_t{inode_->data.size()};
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    TANDEM_RETURN_IF_ERROR(Check("ftruncate", /*data_op=*/true));
    if (size > FaultFileSystem::kFileBytesMax) return Errno(path_, "ftruncate", EFBIG);
    Op op{true, size, {}};
    Apply(op, &inode_->data);
    inode_->unsynced.push_back(std::move(op));
    return Status::Ok();
  }

  Status Sync() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    TANDEM_RETURN_IF_ERROR(Check("fdatasync", /*data_op=*/true));
    inode_->durable = inode_->data;
    inode_->unsynced.clear();
    ++state_->syncs;
    return Status::Ok();
  }

 private:
  // REQUIRES: state_->mu held.
  Status Check(const char* call, bool data_op) {
    if (epoch_ != state_->epoch) {
      return Status::Error(path_ + ": stale file handle after power loss");
    }
    const std::string* error = data_op ? state_->Fault(path_) : nullptr;
    if (error != nullptr) return Status::Error(path_ + ": " + call + ": " + *error);
    return Status::Ok();
  }

  std::shared_ptr<State> state_;
  std::shared_ptr<Inode> inode_;
  std::string path_;
  uint64_t epoch_;
};

}  // namespace

FaultFileSystem::FaultFileSystem() : state_(std::make_shared<State>()) {}
FaultFileSystem::~FaultFileSystem() = default;

Result<std::unique_ptr<File>> FaultFileSystem::Open(const std::string& path, bool create) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(path);
  if (parts.empty()) return Errno(path, "open", EISDIR);
  auto [d, err] = state_->FindDir(parts, parts.size() - 1);
  if (d == nullptr) return Errno(path, "open", err);
  auto it = d->entries.find(parts.back());
  std::shared_ptr<Inode> inode;
  if (it != d->entries.end()) {
    if (it->second.dir != nullptr) return Errno(path, "open", EISDIR);
    inode = it->second.file;
  } else {
    if (!create) return Errno(path, "open", ENOENT);
    inode = std::make_shared<Inode>();
    d->entries[parts.back()] = Entry{inode, nullptr};
  }
  return std::unique_ptr<File>(
      std::make_unique<FaultFile>(state_, std::move(inode), path, state_->epoch));
}

Status FaultFileSystem::Rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(state_->mu);
  const std::string what = from + " -> " + to;
  std::vector<std::string> pf = Split(from);
  std::vector<std::string> pt = Split(to);
  if (pf.empty() || pt.empty()) return Errno(what, "rename", EBUSY);
  auto [fd, ferr] = state_->FindDir(pf, pf.size() - 1);
  if (fd == nullptr) return Errno(what, "rename", ferr);
  auto fit = fd->entries.find(pf.back());
  if (fit == fd->entries.end()) return Errno(what, "rename", ENOENT);
  auto [td, terr] = state_->FindDir(pt, pt.size() - 1);
  if (td == nullptr) return Errno(what, "rename", terr);
  const Entry moving = fit->second;
  if (moving.dir != nullptr && pt.size() > pf.size() &&
      std::equal(pf.begin(), pf.end(), pt.begin())) {
    return Errno(what, "rename", EINVAL);  // into its own subtree
  }
  auto tit = td->entries.find(pt.back());
  if (tit != td->entries.end()) {
    if (tit->second == moving) return Status::Ok();  // same object: rename(2) does nothing
    const Entry& target = tit->second;
    if (moving.dir == nullptr && target.dir != nullptr) return Errno(what, "rename", EISDIR);
    if (moving.dir != nullptr && target.dir == nullptr) return Errno(what, "rename", ENOTDIR);
    if (target.dir != nullptr && !target.dir->entries.empty()) {
      return Errno(what, "rename", ENOTEMPTY);
    }
  }
  fd->entries.erase(fit);
  td->entries[pt.back()] = moving;
  return Status::Ok();
}

Status FaultFileSystem::Remove(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(path);
  if (parts.empty()) return Errno(path, "unlink", EISDIR);
  auto [d, err] = state_->FindDir(parts, parts.size() - 1);
  if (d == nullptr) return err == ENOENT ? Status::Ok() : Errno(path, "unlink", err);
  auto it = d->entries.find(parts.back());
  if (it == d->entries.end()) return Status::Ok();
  if (it->second.dir != nullptr) return Errno(path, "unlink", EISDIR);
  d->entries.erase(it);
  return Status::Ok();
}

Status FaultFileSystem::MakeDirs(const std::string& path) {
  if (path.empty()) return Status::Error("MakeDirs: empty path");
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(path);
  Dir* d = state_->root;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto it = d->entries.find(parts[i]);
    if (it == d->entries.end()) {
      Dir* child = state_->NewDir();
      d->entries[parts[i]] = Entry{nullptr, child};
      d = child;
    } else if (it->second.dir == nullptr) {
      return Status::Error(Join(parts, i + 1) + ": exists and is not a directory");
    } else {
      d = it->second.dir;
    }
  }
  return Status::Ok();
}

Status FaultFileSystem::SyncDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(path);
  auto [d, err] = state_->FindDir(parts, parts.size());
  if (d == nullptr) return Errno(path, "open", err);
  d->durable = d->entries;
  ++state_->syncs;
  ++state_->dir_syncs;
  return Status::Ok();
}

Result<std::optional<uint64_t>> FaultFileSystem::FileSize(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(path);
  if (parts.empty()) return Status::Error(path + ": not a regular file");
  auto [d, err] = state_->FindDir(parts, parts.size() - 1);
  if (d == nullptr) {
    if (err == ENOENT) return std::optional<uint64_t>();
    return Errno(path, "lstat", err);
  }
  auto it = d->entries.find(parts.back());
  if (it == d->entries.end()) return std::optional<uint64_t>();
  if (it->second.dir != nullptr) return Status::Error(path + ": not a regular file");
  return std::optional<uint64_t>(uint64_t{it->second.file->data.size()});
}

Result<std::vector<std::string>> FaultFileSystem::ListFiles(const std::string& dir) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(dir);
  auto [top, err] = state_->FindDir(parts, parts.size());
  if (top == nullptr) {
    if (err == ENOENT) return std::vector<std::string>();
    return Errno(dir, "opendir", err);
  }
  std::vector<std::string> files;
  std::vector<std::pair<std::string, const Dir*>> pending = {{"", top}};
  while (!pending.empty()) {
    auto [rel, d] = std::move(pending.back());
    pending.pop_back();
    for (const auto& [name, e] : d->entries) {
      std::string child = rel.empty() ? name : rel + "/" + name;
      if (e.dir != nullptr) {
        pending.emplace_back(std::move(child), e.dir);
      } else {
        files.push_back(std::move(child));
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

namespace {

// Removes the empty directories under `d`, children first. True if `d` is
// empty afterwards.
bool PruneUnder(Dir* d) {
  for (auto it = d->entries.begin(); it != d->entries.end();) {
    if (it->second.dir != nullptr && PruneUnder(it->second.dir)) {
      it = d->entries.erase(it);
    } else {
      ++it;
    }
  }
  return d->entries.empty();
}

}  // namespace

void FaultFileSystem::PruneEmptyDirs(const std::string& dir) {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<std::string> parts = Split(dir);
  auto [top, err] = state_->FindDir(parts, parts.size());
  if (top != nullptr) (void)PruneUnder(top);
}

void FaultFileSystem::PowerLoss(uint64_t seed, Mode mode) {
  std::lock_guard<std::mutex> lock(state_->mu);
  ++state_->epoch;
  Rng rng(seed);
  std::set<const void*> seen = {state_->root};
  state_->Recover(state_->root, mode, rng, seen);
  // Directories no longer reachable can never be again: collect them.
  std::erase_if(state_->dirs, [&](const std::unique_ptr<Dir>& d) { return !seen.count(d.get()); });
}

void FaultFileSystem::FailAfter(std::string path_prefix, uint64_t ops_until_failure,
                                std::string error) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->rules.push_back(FailRule{std::move(path_prefix), ops_until_failure, std::move(error)});
}

void FaultFileSystem::SetFull(bool full) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->full = full;
}

void FaultFileSystem::ClearFaults() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->rules.clear();
  state_->full = false;
}

uint64_t FaultFileSystem::syncs() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->syncs;
}

uint64_t FaultFileSystem::dir_syncs() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->dir_syncs;
}

uint64_t FaultFileSystem::bytes_written() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->bytes_written;
}

std::optional<std::vector<uint8_t>> FaultFileSystem::Contents(const std::string& path) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  Entry root_entry;
  const Entry* e = state_->Find(path, &root_entry);
  if (e == nullptr || e->file == nullptr) return std::nullopt;
  return e->file->data;
}

bool FaultFileSystem::Exists(const std::string& path) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  Entry root_entry;
  return state_->Find(path, &root_entry) != nullptr;
}

}  // namespace tandem::os
