// Append-only segment files for events and flows; the format is
// docs/formats/segments.md (read it first: this header only names the parts).
//
//  - SegmentWriter is pure: it turns records into the bytes to append (the
//    header, then blocks, then a seal) and never touches a file; the
//    collector appends them through the replicated volume.
//  - SegmentReader reads a local segment through os::FileSystem: the header,
//    the block list (from a valid seal, else by scanning block headers) and
//    the blocks themselves.
//  - RecoverSegment finds where a crashed writer's segment validly ends.
//  - The record codec (EncodeEvent/DecodeEvent, ...) and block parsing are
//    exposed for the search, the tests and the fuzzer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "os/fs.h"
#include "store/records.h"
#include "util/status.h"

namespace tandem::store {

enum class SegmentKind : uint8_t { kEvents = 1, kFlows = 2 };

inline constexpr uint8_t kSegmentVersion = 1;
inline constexpr uint32_t kSegmentMagic = 0x47534E54;  // "TNSG"
inline constexpr uint32_t kBlockMagic = 0x4B424E54;    // "TNBK"
inline constexpr uint32_t kIndexMagic = 0x58494E54;    // "TNIX"
inline constexpr uint32_t kTrailerMagic = 0x4C534E54;  // "TNSL"

inline constexpr size_t kWriterNameBytesMax = 63;
inline constexpr size_t kGenerationHexDigits = 16;
inline constexpr size_t kSeqDigits = 10;
inline constexpr uint64_t kSeqMax = 9'999'999'999ULL;
inline constexpr size_t kSegmentHeaderFixedBytes = 45;  // H = 45 + writer length
inline constexpr size_t kStringBytesMax = 64 * 1024;
inline constexpr size_t kRecordBytesMax = 1024 * 1024;
inline constexpr size_t kRecordFramingBytesMax = 3 + 4;  // varint length + xxh32
inline constexpr size_t kBlockHeaderBytes = 44;
inline constexpr size_t kBlockTargetBytes = 256 * 1024;
inline constexpr uint32_t kBlockRecordsMax = 4096;
inline constexpr size_t kBlockPayloadBytesMax = 2 * 1024 * 1024;
inline constexpr size_t kIndexHeaderBytes = 8;
inline constexpr size_t kIndexEntryBytes = 32;
inline constexpr size_t kTrailerBytes = 56;
inline constexpr uint32_t kSegmentBlocksMax = 1024 * 1024;

static_assert(kRecordBytesMax < (size_t{1} << 21), "record length varint fits 3 bytes");
static_assert(kBlockPayloadBytesMax >= kRecordBytesMax + kRecordFramingBytesMax);
static_assert(kBlockTargetBytes <= kBlockPayloadBytesMax);
static_assert(kStringBytesMax < kRecordBytesMax);
// The largest event (7 strings at their limit, 3-byte lengths, 4 zvarints of
// at most 10 bytes, 2 bytes of format and flags) fits one record.
static_assert(7 * (kStringBytesMax + 3) + 4 * 10 + 2 <= kRecordBytesMax);

// "events" / "flows": the directory under the store root.
std::string_view KindDir(SegmentKind kind);

// Record time (docs/formats/segments.md): events: event_time_us if non-zero,
// else receive_time_us; flows: start_us.
inline int64_t EventTimeUs(const EventRecord& e) {
  return e.event_time_us != 0 ? e.event_time_us : e.receive_time_us;
}
inline int64_t FlowTimeUs(const FlowRecord& f) { return f.start_us; }

// ---- Naming ---------------------------------------------------------------

struct SegmentName {
  SegmentKind kind = SegmentKind::kEvents;
  std::string writer;
  uint64_t generation = 0;
  uint64_t seq = 0;
  bool operator==(const SegmentName&) const = default;
};

// OK iff 1..63 bytes of [A-Za-z0-9._-].
Status ValidateWriterName(std::string_view writer);
// "events/<writer>-<16 hex>-<10 digits>.seg", relative to the store root.
// REQUIRES: valid writer, seq <= kSeqMax (CHECKed).
std::string SegmentPath(const SegmentName& name);
// The inverse of SegmentPath for a relative path (with the kind directory);
// nullopt for anything else.
std::optional<SegmentName> ParseSegmentPath(std::string_view relative_path);
// Same for a bare file name in a known kind's directory.
std::optional<SegmentName> ParseSegmentFileName(SegmentKind kind, std::string_view file_name);

// ---- Record codec ---------------------------------------------------------

// A decoded event whose strings point into the buffer it was decoded from
// (valid only as long as that buffer). No allocation.
struct EventView {
  int64_t event_time_us = 0;
  int64_t receive_time_us = 0;
  int16_t facility = -1;
  int16_t severity = -1;
  EventFormat format = EventFormat::kRaw;
  bool truncated = false;
  std::string_view host, app, procid, msgid, structured_data, message, sender;

  int64_t time_us() const { return event_time_us != 0 ? event_time_us : receive_time_us; }
  EventRecord ToRecord() const;
};

struct FlowView {
  int64_t start_us = 0;
  int64_t end_us = 0;
  int64_t receive_time_us = 0;
  std::string_view src, dst;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t protocol = 0;
  uint64_t bytes = 0;
  uint64_t packets = 0;
  std::string_view exporter;
  uint16_t version = 0;

  int64_t time_us() const { return start_us; }
  FlowRecord ToRecord() const;
};

// Appends the record *body* (no length, no checksum) to *out. Error (and
// *out unchanged) if a string is longer than kStringBytesMax or the body
// longer than kRecordBytesMax.
Status EncodeEvent(const EventRecord& e, std::vector<uint8_t>* out);
Status EncodeFlow(const FlowRecord& f, std::vector<uint8_t>* out);
// Decodes a whole body; false if it is malformed (bad varint, length past
// the end, value out of range, unknown format/flags, trailing bytes).
// Never reads outside `body`.
bool DecodeEvent(std::span<const uint8_t> body, EventView* out);
bool DecodeFlow(std::span<const uint8_t> body, FlowView* out);
// Only the record time (the first field(s)); false if malformed.
bool PeekEventTime(std::span<const uint8_t> body, int64_t* time_us);
bool PeekFlowTime(std::span<const uint8_t> body, int64_t* time_us);

// Walks the records of a block payload: length, checksum, body. Not
// thread-safe; the payload must outlive it.
class RecordCursor {
 public:
  // `verify`: check each record's xxh32 (a body that fails is an error).
  explicit RecordCursor(std::span<const uint8_t> payload, bool verify = true)
      : in_(payload), verify_(verify) {}
  // The next record's body; false at the end of the payload or on an error
  // (then error() is true and the cursor stays there).
  bool Next(std::span<const uint8_t>* body);
  bool error() const { return error_; }
  bool at_end() const { return pos_ == in_.size(); }
  // Whether the body last returned by Next matches its stored checksum
  // (for a cursor made with verify = false, which checks lazily).
  bool LastChecksumOk() const;

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  std::span<const uint8_t> last_;
  uint32_t last_checksum_ = 0;
  bool verify_;
  bool error_ = false;
};

// ---- Blocks ---------------------------------------------------------------

struct BlockHeader {
  uint32_t payload_bytes = 0;
  uint32_t record_count = 0;
  int64_t min_time_us = 0;
  int64_t max_time_us = 0;
  uint64_t payload_hash = 0;
};
// A block's checksum seed (docs/formats/segments.md, "Block seed"): its
// segment header's checksum and its own offset, so a block validates only in
// its own segment at its own offset (a duplicated, misplaced or foreign block
// fails like a corrupt one).
uint64_t BlockSeed(uint32_t header_checksum, uint64_t offset);

// Parses and checks a block header (magic, header_hash under `seed`, limits,
// flags, min <= max). REQUIRES: bytes.size() >= kBlockHeaderBytes.
std::optional<BlockHeader> ParseBlockHeader(std::span<const uint8_t> bytes, uint64_t seed);

enum class BlockCheck { kOk, kBadPayloadHash, kBadRecords };
// Full validation of a payload against its header: the xxh64, then every
// record (framing, checksum, body decodes as `kind`), their count and that
// each record time is within [min, max].
BlockCheck ValidateBlockPayload(SegmentKind kind, const BlockHeader& h,
                                std::span<const uint8_t> payload, uint64_t seed);

// Where a block is and what it holds (an index entry).
struct BlockInfo {
  uint64_t offset = 0;
  uint32_t bytes = 0;  // header + payload
  uint32_t records = 0;
  int64_t min_time_us = 0;
  int64_t max_time_us = 0;
  bool operator==(const BlockInfo&) const = default;
};

// ---- Writer ---------------------------------------------------------------

struct SegmentHeader {
  SegmentName name;
  int64_t created_us = 0;
  uint32_t header_bytes = 0;  // H
  uint32_t checksum = 0;      // the header's own xxh32 (part of every BlockSeed)
};

// Serializes and parses the segment header. Parse: nullopt unless the whole
// header is there and valid (needs at most kSegmentHeaderFixedBytes +
// kWriterNameBytesMax bytes).
std::vector<uint8_t> EncodeSegmentHeader(const SegmentName& name, int64_t created_us);
std::optional<SegmentHeader> ParseSegmentHeader(std::span<const uint8_t> bytes);

// Builds one segment's bytes; pure (no I/O, no clock). The caller appends,
// in order: Header(), every TakeBlock() result, finally Seal(). size_bytes()
// is where the next bytes go, assuming everything handed out so far was
// appended. Not thread-safe; movable.
class SegmentWriter {
 public:
  struct Limits {
    size_t block_target_bytes = kBlockTargetBytes;  // 1..kBlockTargetBytes
    uint32_t block_records_max = kBlockRecordsMax;  // 1..kBlockRecordsMax
  };

  // A new segment. Error if the writer name is invalid, seq > kSeqMax or the
  // limits are out of range.
  static Result<SegmentWriter> Create(SegmentName name, int64_t created_us, Limits limits);
  static Result<SegmentWriter> Create(SegmentName name, int64_t created_us) {
    return Create(std::move(name), created_us, Limits{});
  }
  // Continues an unsealed segment after RecoverSegment: `blocks` and
  // `valid_length` as it returned them (the caller has cut the file to
  // valid_length). Error if they are inconsistent with the header.
  static Result<SegmentWriter> Resume(const SegmentHeader& header,
                                      const std::vector<BlockInfo>& blocks, uint64_t valid_length,
                                      Limits limits);
  static Result<SegmentWriter> Resume(const SegmentHeader& header,
                                      const std::vector<BlockInfo>& blocks, uint64_t valid_length) {
    return Resume(header, blocks, valid_length, Limits{});
  }

  // The header bytes: the first thing appended to the file.
  const std::vector<uint8_t>& Header() const { return header_; }
  // Relative path: SegmentPath(name).
  std::string path() const { return SegmentPath(name_); }
  const SegmentName& name() const { return name_; }

  // Adds a record to the pending block; when adding it would overflow the
  // block limits, the pending block is closed first (it waits in
  // TakeBlock()). Error (nothing added) if the record is too large to
  // encode (EncodeEvent), or the segment has kSegmentBlocksMax blocks.
  // REQUIRES: the kind matches, not sealed (CHECKed).
  Status Add(const EventRecord& e);
  Status Add(const FlowRecord& f);

  // True when closed blocks wait, or the pending block is at a limit: time
  // to TakeBlock() and append.
  bool BlockReady() const;
  // Closes the pending block and returns every closed block's bytes (empty
  // if no record was added since the last call). The caller appends them
  // in one write. REQUIRES: not sealed.
  std::vector<uint8_t> TakeBlock();
  // Closes the pending block and returns its bytes (if any) followed by the
  // index and trailer. Afterwards the writer accepts nothing. REQUIRES: not
  // sealed.
  std::vector<uint8_t> Seal();

  bool sealed() const { return sealed_; }
  // Bytes handed out so far (Header + TakeBlock results + Seal), i.e. the
  // file size once they are all appended.
  uint64_t size_bytes() const { return offset_; }
  // Bytes and records added but not yet handed out.
  size_t pending_bytes() const;
  uint64_t pending_records() const { return pending_records_ + ready_records_; }
  uint64_t records() const { return records_; }      // all added, including pending
  uint64_t blocks() const { return index_.size(); }  // closed blocks
  int64_t min_time_us() const { return min_time_us_; }
  int64_t max_time_us() const { return max_time_us_; }

 private:
  SegmentWriter(SegmentName name, std::vector<uint8_t> header, Limits limits);
  Status AddBody(std::span<const uint8_t> body, int64_t time_us);
  void CloseBlock();

  SegmentName name_;
  std::vector<uint8_t> header_;
  uint32_t header_checksum_ = 0;
  Limits limits_;
  uint64_t offset_ = 0;         // handed-out bytes
  std::vector<uint8_t> ready_;  // closed blocks not yet taken
  uint64_t ready_records_ = 0;
  std::vector<uint8_t> payload_;  // the pending block's records
  uint32_t pending_records_ = 0;
  int64_t pending_min_ = 0, pending_max_ = 0;
  std::vector<BlockInfo> index_;  // closed blocks (taken or ready)
  uint64_t records_ = 0;
  int64_t min_time_us_ = 0, max_time_us_ = 0;
  bool sealed_ = false;
  std::vector<uint8_t> scratch_;
};

// ---- Reader ---------------------------------------------------------------

// A segment opened for reading. The file may be growing (an open segment):
// the reader sees it as of Open. Not thread-safe.
class SegmentReader {
 public:
  // Reads the header and the block list (from a valid seal, else by a scan
  // of block headers). Error on an I/O error or if the header is missing or
  // invalid, or (for a path that follows the naming rule) disagrees with
  // the path; then *bad_format (optional) tells a format problem (true)
  // from an I/O error (false).
  static Result<SegmentReader> Open(os::FileSystem& fs, const std::string& path,
                                    bool* bad_format = nullptr);
  // Same over bytes in memory (the fuzzer, tests).
  static Result<SegmentReader> OpenBuffer(std::vector<uint8_t> bytes);

  const SegmentHeader& header() const { return header_; }
  bool sealed() const { return sealed_; }
  const std::vector<BlockInfo>& blocks() const { return blocks_; }
  uint64_t file_size() const { return size_; }
  // End of the last block found (a sealed segment: the index offset).
  uint64_t blocks_end() const { return blocks_end_; }
  // Bytes after the blocks that are neither blocks nor a valid seal.
  uint64_t torn_bytes() const { return torn_bytes_; }

  // A block as read: header + payload validity and the payload itself.
  struct Block {
    const BlockInfo* info;
    std::span<const uint8_t> payload;  // valid until the callback returns
    bool valid;                        // payload_hash matched (records still checked one by one)
  };
  // Calls `fn` for each block overlapping [from_us, to_us) (inclusive
  // from, exclusive to), in file order, reading runs of adjacent blocks
  // with large reads. `fn` returns false to stop. Error only on I/O error.
  Status ForEachBlock(int64_t from_us, int64_t to_us, const std::function<bool(const Block&)>& fn);
  // Reads one block into *buf; the payload span is into *buf.
  Result<Block> ReadBlock(size_t i, std::vector<uint8_t>* buf);

  // All records in file order (tests, tools). Records of blocks that fail
  // validation are skipped; *bad_blocks (optional) counts those blocks.
  Result<std::vector<EventRecord>> ReadAllEvents(uint64_t* bad_blocks = nullptr);
  Result<std::vector<FlowRecord>> ReadAllFlows(uint64_t* bad_blocks = nullptr);

  // Bytes read from the file so far (statistics).
  uint64_t bytes_read() const;

  class Source;  // internal: a file or a buffer

 private:
  SegmentReader() = default;
  Status Init(const std::string& path, bool* bad_format);
  Status ScanBlocks();
  // `bytes`: the block's header and payload as read; checks them against `info`.
  Block CheckBlock(const BlockInfo& info, std::span<const uint8_t> bytes) const;

  std::shared_ptr<Source> source_;
  SegmentHeader header_;
  bool sealed_ = false;
  std::vector<BlockInfo> blocks_;
  uint64_t size_ = 0;
  uint64_t blocks_end_ = 0;
  uint64_t torn_bytes_ = 0;
  std::vector<uint8_t> buf_;
};

// ---- Recovery -------------------------------------------------------------

struct Recovery {
  std::optional<SegmentHeader> header;  // nullopt: no valid header (valid_length 0)
  uint64_t file_size = 0;
  uint64_t valid_length = 0;  // keep [0, valid_length); cut the rest
  bool sealed = false;
  uint64_t records = 0;
  std::vector<BlockInfo> blocks;  // the valid blocks, in order
  uint64_t torn_bytes = 0;        // file_size - valid_length
};
// Validates a segment front to back (docs/formats/segments.md, "Reading,
// torn tails and recovery"); the first block that does not validate ends
// it. Reads only. Error only on an I/O error (a missing file is an error).
Result<Recovery> RecoverSegment(os::FileSystem& fs, const std::string& path);
Recovery RecoverSegmentBuffer(std::span<const uint8_t> bytes);

}  // namespace tandem::store
