// tandem: everything besides the daemon and the operator CLI: the lab,
// benchmarks, the lab's demo service, and `tandem search` (docs/CLI.md).
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "api/control.h"
#include "collect/syslog.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "lab/bench.h"
#include "lab/lab.h"
#include "lab/store_tool.h"
#include "console/license.h"
#include "os/files.h"

namespace {

int Fail(const std::string& msg) {
  std::cerr << "tandem: " << msg << "\n";
  return 1;
}

std::string Absolute(const std::string& p) {
  return std::filesystem::absolute(p).lexically_normal().string();
}

// ---- tandem search (exit codes: 0 ok, 1 error from the daemon, 2 bad usage) ----

using nlohmann::json;

struct SearchArgs {
  std::string config;
  std::map<std::string, std::string> params;  // daemon::SearchRequestFromParams's names
  bool as_json = false;
  int64_t timeout_ms = 120000;
};

// "2026-12-02T10:00:00.123Z" (UTC, milliseconds).
std::string FormatTimeUs(int64_t us) {
  int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
  int64_t ms = (us - secs * 1000000) / 1000;
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  int64_t rem = secs - days * 86400;
  // H. Hinnant's civil_from_days.
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp + (mp < 10 ? 3 : -9);
  int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
                static_cast<long long>(rem % 60), static_cast<long long>(ms));
  return buf;
}

std::string EventLine(const json& e) {
  std::string host = e.value("host", "");
  std::string app = e.value("app", "");
  return FormatTimeUs(e.value("time_us", int64_t{0})) + " " + (host.empty() ? "-" : host) + " " +
         std::string(tandem::collect::SeverityName(e.value("severity", -1))) + " " +
         (app.empty() ? "-" : app) + ": " + e.value("message", "");
}

std::string FlowLine(const json& f) {
  static const std::map<int, std::string> kProto = {{1, "icmp"}, {6, "tcp"}, {17, "udp"}};
  int proto = f.value("protocol", 0);
  auto name = kProto.find(proto);
  return FormatTimeUs(f.value("time_us", int64_t{0})) + " " + f.value("src", "") + ":" +
         std::to_string(f.value("src_port", 0)) + " -> " + f.value("dst", "") + ":" +
         std::to_string(f.value("dst_port", 0)) + " " +
         (name != kProto.end() ? name->second : std::to_string(proto)) + " " +
         std::to_string(f.value("bytes", uint64_t{0})) + " bytes " +
         std::to_string(f.value("packets", uint64_t{0})) + " packets exporter " +
         f.value("exporter", "");
}

void PrintSearch(const std::string& kind, const json& r) {
  for (const auto& rec : r.value("records", json::array())) {
    std::cout << (kind == "events" ? EventLine(rec) : FlowLine(rec)) << "\n";
  }
  const json& top = r.contains("top") ? r["top"] : json();
  if (top.is_object()) {
    bool bytes = top.value("by", "count") == "bytes";
    std::cout << "top " << top.value("field", "") << " by " << (bytes ? "bytes" : "count") << ":\n";
    for (const auto& v : top.value("values", json::array())) {
      std::cout << "  " << v.value("count", uint64_t{0});
      if (kind == "flows") std::cout << " flows " << v.value("bytes", uint64_t{0}) << " bytes";
      std::cout << "  " << v.value("value", "") << "\n";
    }
    if (top.value("other", uint64_t{0}) > 0) {
      std::cout << "  (" << top.value("other", uint64_t{0}) << " matches not counted by value)\n";
    }
  }
  const json& st = r.contains("stats") ? r["stats"] : json::object();
  uint64_t total = r.value("total", uint64_t{0});
  uint64_t returned = r.value("returned", uint64_t{0});
  std::cout << returned << " of " << total << " matching " << kind
            << (r.value("more", false) ? " shown (raise --limit for more)" : "") << "; "
            << st.value("segments", uint64_t{0}) << " segments, "
            << st.value("records_scanned", uint64_t{0}) << " records scanned in "
            << st.value("elapsed_us", uint64_t{0}) / 1000 << " ms\n";
}

int Search(const std::string& kind, const SearchArgs& a) {
  auto cfg = tandem::config::Load(a.config, /*read_key=*/false);
  if (!cfg.ok()) {
    std::cerr << "tandem: " << cfg.status().message() << "\n";
    return 2;
  }
  int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto req = tandem::daemon::SearchRequestFromParams(kind, a.params, now_us);
  if (!req.ok()) {
    std::cerr << "tandem: search " << kind << ": " << req.status().message() << "\n";
    return 2;
  }
  auto r = tandem::api::Call(cfg->control_socket, *req, a.timeout_ms);
  if (!r.ok()) return Fail(r.status().message());
  if (!r->value("ok", false)) return Fail("search " + kind + ": " + r->value("error", "failed"));
  r->erase("ok");
  if (a.as_json) {
    std::cout << r->dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (a.params.count("count") != 0) {
    std::cout << r->value("total", uint64_t{0}) << "\n";
  } else {
    PrintSearch(kind, *r);
  }
  return 0;
}

// Adds the options of `tandem search <kind>`; values land in a.params when given.
CLI::App* AddSearch(CLI::App* search, const std::string& kind, SearchArgs& a) {
  auto* sub = search->add_subcommand(kind, "search stored " + kind + " (docs/SEARCH.md)");
  sub->add_option("-c,--config", a.config, "tandemd configuration of the host to ask")->required();
  auto param = [&a, sub](const std::string& flag, const std::string& key, const std::string& help) {
    return sub->add_option_function<std::string>(
        flag, [&a, key](const std::string& v) { a.params[key] = v; }, help);
  };
  param("--from", "from", "start, inclusive: RFC 3339, epoch seconds, now, -15m, -2h, -7d (default: all)");
  param("--to", "to", "end, exclusive (same forms; default: no end)");
  param("--limit", "limit", "records to print, 1..100000 (default 100)");
  param("--top", "top",
        kind == "events" ? "top values of host|app|severity|sender"
                         : "top values of src|dst|src_port|dst_port|protocol|exporter");
  param("--top-n", "top_n", "how many top values, 1..1000 (default 10)");
  sub->add_flag_callback("--newest", [&a] { a.params["newest"] = "1"; },
                         "the newest matches, newest first (default: the oldest, oldest first)");
  sub->add_flag_callback("--count", [&a] { a.params["count"] = "1"; },
                         "print only the number of matches");
  sub->add_flag("--json", a.as_json, "print the search JSON");
  sub->add_option("--timeout-ms", a.timeout_ms, "how long to wait for the daemon")
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  if (kind == "events") {
    param("--host", "host", "host name, exact");
    param("--severity", "severity", "at least this severe: emerg..debug or 0..7");
    param("--contains", "contains", "message substring, case-sensitive");
  } else {
    param("--src", "src", "source address, exact");
    param("--dst", "dst", "destination address, exact");
    param("--port", "port", "source or destination port");
    param("--protocol", "protocol", "tcp, udp, icmp or 0..255");
    param("--top-by", "top_by", "rank top values by count (default) or bytes");
  }
  return sub;
}

}  // namespace

// ---- tandem license (HA licenses, docs/CONSOLE.md "Licenses") ----

struct LicenseArgs {
  std::string dir, name = "license";      // keygen
  std::string key, id, issued_to, expires;  // sign
};

int LicenseKeygen(const LicenseArgs& a) {
  auto pair = tandem::console::GenerateLicenseKey();
  if (!pair.ok()) return Fail(pair.status().message());
  const std::string priv = a.dir + "/" + a.name + ".key", pub = a.dir + "/" + a.name + ".pem";
  for (const std::string& f : {priv, pub}) {
    if (std::filesystem::exists(f)) return Fail(f + " exists; not overwriting a key");
  }
  tandem::Status st = tandem::os::WriteFileAtomic(priv, pair->private_pem, 0600);
  if (st.ok()) st = tandem::os::WriteFileAtomic(pub, pair->public_pem, 0644);
  if (!st.ok()) return Fail(st.message());
  std::cout << json{{"key_id", pair->key_id}, {"private_key", priv}, {"public_key", pub}}.dump() << "\n";
  return 0;
}

int LicenseSign(const LicenseArgs& a) {
  auto pem = tandem::os::ReadFile(a.key, 64 * 1024);
  if (!pem.ok()) return Fail(pem.status().message());
  tandem::console::LicenseFields f;
  f.id = a.id;
  f.issued_to = a.issued_to;
  auto expires = tandem::console::ParseRfc3339(a.expires);
  if (!expires.ok()) return Fail("--expires " + expires.status().message());
  f.expires_at_ms = *expires;
  auto doc = tandem::console::SignLicense(f, *pem);
  if (!doc.ok()) return Fail(a.key + ": " + doc.status().message());
  std::cout << *doc << "\n";
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"tandem: lab, benchmarks and tools for Tandem clusters"};
  app.require_subcommand(1);
  tandem::lab::LabOptions lo;
  std::string host;
  auto* lab = app.add_subcommand("lab", "a two-host cluster on this machine (loopback)");
  lab->require_subcommand(1);
  auto* up = lab->add_subcommand("up", "write configs, start both daemons, wait, print JSON");
  bool with_replication = false;
  up->add_flag("--replication", with_replication, "replicate the hosts' store directories (docs/REPLICATION.md)");
  up->add_option("--sync-rate-mb", lo.sync_rate_mb, "disk synchronization rate, MB/s")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  tandem::lab::FillOptions fo;
  auto* store = app.add_subcommand("store", "the replicated /store of a running host");
  store->require_subcommand(1);
  auto* fill = store->add_subcommand("fill", "write test data through the host's volume; prints JSON");
  fill->add_option("--config", fo.config, "the host's tandemd.toml")->required();
  fill->add_option("--files", fo.files, "files to write")->check(CLI::Range(1, 1000000))->capture_default_str();
  fill->add_option("--bytes", fo.bytes, "bytes per file")->check(CLI::Range(uint64_t{0}, uint64_t{1} << 40))->capture_default_str();
  fill->add_option("--write-bytes", fo.write_bytes, "bytes per append")->check(CLI::Range(uint64_t{1}, uint64_t{64} << 20))->capture_default_str();
  fill->add_option("--window", fo.window, "requests in flight")->check(CLI::Range(1, 4096))->capture_default_str();
  fill->add_option("--prefix", fo.prefix, "path prefix inside the store")->capture_default_str();
  fill->add_option("--seed", fo.seed, "content seed")->capture_default_str();
  up->add_option("--dir", lo.dir, "lab directory")->required();
  up->add_option("--heartbeat-interval-ms", lo.heartbeat_interval_ms)
      ->check(CLI::Range(int64_t{10}, int64_t{600000}))->capture_default_str();
  up->add_option("--heartbeat-timeout-ms", lo.heartbeat_timeout_ms)
      ->check(CLI::Range(int64_t{20}, int64_t{3600000}))->capture_default_str();
  up->add_option("--subnet", lo.subnet, "loopback /24 to use, e.g. 127.123.4 (default: random)");
  up->add_option("--connectivity-peer", lo.connectivity_peers, "host:port test peer (repeatable)");
  up->add_flag("--netns", lo.netns,
               "network namespaces (198.18.0.0/24) instead of loopback: real interfaces, the VIP as "
               "an interface alias with gratuitous ARP, a client and two managed hosts");
  up->add_flag("--crossover", lo.crossover, "with --netns: a crossover link as a second path");
  up->add_flag("--console", lo.console,
               "also run the console (docs/CONSOLE.md) on the primary; the JSON gets "
               "\"api\": {\"url\", \"user\", \"password_file\", \"tls_cert\"}");
  up->add_option("--managed", lo.managed,
                 "with --console: N more tandemd processes running the agent only (unclustered "
                 "managed hosts; at most 2 with --netns); the JSON lists them in \"managed_hosts\"")
      ->check(CLI::Range(0, 8))->capture_default_str();
  bool no_witnesses = false;
  up->add_flag("--no-witnesses", no_witnesses,
               "with --netns: managed hosts run no witness (no indirect heartbeat)");
  auto* down = lab->add_subcommand("down", "stop everything the lab started");
  down->add_option("--dir", lo.dir, "lab directory")->required();
  auto* start = lab->add_subcommand("start", "(re)start one host's daemon");
  start->add_option("--dir", lo.dir, "lab directory")->required();
  start->add_option("--host", host, "primary | secondary | a managed host's name (lab-managed-N)")
      ->required();

  std::string bind, name;
  auto* demo = app.add_subcommand("demo-service", "answer each TCP connection with a name");
  demo->add_option("--bind", bind, "address:port")->required();
  demo->add_option("--name", name, "the answer")->required();

  std::string probe_addr;
  int64_t probe_timeout_ms = 1000;
  auto* probe = app.add_subcommand("probe", "connect to A:P and print what the service answers");
  probe->add_option("--addr", probe_addr, "address:port")->required();
  probe->add_option("--timeout-ms", probe_timeout_ms)->check(CLI::Range(int64_t{1}, int64_t{60000}));

  std::string witness_listen, witness_key, witness_name = "witness";
  auto* witness = app.add_subcommand(
      "witness", "indirect-heartbeat responder for managed hosts (R-NC-4); runs until killed");
  witness->add_option("--listen", witness_listen, "address:port to listen on")->required();
  witness->add_option("--key-file", witness_key, "the cluster key file")->required();
  witness->add_option("--name", witness_name, "this witness's name in its answers");

  tandem::lab::BenchOptions bo;
  auto* bench = app.add_subcommand("bench", "benchmarks (print JSON)");
  bench->require_subcommand(1);
  auto* failover = bench->add_subcommand("failover", "outage of unplanned and planned failovers");
  failover->add_option("--trials", bo.trials)->check(CLI::Range(1, 10000))->capture_default_str();
  failover->add_option("--heartbeat-interval-ms", bo.heartbeat_interval_ms)
      ->check(CLI::Range(int64_t{10}, int64_t{600000}))->capture_default_str();
  failover->add_option("--heartbeat-timeout-ms", bo.heartbeat_timeout_ms)
      ->check(CLI::Range(int64_t{20}, int64_t{3600000}))->capture_default_str();
  failover->add_option("--dir", bo.dir, "lab directory (default: a new one under /tmp)");
  bool bench_netns = false;
  failover->add_flag("--netns", bench_netns,
                     "host death on the namespace lab, seen by the client, next to keepalived");
  failover->add_option("--keepalived-advert-int-ms", bo.keepalived_advert_ms,
                       "with --netns: keepalived's advert_int (default 1000)")
      ->check(CLI::Range(int64_t{10}, int64_t{60000}));
  tandem::lab::ReplBenchOptions ro;
  auto* bench_repl = bench->add_subcommand(
      "repl", "/store replication: full sync vs cp -r, sync-rate accuracy, protocol C writes, resync");
  bench_repl->add_option("--dir", ro.dir, "lab directory (default: a new one under /tmp)");
  bench_repl->add_option("--store-mb", ro.store_mb, "MB in the store for the syncs (a multiple of 8)")
      ->check(CLI::Range(int64_t{8}, int64_t{1} << 20))->capture_default_str();
  bench_repl->add_flag("--quick", ro.quick, "1 s per write run instead of 3 s");
  bench_repl->add_option("--secondary-store", ro.secondary_store,
                         "the secondary's store directory, e.g. on another disk (default: in the lab "
                         "directory, on the primary's disk); created, removed at the end");
  tandem::lab::IngestBenchOptions io;
  auto* bench_ingest = bench->add_subcommand(
      "ingest", "syslog ingest (UDP, TCP, RELP) vs rsyslog, search latency, bytes per event, memory");
  bench_ingest->add_option("--dir", io.dir, "lab directory (default: a new one under /tmp)");
  bench_ingest->add_option("--events", io.events, "events per TCP / RELP run")
      ->check(CLI::Range(uint64_t{1000}, uint64_t{1} << 32))->capture_default_str();
  bench_ingest->add_option("--search-events", io.search_events, "events stored for the search latency")
      ->check(CLI::Range(uint64_t{100000}, uint64_t{1} << 32))->capture_default_str();
  bench_ingest->add_flag("--quick", io.quick,
                         "one repetition, 200,000 events per run, 1,000,000 for the search (unless given)");
  SearchArgs sa;
  auto* search = app.add_subcommand("search", "search a host's stored events or flows");
  search->require_subcommand(1);
  auto* search_events = AddSearch(search, "events", sa);
  auto* search_flows = AddSearch(search, "flows", sa);
  LicenseArgs la;
  auto* license = app.add_subcommand("license", "HA license keys and documents (docs/CONSOLE.md)");
  license->require_subcommand(1);
  auto* keygen = license->add_subcommand("keygen", "write a new Ed25519 key pair: DIR/NAME.key (private) and DIR/NAME.pem");
  keygen->add_option("--dir", la.dir, "directory for the key files")->required();
  keygen->add_option("--name", la.name, "file name without extension")->capture_default_str();
  auto* sign = license->add_subcommand("sign", "print a signed HA license document");
  sign->add_option("--key", la.key, "the private key (PEM) from keygen")->required();
  sign->add_option("--id", la.id, "license id (1-64 of A-Z a-z 0-9 _ . -)")->required();
  sign->add_option("--issued-to", la.issued_to, "licensee")->required();
  sign->add_option("--expires", la.expires, "expiry, RFC 3339 (2027-12-31T23:59:59Z)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*search_events) return Search("events", sa);
  if (*search_flows) return Search("flows", sa);
  if (*keygen) return LicenseKeygen(la);
  if (*sign) return LicenseSign(la);
  if (lo.heartbeat_timeout_ms <= lo.heartbeat_interval_ms ||
      bo.heartbeat_timeout_ms <= bo.heartbeat_interval_ms) {
    return Fail("--heartbeat-timeout-ms must be greater than --heartbeat-interval-ms");
  }
  if (*demo) return tandem::lab::DemoService(bind, name);
  if (*witness) return tandem::lab::RunWitness(witness_listen, witness_key, witness_name);
  if (*probe) {
    auto answer = tandem::lab::Probe(probe_addr, probe_timeout_ms);
    if (!answer.ok()) return Fail(answer.status().message());
    std::cout << *answer << "\n";
    return 0;
  }
  if (lo.crossover && !lo.netns) return Fail("--crossover needs --netns");
  if (*fill) {
    auto r = tandem::lab::StoreFill(fo);
    if (!r.ok()) return Fail(r.status().message());
    std::cout << r->dump() << "\n";
    return 0;
  }
  lo.replication = with_replication;
  if (*failover) {
    if (bo.dir.empty()) {
      char tmpl[] = "/tmp/tandem-bench-XXXXXX";
      if (!mkdtemp(tmpl)) return Fail("mkdtemp failed");
      bo.dir = tmpl;
    }
    auto r = bench_netns ? tandem::lab::BenchFailoverNetns(bo) : tandem::lab::BenchFailover(bo);
    if (!r.ok()) return Fail(r.status().message());
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  if (*bench_repl) {
    if (ro.dir.empty()) {
      char tmpl[] = "/tmp/tandem-bench-repl-XXXXXX";
      if (!mkdtemp(tmpl)) return Fail("mkdtemp failed");
      ro.dir = tmpl;
    }
    ro.dir = Absolute(ro.dir);
    auto r = tandem::lab::BenchRepl(ro);
    if (!r.ok()) return Fail(r.status().message());
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  if (*bench_ingest) {
    if (io.dir.empty()) {
      char tmpl[] = "/tmp/tandem-bench-ingest-XXXXXX";
      if (!mkdtemp(tmpl)) return Fail("mkdtemp failed");
      io.dir = tmpl;
    }
    io.dir = Absolute(io.dir);
    if (io.quick) {
      if (bench_ingest->count("--events") == 0) io.events = 200000;
      if (bench_ingest->count("--search-events") == 0) io.search_events = 1000000;
    }
    auto r = tandem::lab::BenchIngest(io);
    if (!r.ok()) return Fail(r.status().message());
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  lo.use_witnesses = !no_witnesses;
  lo.dir = Absolute(lo.dir);
  if (*up) {
    auto r = tandem::lab::Up(lo);
    if (!r.ok()) return Fail(r.status().message());
    std::cout << r->dump() << "\n";
    return 0;
  }
  if (*down) {
    auto st = tandem::lab::Down(lo.dir);
    return st.ok() ? 0 : Fail(st.message());
  }
  auto pid = tandem::lab::StartHost(lo.dir, host);
  if (!pid.ok()) return Fail(pid.status().message());
  std::cout << *pid << "\n";
  return 0;
}
