// Replication frame codec: format in docs/formats/replication.md.
// Frames travel on the replication TCP connection; each is authenticated with
// GMAC (AES-256-GCM, the frame as associated data) under a key derived from
// the cluster key for its connection and direction. Pure: no I/O. Safe on any
// input bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "util/status.h"

namespace tandem::repl {

inline constexpr size_t kHeaderBytes = 36;  // magic .. accept_id
inline constexpr size_t kMacBytes = 16;     // GCM tag
inline constexpr size_t kDataBytesMax = 1024 * 1024;  // Write and SyncData data
inline constexpr uint64_t kChunkBytes = 64 * 1024;  // unit of chunk indices (resync granularity)
inline constexpr uint64_t kChunkIndexMax = UINT64_MAX / kChunkBytes;  // start fits u64
inline constexpr size_t kPathBytesMax = 4096;
inline constexpr size_t kNodeNameBytesMax = 64;
inline constexpr size_t kSoftwareVersionBytesMax = 64;
inline constexpr size_t kErrorMessageBytesMax = 1024;
inline constexpr size_t kHashBytes = 32;           // SHA-256
inline constexpr uint32_t kVerifyChunksMax = 32768;  // 1 MiB of hashes per request
// 1 MiB of data plus the metadata of the largest frame (docs: "Sizes").
inline constexpr size_t kFramePayloadBytesMax = kDataBytesMax + 8 * 1024;
inline constexpr size_t kFrameBytesMax = kHeaderBytes + kFramePayloadBytesMax + kMacBytes;

enum class FrameType : uint8_t {
  kHello = 1,
  kHelloAck = 2,
  kWrite = 3,
  kAck = 4,
  kSyncRequest = 5,
  kSyncData = 6,
  kSyncDone = 7,
  kVerifyRequest = 8,
  kVerifyReply = 9,
  kPing = 10,
  kPong = 11,
  kError = 12,
};
std::string_view FrameTypeName(FrameType t);  // "hello", "write", ...

enum class NodeRole : uint8_t { kPrimary = 1, kSecondary = 2 };  // = ha::Role values
enum class Protocol : uint8_t { kA = 'A', kB = 'B', kC = 'C' };

// kHello and kHelloAck. Generations as in repl/generations.h (not checked here).
struct Hello {
  std::string node;  // 1..kNodeNameBytesMax bytes
  NodeRole role = NodeRole::kPrimary;
  Protocol protocol = Protocol::kC;
  uint64_t gen_current = 0;
  uint64_t gen_bitmap = 0;
  std::array<uint64_t, 2> gen_history{};
  uint64_t volume_bytes = 0;
  std::string software;  // 0..kSoftwareVersionBytesMax bytes

  bool operator==(const Hello&) const = default;
};

enum class WriteOp : uint8_t {
  kCreate = 1, kAppend = 2, kWriteAt = 3, kTruncate = 4, kRename = 5, kDelete = 6, kSync = 7,
};

// kWrite. Which fields each op uses: docs/formats/replication.md; unused
// fields must be zero/empty.
struct Write {
  WriteOp op = WriteOp::kCreate;
  uint64_t write_id = 0;
  std::string path;   // kSync: empty = the whole volume
  std::string path2;  // kRename: target; otherwise empty
  uint64_t offset = 0;  // kWriteAt: position; kAppend: file size before the append
  uint64_t length = 0;  // kAppend/kWriteAt: == data.size(); kTruncate: new size
  std::vector<uint8_t> data;  // kAppend/kWriteAt: 1..kDataBytesMax bytes

  bool operator==(const Write&) const = default;
};

enum class AckLevel : uint8_t { kReceived = 1, kDurable = 2 };

struct Ack {
  uint64_t write_id = 0;
  AckLevel level = AckLevel::kDurable;

  bool operator==(const Ack&) const = default;
};

struct SyncRequest {
  std::string path;
  uint64_t chunk_index = 0;
  uint32_t chunk_count = 1;  // >= 1

  bool operator==(const SyncRequest&) const = default;
};

struct SyncData {
  std::string path;
  uint64_t chunk_index = 0;
  uint64_t file_size = 0;
  std::vector<uint8_t> data;  // exactly ChunkLength(chunk_index, file_size) bytes

  bool operator==(const SyncData&) const = default;
};

struct SyncDone {
  uint64_t bytes_sent = 0;
  uint64_t files = 0;

  bool operator==(const SyncDone&) const = default;
};

enum class HashAlgorithm : uint8_t { kSha256 = 1 };

struct VerifyRequest {
  std::string path;
  uint64_t chunk_index = 0;
  HashAlgorithm algorithm = HashAlgorithm::kSha256;
  // One digest per chunk, chunk_index + i; 1..kVerifyChunksMax of them
  // (the chunk count on the wire is hashes.size()).
  std::vector<std::array<uint8_t, kHashBytes>> hashes;

  bool operator==(const VerifyRequest&) const = default;
};

struct VerifyReply {
  std::string path;
  uint64_t chunk_index = 0;
  std::vector<bool> differs;  // [i]: chunk chunk_index + i differs; 1..kVerifyChunksMax

  bool operator==(const VerifyReply&) const = default;
};

// kPing and kPong (which echoes the ping's timestamp).
struct Ping {
  uint64_t timestamp = 0;

  bool operator==(const Ping&) const = default;
};

struct Error {
  uint16_t code = 1;  // nonzero
  std::string message;  // 0..kErrorMessageBytesMax bytes

  bool operator==(const Error&) const = default;
};

using FrameBody = std::variant<Hello, Write, Ack, SyncRequest, SyncData, SyncDone, VerifyRequest,
                               VerifyReply, Ping, Error>;

// Who sent a frame: the side that opened the TCP connection or the side that
// accepted it. Part of the frame key, so a frame never verifies in the other
// direction.
enum class Direction : uint8_t { kFromConnecting = 'C', kFromAccepting = 'A' };

struct Frame {
  FrameType type = FrameType::kPing;
  uint16_t flags = 0;     // version 2: must be 0
  uint64_t seq = 0;       // 1, 2, 3, ... per direction and connection
  uint64_t conn_id = 0;   // nonzero, chosen by the connecting side
  // Chosen by the accepting side (nonzero); 0 only in the connecting side's
  // first frame (its kHello), which is sent before it is known.
  uint64_t accept_id = 0;
  FrameBody body = Ping{};  // the alternative that `type` names

  bool operator==(const Frame&) const = default;
};

// True if `path` is relative, normalized, 1..kPathBytesMax bytes, without
// NUL, empty components, "." or "..".
bool IsValidPath(std::string_view path);

// The length of chunk `index` of a file of `file_size` bytes (0 past the end).
uint64_t ChunkLength(uint64_t index, uint64_t file_size);

// OK if `f` obeys every rule of the format (the decoder's step 7, and a
// nonzero conn_id); otherwise "malformed: <field>".
Status Validate(const Frame& f);

// OK if the ids of `f` fit a frame sent from `from` (accept_id 0 exactly in
// the connecting side's frame 1); otherwise "malformed: accept_id".
Status ValidateIds(const Frame& f, Direction from);

// The frame key of one connection and direction (docs: "Authentication"),
// with its AES-256-GCM context. Holds key material: not copyable.
class FrameKey {
 public:
  FrameKey(std::string_view cluster_key, Direction from, uint64_t conn_id, uint64_t accept_id);
  ~FrameKey();
  FrameKey(const FrameKey&) = delete;
  FrameKey& operator=(const FrameKey&) = delete;

  bool Matches(uint64_t conn_id, uint64_t accept_id) const {
    return conn_id == conn_id_ && accept_id == accept_id_;
  }
  // The tag of `frame` (header and payload) sent as number `seq`. False only
  // if OpenSSL fails internally.
  bool Tag(uint64_t seq, std::span<const uint8_t> frame, std::array<uint8_t, kMacBytes>* tag);

 private:
  uint64_t conn_id_;
  uint64_t accept_id_;
  void* ctx_;  // EVP_CIPHER_CTX
};

// Serialises and signs `f` as sent from `from`.
// REQUIRES: Validate(f).ok() and ValidateIds(f, from).ok() (TANDEM_CHECK).
std::vector<uint8_t> EncodeFrame(const Frame& f, std::string_view key, Direction from);

// The sending half of a connection: EncodeFrame with the frame key kept
// between frames (derived again only when the ids change).
class FrameEncoder {
 public:
  FrameEncoder(std::string key, Direction from) : key_(std::move(key)), from_(from) {}
  std::vector<uint8_t> Encode(const Frame& f);

 private:
  std::string key_;
  Direction from_;
  std::unique_ptr<FrameKey> frame_key_;
};

// Streaming decoder for one direction of one connection. Feed it the bytes
// read from the socket; call Next() until it returns kNeedMore (or kError).
// Holds at most one frame plus the bytes of the last Feed.
class FrameDecoder {
 public:
  enum Result { kNeedMore, kFrame, kError };

  // Decodes the frames sent from `from` (the other side of this host's).
  FrameDecoder(std::string key, Direction from);

  // Appends `bytes`; checks a completed header at once. Ignored after an error.
  void Feed(std::span<const uint8_t> bytes);
  // kFrame: *out is the next frame (authentic, in sequence, well formed).
  // kNeedMore: no complete frame buffered yet. kError: see error(); final.
  Result Next(Frame* out);
  // Pins the connection id; otherwise the first frame's id is adopted.
  void ExpectConnection(uint64_t conn_id) { conn_id_ = conn_id; }
  // Pins the accepting side's id; otherwise the first nonzero one is adopted.
  void ExpectAcceptId(uint64_t accept_id) { accept_id_ = accept_id; }

  // "bad_magic", "bad_version", "too_long", "bad_mac", "wrong_connection",
  // "bad_sequence", "malformed: <field>"; empty while not in error.
  const std::string& error() const { return error_; }
  uint64_t conn_id() const { return conn_id_; }  // 0 until known
  uint64_t accept_id() const { return accept_id_; }  // 0 until known
  size_t buffered() const { return buffer_.size() - start_; }

  // The buffer's memory, to be reused by the next connection's decoder: a
  // fresh buffer faults in its pages while the first frames arrive (the
  // first sync after a start), and page faults can be dear (a virtual
  // machine's shadow page tables). Adopt only before the first Feed.
  void AdoptStorage(std::vector<uint8_t> storage);
  std::vector<uint8_t> ReleaseStorage();

 private:
  Result Fail(std::string reason);
  bool CheckHeader();  // steps 1-3 on a buffered header; false: failed
  Result Authenticate(std::span<const uint8_t> frame);

  std::string key_;
  Direction from_;
  std::unique_ptr<FrameKey> frame_key_;
  std::vector<uint8_t> buffer_;
  size_t start_ = 0;       // first unconsumed byte of buffer_
  bool header_ok_ = false;  // the header at start_ passed steps 1-3
  uint64_t conn_id_ = 0;
  uint64_t accept_id_ = 0;
  uint64_t next_seq_ = 1;
  std::string error_;
};

namespace internal {
// Test-only: encodes and signs `f` WITHOUT validation (any field values, any
// ids, any lengths that fit their length prefix), so that tests and fuzzers
// can build authentic but malformed frames.
std::vector<uint8_t> EncodeFrameUnchecked(const Frame& f, std::string_view key, Direction from);
// Test-only: replaces the last kMacBytes of `frame` (at least a header and a
// tag long) with the right tag for the ids and seq in its header.
void Resign(std::vector<uint8_t>* frame, std::string_view key, Direction from);
}  // namespace internal

}  // namespace tandem::repl
