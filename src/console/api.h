// The console's HTTP/JSON API, /api/v1 (docs/CONSOLE.md; docs/api/openapi.yaml),
// as a plain function of a request: no sockets here (console/server.h puts
// it on HTTPS), so every handler is unit-tested directly.
//
// Rules every call follows:
// - Authentication: every call except POST /api/v1/sessions needs
//   "Authorization: Bearer <token>" of a live session (401 otherwise:
//   missing, malformed, unknown or expired token). Tokens are 32 random
//   bytes (64 hex characters); the database holds only their SHA-256.
// - Authorization: roles "admin" (everything) and "viewer" (reads of the
//   deployment); a call a viewer may not make is 403.
// - Validation: bodies are JSON objects (Content-Type application/json) of
//   at most kApiBodyBytesMax bytes; every field is type- and range-checked;
//   unknown fields and unknown query parameters are refused.
// - Errors: HTTP status + {"error": {"code", "message", "field"}} ("field"
//   is null when the error is not about one). A refused call changes
//   nothing except that it is audited.
// - Audit: every state-changing call (any method but GET), accepted or
//   refused, is one audit row: when, who (the session's user; for a login,
//   the named user if it exists; else "-"), from where, what, on what, and
//   the result. Passwords and tokens are never stored there or logged.
//
// Thread-safety: Handle may be called from several threads at once; the
// database is used under db.mu(), and the slow password hashing runs
// outside it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "console/agent_client.h"
#include "console/db.h"
#include "console/license.h"
#include "console/password.h"
#include "console/throttle.h"
#include "os/clock.h"

namespace tandem::console {

inline constexpr size_t kApiBodyBytesMax = 64 * 1024;
inline constexpr size_t kRestoreBodyBytesMax = 1024 * 1024;  // POST /api/v1/restore only
inline constexpr size_t kUserNameLenMax = 64;
inline constexpr size_t kPasswordLenMin = 12;
inline constexpr size_t kPasswordLenMax = 1024;
inline constexpr size_t kTokenBytes = 32;
inline constexpr int64_t kSessionsPerUserMax = 64;  // older sessions are ended
inline constexpr int64_t kAuditRowsMax = 100000;     // older rows are dropped
inline constexpr int64_t kAuditPageMax = 1000;
// Login throttling (docs/CONSOLE.md, "Sessions"): a user name that failed
// kLoginFailuresPerUser times, or an address that failed
// kLoginFailuresPerAddress times, within kLoginFailureWindowMs is refused
// (429) without a look at the password until the oldest failure ages out.
inline constexpr int kLoginFailuresPerUser = 5;
inline constexpr int kLoginFailuresPerAddress = 20;
inline constexpr int64_t kLoginFailureWindowMs = 60000;
inline constexpr size_t kLoginThrottleKeysMax = 10000;

struct ApiRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::multimap<std::string, std::string> params;  // decoded query string
  std::string authorization;  // the Authorization header ("" if absent)
  std::string content_type;
  std::string body;
  std::string remote;  // the client's address, for the audit
};

struct ApiResponse {
  int status = 200;
  nlohmann::json body;
};

// An error response: {"error": {"code", "message", "field"}}.
ApiResponse ApiError(int status, const std::string& code, const std::string& message,
                     const std::string& field = "");

struct ApiOptions {
  int64_t session_ttl_s = 3600;
  const os::Clock* clock = &os::RealClock::Get();  // WallMs: session expiry, audit times
  ScryptParams kdf = kScryptDefault;               // for new password hashes
  // Informational and warning lines (never with a secret in them).
  std::function<void(int level, const std::string& message)> log;  // 1 info, 2 warn
  // Calls to hosts' agents (pairing, facts, link measurement); null: calls
  // that need a host answer 503 "no agent client".
  AgentClient* agents = nullptr;
  std::string console_name;  // this console's name, given to agents at pairing
  // HA licenses' public keys (*.pem; console.license_keys_dir); "" : none,
  // so no license verifies (console/license.h).
  std::string license_keys_dir = {};
};

// What the API has answered since start (R-NF-3: exposed as metrics).
struct ApiCounters {
  uint64_t requests = 0;
  uint64_t refused = 0;        // answered 4xx
  uint64_t errors = 0;         // answered 5xx
  uint64_t logins = 0;         // sessions opened
  uint64_t login_failures = 0; // wrong user name or password
  uint64_t login_throttled = 0;// refused unchecked (kLoginFailures* exceeded)
  uint64_t changes = 0;        // state-changing calls accepted
};

class Api {
 public:
  Api(Db& db, ApiOptions options);
  ApiResponse Handle(const ApiRequest& request);
  ApiCounters counters() const;
  // The counters in the Prometheus text format ("tandem_console_...").
  std::string MetricsText() const;

 private:
  struct Caller {
    int64_t user_id = 0;
    std::string user, role, token_sha256;
    int64_t expires_at_ms = 0;
  };
  struct Audit {
    std::string user = "-", remote, action, target = "-", result;
    int status = 0;
  };

  ApiResponse Route(const ApiRequest& r, Audit* audit);
  ApiResponse Authenticate(const ApiRequest& r, Caller* caller);
  ApiResponse Login(const ApiRequest& r, Audit* audit);
  ApiResponse Logout(const Caller& c, Audit* audit);
  ApiResponse CurrentSession(const Caller& c);
  ApiResponse ListUsers();
  ApiResponse CreateUser(const ApiRequest& r, const Caller& c, Audit* audit);
  ApiResponse ListAudit(const ApiRequest& r);
  ApiResponse ListHosts();
  // Configuration backup and restore (api_backup.cc; R-BK-1).
  ApiResponse Backup(const ApiRequest& r, Audit* audit);
  ApiResponse Restore(const ApiRequest& r, Audit* audit);
  // Hosts, pairing, status and history (console/api_hosts.cc).
  ApiResponse AddHost(const ApiRequest& r, Audit* audit);
  ApiResponse GetHost(const std::string& name);
  ApiResponse DeleteHost(const std::string& name, Audit* audit);
  // POST /api/v1/hosts/{name}/actions (console/api_actions.cc): an HA
  // command run on the host through its agent; `user` the caller.
  ApiResponse HostAction(const std::string& name, const ApiRequest& r, const std::string& user,
                         Audit* audit);
  ApiResponse DeploymentStatus();
  ApiResponse ListHistory(const ApiRequest& r);
  // Clusters, licenses and console settings (console/api_clusters.cc):
  // answers the routes under /api/v1/clusters, /licenses and /settings
  // (rp: the matched route pattern, name: its {name} segment); nullopt when
  // the method is not one of the route's.
  std::optional<ApiResponse> RouteClusters(const ApiRequest& r, std::string_view rp,
                                           const std::string& name, const Caller& c,
                                           Audit* audit);
  ApiResponse ListClusters();
  ApiResponse GetCluster(const std::string& name);
  ApiResponse CreateCluster(const ApiRequest& r, Audit* audit);
  ApiResponse EditCluster(const std::string& name, const ApiRequest& r, Audit* audit);
  ApiResponse DisconnectSecondary(const std::string& name, Audit* audit);
  // POST /api/v1/clusters/{name}/replace: a paired, unclustered host
  // replaces a member whose hardware is gone (`user`: the caller).
  ApiResponse ReplaceMember(const std::string& name, const ApiRequest& r, const std::string& user,
                            Audit* audit);
  ApiResponse ListLicenses();
  ApiResponse GetLicense(const std::string& id);
  ApiResponse AddLicense(const ApiRequest& r, Audit* audit);
  ApiResponse DeleteLicense(const std::string& id, Audit* audit);
  ApiResponse ListSettings();
  // POST /api/v1/clusters/{name}/upgrade (console/api_upgrade.cc; R-UP-1).
  ApiResponse UpgradeCluster(const std::string& name, Audit* audit);
  ApiResponse PutSetting(const std::string& key, const ApiRequest& r, Audit* audit);
  // Deploying the configuration to the hosts' agents (console/api_deploy.cc).
  ApiResponse Deploy(const ApiRequest& r, Audit* audit);
  ApiResponse DeployStatus();
  // The configured license keys (read at each call; problems are logged).
  std::vector<LicenseKey> LicenseKeysNow();
  // Records `audit` (under db.mu(), in its own transaction).
  void WriteAudit(const Audit& audit);
  Status InsertAudit(const Audit& audit);
  int64_t NowMs() const { return options_.clock->WallMs(); }
  void Log(int level, const std::string& m) const {
    if (options_.log) options_.log(level, m);
  }

  Db& db_;
  ApiOptions options_;
  mutable std::mutex counters_mu_;
  ApiCounters counters_;  // GUARDED_BY(counters_mu_)
  std::string dummy_hash_;  // verified against for unknown users (same cost)
  Throttle login_user_throttle_{kLoginFailuresPerUser, kLoginFailureWindowMs, kLoginThrottleKeysMax};
  Throttle login_addr_throttle_{kLoginFailuresPerAddress, kLoginFailureWindowMs,
                                kLoginThrottleKeysMax};
};

// RFC 3339 UTC with milliseconds: "2026-12-03T04:05:06.789Z".
std::string Rfc3339Ms(int64_t wall_ms);

// First start: when the users table is empty, creates the user "admin"
// (role admin) with a random kInitialPasswordChars-character password and
// writes the password to `password_file` (mode 0600, atomically) before the
// user is committed. Sets *created. Never logs the password. Later starts
// (any user exists) do nothing, even if the file was removed.
inline constexpr size_t kInitialPasswordChars = 24;
inline constexpr const char* kInitialAdmin = "admin";
Status EnsureInitialAdmin(Db& db, const std::string& password_file, const ScryptParams& kdf,
                          int64_t now_ms, bool* created);

// Records the console itself in the hosts table (role "console"), or
// updates its address when it changed.
Status EnsureConsoleHost(Db& db, const std::string& name, const std::string& address,
                         int64_t now_ms);

}  // namespace tandem::console
