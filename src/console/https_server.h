// The HTTPS transport shared by the console (console/console.cc) and the
// agent (daemon/agent.cc): cpp-httplib's SSLServer with TLS 1.2 at least, a
// bounded pool of request threads (api/bounded_pool.h), read, write and
// keep-alive timeouts, a transport body limit, SO_REUSEADDR only, every
// method and path handed to one handler and every answer in the JSON form of
// console::ApiResponse (never cached).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "console/api.h"
#include "util/status.h"

namespace tandem::console {

struct HttpsServerOptions {
  std::string name;                // "console" or "agent": starts error messages
  std::string cert, key;           // PEM files
  std::string host;                // listen address
  int port = 0;                    // 0: any free port
  size_t threads = 4;              // request threads
  size_t queue_max = 16;           // accepted connections waiting for a thread
  int timeout_s = 5;               // read and write timeout
  int keep_alive_s = 5;
  size_t transport_body_max = 0;   // longer bodies are refused (413) unread
  // Serve the embedded web page (console/static_files.h) at GET / and
  // /ui/..., without a session, outside the JSON handler.
  bool web_page = false;
};

class HttpsServer {
 public:
  // Answers one request.
  using Handler = std::function<ApiResponse(const ApiRequest&)>;
  // Answers a request the HTTP layer refused itself with `status` (a body
  // over transport_body_max, a malformed request); the request as far as it
  // was read.
  using ErrorHandler = std::function<ApiResponse(const ApiRequest&, int status)>;

  // Binds (errors: "<name>.listen host:port: cannot bind...", "<name>: cannot
  // use the TLS certificate ...") and serves on a thread of its own until
  // Stop(); returns once the server loop runs.
  static Result<std::unique_ptr<HttpsServer>> Start(const HttpsServerOptions& options,
                                                    Handler handler, ErrorHandler on_error);
  ~HttpsServer();  // Stop()

  int port() const;
  // Stops serving and waits for the server thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::console
