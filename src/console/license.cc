#include "console/license.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

#include <nlohmann/json.hpp>

#include "console/password.h"
#include "os/files.h"

namespace tandem::console {

using nlohmann::json;

namespace {

constexpr size_t kKeyIdBytes = 8;
constexpr size_t kSignatureBytes = 64;  // Ed25519
constexpr size_t kKeyFileBytesMax = 16 * 1024;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Bio = std::unique_ptr<BIO, BioFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

Pkey ReadPem(const std::string& pem, bool is_private) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  EVP_PKEY* k = is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                           : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  Pkey key(k);
  if (key && EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519) return nullptr;
  return key;
}

Result<std::string> KeyIdOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return Status::Error("cannot encode the public key");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(n), digest);
  OPENSSL_free(der);
  return Hex(digest, kKeyIdBytes);
}

std::string Base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Strict base64 (RFC 4648 alphabet, padded): false on anything else.
bool Unbase64(const std::string& text, std::string* out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.empty() || text.size() % 4 != 0) return false;
  out->clear();
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + static_cast<size_t>(j)];
      if (c == '=' && last && j >= 2) {
        ++pad;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return false;  // data after padding
      v[j] = value(c);
      if (v[j] < 0) return false;
    }
    const uint32_t w = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                       (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out->push_back(static_cast<char>((w >> 16) & 0xFF));
    if (pad < 2) out->push_back(static_cast<char>((w >> 8) & 0xFF));
    if (pad < 1) out->push_back(static_cast<char>(w & 0xFF));
  }
  return true;
}

bool IsIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

Status CheckFields(const LicenseFields& f) {
  if (f.id.empty() || f.id.size() > kLicenseIdLenMax ||
      !std::all_of(f.id.begin(), f.id.end(), IsIdChar)) {
    return Status::Error("license.id must be 1 to " + std::to_string(kLicenseIdLenMax) +
                         " characters from A-Z a-z 0-9 _ . -");
  }
  if (f.kind != kLicenseKindHa) return Status::Error("license.kind must be \"ha\"");
  if (f.issued_to.empty() || f.issued_to.size() > kLicenseIssuedToLenMax ||
      std::any_of(f.issued_to.begin(), f.issued_to.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; })) {
    return Status::Error("license.issued_to must be 1 to " + std::to_string(kLicenseIssuedToLenMax) +
                         " bytes without control characters");
  }
  return Status::Ok();
}

json LicenseObject(const LicenseFields& f) {
  return json{{"id", f.id},
              {"kind", f.kind},
              {"issued_to", f.issued_to},
              {"expires", Rfc3339Seconds(f.expires_at_ms)}};
}

int Digits(const std::string& s, size_t pos, size_t n, bool* ok) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') {
      *ok = false;
      return 0;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

const char* LicenseProblemName(LicenseProblem p) {
  switch (p) {
    case LicenseProblem::kNone: return "ok";
    case LicenseProblem::kMalformed: return "malformed";
    case LicenseProblem::kUnknownKey: return "unknown_key";
    case LicenseProblem::kBadSignature: return "bad_signature";
    case LicenseProblem::kExpired: return "expired";
  }
  return "malformed";
}

std::string Rfc3339Seconds(int64_t wall_ms) {
  time_t secs = static_cast<time_t>(wall_ms / 1000);
  if (wall_ms % 1000 < 0) --secs;
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

Result<int64_t> ParseRfc3339(const std::string& s) {
  const Status bad = Status::Error(
      "must be an RFC 3339 time like 2027-01-31T00:00:00Z, got \"" + s.substr(0, 40) + "\"");
  bool ok = s.size() >= 20 && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') &&
            s[13] == ':' && s[16] == ':';
  if (!ok) return bad;
  struct tm tm {};
  tm.tm_year = Digits(s, 0, 4, &ok) - 1900;
  tm.tm_mon = Digits(s, 5, 2, &ok) - 1;
  tm.tm_mday = Digits(s, 8, 2, &ok);
  tm.tm_hour = Digits(s, 11, 2, &ok);
  tm.tm_min = Digits(s, 14, 2, &ok);
  tm.tm_sec = Digits(s, 17, 2, &ok);
  if (!ok || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return bad;
  }
  size_t i = 19;
  int64_t ms = 0;
  if (i < s.size() && s[i] == '.') {
    size_t start = ++i;
    int64_t scale = 100;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ms += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start || i - start > 9) return bad;
  }
  int64_t offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    const int h = Digits(s, i + 1, 2, &ok), m = Digits(s, i + 4, 2, &ok);
    if (!ok || h > 23 || m > 59) return bad;
    offset_s = (s[i] == '+' ? 1 : -1) * (h * 3600 + m * 60);
    i += 6;
  } else {
    return bad;
  }
  if (i != s.size()) return bad;
  const int mday = tm.tm_mday;
  time_t t = timegm(&tm);
  if (tm.tm_mday != mday) return bad;  // e.g. February 30 normalized to March
  return (static_cast<int64_t>(t) - offset_s) * 1000 + ms;
}

Result<LicenseKeys> LoadLicenseKeys(const std::string& dir) {
  LicenseKeys out;
  if (dir.empty()) return out;
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".pem") files.push_back(p.string());
  }
  if (ec == std::errc::no_such_file_or_directory) return out;  // no keys
  if (ec) return Status::Error("license keys: " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  if (files.size() > kLicenseKeysMax) {
    out.problems.push_back(dir + ": more than " + std::to_string(kLicenseKeysMax) +
                           " key files; only the first are read");
    files.resize(kLicenseKeysMax);
  }
  for (const std::string& f : files) {
    auto pem = os::ReadFile(f, kKeyFileBytesMax);
    if (!pem.ok()) {
      out.problems.push_back(f + ": " + pem.status().message());
      continue;
    }
    Pkey key = ReadPem(*pem, /*is_private=*/false);
    if (!key) {
      out.problems.push_back(f + ": not a PEM Ed25519 public key");
      continue;
    }
    auto id = KeyIdOf(key.get());
    if (!id.ok()) {
      out.problems.push_back(f + ": " + id.status().message());
      continue;
    }
    out.keys.push_back(LicenseKey{*id, f, *pem});
  }
  return out;
}

LicenseCheck CheckLicense(const std::string& document, const std::vector<LicenseKey>& keys,
                          int64_t now_ms) {
  LicenseCheck c;
  auto malformed = [&c](const std::string& m) {
    c.problem = LicenseProblem::kMalformed;
    c.message = m;
    return c;
  };
  if (document.size() > kLicenseDocumentBytesMax) {
    return malformed("the document is larger than " + std::to_string(kLicenseDocumentBytesMax) +
                     " bytes");
  }
  json doc = json::parse(document, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return malformed("the document is not valid JSON");
  if (!doc.is_object()) return malformed("the document must be a JSON object");
  for (const auto& [k, v] : doc.items()) {
    if (k != "license" && k != "key_id" && k != "signature") {
      return malformed("unknown field \"" + k.substr(0, 40) + "\" in the document");
    }
  }
  if (!doc.contains("license") || !doc["license"].is_object()) {
    return malformed("the document needs a \"license\" object");
  }
  if (!doc.contains("key_id") || !doc["key_id"].is_string()) {
    return malformed("the document needs a \"key_id\" string");
  }
  if (!doc.contains("signature") || !doc["signature"].is_string()) {
    return malformed("the document needs a \"signature\" string");
  }
  const json& lic = doc["license"];
  for (const auto& [k, v] : lic.items()) {
    if (k != "id" && k != "kind" && k != "issued_to" && k != "expires") {
      return malformed("unknown field \"license." + k.substr(0, 40) + "\"");
    }
    if (!v.is_string()) return malformed("license." + k + " must be a string");
  }
  for (const char* k : {"id", "kind", "issued_to", "expires"}) {
    if (!lic.contains(k)) return malformed(std::string("license.") + k + " is missing");
  }
  LicenseFields f;
  f.id = lic["id"].get<std::string>();
  f.kind = lic["kind"].get<std::string>();
  f.issued_to = lic["issued_to"].get<std::string>();
  auto expires = ParseRfc3339(lic["expires"].get<std::string>());
  if (!expires.ok()) return malformed("license.expires " + expires.status().message());
  f.expires_at_ms = *expires;
  if (Status st = CheckFields(f); !st.ok()) return malformed(st.message());
  std::string signature;
  if (!Unbase64(doc["signature"].get<std::string>(), &signature) ||
      signature.size() != kSignatureBytes) {
    return malformed("signature must be the base64 of a 64-byte Ed25519 signature");
  }
  c.fields = f;
  c.key_id = doc["key_id"].get<std::string>().substr(0, 2 * kKeyIdBytes + 8);
  const LicenseKey* key = nullptr;
  for (const LicenseKey& k : keys) {
    if (k.key_id == c.key_id) key = &k;
  }
  if (key == nullptr) {
    c.problem = LicenseProblem::kUnknownKey;
    c.message = keys.empty() ? "no license keys are configured (no *.pem public key in "
                               "console.license_keys_dir)"
                             : "signed with key " + c.key_id +
                                   ", which is none of the console's license keys";
    return c;
  }
  Pkey pub = ReadPem(key->public_pem, /*is_private=*/false);
  MdCtx ctx(EVP_MD_CTX_new());
  const std::string signed_text = lic.dump();
  const bool verified =
      pub && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pub.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(signed_text.data()),
                       signed_text.size()) == 1;
  if (!verified) {
    c.problem = LicenseProblem::kBadSignature;
    c.message = "the signature does not verify with key " + c.key_id + " (" + key->file + ")";
    return c;
  }
  if (f.expires_at_ms <= now_ms) {
    c.problem = LicenseProblem::kExpired;
    c.message = "license " + f.id + " expired at " + Rfc3339Seconds(f.expires_at_ms);
    return c;
  }
  c.problem = LicenseProblem::kNone;
  c.message.clear();
  return c;
}

Result<LicenseKeyPair> GenerateLicenseKey() {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, void (*)(EVP_PKEY_CTX*)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return Status::Error("cannot generate an Ed25519 key");
  }
  Pkey key(raw);
  Bio priv(BIO_new(BIO_s_mem())), pub(BIO_new(BIO_s_mem()));
  if (!priv || !pub ||
      PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_PUBKEY(pub.get(), key.get()) != 1) {
    return Status::Error("cannot encode the Ed25519 key");
  }
  auto text = [](BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    return std::string(p, static_cast<size_t>(n));
  };
  auto id = KeyIdOf(key.get());
  if (!id.ok()) return id.status();
  return LicenseKeyPair{text(priv.get()), text(pub.get()), *id};
}

Result<std::string> LicenseKeyId(const std::string& pem, bool is_private) {
  Pkey key = ReadPem(pem, is_private);
  if (!key) {
    return Status::Error(std::string("not a PEM Ed25519 ") + (is_private ? "private" : "public") +
                         " key");
  }
  return KeyIdOf(key.get());
}

Result<std::string> SignLicense(const LicenseFields& fields, const std::string& private_pem) {
  TANDEM_RETURN_IF_ERROR(CheckFields(fields));
  Pkey key = ReadPem(private_pem, /*is_private=*/true);
  if (!key) return Status::Error("not a PEM Ed25519 private key");
  auto id = KeyIdOf(key.get());
  if (!id.ok()) return id.status();
  const std::string text = LicenseObject(fields).dump();
  MdCtx ctx(EVP_MD_CTX_new());
  unsigned char sig[kSignatureBytes];
  size_t sig_len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &sig_len, reinterpret_cast<const unsigned char*>(text.data()),
                     text.size()) != 1) {
    return Status::Error("Ed25519 signing failed");
  }
  json doc{{"license", LicenseObject(fields)},
           {"key_id", *id},
           {"signature", Base64(std::string(reinterpret_cast<const char*>(sig), sig_len))}};
  return doc.dump();
}

}  // namespace tandem::console
