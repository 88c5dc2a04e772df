// The console's TLS certificate (docs/CONSOLE.md, "TLS"): unless one is
// configured, a self-signed certificate is generated at first start.
#pragma once

#include <string>
#include <vector>

#include "util/status.h"

namespace tandem::console {

inline constexpr int kSelfSignedDays = 825;

// Writes a new self-signed certificate (PEM, mode 0644) for an ECDSA P-256
// key (PEM, mode 0600): subject CN=`common_name`, subjectAltName the
// `ip_addresses` and `dns_names`, valid for `days` from now, SHA-256
// signature, basicConstraints CA:FALSE. The key is written first; both
// atomically (os::WriteFileAtomic).
Status GenerateSelfSigned(const std::string& cert_path, const std::string& key_path,
                          const std::string& common_name,
                          const std::vector<std::string>& ip_addresses,
                          const std::vector<std::string>& dns_names, int days = kSelfSignedDays);

// The SHA-256 fingerprint of the first certificate in a PEM file,
// "AB:CD:..." (what `openssl x509 -fingerprint -sha256` prints).
Result<std::string> CertFingerprint(const std::string& cert_path);

// The same digest (SHA-256 of the certificate's DER) as 64 lowercase hex
// characters, no separators: what a pairing string pins
// (docs/CONSOLE.md, "Hosts: pairing and the agent channel").
Result<std::string> CertSha256Hex(const std::string& cert_path);

}  // namespace tandem::console
