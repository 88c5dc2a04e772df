#include "api/http.h"

#include "api/bounded_pool.h"
#include "api/httplib.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem::api {

using nlohmann::json;

namespace {

constexpr int kStartWaitPolls = 5000;  // 1 ms each

void Send(httplib::Response& res, const HttpResponse& r) {
  res.status = r.status;
  res.set_content(r.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

}  // namespace

HttpResponse HttpError(int status, const std::string& why) {
  return HttpResponse{status, json{{"ok", false}, {"error", why}}};
}

bool TokenEquals(std::string_view a, std::string_view b) {
  // Compare over the longer length so the time depends on lengths only.
  size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

struct HttpServer::Impl {
  std::string token;
  HttpHandler handler;
  httplib::Server server;
  std::thread thread;
  int port = 0;

  void Serve(const httplib::Request& req, httplib::Response& res);
};

void HttpServer::Impl::Serve(const httplib::Request& req, httplib::Response& res) {
  constexpr std::string_view kBearer = "Bearer ";
  std::string auth = req.get_header_value("Authorization");
  if (auth.compare(0, kBearer.size(), kBearer) != 0 ||
      !TokenEquals(std::string_view(auth).substr(kBearer.size()), token)) {
    res.set_header("WWW-Authenticate", "Bearer");
    return Send(res, HttpError(401, auth.empty() ? "missing Authorization: Bearer <token>"
                                                 : "invalid token"));
  }
  if (req.method != "GET") return Send(res, HttpError(405, "only GET is supported"));
  HttpRequest r;
  r.path = req.path;
  for (const auto& [k, v] : req.params) {
    if (!r.params.emplace(k, v).second) {
      return Send(res, HttpError(400, "query parameter '" + k + "' given more than once"));
    }
  }
  try {
    HttpResponse out = handler(r);
    if (out.body.is_null()) out.body = json::object();
    Send(res, out);
  } catch (const std::exception& e) {
    Send(res, HttpError(500, std::string("internal error: ") + e.what()));
  } catch (...) {
    Send(res, HttpError(500, "internal error"));
  }
}

HttpServer::HttpServer(std::string token, HttpHandler handler) : impl_(std::make_unique<Impl>()) {
  TANDEM_CHECK(token.size() >= kHttpTokenBytesMin);
  impl_->token = std::move(token);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start(const std::string& host, uint16_t port) {
  Impl& m = *impl_;
  if (m.thread.joinable()) return Status::Error("http server already started");
  m.server.new_task_queue = [] { return new BoundedPool(kHttpThreads, kHttpQueueMax); };
  m.server.set_read_timeout(kHttpReadTimeoutS, 0);
  m.server.set_write_timeout(kHttpReadTimeoutS, 0);
  m.server.set_keep_alive_timeout(kHttpKeepAliveS);
  m.server.set_payload_max_length(kHttpPayloadBytesMax);
  // cpp-httplib's default adds SO_REUSEPORT, which lets a second server (or
  // another process of the same user) bind the same port: only SO_REUSEADDR.
  m.server.set_socket_options([](int sock) {
    int yes = 1;
    (void)setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  auto serve = [&m](const httplib::Request& req, httplib::Response& res) { m.Serve(req, res); };
  for (auto route : {&httplib::Server::Get, &httplib::Server::Post, &httplib::Server::Put,
                     &httplib::Server::Delete, &httplib::Server::Patch}) {
    (m.server.*route)(".*", serve);
  }
  std::string where = host + ":" + std::to_string(port);
  if (port == 0) {
    m.port = m.server.bind_to_any_port(host);
    if (m.port <= 0) return Status::Error("http_listen " + where + ": cannot bind");
  } else {
    if (!m.server.bind_to_port(host, port)) {
      return Status::Error("http_listen " + where + ": cannot bind (address in use or not local?)");
    }
    m.port = port;
  }
  m.thread = std::thread([&m] { m.server.listen_after_bind(); });
  // stop() is a no-op until the loop runs: wait for it, so Stop() cannot miss.
  for (int i = 0; i < kStartWaitPolls && !m.server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::Ok();
}

uint16_t HttpServer::port() const {
  return impl_->thread.joinable() ? static_cast<uint16_t>(impl_->port) : 0;
}

void HttpServer::Stop() {
  Impl& m = *impl_;
  if (!m.thread.joinable()) return;
  m.server.stop();
  m.thread.join();
  m.port = 0;
}

}  // namespace tandem::api
