#include "util/bytes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tandem::util {
namespace {

enum class Kind : uint8_t { kA = 7 };

TEST(BytesTest, WriterLayoutIsLittleEndian) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.U8(0xab);
  w.Uint(uint16_t{0x0102});
  w.Uint(uint32_t{0x03040506});
  w.Uint(uint64_t{0x0708090a0b0c0d0e});
  w.Enum(Kind::kA);
  w.Raw(std::string_view("hi"));
  w.Str16("xyz");
  w.Bytes32(std::vector<uint8_t>{9, 8});
  const std::vector<uint8_t> want = {0xab, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d,
                                     0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07, 7,    'h',  'i',
                                     3,    0,    'x',  'y',  'z',  2,    0,    0,    0,
                                     9,    8};
  EXPECT_EQ(out, want);
}

TEST(BytesTest, ReaderRoundTrip) {
  std::vector<uint8_t> buf;
  Writer w(&buf);
  w.Uint(uint64_t{0xfedcba9876543210});
  w.Enum(Kind::kA);
  w.Str16("path/a");
  w.Bytes32(std::vector<uint8_t>{1, 2, 3});
  w.Raw(std::string_view("tail"));
  Reader r(buf);
  uint64_t u = 0;
  Kind k{};
  std::string s;
  std::vector<uint8_t> v;
  ASSERT_TRUE(r.Uint(&u));
  EXPECT_EQ(u, 0xfedcba9876543210u);
  ASSERT_TRUE(r.Enum(&k));
  EXPECT_EQ(k, Kind::kA);
  ASSERT_TRUE(r.Str16(&s));
  EXPECT_EQ(s, "path/a");
  ASSERT_TRUE(r.Bytes32(&v));
  EXPECT_EQ(v, (std::vector<uint8_t>{1, 2, 3}));
  std::string tail;
  ASSERT_TRUE(r.Str(4, &tail));
  EXPECT_EQ(tail, "tail");
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_FALSE(r.Raw(1).has_value());
}

TEST(BytesTest, ShortReadsFailAndConsumeNothing) {
  const std::vector<uint8_t> three = {1, 2, 3};
  Reader r(three);
  uint32_t u32 = 99;
  EXPECT_FALSE(r.Uint(&u32));
  EXPECT_EQ(u32, 99u);
  EXPECT_EQ(r.remaining(), 3u);
  std::string s = "unchanged";
  EXPECT_FALSE(r.Str(4, &s));
  EXPECT_EQ(s, "unchanged");
  EXPECT_FALSE(r.Raw(4).has_value());
  EXPECT_EQ(r.remaining(), 3u);
  // A length prefix announcing more than is there: nothing consumed, not
  // even the prefix.
  const std::vector<uint8_t> truncated = {5, 0, 'a', 'b'};
  Reader p(truncated);
  EXPECT_FALSE(p.Str16(&s));
  EXPECT_EQ(s, "unchanged");
  EXPECT_EQ(p.remaining(), 4u);
  std::vector<uint8_t> v = {42};
  Reader q(truncated);
  EXPECT_FALSE(q.Bytes32(&v));  // u32 length 0x62610005
  EXPECT_EQ(v, std::vector<uint8_t>{42});
  EXPECT_EQ(q.remaining(), 4u);
  uint16_t u16 = 0;
  ASSERT_TRUE(q.Uint(&u16));  // still readable from the start
  EXPECT_EQ(u16, 5u);
}

}  // namespace
}  // namespace tandem::util
