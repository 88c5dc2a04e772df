// tandemd configuration: one TOML file per host, fully validated.
// Reference: docs/CONFIG.md. Every error names the file, the key and what is
// wrong ("host.toml: heartbeat.timeout_ms: must be greater than
// heartbeat.interval_ms (1000), got 500"); unknown keys are errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ha/types.h"
#include "util/status.h"

namespace tandem::config {

// An IPv4 address and port, parsed from "a.b.c.d:port".
struct Endpoint {
  std::string host;  // dotted quad
  uint16_t port = 0;
  bool empty() const { return host.empty(); }
  // "a.b.c.d:port"; "" when empty().
  std::string ToString() const;
  bool operator==(const Endpoint&) const = default;
};

struct ServiceConfig {
  std::string name;                   // unique, [A-Za-z0-9_.-]{1,64}
  std::vector<std::string> command;   // argv; argv[0] absolute or on PATH
  int64_t restart_backoff_min_ms = 100;
  int64_t restart_backoff_max_ms = 10000;
  int64_t stop_timeout_ms = 5000;     // SIGTERM, then SIGKILL after this
};

// [collector]: the syslog/NetFlow collector (docs/COLLECTOR.md), a service
// of the active host that writes events and flows to the replicated store.
struct CollectorConfig {
  bool enabled = false;                // the section is present
  std::string listen_address;          // collector.listen_address; default cluster.vip
  int syslog_udp_port = 514;           // 0 disables a listener
  int syslog_tcp_port = 514;
  int relp_port = 2514;
  int netflow_port = 2055;
  int64_t message_bytes_max = 65536;   // longer messages are cut (counted)
  int64_t batch_ms = 5;                // how long a block collects before it is written
  int64_t queue_mb = 64;               // events received but not yet durable, at most
  int64_t capacity_stop_percent = 95;  // store file system use that stops collection
  int64_t capacity_resume_percent = 90;// ... and where it resumes
  int64_t retention_days = 0;          // 0: keep by age forever
  int64_t retention_gb = 0;            // 0: no size limit (the capacity guard still applies)
  int64_t segment_mb = 256;            // a segment is sealed at this size ...
  int64_t segment_seconds = 3600;      // ... or age
  int64_t tcp_connections_max = 1024;
  std::string status_file;             // default <run_dir>/collector.json
};

// [console]: the console role (docs/CONSOLE.md): the deployment database
// and the /api/v1 HTTPS API. Independent of the HA role.
struct ConsoleConfig {
  bool enabled = false;           // console.enabled; default true when the section is present
  Endpoint listen;                // console.listen (required with the section)
  std::string state_dir;          // console.state_dir (absolute); default <host.state_dir>/console
  int64_t session_ttl_s = 3600;   // console.session_ttl_s: 1 .. 2592000 (30 days)
  int64_t poll_interval_ms = 5000;  // console.poll_interval_ms: 200 .. 3600000 (agent facts)
  std::string tls_cert;           // console.tls_cert / tls_key (absolute): both or neither;
  std::string tls_key;            // neither: a self-signed pair in <state_dir>/tls
  std::string license_keys_dir;   // console.license_keys_dir (absolute): HA license public keys
                                  // (*.pem); default <state_dir>/license-keys
};

// [agent]: the host side of the console channel (docs/CONSOLE.md, "Hosts:
// pairing and the agent channel"): pairing, facts, link measurement.
struct AgentConfig {
  bool enabled = false;           // the section is present
  Endpoint listen;                // agent.listen (required with the section)
  std::string state_dir;          // agent.state_dir (absolute); default <host.state_dir>/agent
  std::string packages_dir;       // agent.packages_dir; default <state_dir>/packages
  std::string store_dir;          // agent.store_dir; default replication.store_dir ("" : none)
  std::string transient_dir;      // agent.transient_dir (optional)
  bool external_storage = false;  // agent.external_storage
  bool virtual_appliance = false; // agent.virtual
  // The ports of an HA pair that a console's deploy forms on this host
  // (docs/CONSOLE.md, "Clusters formed by a deploy"): both hosts of a
  // cluster use the same ones.
  int heartbeat_port = 7788;      // agent.heartbeat_port (UDP)
  int replication_port = 7789;    // agent.replication_port (TCP)
};

struct Config {
  std::string path;  // the file this was loaded from (absolute)

  // [agent] without [cluster] and [heartbeat]: an unclustered managed host.
  // tandemd runs the agent (and [console], if any) only; the cluster,
  // heartbeat, VIP, service and replication fields keep their defaults.
  bool agent_only = false;

  // Set when the cluster sections came from a console's deployment to an
  // agent-only host (config/deployment.h): the document's identity and
  // revision. Empty / 0 for a configuration read from its file alone.
  std::string deployment_identity;
  int64_t deployment_revision = 0;
  // Why the cluster deployed to this agent-only host does not run ("" :
  // nothing to say); logged at start and reported in the agent's facts.
  std::string deployment_error;

  // [cluster]
  std::string cluster_name;          // cluster.name
  std::string key_file;              // cluster.key_file (absolute after load)
  std::string cluster_key;           // contents of key_file (>= 32 bytes); never logged
  std::string vip;                   // cluster.vip, dotted quad
  std::string vip_mode = "loopback"; // cluster.vip_mode: "loopback" (127/8 only) | "interface"
  int vip_prefix = 24;               // cluster.vip_prefix: the VIP's subnet length (interface mode)

  // [host]
  std::string host_name;             // host.name
  ha::Role role = ha::Role::kPrimary;// host.role: "primary" | "secondary"
  std::string state_dir;             // host.state_dir (absolute): state file, logs
  std::string run_dir;               // host.run_dir (absolute): control socket, pid files
  std::string admin_group;           // host.admin_group: may use the control socket besides root
  std::string interface;             // host.interface: management interface (interface mode)

  // [vip] gratuitous ARP announcements (interface mode)
  int garp_count = 5;
  int garp_repeat_count = 5;
  int64_t garp_repeat_delay_ms = 5000;
  int64_t garp_refresh_ms = 0;

  // [heartbeat]
  int64_t heartbeat_interval_ms = 10000;
  int64_t heartbeat_timeout_ms = 30000;
  int64_t initial_dead_time_ms = 60000;  // default: 2 * timeout_ms
  Endpoint listen;                   // heartbeat.listen (management path)
  Endpoint peer;                     // heartbeat.peer
  Endpoint crossover_listen;         // heartbeat.crossover_listen (optional)
  Endpoint crossover_peer;           // heartbeat.crossover_peer (optional, with the above)

  // [connectivity]
  // TCP connect tests (connectivity.peers) and ICMP echo tests
  // (connectivity.icmp_peers, stored with port 0).
  std::vector<Endpoint> connectivity_peers;
  // `tandem witness` endpoints asked before a takeover after heartbeat loss
  // (R-NC-4); they also receive this host's heartbeats.
  std::vector<Endpoint> witnesses;
  int64_t connectivity_interval_ms = 10000;
  int64_t connectivity_timeout_ms = 2000;
  bool connectivity_require_all = false;     // "any" (default) or "all" must answer

  // [[service]]
  std::vector<ServiceConfig> services;

  // [notify]
  std::vector<std::string> notify_command;   // argv; cluster host old new reason appended
  int64_t notify_timeout_ms = 10000;

  // [log]
  std::string log_level = "info";    // trace|debug|info|warn|error
  std::string log_file;              // empty: stderr

  // [replication] of /store (docs/REPLICATION.md); enabled by store_dir.
  bool replication = false;
  std::string store_dir;             // replication.store_dir (absolute)
  std::string repl_meta_dir;         // replication.meta_dir; default <state_dir>/replica
  Endpoint repl_listen;              // replication.listen (port 7789 by default in examples)
  Endpoint repl_peer;                // replication.peer
  char repl_protocol = 'C';          // replication.protocol "A" | "B" | "C"
  int64_t sync_rate_mb = 100;        // replication.sync_rate_mb: MB/s, 1..4096
  std::vector<std::string> merge_prefixes{"events/", "flows/"};  // replication.merge_prefixes
  std::string volume_socket;         // replication.volume_socket; default <run_dir>/volume.sock
  int64_t repl_timeout_ms = 0;       // replication.timeout_ms; default heartbeat.timeout_ms

  // [api] control channel
  std::string control_socket;        // default: <run_dir>/tandemd.sock
  Endpoint http_listen;              // api.http_listen: HTTP JSON API (optional)
  std::string api_token_file;        // api.token_file: bearer token (required with http_listen)
  std::string api_token;             // its contents; never logged

  CollectorConfig collector;

  ConsoleConfig console;

  AgentConfig agent;
};

// Parses and validates `path`. Relative paths inside the file are resolved
// against the file's directory. On error nothing is returned and the Status
// message is "<path>: <key>: <what is wrong>".
// `read_key` false: cluster.key_file is not opened and cluster_key stays
// empty (for `ha`, run by administrators who may not read the key).
Result<Config> Load(const std::string& path, bool read_key = true);

// Same, from text (for tests and fuzzing). `path` is used for messages and
// relative-path resolution only; key_file is read from disk.
Result<Config> Parse(const std::string& text, const std::string& path, bool read_key = true);

// Parses "a.b.c.d:port" strictly: four decimal octets 0..255 and a decimal
// port 1..65535, neither with leading zeros ("01.2.3.4" and "1.2.3.4:080"
// are rejected, since inet_aton and friends read them as octal), nothing
// else (no spaces, host names or IPv6). On error the message (without path or key)
// says what is wrong: `expected "a.b.c.d:port", got "1.2.3.4" (no ":port")`.
Result<Endpoint> ParseEndpoint(std::string_view text);

// A strict dotted-quad IPv4 address (same octet rules as ParseEndpoint), in
// host byte order; nullopt if `text` is anything else.
std::optional<uint32_t> ParseIPv4(std::string_view text);

}  // namespace tandem::config
