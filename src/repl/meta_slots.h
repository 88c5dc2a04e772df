// The replica's metadata file (docs/formats/replica-metadata.md): two
// checksummed slots of kSlotBytes each, written in place. Every write goes
// to the slot that does not hold the newest durable record (one pwrite and
// one fdatasync, no temporary file, rename or directory fsync); a load takes
// the valid slot with the higher sequence number. A write torn by a power
// loss leaves a slot whose checksum fails, and the other slot, untouched
// since its own fdatasync, is the record before.
//
// The payload is opaque here (the replica stores its JSON object). The
// metadata of older versions, one JSON file replaced atomically
// (`meta.json`), is read by Load when no slot file exists yet, and the first
// write then creates the slot file and removes the old one.
//
// Not thread-safe; one object per file. Write may run on an IoPool thread
// while the caller's thread waits (it touches only this object).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "os/fs.h"
#include "util/status.h"

namespace tandem::repl {

class MetaSlots {
 public:
  static constexpr size_t kSlotBytes = 4096;
  static constexpr size_t kHeaderBytes = 24;  // magic, version, length, sequence
  static constexpr size_t kTrailerBytes = 8;  // xxh64
  static constexpr size_t kPayloadBytesMax = kSlotBytes - kHeaderBytes - kTrailerBytes;
  static constexpr uint32_t kVersion = 1;

  // `path`: the slot file; `legacy_path`: the older single-file format
  // (empty: none).
  MetaSlots(os::FileSystem& fs, std::string path, std::string legacy_path);

  struct Loaded {
    std::vector<uint8_t> payload;
    uint64_t sequence = 0;  // 0: from the legacy file
    bool legacy = false;
  };
  // The newest valid record; nullopt if neither file exists (a new
  // replica). A slot file with no valid slot is an error (damaged).
  Result<std::optional<Loaded>> Load();

  // Makes `payload` (at most kPayloadBytesMax bytes) the durable record:
  // on return it is what Load finds, also after a power loss. On the first
  // write (no slot file yet, or after a legacy load) the file is created
  // atomically and the legacy file removed. After an error the next Write
  // goes to the same slot again, so the last durable record is never the
  // one overwritten.
  Status Write(std::span<const uint8_t> payload);

  const std::string& path() const { return path_; }
  uint64_t sequence() const { return sequence_; }  // of the last durable record
  uint64_t writes() const { return writes_; }

 private:
  Status Create(std::span<const uint8_t> payload);

  os::FileSystem& fs_;
  std::string path_;
  std::string legacy_path_;
  std::unique_ptr<os::File> file_;
  bool exists_ = false;  // the slot file exists with a durable valid slot
  int durable_slot_ = 0;  // the slot holding the newest durable record
  uint64_t sequence_ = 0;
  uint64_t writes_ = 0;
};

// One slot's bytes (kSlotBytes): exposed for tests.
std::vector<uint8_t> EncodeMetaSlot(uint64_t sequence, std::span<const uint8_t> payload);
// The payload and sequence of a slot, nullopt if it is not a valid slot
// (wrong magic or version, bad length, checksum mismatch).
std::optional<std::pair<uint64_t, std::vector<uint8_t>>> DecodeMetaSlot(std::span<const uint8_t> slot);

}  // namespace tandem::repl
