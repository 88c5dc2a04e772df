// Password hashing and the console's secrets (docs/CONSOLE.md, "Users").
//
// A stored hash names its algorithm and parameters, so the default can
// change without invalidating stored passwords:
//   scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt, hex>$<derived key, hex>
//   pbkdf2-sha256$i=<iterations>$<salt, hex>$<derived key, hex>
// New hashes use scrypt (OpenSSL EVP_PBE_scrypt) with kScryptDefault; both
// forms verify. Salts are 16 random bytes, derived keys 32 bytes, and the
// comparison is constant-time (CRYPTO_memcmp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace tandem::console {

struct ScryptParams {
  int log2_n = 15;  // N = 32768: 32 MiB and ~0.1 s per hash on a server core
  int r = 8;
  int p = 1;
};
inline constexpr ScryptParams kScryptDefault{};
inline constexpr int kPbkdf2IterationsMin = 200000;

// Limits on what Verify accepts from the database (a corrupt row must not
// make the console allocate gigabytes or spin for minutes).
inline constexpr int kScryptLog2NMin = 10, kScryptLog2NMax = 20;
inline constexpr int kPbkdf2IterationsMax = 10000000;

// Hashes `password` with a fresh random salt. Error only if OpenSSL fails.
Result<std::string> HashPassword(std::string_view password,
                                 const ScryptParams& params = kScryptDefault);
// PBKDF2-HMAC-SHA256 (kept for stored hashes of that form; tests).
Result<std::string> HashPasswordPbkdf2(std::string_view password, int iterations);

// True if `password` matches `stored`. A malformed `stored` (unknown
// algorithm, parameters out of range, bad hex) is an error, never a match.
Result<bool> VerifyPassword(std::string_view password, std::string_view stored);

// `n` bytes at `p` as 2n lowercase hex characters.
std::string Hex(const unsigned char* p, size_t n);
// `n` random bytes from OpenSSL's CSPRNG, hex-encoded (2n characters).
Result<std::string> RandomHex(size_t n);
// A random password of `chars` characters from [A-Za-z0-9] (unbiased).
Result<std::string> RandomPassword(size_t chars);
// The SHA-256 of `data`, hex-encoded.
std::string Sha256Hex(std::string_view data);

}  // namespace tandem::console
