#include "console/console.h"

#include <sys/stat.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "console/https_server.h"
#include "console/tls.h"
#include "os/files.h"

namespace tandem::console {

namespace {

// The transport refuses (413) bodies beyond this without reading them; the
// API refuses (413) bodies beyond kApiBodyBytesMax (kRestoreBodyBytesMax for
// a restore). Both are audited.
constexpr size_t kTransportBodyBytesMax = 2 * kRestoreBodyBytesMax;

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

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
  Api* api = api_.get();
  HttpsServerOptions https;
  https.name = "console";
  https.cert = cert_;
  https.key = key_;
  https.host = o.listen_host;
  https.port = o.listen_port;
  https.threads = kConsoleThreads;
  https.queue_max = kConsoleQueueMax;
  https.timeout_s = kConsoleReadTimeoutS;
  https.keep_alive_s = kConsoleKeepAliveS;
  https.transport_body_max = kTransportBodyBytesMax;
  https.web_page = true;  // docs/WEB.md
  // Errors cpp-httplib answers itself (a body over kTransportBodyBytesMax,
  // a malformed request): the same JSON form, and audited through the API
  // (an oversized body is handed on empty with the 413 it gets).
  auto on_error = [api](const ApiRequest& req, int status) {
    if (status == 413) {
      ApiRequest r;
      r.method = req.method;
      r.path = req.path;
      r.remote = req.remote;
      r.content_type = "application/json";
      r.body.assign(kRestoreBodyBytesMax + 1, ' ');  // so the API refuses it with 413 too
      r.authorization = req.authorization;
      return api->Handle(r);
    }
    return ApiError(status, status == 404 ? "not_found" : "invalid_argument",
                    "request refused by the HTTP layer (status " + std::to_string(status) + ")");
  };
  auto server =
      HttpsServer::Start(https, [api](const ApiRequest& r) { return api->Handle(r); }, on_error);
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
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

uint16_t Console::port() const { return server_ ? static_cast<uint16_t>(server_->port()) : 0; }

std::string Console::url() const {
  return "https://" + options_.listen_host + ":" + std::to_string(port());
}

void Console::Stop() {
  if (poller_) poller_->Stop();
  poller_.reset();
  if (!server_) return;
  server_->Stop();
  server_.reset();
}

}  // namespace tandem::console
