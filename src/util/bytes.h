// Little-endian byte encoding shared by the wire formats (heartbeat packets,
// replication frames): a Writer that appends to a buffer and a Reader that
// consumes one, never past its end. Header-only; no allocation beyond the
// Writer's vector.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "util/status.h"

namespace tandem::util {

// Appends little-endian unsigned integers, enums and raw bytes to `*out`
// (not owned; must outlive the Writer). Not thread-safe.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(v); }
  // sizeof(T) bytes, least significant first.
  template <std::unsigned_integral T>
  void Uint(T v) {
    for (size_t i = 0; i < sizeof(T); ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  // An enum as its (unsigned) underlying type.
  template <typename E>
    requires std::is_enum_v<E>
  void Enum(E v) {
    Uint(static_cast<std::underlying_type_t<E>>(v));
  }
  // Bytes as they are, no length.
  void Raw(std::span<const uint8_t> b) { out_->insert(out_->end(), b.begin(), b.end()); }
  void Raw(std::string_view s) { out_->insert(out_->end(), s.begin(), s.end()); }
  // u16 length, then the bytes. REQUIRES: s.size() <= UINT16_MAX (CHECKed).
  void Str16(std::string_view s) {
    TANDEM_CHECK(s.size() <= UINT16_MAX);
    Uint(static_cast<uint16_t>(s.size()));
    Raw(s);
  }
  // u32 length, then the bytes. REQUIRES: b.size() <= UINT32_MAX (CHECKed).
  void Bytes32(std::span<const uint8_t> b) {
    TANDEM_CHECK(b.size() <= UINT32_MAX);
    Uint(static_cast<uint32_t>(b.size()));
    Raw(b);
  }

 private:
  std::vector<uint8_t>* out_;
};

// Consumes what Writer writes from a span (not owned; must outlive the
// Reader). Every read that finds fewer bytes left than it needs returns
// false (or nullopt) and consumes nothing; a length-prefixed read consumes
// nothing unless its whole value is there. Not thread-safe.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  size_t remaining() const { return in_.size(); }

  template <std::unsigned_integral T>
  bool Uint(T* v) {
    if (in_.size() < sizeof(T)) return false;
    T x = 0;
    for (size_t i = 0; i < sizeof(T); ++i) x |= static_cast<T>(static_cast<T>(in_[i]) << (8 * i));
    in_ = in_.subspan(sizeof(T));
    *v = x;
    return true;
  }
  // Stores any wire value, known or not: the caller validates it.
  template <typename E>
    requires std::is_enum_v<E>
  bool Enum(E* v) {
    std::underlying_type_t<E> raw = 0;
    if (!Uint(&raw)) return false;
    *v = static_cast<E>(raw);
    return true;
  }
  // The next `n` bytes, as a view into the input.
  std::optional<std::span<const uint8_t>> Raw(size_t n) {
    if (in_.size() < n) return std::nullopt;
    std::span<const uint8_t> got = in_.first(n);
    in_ = in_.subspan(n);
    return got;
  }
  // The next `n` bytes as a string (a length read before, e.g. a u8).
  bool Str(size_t n, std::string* s) {
    std::optional<std::span<const uint8_t>> b = Raw(n);
    if (!b) return false;
    s->assign(b->begin(), b->end());
    return true;
  }
  // What Writer::Str16 wrote.
  bool Str16(std::string* s) {
    return Prefixed<uint16_t>([s](std::span<const uint8_t> b) { s->assign(b.begin(), b.end()); });
  }
  // What Writer::Bytes32 wrote.
  bool Bytes32(std::vector<uint8_t>* v) {
    return Prefixed<uint32_t>([v](std::span<const uint8_t> b) { v->assign(b.begin(), b.end()); });
  }

 private:
  // A length of type N, then that many bytes handed to `take`; consumes
  // nothing unless both are there.
  template <typename N, typename Take>
  bool Prefixed(Take take) {
    std::span<const uint8_t> saved = in_;
    N n = 0;
    std::optional<std::span<const uint8_t>> b;
    if (!Uint(&n) || !(b = Raw(n))) {
      in_ = saved;
      return false;
    }
    take(*b);
    return true;
  }

  std::span<const uint8_t> in_;
};

}  // namespace tandem::util
