// tandem: everything besides the daemon and the operator CLI: the lab,
// benchmarks and the lab's demo service.
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "lab/bench.h"
#include "lab/lab.h"
#include "lab/store_tool.h"

namespace {

int Fail(const std::string& msg) {
  std::cerr << "tandem: " << msg << "\n";
  return 1;
}

std::string Absolute(const std::string& p) {
  return std::filesystem::absolute(p).lexically_normal().string();
}

}  // namespace

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
  bool no_witnesses = false;
  up->add_flag("--no-witnesses", no_witnesses,
               "with --netns: managed hosts run no witness (no indirect heartbeat)");
  auto* down = lab->add_subcommand("down", "stop everything the lab started");
  down->add_option("--dir", lo.dir, "lab directory")->required();
  auto* start = lab->add_subcommand("start", "(re)start one host's daemon");
  start->add_option("--dir", lo.dir, "lab directory")->required();
  start->add_option("--host", host, "primary | secondary")->required()
      ->check(CLI::IsMember({"primary", "secondary"}));

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
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
