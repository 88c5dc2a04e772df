// The console's side of the console <-> host channel (docs/CONSOLE.md,
// "Hosts: pairing and the agent channel"): calls to a host's agent over
// HTTPS. AgentClient is the seam: the API and the poller use it; unit tests
// give them a fake, everything else the HTTPS client (NewHttpsAgentClient),
// which trusts only the certificate pinned at pairing.
//
// Thread-safety: implementations may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::console {

// A paired host's agent, as the console stores it.
struct AgentEndpoint {
  std::string address;   // "host:port" of the agent
  std::string cert_pem;  // the pinned certificate
  std::string key;       // the agent key (64 hex); a secret, never logged
};

// The pairing string printed by `tandemd pair-token`: "tp1.<token>.<sha256>".
struct PairingString {
  std::string token;               // 64 lowercase hex
  std::string cert_sha256;         // 64 lowercase hex, of the certificate's DER
};
// Error: what is wrong with it (never echoing the token).
Result<PairingString> ParsePairingString(const std::string& text);

// What AgentClient::Invoke answers: the agent's JSON object (2xx), or an
// error (messages as AgentUnreachable describes). When the agent answered,
// `http_status` is its HTTP status and, for an error answer, `error_code`
// its {"error": {"code"}} (docs/CONSOLE.md, "The agent API"): callers decide
// on those, never on the message's text.
class AgentReply : public Result<nlohmann::json> {
 public:
  using Result<nlohmann::json>::Result;
  AgentReply(Result<nlohmann::json> r) : Result<nlohmann::json>(std::move(r)) {}  // NOLINT: implicit

  // The agent at `address` answered `status` with {"error": {"code", "message"}}.
  static AgentReply Answered(const std::string& address, int status, const std::string& code,
                             const std::string& message) {
    AgentReply r(Status::Error("agent " + address + " answered " + std::to_string(status) + ": " +
                               message));
    r.http_status = status;
    r.error_code = code;
    r.error_message = message;
    return r;
  }

  int http_status = 0;        // 0: no answer (unreachable, timeout, a bad address)
  std::string error_code;     // "": a 2xx answer, no answer, or an error answer without a code
  std::string error_message;  // the error answer's {"error": {"message"}}, else ""
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // GET /api/v1/agent/certificate without verifying the server (the caller
  // checks the answer against the pairing string's fingerprint).
  virtual Result<std::string> FetchCertificate(const std::string& address) = 0;
  // POST /api/v1/agent/pair over a connection trusting only `cert_pem`.
  // Answer: {"key", "facts"}. Error: the agent's error message, or why the
  // agent could not be reached.
  virtual Result<nlohmann::json> Pair(const std::string& address, const std::string& cert_pem,
                                      const std::string& token, const std::string& console) = 0;
  // GET /api/v1/agent/facts.
  virtual Result<nlohmann::json> Facts(const AgentEndpoint& agent) = 0;
  // POST /api/v1/agent/measure/listen: {"port", "nonce"}.
  virtual Result<nlohmann::json> MeasureListen(const AgentEndpoint& agent, int64_t bytes) = 0;
  // POST /api/v1/agent/measure/run: {"rtt_ms", "mbps", "bytes"}.
  virtual Result<nlohmann::json> MeasureRun(const AgentEndpoint& agent, const std::string& address,
                                            int64_t port, const std::string& nonce,
                                            int64_t bytes) = 0;
  // Any other call of the agent API: `method` "GET", "POST", "PUT" or
  // "DELETE", `path` under /api/v1/agent/, `body` a JSON object (ignored for
  // GET and DELETE). Answer: the agent's JSON object (2xx). Errors as the
  // other calls' (see AgentUnreachable), with the agent's HTTP status and
  // error code when it answered (AgentReply).
  virtual AgentReply Invoke(const AgentEndpoint& agent, const std::string& method,
                                        const std::string& path, const nlohmann::json& body,
                                        int64_t timeout_ms) = 0;
};

inline constexpr int64_t kAgentCallTimeoutMs = 5000;    // every call but measure/run
inline constexpr int64_t kAgentMeasureTimeoutMs = 35000;

// The real client (cpp-httplib SSLClient, TLS 1.2+, server certificate
// verification on with only the pinned certificate trusted).
std::unique_ptr<AgentClient> NewHttpsAgentClient();

// SHA-256 of a PEM certificate's DER encoding, 64 lowercase hex.
Result<std::string> CertDerSha256Hex(const std::string& cert_pem);

// Error messages of AgentClient calls: "agent ADDR unreachable: why" when
// no answer came (connection, TLS, the pinned certificate not presented,
// timeout), "agent ADDR answered STATUS: message" when the agent refused.
// True for the first kind.
bool AgentUnreachable(const Status& st);

}  // namespace tandem::console
