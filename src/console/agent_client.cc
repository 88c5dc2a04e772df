#include "console/agent_client.h"

#include "api/httplib.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <cstdio>
#include <memory>

namespace tandem::console {

using nlohmann::json;

namespace {

constexpr std::string_view kPairingPrefix = "tp1.";
constexpr size_t kHexLen = 64;
// A package download (4 MiB payload, base64, docs/formats/packages.md) is
// the largest answer; facts and certificates are far smaller.
constexpr size_t kAgentAnswerBytesMax = 8u << 20;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<X509Ptr> ParsePem(const std::string& pem) {
  if (pem.empty() || pem.size() > kAgentAnswerBytesMax) {
    return Status::Error("not a PEM certificate (" + std::to_string(pem.size()) + " bytes)");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return Status::Error("not a PEM certificate");
  return cert;
}

Result<std::string> DerOf(X509* cert) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert, &der);
  if (n <= 0 || der == nullptr) return Status::Error("cannot encode the certificate as DER");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

// "host:port" with a port 1..65535.
Status SplitAddress(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size() ||
      address.size() - colon - 1 > 5) {
    return Status::Error("agent address must be host:port, got \"" + address + "\"");
  }
  int p = 0;
  for (size_t i = colon + 1; i < address.size(); ++i) {
    if (address[i] < '0' || address[i] > '9') {
      return Status::Error("agent address must be host:port, got \"" + address + "\"");
    }
    p = p * 10 + (address[i] - '0');
  }
  if (p < 1 || p > 65535) return Status::Error("agent address port must be 1..65535");
  *host = address.substr(0, colon);
  *port = p;
  return Status::Ok();
}

// The certificate-chain check of a connection to a paired agent: the
// server's certificate must be exactly the pinned one (DER-equal), and
// then pass OpenSSL's own checks (validity dates) against a store that
// holds only it. This replaces any other trust (system CAs included).
struct Pin {
  std::string der;        // the pinned certificate
  bool rejected = false;  // the server presented another one
};

int VerifyPinned(X509_STORE_CTX* ctx, void* arg) {
  Pin& pin = *static_cast<Pin*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(ctx);
  auto der = leaf != nullptr ? DerOf(leaf) : Result<std::string>(Status::Error("none"));
  if (!der.ok() || *der != pin.der) {
    pin.rejected = true;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  return X509_verify_cert(ctx);
}

// One HTTPS client for one call. With `pinned_pem` empty the server is not
// verified (fetching the certificate before pairing); else only that
// certificate is trusted.
class Call {
 public:
  Call(const std::string& address, const std::string& pinned_pem, int64_t timeout_ms)
      : address_(address), pinned_pem_(pinned_pem), timeout_ms_(timeout_ms) {}

  AgentReply Run(const std::string& method, const std::string& path, const std::string& bearer,
                 const json* body) {
    std::string host;
    int port = 0;
    TANDEM_RETURN_IF_ERROR(SplitAddress(address_, &host, &port));
    httplib::SSLClient cli(host, port);
    if (!cli.is_valid()) return Status::Error("agent " + address_ + ": cannot set up TLS");
    SSL_CTX* ctx = cli.ssl_context();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (pinned_pem_.empty()) {
      cli.enable_server_certificate_verification(false);
    } else {
      auto cert = ParsePem(pinned_pem_);
      if (!cert.ok()) return cert.status().Prefix("agent " + address_ + ": pinned certificate: ");
      auto der = DerOf(cert->get());
      if (!der.ok()) return der.status().Prefix("agent " + address_ + ": ");
      pin_.der = std::move(*der);
      StorePtr store(X509_STORE_new());
      if (!store || X509_STORE_add_cert(store.get(), cert->get()) != 1) {
        return Status::Error("agent " + address_ + ": cannot build the certificate store");
      }
      cli.set_ca_cert_store(store.release());  // the client owns it from here
      cli.enable_server_certificate_verification(true);
      SSL_CTX_set_cert_verify_callback(ctx, VerifyPinned, &pin_);
    }
    const auto timeout = std::chrono::milliseconds(timeout_ms_);
    cli.set_connection_timeout(timeout);
    cli.set_read_timeout(timeout);
    cli.set_write_timeout(timeout);
    cli.set_keep_alive(false);
    httplib::Headers headers;
    if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
    const std::string payload = body ? body->dump() : std::string("{}");
    httplib::Result res = method == "GET"      ? cli.Get(path, headers)
                          : method == "DELETE" ? cli.Delete(path, headers)
                          : method == "PUT"    ? cli.Put(path, headers, payload, "application/json")
                                               : cli.Post(path, headers, payload, "application/json");
    if (!res) {
      const httplib::Error err = res.error();
      if (pin_.rejected || err == httplib::Error::SSLServerVerification) {
        return Status::Error("agent " + address_ +
                             " unreachable: its TLS certificate is not the pinned one");
      }
      return Status::Error("agent " + address_ + " unreachable: " + httplib::to_string(err));
    }
    auto answered = [&](const std::string& what) {
      AgentReply r(Status::Error("agent " + address_ + " answered " + std::to_string(res->status) + what));
      r.http_status = res->status;
      return r;
    };
    if (res->body.size() > kAgentAnswerBytesMax) return answered(" with an oversized body");
    json answer = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    if (res->status < 200 || res->status > 299) {
      std::string message, code;
      const json* error = answer.is_object() && answer.contains("error") && answer["error"].is_object()
                              ? &answer["error"]
                              : nullptr;
      if (error != nullptr && error->contains("message") && (*error)["message"].is_string()) {
        message = (*error)["message"].get<std::string>();
      }
      if (error != nullptr && error->contains("code") && (*error)["code"].is_string()) {
        code = (*error)["code"].get<std::string>();
      }
      AgentReply r = answered(": " + (message.empty() ? std::string("no error message") : message));
      r.error_code = std::move(code);
      r.error_message = std::move(message);
      return r;
    }
    if (answer.is_discarded() || !answer.is_object()) {
      return answered(" with a body that is not a JSON object");
    }
    AgentReply r(std::move(answer));
    r.http_status = res->status;
    return r;
  }

 private:
  std::string address_, pinned_pem_;
  int64_t timeout_ms_;
  Pin pin_;  // outlives the client (the verify callback's argument)
};

class HttpsAgentClient : public AgentClient {
 public:
  Result<std::string> FetchCertificate(const std::string& address) override {
    auto a = Call(address, "", kAgentCallTimeoutMs).Run("GET", "/api/v1/agent/certificate", "", nullptr);
    if (!a.ok()) return a.status();
    if (!a->contains("pem") || !(*a)["pem"].is_string()) {
      return Status::Error("agent " + address + " answered 200 without a \"pem\" string");
    }
    std::string pem = (*a)["pem"].get<std::string>();
    auto cert = ParsePem(pem);
    if (!cert.ok()) return cert.status().Prefix("agent " + address + " answered 200 with ");
    return pem;
  }

  Result<json> Pair(const std::string& address, const std::string& cert_pem,
                    const std::string& token, const std::string& console) override {
    const json body{{"token", token}, {"console", console}};
    auto a = Call(address, cert_pem, kAgentCallTimeoutMs).Run("POST", "/api/v1/agent/pair", "", &body);
    if (!a.ok()) return a.status();
    if (!a->contains("key") || !(*a)["key"].is_string() ||
        (*a)["key"].get<std::string>().size() != kHexLen ||
        !IsLowerHex((*a)["key"].get<std::string>()) || !a->contains("facts") ||
        !(*a)["facts"].is_object()) {
      return Status::Error("agent " + address + " answered the pairing without a valid key and facts");
    }
    return a;
  }

  Result<json> Facts(const AgentEndpoint& agent) override {
    return Call(agent.address, agent.cert_pem, kAgentCallTimeoutMs)
        .Run("GET", "/api/v1/agent/facts", agent.key, nullptr);
  }

  Result<json> MeasureListen(const AgentEndpoint& agent, int64_t bytes) override {
    const json body{{"bytes", bytes}};
    return Call(agent.address, agent.cert_pem, kAgentCallTimeoutMs)
        .Run("POST", "/api/v1/agent/measure/listen", agent.key, &body);
  }

  Result<json> MeasureRun(const AgentEndpoint& agent, const std::string& address, int64_t port,
                          const std::string& nonce, int64_t bytes) override {
    const json body{{"address", address}, {"port", port}, {"nonce", nonce}, {"bytes", bytes}};
    return Call(agent.address, agent.cert_pem, kAgentMeasureTimeoutMs)
        .Run("POST", "/api/v1/agent/measure/run", agent.key, &body);
  }

  AgentReply Invoke(const AgentEndpoint& agent, const std::string& method, const std::string& path,
                    const json& body, int64_t timeout_ms) override {
    if (method != "GET" && method != "POST" && method != "PUT" && method != "DELETE") {
      return Status::Error("agent " + agent.address + ": unsupported method " + method);
    }
    if (!path.starts_with("/api/v1/agent/")) {
      return Status::Error("agent " + agent.address + ": not an agent path: " + path);
    }
    const bool with_body = method == "POST" || method == "PUT";
    return Call(agent.address, agent.cert_pem, timeout_ms)
        .Run(method, path, agent.key, with_body ? &body : nullptr);
  }
};

}  // namespace

Result<PairingString> ParsePairingString(const std::string& text) {
  // Messages describe the shape only: the token is a secret.
  if (text.size() != kPairingPrefix.size() + kHexLen + 1 + kHexLen) {
    return Status::Error("must be the pairing string of `tandemd pair-token` (tp1.<64 hex>.<64 hex>, " +
                         std::to_string(kPairingPrefix.size() + 2 * kHexLen + 1) +
                         " characters), got " + std::to_string(text.size()) + " characters");
  }
  if (text.compare(0, kPairingPrefix.size(), kPairingPrefix) != 0) {
    return Status::Error("must start with \"tp1.\" (the pairing string of `tandemd pair-token`)");
  }
  const std::string token = text.substr(kPairingPrefix.size(), kHexLen);
  const size_t dot = kPairingPrefix.size() + kHexLen;
  if (text[dot] != '.') return Status::Error("must be tp1.<64 hex>.<64 hex>: no '.' after the token");
  const std::string sha = text.substr(dot + 1);
  if (!IsLowerHex(token)) return Status::Error("the token part must be 64 lowercase hex characters");
  if (!IsLowerHex(sha)) {
    return Status::Error("the certificate part must be 64 lowercase hex characters");
  }
  return PairingString{token, sha};
}

Result<std::string> CertDerSha256Hex(const std::string& cert_pem) {
  auto cert = ParsePem(cert_pem);
  if (!cert.ok()) return cert.status();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert->get(), EVP_sha256(), md, &n) != 1) {
    return Status::Error("cannot compute the certificate's SHA-256");
  }
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", md[i]);
    out += b;
  }
  return out;
}

bool AgentUnreachable(const Status& st) {
  return !st.ok() && st.message().rfind("agent ", 0) == 0 &&
         st.message().find(" unreachable") != std::string::npos &&
         st.message().find(" answered ") == std::string::npos;
}

std::unique_ptr<AgentClient> NewHttpsAgentClient() { return std::make_unique<HttpsAgentClient>(); }

}  // namespace tandem::console
