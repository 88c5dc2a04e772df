#include "repl/replica.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>

namespace tandem::repl {

using nlohmann::json;

namespace {

constexpr uint32_t kWholeCount = UINT32_MAX;  // SyncRequest chunk_count: the whole file
constexpr size_t kBatchBytesMax = 16u * 1024 * 1024;
constexpr size_t kBatchOpsMax = 8192;
constexpr size_t kSyncBacklogMax = 4u * 1024 * 1024;  // resync yields to writes beyond this
constexpr uint32_t kVerifyBatch = 64;
constexpr uint64_t kFlagDiscard = 1, kFlagSurvivor = 2;
// The reason of a disk failure kept in the metadata record (the rest of a
// longer one is cut).
constexpr size_t kFailedReasonBytesMax = 1024;
constexpr uint16_t kErrProtocol = 1;
constexpr int64_t kQuietTrimMs = 500;  // no writes this long: trim the activity log
// A sync target hands received data to write-back in slices of this size
// (and at the end of each file).
constexpr uint64_t kWritebackSliceBytes = 4u * 1024 * 1024;
constexpr uint64_t kWritebackRunMin = 1024 * 1024;  // shorter runs get no write-back hint
// Appends record up to this many chunks ahead of where they write (4 MiB,
// DRBD's activity-log extent), bounded by the activity log's size.
constexpr uint64_t kAheadChunksMax = 64;
// Appended files remembered for recording ahead: those of the last
// kAppendBatchesRecent batches, at most kAppendFilesMax of them.
constexpr uint64_t kAppendBatchesRecent = 64;
constexpr size_t kAppendFilesMax = 64;

enum Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIX64, v);
  return buf;
}

std::optional<uint64_t> ParseHex(const std::string& s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::array<uint8_t, kHashBytes> ChunkHash(const std::vector<uint8_t>& data, bool last,
                                          uint64_t size) {
  std::array<uint8_t, kHashBytes> out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  TANDEM_CHECK(ctx != nullptr);
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, data.data(), data.size());
  if (last) {
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(size >> (8 * i));
    EVP_DigestUpdate(ctx, le, sizeof le);
  }
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, out.data(), &n);
  EVP_MD_CTX_free(ctx);
  return out;
}

uint64_t LastChunk(uint64_t size) { return size == 0 ? 0 : (size - 1) / kChunkBytes; }

bool UnderPrefix(const std::string& path, const std::vector<std::string>& prefixes) {
  for (const std::string& p : prefixes) {
    if (path.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

}  // namespace

std::string_view DiskStateName(DiskState s) {
  switch (s) {
    case DiskState::kUpToDate: return "UpToDate";
    case DiskState::kOutdated: return "Outdated";
    case DiskState::kInconsistent: return "Inconsistent";
    case DiskState::kFailed: return "Failed";
  }
  return "?";
}

std::string_view ReplStateName(ReplState s) {
  switch (s) {
    case ReplState::kStandAlone: return "StandAlone";
    case ReplState::kConnecting: return "Connecting";
    case ReplState::kHandshake: return "Handshake";
    case ReplState::kEstablished: return "Established";
    case ReplState::kSyncSource: return "SyncSource";
    case ReplState::kSyncTarget: return "SyncTarget";
    case ReplState::kVerifySource: return "VerifySource";
    case ReplState::kVerifyTarget: return "VerifyTarget";
    case ReplState::kMerging: return "Merging";
    case ReplState::kSplitBrainWait: return "SplitBrain";
  }
  return "?";
}

uint64_t MergedGeneration(uint64_t a, uint64_t b) {
  uint64_t lo = std::min(a, b), hi = std::max(a, b);
  uint64_t in[2] = {lo, hi};
  uint64_t h = XXH64(in, sizeof in, 0x7a6e64656dULL);
  if (h == 0 || h == a || h == b) h ^= 0x9E3779B97F4A7C15ULL;
  return h;
}

Replica::Replica(os::FileSystem& fs, const os::Clock& clock, ReplicaOptions opts,
                 std::function<uint64_t()> random)
    : fs_(fs),
      clock_(clock),
      opts_(std::move(opts)),
      random_(std::move(random)),
      store_(fs, opts_.store_dir),
      changes_(fs, opts_.meta_dir + "/changes.log", opts_.hot_chunks),
      meta_(fs, opts_.meta_dir + "/meta.slots", opts_.meta_dir + "/meta.json") {
  store_.SetIoPool(opts_.io_pool);
  // Room for a frame's leftover plus one Received, faulted in now rather
  // than during the first sync.
  if (opts_.prefault_receive_buffer) {
    decode_storage_.resize(kFrameBytesMax + kReceiveBytesMax);
    decode_storage_.clear();
  }
}

Replica::~Replica() = default;

std::string Replica::PeerName() const {
  if (peer_ && !peer_->node.empty()) return peer_->node;
  return opts_.peer_node.empty() ? std::string("the peer") : opts_.peer_node;
}

namespace {
bool IsNoSpace(const Status& st) {
  return st.message().find("No space left on device") != std::string::npos;
}
}  // namespace

uint64_t Replica::Fresh() {
  for (;;) {
    uint64_t v = random_();
    if (v != 0 && v != gens_.current && v != gens_.bitmap && v != gens_.history[0] &&
        v != gens_.history[1]) {
      return v;
    }
  }
}

void Replica::Log(int level, const std::string& msg) {
  if (log_) log_(level, msg);
}

// ---------------------------------------------------------------- metadata

Status Replica::Open() {
  for (const std::string& dir : {opts_.meta_dir, opts_.store_dir}) {
    TANDEM_RETURN_IF_ERROR(fs_.MakeDirs(dir));
    // New directories are durable once their parents are synced.
    for (std::string d = dir; d.size() > 1 && d.find('/') != std::string::npos;) {
      d = d.substr(0, d.rfind('/'));
      if (d.empty()) d = "/";
      TANDEM_RETURN_IF_ERROR(fs_.SyncDir(d));
    }
  }
  // The metadata: two checksummed slots written in place (meta_slots.h,
  // docs/formats/replica-metadata.md); a meta.json of older versions is
  // read and rewritten in the slot format at once.
  auto loaded = meta_.Load();
  if (!loaded.ok()) {
    return Status::Error(loaded.status().message() +
                         " (the replica metadata cannot be read; if it is damaged, move it away to "
                         "force a full resync)");
  }
  if (loaded->has_value()) {
    const std::vector<uint8_t>& raw = (*loaded)->payload;
    json j = json::parse(raw.begin(), raw.end(), nullptr, false);
    const std::string where = (*loaded)->legacy ? opts_.meta_dir + "/meta.json" : meta_.path();
    auto bad = [&](const std::string& what) {
      return Status::Error(where + ": " + what + " (the replica metadata is damaged; "
                           "move it away to force a full resync)");
    };
    if (j.is_discarded() || !j.is_object() || j.value("version", 0) != 1) return bad("unreadable");
    auto gen = [&](const char* k) -> std::optional<uint64_t> {
      if (!j.contains(k) || !j[k].is_string()) return std::nullopt;
      return ParseHex(j[k].get<std::string>());
    };
    auto c = gen("current"), b = gen("bitmap"), h0 = gen("history0"), h1 = gen("history1");
    if (!c || !b || !h0 || !h1) return bad("bad generations");
    gens_ = Generations{*c, *b, {*h0, *h1}};
    if (!Valid(gens_)) return bad("invalid generations " + ToString(gens_));
    std::string d = j.value("disk", "");
    if (d == "UpToDate") disk_ = DiskState::kUpToDate;
    else if (d == "Outdated") disk_ = DiskState::kOutdated;
    else if (d == "Inconsistent") disk_ = DiskState::kInconsistent;
    else if (d == "Failed") disk_ = DiskState::kFailed;
    else return bad("bad disk state");
    discard_local_ = j.value("discard_local", false);
    survivor_ = j.value("survivor", false);
    full_sync_wanted_ = j.value("full_sync_wanted", false);
    if (full_sync_wanted_ && disk_ != DiskState::kInconsistent && disk_ != DiskState::kFailed) {
      return bad("a full sync is wanted but the disk is " + d);
    }
    failed_reason_ = j.value("failed_reason", "");
    if ((*loaded)->legacy) {
      Log(kWarn, "replica metadata: " + where + " rewritten in the slot format (" + meta_.path() + ")");
      TANDEM_RETURN_IF_ERROR(Persist());
    }
  } else {
    // A brand-new (or wiped) replica: no generation. The configured primary
    // of a new cluster is its data's origin and may be promoted; a secondary
    // is Inconsistent until its initial sync.
    gens_ = Wiped();
    disk_ = opts_.initial_primary ? DiskState::kUpToDate : DiskState::kInconsistent;
    TANDEM_RETURN_IF_ERROR(Persist());
  }
  TANDEM_RETURN_IF_ERROR(changes_.Load());
  return Status::Ok();
}

std::vector<uint8_t> Replica::EncodeMeta() const {
  // A slot holds at most MetaSlots::kPayloadBytesMax bytes: the reason of a
  // disk failure is the only field of unbounded length (cut at a character
  // boundary).
  std::string reason = failed_reason_;
  if (reason.size() > kFailedReasonBytesMax) {
    size_t cut = kFailedReasonBytesMax;
    while (cut > 0 && (static_cast<uint8_t>(reason[cut]) & 0xC0) == 0x80) --cut;
    reason.resize(cut);
  }
  json j = {{"version", 1},
            {"current", Hex(gens_.current)},
            {"bitmap", Hex(gens_.bitmap)},
            {"history0", Hex(gens_.history[0])},
            {"history1", Hex(gens_.history[1])},
            {"disk", std::string(DiskStateName(disk_))},
            {"discard_local", discard_local_},
            {"survivor", survivor_},
            {"full_sync_wanted", full_sync_wanted_},
            {"failed_reason", reason}};
  std::string s = j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::function<Status()> Replica::PersistJob() {
  return [this, record = EncodeMeta()] { return meta_.Write(record); };
}

Status Replica::Persist() {
  Status st = PersistJob()();
  if (!st.ok()) Log(kError, "cannot write replica metadata: " + st.message());
  return st;
}

Status Replica::RunSideBySide(std::vector<std::function<Status()>> jobs) {
  if (opts_.io_pool != nullptr) return opts_.io_pool->RunAll(std::move(jobs));
  Status first;
  for (auto& job : jobs) {
    Status st = job();
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

bool Replica::SetDisk(DiskState d) {
  if (d == disk_) return true;
  Log(kWarn, "disk " + std::string(DiskStateName(disk_)) + " -> " + std::string(DiskStateName(d)));
  disk_ = d;
  // The persisted state must never claim more than the data holds: a
  // replica about to receive a sync is Inconsistent on disk before the
  // first chunk lands, or it would come back UpToDate after a crash.
  if (Status st = Persist(); !st.ok()) {
    DiskFailed(st.Prefix("replica metadata: "));
    return false;
  }
  if (on_change_) on_change_();
  return true;
}

void Replica::SetState(ReplState s) {
  if (s == state_) return;
  Log(s == ReplState::kStandAlone ? kError : kInfo,
      "replication " + std::string(ReplStateName(state_)) + " -> " + std::string(ReplStateName(s)));
  state_ = s;
  if (on_change_) on_change_();
}

bool Replica::synchronizing() const {
  return state_ == ReplState::kSyncTarget || (state_ == ReplState::kMerging && !primary_) ||
         (state_ == ReplState::kSplitBrainWait && disk_ == DiskState::kInconsistent);
}

std::string Replica::summary() const {
  return std::string(DiskStateName(disk_)) + " " + std::string(ReplStateName(state_)) +
         (primary_ ? " Primary" : " Secondary");
}

void Replica::DiskFailed(const Status& st) {
  if (disk_ == DiskState::kFailed) return;
  failed_reason_ = st.message();
  Log(kError, "disk failed: " + st.message());
  disk_ = DiskState::kFailed;
  (void)Persist();
  FailQueued("disk failed: " + st.message());
  while (!pending_.empty()) {
    for (auto& d : pending_.front().done) d(Status::Error("disk failed: " + st.message()));
    pending_.pop_front();
  }
  unacked_bytes_ = 0;
  Drop("disk failed", true);
  if (on_change_) on_change_();
  if (on_disk_failed_) on_disk_failed_(st.message());
}

// ------------------------------------------------------------------- roles

Status Replica::Promote(bool force) {
  if (disk_ == DiskState::kFailed) return Status::Error("the replica's disk failed: " + failed_reason_);
  if (primary_) return Status::Ok();
  if (disk_ != DiskState::kUpToDate && !force) {
    return Status::Error("the replica is " + std::string(DiskStateName(disk_)) +
                         ", not UpToDate (use --force to promote it anyway)");
  }
  // Writes received as secondary (or a broken-off sync) may still be only
  // in the page cache: this copy is the data of record from now on, and
  // may be the source of the next sync, so it is made durable first.
  if (Status st = store_.Commit(); !st.ok()) {
    DiskFailed(st);
    return st;
  }
  if (connected() && peer_ && peer_->role == NodeRole::kPrimary) {
    Drop("the peer is primary too");
  }
  bool keep_connection = connected() && verified_ &&
                         (state_ == ReplState::kEstablished || state_ == ReplState::kSyncSource ||
                          state_ == ReplState::kVerifySource || state_ == ReplState::kVerifyTarget);
  const Generations old_gens = gens_;
  const DiskState old_disk = disk_;
  if (gens_.current == kNoGeneration) {
    gens_ = Created(Fresh());
    keep_connection = false;
  } else if (!keep_connection) {
    gens_ = NewCurrentOnPromote(gens_, Fresh());
    changes_.PinAll();
  }
  const bool old_full_sync_wanted = full_sync_wanted_;
  if (disk_ != DiskState::kUpToDate) {
    Log(kWarn, "forced promotion of a " + std::string(DiskStateName(disk_)) + " replica");
    disk_ = DiskState::kUpToDate;
    full_sync_wanted_ = false;  // this copy is the data of record now
  }
  if (Status st = Persist(); !st.ok()) {
    // Not promoted: the new generation never reached the disk. A metadata
    // write error is a disk failure (docs/REPLICATION.md, "Disk failures").
    gens_ = old_gens;
    disk_ = old_disk;
    full_sync_wanted_ = old_full_sync_wanted;
    DiskFailed(st.Prefix("promotion: "));
    return st;
  }
  primary_ = true;
  Log(kWarn, "promoted to primary; generations " + ToString(gens_));
  if (connected()) {
    if (keep_connection && (greeted_ || !outgoing_)) {
      // Role update; an accepting side not yet greeted sends its current
      // role in the kHelloAck anyway (SendFrame leaves this one out).
      SendFrame(FrameType::kHello, MakeHello());
    } else if (keep_connection) {
      Drop("promoted during the handshake: reconnecting");
    } else {
      Drop("generations changed at promotion: reconnecting");
    }
  }
  if (on_change_) on_change_();
  return Status::Ok();
}

void Replica::Demote(std::function<void()> done) {
  if (!primary_) {
    done();
    return;
  }
  FailQueued("this host is no longer primary");
  demote_waiters_.push_back(std::move(done));
  if (!demoting_) {
    demoting_ = true;
    demote_since_ms_ = clock_.NowMs();
  }
  if (pending_.empty()) FinishDemote();
}

void Replica::FinishDemote() {
  demoting_ = false;
  primary_ = false;
  Log(kWarn, "demoted to secondary");
  if (connected() && verified_) SendFrame(FrameType::kHello, MakeHello());
  auto waiters = std::move(demote_waiters_);
  demote_waiters_.clear();
  for (auto& w : waiters) w();
  if (on_change_) on_change_();
}

// ------------------------------------------------------------------ writes

bool Replica::ReplicatingWrites() const {
  if (!connected() || !verified_ || !peer_) return false;
  switch (state_) {
    case ReplState::kEstablished:
    case ReplState::kSyncSource:
    case ReplState::kVerifySource:
    case ReplState::kMerging: return true;
    default: return false;
  }
}

bool Replica::InSync() const {
  return state_ == ReplState::kEstablished && connected() && peer_ &&
         peer_->gen_current == gens_.current && disk_ == DiskState::kUpToDate;
}

bool Replica::Congested() const {
  return queued_bytes_ + unacked_bytes_ > opts_.max_unacked_bytes;
}

void Replica::Submit(Write w, WriteDone done) {
  if (!primary_ || demoting_) {
    done(Status::Error("the store is not writable on this host (not primary)"));
    return;
  }
  if (disk_ == DiskState::kFailed) {
    done(Status::Error("disk failed: " + failed_reason_));
    return;
  }
  w.write_id = 0;
  if ((w.op == WriteOp::kAppend || w.op == WriteOp::kWriteAt) && w.data.size() > kDataBytesMax) {
    // Larger writes travel as consecutive pieces of at most kDataBytesMax;
    // `done` runs once, after the last piece (or the first error).
    struct Join {
      size_t left;
      Status first_error;
      WriteDone done;
    };
    size_t pieces = (w.data.size() + kDataBytesMax - 1) / kDataBytesMax;
    auto join = std::make_shared<Join>(Join{pieces, Status::Ok(), std::move(done)});
    for (size_t i = 0; i < pieces; ++i) {
      Write piece;
      piece.op = w.op;
      piece.path = w.path;
      size_t from = i * kDataBytesMax;
      size_t n = std::min(kDataBytesMax, w.data.size() - from);
      piece.offset = w.op == WriteOp::kWriteAt ? w.offset + from : 0;
      piece.data.assign(w.data.begin() + static_cast<std::ptrdiff_t>(from),
                        w.data.begin() + static_cast<std::ptrdiff_t>(from + n));
      piece.length = n;
      Submit(std::move(piece), [join](const Status& st) {
        if (!st.ok() && join->first_error.ok()) join->first_error = st;
        if (--join->left == 0) join->done(join->first_error);
      });
    }
    return;
  }
  if (Status valid = Validate(Frame{FrameType::kWrite, 0, 1, 1, 1, w}); !valid.ok()) {
    done(Status::Error("invalid write: " + valid.message()));
    return;
  }
  queued_bytes_ += w.data.size();
  queue_.push_back(Queued{std::move(w), std::move(done)});
}

bool Replica::WritersWaiting() const {
  if (!queue_.empty()) return true;
  for (const Pending& p : pending_) {
    if (!p.done.empty()) return true;
  }
  return false;
}

void Replica::FailQueued(const std::string& why) {
  auto q = std::move(queue_);
  queue_.clear();
  queued_bytes_ = 0;
  WritersAnswered();
  for (auto& item : q) item.done(Status::Error(why));
}

void Replica::Flush() {
  while (!queue_.empty()) {
    if (!primary_ || demoting_ || disk_ == DiskState::kFailed) {
      FailQueued(disk_ == DiskState::kFailed ? "disk failed: " + failed_reason_
                                             : "the store is not writable on this host");
      return;
    }
    // One group commit: take what is queued (bounded), apply, ship, sync.
    std::vector<Queued> batch;
    size_t bytes = 0;
    while (!queue_.empty() && batch.size() < kBatchOpsMax && bytes < kBatchBytesMax) {
      bytes += queue_.front().w.data.size();
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    queued_bytes_ -= std::min<uint64_t>(queued_bytes_, bytes);

    // Where appends land, and which chunks the batch touches.
    std::map<std::string, std::optional<uint64_t>> sizes;
    auto size_of = [&](const std::string& p) -> Result<std::optional<uint64_t>> {
      auto it = sizes.find(p);
      if (it != sizes.end()) return it->second;
      auto s = store_.Size(p);
      if (!s.ok()) return s.status();
      sizes[p] = *s;
      return *s;
    };
    std::vector<ChunkRef> refs;
    std::vector<Queued> valid;
    for (Queued& q : batch) {
      Write& w = q.w;
      w.write_id = next_write_id_++;
      Status bad;
      switch (w.op) {
        case WriteOp::kCreate:
          recent_appends_.erase(w.path);
          sizes[w.path] = 0;
          refs.push_back({w.path, kWholeFile});
          break;
        case WriteOp::kAppend:
        case WriteOp::kWriteAt: {
          if (w.op == WriteOp::kAppend) {
            auto s = size_of(w.path);
            if (!s.ok()) {
              bad = s.status();
              break;
            }
            w.offset = s->value_or(0);
          }
          uint64_t end = w.offset + w.data.size();
          auto s = size_of(w.path);
          if (!s.ok()) {
            bad = s.status();
            break;
          }
          sizes[w.path] = std::max(s->value_or(0), end);
          for (uint64_t c = w.offset / kChunkBytes; c <= (end - 1) / kChunkBytes; ++c) {
            refs.push_back({w.path, c});
          }
          if (w.op == WriteOp::kAppend) NoteAppend(w.path, (end - 1) / kChunkBytes);
          break;
        }
        case WriteOp::kTruncate: {
          recent_appends_.erase(w.path);
          auto s = size_of(w.path);
          if (!s.ok()) {
            bad = s.status();
            break;
          }
          sizes[w.path] = w.length;
          // Every chunk between the old and the new end changed (cut off or
          // zero-filled), not only the one holding the new end: a resync
          // must resend them all. A new file, or a long range: the whole
          // file (docs/REPLICATION.md, "Change set and activity log").
          uint64_t lo = std::min(s->value_or(0), w.length), hi = std::max(s->value_or(0), w.length);
          uint64_t first = lo / kChunkBytes, last = std::max(first, LastChunk(hi));
          if (!s->has_value() || last - first >= 64) {
            refs.push_back({w.path, kWholeFile});
          } else {
            for (uint64_t c = first; c <= last; ++c) refs.push_back({w.path, c});
          }
          break;
        }
        case WriteOp::kRename: {
          auto s = size_of(w.path);
          if (!s.ok()) {
            bad = s.status();
            break;
          }
          if (!s->has_value()) {
            bad = Status::Error(w.path + ": No such file");
            break;
          }
          sizes[w.path2] = *s;
          sizes[w.path] = std::nullopt;
          recent_appends_.erase(w.path);
          recent_appends_.erase(w.path2);
          refs.push_back({w.path, kWholeFile});
          refs.push_back({w.path2, kWholeFile});
          break;
        }
        case WriteOp::kDelete:
          sizes[w.path] = std::nullopt;
          recent_appends_.erase(w.path);
          refs.push_back({w.path, kWholeFile});
          break;
        case WriteOp::kSync: break;
      }
      if (!bad.ok()) {
        // An I/O error is a disk failure; a missing rename source is the
        // writer's mistake.
        if (bad.message().find("No such file") != std::string::npos) {
          q.done(bad);
          continue;
        }
        DiskFailed(bad);
        for (auto& v : valid) v.done(Status::Error("disk failed: " + bad.message()));
        for (auto& r : batch) if (r.done) r.done(Status::Error("disk failed"));
        return;
      }
      valid.push_back(std::move(q));
    }
    if (valid.empty()) continue;
    bool replicate = ReplicatingWrites();
    Status st = changes_.Record(refs, next_write_id_ - 1, !InSync(), AheadRefs());
    append_batch_++;
    if (!st.ok()) {
      DiskFailed(st.Prefix("change journal: "));
      for (auto& v : valid) v.done(Status::Error("disk failed: " + st.message()));
      return;
    }
    uint64_t batch_bytes = 0;
    std::vector<WriteDone> dones;
    bool store_full = false;
    for (Queued& q : valid) {
      if (store_full) {
        // Planned after the write that did not fit (its offsets assume it).
        WriteDone d = std::move(q.done);
        q.done = nullptr;
        d(Status::Error("no space left on the store (an earlier write of the same commit did not "
                        "fit): not written"));
        continue;
      }
      // An append to a file that may not exist yet: whether it did decides
      // how a full store is undone (below).
      bool existed = true;
      if (q.w.op == WriteOp::kAppend && q.w.offset == 0) {
        auto size = store_.Size(q.w.path);
        existed = !size.ok() || size->has_value();
      }
      st = store_.Apply(&q.w);
      if (!st.ok() && q.w.op == WriteOp::kAppend && IsNoSpace(st)) {
        // A full store fails the append, not the disk (docs/REPLICATION.md,
        // "A full store"): what part of it landed is cut off again, so this
        // file is as the peer has it, and nothing of it is sent.
        Write undo;
        undo.op = existed ? WriteOp::kTruncate : WriteOp::kDelete;
        undo.path = q.w.path;
        undo.length = existed ? q.w.offset : 0;
        if (Status u = store_.Apply(&undo); u.ok()) {
          counters_.writes_no_space++;
          Log(kWarn, "store full: an append to " + q.w.path + " failed: " + st.message());
          WriteDone d = std::move(q.done);
          q.done = nullptr;
          d(Status::Error("no space left on the store: " + st.message()));
          store_full = true;
          continue;
        }
      }
      if (!st.ok()) {
        DiskFailed(st);
        for (auto& v : valid) if (v.done) v.done(Status::Error("disk failed: " + st.message()));
        return;
      }
      batch_bytes += q.w.data.size();
      counters_.write_bytes += q.w.data.size();
      if (replicate) SendFrame(FrameType::kWrite, q.w);
      // A rename while this host is sending a sync or merge: the peer may
      // not have the source yet (it is still in the work list, or already
      // went out as "deleted"), so the rename does nothing there and the new
      // name would never reach it. The new name is sent as a sync item too.
      if (q.w.op == WriteOp::kRename && !sync_sent_done_ &&
          (state_ == ReplState::kSyncSource || state_ == ReplState::kMerging)) {
        sync_work_.push_back(SyncItem{q.w.path2, {kWholeFile}});
      }
      dones.push_back(std::move(q.done));
    }
    uint64_t marker = next_write_id_++;
    if (replicate) {
      Write sync;
      sync.op = WriteOp::kSync;
      sync.write_id = marker;
      SendFrame(FrameType::kWrite, sync);
    }
    st = store_.Commit();
    counters_.commits++;
    if (!st.ok()) {
      DiskFailed(st);
      for (auto& d : dones) d(Status::Error("disk failed: " + st.message()));
      return;
    }
    counters_.writes += dones.size();
    last_write_ms_ = clock_.NowMs();
    if (!replicate) {
      WritersAnswered();
      for (auto& d : dones) d(Status::Ok());
    } else if (opts_.protocol == Protocol::kA) {
      // Acknowledged now, but still tracked until the peer has it durably:
      // a demotion waits for it (a planned switch-over must not lose
      // acknowledged writes), and it counts as unacknowledged bytes.
      pending_.push_back(Pending{marker, {}, batch_bytes});
      unacked_bytes_ += batch_bytes;
      WritersAnswered();
      for (auto& d : dones) d(Status::Ok());
    } else {
      pending_.push_back(Pending{marker, std::move(dones), batch_bytes});
      unacked_bytes_ += batch_bytes;
    }
    (void)changes_.MaybeCompact();
  }
}

void Replica::NoteAppend(const std::string& path, uint64_t last_chunk) {
  recent_appends_[path] = RecentAppend{last_chunk, append_batch_};
  // Forget the files not appended to lately, and the oldest beyond the
  // limit.
  for (auto it = recent_appends_.begin(); it != recent_appends_.end();) {
    if (it->second.batch + kAppendBatchesRecent < append_batch_) {
      it = recent_appends_.erase(it);
    } else {
      ++it;
    }
  }
  while (recent_appends_.size() > kAppendFilesMax) {
    auto oldest = recent_appends_.begin();
    for (auto it = recent_appends_.begin(); it != recent_appends_.end(); ++it) {
      if (it->second.batch < oldest->second.batch) oldest = it;
    }
    recent_appends_.erase(oldest);
  }
}

std::vector<ChunkRef> Replica::AheadRefs() const {
  // Every recently appended file, not only those of this batch, is topped
  // up at once, so that their next crossings into unrecorded chunks fall in
  // the same later batch, not one file per batch. Together the chunks ahead
  // fill at most half of the activity log, so they are not evicted before
  // they are written. Used only when the batch needs a journal append
  // anyway (ChangeSet::Record).
  std::vector<ChunkRef> ahead;
  if (recent_appends_.empty()) return ahead;
  uint64_t per_file = opts_.hot_chunks / (2 * recent_appends_.size());
  per_file = std::min(per_file, kAheadChunksMax);
  for (const auto& [path, recent] : recent_appends_) {
    const uint64_t last = recent.last_chunk;
    for (uint64_t c = last + 1; c <= last + per_file && c <= kChunkIndexMax; ++c) ahead.push_back({path, c});
  }
  return ahead;
}

void Replica::CompleteUpTo(uint64_t write_id, bool durable) {
  std::vector<WriteDone> answers;
  while (!pending_.empty() && pending_.front().write_id <= write_id) {
    if (!durable && opts_.protocol == Protocol::kC) break;
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    unacked_bytes_ -= std::min(unacked_bytes_, p.bytes);
    for (auto& d : p.done) answers.push_back(std::move(d));
  }
  if (!answers.empty()) WritersAnswered();
  for (auto& d : answers) d(Status::Ok());
  if (demoting_ && pending_.empty()) FinishDemote();
}

void Replica::OnAck(const Ack& a) {
  if (a.write_id >= next_write_id_) {
    Drop("protocol: acknowledgement of a write never sent");
    return;
  }
  if (a.level == AckLevel::kDurable) {
    acked_durable_ = std::max(acked_durable_, a.write_id);
    changes_.Acknowledged(a.write_id);
    CompleteUpTo(a.write_id, true);
  } else {
    acked_received_ = std::max(acked_received_, a.write_id);
    if (opts_.protocol == Protocol::kB) CompleteUpTo(a.write_id, false);
  }
}

void Replica::ApplyRemoteWrite(Write w) {
  bool from_sync = state_ == ReplState::kSyncTarget || state_ == ReplState::kMerging ||
                   state_ == ReplState::kVerifyTarget;
  if (primary_ && !(from_sync && w.write_id == 0)) {
    Drop("protocol: the peer sent a write but this host is primary");
    return;
  }
  if (!(peer_ && peer_->role == NodeRole::kPrimary) && !(from_sync && w.write_id == 0)) {
    Drop("protocol: write from a peer that is not primary");
    return;
  }
  if (w.op == WriteOp::kSync) {
    if (opts_.protocol == Protocol::kB) {
      SendFrame(FrameType::kAck, Ack{w.write_id, AckLevel::kReceived});
    }
    Status st = store_.Commit();
    counters_.commits++;
    if (!st.ok()) {
      DiskFailed(st);
      return;
    }
    SendFrame(FrameType::kAck, Ack{w.write_id, AckLevel::kDurable});
    return;
  }
  Status st = store_.Apply(&w);
  if (!st.ok()) {
    if (w.op == WriteOp::kRename && st.message().find("No such file") != std::string::npos) {
      // The source is not here yet (a sync in progress: the new name
      // follows as a sync item, see Flush), or a divergence.
      Log(kWarn, "rename of a missing file " + w.path + " (ignored)");
      return;
    }
    DiskFailed(st);
    return;
  }
  counters_.write_bytes += w.data.size();
}

// ---------------------------------------------------------- connection

Hello Replica::MakeHello() const {
  Hello h;
  h.node = opts_.node;
  h.role = primary_ ? NodeRole::kPrimary : NodeRole::kSecondary;
  h.protocol = opts_.protocol;
  const Generations g = Advertised();
  h.gen_current = g.current;
  h.gen_bitmap = g.bitmap;
  h.gen_history = g.history;
  h.volume_bytes = 0;
  h.software = opts_.software.substr(0, kSoftwareVersionBytesMax);
  return h;
}

void Replica::SendFrame(FrameType type, FrameBody body) {
  if (!transport_) return;
  // Until the peer's greeting has given the ids, only the connecting side's
  // kHello can go out (a kError of a Drop in between is left out).
  if (conn_id_ == 0 || (accept_id_ == 0 && send_seq_ > 0)) return;
  Frame f{type, 0, ++send_seq_, conn_id_, accept_id_, std::move(body)};
  std::vector<uint8_t> bytes = encoder_->Encode(f);
  counters_.frames_sent++;
  counters_.bytes_sent += bytes.size();
  transport_->Send(std::move(bytes));
}

void Replica::Connected(std::unique_ptr<Transport> t, bool outgoing) {
  if (transport_) Disconnected("replaced by a new connection");
  if (state_ == ReplState::kStandAlone || disk_ == DiskState::kFailed) {
    t->Close();
    return;
  }
  transport_ = std::move(t);
  const Direction own = outgoing ? Direction::kFromConnecting : Direction::kFromAccepting;
  const Direction peer = outgoing ? Direction::kFromAccepting : Direction::kFromConnecting;
  decoder_ = std::make_unique<FrameDecoder>(opts_.key, peer);
  decoder_->AdoptStorage(std::move(decode_storage_));
  encoder_ = std::make_unique<FrameEncoder>(opts_.key, own);
  outgoing_ = outgoing;
  send_seq_ = 0;
  greeted_ = verified_ = false;
  peer_.reset();
  last_heard_ms_ = last_ping_ms_ = clock_.NowMs();
  counters_.connections++;
  SetState(ReplState::kHandshake);
  if (outgoing) {
    conn_id_ = Fresh();
    accept_id_ = 0;  // learnt from the kHelloAck
    decoder_->ExpectConnection(conn_id_);
    SendFrame(FrameType::kHello, MakeHello());
  } else {
    conn_id_ = 0;  // learnt from the kHello
    accept_id_ = Fresh();
    decoder_->ExpectAcceptId(accept_id_);
  }
}

void Replica::Received(std::span<const uint8_t> bytes) {
  if (!decoder_) return;
  counters_.bytes_received += bytes.size();
  decoder_->Feed(bytes);
  Frame f;
  while (decoder_) {
    FrameDecoder::Result r = decoder_->Next(&f);
    if (r == FrameDecoder::kNeedMore) break;
    if (r == FrameDecoder::kError) {
      counters_.frames_rejected++;
      Drop("bad frame from the peer: " + decoder_->error());
      return;
    }
    if (conn_id_ == 0) conn_id_ = decoder_->conn_id();
    if (accept_id_ == 0) accept_id_ = decoder_->accept_id();
    counters_.frames_received++;
    // Only whole, authentic frames count as hearing from the peer: bytes
    // that never complete a frame (a corrupted length field swallowing
    // everything after it) must not keep a dead connection alive while the
    // writes waiting for the peer hang.
    last_heard_ms_ = clock_.NowMs();
    OnFrame(std::move(f));
  }
}

void Replica::Drop(const std::string& why, bool standalone) {
  if (transport_) {
    if (!why.empty() && why.rfind("protocol", 0) == 0) {
      SendFrame(FrameType::kError, Error{kErrProtocol, why.substr(0, kErrorMessageBytesMax)});
    }
  }
  Disconnected(why);
  if (standalone) {
    standalone_reason_ = why;
    SetState(ReplState::kStandAlone);
  }
}

void Replica::Disconnected(const std::string& why) {
  if (!transport_ && state_ != ReplState::kHandshake) {
    if (state_ != ReplState::kStandAlone) SetState(ReplState::kConnecting);
    return;
  }
  ReplState was = state_;
  if (transport_) transport_->Close();
  transport_.reset();
  if (decoder_) decode_storage_ = decoder_->ReleaseStorage();
  decoder_.reset();
  encoder_.reset();
  greeted_ = verified_ = false;
  bool had_peer = peer_.has_value();
  peer_.reset();
  last_error_ = why;
  Log(had_peer ? kWarn : kInfo, "replication connection closed: " + why);
  sync_work_.clear();
  verify_files_.clear();
  // The peer is away: every recorded chunk it may lack stays until the
  // next sync.
  changes_.PinAll(acked_durable_);
  // Also when a change map is already kept but this host was sending a
  // sync: the target may have adopted the current generation just before
  // the connection broke (it persists before it acknowledges), so what this
  // host writes alone from now on must not carry that id, or the next
  // decision takes it for data the peer already has (rule 5) and overwrites
  // it. The map's older id is kept, as the doc says.
  if (primary_ && gens_.current != kNoGeneration && had_peer &&
      (gens_.bitmap == kNoGeneration || was == ReplState::kSyncSource)) {
    gens_ = StartTrackingWhileDisconnected(gens_, Fresh());
    // Unpersisted, the new generation would be gone after a crash, and the
    // writes this host acknowledges alone from now on would look like the
    // peer's old data to the next sync decision (and be overwritten).
    if (Status st = Persist(); !st.ok()) DiskFailed(st.Prefix("replica metadata: "));
    Log(kWarn, "peer away: this primary keeps writing unprotected; generations " + ToString(gens_));
  }
  // Writes waiting for the peer complete on the local copy (now recorded
  // as changed, resent at the next sync).
  auto waiting = std::move(pending_);
  pending_.clear();
  unacked_bytes_ = 0;
  WritersAnswered();
  for (auto& p : waiting) {
    for (auto& d : p.done) d(Status::Ok());
  }
  if (demoting_) FinishDemote();
  if (was == ReplState::kSyncTarget && disk_ == DiskState::kUpToDate) (void)SetDisk(DiskState::kInconsistent);
  if (state_ != ReplState::kStandAlone) SetState(ReplState::kConnecting);
}

void Replica::OnFrame(Frame f) {
  if (!greeted_) {
    FrameType want = outgoing_ ? FrameType::kHelloAck : FrameType::kHello;
    if (f.type != want) {
      Drop("protocol: expected the peer's greeting, got " + std::string(FrameTypeName(f.type)));
      return;
    }
    OnHello(std::get<Hello>(f.body), f.type);
    return;
  }
  if (!verified_) {
    // The acceptor's nonce, echoed: a recording of an earlier connection
    // replayed to us cannot answer it (docs/formats/replication.md).
    if (outgoing_ && f.type == FrameType::kPing) {
      SendFrame(FrameType::kPong, std::get<Ping>(f.body));
      verified_ = true;
      Decide();
      return;
    }
    if (!outgoing_ && f.type == FrameType::kPong && std::get<Ping>(f.body).timestamp == nonce_) {
      verified_ = true;
      Decide();
      return;
    }
    Drop("protocol: expected the nonce exchange, got " + std::string(FrameTypeName(f.type)));
    return;
  }
  switch (f.type) {
    case FrameType::kHello: {
      const Hello& h = std::get<Hello>(f.body);
      if (h.node != peer_->node) {
        Drop("protocol: the peer changed its name");
        return;
      }
      peer_ = h;
      if (h.role == NodeRole::kPrimary && primary_) Drop("both hosts are primary");
      return;
    }
    case FrameType::kWrite: ApplyRemoteWrite(std::move(std::get<Write>(f.body))); return;
    case FrameType::kAck: OnAck(std::get<Ack>(f.body)); return;
    case FrameType::kSyncRequest: OnSyncRequest(std::get<SyncRequest>(f.body)); return;
    case FrameType::kSyncData: OnSyncData(std::get<SyncData>(f.body)); return;
    case FrameType::kSyncDone: OnSyncDone(std::get<SyncDone>(f.body)); return;
    case FrameType::kVerifyRequest: OnVerifyRequest(std::get<VerifyRequest>(f.body)); return;
    case FrameType::kVerifyReply: OnVerifyReply(std::get<VerifyReply>(f.body)); return;
    case FrameType::kPing: SendFrame(FrameType::kPong, std::get<Ping>(f.body)); return;
    case FrameType::kPong: return;
    case FrameType::kError: Drop("the peer closed: " + std::get<Error>(f.body).message); return;
    case FrameType::kHelloAck:
      Drop("protocol: unexpected hello_ack");
      return;
  }
}

void Replica::OnHello(const Hello& h, FrameType type) {
  // Without a configured peer name any holder of the cluster key but
  // ourselves (a reflected greeting) is the peer.
  bool name_ok = opts_.peer_node.empty() ? h.node != opts_.node : h.node == opts_.peer_node;
  if (!name_ok) {
    Drop("protocol: the peer calls itself '" + h.node + "', expected '" + opts_.peer_node + "'");
    return;
  }
  Generations g{h.gen_current, h.gen_bitmap, h.gen_history};
  if (!Valid(g)) {
    Drop("protocol: the peer's generations are invalid");
    return;
  }
  if (h.protocol != opts_.protocol) {
    Drop("the peer replicates with protocol " + std::string(1, static_cast<char>(h.protocol)) +
             ", this host with " + std::string(1, static_cast<char>(opts_.protocol)),
         false);
    return;
  }
  peer_ = h;
  greeted_ = true;
  if (type == FrameType::kHello) {
    SendFrame(FrameType::kHelloAck, MakeHello());
    nonce_ = Fresh();
    SendFrame(FrameType::kPing, Ping{nonce_});
  }
}

void Replica::Decide() {
  Generations peer{peer_->gen_current, peer_->gen_bitmap, peer_->gen_history};
  SyncDecision d = repl::Decide(Advertised(), peer);
  bool peer_primary = peer_->role == NodeRole::kPrimary;
  Log(kInfo, "connected to " + PeerName() + ": local " + ToString(Advertised()) + " peer " +
                 ToString(peer) + ": " + std::string(SyncKindName(d.kind)) + " (" + d.why + ")");
  last_sync_ = std::string(SyncKindName(d.kind)) + ": " + d.why;
  if (primary_ && peer_primary) {
    Drop("both hosts are primary");
    return;
  }
  switch (d.kind) {
    case SyncKind::kNone:
    case SyncKind::kBothFresh:
      if (disk_ == DiskState::kOutdated && !SetDisk(DiskState::kUpToDate)) return;
      SetState(ReplState::kEstablished);
      return;
    case SyncKind::kPartialFromLocal:
    case SyncKind::kFullFromLocal:
      if (peer_primary) {
        Drop("the peer is primary but holds older data (" + d.why + "): demote it", true);
        return;
      }
      if (disk_ == DiskState::kInconsistent) {
        // DRBD's "I shall become SyncSource, but I am inconsistent": the
        // target would come out UpToDate with this half-synced data, and be
        // promoted without anyone having said --force.
        Drop("this host should be the sync source (" + d.why + ") but its data is Inconsistent: "
             "take over with --force to use it anyway", true);
        return;
      }
      BeginSyncSource(d.kind == SyncKind::kFullFromLocal);
      return;
    case SyncKind::kPartialFromPeer:
    case SyncKind::kFullFromPeer:
      if (primary_) {
        if (!SetDisk(DiskState::kOutdated)) return;
        Drop("this host is primary but the peer holds newer data (" + d.why + ")", true);
        return;
      }
      BeginSyncTarget(d.kind == SyncKind::kFullFromPeer);
      return;
    case SyncKind::kSplitBrain: BeginSplitBrain(); return;
    case SyncKind::kUnrelated: Drop(d.why, true); return;
  }
}

// ------------------------------------------------------------- resync

void Replica::BeginSyncSource(bool full) {
  // What is sent must be durable here first: the target commits it, and a
  // power loss here must not leave the two copies different with no change
  // recorded (e.g. writes this host received as secondary, never synced).
  if (Status st = store_.Commit(); !st.ok()) {
    DiskFailed(st);
    return;
  }
  changes_.PinAll();
  full_sync_ = full;
  sync_covered_id_ = next_write_id_ - 1;
  sync_work_.clear();
  if (full) {
    auto files = store_.List();
    if (!files.ok()) {
      DiskFailed(files.status());
      return;
    }
    for (const std::string& p : *files) sync_work_.push_back(SyncItem{p, {kWholeFile}});
  } else {
    for (auto& [p, chunks] : changes_.Pinned()) sync_work_.push_back(SyncItem{p, chunks});
  }
  peer_requests_done_ = sync_sent_done_ = peer_finished_ = false;
  uint64_t total = 0;
  for (const SyncItem& it : sync_work_) {
    auto s = store_.Size(it.path);
    uint64_t size = s.ok() ? s->value_or(0) : 0;
    total += it.chunks.count(kWholeFile) ? size : std::min<uint64_t>(size, it.chunks.size() * kChunkBytes);
  }
  // The progress is reset before the state changes: the state change
  // publishes the status, which must not show the previous sync's numbers.
  ResetSyncProgress(total);
  SetState(ReplState::kSyncSource);
  Log(kWarn, std::string(full ? "full" : "partial") + " sync to " + PeerName() + " begins: " +
                 std::to_string(sync_work_.size()) + " files, ~" + std::to_string(sync_total_bytes_) +
                 " bytes");
}

void Replica::SendChangeList(const std::map<std::string, std::set<uint64_t>>& list, uint64_t flags) {
  uint64_t n = 0;
  for (const auto& [path, chunks] : list) {
    if (chunks.count(kWholeFile)) {
      SendFrame(FrameType::kSyncRequest, SyncRequest{path, 0, kWholeCount});
      n++;
      continue;
    }
    auto it = chunks.begin();
    while (it != chunks.end()) {
      uint64_t start = *it, count = 1;
      auto next = std::next(it);
      while (next != chunks.end() && *next == start + count && count < kWholeCount - 1) {
        ++count;
        ++next;
      }
      SendFrame(FrameType::kSyncRequest, SyncRequest{path, start, static_cast<uint32_t>(count)});
      n++;
      it = next;
    }
  }
  SendFrame(FrameType::kSyncDone, SyncDone{flags, n});
}

void Replica::ResetSyncProgress(uint64_t total_bytes) {
  sync_total_bytes_ = total_bytes;
  sync_done_bytes_ = 0;
  sync_started_ms_ = clock_.NowMs();
  sync_requests_in_ms_ = sync_data_out_ms_ = sync_target_done_ms_ = sync_first_data_ms_ = sync_last_data_ms_ = -1;
  StartTokenBucket();
  writeback_path_.clear();
  writeback_bytes_ = 0;
  sync_data_path_.clear();
}

// The bucket starts with 10 ms worth of tokens (at least two chunks), so a
// sync sends at once instead of waiting for the first refill tick: a small
// resync is over in a few ticks, and 10 ms of burst is 1% of a 1 s sync
// at the configured rate.
void Replica::StartTokenBucket() {
  tokens_ms_ = clock_.NowMs();
  tokens_ = std::max(static_cast<double>(opts_.sync_rate_bytes) / 100.0, 2.0 * kChunkBytes);
}

Generations Replica::Advertised() const { return full_sync_wanted_ ? Wiped() : gens_; }

void Replica::BeginSyncTarget(bool full) {
  std::map<std::string, std::set<uint64_t>> list;
  if (full) {
    auto files = store_.List();
    if (!files.ok()) {
      DiskFailed(files.status());
      return;
    }
    for (const std::string& p : *files) list[p].insert(kWholeFile);
  } else {
    list = changes_.Pinned();
  }
  // The requests go out before the replica is marked Inconsistent on disk,
  // so that the source reads and sends while the metadata is flushed here.
  // Nothing it sends is applied before that flush is done: the data comes
  // in through the event loop, after this function has returned.
  SendChangeList(list, 0);
  if (!transport_) return;  // the send failed and disconnected
  if (disk_ != DiskState::kInconsistent && !SetDisk(DiskState::kInconsistent)) return;
  full_sync_ = full;
  ResetSyncProgress(0);
  SetState(ReplState::kSyncTarget);
}

void Replica::OnSyncRequest(const SyncRequest& r) {
  std::set<uint64_t> chunks;
  if (r.chunk_count == kWholeCount && r.chunk_index == 0) {
    chunks.insert(kWholeFile);
  } else {
    // Bounded: a request for more chunks than the file has is cut to it.
    auto s = store_.Size(r.path);
    uint64_t have = s.ok() && s->has_value() ? LastChunk(**s) + 1 : 1;
    uint64_t end = std::min<uint64_t>(r.chunk_index + r.chunk_count, std::max(have, r.chunk_index + 1));
    for (uint64_t c = r.chunk_index; c < end; ++c) chunks.insert(c);
  }
  switch (state_) {
    case ReplState::kSplitBrainWait:
      peer_changes_[r.path].insert(chunks.begin(), chunks.end());
      return;
    case ReplState::kSyncSource:
    case ReplState::kVerifySource: {
      auto s = store_.Size(r.path);
      uint64_t size = s.ok() ? s->value_or(0) : 0;
      sync_total_bytes_ += chunks.count(kWholeFile) ? size : std::min<uint64_t>(size, chunks.size() * kChunkBytes);
      sync_work_.push_back(SyncItem{r.path, std::move(chunks)});
      return;
    }
    default:
      Drop("protocol: sync request in state " + std::string(ReplStateName(state_)));
      return;
  }
}

bool Replica::SendSyncItem(SyncItem& item, uint64_t* budget) {
  if (item.chunks.count(kWholeFile)) {
    auto s = store_.Size(item.path);
    if (!s.ok()) {
      DiskFailed(s.status());
      return true;
    }
    item.chunks.clear();
    if (!s->has_value()) {
      Write del;
      del.op = WriteOp::kDelete;
      del.path = item.path;
      SendFrame(FrameType::kWrite, del);
      return transport_ != nullptr;  // a failed send disconnects: `item` is gone then
    }
    for (uint64_t c = 0; c <= LastChunk(**s); ++c) item.chunks.insert(c);
  }
  while (!item.chunks.empty() && *budget > 0) {
    uint64_t c = *item.chunks.begin();
    item.chunks.erase(item.chunks.begin());
    uint64_t size = 0;
    auto data = store_.ReadChunk(item.path, c, &size);
    if (!data.ok()) {
      DiskFailed(data.status());
      return true;
    }
    if (!data->has_value()) {
      Write del;
      del.op = WriteOp::kDelete;
      del.path = item.path;
      SendFrame(FrameType::kWrite, del);
      return transport_ != nullptr;  // a failed send disconnects: `item` is gone then
    }
    uint64_t len = (*data)->size();
    if (len == 0) {
      // At or past the end of the file: this frame's size truncates the
      // target's copy, which is all the later (also past the end) chunks of
      // the item would do. Chunks recorded ahead but never written (see
      // AheadRefs) cost one frame per file, not one per chunk.
      item.chunks.clear();
    }
    SendFrame(FrameType::kSyncData, SyncData{item.path, c, size, std::move(**data)});
    // A send that fails disconnects at once, and Disconnected clears
    // sync_work_: `item` no longer exists (found by ASan in CI).
    if (!transport_) return false;
    counters_.sync_bytes_sent += len;
    sync_done_bytes_ += len;
    *budget -= std::min<uint64_t>(*budget, std::max<uint64_t>(len, 4096));
    tokens_ -= static_cast<double>(std::max<uint64_t>(len, 4096));
  }
  return item.chunks.empty();
}

void Replica::Pump() {
  PumpVerify();
  PumpSync();
}

void Replica::PumpSync() {
  bool sending = state_ == ReplState::kSyncSource || state_ == ReplState::kMerging ||
                 state_ == ReplState::kVerifySource;
  if (!sending || !transport_) return;
  int64_t now = clock_.NowMs();
  double rate = static_cast<double>(opts_.sync_rate_bytes);
  tokens_ = std::min(tokens_ + rate * static_cast<double>(now - tokens_ms_) / 1000.0,
                     std::max(rate / 20, 2.0 * kChunkBytes));
  tokens_ms_ = now;
  while (!sync_work_.empty() && tokens_ > 0 && transport_ && transport_->Backlog() < kSyncBacklogMax) {
    uint64_t budget = static_cast<uint64_t>(tokens_);
    if (budget == 0) break;
    if (SendSyncItem(sync_work_.front(), &budget)) {
      if (!sync_work_.empty()) sync_work_.pop_front();
    }
  }
  if (!transport_) return;
  if (sync_work_.empty() && peer_requests_done_ && !sync_sent_done_) {
    if (state_ == ReplState::kSyncSource) {
      sync_sent_done_ = true;
      sync_data_out_ms_ = clock_.NowMs() - sync_started_ms_;
      SendFrame(FrameType::kSyncDone, SyncDone{sync_done_bytes_, 0});
    } else if (state_ == ReplState::kMerging) {
      sync_sent_done_ = true;
      SendFrame(FrameType::kSyncDone, SyncDone{sync_done_bytes_, 0});
      MaybeFinishMerge();
    } else if (state_ == ReplState::kVerifySource && verify_done_sent_) {
      sync_sent_done_ = true;
      SendFrame(FrameType::kSyncDone, SyncDone{sync_done_bytes_, 0});
      last_verify_ = "verified " + std::to_string(counters_.verify_chunks - verify_base_chunks_) +
                     " chunks, " + std::to_string(counters_.verify_differ - verify_base_differ_) +
                     " differed and were resynced";
      Log(kWarn, "online verify finished: " + last_verify_);
      SetState(ReplState::kEstablished);
    }
  }
}

void Replica::OnSyncData(const SyncData& d) {
  bool ok_state = state_ == ReplState::kSyncTarget || state_ == ReplState::kMerging ||
                  state_ == ReplState::kVerifyTarget;
  if (!ok_state) {
    Drop("protocol: sync data in state " + std::string(ReplStateName(state_)));
    return;
  }
  Status st = store_.ApplyChunk(d.path, d.chunk_index, d.file_size, d.data);
  if (!st.ok()) {
    DiskFailed(st);
    return;
  }
  counters_.sync_bytes_received += d.data.size();
  sync_done_bytes_ += d.data.size();
  sync_last_data_ms_ = clock_.NowMs() - sync_started_ms_;
  if (sync_first_data_ms_ < 0) sync_first_data_ms_ = sync_last_data_ms_;
  if (state_ == ReplState::kSyncTarget && d.path != sync_data_path_) {
    // The source sends a file's chunks one after the other: the previous
    // file is complete for now. Its early sync overlaps the transfer of
    // the next files (the final commit waits for it or, if the file
    // changes again, syncs it anyway); scattered chunks of a resync get
    // one per file, not one per chunk.
    if (!sync_data_path_.empty()) (void)store_.SyncEarly(sync_data_path_);
    sync_data_path_ = d.path;
  }
  if (!d.data.empty()) {
    const bool file_end = d.chunk_index == LastChunk(d.file_size);
    HintWriteback(d.path, d.chunk_index * kChunkBytes, d.data.size(), file_end);
    // The file's last chunk: make it durable now, beside the transfer of
    // the next files, so the final commit has little left to sync (it
    // still syncs whatever changed after this).
    if (file_end && state_ == ReplState::kSyncTarget) (void)store_.SyncEarly(d.path);
  }
}

// The target commits only at the end of the sync (nothing is acknowledged
// before), but the kernel is told to start writing back what arrived, slice
// by slice, so that the flush overlaps the transfer instead of following it.
void Replica::HintWriteback(const std::string& path, uint64_t offset, uint64_t length,
                            bool file_end) {
  if (!opts_.start_writeback) return;
  if (writeback_bytes_ > 0 && (path != writeback_path_ || offset != writeback_from_ + writeback_bytes_)) {
    // A run that ends before a slice is full: scattered chunks (a resync)
    // are not worth a hint each (a job on the I/O pool per chunk); the
    // final commit flushes them. Long runs were hinted slice by slice.
    if (writeback_bytes_ >= kWritebackRunMin) FlushWritebackHint();
    writeback_bytes_ = 0;
  }
  if (writeback_bytes_ == 0) {
    writeback_path_ = path;
    writeback_from_ = offset;
  }
  writeback_bytes_ += length;
  if (writeback_bytes_ >= kWritebackSliceBytes || (file_end && writeback_bytes_ >= kWritebackRunMin)) {
    FlushWritebackHint();
  } else if (file_end) {
    writeback_bytes_ = 0;
  }
}

void Replica::FlushWritebackHint() {
  if (writeback_bytes_ == 0) return;
  opts_.start_writeback(store_.Full(writeback_path_), writeback_from_, writeback_bytes_);
  writeback_from_ += writeback_bytes_;
  writeback_bytes_ = 0;
}

void Replica::OnSyncDone(const SyncDone& d) {
  switch (state_) {
    case ReplState::kSyncSource:
      if (!peer_requests_done_) {
        peer_requests_done_ = true;
        sync_requests_in_ms_ = clock_.NowMs() - sync_started_ms_;
      } else if (sync_sent_done_) {
        sync_target_done_ms_ = clock_.NowMs() - sync_started_ms_;
        FinishSyncSource();
      } else {
        Drop("protocol: sync finished before it was sent");
      }
      return;
    case ReplState::kSyncTarget: FinishSyncTarget(); return;
    case ReplState::kSplitBrainWait:
      peer_flags_ = d.bytes_sent;
      peer_requests_done_ = true;
      ResolveAfterExchange();
      return;
    case ReplState::kMerging:
      merge_done_received_++;
      if (merge_done_received_ == 1) {
        // The peer's data is all here: make it durable, then say so.
        Status st = store_.Commit();
        if (!st.ok()) {
          DiskFailed(st);
          return;
        }
      }
      MaybeFinishMerge();
      return;
    case ReplState::kVerifySource:
      peer_requests_done_ = true;
      return;
    case ReplState::kVerifyTarget:
      if (!verify_done_sent_) {
        // The source compared all its files: ours that it does not have are
        // requested so that it tells us to delete them (or sends them).
        verify_done_sent_ = true;
        auto files = store_.List();
        if (!files.ok()) {
          DiskFailed(files.status());
          return;
        }
        std::map<std::string, std::set<uint64_t>> extra;
        for (const std::string& p : *files) {
          if (!verify_seen_.count(p)) extra[p].insert(kWholeFile);
        }
        SendChangeList(extra, 0);
      } else {
        Status st = store_.Commit();
        if (!st.ok()) {
          DiskFailed(st);
          return;
        }
        verify_seen_.clear();
        SetState(ReplState::kEstablished);
      }
      return;
    default: Drop("protocol: sync_done in state " + std::string(ReplStateName(state_))); return;
  }
}

void Replica::FinishSyncTarget() {
  writeback_bytes_ = 0;
  const int64_t commit_from_ms = clock_.NowMs();
  const size_t commit_files = store_.dirty_files();
  const uint64_t early_before = store_.early_syncs_used() + store_.early_syncs_waited();
  Status st = store_.Commit();
  const uint64_t early = store_.early_syncs_used() + store_.early_syncs_waited() - early_before;
  const int64_t commit_ms = clock_.NowMs() - commit_from_ms;
  if (!st.ok()) {
    DiskFailed(st);
    return;
  }
  Generations source{peer_->gen_current, peer_->gen_bitmap, peer_->gen_history};
  gens_ = SyncFinishedOnTarget(SyncFinished(source));
  disk_ = DiskState::kUpToDate;
  discard_local_ = false;     // a split-brain resolution is complete
  full_sync_wanted_ = false;  // an invalidate is complete
  // Crash ordering (docs/REPLICATION.md, "Order of the disk syncs of a
  // sync"): the data is durable (Commit above) before either of
  // these starts, and both are durable before kSyncDone goes out. Between
  // themselves they are independent, so they run side by side: a power
  // loss that keeps only the cleared change journal leaves the old
  // metadata (Inconsistent, old generations), and the sync is decided and
  // run again over data already committed; one that keeps only the new
  // metadata leaves old journal entries, which count as changed and at most
  // resend chunks that are already equal.
  changes_.ClearEntries();
  st = RunSideBySide({[this] { return changes_.RewriteJournal(); }, PersistJob()});
  if (!st.ok()) {
    DiskFailed(st);
    return;
  }
  counters_.syncs_completed++;
  int64_t took = clock_.NowMs() - sync_started_ms_;
  last_sync_ = "received " + std::to_string(sync_done_bytes_) + " bytes in " +
               std::to_string(took) + " ms (data from +" + std::to_string(sync_first_data_ms_) +
               " to +" + std::to_string(sync_last_data_ms_) + " ms, final commit " +
               std::to_string(commit_ms) + " ms of " + std::to_string(commit_files) + " files, " +
               std::to_string(early) + " of them synced early" +
               ", then metadata " + std::to_string(clock_.NowMs() - commit_from_ms - commit_ms) +
               " ms)";
  Log(kWarn, "sync from " + PeerName() + " finished: " + last_sync_ + "; generations " +
                 ToString(gens_));
  SendFrame(FrameType::kSyncDone, SyncDone{0, 0});
  peer_->gen_current = gens_.current;
  peer_->gen_bitmap = kNoGeneration;
  peer_->gen_history = gens_.history;
  SetState(ReplState::kEstablished);
  if (on_change_) on_change_();
}

void Replica::FinishSyncSource() {
  gens_ = SyncFinished(gens_);
  // The target has persisted its new generations (it answers kSyncDone
  // only then); the change journal and the rotated generations are
  // independent of each other and run side by side: a power loss that
  // keeps only the journal leaves this host's old map id with a map holding
  // just the writes not yet covered (rule 4: a partial resync of those),
  // one that keeps only the metadata leaves old journal entries, which only
  // resend chunks that are equal (docs/REPLICATION.md).
  changes_.SyncFinishedEntries(std::max(sync_covered_id_, acked_durable_));
  changes_.UnpinAll();
  // The change journal and the rotated generations are written at the next
  // tick, after the sync (docs/REPLICATION.md, "Order of the disk syncs of
  // a sync"): the target has everything durably already, and until then a
  // power loss here only brings back the older records (over-inclusive, as
  // below). Written here, their syncs (a journal still holding entries is
  // rewritten through a temporary file and a rename: a commit of the file
  // system's journal) made the end of every resync wait for them.
  source_records_due_ = true;
  counters_.syncs_completed++;
  int64_t took = clock_.NowMs() - sync_started_ms_;
  last_sync_ = "sent " + std::to_string(sync_done_bytes_) + " bytes in " + std::to_string(took) +
               " ms (requests in by +" + std::to_string(sync_requests_in_ms_) + " ms, data out by +" +
               std::to_string(sync_data_out_ms_) + " ms, the target done by +" +
               std::to_string(sync_target_done_ms_) + " ms)";
  Log(kWarn, "sync to " + PeerName() + " finished: " + last_sync_ + "; generations " +
                 ToString(gens_));
  peer_->gen_current = gens_.current;
  peer_->gen_bitmap = kNoGeneration;
  peer_->gen_history = gens_.history;
  SetState(ReplState::kEstablished);
}

// ---------------------------------------------------------- split brain

void Replica::BeginSplitBrain() {
  counters_.split_brains++;
  changes_.PinAll();
  SetState(ReplState::kSplitBrainWait);
  peer_changes_.clear();
  peer_requests_done_ = false;
  Log(kError, "split brain with " + PeerName() + ": local " + ToString(gens_) +
                  " peer " + std::to_string(peer_->gen_current) + "; exchanging change lists");
  SendChangeList(changes_.Pinned(), (discard_local_ ? kFlagDiscard : 0) | (survivor_ ? kFlagSurvivor : 0));
}

void Replica::ResolveAfterExchange() {
  auto mine = changes_.Pinned();
  const auto& theirs = peer_changes_;
  bool i_discard = discard_local_ || (peer_flags_ & kFlagSurvivor);
  bool they_discard = (peer_flags_ & kFlagDiscard) || survivor_;
  bool peer_primary = peer_->role == NodeRole::kPrimary;
  auto union_work = [&] {
    std::map<std::string, std::set<uint64_t>> all = mine;
    for (const auto& [p, c] : theirs) all[p].insert(c.begin(), c.end());
    return all;
  };
  enum { kSource, kTarget, kMerge, kStuck } outcome = kStuck;
  std::string why;
  if (i_discard && they_discard) {
    why = "both hosts were told to discard (or both to survive)";
  } else if (i_discard) {
    outcome = kTarget;
    why = "the admin chose " + PeerName() + " as survivor";
  } else if (they_discard) {
    outcome = kSource;
    why = "the admin chose " + opts_.node + " as survivor";
  } else if (mine.empty() != theirs.empty()) {
    outcome = mine.empty() ? kTarget : kSource;
    why = std::string("only ") + (mine.empty() ? PeerName() : opts_.node) +
          " changed anything (the other side has zero changes)";
  } else if (mine.empty() && theirs.empty()) {
    // Neither wrote: any direction loses nothing; the primary (or the
    // larger current generation) is the source.
    bool me = primary_ || (!peer_primary && gens_.current > peer_->gen_current);
    outcome = me ? kSource : kTarget;
    why = "neither side changed anything";
  } else {
    bool mergeable = !opts_.merge_prefixes.empty();
    std::string conflict;
    for (const auto& [p, c] : mine) {
      if (!UnderPrefix(p, opts_.merge_prefixes)) {
        mergeable = false;
        conflict = p;
        break;
      }
      if (theirs.count(p)) {
        mergeable = false;
        conflict = p;
        break;
      }
    }
    for (const auto& [p, c] : theirs) {
      if (!mergeable) break;
      if (!UnderPrefix(p, opts_.merge_prefixes)) {
        mergeable = false;
        conflict = p;
      }
    }
    if (mergeable) {
      outcome = kMerge;
      why = "every change is in an append-only namespace and no file changed on both sides";
    } else {
      why = "both sides changed data (" + std::to_string(mine.size()) + " files here, " +
            std::to_string(theirs.size()) + " there; first that cannot be merged: " + conflict +
            "); choose the survivor with `ha split-brain --survivor HOST`";
    }
  }
  last_split_brain_ = why;
  Log(outcome == kStuck ? kError : kWarn, "split brain: " + why);
  switch (outcome) {
    case kStuck: Drop("split brain: " + why, true); return;
    case kTarget: {
      if (primary_) {
        Drop("split brain: this host must become the sync target but is primary; demote it", true);
        return;
      }
      bool discard = discard_local_ || (peer_flags_ & kFlagSurvivor);
      if (discard) {
        Status st = Quarantine(union_work());
        if (!st.ok()) {
          DiskFailed(st);
          return;
        }
      }
      // The resolution holds until the sync has finished (FinishSyncTarget):
      // a sync that breaks off is the same split brain at the next connect,
      // which must not need the admin again.
      bool persist = discard_local_ != discard || survivor_;
      discard_local_ = discard;
      survivor_ = false;
      if (disk_ != DiskState::kInconsistent) {
        if (!SetDisk(DiskState::kInconsistent)) return;
      } else if (persist) {
        if (Status st = Persist(); !st.ok()) {
          DiskFailed(st);
          return;
        }
      }
      full_sync_ = false;
      ResetSyncProgress(0);
      SetState(ReplState::kSyncTarget);
      return;
    }
    case kSource: {
      if (peer_primary) {
        Drop("split brain: the peer must become the sync target but is primary; demote it", true);
        return;
      }
      discard_local_ = survivor_ = false;
      (void)Persist();
      full_sync_ = false;
      sync_covered_id_ = next_write_id_ - 1;
      sync_work_.clear();
      for (auto& [p, c] : union_work()) sync_work_.push_back(SyncItem{p, c});
      peer_requests_done_ = true;
      sync_sent_done_ = peer_finished_ = false;
      ResetSyncProgress(sync_work_.size() * kChunkBytes);
      SetState(ReplState::kSyncSource);
      return;
    }
    case kMerge: {
      if (!primary_ && !SetDisk(DiskState::kInconsistent)) return;
      sync_covered_id_ = next_write_id_ - 1;
      sync_work_.clear();
      for (auto& [p, c] : mine) sync_work_.push_back(SyncItem{p, c});
      peer_requests_done_ = true;
      sync_sent_done_ = false;
      merge_done_received_ = 0;
      merge_finished_sent_ = false;
      full_sync_ = false;
      ResetSyncProgress(sync_work_.size() * kChunkBytes);
      SetState(ReplState::kMerging);
      return;
    }
  }
}

Status Replica::Quarantine(const std::map<std::string, std::set<uint64_t>>& paths) {
  // Never over an earlier quarantine: after a resolution sync that broke
  // off, the split brain is resolved again at the same generation, and the
  // half-synced files must not replace the copy kept the first time.
  std::string dir = opts_.meta_dir + "/quarantine/" + Hex(gens_.current);
  for (int n = 1;; ++n) {
    auto taken = fs_.ListFiles(dir);
    if (!taken.ok()) return taken.status();
    if (taken->empty()) break;
    dir = opts_.meta_dir + "/quarantine/" + Hex(gens_.current) + "." + std::to_string(n);
  }
  uint64_t files = 0;
  std::set<std::string> dirs;  // to sync: every directory from a file's up to meta_dir
  for (const auto& [p, c] : paths) {
    uint64_t size = 0;
    auto s = store_.Size(p);
    if (!s.ok()) return s.status();
    if (!s->has_value()) continue;
    std::string dst = dir + "/" + p;
    TANDEM_RETURN_IF_ERROR(fs_.MakeDirs(dst.substr(0, dst.rfind('/'))));
    auto out = fs_.Open(dst, true);
    if (!out.ok()) return out.status();
    TANDEM_RETURN_IF_ERROR((*out)->Truncate(0));
    for (uint64_t ci = 0; ci <= LastChunk(**s); ++ci) {
      auto data = store_.ReadChunk(p, ci, &size);
      if (!data.ok()) return data.status();
      if (!data->has_value()) break;
      TANDEM_RETURN_IF_ERROR((*out)->WriteAt(ci * kChunkBytes, **data));
    }
    TANDEM_RETURN_IF_ERROR((*out)->Sync());
    for (std::string d = dst.substr(0, dst.rfind('/')); d.size() > opts_.meta_dir.size();
         d = d.substr(0, d.rfind('/'))) {
      dirs.insert(d);
    }
    files++;
  }
  // The copies (and the new directories holding them) must survive a power
  // loss before the store is overwritten by the survivor's data.
  if (files > 0) dirs.insert(opts_.meta_dir);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) TANDEM_RETURN_IF_ERROR(fs_.SyncDir(*it));
  Log(kWarn, "split brain: kept this host's copy of " + std::to_string(files) + " files in " + dir);
  last_quarantine_ = dir;
  return Status::Ok();
}

void Replica::MaybeFinishMerge() {
  if (state_ != ReplState::kMerging) return;
  if (sync_sent_done_ && merge_done_received_ >= 1 && !merge_finished_sent_) {
    merge_finished_sent_ = true;
    SendFrame(FrameType::kSyncDone, SyncDone{0, 1});
  }
  if (merge_finished_sent_ && merge_done_received_ >= 2) FinishMerge();
}

void Replica::FinishMerge() {
  uint64_t a = gens_.current, b = peer_->gen_current;
  gens_ = Generations{MergedGeneration(a, b), kNoGeneration, {std::max(a, b), std::min(a, b)}};
  Status st = changes_.SyncFinished(std::max(sync_covered_id_, acked_durable_));
  changes_.UnpinAll();
  disk_ = DiskState::kUpToDate;
  if (st.ok()) st = Persist();
  if (!st.ok()) {
    DiskFailed(st);
    return;
  }
  counters_.syncs_completed++;
  last_sync_ = "split brain merged: sent " + std::to_string(counters_.sync_bytes_sent) + " bytes";
  Log(kWarn, "split brain merged with " + PeerName() + "; generations " + ToString(gens_));
  peer_->gen_current = gens_.current;
  peer_->gen_bitmap = kNoGeneration;
  peer_->gen_history = gens_.history;
  SetState(ReplState::kEstablished);
  if (on_change_) on_change_();
}

Status Replica::ResolveSplitBrain(bool discard_local) {
  const bool old_discard = discard_local_, old_survivor = survivor_;
  discard_local_ = discard_local;
  survivor_ = !discard_local;
  if (Status st = Persist(); !st.ok()) {
    // Refused as a whole: not applied at the next connect either.
    discard_local_ = old_discard;
    survivor_ = old_survivor;
    return st;
  }
  Log(kWarn, std::string("split brain resolution set: this host ") +
                 (discard_local ? "discards its changes (kept in quarantine)" : "is the survivor"));
  if (state_ == ReplState::kStandAlone) SetState(ReplState::kConnecting);
  return Status::Ok();
}

Status Replica::Reconnect() {
  if (disk_ == DiskState::kFailed) return Status::Error("the disk failed: " + failed_reason_);
  if (state_ == ReplState::kStandAlone) SetState(ReplState::kConnecting);
  return Status::Ok();
}

Status Replica::CheckPeerCanBeSource() const {
  switch (state_) {
    case ReplState::kStandAlone:
      return Status::Error("the replication is StandAlone (" + standalone_reason_ +
                           "): resolve that first (`ha connect`, `ha split-brain`)");
    case ReplState::kSyncSource:
    case ReplState::kVerifySource:
      return Status::Error("this host is sending a sync to " + PeerName() +
                           ": the peer is not UpToDate, this replica is the good copy");
    case ReplState::kMerging:
    case ReplState::kSplitBrainWait:
      return Status::Error("a split brain with " + PeerName() + " is being resolved");
    default: break;
  }
  if (connected() && verified_ && peer_ && peer_->gen_current == kNoGeneration) {
    return Status::Error("the peer " + peer_->node + " has no data (not UpToDate): there is "
                         "nothing to sync from");
  }
  return Status::Ok();
}

Status Replica::Invalidate() {
  if (disk_ == DiskState::kFailed) return Status::Error("the replica's disk failed: " + failed_reason_);
  if (primary_) {
    return Status::Error("this host's replica is primary (the active copy of /store); run "
                         "`ha invalidate` on the standby host");
  }
  TANDEM_RETURN_IF_ERROR(CheckPeerCanBeSource());
  const bool already_running = state_ == ReplState::kSyncTarget && full_sync_;
  const DiskState old_disk = disk_;
  const bool old_wanted = full_sync_wanted_;
  full_sync_wanted_ = true;
  disk_ = DiskState::kInconsistent;
  if (Status st = Persist(); !st.ok()) {
    full_sync_wanted_ = old_wanted;
    disk_ = old_disk;
    DiskFailed(st.Prefix("invalidate: replica metadata: "));
    return st;
  }
  Log(kWarn, "invalidated by the admin: this replica is Inconsistent until a full sync from " +
                 PeerName() + " has finished");
  if (connected() && !already_running) {
    Drop("invalidated by the admin: reconnecting for a full sync from the peer");
  }
  if (on_change_) on_change_();
  return Status::Ok();
}

// --------------------------------------------------------------- verify

Status Replica::StartVerify() {
  if (state_ != ReplState::kEstablished || !connected()) {
    return Status::Error("verify needs an established, in-sync connection (now " +
                         std::string(ReplStateName(state_)) + ")");
  }
  auto files = store_.List();
  if (!files.ok()) return files.status();
  verify_files_ = *files;
  verify_file_ = 0;
  verify_chunk_ = 0;
  verify_sent_ = verify_replied_ = 0;
  verify_done_sent_ = false;
  verify_base_chunks_ = counters_.verify_chunks;
  verify_base_differ_ = counters_.verify_differ;
  sync_work_.clear();
  peer_requests_done_ = sync_sent_done_ = false;
  sync_done_bytes_ = 0;
  sync_total_bytes_ = 0;
  auto total = store_.TotalBytes();
  verify_total_bytes_ = total.ok() ? *total : 0;
  verify_done_bytes_ = 0;
  sync_started_ms_ = clock_.NowMs();
  StartTokenBucket();
  SetState(ReplState::kVerifySource);
  Log(kWarn, "online verify begins: " + std::to_string(verify_files_.size()) + " files");
  return Status::Ok();
}

void Replica::PumpVerify() {
  if (state_ != ReplState::kVerifySource || !transport_) return;
  int64_t now = clock_.NowMs();
  double rate = static_cast<double>(opts_.sync_rate_bytes);
  tokens_ = std::min(tokens_ + rate * static_cast<double>(now - tokens_ms_) / 1000.0,
                     std::max(rate / 20, 2.0 * kChunkBytes));
  tokens_ms_ = now;
  while (verify_file_ < verify_files_.size() && tokens_ > 0 && transport_->Backlog() < kSyncBacklogMax) {
    const std::string& path = verify_files_[verify_file_];
    VerifyRequest req;
    req.path = path;
    req.chunk_index = verify_chunk_;
    uint64_t size = 0;
    bool gone = false;
    for (uint32_t i = 0; i < kVerifyBatch; ++i) {
      auto data = store_.ReadChunk(path, verify_chunk_, &size);
      if (!data.ok()) {
        DiskFailed(data.status());
        return;
      }
      if (!data->has_value()) {
        gone = true;
        break;
      }
      bool last = verify_chunk_ == LastChunk(size);
      req.hashes.push_back(ChunkHash(**data, last, size));
      tokens_ -= static_cast<double>(std::max<size_t>((*data)->size(), 4096));
      verify_done_bytes_ += (*data)->size();
      verify_chunk_++;
      if (last) break;
    }
    bool file_done = gone || verify_chunk_ > LastChunk(size);
    if (!req.hashes.empty()) {
      SendFrame(FrameType::kVerifyRequest, req);
      if (!transport_) return;  // the send failed and disconnected
      verify_sent_++;
    }
    if (file_done) {
      verify_file_++;
      verify_chunk_ = 0;
    }
  }
  if (verify_file_ >= verify_files_.size() && verify_replied_ == verify_sent_ && !verify_done_sent_) {
    verify_done_sent_ = true;
    SendFrame(FrameType::kSyncDone, SyncDone{0, verify_sent_});
  }
  PumpSync();
}

void Replica::OnVerifyRequest(const VerifyRequest& v) {
  if (state_ == ReplState::kEstablished && !primary_) {
    SetState(ReplState::kVerifyTarget);
    verify_seen_.clear();
    verify_done_sent_ = false;
  }
  if (state_ != ReplState::kVerifyTarget) {
    Drop("protocol: verify request in state " + std::string(ReplStateName(state_)));
    return;
  }
  verify_seen_.insert(v.path);
  VerifyReply reply;
  reply.path = v.path;
  reply.chunk_index = v.chunk_index;
  for (size_t i = 0; i < v.hashes.size(); ++i) {
    uint64_t size = 0;
    auto data = store_.ReadChunk(v.path, v.chunk_index + i, &size);
    if (!data.ok()) {
      DiskFailed(data.status());
      return;
    }
    bool differs = true;
    if (data->has_value()) {
      uint64_t c = v.chunk_index + i;
      differs = ChunkHash(**data, c == LastChunk(size), size) != v.hashes[i];
    }
    reply.differs.push_back(differs);
  }
  SendFrame(FrameType::kVerifyReply, reply);
}

void Replica::OnVerifyReply(const VerifyReply& v) {
  if (state_ != ReplState::kVerifySource) {
    Drop("protocol: verify reply in state " + std::string(ReplStateName(state_)));
    return;
  }
  verify_replied_++;
  std::set<uint64_t> bad;
  for (size_t i = 0; i < v.differs.size(); ++i) {
    counters_.verify_chunks++;
    if (v.differs[i]) {
      counters_.verify_differ++;
      bad.insert(v.chunk_index + i);
    }
  }
  if (!bad.empty()) {
    Log(kWarn, "verify: " + v.path + ": " + std::to_string(bad.size()) +
                   " chunks differ from the peer's; resyncing them");
    sync_work_.push_back(SyncItem{v.path, std::move(bad)});
  }
}

// ---------------------------------------------------------------- timers

void Replica::WriteDueRecords() {
  if (!source_records_due_ || disk_ == DiskState::kFailed) return;
  source_records_due_ = false;
  Status st = RunSideBySide({[this] { return changes_.RewriteJournal(); }, PersistJob()});
  if (!st.ok()) DiskFailed(st);
}

void Replica::Tick() {
  int64_t now = clock_.NowMs();
  if (transport_) {
    if (now - last_heard_ms_ > opts_.peer_timeout_ms) {
      Drop("nothing heard from the peer for " + std::to_string(now - last_heard_ms_) + " ms");
    } else if (verified_ && now - last_ping_ms_ >= opts_.ping_interval_ms) {
      last_ping_ms_ = now;
      SendFrame(FrameType::kPing, Ping{static_cast<uint64_t>(now)});
    }
  }
  if (demoting_ && now - demote_since_ms_ > opts_.peer_timeout_ms) {
    Drop("the peer did not acknowledge the last writes before the demotion");
  }
  PumpVerify();
  PumpSync();
  WriteDueRecords();
  // Quiet and protected: forget the activity log, so a crash now resends
  // nothing (it is rebuilt by the next writes).
  if (primary_ && InSync() && pending_.empty() && queue_.empty() && changes_.size() > 0 &&
      now - last_write_ms_ >= kQuietTrimMs && now - last_trim_ms_ >= kQuietTrimMs) {
    last_trim_ms_ = now;
    Status st = changes_.TrimAcknowledged();
    if (!st.ok()) DiskFailed(st.Prefix("change journal: "));
  }
}

Status Replica::SetSyncRate(uint64_t bytes_per_s) {
  if (bytes_per_s < 1000 * 1000 || bytes_per_s > 4096ull * 1000 * 1000) {
    return Status::Error("sync rate must be between 1 and 4096 MB/s");
  }
  opts_.sync_rate_bytes = bytes_per_s;
  Log(kWarn, "disk synchronization rate set to " + std::to_string(bytes_per_s / 1000000) + " MB/s");
  return Status::Ok();
}

// ---------------------------------------------------------------- status

json Replica::StatusJson() const {
  json j;
  j["disk"] = std::string(DiskStateName(disk_));
  j["replication"] = std::string(ReplStateName(state_));
  j["role"] = primary_ ? "Primary" : "Secondary";
  j["protected"] = InSync();
  j["protocol"] = std::string(1, static_cast<char>(opts_.protocol));
  j["generations"] = ToString(gens_);
  j["peer"] = {{"node", peer_ ? peer_->node : opts_.peer_node}, {"connected", connected() && verified_}};
  if (peer_) {
    j["peer"]["role"] = peer_->role == NodeRole::kPrimary ? "Primary" : "Secondary";
    j["peer"]["generations"] =
        ToString(Generations{peer_->gen_current, peer_->gen_bitmap, peer_->gen_history});
  }
  uint64_t oos = 0;
  for (const auto& [path, chunks] : changes_.Pinned()) {
    oos += chunks.count(kWholeFile) ? kChunkBytes : chunks.size() * kChunkBytes;
  }
  j["out_of_sync_bytes"] = oos;
  j["changed_chunks"] = changes_.size();
  j["pending_writes"] = queue_.size();
  uint64_t unacked = 0;
  for (const Pending& p : pending_) unacked += p.done.size();
  j["unacked_writes"] = unacked;
  j["unacked_bytes"] = unacked_bytes_;
  j["sync_rate_bytes_per_s"] = opts_.sync_rate_bytes;
  j["full_sync_wanted"] = full_sync_wanted_;
  bool syncing = state_ == ReplState::kSyncSource || state_ == ReplState::kSyncTarget ||
                 state_ == ReplState::kMerging;
  if (syncing) {
    int64_t el = std::max<int64_t>(1, clock_.NowMs() - sync_started_ms_);
    double rate = static_cast<double>(sync_done_bytes_) * 1000.0 / static_cast<double>(el);
    json s = {{"done_bytes", sync_done_bytes_}, {"rate_bytes_per_s", static_cast<uint64_t>(rate)},
              {"full", full_sync_}};
    if (sync_total_bytes_ > 0) {
      uint64_t total = std::max(sync_total_bytes_, sync_done_bytes_);
      s["total_bytes"] = total;
      s["percent"] = 100.0 * static_cast<double>(sync_done_bytes_) / static_cast<double>(total);
      s["eta_s"] = rate > 0 ? static_cast<double>(total - sync_done_bytes_) / rate : -1.0;
    }
    j["sync"] = s;
  }
  if (state_ == ReplState::kVerifySource) {
    j["verify"] = {{"done_bytes", verify_done_bytes_},
                   {"total_bytes", verify_total_bytes_},
                   {"percent", verify_total_bytes_ ? 100.0 * static_cast<double>(verify_done_bytes_) /
                                                        static_cast<double>(verify_total_bytes_)
                                                  : 100.0},
                   {"differing_chunks", counters_.verify_differ - verify_base_differ_}};
  }
  if (!last_verify_.empty()) j["last_verify"] = last_verify_;
  if (!last_sync_.empty()) j["last_sync"] = last_sync_;
  if (!last_split_brain_.empty()) j["split_brain"] = last_split_brain_;
  if (!last_quarantine_.empty()) j["quarantine"] = last_quarantine_;
  if (state_ == ReplState::kStandAlone) j["standalone_reason"] = standalone_reason_;
  if (!last_error_.empty()) j["last_error"] = last_error_;
  if (disk_ == DiskState::kFailed) j["failed_reason"] = failed_reason_;
  j["split_brain_resolution"] = discard_local_ ? "discard-local" : survivor_ ? "survivor" : "none";
  j["counters"] = {{"writes", counters_.writes},
                   {"write_bytes", counters_.write_bytes},
                   {"commits", counters_.commits},
                   {"frames_sent", counters_.frames_sent},
                   {"frames_received", counters_.frames_received},
                   {"bytes_sent", counters_.bytes_sent},
                   {"bytes_received", counters_.bytes_received},
                   {"sync_bytes_sent", counters_.sync_bytes_sent},
                   {"sync_bytes_received", counters_.sync_bytes_received},
                   {"syncs_completed", counters_.syncs_completed},
                   {"frames_rejected", counters_.frames_rejected},
                   {"writes_no_space", counters_.writes_no_space},
                   {"connections", counters_.connections},
                   {"verify_chunks", counters_.verify_chunks},
                   {"verify_differ", counters_.verify_differ},
                   {"split_brains", counters_.split_brains},
                   {"journal_syncs", changes_.journal_syncs()}};
  return j;
}

}  // namespace tandem::repl
