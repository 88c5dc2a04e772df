#include "repl/meta_slots.h"

#include <xxhash.h>

#include <cstring>

namespace tandem::repl {

namespace {

constexpr char kMagic[8] = {'T', 'A', 'N', 'D', 'M', 'E', 'T', 'A'};
constexpr uint64_t kFileBytesMax = 64 * 1024;  // refuse to load more (two slots are 8 KiB)

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

}  // namespace

std::vector<uint8_t> EncodeMetaSlot(uint64_t sequence, std::span<const uint8_t> payload) {
  TANDEM_CHECK(payload.size() <= MetaSlots::kPayloadBytesMax);
  std::vector<uint8_t> slot(MetaSlots::kSlotBytes, 0);
  std::memcpy(slot.data(), kMagic, sizeof kMagic);
  PutU32(&slot[8], MetaSlots::kVersion);
  PutU32(&slot[12], static_cast<uint32_t>(payload.size()));
  PutU64(&slot[16], sequence);
  if (!payload.empty()) std::memcpy(&slot[MetaSlots::kHeaderBytes], payload.data(), payload.size());
  size_t end = MetaSlots::kHeaderBytes + payload.size();
  PutU64(&slot[end], XXH64(slot.data(), end, 0));
  return slot;
}

std::optional<std::pair<uint64_t, std::vector<uint8_t>>> DecodeMetaSlot(std::span<const uint8_t> slot) {
  if (slot.size() < MetaSlots::kHeaderBytes + MetaSlots::kTrailerBytes) return std::nullopt;
  if (std::memcmp(slot.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
  if (GetU32(&slot[8]) != MetaSlots::kVersion) return std::nullopt;
  uint32_t len = GetU32(&slot[12]);
  if (len > MetaSlots::kPayloadBytesMax ||
      MetaSlots::kHeaderBytes + len + MetaSlots::kTrailerBytes > slot.size()) {
    return std::nullopt;
  }
  size_t end = MetaSlots::kHeaderBytes + len;
  if (XXH64(slot.data(), end, 0) != GetU64(&slot[end])) return std::nullopt;
  uint64_t seq = GetU64(&slot[16]);
  if (seq == 0) return std::nullopt;
  return std::make_pair(seq, std::vector<uint8_t>(slot.begin() + MetaSlots::kHeaderBytes,
                                                  slot.begin() + static_cast<ptrdiff_t>(end)));
}

MetaSlots::MetaSlots(os::FileSystem& fs, std::string path, std::string legacy_path)
    : fs_(fs), path_(std::move(path)), legacy_path_(std::move(legacy_path)) {}

Result<std::optional<MetaSlots::Loaded>> MetaSlots::Load() {
  file_.reset();
  exists_ = false;
  durable_slot_ = 0;
  sequence_ = 0;
  auto raw = os::ReadWholeFile(fs_, path_, kFileBytesMax);
  if (!raw.ok()) return raw.status();
  if (raw->has_value()) {
    const std::vector<uint8_t>& data = **raw;
    std::optional<Loaded> best;
    for (int s = 0; s < 2; ++s) {
      size_t off = static_cast<size_t>(s) * kSlotBytes;
      if (data.size() <= off) break;
      size_t n = std::min(kSlotBytes, data.size() - off);
      auto slot = DecodeMetaSlot(std::span<const uint8_t>(data).subspan(off, n));
      if (!slot || (best && best->sequence >= slot->first)) continue;
      best = Loaded{std::move(slot->second), slot->first, false};
      durable_slot_ = s;
    }
    if (!best) {
      return Status::Error(path_ + ": no valid slot (both checksums fail)");
    }
    exists_ = true;
    sequence_ = best->sequence;
    // A crash between creating the slot file and removing the old format's
    // file leaves both: the slot file is the newer.
    if (!legacy_path_.empty()) {
      auto old = fs_.FileSize(legacy_path_);
      if (!old.ok()) return old.status();
      if (old->has_value()) {
        TANDEM_RETURN_IF_ERROR(fs_.Remove(legacy_path_));
        TANDEM_RETURN_IF_ERROR(fs_.SyncDir(ParentDir(legacy_path_)));
      }
    }
    return best;
  }
  if (legacy_path_.empty()) return std::optional<Loaded>();
  auto old = os::ReadWholeFile(fs_, legacy_path_, kFileBytesMax);
  if (!old.ok()) return old.status();
  if (!old->has_value()) return std::optional<Loaded>();
  return std::optional<Loaded>(Loaded{std::move(**old), 0, true});
}

Status MetaSlots::Create(std::span<const uint8_t> payload) {
  // Slot 0 holds the record, slot 1 nothing valid yet; the whole file is
  // durable before its name is, so a slot file that exists always has a
  // valid slot.
  std::vector<uint8_t> image = EncodeMetaSlot(sequence_ + 1, payload);
  image.resize(2 * kSlotBytes, 0);
  TANDEM_RETURN_IF_ERROR(os::WriteWholeFileAtomic(fs_, path_, image));
  exists_ = true;
  durable_slot_ = 0;
  sequence_ += 1;
  if (!legacy_path_.empty()) {
    auto old = fs_.FileSize(legacy_path_);
    if (!old.ok()) return old.status();
    if (old->has_value()) {
      TANDEM_RETURN_IF_ERROR(fs_.Remove(legacy_path_));
      TANDEM_RETURN_IF_ERROR(fs_.SyncDir(ParentDir(legacy_path_)));
    }
  }
  return Status::Ok();
}

Status MetaSlots::Write(std::span<const uint8_t> payload) {
  if (payload.size() > kPayloadBytesMax) {
    return Status::Error(path_ + ": metadata record of " + std::to_string(payload.size()) +
                         " bytes, at most " + std::to_string(kPayloadBytesMax) + " fit in a slot");
  }
  writes_++;
  if (!exists_) return Create(payload);
  if (!file_) {
    auto f = fs_.Open(path_, /*create=*/false);
    if (!f.ok()) return f.status();
    file_ = std::move(*f);
  }
  // Never the slot holding the newest durable record: until this write is
  // synced, that slot is what a power loss falls back to. After a failed
  // write or sync the next one targets the same slot again.
  int target = 1 - durable_slot_;
  std::vector<uint8_t> slot = EncodeMetaSlot(sequence_ + 1, payload);
  Status st = file_->WriteAt(static_cast<uint64_t>(target) * kSlotBytes, slot);
  if (st.ok()) st = file_->Sync();
  if (!st.ok()) {
    file_.reset();  // reopened next time (e.g. a stale handle after a power loss in tests)
    return st;
  }
  durable_slot_ = target;
  sequence_ += 1;
  return Status::Ok();
}

}  // namespace tandem::repl
