#include "repl/changes.h"

#include <xxhash.h>

#include <algorithm>

#include "repl/frame.h"

namespace tandem::repl {

namespace {

constexpr uint64_t kJournalBytesMax = 256ull * 1024 * 1024;  // refuse to load more

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::vector<uint8_t> EncodeJournalRecord(const ChunkRef& ref) {
  std::vector<uint8_t> body;
  PutU64(&body, ref.chunk);
  body.insert(body.end(), ref.path.begin(), ref.path.end());
  uint64_t sum = XXH64(body.data(), body.size(), 0);
  std::vector<uint8_t> out;
  PutU32(&out, static_cast<uint32_t>(body.size() + 8));
  out.insert(out.end(), body.begin(), body.end());
  PutU64(&out, sum);
  return out;
}

std::vector<ChunkRef> DecodeJournal(const std::vector<uint8_t>& data, size_t* valid_bytes) {
  std::vector<ChunkRef> refs;
  size_t pos = 0;
  while (data.size() - pos >= 4) {
    uint32_t len = GetU32(&data[pos]);
    if (len < 16 || len > 8 + kPathBytesMax + 8 || data.size() - pos - 4 < len) break;
    const uint8_t* body = &data[pos + 4];
    size_t body_len = len - 8;
    if (XXH64(body, body_len, 0) != GetU64(body + body_len)) break;
    ChunkRef ref;
    ref.chunk = GetU64(body);
    ref.path.assign(reinterpret_cast<const char*>(body + 8), body_len - 8);
    if (!IsValidPath(ref.path)) break;
    refs.push_back(std::move(ref));
    pos += 4 + len;
  }
  *valid_bytes = pos;
  return refs;
}

ChangeSet::ChangeSet(os::FileSystem& fs, std::string journal_path, size_t hot_limit)
    : fs_(fs), path_(std::move(journal_path)), hot_limit_(hot_limit) {}

Status ChangeSet::Load() {
  entries_.clear();
  lru_.clear();
  pinned_count_ = 0;
  auto data = os::ReadWholeFile(fs_, path_, kJournalBytesMax);
  if (!data.ok()) return data.status();
  if (data->has_value()) {
    size_t valid = 0;
    for (ChunkRef& r : DecodeJournal(**data, &valid)) {
      auto [it, inserted] = entries_.try_emplace(std::move(r));
      if (inserted) {
        it->second.pinned = true;
        pinned_count_++;
      }
    }
  }
  // Start a clean journal holding exactly what was loaded (this also cuts a
  // torn tail).
  return Rewrite();
}

bool ChangeSet::Covered(const ChunkRef& ref) const {
  if (entries_.count(ref)) return true;
  auto whole = entries_.find(ChunkRef{ref.path, kWholeFile});
  return whole != entries_.end() && whole->second.pinned;
}

Status ChangeSet::Record(const std::vector<ChunkRef>& refs, uint64_t write_id, bool pin,
                         const std::vector<ChunkRef>& ahead) {
  std::vector<ChunkRef> fresh;
  for (const ChunkRef& r : refs) {
    // A pinned whole-file entry already covers every chunk of the file
    // (e.g. a segment created while the peer is away): memory stays
    // proportional to the files changed, not to the bytes.
    if (r.chunk != kWholeFile) {
      auto whole = entries_.find(ChunkRef{r.path, kWholeFile});
      if (whole != entries_.end() && whole->second.pinned) {
        whole->second.last_write = std::max(whole->second.last_write, write_id);
        continue;
      }
    }
    auto it = entries_.find(r);
    if (it == entries_.end()) {
      fresh.push_back(r);
      continue;
    }
    it->second.last_write = std::max(it->second.last_write, write_id);
    if (pin && !it->second.pinned) {
      lru_.erase(it->second.lru);
      it->second.pinned = true;
      pinned_count_++;
    } else if (!it->second.pinned) {
      Touch(it->first, it->second);
    }
  }
  if (fresh.empty()) return Status::Ok();
  for (const ChunkRef& r : ahead) {
    if (!Covered(r)) fresh.push_back(r);
  }
  TANDEM_RETURN_IF_ERROR(Append(fresh));
  for (ChunkRef& r : fresh) {
    if (entries_.count(r)) continue;  // duplicate within `refs`
    Entry& e = entries_[r];
    e.last_write = write_id;
    e.pinned = pin;
    if (pin) {
      pinned_count_++;
    } else {
      lru_.push_front(r);
      e.lru = lru_.begin();
    }
  }
  Evict();
  return Status::Ok();
}

void ChangeSet::Touch(const ChunkRef& ref, Entry& e) {
  lru_.erase(e.lru);
  lru_.push_front(ref);
  e.lru = lru_.begin();
}

void ChangeSet::Acknowledged(uint64_t write_id) {
  acked_ = std::max(acked_, write_id);
  Evict();
}

void ChangeSet::Evict() {
  while (lru_.size() > hot_limit_) {
    const ChunkRef& oldest = lru_.back();
    auto it = entries_.find(oldest);
    if (it->second.last_write > acked_) break;  // not on the peer yet
    entries_.erase(it);
    lru_.pop_back();
  }
}

void ChangeSet::PinAll(uint64_t acked) {
  acked_ = std::max(acked_, acked);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (!e.pinned && e.last_write != 0 && e.last_write <= acked_) {
      it = entries_.erase(it);
      continue;
    }
    if (!e.pinned) {
      e.pinned = true;
      pinned_count_++;
    }
    ++it;
  }
  lru_.clear();
}

Status ChangeSet::SyncFinished(uint64_t durable_write_id) {
  SyncFinishedEntries(durable_write_id);
  return Rewrite();
}

void ChangeSet::SyncFinishedEntries(uint64_t durable_write_id) {
  acked_ = std::max(acked_, durable_write_id);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.pinned && it->second.last_write <= acked_) {
      it = entries_.erase(it);
      pinned_count_--;
    } else {
      ++it;
    }
  }
}

void ChangeSet::UnpinAll() {
  for (auto& [ref, e] : entries_) {
    if (!e.pinned) continue;
    e.pinned = false;
    pinned_count_--;
    lru_.push_back(ref);
    e.lru = std::prev(lru_.end());
  }
  Evict();
}

Status ChangeSet::Clear() {
  ClearEntries();
  return Rewrite();
}

void ChangeSet::ClearEntries() {
  entries_.clear();
  lru_.clear();
  pinned_count_ = 0;
}

Status ChangeSet::TrimAcknowledged() {
  bool removed = false;
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto e = entries_.find(*it);
    if (e->second.last_write <= acked_) {
      entries_.erase(e);
      it = lru_.erase(it);
      removed = true;
    } else {
      ++it;
    }
  }
  return removed || journal_records_ > entries_.size() ? Rewrite() : Status::Ok();
}

Status ChangeSet::MaybeCompact() {
  // Bounded: after a crash every journaled chunk is resent, so the journal
  // never holds much more than the live set plus one activity log's worth.
  if (journal_records_ <= entries_.size() + hot_limit_ / 4 + 16) return Status::Ok();
  return Rewrite();
}

Status ChangeSet::Append(const std::vector<ChunkRef>& refs) {
  if (!journal_) TANDEM_RETURN_IF_ERROR(Rewrite());
  std::vector<uint8_t> buf;
  for (const ChunkRef& r : refs) {
    auto rec = EncodeJournalRecord(r);
    buf.insert(buf.end(), rec.begin(), rec.end());
  }
  // From the first byte written, whatever happens next.
  journal_durably_empty_ = false;
  journal_used_end_ = std::max(journal_used_end_, journal_bytes_ + buf.size());
  TANDEM_RETURN_IF_ERROR(journal_->WriteAt(journal_bytes_, buf));
  TANDEM_RETURN_IF_ERROR(journal_->Sync());
  journal_syncs_++;
  journal_bytes_ += buf.size();
  journal_records_ += refs.size();
  return Status::Ok();
}

Status ChangeSet::Rewrite() {
  if (entries_.empty() && journal_) {
    // Already empty on disk (nothing appended since it was made so, e.g.
    // the journal of a secondary, which records nothing): nothing to do,
    // not even a sync.
    if (journal_durably_empty_) return Status::Ok();
    // Nothing recorded: empty the journal in place by overwriting what it
    // holds with zeros, one fdatasync. The file keeps its size, so the sync
    // needs no commit of the file system's own journal (a truncation
    // would, and on a busy file system that commit carries everyone's
    // metadata); loading stops at the first zero length, and appends
    // overwrite the zeros from the start. A power loss keeps either the
    // old records, a prefix of them (a torn write: the first record
    // damaged ends the journal) or none: never more than were there, never
    // fewer than the durable state needs (the callers' order of syncs,
    // docs/REPLICATION.md), and each one only resends a chunk.
    TANDEM_RETURN_IF_ERROR(journal_->WriteAt(0, std::vector<uint8_t>(journal_used_end_, 0)));
    TANDEM_RETURN_IF_ERROR(journal_->Sync());
    journal_syncs_++;
    journal_bytes_ = 0;
    journal_records_ = 0;
    journal_used_end_ = 0;
    journal_durably_empty_ = true;
    return Status::Ok();
  }
  std::vector<uint8_t> buf;
  for (const auto& [ref, e] : entries_) {
    auto rec = EncodeJournalRecord(ref);
    buf.insert(buf.end(), rec.begin(), rec.end());
  }
  journal_.reset();
  journal_durably_empty_ = false;
  TANDEM_RETURN_IF_ERROR(os::WriteWholeFileAtomic(fs_, path_, buf));
  journal_syncs_++;
  auto f = fs_.Open(path_, false);
  if (!f.ok()) return f.status();
  journal_ = std::move(*f);
  journal_bytes_ = buf.size();
  journal_records_ = entries_.size();
  journal_used_end_ = buf.size();
  journal_durably_empty_ = buf.empty();
  return Status::Ok();
}

std::map<std::string, std::set<uint64_t>> ChangeSet::Pinned() const {
  std::map<std::string, std::set<uint64_t>> out;
  for (const auto& [ref, e] : entries_) {
    if (e.pinned) out[ref.path].insert(ref.chunk);
  }
  return out;
}

std::map<std::string, std::set<uint64_t>> ChangeSet::All() const {
  std::map<std::string, std::set<uint64_t>> out;
  for (const auto& [ref, e] : entries_) out[ref.path].insert(ref.chunk);
  return out;
}

}  // namespace tandem::repl
