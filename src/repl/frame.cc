// Replication frame codec. The byte layout, the payload rules and the decode
// order are specified in docs/formats/replication.md; keep the two in step.
#include "repl/frame.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <type_traits>
#include <utility>

#include "util/bytes.h"

namespace tandem::repl {
namespace {

constexpr std::array<uint8_t, 4> kMagic = {'T', 'N', 'R', 'P'};
constexpr uint8_t kVersion = 2;
constexpr size_t kVersionOffset = 4;
constexpr size_t kTypeOffset = 5;
constexpr size_t kLengthOffset = 8;
constexpr size_t kSeqOffset = 12;
constexpr size_t kIvBytes = 12;     // GCM nonce: seq, then 4 zero bytes
constexpr size_t kFrameKeyBytes = 32;  // AES-256
constexpr uint16_t kFlagsKnown = 0;  // version 2 defines no flag bits
// HKDF-SHA256 salt of the frame keys (docs/formats/replication.md).
constexpr std::string_view kKdfSalt = "tandem replication frame key";
constexpr size_t kStr16Bytes = 2;    // length prefix of a str16 / path
constexpr size_t kBytes32Bytes = 4;  // length prefix of a bytes32

// The documented header: magic, version, type, flags, length, seq, conn_id,
// accept_id.
static_assert(kHeaderBytes == kMagic.size() + 1 + 1 + 2 + 4 + 8 + 8 + 8);
static_assert(kHeaderBytes == 36);
static_assert(kVersionOffset == kMagic.size() && kLengthOffset + 4 == kSeqOffset);
static_assert(kMacBytes == 16, "the full GCM tag");
static_assert(SHA256_DIGEST_LENGTH == kFrameKeyBytes);

// Largest valid payload of each type (docs/formats/replication.md, "Sizes").
constexpr size_t kPathField = kStr16Bytes + kPathBytesMax;
constexpr size_t kHelloMax =
    kStr16Bytes + kNodeNameBytesMax + 1 + 1 + 4 * 8 + 8 + kStr16Bytes + kSoftwareVersionBytesMax;
constexpr size_t kWriteDataMax = 1 + 8 + kPathField + kStr16Bytes + 8 + 8 + kBytes32Bytes +
                                 kDataBytesMax;  // append / write_at: path2 empty
constexpr size_t kWriteRenameMax = 1 + 8 + 2 * kPathField + 8 + 8 + kBytes32Bytes;
constexpr size_t kSyncRequestMax = kPathField + 8 + 4;
constexpr size_t kSyncDataMax = kPathField + 8 + 8 + kBytes32Bytes + kChunkBytes;
constexpr size_t kVerifyRequestMax = kPathField + 8 + 4 + 1 + kVerifyChunksMax * kHashBytes;
constexpr size_t kVerifyReplyMax = kPathField + 8 + 4 + (kVerifyChunksMax + 7) / 8;
constexpr size_t kErrorMax = 2 + kStr16Bytes + kErrorMessageBytesMax;
static_assert(kWriteDataMax - kDataBytesMax == 4129);
static_assert(kSyncDataMax - kChunkBytes == 4118);
static_assert(kVerifyRequestMax - kVerifyChunksMax * kHashBytes == 4111);
static_assert(std::max({kHelloMax, kWriteDataMax, kWriteRenameMax, kSyncRequestMax, kSyncDataMax,
                        kVerifyRequestMax, kVerifyReplyMax, kErrorMax}) <= kFramePayloadBytesMax,
              "every valid frame must fit the payload limit");
static_assert(kFramePayloadBytesMax == 1056768 && kFrameBytesMax == 1056820);
static_assert(kFramePayloadBytesMax <= UINT32_MAX, "length is a u32");
static_assert(kFrameBytesMax <= INT_MAX, "a frame fits one EVP_EncryptUpdate");
static_assert(kChunkBytes <= kDataBytesMax, "a SyncData carries a whole chunk");
static_assert(kPathBytesMax <= UINT16_MAX && kNodeNameBytesMax <= UINT16_MAX &&
              kSoftwareVersionBytesMax <= UINT16_MAX && kErrorMessageBytesMax <= UINT16_MAX,
              "str16 length prefixes");
static_assert(kChunkIndexMax <= UINT64_MAX / kChunkBytes, "chunk start fits u64");

using util::Reader;
using util::Writer;

// HMAC-SHA256 of `data` under `key`. False only if OpenSSL fails internally.
bool Hmac(std::span<const uint8_t> key, std::span<const uint8_t> data,
          std::array<uint8_t, SHA256_DIGEST_LENGTH>* mac) {
  TANDEM_CHECK(key.size() <= static_cast<size_t>(INT_MAX));
  static const uint8_t kEmpty = 0;  // HMAC() wants non-null pointers
  const void* key_ptr = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  const uint8_t* data_ptr = data.empty() ? &kEmpty : data.data();
  unsigned int len = 0;
  const uint8_t* got = HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), data_ptr,
                            data.size(), mac->data(), &len);
  return got != nullptr && len == SHA256_DIGEST_LENGTH;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// HKDF-SHA256 (RFC 5869) with one block of output: the frame key of one
// connection and direction. info = "TNRP", version, direction, conn_id,
// accept_id (u64 little-endian).
std::array<uint8_t, kFrameKeyBytes> DeriveFrameKey(std::string_view cluster_key, Direction from,
                                                   uint64_t conn_id, uint64_t accept_id) {
  std::array<uint8_t, SHA256_DIGEST_LENGTH> prk;
  TANDEM_CHECK(Hmac(AsBytes(kKdfSalt), AsBytes(cluster_key), &prk));  // extract
  std::vector<uint8_t> info;
  Writer w(&info);
  w.Raw(kMagic);
  w.U8(kVersion);
  w.Enum(from);
  w.Uint(conn_id);
  w.Uint(accept_id);
  w.U8(1);  // T(1) = HMAC(PRK, info || 0x01)
  std::array<uint8_t, kFrameKeyBytes> okm;
  TANDEM_CHECK(Hmac(prk, info, &okm));  // expand
  OPENSSL_cleanse(prk.data(), prk.size());
  return okm;
}

uint32_t PayloadLength(std::span<const uint8_t> header) {
  uint32_t n = 0;
  for (size_t i = 0; i < 4; ++i) n |= static_cast<uint32_t>(header[kLengthOffset + i]) << (8 * i);
  return n;
}

// Decode steps 1-3, on the header alone: "" if it may be read on.
std::string_view HeaderError(std::span<const uint8_t> header) {
  if (!std::equal(kMagic.begin(), kMagic.end(), header.begin())) return "bad_magic";
  if (header[kVersionOffset] != kVersion) return "bad_version";
  if (PayloadLength(header) > kFramePayloadBytesMax) return "too_long";
  return "";
}

// ---- Encoding, one overload per body.

void Put(const Hello& h, Writer* w) {
  w->Str16(h.node);
  w->Enum(h.role);
  w->Enum(h.protocol);
  w->Uint(h.gen_current);
  w->Uint(h.gen_bitmap);
  for (uint64_t g : h.gen_history) w->Uint(g);
  w->Uint(h.volume_bytes);
  w->Str16(h.software);
}

void Put(const Write& x, Writer* w) {
  w->Enum(x.op);
  w->Uint(x.write_id);
  w->Str16(x.path);
  w->Str16(x.path2);
  w->Uint(x.offset);
  w->Uint(x.length);
  w->Bytes32(x.data);
}

void Put(const Ack& a, Writer* w) {
  w->Uint(a.write_id);
  w->Enum(a.level);
}

void Put(const SyncRequest& s, Writer* w) {
  w->Str16(s.path);
  w->Uint(s.chunk_index);
  w->Uint(s.chunk_count);
}

void Put(const SyncData& s, Writer* w) {
  w->Str16(s.path);
  w->Uint(s.chunk_index);
  w->Uint(s.file_size);
  w->Bytes32(s.data);
}

void Put(const SyncDone& s, Writer* w) {
  w->Uint(s.bytes_sent);
  w->Uint(s.files);
}

void Put(const VerifyRequest& v, Writer* w) {
  TANDEM_CHECK(v.hashes.size() <= UINT32_MAX);
  w->Str16(v.path);
  w->Uint(v.chunk_index);
  w->Uint(static_cast<uint32_t>(v.hashes.size()));
  w->Enum(v.algorithm);
  for (const auto& h : v.hashes) w->Raw(h);
}

void Put(const VerifyReply& v, Writer* w) {
  TANDEM_CHECK(v.differs.size() <= UINT32_MAX);
  w->Str16(v.path);
  w->Uint(v.chunk_index);
  w->Uint(static_cast<uint32_t>(v.differs.size()));
  for (size_t byte = 0; byte * 8 < v.differs.size(); ++byte) {
    uint8_t bits = 0;
    for (size_t i = 0; i < 8 && byte * 8 + i < v.differs.size(); ++i) {
      if (v.differs[byte * 8 + i]) bits |= static_cast<uint8_t>(1u << i);
    }
    w->U8(bits);
  }
}

void Put(const Ping& p, Writer* w) { w->Uint(p.timestamp); }

void Put(const Error& e, Writer* w) {
  w->Uint(e.code);
  w->Str16(e.message);
}

// ---- Structural parsing: returns the field that could not be read, or "".

std::string_view Parse(Reader* r, Hello* h) {
  if (!r->Str16(&h->node)) return "node";
  if (!r->Enum(&h->role)) return "role";
  if (!r->Enum(&h->protocol)) return "protocol";
  if (!r->Uint(&h->gen_current) || !r->Uint(&h->gen_bitmap) || !r->Uint(&h->gen_history[0]) ||
      !r->Uint(&h->gen_history[1])) {
    return "generations";
  }
  if (!r->Uint(&h->volume_bytes)) return "volume_bytes";
  if (!r->Str16(&h->software)) return "software";
  return "";
}

std::string_view Parse(Reader* r, Write* w) {
  if (!r->Enum(&w->op)) return "op";
  if (!r->Uint(&w->write_id)) return "write_id";
  if (!r->Str16(&w->path)) return "path";
  if (!r->Str16(&w->path2)) return "path2";
  if (!r->Uint(&w->offset)) return "offset";
  if (!r->Uint(&w->length)) return "length";
  if (!r->Bytes32(&w->data)) return "data";
  return "";
}

std::string_view Parse(Reader* r, Ack* a) {
  if (!r->Uint(&a->write_id)) return "write_id";
  if (!r->Enum(&a->level)) return "level";
  return "";
}

std::string_view Parse(Reader* r, SyncRequest* s) {
  if (!r->Str16(&s->path)) return "path";
  if (!r->Uint(&s->chunk_index)) return "chunk_index";
  if (!r->Uint(&s->chunk_count)) return "chunk_count";
  return "";
}

std::string_view Parse(Reader* r, SyncData* s) {
  if (!r->Str16(&s->path)) return "path";
  if (!r->Uint(&s->chunk_index)) return "chunk_index";
  if (!r->Uint(&s->file_size)) return "file_size";
  if (!r->Bytes32(&s->data)) return "data";
  return "";
}

std::string_view Parse(Reader* r, SyncDone* s) {
  if (!r->Uint(&s->bytes_sent) || !r->Uint(&s->files)) return "totals";
  return "";
}

std::string_view Parse(Reader* r, VerifyRequest* v) {
  uint32_t count = 0;
  if (!r->Str16(&v->path)) return "path";
  if (!r->Uint(&v->chunk_index)) return "chunk_index";
  if (!r->Uint(&count) || count == 0 || count > kVerifyChunksMax) return "chunk_count";
  if (!r->Enum(&v->algorithm)) return "algorithm";
  v->hashes.resize(count);
  for (auto& h : v->hashes) {
    std::optional<std::span<const uint8_t>> b = r->Raw(kHashBytes);
    if (!b) return "hashes";
    std::copy(b->begin(), b->end(), h.begin());
  }
  return "";
}

std::string_view Parse(Reader* r, VerifyReply* v) {
  uint32_t count = 0;
  if (!r->Str16(&v->path)) return "path";
  if (!r->Uint(&v->chunk_index)) return "chunk_index";
  if (!r->Uint(&count) || count == 0 || count > kVerifyChunksMax) return "chunk_count";
  std::optional<std::span<const uint8_t>> bits = r->Raw((size_t{count} + 7) / 8);
  if (!bits) return "differs";
  v->differs.assign(count, false);
  for (size_t i = 0; i < count; ++i) v->differs[i] = (((*bits)[i / 8] >> (i % 8)) & 1u) != 0;
  const size_t used = count % 8;
  if (used != 0 && (bits->back() >> used) != 0) return "differs";  // padding bits must be 0
  return "";
}

std::string_view Parse(Reader* r, Ping* p) {
  if (!r->Uint(&p->timestamp)) return "timestamp";
  return "";
}

std::string_view Parse(Reader* r, Error* e) {
  if (!r->Uint(&e->code)) return "code";
  if (!r->Str16(&e->message)) return "message";
  return "";
}

template <typename T>
std::string_view ParseAs(Reader* r, FrameBody* body) {
  T v;
  std::string_view bad = Parse(r, &v);
  if (bad.empty()) *body = std::move(v);
  return bad;
}

std::string_view ParsePayload(FrameType t, Reader* r, FrameBody* body) {
  switch (t) {
    case FrameType::kHello:
    case FrameType::kHelloAck: return ParseAs<Hello>(r, body);
    case FrameType::kWrite: return ParseAs<Write>(r, body);
    case FrameType::kAck: return ParseAs<Ack>(r, body);
    case FrameType::kSyncRequest: return ParseAs<SyncRequest>(r, body);
    case FrameType::kSyncData: return ParseAs<SyncData>(r, body);
    case FrameType::kSyncDone: return ParseAs<SyncDone>(r, body);
    case FrameType::kVerifyRequest: return ParseAs<VerifyRequest>(r, body);
    case FrameType::kVerifyReply: return ParseAs<VerifyReply>(r, body);
    case FrameType::kPing:
    case FrameType::kPong: return ParseAs<Ping>(r, body);
    case FrameType::kError: return ParseAs<Error>(r, body);
  }
  return "type";
}

// ---- Semantic rules (Validate): returns the offending field, or "".

bool KnownType(FrameType t) {
  return static_cast<uint8_t>(t) >= static_cast<uint8_t>(FrameType::kHello) &&
         static_cast<uint8_t>(t) <= static_cast<uint8_t>(FrameType::kError);
}

// The variant alternative each type carries.
bool BodyMatches(FrameType t, const FrameBody& b) {
  switch (t) {
    case FrameType::kHello:
    case FrameType::kHelloAck: return std::holds_alternative<Hello>(b);
    case FrameType::kWrite: return std::holds_alternative<Write>(b);
    case FrameType::kAck: return std::holds_alternative<Ack>(b);
    case FrameType::kSyncRequest: return std::holds_alternative<SyncRequest>(b);
    case FrameType::kSyncData: return std::holds_alternative<SyncData>(b);
    case FrameType::kSyncDone: return std::holds_alternative<SyncDone>(b);
    case FrameType::kVerifyRequest: return std::holds_alternative<VerifyRequest>(b);
    case FrameType::kVerifyReply: return std::holds_alternative<VerifyReply>(b);
    case FrameType::kPing:
    case FrameType::kPong: return std::holds_alternative<Ping>(b);
    case FrameType::kError: return std::holds_alternative<Error>(b);
  }
  return false;
}

// First chunk `index` and `count` chunks all have a start that fits u64.
bool ChunkRangeOk(uint64_t index, uint64_t count) {
  return count >= 1 && index <= kChunkIndexMax && count - 1 <= kChunkIndexMax - index;
}

std::string_view Check(const Hello& h) {
  if (h.node.empty() || h.node.size() > kNodeNameBytesMax) return "node";
  if (h.role != NodeRole::kPrimary && h.role != NodeRole::kSecondary) return "role";
  if (h.protocol != Protocol::kA && h.protocol != Protocol::kB && h.protocol != Protocol::kC) {
    return "protocol";
  }
  if (h.software.size() > kSoftwareVersionBytesMax) return "software";
  return "";
}

bool KnownOp(WriteOp op) {
  return static_cast<uint8_t>(op) >= static_cast<uint8_t>(WriteOp::kCreate) &&
         static_cast<uint8_t>(op) <= static_cast<uint8_t>(WriteOp::kSync);
}

std::string_view Check(const Write& w) {
  if (!KnownOp(w.op)) return "op";
  const bool path_ok = IsValidPath(w.path) || (w.op == WriteOp::kSync && w.path.empty());
  if (!path_ok) return "path";
  if (w.op == WriteOp::kRename ? !IsValidPath(w.path2) : !w.path2.empty()) return "path2";
  if (w.op == WriteOp::kAppend || w.op == WriteOp::kWriteAt) {
    if (w.data.empty() || w.data.size() > kDataBytesMax) return "data";
    if (w.length != w.data.size()) return "length";
    if (w.offset > UINT64_MAX - w.length) return "offset";  // end of the write fits u64
    return "";
  }
  if (!w.data.empty()) return "data";
  if (w.offset != 0) return "offset";
  if (w.length != 0 && w.op != WriteOp::kTruncate) return "length";
  return "";
}

std::string_view Check(const Ack& a) {
  if (a.level != AckLevel::kReceived && a.level != AckLevel::kDurable) return "level";
  return "";
}

std::string_view Check(const SyncRequest& s) {
  if (!IsValidPath(s.path)) return "path";
  if (s.chunk_index > kChunkIndexMax) return "chunk_index";
  if (!ChunkRangeOk(s.chunk_index, s.chunk_count)) return "chunk_count";
  return "";
}

std::string_view Check(const SyncData& s) {
  if (!IsValidPath(s.path)) return "path";
  if (s.chunk_index > kChunkIndexMax) return "chunk_index";
  if (s.data.size() != ChunkLength(s.chunk_index, s.file_size)) return "data";
  return "";
}

std::string_view Check(const SyncDone&) { return ""; }

std::string_view Check(const VerifyRequest& v) {
  if (!IsValidPath(v.path)) return "path";
  if (v.chunk_index > kChunkIndexMax) return "chunk_index";
  if (v.hashes.size() > kVerifyChunksMax || !ChunkRangeOk(v.chunk_index, v.hashes.size())) {
    return "chunk_count";
  }
  if (v.algorithm != HashAlgorithm::kSha256) return "algorithm";
  return "";
}

std::string_view Check(const VerifyReply& v) {
  if (!IsValidPath(v.path)) return "path";
  if (v.chunk_index > kChunkIndexMax) return "chunk_index";
  if (v.differs.size() > kVerifyChunksMax || !ChunkRangeOk(v.chunk_index, v.differs.size())) {
    return "chunk_count";
  }
  return "";
}

std::string_view Check(const Ping&) { return ""; }

std::string_view Check(const Error& e) {
  if (e.code == 0) return "code";
  if (e.message.size() > kErrorMessageBytesMax) return "message";
  return "";
}

// Every rule but conn_id (which the decoder reports as wrong_connection).
std::string_view CheckFrame(const Frame& f) {
  if (!KnownType(f.type)) return "type";
  if ((f.flags & ~kFlagsKnown) != 0) return "flags";
  if (!BodyMatches(f.type, f.body)) return "body";
  return std::visit([](const auto& b) { return Check(b); }, f.body);
}

std::string Malformed(std::string_view field) { return "malformed: " + std::string(field); }

// Header fields and payload of one complete, authenticated frame.
std::string_view ParseFrame(std::span<const uint8_t> frame, Frame* out) {
  Reader header(frame.subspan(kTypeOffset, kHeaderBytes - kTypeOffset));
  Frame f;
  uint32_t length = 0;
  if (!header.Enum(&f.type) || !header.Uint(&f.flags) || !header.Uint(&length) ||
      !header.Uint(&f.seq) || !header.Uint(&f.conn_id) || !header.Uint(&f.accept_id)) {
    return "header";  // unreachable: the header is complete
  }
  if (!KnownType(f.type)) return "type";
  if ((f.flags & ~kFlagsKnown) != 0) return "flags";
  Reader payload(frame.subspan(kHeaderBytes, length));
  std::string_view bad = ParsePayload(f.type, &payload, &f.body);
  if (!bad.empty()) return bad;
  if (payload.remaining() != 0) return "trailing";
  bad = CheckFrame(f);
  if (!bad.empty()) return bad;
  *out = std::move(f);
  return "";
}

}  // namespace

std::string_view FrameTypeName(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "hello";
    case FrameType::kHelloAck: return "hello_ack";
    case FrameType::kWrite: return "write";
    case FrameType::kAck: return "ack";
    case FrameType::kSyncRequest: return "sync_request";
    case FrameType::kSyncData: return "sync_data";
    case FrameType::kSyncDone: return "sync_done";
    case FrameType::kVerifyRequest: return "verify_request";
    case FrameType::kVerifyReply: return "verify_reply";
    case FrameType::kPing: return "ping";
    case FrameType::kPong: return "pong";
    case FrameType::kError: return "error";
  }
  return "unknown";
}

bool IsValidPath(std::string_view path) {
  if (path.empty() || path.size() > kPathBytesMax) return false;
  if (path.find('\0') != std::string_view::npos) return false;
  size_t begin = 0;
  while (true) {
    const size_t end = path.find('/', begin);
    const std::string_view part =
        path.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
    if (part.empty() || part == "." || part == "..") return false;  // also "/a", "a/", "a//b"
    if (end == std::string_view::npos) return true;
    begin = end + 1;
  }
}

uint64_t ChunkLength(uint64_t index, uint64_t file_size) {
  if (index > kChunkIndexMax) return 0;
  const uint64_t start = index * kChunkBytes;
  if (start >= file_size) return 0;
  return std::min(kChunkBytes, file_size - start);
}

Status Validate(const Frame& f) {
  std::string_view bad = CheckFrame(f);
  if (bad.empty() && f.conn_id == 0) bad = "conn_id";
  return bad.empty() ? Status::Ok() : Status::Error(Malformed(bad));
}

Status ValidateIds(const Frame& f, Direction from) {
  const bool want_zero = from == Direction::kFromConnecting && f.seq == 1;
  if ((f.accept_id == 0) != want_zero) return Status::Error(Malformed("accept_id"));
  return Status::Ok();
}

// ---- FrameKey.

FrameKey::FrameKey(std::string_view cluster_key, Direction from, uint64_t conn_id,
                   uint64_t accept_id)
    : conn_id_(conn_id), accept_id_(accept_id), ctx_(EVP_CIPHER_CTX_new()) {
  TANDEM_CHECK(ctx_ != nullptr);
  std::array<uint8_t, kFrameKeyBytes> key = DeriveFrameKey(cluster_key, from, conn_id, accept_id);
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  const int ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
  OPENSSL_cleanse(key.data(), key.size());
  TANDEM_CHECK(ok == 1);
  TANDEM_CHECK(EVP_CIPHER_CTX_get_iv_length(ctx) == static_cast<int>(kIvBytes));
}

FrameKey::~FrameKey() { EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_)); }

bool FrameKey::Tag(uint64_t seq, std::span<const uint8_t> frame,
                   std::array<uint8_t, kMacBytes>* tag) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  std::array<uint8_t, kIvBytes> iv{};
  for (size_t i = 0; i < 8; ++i) iv[i] = static_cast<uint8_t>(seq >> (8 * i));
  if (frame.size() > static_cast<size_t>(INT_MAX)) return false;
  int n = 0;
  uint8_t none[16];  // GCM's final step writes no bytes
  return EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) == 1 &&
         EVP_EncryptUpdate(ctx, nullptr, &n, frame.data(), static_cast<int>(frame.size())) == 1 &&
         EVP_EncryptFinal_ex(ctx, none, &n) == 1 && n == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kMacBytes),
                             tag->data()) == 1;
}

namespace {

// Header and payload of `f`, without the tag.
std::vector<uint8_t> Serialize(const Frame& f) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.Raw(kMagic);
  w.U8(kVersion);
  w.Enum(f.type);
  w.Uint(f.flags);
  w.Uint(uint32_t{0});  // length, patched below
  w.Uint(f.seq);
  w.Uint(f.conn_id);
  w.Uint(f.accept_id);
  TANDEM_CHECK(out.size() == kHeaderBytes);
  std::visit([&w](const auto& b) { Put(b, &w); }, f.body);
  const size_t length = out.size() - kHeaderBytes;
  TANDEM_CHECK(length <= UINT32_MAX);
  for (size_t i = 0; i < 4; ++i) out[kLengthOffset + i] = static_cast<uint8_t>(length >> (8 * i));
  return out;
}

void AppendTag(std::vector<uint8_t>* out, uint64_t seq, FrameKey* key) {
  std::array<uint8_t, kMacBytes> tag;
  TANDEM_CHECK(key->Tag(seq, *out, &tag));
  out->insert(out->end(), tag.begin(), tag.end());
}

}  // namespace

std::vector<uint8_t> EncodeFrame(const Frame& f, std::string_view key, Direction from) {
  TANDEM_CHECK(Validate(f).ok() && ValidateIds(f, from).ok());
  return internal::EncodeFrameUnchecked(f, key, from);
}

std::vector<uint8_t> FrameEncoder::Encode(const Frame& f) {
  TANDEM_CHECK(Validate(f).ok() && ValidateIds(f, from_).ok());
  if (!frame_key_ || !frame_key_->Matches(f.conn_id, f.accept_id)) {
    frame_key_ = std::make_unique<FrameKey>(key_, from_, f.conn_id, f.accept_id);
  }
  std::vector<uint8_t> out = Serialize(f);
  AppendTag(&out, f.seq, frame_key_.get());
  return out;
}

namespace internal {

std::vector<uint8_t> EncodeFrameUnchecked(const Frame& f, std::string_view key, Direction from) {
  FrameKey frame_key(key, from, f.conn_id, f.accept_id);
  std::vector<uint8_t> out = Serialize(f);
  AppendTag(&out, f.seq, &frame_key);
  return out;
}

void Resign(std::vector<uint8_t>* frame, std::string_view key, Direction from) {
  TANDEM_CHECK(frame->size() >= kHeaderBytes + kMacBytes);
  Reader ids(std::span<const uint8_t>(*frame).subspan(kSeqOffset, 24));
  uint64_t seq = 0, conn_id = 0, accept_id = 0;
  TANDEM_CHECK(ids.Uint(&seq) && ids.Uint(&conn_id) && ids.Uint(&accept_id));
  FrameKey frame_key(key, from, conn_id, accept_id);
  std::array<uint8_t, kMacBytes> tag;
  const size_t body = frame->size() - kMacBytes;
  TANDEM_CHECK(frame_key.Tag(seq, std::span<const uint8_t>(*frame).first(body), &tag));
  std::copy(tag.begin(), tag.end(), frame->begin() + static_cast<std::ptrdiff_t>(body));
}

}  // namespace internal

// ---- FrameDecoder.

FrameDecoder::FrameDecoder(std::string key, Direction from) : key_(std::move(key)), from_(from) {}

FrameDecoder::Result FrameDecoder::Fail(std::string reason) {
  error_ = std::move(reason);
  buffer_.clear();
  buffer_.shrink_to_fit();
  start_ = 0;
  return kError;
}

void FrameDecoder::AdoptStorage(std::vector<uint8_t> storage) {
  TANDEM_CHECK(buffer_.empty() && start_ == 0);
  storage.clear();
  buffer_ = std::move(storage);
}

std::vector<uint8_t> FrameDecoder::ReleaseStorage() {
  std::vector<uint8_t> out = std::move(buffer_);
  out.clear();
  buffer_ = {};
  start_ = 0;
  header_ok_ = false;
  return out;
}

void FrameDecoder::Feed(std::span<const uint8_t> bytes) {
  if (!error_.empty()) return;
  if (start_ > 0) {  // drop consumed frames; what is left is less than one frame
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  if (!header_ok_ && buffered() >= kHeaderBytes) CheckHeader();
}

bool FrameDecoder::CheckHeader() {
  std::span<const uint8_t> header(buffer_.data() + start_, kHeaderBytes);
  std::string_view bad = HeaderError(header);
  if (!bad.empty()) {
    Fail(std::string(bad));
    return false;
  }
  header_ok_ = true;
  return true;
}

FrameDecoder::Result FrameDecoder::Authenticate(std::span<const uint8_t> frame) {
  Reader ids(frame.subspan(kSeqOffset, 24));
  uint64_t seq = 0, conn_id = 0, accept_id = 0;
  TANDEM_CHECK(ids.Uint(&seq) && ids.Uint(&conn_id) && ids.Uint(&accept_id));
  // The key follows from the ids in the header: altered ids give another
  // key, and so a wrong tag.
  if (!frame_key_ || !frame_key_->Matches(conn_id, accept_id)) {
    frame_key_ = std::make_unique<FrameKey>(key_, from_, conn_id, accept_id);
  }
  std::span<const uint8_t> body = frame.first(frame.size() - kMacBytes);
  std::array<uint8_t, kMacBytes> want;
  if (!frame_key_->Tag(seq, body, &want) ||
      CRYPTO_memcmp(want.data(), frame.last(kMacBytes).data(), kMacBytes) != 0) {
    return Fail("bad_mac");
  }
  if (conn_id == 0 || (conn_id_ != 0 && conn_id != conn_id_)) return Fail("wrong_connection");
  // accept_id: 0 exactly in the connecting side's first frame, then the
  // accepting side's id in every frame of both directions.
  const bool want_zero = from_ == Direction::kFromConnecting && next_seq_ == 1;
  const bool other_accept_id = accept_id_ != 0 && accept_id != 0 && accept_id != accept_id_;
  if ((accept_id == 0) != want_zero || other_accept_id) {
    return Fail("wrong_connection");
  }
  if (seq != next_seq_) return Fail("bad_sequence");
  return kFrame;
}

FrameDecoder::Result FrameDecoder::Next(Frame* out) {
  if (!error_.empty()) return kError;
  if (!header_ok_) {
    if (buffered() < kHeaderBytes) return kNeedMore;
    if (!CheckHeader()) return kError;
  }
  std::span<const uint8_t> rest(buffer_.data() + start_, buffered());
  const size_t total = kHeaderBytes + PayloadLength(rest) + kMacBytes;
  if (rest.size() < total) return kNeedMore;
  std::span<const uint8_t> frame = rest.first(total);
  if (Authenticate(frame) != kFrame) return kError;
  Frame f;
  std::string_view bad = ParseFrame(frame, &f);
  if (!bad.empty()) return Fail(Malformed(bad));
  conn_id_ = f.conn_id;
  if (f.accept_id != 0) accept_id_ = f.accept_id;
  ++next_seq_;
  start_ += total;
  header_ok_ = false;
  *out = std::move(f);
  return kFrame;
}

}  // namespace tandem::repl
