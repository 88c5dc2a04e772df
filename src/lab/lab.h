// The lab: a two-host cluster on one machine, on loopback (the README's main
// job, and the bed for integration tests and benchmarks).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace tandem::lab {

struct LabOptions {
  std::string dir;
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 3000;
  std::string subnet;        // "127.a.b" (a /24 in loopback); empty: a random free one
  int64_t wait_ms = 60000;   // how long `up` waits for Active/Standby
  std::string bin_dir;       // where tandemd and tandem live; empty: next to this binary
  std::vector<std::string> connectivity_peers;  // "host:port" test peers (default none)
  // Namespaces instead of loopback (lab/netns.h): real interfaces, a bridge,
  // the VIP as an interface alias with gratuitous ARP; test peers default to
  // the two managed hosts.
  bool netns = false;
  bool crossover = false;  // netns only: a crossover link as a second heartbeat path
  // netns only: the managed hosts run `tandem witness` and both hosts ask them
  // before taking over (R-NC-4).
  bool use_witnesses = true;
  std::vector<std::string> witnesses;  // "host:port" (filled in for netns labs)
  std::vector<std::string> icmp_peers;  // ICMP echo test peers (netns: the managed hosts)
  // /store replication between the two hosts (docs/REPLICATION.md); each
  // host's JSON gets "store_dir", "repl_port" and "volume_socket".
  bool replication = false;
  int64_t sync_rate_mb = 100;
  // With replication: the collector ([collector], docs/COLLECTOR.md) on the
  // VIP, on high ports; the JSON gets "ports": {"syslog_udp", "syslog_tcp",
  // "relp", "netflow"}.
  bool collector = true;
  // With the collector: its capacity guard marks ([collector]
  // capacity_stop_percent / capacity_resume_percent); 0: the defaults.
  int64_t capacity_stop_percent = 0;
  int64_t capacity_resume_percent = 0;
  // With replication: each host's store directory, absolute ([0] primary,
  // [1] secondary; e.g. a small file system a test mounted); empty:
  // <host dir>/store.
  std::vector<std::string> store_dirs;
  // The console role (docs/CONSOLE.md) on the primary's tandemd: [console]
  // in its config, listening on the primary's address; the JSON gets
  // "api": {"url", "user", "password_file", "tls_cert"}.
  bool console = false;
  int64_t console_session_ttl_s = 3600;
  // With the console: every host gets an [agent] (docs/CONSOLE.md) on its own
  // lab address, and `managed` more tandemd processes run the agent only
  // (unclustered managed hosts, 0..8; at most 2 in a netns lab, in the two
  // managed hosts' namespaces). Each host's JSON gets "agent": {"address"} and
  // "pairing_file" (a 0600 file holding its one-time pairing string); the
  // managed hosts are listed in "managed_hosts".
  int managed = 0;
};

// Writes configs and key, starts both daemons in the background, waits until
// one is ACTIVE and the other STANDBY. Returns the lab description:
// {"vip","service_port","hosts":[{"name","role","pid","config"}], ...}, plus
// "netns": {"primary","secondary","client",...} for a netns lab.
// On failure everything started is stopped again.
Result<nlohmann::json> Up(const LabOptions& opts);

// Stops every process the lab started (daemons, then stale services) and
// removes run-time files; logs stay in DIR.
Status Down(const std::string& dir);

// (Re)starts one host's daemon ("primary" | "secondary", or the name of a
// managed host of "managed_hosts"); returns its pid.
Result<int> StartHost(const std::string& dir, const std::string& which);

// The lab description written by Up (DIR/lab.json).
Result<nlohmann::json> Describe(const std::string& dir);

// `tandem demo-service`: answers every TCP connection on `bind` with
// "<name>\n" and closes it. Runs until killed.
int DemoService(const std::string& bind, const std::string& name);

// `tandem witness`: the indirect-heartbeat responder (peer/witness.h).
int RunWitness(const std::string& listen, const std::string& key_file, const std::string& name);

// `tandem probe`: connects to "a.b.c.d:port" and returns the first line the
// service sends (the demo service's host name). Error if nothing answers
// within `timeout_ms`.
Result<std::string> Probe(const std::string& addr, int64_t timeout_ms);

}  // namespace tandem::lab
