#include "daemon/collector_host.h"

#include <utility>

namespace tandem::daemon {

using nlohmann::json;

void ReplBlockSink::Submit(repl::Write w, Done done) {
  service_.Submit(std::move(w), [done = std::move(done)](const Status& st) { done(st); });
}

void ReplBlockSink::Create(const std::string& path, Done done) {
  repl::Write w;
  w.op = repl::WriteOp::kCreate;
  w.path = path;
  Submit(std::move(w), std::move(done));
}

// The collector keeps one append per segment in flight, in order: an append
// at the end of the file is the write at `offset` (the volume's kAppend).
void ReplBlockSink::Append(const std::string& path, uint64_t /*offset*/,
                           std::vector<uint8_t> bytes, Done done) {
  repl::Write w;
  w.op = repl::WriteOp::kAppend;
  w.path = path;
  w.length = bytes.size();
  w.data = std::move(bytes);
  Submit(std::move(w), std::move(done));
}

void ReplBlockSink::Sync(const std::string& path, Done done) {
  repl::Write w;
  w.op = repl::WriteOp::kSync;
  w.path = path;
  Submit(std::move(w), std::move(done));
}

void ReplBlockSink::Truncate(const std::string& path, uint64_t size, Done done) {
  repl::Write w;
  w.op = repl::WriteOp::kTruncate;
  w.path = path;
  w.length = size;
  Submit(std::move(w), std::move(done));
}

void ReplBlockSink::Delete(const std::string& path, Done done) {
  repl::Write w;
  w.op = repl::WriteOp::kDelete;
  w.path = path;
  Submit(std::move(w), std::move(done));
}

namespace {
std::optional<uint16_t> Port(int p) {
  if (p <= 0) return std::nullopt;
  return static_cast<uint16_t>(p);
}
}  // namespace

collect::CollectorOptions CollectorOptionsFor(const config::Config& cfg, uint64_t generation) {
  const config::CollectorConfig& k = cfg.collector;
  collect::CollectorOptions o;
  o.listen_address = k.listen_address;
  o.syslog_udp_port = Port(k.syslog_udp_port);
  o.syslog_tcp_port = Port(k.syslog_tcp_port);
  o.relp_port = Port(k.relp_port);
  o.netflow_port = Port(k.netflow_port);
  o.store_dir = cfg.store_dir;
  o.writer = cfg.host_name;
  o.generation = generation;
  o.message_bytes_max = static_cast<size_t>(k.message_bytes_max);
  o.batch_ms = k.batch_ms;
  o.queue_bytes_max = static_cast<uint64_t>(k.queue_mb) << 20;
  o.capacity_stop_percent = static_cast<double>(k.capacity_stop_percent);
  o.capacity_resume_percent = static_cast<double>(k.capacity_resume_percent);
  o.retention_days = k.retention_days;
  o.retention_bytes = static_cast<uint64_t>(k.retention_gb) << 30;
  o.segment_bytes = static_cast<uint64_t>(k.segment_mb) << 20;
  o.segment_seconds = k.segment_seconds;
  o.tcp_connections_max = static_cast<size_t>(k.tcp_connections_max);
  o.status_file = k.status_file;
  return o;
}

CollectorHost::CollectorHost(const config::Config& cfg, repl::Service& repl)
    : cfg_(cfg), sink_(repl) {}

CollectorHost::~CollectorHost() {
  if (stopper_.joinable()) stopper_.join();
  Stop();
}

void CollectorHost::StopAsync(std::function<void()> done) {
  if (stopper_.joinable()) stopper_.join();
  stopper_ = std::thread([this, done = std::move(done)] {
    Stop();
    done();
  });
}

Status CollectorHost::Start(uint64_t generation) {
  if (stopper_.joinable()) stopper_.join();
  Stop();
  auto c = std::make_unique<collect::Collector>(CollectorOptionsFor(cfg_, generation), sink_);
  Status st = c->Start();
  std::lock_guard<std::mutex> g(mu_);
  if (!st.ok()) {
    last_error_ = st.message();
    return st;
  }
  last_error_.clear();
  collector_ = std::move(c);
  return Status::Ok();
}

void CollectorHost::Stop() {
  std::unique_ptr<collect::Collector> c;
  {
    std::lock_guard<std::mutex> g(mu_);
    c = std::move(collector_);
  }
  if (c) c->Stop();
}

bool CollectorHost::Running() const {
  std::lock_guard<std::mutex> g(mu_);
  return collector_ != nullptr;
}

json CollectorHost::StatusJson() const {
  std::lock_guard<std::mutex> g(mu_);
  json j = collector_ ? collector_->StatusJson() : json::object();
  j["enabled"] = true;
  j["running"] = collector_ != nullptr;
  j["last_error"] = last_error_;
  return j;
}

}  // namespace tandem::daemon
