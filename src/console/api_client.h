// A small client of the console API (/api/v1, docs/CONSOLE.md) for the `ha`
// console commands (docs/CLI.md, "Console commands"): logs in with a user
// name and a password read from a file, then calls METHOD PATH with a JSON
// body over HTTPS trusting only the given certificate file (the console's
// TLS certificate, or the CA that issued it). The password and the session
// token are never printed or logged.
//
// Thread-safety: one ApiClient per thread.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::console {

inline constexpr int64_t kApiClientTimeoutMs = 60000;  // a cluster creation measures the link
inline constexpr size_t kApiClientAnswerBytesMax = 16 << 20;

// Where the console is and who logs in: exactly the "api" object of
// `tandem lab up --console --json` ({"url", "user", "password_file",
// "tls_cert"}).
struct ApiClientOptions {
  std::string url;            // "https://host:port" (no path)
  std::string user;
  std::string password_file;  // its first line is the password
  std::string tls_cert;       // PEM file: the only certificate trusted
  int64_t timeout_ms = kApiClientTimeoutMs;
};

// Reads the options from a JSON file holding that object. Error: what is
// missing or wrong, naming the field.
Result<ApiClientOptions> ReadApiClientOptions(const std::string& file);

// One API answer: the HTTP status and the JSON body.
struct ApiAnswer {
  int status = 0;
  nlohmann::json body;
  bool ok() const { return status >= 200 && status <= 299; }
  // "CODE: message (field F)" of an error answer.
  std::string ErrorText() const;
};

class ApiClient {
 public:
  explicit ApiClient(ApiClientOptions options) : options_(std::move(options)) {}
  ~ApiClient();  // ends the session (best effort)
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // POST /api/v1/sessions. Error: the console could not be reached
  // (IsUnreachable) or refused the login (its message).
  Status Login();
  // Any call: `method` "GET", "POST", "PUT", "PATCH" or "DELETE", `path`
  // from /api/v1/, `body` a JSON object (null: no body). Logs in first if
  // needed. Answer: any HTTP status with its JSON body; an error only when
  // no answer came (unreachable, TLS, timeout) or it was not JSON.
  Result<ApiAnswer> Call(const std::string& method, const std::string& path,
                         const nlohmann::json& body = nullptr);

 private:
  Result<ApiAnswer> Send(const std::string& method, const std::string& path,
                         const nlohmann::json& body, const std::string& token);

  ApiClientOptions options_;
  std::string token_;  // a secret
};

// True for errors of ApiClient that mean no answer came from the console
// ("console URL unreachable: ...").
bool IsUnreachable(const Status& st);

}  // namespace tandem::console
