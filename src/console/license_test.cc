#include "console/license.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1796205600000;  // 2026-12-02T10:00:00Z

LicenseFields Fields(const std::string& id = "ha-1") {
  LicenseFields f;
  f.id = id;
  f.issued_to = "Example Corp";
  f.expires_at_ms = kNow + 86400000;
  return f;
}

TEST(LicenseTest, Rfc3339) {
  EXPECT_EQ(*ParseRfc3339("2026-12-02T10:00:00Z"), kNow);
  EXPECT_EQ(*ParseRfc3339("2026-12-02T10:00:00.250Z"), kNow + 250);
  EXPECT_EQ(*ParseRfc3339("2026-12-02T12:00:00+02:00"), kNow);
  EXPECT_EQ(*ParseRfc3339("2026-12-02T09:30:00-00:30"), kNow);
  EXPECT_EQ(Rfc3339Seconds(kNow), "2026-12-02T10:00:00Z");
  for (const char* bad : {"", "2026-12-02", "2026-12-02T10:00:00", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                          "2026-12-02T10:00:00Zjunk", "2026-12-02T24:00:00Z", "2026-12-02 10:00:00Z",
                          "2026-12-02T10:00:00.Z"}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

TEST(LicenseTest, SignedLicenseVerifiesAndEveryProblemIsNamed) {
  auto key = GenerateLicenseKey();
  ASSERT_TRUE(key.ok()) << key.status().message();
  EXPECT_EQ(key->key_id.size(), 16u);
  EXPECT_EQ(*LicenseKeyId(key->public_pem, false), key->key_id);
  EXPECT_EQ(*LicenseKeyId(key->private_pem, true), key->key_id);
  const std::vector<LicenseKey> keys{{key->key_id, "k.pem", key->public_pem}};
  auto doc = SignLicense(Fields(), key->private_pem);
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  json j = json::parse(*doc);
  EXPECT_EQ(j["license"]["expires"], "2026-12-03T10:00:00Z");
  EXPECT_EQ(j["key_id"], key->key_id);

  LicenseCheck c = CheckLicense(*doc, keys, kNow);
  EXPECT_EQ(c.problem, LicenseProblem::kNone) << c.message;
  EXPECT_EQ(c.fields.id, "ha-1");
  EXPECT_EQ(c.fields.issued_to, "Example Corp");
  EXPECT_EQ(c.fields.expires_at_ms, kNow + 86400000);

  // Expired: at and after the expiry time.
  EXPECT_EQ(CheckLicense(*doc, keys, kNow + 86400000).problem, LicenseProblem::kExpired);
  // Any change of the signed object breaks the signature.
  for (const char* field : {"id", "issued_to", "expires"}) {
    json t = j;
    t["license"][field] = field == std::string("expires") ? "2027-12-03T10:00:00Z" : "other";
    EXPECT_EQ(CheckLicense(t.dump(), keys, kNow).problem, LicenseProblem::kBadSignature) << field;
  }
  // Other key.
  auto other = GenerateLicenseKey();
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(CheckLicense(*SignLicense(Fields(), other->private_pem), keys, kNow).problem,
            LicenseProblem::kUnknownKey);
  EXPECT_EQ(CheckLicense(*doc, {}, kNow).problem, LicenseProblem::kUnknownKey);
  // A key id claiming the known key over another key's signature.
  json forged = json::parse(*SignLicense(Fields(), other->private_pem));
  forged["key_id"] = key->key_id;
  EXPECT_EQ(CheckLicense(forged.dump(), keys, kNow).problem, LicenseProblem::kBadSignature);
  // Shape.
  for (const std::string& bad :
       {std::string("nope"), std::string("[]"), std::string("{}"),
        json{{"license", j["license"]}, {"signature", j["signature"]}}.dump(),
        json{{"license", j["license"]}, {"key_id", j["key_id"]}, {"signature", "abc"}}.dump(),
        json{{"license", j["license"]}, {"key_id", j["key_id"]}, {"signature", j["signature"]}, {"x", 1}}.dump()}) {
    EXPECT_EQ(CheckLicense(bad, keys, kNow).problem, LicenseProblem::kMalformed) << bad;
  }
  json extra = j;
  extra["license"]["seats"] = "5";
  EXPECT_EQ(CheckLicense(extra.dump(), keys, kNow).problem, LicenseProblem::kMalformed);
  // Bad fields are refused when signing.
  LicenseFields f = Fields("bad id");
  EXPECT_FALSE(SignLicense(f, key->private_pem).ok());
  f = Fields();
  f.kind = "siem";
  EXPECT_FALSE(SignLicense(f, key->private_pem).ok());
  EXPECT_FALSE(SignLicense(Fields(), key->public_pem).ok());
}

TEST(LicenseTest, KeysAreReadFromTheDirectory) {
  TempDir dir("license-keys");
  auto none = LoadLicenseKeys(dir / "missing");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->keys.empty());
  auto key = GenerateLicenseKey();
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(os::WriteFileAtomic(dir / "a.pem", key->public_pem, 0644).ok());
  ASSERT_TRUE(os::WriteFileAtomic(dir / "b.pem", "not a key\n", 0644).ok());
  ASSERT_TRUE(os::WriteFileAtomic(dir / "c.pem", key->private_pem, 0600).ok());  // not a public key
  ASSERT_TRUE(os::WriteFileAtomic(dir / "readme.txt", key->public_pem, 0644).ok());  // not *.pem
  auto keys = LoadLicenseKeys(dir.path());
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  ASSERT_EQ(keys->keys.size(), 1u);
  EXPECT_EQ(keys->keys[0].key_id, key->key_id);
  EXPECT_EQ(keys->problems.size(), 2u);
  auto doc = SignLicense(Fields(), key->private_pem);
  EXPECT_EQ(CheckLicense(*doc, keys->keys, kNow).problem, LicenseProblem::kNone);
}

}  // namespace
}  // namespace tandem::console
