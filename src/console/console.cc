#include "console/console.h"

#include "api/bounded_pool.h"
#include "api/httplib.h"

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "console/tls.h"
#include "os/files.h"

namespace tandem::console {

using nlohmann::json;

namespace {

constexpr int kStartWaitPolls = 5000;  // 1 ms each
// The transport refuses (413) bodies beyond this without reading them; the
// API refuses (413) bodies beyond kApiBodyBytesMax (kRestoreBodyBytesMax for
// a restore). Both are audited.
constexpr size_t kTransportBodyBytesMax = 2 * kRestoreBodyBytesMax;

void Send(httplib::Response& res, const ApiResponse& r) {
  res.status = r.status;
  // Answers carry session tokens and deployment data: never cached.
  res.set_header("Cache-Control", "no-store");
  if (r.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(r.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

struct Console::Server {
  explicit Server(const std::string& cert, const std::string& key)
      : https(cert.c_str(), key.c_str()) {}
  httplib::SSLServer https;
  std::thread thread;
  int port = 0;
};

Console::Console(ConsoleOptions options) : options_(std::move(options)) {}

Console::~Console() { Stop(); }

Status Console::Start() {
  if (server_) return Status::Error("console already started");
  const ConsoleOptions& o = options_;
  TANDEM_CHECK(!o.state_dir.empty() && o.clock != nullptr);
  TANDEM_CHECK(o.tls_cert.empty() == o.tls_key.empty());
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(o.state_dir, 0700));
  ::chmod(o.state_dir.c_str(), 0700);

  auto db = Db::Open(db_file());
  if (!db.ok()) return db.status().Prefix("console: ");
  db_ = std::move(*db);
  bool created = false;
  TANDEM_RETURN_IF_ERROR(
      EnsureInitialAdmin(*db_, password_file(), o.kdf, o.clock->WallMs(), &created)
          .Prefix("console: initial admin: "));
  if (created) {
    Log(1, std::string("console: created the initial user \"") + kInitialAdmin +
               "\" (role admin); its password is in " + password_file() +
               " (mode 0600; change it and delete the file)");
  }
  const std::string address = o.listen_host + ":" + std::to_string(o.listen_port);
  TANDEM_RETURN_IF_ERROR(
      EnsureConsoleHost(*db_, o.host_name, o.listen_host, o.clock->WallMs()).Prefix("console: "));

  if (o.tls_cert.empty()) {
    cert_ = o.state_dir + "/tls/cert.pem";
    key_ = o.state_dir + "/tls/key.pem";
    if (!IsFile(cert_) || !IsFile(key_)) {
      TANDEM_RETURN_IF_ERROR(os::MakeDirs(o.state_dir + "/tls", 0700));
      std::vector<std::string> ips{o.listen_host};
      if (o.listen_host == "0.0.0.0") ips = {"127.0.0.1"};
      TANDEM_RETURN_IF_ERROR(GenerateSelfSigned(cert_, key_, o.host_name, ips,
                                                {o.host_name, "localhost"})
                                 .Prefix("console: "));
      auto fp = CertFingerprint(cert_);
      Log(1, "console: generated a self-signed TLS certificate " + cert_ +
                 (fp.ok() ? " (SHA-256 " + *fp + ")" : std::string()));
    }
  } else {
    cert_ = o.tls_cert;
    key_ = o.tls_key;
  }

  AgentClient* agents = o.agents;
  if (agents == nullptr) {
    own_agents_ = NewHttpsAgentClient();
    agents = own_agents_.get();
  }
  ApiOptions api_options;
  api_options.session_ttl_s = o.session_ttl_s;
  api_options.clock = o.clock;
  api_options.kdf = o.kdf;
  api_options.log = o.log;
  api_options.agents = agents;
  api_options.console_name = o.host_name;
  api_options.license_keys_dir = o.license_keys_dir;
  api_ = std::make_unique<Api>(*db_, std::move(api_options));
  auto server = std::make_unique<Server>(cert_, key_);
  httplib::SSLServer& s = server->https;
  if (!s.is_valid()) {
    return Status::Error("console: cannot use the TLS certificate " + cert_ + " and key " + key_ +
                         " (unreadable, not PEM, or not a matching pair)");
  }
  SSL_CTX_set_min_proto_version(s.ssl_context(), TLS1_2_VERSION);
  s.new_task_queue = [] { return new api::BoundedPool(kConsoleThreads, kConsoleQueueMax); };
  s.set_read_timeout(kConsoleReadTimeoutS, 0);
  s.set_write_timeout(kConsoleReadTimeoutS, 0);
  s.set_keep_alive_timeout(kConsoleKeepAliveS);
  s.set_payload_max_length(kTransportBodyBytesMax);
  // Only SO_REUSEADDR (cpp-httplib's default adds SO_REUSEPORT, which would
  // let another process bind the same port).
  s.set_socket_options([](int sock) {
    int yes = 1;
    (void)setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  Api* api = api_.get();
  auto serve = [api](const httplib::Request& req, httplib::Response& res) {
    ApiRequest r;
    r.method = req.method;
    r.path = req.path;
    for (const auto& [k, v] : req.params) r.params.emplace(k, v);
    r.authorization = req.get_header_value("Authorization");
    r.content_type = req.get_header_value("Content-Type");
    r.body = req.body;
    r.remote = req.remote_addr;
    Send(res, api->Handle(r));
  };
  for (auto route : {&httplib::Server::Get, &httplib::Server::Post, &httplib::Server::Put,
                     &httplib::Server::Delete, &httplib::Server::Patch}) {
    (s.*route)(".*", serve);
  }
  // Errors cpp-httplib answers itself (a body over kTransportBodyBytesMax,
  // a malformed request): the same JSON form, and audited through the API
  // (an oversized body is handed on empty with the 413 it gets).
  s.set_error_handler([api](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // an answer of the API's own
    if (res.status == 413) {
      ApiRequest r;
      r.method = req.method;
      r.path = req.path;
      r.remote = req.remote_addr;
      r.content_type = "application/json";
      r.body.assign(kRestoreBodyBytesMax + 1, ' ');  // so the API refuses it with 413 too
      r.authorization = req.get_header_value("Authorization");
      Send(res, api->Handle(r));
      return;
    }
    Send(res, ApiError(res.status, res.status == 404 ? "not_found" : "invalid_argument",
                       "request refused by the HTTP layer (status " + std::to_string(res.status) +
                           ")"));
  });

  if (o.listen_port == 0) {
    server->port = s.bind_to_any_port(o.listen_host);
    if (server->port <= 0) return Status::Error("console.listen " + address + ": cannot bind");
  } else {
    if (!s.bind_to_port(o.listen_host, o.listen_port)) {
      return Status::Error("console.listen " + address +
                           ": cannot bind (address in use or not local?)");
    }
    server->port = o.listen_port;
  }
  Server* raw = server.get();
  server->thread = std::thread([raw] { raw->https.listen_after_bind(); });
  // stop() is a no-op until the loop runs: wait for it, so Stop() cannot miss.
  for (int i = 0; i < kStartWaitPolls && !raw->https.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  server_ = std::move(server);
  Log(1, "console: serving /api/v1 on " + url() + " (database " + db_file() + ", schema " +
             std::to_string(KnownSchemaVersion()) + ")");
  PollerOptions poll;
  poll.interval_ms = o.poll_interval_ms;
  poll.clock = o.clock;
  poll.log = o.log;
  poller_ = std::make_unique<Poller>(*db_, *agents, std::move(poll));
  poller_->Start();
  return Status::Ok();
}

uint16_t Console::port() const { return server_ ? static_cast<uint16_t>(server_->port) : 0; }

std::string Console::url() const {
  return "https://" + options_.listen_host + ":" + std::to_string(port());
}

void Console::Stop() {
  if (poller_) poller_->Stop();
  poller_.reset();
  if (!server_) return;
  server_->https.stop();
  if (server_->thread.joinable()) server_->thread.join();
  server_.reset();
}

}  // namespace tandem::console
