#include "console/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>
#include <vector>

namespace tandem::console {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kKeyBytes = 32;
constexpr size_t kSaltBytesMax = 64;

bool Unhex(std::string_view s, std::vector<unsigned char>* out) {
  if (s.size() % 2 != 0) return false;
  out->clear();
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); i += 2) {
    int hi = nibble(s[i]), lo = nibble(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return true;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && *out >= 0;
}

// Splits "a$b$c$d" into exactly `n` fields.
bool Split(std::string_view s, char sep, size_t n, std::string_view* fields) {
  for (size_t i = 0; i < n; ++i) {
    size_t at = i + 1 < n ? s.find(sep) : s.size();
    if (at == std::string_view::npos) return false;
    fields[i] = s.substr(0, at);
    s.remove_prefix(i + 1 < n ? at + 1 : at);
  }
  return s.empty();
}

Status Scrypt(std::string_view password, const unsigned char* salt, size_t salt_len,
              const ScryptParams& k, unsigned char* key) {
  const uint64_t n = uint64_t{1} << k.log2_n;
  // OpenSSL needs about 128 * N * r bytes (plus p * r * 128): allow twice.
  const uint64_t maxmem = 2 * 128 * n * static_cast<uint64_t>(k.r) + (1 << 20);
  if (EVP_PBE_scrypt(password.data(), password.size(), salt, salt_len, n,
                     static_cast<uint64_t>(k.r), static_cast<uint64_t>(k.p), maxmem, key,
                     kKeyBytes) != 1) {
    return Status::Error("scrypt failed");
  }
  return Status::Ok();
}

Status Pbkdf2(std::string_view password, const unsigned char* salt, size_t salt_len,
              int iterations, unsigned char* key) {
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt,
                        static_cast<int>(salt_len), iterations, EVP_sha256(),
                        static_cast<int>(kKeyBytes), key) != 1) {
    return Status::Error("PBKDF2 failed");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, const ScryptParams& params) {
  TANDEM_CHECK(params.log2_n >= kScryptLog2NMin && params.log2_n <= kScryptLog2NMax);
  TANDEM_CHECK(params.r >= 1 && params.r <= 32 && params.p >= 1 && params.p <= 16);
  unsigned char salt[kSaltBytes], key[kKeyBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) return Status::Error("RAND_bytes failed");
  TANDEM_RETURN_IF_ERROR(Scrypt(password, salt, sizeof salt, params, key));
  std::string out = "scrypt$ln=" + std::to_string(params.log2_n) + ",r=" +
                    std::to_string(params.r) + ",p=" + std::to_string(params.p) + "$" +
                    Hex(salt, sizeof salt) + "$" + Hex(key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

Result<std::string> HashPasswordPbkdf2(std::string_view password, int iterations) {
  TANDEM_CHECK(iterations >= kPbkdf2IterationsMin && iterations <= kPbkdf2IterationsMax);
  unsigned char salt[kSaltBytes], key[kKeyBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) return Status::Error("RAND_bytes failed");
  TANDEM_RETURN_IF_ERROR(Pbkdf2(password, salt, sizeof salt, iterations, key));
  std::string out = "pbkdf2-sha256$i=" + std::to_string(iterations) + "$" +
                    Hex(salt, sizeof salt) + "$" + Hex(key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

Result<bool> VerifyPassword(std::string_view password, std::string_view stored) {
  std::string_view f[4];
  if (!Split(stored, '$', 4, f)) return Status::Error("malformed password hash");
  std::vector<unsigned char> salt, want;
  if (!Unhex(f[2], &salt) || salt.empty() || salt.size() > kSaltBytesMax || !Unhex(f[3], &want) ||
      want.size() != kKeyBytes) {
    return Status::Error("malformed password hash (salt or key)");
  }
  unsigned char got[kKeyBytes];
  if (f[0] == "scrypt") {
    std::string_view kv[3];
    ScryptParams k;
    if (!Split(f[1], ',', 3, kv) || kv[0].substr(0, 3) != "ln=" || kv[1].substr(0, 2) != "r=" ||
        kv[2].substr(0, 2) != "p=" || !ParseInt(kv[0].substr(3), &k.log2_n) ||
        !ParseInt(kv[1].substr(2), &k.r) || !ParseInt(kv[2].substr(2), &k.p) ||
        k.log2_n < kScryptLog2NMin || k.log2_n > kScryptLog2NMax || k.r < 1 || k.r > 32 ||
        k.p < 1 || k.p > 16) {
      return Status::Error("malformed password hash (scrypt parameters)");
    }
    TANDEM_RETURN_IF_ERROR(Scrypt(password, salt.data(), salt.size(), k, got));
  } else if (f[0] == "pbkdf2-sha256") {
    int iterations = 0;
    if (f[1].substr(0, 2) != "i=" || !ParseInt(f[1].substr(2), &iterations) ||
        iterations < kPbkdf2IterationsMin || iterations > kPbkdf2IterationsMax) {
      return Status::Error("malformed password hash (pbkdf2 parameters)");
    }
    TANDEM_RETURN_IF_ERROR(Pbkdf2(password, salt.data(), salt.size(), iterations, got));
  } else {
    return Status::Error("unknown password hash algorithm");
  }
  bool match = CRYPTO_memcmp(got, want.data(), kKeyBytes) == 0;
  OPENSSL_cleanse(got, sizeof got);
  return match;
}

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

Result<std::string> RandomHex(size_t n) {
  std::vector<unsigned char> b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) return Status::Error("RAND_bytes failed");
  std::string s = Hex(b.data(), n);
  OPENSSL_cleanse(b.data(), n);
  return s;
}

Result<std::string> RandomPassword(size_t chars) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  constexpr unsigned kSize = sizeof(kAlphabet) - 1;   // 62
  constexpr unsigned kLimit = 256 - (256 % kSize);    // reject above: no modulo bias
  std::string out;
  unsigned char buf[64];
  for (int rounds = 0; out.size() < chars && rounds < 1000; ++rounds) {
    if (RAND_bytes(buf, sizeof buf) != 1) return Status::Error("RAND_bytes failed");
    for (unsigned char c : buf) {
      if (c < kLimit && out.size() < chars) out += kAlphabet[c % kSize];
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  if (out.size() < chars) return Status::Error("RandomPassword: CSPRNG output rejected");
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  return Hex(d, sizeof d);
}

}  // namespace tandem::console
