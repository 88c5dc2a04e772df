#include "collect/collector.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <span>
#include <unordered_map>

#include "collect/framing.h"
#include "collect/netflow.h"
#include "collect/relp.h"
#include "collect/syslog.h"
#include "os/event_loop.h"
#include "store/records.h"
#include "store/search.h"
#include "store/segment.h"

namespace tandem::collect {

// ============================================================================
// FileBlockSink
// ============================================================================

namespace {

std::string ParentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

}  // namespace

FileBlockSink::FileBlockSink(os::FileSystem& fs, std::string root_dir, size_t queue_ops_max)
    : fs_(fs), root_(std::move(root_dir)), queue_ops_max_(std::max<size_t>(1, queue_ops_max)) {
  worker_ = std::thread([this] { Run(); });
}

FileBlockSink::~FileBlockSink() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void FileBlockSink::Create(const std::string& path, Done done) {
  Submit(Op{OpKind::kCreate, path, 0, {}, std::move(done)});
}
void FileBlockSink::Append(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes,
                           Done done) {
  Submit(Op{OpKind::kAppend, path, offset, std::move(bytes), std::move(done)});
}
void FileBlockSink::Sync(const std::string& path, Done done) {
  Submit(Op{OpKind::kSync, path, 0, {}, std::move(done)});
}
void FileBlockSink::Truncate(const std::string& path, uint64_t size, Done done) {
  Submit(Op{OpKind::kTruncate, path, size, {}, std::move(done)});
}
void FileBlockSink::Delete(const std::string& path, Done done) {
  Submit(Op{OpKind::kDelete, path, 0, {}, std::move(done)});
}

void FileBlockSink::Submit(Op op) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return queue_.size() < queue_ops_max_ || stop_; });
  queue_.push_back(std::move(op));
  l.unlock();
  cv_.notify_all();
}

void FileBlockSink::Run() {
  for (;;) {
    std::deque<Op> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return !queue_.empty() || stop_; });
      if (queue_.empty() && stop_) return;
      batch.swap(queue_);
    }
    cv_.notify_all();  // room in the queue again
    RunBatch(batch);
  }
}

// Applies the batch in order; appends are made durable together at the end
// (one fdatasync per file), then every `done` is called.
void FileBlockSink::RunBatch(std::deque<Op>& batch) {
  std::map<std::string, bool> dirty;  // path -> written since its last sync
  std::vector<Status> results;
  results.reserve(batch.size());
  for (Op& op : batch) results.push_back(Apply(op, &dirty));
  std::map<std::string, Status> sync_result;
  for (auto& [path, is_dirty] : dirty) {
    if (!is_dirty) continue;
    auto it = files_.find(path);
    Status st = it == files_.end() ? Status::Error(path + ": file vanished before sync")
                                   : it->second->Sync();
    ++syncs_;
    sync_result.emplace(path, st);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    Op& op = batch[i];
    if (op.kind == OpKind::kAppend && results[i].ok()) {
      auto it = sync_result.find(op.path);
      if (it != sync_result.end() && !it->second.ok()) results[i] = it->second;
    }
    if (op.done) op.done(results[i]);
  }
}

Result<os::File*> FileBlockSink::FileFor(const std::string& path, bool create) {
  auto it = files_.find(path);
  if (it != files_.end()) return it->second.get();
  if (files_.size() >= kOpenFilesMax) {
    // Bounded cache: close them all. Apply has synced this batch's dirty
    // files before calling us in that case, so no sync is lost.
    files_.clear();
  }
  auto f = fs_.Open(Full(path), create);
  if (!f.ok()) return f.status();
  os::File* raw = f.value().get();
  files_.emplace(path, std::move(f.value()));
  return raw;
}

Status FileBlockSink::Apply(Op& op, std::map<std::string, bool>* dirty) {
  // Operations other than Append are durable on their own: first make this
  // path's earlier appends durable, so that order holds on a crash.
  auto flush_dirty = [&]() -> Status {
    auto d = dirty->find(op.path);
    if (d == dirty->end() || !d->second) return Status::Ok();
    d->second = false;
    auto it = files_.find(op.path);
    if (it == files_.end()) return Status::Ok();
    ++syncs_;
    return it->second->Sync();
  };
  if (files_.size() >= kOpenFilesMax && files_.find(op.path) == files_.end()) {
    // Make room: sync whatever this batch wrote before closing files.
    for (auto& [p, is_dirty] : *dirty) {
      auto it = files_.find(p);
      if (is_dirty && it != files_.end()) {
        ++syncs_;
        Status st = it->second->Sync();
        if (!st.ok()) return st.Prefix("sync before close: ");
      }
      is_dirty = false;
    }
  }
  switch (op.kind) {
    case OpKind::kCreate: {
      TANDEM_RETURN_IF_ERROR(fs_.MakeDirs(ParentDir(Full(op.path))));
      auto f = FileFor(op.path, /*create=*/true);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR(f.value()->Truncate(0));
      ++syncs_;
      TANDEM_RETURN_IF_ERROR(f.value()->Sync());
      return fs_.SyncDir(ParentDir(Full(op.path)));
    }
    case OpKind::kAppend: {
      auto f = FileFor(op.path, /*create=*/false);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR(f.value()->WriteAt(op.offset, op.bytes));
      (*dirty)[op.path] = true;
      return Status::Ok();
    }
    case OpKind::kSync: {
      TANDEM_RETURN_IF_ERROR(flush_dirty());
      auto f = FileFor(op.path, /*create=*/false);
      if (!f.ok()) return f.status();
      ++syncs_;
      return f.value()->Sync();
    }
    case OpKind::kTruncate: {
      TANDEM_RETURN_IF_ERROR(flush_dirty());
      auto f = FileFor(op.path, /*create=*/false);
      if (!f.ok()) return f.status();
      TANDEM_RETURN_IF_ERROR(f.value()->Truncate(op.offset));
      ++syncs_;
      return f.value()->Sync();
    }
    case OpKind::kDelete: {
      dirty->erase(op.path);
      files_.erase(op.path);
      TANDEM_RETURN_IF_ERROR(fs_.Remove(Full(op.path)));
      return fs_.SyncDir(ParentDir(Full(op.path)));
    }
  }
  return Status::Error("unknown sink operation");
}

// ============================================================================
// Collector
// ============================================================================

Result<double> StatvfsUsedPercent(const std::string& store_dir) {
  struct statvfs sv {};
  if (::statvfs(store_dir.c_str(), &sv) != 0) {
    return Status::Error("statvfs " + store_dir + ": " + std::strerror(errno));
  }
  const double used = static_cast<double>(sv.f_blocks - sv.f_bfree);
  const double avail = static_cast<double>(sv.f_bavail);
  if (used + avail <= 0) return 0.0;
  return 100.0 * used / (used + avail);
}

namespace {

enum ListenerIndex : int { kUdp = 0, kTcp = 1, kRelp = 2, kFlow = 3, kListeners = 4 };
constexpr const char* kListenerNames[kListeners] = {"syslog_udp", "syslog_tcp", "relp", "netflow"};

// Reading limits per readiness event, so that one busy socket cannot starve
// the others (the loop is level-triggered: it comes back).
constexpr size_t kReadBytesMax = 64 * 1024;  // one read() / recvfrom()
constexpr int kReadsPerEventMax = 16;
constexpr size_t kUdpDatagramBytesMax = 65535;
constexpr int kListenBacklog = 128;
constexpr size_t kRetentionDeletesPerRoundMax = 1000;
constexpr int64_t kRetryAfterErrorMs = 1000;
// Segments of one kind queued behind the one being written (each holds
// records not yet durable; a sink slower than segment rotation backs up here).
constexpr size_t kSegmentsQueuedMax = 64;
// Approximate in-memory cost of one record beyond its encoded bytes, for the
// queue bound (the encoded size is measured exactly).
constexpr uint64_t kRecordOverheadBytes = 64;

int64_t WallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string PeerString(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

// A bound, non-blocking socket; *bound gets the port actually bound.
Result<int> BindSocket(const std::string& address, uint16_t port, bool tcp, uint16_t* bound) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, address.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    return Status::Error("listen_address '" + address + "' is not an IP address");
  }
  const std::string what =
      std::string(tcp ? "tcp " : "udp ") + address + ":" + std::to_string(port);
  int fd = ::socket(ss.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
  if (fd < 0) return Status::Error(Errno("socket " + what));
  int one = 1;
  if (tcp) (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (!tcp) {
    int rcvbuf = 4 << 20;  // best effort: absorbs bursts while a block is written
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    Status st = Status::Error(Errno("bind " + what));
    ::close(fd);
    return st;
  }
  if (tcp && ::listen(fd, kListenBacklog) != 0) {
    Status st = Status::Error(Errno("listen " + what));
    ::close(fd);
    return st;
  }
  sockaddr_storage got{};
  socklen_t got_len = sizeof(got);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &got_len) != 0) {
    Status st = Status::Error(Errno("getsockname " + what));
    ::close(fd);
    return st;
  }
  *bound = ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
  return fd;
}

struct ListenerStats {
  std::atomic<uint64_t> received{0};       // messages (UDP: datagrams) taken in
  std::atomic<uint64_t> bytes{0};          // bytes read from the sockets
  std::atomic<uint64_t> parsed_raw{0};     // events kept raw (neither RFC)
  std::atomic<uint64_t> truncated{0};      // messages cut at message_bytes_max
  std::atomic<uint64_t> udp_dropped{0};    // datagrams dropped (queue full / store full)
  std::atomic<uint64_t> framing_errors{0}; // bad frames, bad datagrams, RELP protocol errors
  std::atomic<uint64_t> connections{0};    // accepted and kept
  std::atomic<uint64_t> connections_rejected{0};  // closed at once (tcp_connections_max)
  std::atomic<uint64_t> relp_acked{0};
  std::atomic<uint64_t> relp_nacked{0};
  std::atomic<uint64_t> flows{0};          // flow records decoded
};

}  // namespace

class Collector::Impl {
 public:
  Impl(const CollectorOptions& o, BlockSink& sink)
      : o_(o), sink_(sink), fs_(o.fs != nullptr ? *o.fs : os::RealFileSystem()) {
    for (int& fd : listen_fd_) fd = -1;
  }
  ~Impl() { CloseAll(); }

  Status Validate() const;
  Status Bind(uint16_t bound[kListeners]);
  Status ScanStore();
  void ThreadMain();
  void RequestStop() {
    std::lock_guard<std::mutex> l(mailbox_->mu);
    if (mailbox_->loop != nullptr) mailbox_->loop->Post([this] { BeginStop(); });
  }
  nlohmann::json Json() const;
  void CloseAll();
  // Creates the loop (before the thread starts, so that Post always works).
  void CreateLoop() {
    loop_ = std::make_unique<os::EventLoop>();
    std::lock_guard<std::mutex> l(mailbox_->mu);
    mailbox_->loop = loop_.get();
  }

 private:
  struct Waiter {
    uint64_t conn_id;
    RelpTxnr txnr;
  };
  // One open segment and the records added to it that were not handed out.
  struct OpenSeg {
    std::optional<store::SegmentWriter> w;
    std::string path;
    bool created = false;
    bool header_sent = false;
    bool full = false;  // at segment_bytes or segment_seconds: takes no more records
    uint64_t file_bytes = 0;  // bytes handed to the sink
    int64_t opened_ms = 0;
    std::vector<Waiter> waiters;
    uint64_t unsent_bytes = 0;
  };
  struct Stream {
    explicit Stream(store::SegmentKind k) : kind(k) {}
    store::SegmentKind kind;
    // Front: the one being written to the sink; back: the one taking
    // records. Bounded by kSegmentsQueuedMax (and by the queue bound).
    std::deque<std::unique_ptr<OpenSeg>> segs;
    bool busy = false;
    bool flush_due = false;
    bool timer_armed = false;
    int64_t retry_after_ms = 0;
    uint64_t next_seq = 0;
  };
  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    int listener = kTcp;
    std::string peer;
    std::unique_ptr<SyslogStreamFramer> framer;
    FramerCounters seen;
    std::unique_ptr<RelpSession> relp;
    std::string out;
    uint32_t interest = 0;
  };
  struct Mailbox {
    std::mutex mu;
    os::EventLoop* loop = nullptr;
  };

  // Turns a sink callback (any thread) into a task on the loop; dropped if
  // the loop has ended.
  BlockSink::Done Later(std::function<void(tandem::Status)> fn) {
    std::shared_ptr<Mailbox> mb = mailbox_;
    return [mb, fn = std::move(fn)](tandem::Status st) {
      std::lock_guard<std::mutex> l(mb->mu);
      if (mb->loop != nullptr) mb->loop->Post([fn, st] { fn(st); });
    };
  }

  void Setup();
  void OnListenerReadable(int li);
  void OnUdp(int li);
  void OnAccept(int li);
  void OnConn(uint64_t id, uint32_t events);
  void ReadConn(Conn& c);
  void FeedRelp(Conn& c, std::span<const uint8_t> bytes);
  void WriteConn(Conn& c);
  void CloseConn(uint64_t id);
  void UpdateInterest(Conn& c);
  void UpdateAllInterest();
  bool Paused() const { return queue_bytes_.load() > o_.queue_bytes_max; }

  void HandleSyslog(int li, std::string_view msg, bool truncated, const std::string& sender,
                    std::optional<Waiter> waiter, int64_t now_us);
  tandem::Status AddEvent(const store::EventRecord& e, std::optional<Waiter> waiter);
  tandem::Status AddFlow(const store::FlowRecord& f);
  tandem::Status EnsureSegment(Stream& s);
  void Added(Stream& s, uint64_t before, std::optional<Waiter> waiter);
  void Pump(Stream& s);
  void OnAppended(Stream& s, OpenSeg* seg, std::vector<Waiter> waiters, uint64_t unsent,
                  uint64_t bytes, uint64_t records, bool sealed, tandem::Status st);
  void AbandonFront(Stream& s, const tandem::Status& why);
  void Ack(const Waiter& w);
  void Nack(const Waiter& w, std::string_view why);
  void Error(const std::string& e);

  void Tick();
  void CheckCapacity();
  void RunRetention();
  void StartRecovery();
  void RecoveryDone(const std::string& path, tandem::Status st, bool sealed);
  void BeginStop();
  void MaybeFinishStop();
  void WriteStatusFile();

  const CollectorOptions& o_;
  BlockSink& sink_;
  os::FileSystem& fs_;
  std::unique_ptr<os::EventLoop> loop_;
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();

  int listen_fd_[kListeners];
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_conn_id_ = 1;
  uint64_t feeding_conn_ = 0;  // the RELP connection inside FeedRelp (0: none)
  FlowDecoder flow_decoder_;
  std::vector<store::FlowRecord> flows_scratch_;
  store::EventRecord event_scratch_;
  std::vector<uint8_t> read_buf_ = std::vector<uint8_t>(kUdpDatagramBytesMax + 1);
  std::vector<RelpMessage> relp_scratch_;

  Stream events_{store::SegmentKind::kEvents};
  Stream flows_{store::SegmentKind::kFlows};
  bool stopping_ = false;
  bool was_paused_ = false;
  bool capacity_stopped_ = false;
  os::EventLoop::TimerId stop_timer_ = 0;
  int64_t last_retention_ms_ = 0;
  struct Recover {
    std::string path;  // relative
    store::Recovery r;
  };
  std::vector<Recover> to_recover_;
  std::vector<std::string> recovering_;

  // Status (read by other threads).
  ListenerStats stats_[kListeners];
  std::atomic<uint64_t> queue_bytes_{0};
  std::atomic<uint64_t> bytes_written_{0}, appends_{0}, append_errors_{0};
  std::atomic<uint64_t> records_written_{0}, records_lost_{0}, record_errors_{0};
  std::atomic<uint64_t> segments_created_{0}, segments_sealed_{0}, segments_deleted_{0};
  std::atomic<uint64_t> segments_recovered_{0}, recovery_pending_{0}, torn_bytes_cut_{0};
  std::atomic<uint64_t> tcp_open_{0};
  std::atomic<bool> running_{false};
  std::atomic<bool> cap_stopped_pub_{false};
  std::atomic<double> used_percent_{-1};
  mutable std::mutex text_mu_;
  std::string capacity_reason_;  // GUARDED_BY(text_mu_)
  std::string last_error_;       // GUARDED_BY(text_mu_)
};

tandem::Status Collector::Impl::Validate() const {
  TANDEM_RETURN_IF_ERROR(store::ValidateWriterName(o_.writer).Prefix("collector writer: "));
  if (o_.store_dir.empty()) return tandem::Status::Error("collector: store_dir is empty");
  if (o_.message_bytes_max < kSyslogMessageBytesMin ||
      o_.message_bytes_max > store::kStringBytesMax) {
    return tandem::Status::Error("collector: message_bytes_max must be in [" +
                                 std::to_string(kSyslogMessageBytesMin) + ", " +
                                 std::to_string(store::kStringBytesMax) + "]");
  }
  if (o_.batch_ms < 0 || o_.batch_ms > 10'000) {
    return tandem::Status::Error("collector: batch_ms must be in [0, 10000]");
  }
  if (o_.queue_bytes_max == 0) return tandem::Status::Error("collector: queue_bytes_max is 0");
  if (!(o_.capacity_resume_percent < o_.capacity_stop_percent)) {
    return tandem::Status::Error("collector: capacity_resume_percent must be below stop percent");
  }
  if (o_.segment_bytes < 4096 || o_.segment_seconds <= 0) {
    return tandem::Status::Error("collector: segment_bytes >= 4096 and segment_seconds > 0");
  }
  if (o_.tcp_connections_max == 0 || o_.relp_window_max == 0) {
    return tandem::Status::Error("collector: tcp_connections_max and relp_window_max > 0");
  }
  if (o_.capacity_check_ms <= 0 || o_.retention_interval_ms <= 0 || o_.stop_timeout_ms < 0) {
    return tandem::Status::Error("collector: housekeeping intervals must be positive");
  }
  return tandem::Status::Ok();
}

tandem::Status Collector::Impl::Bind(uint16_t bound[kListeners]) {
  const std::optional<uint16_t> ports[kListeners] = {o_.syslog_udp_port, o_.syslog_tcp_port,
                                                     o_.relp_port, o_.netflow_port};
  for (int i = 0; i < kListeners; ++i) {
    if (!ports[i].has_value()) continue;
    const bool tcp = i == kTcp || i == kRelp;
    auto fd = BindSocket(o_.listen_address, *ports[i], tcp, &bound[i]);
    if (!fd.ok()) {
      CloseAll();
      for (int j = 0; j < kListeners; ++j) bound[j] = 0;
      return fd.status().Prefix(std::string("collector ") + kListenerNames[i] + ": ");
    }
    listen_fd_[i] = fd.value();
  }
  return tandem::Status::Ok();
}

// Next seq per kind for this writer + generation, and the unsealed segments
// (any writer: only the active host writes the volume, so an unsealed
// segment found at start belongs to a writer that is gone).
tandem::Status Collector::Impl::ScanStore() {
  to_recover_.clear();
  for (Stream* s : {&events_, &flows_}) {
    const std::string dir = o_.store_dir + "/" + std::string(store::KindDir(s->kind));
    auto files = fs_.ListFiles(dir);
    if (!files.ok()) return files.status().Prefix("collector: ");
    for (const std::string& f : files.value()) {
      auto name = store::ParseSegmentFileName(s->kind, f);
      if (!name) continue;
      if (name->writer == o_.writer && name->generation == o_.generation) {
        s->next_seq = std::max(s->next_seq, name->seq + 1);
      }
      const std::string rel = std::string(store::KindDir(s->kind)) + "/" + f;
      bool bad_format = false;
      auto reader = store::SegmentReader::Open(fs_, o_.store_dir + "/" + rel, &bad_format);
      if (reader.ok() && reader->sealed()) continue;
      if (!reader.ok() && !bad_format) return reader.status().Prefix("collector: ");
      auto rec = store::RecoverSegment(fs_, o_.store_dir + "/" + rel);
      if (!rec.ok()) return rec.status().Prefix("collector: ");
      if (rec->sealed) continue;
      to_recover_.push_back(Recover{rel, std::move(rec.value())});
    }
  }
  if (events_.next_seq > store::kSeqMax || flows_.next_seq > store::kSeqMax) {
    return tandem::Status::Error("collector: segment seq space exhausted for this generation");
  }
  return tandem::Status::Ok();
}

void Collector::Impl::CloseAll() {
  for (auto& [id, c] : conns_) {
    if (loop_) loop_->RemoveFd(c->fd);
    ::close(c->fd);
  }
  conns_.clear();
  tcp_open_ = 0;
  for (int& fd : listen_fd_) {
    if (fd < 0) continue;
    if (loop_) loop_->RemoveFd(fd);
    ::close(fd);
    fd = -1;
  }
}

void Collector::Impl::ThreadMain() {
  Setup();
  running_ = true;
  loop_->Run();
  running_ = false;
  {
    std::lock_guard<std::mutex> l(mailbox_->mu);
    mailbox_->loop = nullptr;
  }
  CloseAll();
}

void Collector::Impl::Setup() {
  for (int i = 0; i < kListeners; ++i) {
    if (listen_fd_[i] < 0) continue;
    tandem::Status st =
        loop_->AddFd(listen_fd_[i], EPOLLIN, [this, i](uint32_t) { OnListenerReadable(i); });
    if (!st.ok()) Error(st.message());
  }
  last_retention_ms_ = loop_->clock().NowMs();
  StartRecovery();
  CheckCapacity();
  loop_->AddTimer(o_.capacity_check_ms, [this] { Tick(); });
}

// ---- Receiving --------------------------------------------------------------

void Collector::Impl::OnListenerReadable(int li) {
  if (li == kUdp || li == kFlow) {
    OnUdp(li);
  } else {
    OnAccept(li);
  }
}

void Collector::Impl::OnUdp(int li) {
  ListenerStats& st = stats_[li];
  for (int n = 0; n < kReadsPerEventMax * 4; ++n) {
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    ssize_t got = ::recvfrom(listen_fd_[li], read_buf_.data(), read_buf_.size(), 0,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) Error(Errno("recvfrom"));
      return;
    }
    st.bytes += static_cast<uint64_t>(got);
    if (stopping_ || Paused() || capacity_stopped_) {
      st.received++;
      st.udp_dropped++;
      continue;
    }
    const std::span<const uint8_t> dgram(read_buf_.data(), static_cast<size_t>(got));
    const std::string sender = PeerString(from);
    const int64_t now_us = WallUs();
    if (li == kUdp) {
      DatagramMessage m = FrameDatagram(dgram, o_.message_bytes_max);
      HandleSyslog(li, m.message, m.truncated, sender, std::nullopt, now_us);
      continue;
    }
    st.received++;
    flows_scratch_.clear();
    tandem::Status ds = flow_decoder_.Decode(dgram, sender, now_us, &flows_scratch_);
    if (!ds.ok()) {
      st.framing_errors++;
      continue;
    }
    for (const store::FlowRecord& f : flows_scratch_) {
      st.flows++;
      if (!AddFlow(f).ok()) record_errors_++;
    }
  }
}

void Collector::Impl::OnAccept(int li) {
  for (int n = 0; n < kReadsPerEventMax; ++n) {
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    int fd = ::accept4(listen_fd_[li], reinterpret_cast<sockaddr*>(&from), &from_len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) Error(Errno("accept"));
      return;
    }
    if (stopping_ || conns_.size() >= o_.tcp_connections_max) {
      stats_[li].connections_rejected++;
      ::close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->id = next_conn_id_++;
    c->fd = fd;
    c->listener = li;
    c->peer = PeerString(from);
    Conn* raw = c.get();
    if (li == kTcp) {
      c->framer = std::make_unique<SyslogStreamFramer>(
          o_.message_bytes_max, [this, raw](std::string_view msg, bool truncated) {
            HandleSyslog(kTcp, msg, truncated, raw->peer, std::nullopt, WallUs());
          });
    } else {
      RelpLimits lim;
      lim.data_bytes_max = std::max(lim.data_bytes_max, o_.message_bytes_max);
      lim.window_max = o_.relp_window_max;
      c->relp = std::make_unique<RelpSession>(lim);
    }
    const uint64_t id = c->id;
    tandem::Status st = loop_->AddFd(fd, 0, [this, id](uint32_t ev) { OnConn(id, ev); });
    if (!st.ok()) {
      Error(st.message());
      ::close(fd);
      continue;
    }
    conns_.emplace(id, std::move(c));
    stats_[li].connections++;
    tcp_open_ = conns_.size();
    UpdateInterest(*raw);
  }
}

void Collector::Impl::UpdateInterest(Conn& c) {
  bool read = !stopping_ && !Paused();
  if (c.relp) {
    read = read && c.relp->want_read();
  } else {
    read = read && !capacity_stopped_;
  }
  uint32_t want = (read ? EPOLLIN : 0u) | (c.out.empty() ? 0u : EPOLLOUT);
  if (want == c.interest) return;
  c.interest = want;
  tandem::Status st = loop_->ModifyFd(c.fd, want);
  if (!st.ok()) Error(st.message());
}

void Collector::Impl::UpdateAllInterest() {
  for (auto& [id, c] : conns_) UpdateInterest(*c);
}

void Collector::Impl::OnConn(uint64_t id, uint32_t events) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (events & EPOLLOUT) {
    WriteConn(c);
    if (conns_.find(id) == conns_.end()) return;
  }
  if ((events & (EPOLLHUP | EPOLLERR)) && !(c.interest & EPOLLIN)) {
    CloseConn(id);  // reset or hung up while back-pressured: nothing more can come
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadConn(c);
}

void Collector::Impl::ReadConn(Conn& c) {
  const uint64_t id = c.id;
  ListenerStats& st = stats_[c.listener];
  for (int n = 0; n < kReadsPerEventMax; ++n) {
    if (!(c.interest & EPOLLIN)) return;  // back-pressure began during this event
    ssize_t got = ::read(c.fd, read_buf_.data(), kReadBytesMax);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (got <= 0) {  // EOF or error
      if (c.framer) c.framer->Finish();
      CloseConn(id);
      return;
    }
    st.bytes += static_cast<uint64_t>(got);
    const std::span<const uint8_t> bytes(read_buf_.data(), static_cast<size_t>(got));
    if (c.framer) {
      c.framer->Feed(bytes);
      const FramerCounters& fc = c.framer->counters();
      st.framing_errors += fc.framing_errors - c.seen.framing_errors;
      c.seen = fc;
      UpdateInterest(c);
    } else {
      FeedRelp(c, bytes);
      if (conns_.find(id) == conns_.end()) return;
    }
  }
}

void Collector::Impl::FeedRelp(Conn& c, std::span<const uint8_t> bytes) {
  relp_scratch_.clear();
  tandem::Status fs = c.relp->Feed(bytes, &relp_scratch_);
  if (!fs.ok()) {
    stats_[kRelp].framing_errors++;
    Error("relp " + c.peer + ": " + fs.message());
  }
  const int64_t now_us = WallUs();
  feeding_conn_ = c.id;  // Ack/Nack below must not write (and maybe close) c
  for (RelpMessage& m : relp_scratch_) {
    const Waiter w{c.id, m.txnr};
    if (capacity_stopped_ || stopping_) {
      stats_[kRelp].received++;
      Nack(w, capacity_stopped_ ? "store full" : "collector stopping");
      continue;
    }
    const std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(m.data.data()),
                                        m.data.size());
    DatagramMessage dm = FrameDatagram(data, o_.message_bytes_max);
    HandleSyslog(kRelp, dm.message, dm.truncated, c.peer, w, now_us);
  }
  feeding_conn_ = 0;
  WriteConn(c);
}

void Collector::Impl::WriteConn(Conn& c) {
  if (c.relp) c.out += c.relp->TakeOutput();
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    if (n <= 0) {
      CloseConn(c.id);
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.relp && c.relp->closed() && c.out.empty()) {
    CloseConn(c.id);
    return;
  }
  UpdateInterest(c);
}

void Collector::Impl::CloseConn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  loop_->RemoveFd(it->second->fd);
  ::close(it->second->fd);
  conns_.erase(it);  // waiters naming it are skipped when their block is durable
  tcp_open_ = conns_.size();
}

void Collector::Impl::HandleSyslog(int li, std::string_view msg, bool truncated,
                                   const std::string& sender, std::optional<Waiter> waiter,
                                   int64_t now_us) {
  ListenerStats& st = stats_[li];
  st.received++;
  ParseSyslogInto(msg, now_us, sender, &event_scratch_);
  event_scratch_.truncated = truncated;
  if (truncated) st.truncated++;
  if (event_scratch_.format == store::EventFormat::kRaw) st.parsed_raw++;
  tandem::Status as = AddEvent(event_scratch_, waiter);
  if (!as.ok()) {
    record_errors_++;
    Error("event not stored: " + as.message());
    if (waiter) Nack(*waiter, "not stored: " + as.message());
  }
}

// ---- Segments ---------------------------------------------------------------

tandem::Status Collector::Impl::EnsureSegment(Stream& s) {
  if (!s.segs.empty() && !s.segs.back()->full) return tandem::Status::Ok();
  if (s.segs.size() >= kSegmentsQueuedMax) {
    return tandem::Status::Error("too many segments waiting to be written");
  }
  if (s.next_seq > store::kSeqMax) return tandem::Status::Error("segment seq space exhausted");
  store::SegmentName name{s.kind, o_.writer, o_.generation, s.next_seq};
  auto w = store::SegmentWriter::Create(name, WallUs());
  if (!w.ok()) return w.status();
  ++s.next_seq;
  auto seg = std::make_unique<OpenSeg>();
  seg->path = w->path();
  seg->w.emplace(std::move(w.value()));
  seg->opened_ms = loop_->clock().NowMs();
  s.segs.push_back(std::move(seg));
  return tandem::Status::Ok();
}

tandem::Status Collector::Impl::AddEvent(const store::EventRecord& e,
                                         std::optional<Waiter> waiter) {
  TANDEM_RETURN_IF_ERROR(EnsureSegment(events_));
  store::SegmentWriter& w = *events_.segs.back()->w;
  const uint64_t before = w.size_bytes() + w.pending_bytes();
  TANDEM_RETURN_IF_ERROR(w.Add(e));
  Added(events_, before, waiter);
  return tandem::Status::Ok();
}

tandem::Status Collector::Impl::AddFlow(const store::FlowRecord& f) {
  TANDEM_RETURN_IF_ERROR(EnsureSegment(flows_));
  store::SegmentWriter& w = *flows_.segs.back()->w;
  const uint64_t before = w.size_bytes() + w.pending_bytes();
  TANDEM_RETURN_IF_ERROR(w.Add(f));
  Added(flows_, before, std::nullopt);
  return tandem::Status::Ok();
}

// Accounts a record just added to the back segment; a segment that reached
// segment_bytes takes no more records (the next one opens behind it).
void Collector::Impl::Added(Stream& s, uint64_t before, std::optional<Waiter> waiter) {
  OpenSeg& seg = *s.segs.back();
  const uint64_t after = seg.w->size_bytes() + seg.w->pending_bytes();
  const uint64_t cost = (after > before ? after - before : 0) + kRecordOverheadBytes;
  seg.unsent_bytes += cost;
  queue_bytes_ += cost;
  if (waiter) seg.waiters.push_back(*waiter);
  if (after + store::kIndexHeaderBytes + store::kTrailerBytes +
          store::kIndexEntryBytes * (seg.w->blocks() + 1) >=
      o_.segment_bytes) {
    seg.full = true;
  }
  if (!s.timer_armed) {
    s.timer_armed = true;
    loop_->AddTimer(o_.batch_ms, [this, &s] {
      s.timer_armed = false;
      s.flush_due = true;
      Pump(s);
    });
  }
  if (seg.full || seg.w->BlockReady()) Pump(s);
  if (Paused() && !was_paused_) {
    was_paused_ = true;
    UpdateAllInterest();
  }
}

// Issues the stream's next sink operation, if any: at most one in flight,
// always for the front segment (Create, then appends, then the seal once it
// is full; then the next segment).
void Collector::Impl::Pump(Stream& s) {
  if (s.busy || s.segs.empty()) return;
  const int64_t now_ms = loop_->clock().NowMs();
  if (now_ms < s.retry_after_ms) return;  // Tick pumps again
  OpenSeg* seg = s.segs.front().get();
  if (!seg->created) {
    s.busy = true;
    sink_.Create(seg->path, Later([this, &s, seg](tandem::Status st) {
                   s.busy = false;
                   if (!s.segs.empty() && s.segs.front().get() == seg) {
                     if (st.ok()) {
                       seg->created = true;
                       segments_created_++;
                     } else {
                       AbandonFront(s, st);
                     }
                   }
                   Pump(s);
                   MaybeFinishStop();
                 }));
    return;
  }
  store::SegmentWriter& w = *seg->w;
  if (!seg->full && now_ms - seg->opened_ms >= o_.segment_seconds * 1000) seg->full = true;
  const bool seal = seg->full;
  const bool flush = s.flush_due || w.BlockReady() || stopping_ || s.segs.size() > 1;
  if (!seal && !(flush && w.pending_records() > 0)) return;
  std::vector<uint8_t> bytes;
  if (!seg->header_sent) bytes = w.Header();
  const uint64_t records = w.pending_records();
  std::vector<uint8_t> body = seal ? w.Seal() : w.TakeBlock();
  bytes.insert(bytes.end(), body.begin(), body.end());
  seg->header_sent = true;
  const uint64_t offset = seg->file_bytes;
  seg->file_bytes += bytes.size();
  auto waiters = std::make_shared<std::vector<Waiter>>(std::move(seg->waiters));
  seg->waiters.clear();
  const uint64_t unsent = seg->unsent_bytes;
  seg->unsent_bytes = 0;
  if (s.segs.size() == 1) s.flush_due = false;
  s.busy = true;
  const uint64_t n = bytes.size();
  sink_.Append(seg->path, offset, std::move(bytes),
               Later([this, &s, seg, waiters, unsent, n, records, seal](tandem::Status st) {
                 OnAppended(s, seg, std::move(*waiters), unsent, n, records, seal, st);
               }));
}

void Collector::Impl::OnAppended(Stream& s, OpenSeg* seg, std::vector<Waiter> waiters,
                                 uint64_t unsent, uint64_t bytes, uint64_t records, bool sealed,
                                 tandem::Status st) {
  s.busy = false;
  queue_bytes_ -= std::min<uint64_t>(unsent, queue_bytes_.load());
  appends_++;
  const bool front = !s.segs.empty() && s.segs.front().get() == seg;
  if (st.ok()) {
    bytes_written_ += bytes;
    records_written_ += records;
    for (const Waiter& w : waiters) Ack(w);
    if (sealed) {
      segments_sealed_++;
      if (front) s.segs.pop_front();
    }
  } else {
    append_errors_++;
    Error("append failed: " + st.message());
    records_lost_ += records;
    for (const Waiter& w : waiters) Nack(w, "store write failed");
    // The segment's file may now end with a hole or torn bytes; nothing more
    // goes into it (recovery cuts it on the next start).
    if (front) AbandonFront(s, st);
  }
  if (was_paused_ && !Paused()) {
    was_paused_ = false;
    UpdateAllInterest();
  }
  Pump(s);
  MaybeFinishStop();
}

void Collector::Impl::AbandonFront(Stream& s, const tandem::Status& why) {
  OpenSeg& seg = *s.segs.front();
  Error("segment " + seg.path + " abandoned: " + why.message());
  queue_bytes_ -= std::min<uint64_t>(seg.unsent_bytes, queue_bytes_.load());
  records_lost_ += seg.w->pending_records();
  std::vector<Waiter> waiters = std::move(seg.waiters);
  s.segs.pop_front();
  for (const Waiter& w : waiters) Nack(w, "store write failed");
  s.retry_after_ms = loop_->clock().NowMs() + kRetryAfterErrorMs;
  if (was_paused_ && !Paused()) {
    was_paused_ = false;
    UpdateAllInterest();
  }
}

void Collector::Impl::Ack(const Waiter& w) {
  auto it = conns_.find(w.conn_id);
  if (it == conns_.end() || !it->second->relp) return;
  Conn& c = *it->second;
  if (!c.relp->closed()) {
    c.relp->Ack(w.txnr);
    stats_[kRelp].relp_acked++;
  }
  if (c.id != feeding_conn_) WriteConn(c);
}

void Collector::Impl::Nack(const Waiter& w, std::string_view why) {
  auto it = conns_.find(w.conn_id);
  if (it == conns_.end() || !it->second->relp) return;
  Conn& c = *it->second;
  if (!c.relp->closed()) {
    c.relp->Nack(w.txnr, why);
    stats_[kRelp].relp_nacked++;
  }
  if (c.id != feeding_conn_) WriteConn(c);
}

void Collector::Impl::Error(const std::string& e) {
  std::lock_guard<std::mutex> l(text_mu_);
  last_error_ = e;
}

// ---- Housekeeping -----------------------------------------------------------

void Collector::Impl::Tick() {
  CheckCapacity();
  for (Stream* s : {&events_, &flows_}) {
    if (!s->segs.empty()) s->flush_due = true;  // Pump also seals by age
    Pump(*s);
  }
  const int64_t now_ms = loop_->clock().NowMs();
  if (now_ms - last_retention_ms_ >= o_.retention_interval_ms) {
    last_retention_ms_ = now_ms;
    RunRetention();
  }
  WriteStatusFile();
  if (!stopping_) loop_->AddTimer(o_.capacity_check_ms, [this] { Tick(); });
}

void Collector::Impl::CheckCapacity() {
  auto used = o_.capacity_probe ? o_.capacity_probe(o_.store_dir) : StatvfsUsedPercent(o_.store_dir);
  if (!used.ok()) {
    Error("capacity check: " + used.status().message());
    return;
  }
  const double pct = used.value();
  used_percent_ = pct;
  bool changed = false;
  if (!capacity_stopped_ && pct >= o_.capacity_stop_percent) {
    capacity_stopped_ = true;
    changed = true;
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "store file system %.1f%% used >= capacity_stop_percent %.1f%%; resumes below "
                  "%.1f%%",
                  pct, o_.capacity_stop_percent, o_.capacity_resume_percent);
    std::lock_guard<std::mutex> l(text_mu_);
    capacity_reason_ = buf;
  } else if (capacity_stopped_ && pct < o_.capacity_resume_percent) {
    capacity_stopped_ = false;
    changed = true;
    std::lock_guard<std::mutex> l(text_mu_);
    capacity_reason_.clear();
  }
  cap_stopped_pub_ = capacity_stopped_;
  if (changed) UpdateAllInterest();
}

void Collector::Impl::RunRetention() {
  if (o_.retention_days <= 0 && o_.retention_bytes == 0) return;
  std::vector<std::string> open_paths = recovering_;
  for (Stream* s : {&events_, &flows_}) {
    for (const auto& seg : s->segs) open_paths.push_back(seg->path);
  }
  std::vector<store::SegmentInfo> listing;
  for (store::SegmentKind k : {store::SegmentKind::kEvents, store::SegmentKind::kFlows}) {
    auto l = store::ListSegments(fs_, o_.store_dir, k, open_paths);
    if (!l.ok()) {
      Error("retention: " + l.status().message());
      return;
    }
    listing.insert(listing.end(), l->begin(), l->end());
  }
  std::optional<int64_t> max_age;
  if (o_.retention_days > 0) max_age = o_.retention_days * 86'400LL * 1'000'000;
  std::optional<uint64_t> max_bytes;
  if (o_.retention_bytes > 0) max_bytes = o_.retention_bytes;
  std::vector<std::string> plan = store::RetentionPlan(listing, max_age, max_bytes, WallUs());
  if (plan.size() > kRetentionDeletesPerRoundMax) plan.resize(kRetentionDeletesPerRoundMax);
  for (const std::string& p : plan) {
    sink_.Delete(p, Later([this, p](tandem::Status st) {
                   if (st.ok()) {
                     segments_deleted_++;
                   } else {
                     Error("retention delete " + p + ": " + st.message());
                   }
                 }));
  }
}

// Cuts each unsealed segment found at Start to its valid length and seals it
// (a segment without a valid header is deleted). Paths differ from the ones
// the streams write (new seqs), so this runs alongside collection.
void Collector::Impl::StartRecovery() {
  for (Recover& rc : to_recover_) {
    const std::string path = rc.path;
    recovering_.push_back(path);
    recovery_pending_++;
    if (!rc.r.header) {
      sink_.Delete(path, Later([this, path](tandem::Status st) { RecoveryDone(path, st, false); }));
      continue;
    }
    auto w = store::SegmentWriter::Resume(*rc.r.header, rc.r.blocks, rc.r.valid_length);
    if (!w.ok()) {
      RecoveryDone(path, w.status(), false);
      continue;
    }
    auto seal = std::make_shared<std::vector<uint8_t>>(w->Seal());
    const uint64_t valid = rc.r.valid_length;
    torn_bytes_cut_ += rc.r.torn_bytes;
    sink_.Truncate(path, valid, Later([this, path, valid, seal](tandem::Status st) {
                     if (!st.ok()) {
                       RecoveryDone(path, st, false);
                       return;
                     }
                     sink_.Append(path, valid, std::move(*seal),
                                  Later([this, path](tandem::Status st2) {
                                    RecoveryDone(path, st2, true);
                                  }));
                   }));
  }
  to_recover_.clear();
}

void Collector::Impl::RecoveryDone(const std::string& path, tandem::Status st, bool sealed) {
  recovering_.erase(std::remove(recovering_.begin(), recovering_.end(), path), recovering_.end());
  recovery_pending_--;
  if (!st.ok()) {
    Error("recovery of " + path + ": " + st.message());
    return;
  }
  segments_recovered_++;
  if (sealed) segments_sealed_++;
  MaybeFinishStop();
}

void Collector::Impl::BeginStop() {
  if (stopping_) return;
  stopping_ = true;
  for (int li = 0; li < kListeners; ++li) {
    if (listen_fd_[li] < 0) continue;
    loop_->RemoveFd(listen_fd_[li]);
    ::close(listen_fd_[li]);
    listen_fd_[li] = -1;
  }
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Conn& c = *it->second;
    if (c.relp) {
      c.relp->ServerClose();
      WriteConn(c);  // closes once written
    } else {
      c.framer->Finish();  // keep a last line that had no trailer
      CloseConn(id);
    }
  }
  for (Stream* s : {&events_, &flows_}) Pump(*s);  // append what was received (no seal)
  stop_timer_ = loop_->AddTimer(o_.stop_timeout_ms, [this] {
    Error("stop: gave up waiting for in-flight appends");
    loop_->Stop();
  });
  MaybeFinishStop();
}

void Collector::Impl::MaybeFinishStop() {
  if (!stopping_) return;
  for (Stream* s : {&events_, &flows_}) {
    if (s->busy) return;
    if (loop_->clock().NowMs() < s->retry_after_ms) continue;  // failing sink: give up
    for (const auto& seg : s->segs) {
      if (seg->w->pending_records() > 0 || seg->full) return;  // flush / seal under way
    }
  }
  if (recovery_pending_.load() > 0) return;
  for (auto& [id, c] : conns_) {
    if (!c->out.empty()) return;  // serverclose still being written
  }
  loop_->CancelTimer(stop_timer_);
  loop_->Stop();
}

void Collector::Impl::WriteStatusFile() {
  if (o_.status_file.empty()) return;
  const std::string text = Json().dump(2) + "\n";
  tandem::Status st = os::WriteWholeFileAtomic(
      fs_, o_.status_file,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  if (!st.ok()) Error("status file: " + st.message());
}

nlohmann::json Collector::Impl::Json() const {
  nlohmann::json j;
  nlohmann::json listeners = nlohmann::json::object();
  for (int i = 0; i < kListeners; ++i) {
    const ListenerStats& s = stats_[i];
    nlohmann::json l = {{"received", s.received.load()},
                        {"bytes", s.bytes.load()},
                        {"truncated", s.truncated.load()},
                        {"framing_errors", s.framing_errors.load()}};
    if (i == kUdp || i == kFlow) l["udp_dropped"] = s.udp_dropped.load();
    if (i != kFlow) l["parsed_raw"] = s.parsed_raw.load();
    if (i == kFlow) l["flows"] = s.flows.load();
    if (i == kTcp || i == kRelp) {
      l["connections"] = s.connections.load();
      l["connections_rejected"] = s.connections_rejected.load();
    }
    if (i == kRelp) {
      l["acked"] = s.relp_acked.load();
      l["nacked"] = s.relp_nacked.load();
    }
    listeners[kListenerNames[i]] = l;
  }
  j["listeners"] = listeners;
  j["running"] = running_.load();
  j["connections_open"] = tcp_open_.load();
  j["store"] = {{"bytes_written", bytes_written_.load()},
                {"records_written", records_written_.load()},
                {"appends", appends_.load()},
                {"append_errors", append_errors_.load()},
                {"records_lost", records_lost_.load()},
                {"record_errors", record_errors_.load()},
                {"segments_created", segments_created_.load()},
                {"segments_sealed", segments_sealed_.load()},
                {"segments_deleted", segments_deleted_.load()},
                {"segments_recovered", segments_recovered_.load()},
                {"recovery_pending", recovery_pending_.load()},
                {"torn_bytes_cut", torn_bytes_cut_.load()}};
  const uint64_t q = queue_bytes_.load();
  j["queue"] = {{"bytes", q}, {"bytes_max", o_.queue_bytes_max}, {"full", q > o_.queue_bytes_max}};
  std::lock_guard<std::mutex> l(text_mu_);
  j["capacity"] = {{"state", cap_stopped_pub_.load() ? "stopped" : "ok"},
                   {"used_percent", used_percent_.load()},
                   {"stop_percent", o_.capacity_stop_percent},
                   {"resume_percent", o_.capacity_resume_percent},
                   {"reason", capacity_reason_}};
  j["last_error"] = last_error_;
  return j;
}

// ---- Collector --------------------------------------------------------------

Collector::Collector(CollectorOptions options, BlockSink& sink)
    : options_(std::move(options)), sink_(sink), impl_(std::make_unique<Impl>(options_, sink_)) {}

Collector::~Collector() { Stop(); }

Status Collector::Start() {
  std::lock_guard<std::mutex> l(stop_mu_);
  TANDEM_CHECK(!started_);
  TANDEM_RETURN_IF_ERROR(impl_->Validate());
  TANDEM_RETURN_IF_ERROR(impl_->ScanStore());
  TANDEM_RETURN_IF_ERROR(impl_->Bind(bound_));
  started_ = true;
  impl_->CreateLoop();
  thread_ = std::thread([this] { impl_->ThreadMain(); });
  return Status::Ok();
}

void Collector::Stop() {
  std::lock_guard<std::mutex> l(stop_mu_);
  if (!started_ || !thread_.joinable()) return;
  impl_->RequestStop();
  thread_.join();
}

nlohmann::json Collector::StatusJson() const { return impl_->Json(); }

}  // namespace tandem::collect
