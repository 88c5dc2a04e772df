#include "repl/service.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <random>

#include <openssl/rand.h>

#include "os/clock.h"
#include "os/event_loop.h"

namespace tandem::repl {

using nlohmann::json;

namespace {

constexpr int64_t kTickMs = 10;
constexpr int64_t kSnapshotMs = 200;
constexpr int64_t kSnapshotAfterWritesMs = 20;
constexpr size_t kReadChunk = Replica::kReceiveBytesMax;
constexpr size_t kHeaderLineMax = 8192;
constexpr int kVolumeClientsMax = 64;
// Threads syncing a group commit's files side by side (the replication
// thread is one of them), and starting a sync target's write-back. As many
// as the writers a busy store has (16 appenders: one round of fdatasyncs,
// not four); they wait on the disk, not the CPU. Measured on the lab VM:
// 23 files' fdatasyncs took 14 ms on 4 threads, 8 ms on 16.
constexpr size_t kIoThreads = 16;
static_assert(kIoThreads <= IoPool::kThreadsMax);
// A sync is pumped again as soon as the socket's queue is below this.
constexpr size_t kPumpBelowBacklog = 1024 * 1024;

uint64_t CryptoRandom() {
  uint64_t v = 0;
  TANDEM_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) == 1);
  return v;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Starts write-back of a byte range of a file (sync_file_range WRITE, which
// does not wait for it). Best effort: a hint, errors are ignored (the final
// fdatasync reports them).
void StartWriteback(const std::string& path, uint64_t offset, uint64_t length) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::sync_file_range(fd, static_cast<off64_t>(offset), static_cast<off64_t>(length),
                          SYNC_FILE_RANGE_WRITE);
  ::close(fd);
}

// Output queue of a non-blocking socket.
struct OutBuf {
  std::deque<std::vector<uint8_t>> chunks;
  size_t offset = 0;  // into chunks.front()
  size_t bytes = 0;
  // Writes what the socket takes; false on a hard error.
  bool Flush(int fd) {
    while (!chunks.empty()) {
      auto& c = chunks.front();
      ssize_t n = ::send(fd, c.data() + offset, c.size() - offset, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
      }
      offset += static_cast<size_t>(n);
      bytes -= static_cast<size_t>(n);
      if (offset == c.size()) {
        chunks.pop_front();
        offset = 0;
      }
    }
    return true;
  }
};

}  // namespace

struct Service::Impl {
  ServiceOptions opts;
  os::EventLoop loop;
  IoPool io_pool{kIoThreads};
  std::unique_ptr<Replica> replica;
  std::thread thread;
  std::mutex mu;
  json snapshot;
  bool snapshot_up_to_date = false;
  // The snapshot counts writers waiting (queued, unacknowledged): it is
  // refreshed before the last of them gets its answer, so that a writer
  // that has its answer never reads a status still counting its write.
  bool snapshot_writers_waiting = false;
  int listen_fd = -1;
  int volume_fd = -1;
  bool flush_posted = false;
  int64_t last_snapshot_ms = 0;
  bool stopping = false;
  int64_t last_connect_ms = -1'000'000;
  int connecting_fd = -1;
  // What the replication socket is read into: allocated (and zeroed) once,
  // not for every readable event (256 KiB each, many per sync).
  std::vector<uint8_t> read_buf = std::vector<uint8_t>(kReadChunk);
  std::function<void(bool, bool, std::string)> on_change;
  std::function<void(std::string)> on_disk_failed;
  std::function<void(int, const std::string&)> log;

  // The replication connection (one at a time).
  struct Conn;
  std::shared_ptr<Conn> conn;

  struct VolumeClient {
    int fd = -1;
    std::string in;
    std::optional<json> header;  // waiting for its data
    uint64_t need = 0;
    OutBuf out;
    int inflight = 0;
    bool closed = false;
  };
  std::map<int, std::shared_ptr<VolumeClient>> clients;

  explicit Impl(ServiceOptions o) : opts(std::move(o)) {}

  void Log(int level, const std::string& m) {
    if (log) log(level, m);
  }

  void ScheduleFlush() {
    if (flush_posted) return;
    flush_posted = true;
    loop.Post([this] {
      flush_posted = false;
      replica->Flush();
      ResumeClients();
      int64_t now = loop.clock().NowMs();
      if (now - last_snapshot_ms >= kSnapshotAfterWritesMs) UpdateSnapshot();
    });
  }

  void UpdateSnapshot() {
    last_snapshot_ms = loop.clock().NowMs();
    json j = replica->StatusJson();
    j["listen"] = opts.listen_host + ":" + std::to_string(opts.listen_port);
    j["peer_address"] = opts.peer_host + ":" + std::to_string(opts.peer_port);
    j["store_dir"] = opts.replica.store_dir;
    std::lock_guard<std::mutex> g(mu);
    snapshot = std::move(j);
    snapshot_up_to_date = replica->up_to_date();
    snapshot_writers_waiting = replica->WritersWaiting();
  }

  void Tick() {
    if (stopping) return;
    replica->Tick();
    MaybeConnect();
    if (conn) FlushConn();
    loop.AddTimer(kTickMs, [this] { Tick(); });
  }

  void SnapshotTimer() {
    if (stopping) return;
    UpdateSnapshot();
    loop.AddTimer(kSnapshotMs, [this] { SnapshotTimer(); });
  }

  // ---- TCP transport.
  struct Conn {
    Impl* impl;
    int fd;
    OutBuf out;
    bool closed = false;
    bool established = false;  // TCP connect finished
  };

  class TcpTransport final : public Transport {
   public:
    explicit TcpTransport(std::shared_ptr<Conn> c) : c_(std::move(c)) {}
    void Send(std::vector<uint8_t> bytes) override {
      if (c_->closed) return;
      c_->out.bytes += bytes.size();
      c_->out.chunks.push_back(std::move(bytes));
      c_->impl->FlushConn();
    }
    size_t Backlog() const override { return c_->out.bytes; }
    void Close() override { c_->impl->CloseConn(c_, false); }

   private:
    std::shared_ptr<Conn> c_;
  };

  void FlushConn() {
    auto c = conn;
    if (!c || c->closed || !c->established) return;
    if (!c->out.Flush(c->fd)) {
      Log(2, Errno("replication connection: send"));
      CloseConn(c, true);
      return;
    }
    (void)loop.ModifyFd(c->fd, EPOLLIN | (c->out.bytes ? EPOLLOUT : 0u));
  }

  // `notify`: tell the replica (the close came from the network).
  void CloseConn(const std::shared_ptr<Conn>& c, bool notify) {
    if (!c || c->closed) return;
    c->closed = true;
    if (c->established) (void)c->out.Flush(c->fd);  // best effort: the last words (kError)
    loop.RemoveFd(c->fd);
    ::close(c->fd);
    if (conn == c) conn.reset();
    if (notify && replica->connected()) replica->Disconnected("connection closed by the network/peer");
  }

  void OnConnReadable(const std::shared_ptr<Conn>& c, uint32_t events) {
    if (c->closed) return;
    if (!c->established) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        CloseConn(c, false);
        return;
      }
      c->established = true;
      replica->Connected(std::make_unique<TcpTransport>(c), true);
      FlushConn();
      return;
    }
    if (events & EPOLLOUT) {
      FlushConn();
      if (!c->closed && c->out.bytes < kPumpBelowBacklog) replica->Pump();
    }
    if (c->closed) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      std::vector<uint8_t>& buf = read_buf;  // Received copies what it keeps
      for (int i = 0; i < 16 && !c->closed; ++i) {
        ssize_t n = ::recv(c->fd, buf.data(), buf.size(), 0);
        if (n > 0) {
          replica->Received(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        CloseConn(c, true);
        return;
      }
      if (!c->closed) replica->Pump();  // requests or acknowledgements may let a sync go on
      ScheduleFlush();
    }
  }

  void Adopt(int fd, bool established) {
    SetNonBlocking(fd);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_shared<Conn>(Conn{this, fd, {}, false, established});
    if (conn) {
      auto old = conn;
      CloseConn(old, false);
    }
    conn = c;
    std::weak_ptr<Conn> weak = c;
    Status st = loop.AddFd(fd, established ? EPOLLIN : (EPOLLOUT | EPOLLIN), [this, weak](uint32_t ev) {
      if (auto s = weak.lock()) OnConnReadable(s, ev);
    });
    if (!st.ok()) {
      ::close(fd);
      conn.reset();
      return;
    }
    if (established) replica->Connected(std::make_unique<TcpTransport>(c), false);
  }

  void MaybeConnect() {
    if (!opts.connect || conn || !replica->wants_connection()) return;
    int64_t now = loop.clock().NowMs();
    if (now - last_connect_ms < opts.reconnect_ms) return;
    last_connect_ms = now;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(opts.peer_port));
    inet_pton(AF_INET, opts.peer_host.c_str(), &a.sin_addr);
    if (!opts.listen_host.empty() && opts.listen_host != "0.0.0.0") {
      sockaddr_in b{};
      b.sin_family = AF_INET;
      inet_pton(AF_INET, opts.listen_host.c_str(), &b.sin_addr);
      (void)::bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b);
    }
    int r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (r < 0 && errno != EINPROGRESS) {
      ::close(fd);
      return;
    }
    Adopt(fd, false);
  }

  Status ListenTcp() {
    listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) return Status::Error(Errno("replication socket"));
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(opts.listen_port));
    if (inet_pton(AF_INET, opts.listen_host.c_str(), &a.sin_addr) != 1) {
      return Status::Error("replication.listen: bad address " + opts.listen_host);
    }
    if (::bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      return Status::Error(Errno("replication.listen: bind " + opts.listen_host + ":" +
                                 std::to_string(opts.listen_port)));
    }
    if (::listen(listen_fd, 8) < 0) return Status::Error(Errno("replication listen"));
    return loop.AddFd(listen_fd, EPOLLIN, [this](uint32_t) {
      for (;;) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (!replica->wants_connection()) {
          ::close(fd);
          continue;
        }
        Adopt(fd, true);
      }
    });
  }

  // ---- Volume socket.
  Status ListenVolume() {
    if (opts.volume_socket.empty()) return Status::Ok();
    ::unlink(opts.volume_socket.c_str());
    volume_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (volume_fd < 0) return Status::Error(Errno("volume socket"));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (opts.volume_socket.size() >= sizeof a.sun_path) {
      return Status::Error(opts.volume_socket + ": socket path too long");
    }
    std::memcpy(a.sun_path, opts.volume_socket.c_str(), opts.volume_socket.size());
    if (::bind(volume_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
      return Status::Error(Errno(opts.volume_socket + ": bind"));
    }
    ::chmod(opts.volume_socket.c_str(), 0660);
    if (::listen(volume_fd, 16) < 0) return Status::Error(Errno("volume listen"));
    return loop.AddFd(volume_fd, EPOLLIN, [this](uint32_t) {
      for (;;) {
        int fd = ::accept4(volume_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (static_cast<int>(clients.size()) >= kVolumeClientsMax) {
          ::close(fd);
          continue;
        }
        auto c = std::make_shared<VolumeClient>();
        c->fd = fd;
        clients[fd] = c;
        std::weak_ptr<VolumeClient> weak = c;
        (void)loop.AddFd(fd, EPOLLIN, [this, weak](uint32_t ev) {
          if (auto s = weak.lock()) OnClient(s, ev);
        });
      }
    });
  }

  void CloseClient(const std::shared_ptr<VolumeClient>& c) {
    if (c->closed) return;
    c->closed = true;
    loop.RemoveFd(c->fd);
    ::close(c->fd);
    clients.erase(c->fd);
  }

  void Reply(const std::shared_ptr<VolumeClient>& c, const json& j) {
    if (c->closed) return;
    std::string s = j.dump() + "\n";
    c->out.bytes += s.size();
    c->out.chunks.emplace_back(s.begin(), s.end());
    if (!c->out.Flush(c->fd)) {
      CloseClient(c);
      return;
    }
    UpdateClientEvents(c);
  }

  void UpdateClientEvents(const std::shared_ptr<VolumeClient>& c) {
    if (c->closed) return;
    uint32_t ev = (replica->Congested() ? 0u : static_cast<uint32_t>(EPOLLIN)) |
                  (c->out.bytes ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    (void)loop.ModifyFd(c->fd, ev);
  }

  void ResumeClients() {
    for (auto& [fd, c] : clients) UpdateClientEvents(c);
  }

  void OnClient(const std::shared_ptr<VolumeClient>& c, uint32_t ev) {
    if (ev & EPOLLOUT) {
      if (!c->out.Flush(c->fd)) {
        CloseClient(c);
        return;
      }
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      char buf[65536];
      ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        CloseClient(c);
        return;
      }
      if (n > 0) c->in.append(buf, static_cast<size_t>(n));
      ParseClient(c);
    }
    UpdateClientEvents(c);
  }

  void ParseClient(const std::shared_ptr<VolumeClient>& c) {
    for (;;) {
      if (c->closed) return;
      if (!c->header) {
        size_t nl = c->in.find('\n');
        if (nl == std::string::npos) {
          if (c->in.size() > kHeaderLineMax) {
            Reply(c, {{"ok", false}, {"error", "request line too long"}});
            CloseClient(c);
          }
          return;
        }
        json h = json::parse(c->in.substr(0, nl), nullptr, false);
        c->in.erase(0, nl + 1);
        if (h.is_discarded() || !h.is_object()) {
          Reply(c, {{"ok", false}, {"error", "bad request: not a JSON object"}});
          CloseClient(c);
          return;
        }
        uint64_t len = 0;
        if (h.contains("length")) {
          if (!h["length"].is_number_unsigned()) {
            Reply(c, {{"ok", false}, {"error", "bad request: length"}});
            CloseClient(c);
            return;
          }
          len = h["length"].get<uint64_t>();
        }
        std::string op = h.value("op", "");
        bool has_data = op == "append" || op == "write_at";
        if (has_data && len > 64ull * 1024 * 1024) {
          Reply(c, {{"ok", false}, {"error", "bad request: length above 64 MiB"}});
          CloseClient(c);
          return;
        }
        c->header = h;
        c->need = has_data ? len : 0;
      }
      if (c->in.size() < c->need) return;
      json h = *c->header;
      c->header.reset();
      std::string data = c->in.substr(0, c->need);
      c->in.erase(0, c->need);
      c->need = 0;
      Handle(c, h, std::move(data));
    }
  }

  void Handle(const std::shared_ptr<VolumeClient>& c, const json& h, std::string data) {
    json id = h.contains("id") ? h["id"] : json(nullptr);
    auto fail = [&](const std::string& e) { Reply(c, {{"id", id}, {"ok", false}, {"error", e}}); };
    if (h.value("op", "") == "status") {
      Reply(c, {{"id", id}, {"ok", true}, {"status", replica->StatusJson()}});
      return;
    }
    static const std::map<std::string, WriteOp> kOps = {
        {"create", WriteOp::kCreate}, {"append", WriteOp::kAppend},     {"write_at", WriteOp::kWriteAt},
        {"truncate", WriteOp::kTruncate}, {"rename", WriteOp::kRename}, {"delete", WriteOp::kDelete},
        {"sync", WriteOp::kSync}};
    auto it = kOps.find(h.value("op", ""));
    if (it == kOps.end()) return fail("bad request: unknown op (create, append, write_at, truncate, rename, delete, sync, status)");
    Write w;
    w.op = it->second;
    if (h.contains("path") && !h["path"].is_string()) return fail("bad request: path");
    if (h.contains("to") && !h["to"].is_string()) return fail("bad request: to");
    w.path = h.value("path", "");
    w.path2 = h.value("to", "");
    if (h.contains("offset")) {
      if (!h["offset"].is_number_unsigned()) return fail("bad request: offset");
      w.offset = h["offset"].get<uint64_t>();
    }
    if (w.op == WriteOp::kAppend || w.op == WriteOp::kWriteAt) {
      if (data.empty()) return fail("bad request: no data");
      w.data.assign(data.begin(), data.end());
      w.length = w.data.size();
    } else if (w.op == WriteOp::kTruncate) {
      if (!h.contains("length")) return fail("bad request: length");
      w.length = h["length"].get<uint64_t>();
    }
    if (w.op != WriteOp::kWriteAt) w.offset = 0;
    if (w.op != WriteOp::kRename) w.path2.clear();
    c->inflight++;
    std::weak_ptr<VolumeClient> weak = c;
    replica->Submit(std::move(w), [this, weak, id](const Status& st) {
      auto s = weak.lock();
      if (!s) return;
      s->inflight--;
      if (st.ok()) {
        Reply(s, {{"id", id}, {"ok", true}});
      } else {
        Reply(s, {{"id", id}, {"ok", false}, {"error", st.message()}});
      }
    });
    ScheduleFlush();
  }

  template <typename F>
  auto RunOnLoop(F f) -> decltype(f()) {
    using R = decltype(f());
    std::promise<R> p;
    auto fut = p.get_future();
    loop.Post([&] { p.set_value(f()); });
    return fut.get();
  }
};

Service::Service(ServiceOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

Service::~Service() { Stop(); }

Status Service::Start() {
  Impl* m = impl_.get();
  m->opts.replica.io_pool = &m->io_pool;
  m->opts.replica.prefault_receive_buffer = true;
  m->opts.replica.start_writeback = [m](const std::string& path, uint64_t offset, uint64_t length) {
    (void)m->io_pool.Post([path, offset, length] { StartWriteback(path, offset, length); });
  };
  m->replica = std::make_unique<Replica>(os::RealFileSystem(), m->loop.clock(), m->opts.replica, CryptoRandom);
  m->replica->SetLogger([m](int level, const std::string& s) { m->Log(level, s); });
  m->replica->SetOnChange([m] {
    m->UpdateSnapshot();
    if (m->on_change) {
      m->on_change(m->replica->up_to_date(), m->replica->synchronizing(), m->replica->summary());
    }
  });
  m->replica->SetOnWritersAnswered([m] {
    if (m->snapshot_writers_waiting) m->UpdateSnapshot();
  });
  m->replica->SetOnDiskFailed([m](const std::string& why) {
    if (m->on_disk_failed) m->on_disk_failed(why);
  });
  TANDEM_RETURN_IF_ERROR(m->replica->Open());
  TANDEM_RETURN_IF_ERROR(m->ListenTcp());
  TANDEM_RETURN_IF_ERROR(m->ListenVolume());
  m->UpdateSnapshot();
  m->Tick();
  m->SnapshotTimer();
  m->thread = std::thread([m] {
    // Signals belong to the daemon's loop (signalfd), never to this thread.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    m->loop.Run();
  });
  return Status::Ok();
}

void Service::Stop() {
  Impl* m = impl_.get();
  if (!m->thread.joinable()) return;
  m->loop.Post([m] {
    m->stopping = true;
    m->replica->WriteDueRecords();  // a sync that just finished here
    if (m->conn) m->CloseConn(m->conn, false);
    for (auto& [fd, c] : std::map(m->clients)) m->CloseClient(c);
    m->loop.Stop();
  });
  m->thread.join();
  if (m->listen_fd >= 0) ::close(m->listen_fd);
  if (m->volume_fd >= 0) {
    ::close(m->volume_fd);
    ::unlink(m->opts.volume_socket.c_str());
  }
}

void Service::SetOnChange(std::function<void(bool, bool, std::string)> cb) { impl_->on_change = std::move(cb); }
void Service::SetOnDiskFailed(std::function<void(std::string)> cb) { impl_->on_disk_failed = std::move(cb); }
void Service::SetLogger(std::function<void(int, const std::string&)> cb) { impl_->log = std::move(cb); }

Status Service::Promote(bool force) {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->Promote(force);
    impl_->UpdateSnapshot();
    return st;
  });
}

void Service::Demote(std::function<void()> done) {
  impl_->loop.Post([this, done = std::move(done)]() mutable {
    impl_->replica->Demote(std::move(done));
    impl_->UpdateSnapshot();
  });
}

Status Service::Verify() {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->StartVerify();
    impl_->UpdateSnapshot();
    return st;
  });
}
Status Service::SetSyncRate(uint64_t bytes_per_s) {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->SetSyncRate(bytes_per_s);
    impl_->UpdateSnapshot();
    return st;
  });
}
Status Service::ResolveSplitBrain(bool discard_local) {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->ResolveSplitBrain(discard_local);
    impl_->UpdateSnapshot();
    return st;
  });
}
Status Service::Invalidate() {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->Invalidate();
    impl_->UpdateSnapshot();
    return st;
  });
}
Status Service::Reconnect() {
  return impl_->RunOnLoop([&] {
    Status st = impl_->replica->Reconnect();
    impl_->UpdateSnapshot();
    return st;
  });
}

void Service::Submit(Write w, WriteDone done) {
  impl_->loop.Post([this, w = std::move(w), done = std::move(done)]() mutable {
    impl_->replica->Submit(std::move(w), std::move(done));
    impl_->ScheduleFlush();
  });
}

json Service::StatusJson() {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->snapshot;
}

bool Service::up_to_date() {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->snapshot_up_to_date;
}

}  // namespace tandem::repl
