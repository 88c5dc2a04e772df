// HA licenses (R-DEP-4; docs/CONSOLE.md, "Licenses"): a license is a signed
// JSON document
//
//   {"license": {"id", "kind": "ha", "issued_to", "expires": RFC 3339},
//    "key_id": 16 hex, "signature": base64}
//
// where "signature" is Ed25519 over the canonical text of the "license"
// object (nlohmann::json::dump(): keys sorted, no spaces) and "key_id"
// names the signing key (the first 8 bytes, hex, of the SHA-256 of its
// public key's DER). The console verifies it against the public keys (PEM
// files, *.pem) of console.license_keys_dir, with OpenSSL EVP.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace tandem::console {

inline constexpr const char* kLicenseKindHa = "ha";
inline constexpr size_t kLicenseIdLenMax = 64;
inline constexpr size_t kLicenseIssuedToLenMax = 200;
inline constexpr size_t kLicenseDocumentBytesMax = 8192;
inline constexpr size_t kLicenseKeysMax = 64;  // *.pem files read from the directory

struct LicenseFields {
  std::string id;         // 1..64 characters from A-Z a-z 0-9 _ . -
  std::string kind = kLicenseKindHa;
  std::string issued_to;  // 1..200 bytes, no control characters
  int64_t expires_at_ms = 0;
};

struct LicenseKey {
  std::string key_id;  // 16 lowercase hex
  std::string file;    // where it was read from
  std::string public_pem;
};

struct LicenseKeys {
  std::vector<LicenseKey> keys;
  std::vector<std::string> problems;  // files skipped, and why
};

// The *.pem files of `dir` (at most kLicenseKeysMax, by name) that hold an
// Ed25519 public key; others are listed in problems. Error: the directory
// cannot be read. An empty `dir` gives no keys.
Result<LicenseKeys> LoadLicenseKeys(const std::string& dir);

enum class LicenseProblem {
  kNone,
  kMalformed,     // not JSON, or not the document's shape (message says what)
  kUnknownKey,    // key_id names none of the keys
  kBadSignature,  // the key is known, the signature does not verify
  kExpired,       // verified, but expires <= now
};

// "ok", "malformed", "unknown_key", "bad_signature", "expired".
const char* LicenseProblemName(LicenseProblem p);

struct LicenseCheck {
  LicenseProblem problem = LicenseProblem::kMalformed;
  std::string message;    // why, when problem != kNone
  LicenseFields fields;   // set unless kMalformed
  std::string key_id;     // set unless kMalformed
};

// Parses `document` and verifies it against `keys` at wall time `now_ms`.
LicenseCheck CheckLicense(const std::string& document, const std::vector<LicenseKey>& keys,
                          int64_t now_ms);

// A new Ed25519 key pair (PEM: PKCS#8 private key, SubjectPublicKeyInfo
// public key) and its key id.
struct LicenseKeyPair {
  std::string private_pem, public_pem, key_id;
};
Result<LicenseKeyPair> GenerateLicenseKey();

// The key id of a PEM public key (or of a private key's public half).
Result<std::string> LicenseKeyId(const std::string& pem, bool is_private);

// The signed document (one line of JSON) for `fields`, signed with the
// Ed25519 private key `private_pem`. Error: bad fields or key.
Result<std::string> SignLicense(const LicenseFields& fields, const std::string& private_pem);

// "2027-01-31T00:00:00Z" (seconds) and back. Parsing accepts
// YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).
std::string Rfc3339Seconds(int64_t wall_ms);
Result<int64_t> ParseRfc3339(const std::string& text);

}  // namespace tandem::console
