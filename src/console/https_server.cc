#include "console/https_server.h"

#include "console/static_files.h"

#include "api/bounded_pool.h"
#include "api/httplib.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

namespace tandem::console {

using nlohmann::json;

namespace {

constexpr int kStartWaitPolls = 5000;  // 1 ms each

void Send(httplib::Response& res, const ApiResponse& r) {
  res.status = r.status;
  // Answers carry session tokens and deployment data: never cached.
  res.set_header("Cache-Control", "no-store");
  if (r.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(r.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

// A file of the web page (or its 404): never cached, not sniffed, and a
// strict Content-Security-Policy (scripts and styles from the console only).
void SendStatic(httplib::Response& res, const StaticAnswer& a) {
  res.status = a.status;
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Content-Security-Policy", kWebCsp);
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
  res.set_content(a.body.data(), a.body.size(), a.content_type);
}

ApiRequest ToApiRequest(const httplib::Request& req) {
  ApiRequest r;
  r.method = req.method;
  r.path = req.path;
  for (const auto& [k, v] : req.params) r.params.emplace(k, v);
  r.authorization = req.get_header_value("Authorization");
  r.content_type = req.get_header_value("Content-Type");
  r.body = req.body;
  r.remote = req.remote_addr;
  return r;
}

}  // namespace

struct HttpsServer::Impl {
  Impl(const std::string& cert, const std::string& key) : https(cert.c_str(), key.c_str()) {}
  httplib::SSLServer https;
  std::thread thread;
  int port = 0;
};

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpsServer::~HttpsServer() { Stop(); }

int HttpsServer::port() const { return impl_->port; }

void HttpsServer::Stop() {
  impl_->https.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<HttpsServer>> HttpsServer::Start(const HttpsServerOptions& o,
                                                        Handler handler, ErrorHandler on_error) {
  const std::string address = o.host + ":" + std::to_string(o.port);
  auto impl = std::make_unique<Impl>(o.cert, o.key);
  httplib::SSLServer& s = impl->https;
  if (!s.is_valid()) {
    return Status::Error(o.name + ": cannot use the TLS certificate " + o.cert + " and key " +
                         o.key + " (unreadable, not PEM, or not a matching pair)");
  }
  SSL_CTX_set_min_proto_version(s.ssl_context(), TLS1_2_VERSION);
  const size_t threads = o.threads, queue_max = o.queue_max;
  s.new_task_queue = [threads, queue_max] { return new api::BoundedPool(threads, queue_max); };
  s.set_read_timeout(o.timeout_s, 0);
  s.set_write_timeout(o.timeout_s, 0);
  s.set_keep_alive_timeout(o.keep_alive_s);
  s.set_payload_max_length(o.transport_body_max);
  // Only SO_REUSEADDR (cpp-httplib's default adds SO_REUSEPORT, which would
  // let another process bind the same port).
  s.set_socket_options([](int sock) {
    int yes = 1;
    (void)setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  const bool web_page = o.web_page;
  auto serve = [handler, web_page](const httplib::Request& req, httplib::Response& res) {
    if (web_page && req.method == "GET" && IsStaticPath(req.path)) {
      SendStatic(res, ServeStatic(req.path));
      return;
    }
    Send(res, handler(ToApiRequest(req)));
  };
  for (auto route : {&httplib::Server::Get, &httplib::Server::Post, &httplib::Server::Put,
                     &httplib::Server::Delete, &httplib::Server::Patch}) {
    (s.*route)(".*", serve);
  }
  s.set_error_handler([on_error](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // an answer of the handler's own
    Send(res, on_error(ToApiRequest(req), res.status));
  });
  if (o.port == 0) {
    impl->port = s.bind_to_any_port(o.host);
    if (impl->port <= 0) return Status::Error(o.name + ".listen " + address + ": cannot bind");
  } else {
    if (!s.bind_to_port(o.host, o.port)) {
      return Status::Error(o.name + ".listen " + address +
                           ": cannot bind (address in use or not local?)");
    }
    impl->port = o.port;
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->https.listen_after_bind(); });
  // stop() is a no-op until the loop runs: wait for it, so Stop() cannot miss.
  for (int i = 0; i < kStartWaitPolls && !raw->https.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

}  // namespace tandem::console
