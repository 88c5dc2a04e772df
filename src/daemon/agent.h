// The agent: the host side of the console <-> host channel (docs/CONSOLE.md,
// "Hosts: pairing and the agent channel"; R-DEP-1, R-CL-1, R-CL-3, R-CL-4,
// R-UP-1). An HTTPS server of its own, run by every tandemd with [agent],
// whatever the host's HA status, through which the console pairs the host
// (a one-time token printed by `tandemd pair-token`), reads its facts,
// measures the link between two hosts and copies content packages
// (docs/formats/packages.md).
//
// State directory (0700): tls/cert.pem, tls/key.pem (generated at first
// start), pairing.token (0600, while not paired), paired.json (0600, once
// paired; the key's SHA-256 only), deployed.json and cluster.key (what a
// console deployed). The token and the key are never logged.
//
// HTTPS: cpp-httplib's SSLServer, TLS 1.2 or later, in a bounded pool
// (kAgentThreads request threads, at most kAgentQueueMax accepted
// connections waiting); requests must arrive within kAgentReadTimeoutS.
// Requests are handled by Handle(), a plain function of the request, so
// every endpoint is unit-tested without sockets.
//
// Measurement: at most kMeasureListenersMax listeners at once, each a
// thread that gives up after kMeasureTimeoutMs; one run at a time (on the
// request's thread, at most kMeasureTimeoutMs).
//
// Thread-safety: Start/Stop/port from the owner's thread; Handle, Facts and
// counters from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "console/api.h"
#include "os/clock.h"
#include "util/status.h"

namespace tandem::console {
class HttpsServer;
}  // namespace tandem::console

namespace tandem::daemon {

inline constexpr size_t kAgentThreads = 4;
inline constexpr size_t kAgentQueueMax = 16;
inline constexpr int kAgentReadTimeoutS = 5;
inline constexpr int kAgentKeepAliveS = 5;
inline constexpr size_t kAgentBodyBytesMax = 64 * 1024;
inline constexpr size_t kPairingTokenBytes = 32;  // 64 hex characters
inline constexpr size_t kAgentKeyBytes = 32;      // 64 hex characters
inline constexpr int kPairFailuresMax = 5;        // wrong tokens within the window ...
inline constexpr int64_t kPairFailureWindowMs = 60000;  // ... then 429 until they age out
inline constexpr size_t kConsoleNameLenMax = 64;
inline constexpr int64_t kMeasureBytesMin = int64_t{1} << 20;
inline constexpr int64_t kMeasureBytesMax = int64_t{256} << 20;
inline constexpr int64_t kMeasureBytesDefault = int64_t{16} << 20;
inline constexpr int64_t kMeasureTimeoutMs = 30000;
inline constexpr int kMeasurePings = 10;
inline constexpr size_t kMeasureListenersMax = 4;
inline constexpr size_t kPackagesMax = 1024;            // manifests read, at most
inline constexpr size_t kPackageManifestBytesMax = 64 * 1024;
// A package's payload file (<name>.pkg beside <name>.json), at most this.
inline constexpr size_t kPackagePayloadBytesMax = 4 * 1024 * 1024;
// PUT /api/v1/agent/packages/{name} only: the payload in base64 plus the
// manifest and the field names (every other call: kAgentBodyBytesMax).
inline constexpr size_t kAgentPackageBodyBytesMax =
    (kPackagePayloadBytesMax + 2) / 3 * 4 + kAgentBodyBytesMax;

struct AgentOptions {
  std::string state_dir;                  // absolute
  std::string packages_dir;               // *.json manifests
  std::string store_dir;                  // "" : no store
  std::string transient_dir;              // "" : none
  bool external_storage = false;
  bool virtual_appliance = false;
  std::string listen_host = "127.0.0.1";  // dotted quad
  uint16_t listen_port = 0;               // 0: an ephemeral port (tests)
  std::string host_name;
  std::string host_interface;             // host.interface ("" : not set)
  std::string heartbeat_host;             // heartbeat.listen's address ("" : none)
  int heartbeat_port = 7788;              // agent.heartbeat_port / replication_port: the
  int replication_port = 7789;            // ports of a pair a deploy forms (facts "ha_ports")
  // Why the cluster last deployed to this host does not run ("" : it does,
  // or none was deployed); facts "deploy_error".
  std::string deploy_error;
  // {"name", "role", "peer"} of this host's cluster, or null (agent-only).
  nlohmann::json cluster;
  // The object `ha status --json` prints, or null when it cannot be had in
  // time. Called on the agent's threads; must be thread-safe. Unset: null.
  std::function<nlohmann::json()> ha_status;
  // POST /api/v1/agent/ha: runs one control-socket command (`request` is
  // {"cmd", ...}, as `ha` sends it) and answers the daemon's reply
  // ({"ok": true, ...} or {"ok": false, "error"}); an error when the daemon
  // did not answer in time. Called on the agent's threads; must be
  // thread-safe. Unset: the host is not clustered (409 not_clustered).
  std::function<Result<nlohmann::json>(const nlohmann::json& request)> ha_command;
  // PUT /api/v1/agent/config: applies a deployed configuration document
  // (docs/formats/deployment.md), already validated and stored in
  // deployed.json. Called on an agent thread, one call at a time; must be
  // thread-safe. An error is answered 500 apply_failed (the document stays
  // stored). Unset: the document is only stored.
  std::function<Status(const nlohmann::json& document)> apply_config;
  // POST /api/v1/agent/factory-reset also removes these, when they exist:
  // the HA state file (<host.state_dir>/state.json) and the replica's
  // metadata directory (<host.state_dir>/replica) an earlier membership
  // left. "" : none.
  std::string ha_state_file;
  std::string replica_dir;
  const os::Clock* clock = &os::RealClock::Get();
  std::function<void(int level, const std::string& message)> log;  // 0 debug .. 3 error
};

// What the agent has answered since start (tandemd's metrics, R-NF-3).
struct AgentCounters {
  uint64_t requests = 0;
  uint64_t refused = 0;         // 4xx
  uint64_t errors = 0;          // 5xx
  uint64_t pairings = 0;        // successful pairings
  uint64_t pair_failures = 0;   // wrong or missing token
  uint64_t measure_listens = 0;
  uint64_t measure_runs = 0;
  uint64_t measure_bytes_received = 0;  // counted by listeners (accepted nonce)
};

// ---- Files of the state directory, shared with `tandemd pair-token` ----

std::string AgentCertFile(const std::string& state_dir);
std::string AgentKeyFile(const std::string& state_dir);
std::string PairingTokenFile(const std::string& state_dir);
std::string PairedFile(const std::string& state_dir);
std::string DeployedConfigFile(const std::string& state_dir);  // deployed.json
// cluster.key: the cluster key a deploy wrote (config/deployment.cc).
std::string ClusterKeyFile(const std::string& state_dir);

// The configuration the console last deployed (deployed.json):
// {"revision", "deployed_at_ms", "document"}, nullopt when none was.
// Error: unreadable or malformed.
Result<std::optional<nlohmann::json>> ReadDeployedConfig(const std::string& state_dir);
// Checks a deployment document (docs/formats/deployment.md) strictly.
// Error: what is wrong; *field (if given) names the offending field
// ("document.cluster.options.sync_rate_mb").
Status ValidateDeployDocument(const nlohmann::json& document, int64_t revision, std::string* field);

// Creates the state directory (0700) and, when missing, the certificate
// and key: ECDSA P-256, self-signed, subjectAltName the listen address
// (127.0.0.1 for 0.0.0.0), every IPv4 address of this host's interfaces,
// `host_name` and localhost. Sets *generated when it made them.
Status EnsureAgentCertificate(const std::string& state_dir, const std::string& host_name,
                              const std::string& listen_host, bool* generated = nullptr);

// The pairing record, if paired.json exists. Error: unreadable or malformed.
struct Pairing {
  std::string console;
  std::string key_sha256;
  int64_t paired_at_ms = 0;
};
Result<std::optional<Pairing>> ReadPairing(const std::string& state_dir);

// `tandemd pair-token`: the pairing string "tp1.<token>.<certificate
// SHA-256>", creating the certificate and pairing.token when missing.
// Error on a paired host: "already paired with console NAME".
Result<std::string> PairingString(const std::string& state_dir, const std::string& host_name,
                                  const std::string& listen_host);

// `tandemd unpair`: removes paired.json. Answers the console it was paired
// with ("" if it was not paired).
Result<std::string> Unpair(const std::string& state_dir);

// Bytes of `dir`'s file system: {"dir", "bytes_total", "bytes_free"}, or
// null when statvfs fails.
nlohmann::json StorageJson(const std::string& dir);

// The installed content packages (R-UP-1): the *.json manifests of `dir`
// ({"name", "version", "kind": "parser"|"protocol"}), sorted by name. A bad
// manifest is skipped with a warning line in *warnings.
nlohmann::json ReadPackages(const std::string& dir, std::vector<std::string>* warnings);
// What is wrong with a package manifest (the checks ReadPackages makes on
// each), "" when nothing is.
std::string PackageManifestProblem(const nlohmann::json& manifest);

// This host's interfaces (getifaddrs): [{"name", "addresses": ["a.b.c.d/n"],
// "physical", "up"}], sorted by name.
nlohmann::json InterfacesJson();

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();  // Stop()
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Creates the state directory and the certificate when missing, binds
  // and starts serving. Error: what failed (nothing runs then).
  Status Start();
  uint16_t port() const;
  // Stops accepting, finishes running requests, ends the measurement
  // listeners, joins. Idempotent.
  void Stop();

  std::string url() const;  // "https://host:port"
  std::string cert_file() const { return AgentCertFile(options_.state_dir); }

  // One request (what the HTTPS server calls). Also for tests.
  console::ApiResponse Handle(const console::ApiRequest& request);
  // The facts document of docs/CONSOLE.md.
  nlohmann::json Facts() const;
  AgentCounters counters() const;
  // The counters in the Prometheus text format ("tandem_agent_...").
  std::string MetricsText() const;

 private:
  struct Listener;

  console::ApiResponse Route(const console::ApiRequest& r);
  console::ApiResponse Pair(const console::ApiRequest& r);
  console::ApiResponse MeasureListen(const console::ApiRequest& r);
  console::ApiResponse MeasureRun(const console::ApiRequest& r);
  // GET packages, GET and PUT packages/{name} (`what`: the path after
  // /api/v1/agent/; docs/formats/packages.md).
  console::ApiResponse Packages(const console::ApiRequest& r, std::string_view what);
  console::ApiResponse PutPackage(const console::ApiRequest& r, const std::string& name);
  console::ApiResponse HaCommand(const console::ApiRequest& r);
  console::ApiResponse Config(const console::ApiRequest& r);
  // POST /api/v1/agent/factory-reset (docs/CONSOLE.md, "Host actions").
  console::ApiResponse FactoryReset(const console::ApiRequest& r);
  // nullopt when the Bearer key matches paired.json; else the 401.
  std::optional<console::ApiResponse> CheckKey(const console::ApiRequest& r);
  void RunListener(Listener* l);
  void ReapListeners(bool all);
  void Log(int level, const std::string& m) const {
    if (options_.log) options_.log(level, m);
  }

  AgentOptions options_;
  std::unique_ptr<console::HttpsServer> server_;

  std::mutex pair_mu_;  // one pairing at a time
  std::deque<int64_t> pair_failures_ms_;  // GUARDED_BY(pair_mu_), monotonic

  std::mutex run_mu_;  // one measurement run at a time

  std::mutex config_mu_;  // one PUT /api/v1/agent/config at a time
  std::mutex packages_mu_;  // one package installation at a time

  std::mutex listeners_mu_;
  std::list<std::unique_ptr<Listener>> listeners_;  // GUARDED_BY(listeners_mu_)
  std::atomic<bool> stopping_{false};

  mutable std::mutex counters_mu_;
  AgentCounters counters_;  // GUARDED_BY(counters_mu_)
};

}  // namespace tandem::daemon
