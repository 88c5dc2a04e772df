// The daemon's HTTP JSON API (docs/SEARCH.md, "HTTP API"; docs/CONFIG.md
// [api]): a small cpp-httplib server on api.http_listen, in threads of its
// own. This layer does transport only: it binds the configured address,
// authenticates every request, turns a GET into an HttpRequest and the
// handler's HttpResponse into a JSON body. What the paths mean is the
// handler's business (the daemon's, src/daemon/search.cc).
//
// Authentication: every request needs "Authorization: Bearer <token>",
// compared in constant time with the configured token; a missing or wrong
// one is answered 401 {"ok":false,"error":...} before the handler runs.
// Only GET is served (anything else: 405). A query string with a repeated
// parameter is 400. Bodies are JSON (Content-Type: application/json).
//
// Limits: kHttpThreads request threads; when they are all busy at most
// kHttpQueueMax accepted connections wait, then accepting pauses (the
// kernel's backlog holds the rest); requests must arrive within
// kHttpReadTimeoutS; idle keep-alive connections close after
// kHttpKeepAliveS; request bodies are not accepted (kHttpPayloadBytesMax).
//
// Thread-safety: the handler runs on the server's threads, up to
// kHttpThreads at once; it must be thread-safe. Start/Stop/port from one
// thread (the owner's).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::api {

inline constexpr size_t kHttpThreads = 4;
inline constexpr size_t kHttpQueueMax = 16;
inline constexpr int kHttpReadTimeoutS = 5;
inline constexpr int kHttpKeepAliveS = 2;
inline constexpr size_t kHttpPayloadBytesMax = 64 * 1024;
inline constexpr size_t kHttpTokenBytesMin = 16;

struct HttpRequest {
  std::string path;                           // e.g. "/api/v1/status", no query string
  std::map<std::string, std::string> params;  // the query string, decoded, keys unique
};

struct HttpResponse {
  int status = 200;
  nlohmann::json body;  // sent as is (dump with invalid UTF-8 replaced)
};

// Answers an authenticated GET. May throw: that is answered 500.
using HttpHandler = std::function<HttpResponse(const HttpRequest& request)>;

// An error response: {"ok": false, "error": why}.
HttpResponse HttpError(int status, const std::string& why);

// Constant-time equality (the time depends on the lengths only).
bool TokenEquals(std::string_view a, std::string_view b);

class HttpServer {
 public:
  // REQUIRES: token.size() >= kHttpTokenBytesMin (CHECKed: an empty token
  // would let anyone in; config validation guarantees it).
  HttpServer(std::string token, HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (a dotted quad; port 0: an ephemeral port, see port())
  // and starts serving in a thread. Error: "http_listen <host:port>:
  // cannot bind ..."; nothing runs then.
  Status Start(const std::string& host, uint16_t port);
  // The bound port (after Start succeeded), else 0.
  uint16_t port() const;
  // Stops accepting, waits for running requests to finish and joins the
  // threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::api
