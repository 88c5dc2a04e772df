// The console role of tandemd (docs/CONSOLE.md): the deployment database,
// the first admin, the TLS certificate, the /api/v1 HTTPS server, and the
// poller of the paired hosts' agents (console/poller.h).
//
// State directory (created 0700): console.db (+ -wal, -shm; 0600),
// admin.password (0600, first start only), tls/cert.pem and tls/key.pem
// (0644 / 0600; generated unless tls_cert/tls_key are configured).
//
// HTTPS: cpp-httplib's SSLServer (Debian builds it with
// CPPHTTPLIB_OPENSSL_SUPPORT), TLS 1.2 or later only, in a bounded pool:
// kConsoleThreads request threads, at most kConsoleQueueMax accepted
// connections waiting, then accepting pauses; requests must arrive within
// kConsoleReadTimeoutS; bodies over kApiBodyBytesMax are refused (413).
//
// Thread-safety: Start/Stop/port from the owner's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "console/agent_client.h"
#include "console/api.h"
#include "console/poller.h"
#include "util/status.h"

namespace tandem::console {

inline constexpr size_t kConsoleThreads = 4;
inline constexpr size_t kConsoleQueueMax = 16;
inline constexpr int kConsoleReadTimeoutS = 5;
inline constexpr int kConsoleKeepAliveS = 5;

struct ConsoleOptions {
  std::string state_dir;                  // absolute
  std::string listen_host = "127.0.0.1";  // dotted quad
  uint16_t listen_port = 0;               // 0: an ephemeral port (tests)
  int64_t session_ttl_s = 3600;
  std::string tls_cert, tls_key;          // both or neither; neither: generated
  std::string license_keys_dir;           // public keys that sign licenses (PEM files)
  std::string host_name;                  // this host, as recorded in hosts
  const os::Clock* clock = &os::RealClock::Get();
  ScryptParams kdf = kScryptDefault;
  std::function<void(int level, const std::string& message)> log;  // 0 debug .. 3 error
  // How often the poller reads every paired host's facts (console.poll_interval_ms).
  int64_t poll_interval_ms = kPollIntervalMsDefault;
  // Calls to hosts' agents; null: the HTTPS client (NewHttpsAgentClient).
  // Tests give a fake. Not owned; must outlive the Console.
  AgentClient* agents = nullptr;
};

class HttpsServer;

class Console {
 public:
  explicit Console(ConsoleOptions options);
  ~Console();  // Stop()
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Creates the state directory, opens/migrates the database, creates the
  // first admin and the certificate when missing, binds and starts serving.
  // Error: what failed (nothing runs then).
  Status Start();
  // The bound port after Start, else 0.
  uint16_t port() const;
  // Stops accepting, finishes running requests, joins. Idempotent.
  void Stop();

  std::string url() const;  // "https://host:port"
  std::string password_file() const { return options_.state_dir + "/admin.password"; }
  std::string db_file() const { return options_.state_dir + "/console.db"; }
  const std::string& cert_file() const { return cert_; }
  // The API's counters in the Prometheus text format; "" before Start.
  std::string MetricsText() const { return api_ ? api_->MetricsText() : std::string(); }

 private:
  void Log(int level, const std::string& m) const {
    if (options_.log) options_.log(level, m);
  }

  ConsoleOptions options_;
  std::string cert_, key_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<AgentClient> own_agents_;  // the HTTPS client, unless options_.agents
  std::unique_ptr<Poller> poller_;
  std::unique_ptr<HttpsServer> server_;
};

}  // namespace tandem::console
