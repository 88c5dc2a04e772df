#include "console/tls.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>

#include "os/files.h"

namespace tandem::console {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

Status AddExt(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Status::Error("cannot add certificate extension " + value);
  }
  return Status::Ok();
}

}  // namespace

Status GenerateSelfSigned(const std::string& cert_path, const std::string& key_path,
                          const std::string& common_name,
                          const std::vector<std::string>& ip_addresses,
                          const std::vector<std::string>& dns_names, int days) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return Status::Error("TLS: cannot generate a P-256 key");
  X509Ptr cert(X509_new());
  if (!cert) return Status::Error("TLS: X509_new failed");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return Status::Error("TLS: RAND_bytes failed");
  serial[0] &= 0x7f;  // a positive serial number
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  ok = ok && X509_set_version(cert.get(), 2) == 1 &&
       X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400) != nullptr &&
       X509_set_pubkey(cert.get(), key.get()) == 1;
  X509_NAME* name = X509_get_subject_name(cert.get());
  ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                        reinterpret_cast<const unsigned char*>("Tandem console"),
                                        -1, -1, 0) == 1 &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                  -1, 0) == 1 &&
       X509_set_issuer_name(cert.get(), name) == 1;
  if (!ok) return Status::Error("TLS: cannot fill in the certificate");
  std::string san;
  for (const std::string& ip : ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  for (const std::string& dns : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + dns;
  TANDEM_RETURN_IF_ERROR(AddExt(cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  TANDEM_RETURN_IF_ERROR(
      AddExt(cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement"));
  TANDEM_RETURN_IF_ERROR(AddExt(cert.get(), NID_ext_key_usage, "serverAuth"));
  TANDEM_RETURN_IF_ERROR(AddExt(cert.get(), NID_subject_key_identifier, "hash"));
  if (!san.empty()) TANDEM_RETURN_IF_ERROR(AddExt(cert.get(), NID_subject_alt_name, san));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) {
    return Status::Error("TLS: cannot sign the certificate");
  }
  BioPtr key_bio(BIO_new(BIO_s_mem())), cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1) {
    return Status::Error("TLS: cannot encode the key or certificate");
  }
  TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(key_path, BioText(key_bio.get()), 0600));
  return os::WriteFileAtomic(cert_path, BioText(cert_bio.get()), 0644);
}

Result<std::string> CertFingerprint(const std::string& cert_path) {
  auto pem = os::ReadFile(cert_path, 1 << 20);
  if (!pem.ok()) return pem.status();
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return Status::Error(cert_path + ": no PEM certificate in it");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &n) != 1) {
    return Status::Error(cert_path + ": cannot compute the fingerprint");
  }
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    char b[4];
    std::snprintf(b, sizeof b, "%s%02X", i ? ":" : "", md[i]);
    out += b;
  }
  return out;
}

Result<std::string> CertSha256Hex(const std::string& cert_path) {
  auto fp = CertFingerprint(cert_path);
  if (!fp.ok()) return fp.status();
  std::string out;
  for (char c : *fp) {
    if (c == ':') continue;
    out += (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return out;
}

}  // namespace tandem::console
