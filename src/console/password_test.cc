#include "console/password.h"

#include <gtest/gtest.h>

#include <set>

namespace tandem::console {
namespace {

constexpr ScryptParams kFast{10, 8, 1};

TEST(Password, ScryptRoundTripWithDefaults) {
  auto h = HashPassword("correct horse battery staple");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("scrypt$ln=15,r=8,p=1$", 0), 0u) << *h;
  EXPECT_EQ(h->find("correct"), std::string::npos);
  EXPECT_TRUE(*VerifyPassword("correct horse battery staple", *h));
  EXPECT_FALSE(*VerifyPassword("correct horse battery stapl", *h));
  EXPECT_FALSE(*VerifyPassword("", *h));
}

TEST(Password, SaltedSoSamePasswordHashesDiffer) {
  auto a = HashPassword("same password!", kFast), b = HashPassword("same password!", kFast);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(*VerifyPassword("same password!", *a));
  EXPECT_TRUE(*VerifyPassword("same password!", *b));
}

TEST(Password, ParametersAreReadFromTheStoredHash) {
  auto h = HashPassword("pw with params", ScryptParams{11, 4, 2});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("scrypt$ln=11,r=4,p=2$", 0), 0u);
  EXPECT_TRUE(*VerifyPassword("pw with params", *h));
}

TEST(Password, Pbkdf2Verifies) {
  auto h = HashPasswordPbkdf2("legacy password", kPbkdf2IterationsMin);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("pbkdf2-sha256$i=200000$", 0), 0u);
  EXPECT_TRUE(*VerifyPassword("legacy password", *h));
  EXPECT_FALSE(*VerifyPassword("legacy passwort", *h));
}

TEST(Password, MalformedHashesAreErrorsNotMatches) {
  auto good = HashPassword("pw", kFast);
  ASSERT_TRUE(good.ok());
  std::string salt_and_key = good->substr(good->find('$', 7));  // "$<salt>$<key>"
  for (const std::string& bad : std::vector<std::string>{"", std::string("plain"), "md5$x$" + salt_and_key.substr(1),
                          "scrypt$ln=30,r=8,p=1" + salt_and_key,   // N too large
                          "scrypt$ln=4,r=8,p=1" + salt_and_key,    // N too small
                          "scrypt$ln=10,r=8" + salt_and_key,       // missing p
                          std::string("scrypt$ln=10,r=8,p=1$zz$00"),  // bad hex
                          "pbkdf2-sha256$i=1000" + salt_and_key,   // too few iterations
                          *good + "$extra"}) {
    auto r = VerifyPassword("pw", bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(Password, RandomSecrets) {
  auto a = RandomHex(32), b = RandomHex(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 64u);
  EXPECT_NE(*a, *b);
  std::set<char> seen;
  for (int i = 0; i < 20; ++i) {
    auto p = RandomPassword(24);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->size(), 24u);
    for (char c : *p) {
      EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << *p;
      seen.insert(c);
    }
  }
  EXPECT_GT(seen.size(), 40u);  // 480 draws from 62 symbols
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace tandem::console
