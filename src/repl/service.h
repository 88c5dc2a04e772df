// The replication service inside tandemd: a thread with its own event loop
// that owns the Replica, the replication TCP connection (port 7789 by
// default) and the volume socket through which services write to /store.
// fsync and network waits never block the HA loop. Every public method is
// thread-safe; callbacks are invoked on the replication thread (the daemon
// posts them to its own loop).
//
// Volume socket protocol (docs/REPLICATION.md, "Writing to the store"):
// requests are one JSON line {"id":N,"op":"append","path":"a/b","length":L}
// followed by exactly L raw bytes for append/write_at; each is answered by
// one JSON line {"id":N,"ok":true} (or "ok":false,"error") once the write
// is acknowledged under the protocol. Requests may be pipelined.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "repl/replica.h"
#include "util/status.h"

namespace tandem::repl {

struct ServiceOptions {
  ReplicaOptions replica;
  std::string listen_host;  // replication.listen
  int listen_port = 7789;
  std::string peer_host;    // replication.peer
  int peer_port = 7789;
  bool connect = false;     // this side connects (the configured primary); the other accepts
  std::string volume_socket;  // Unix socket for writers
  int64_t reconnect_ms = 100;
};

class Service {
 public:
  explicit Service(ServiceOptions opts);
  ~Service();

  // Opens the replica and sockets and starts the thread.
  Status Start();
  void Stop();

  // Callbacks (on the replication thread).
  void SetOnChange(std::function<void(bool up_to_date, bool synchronizing, std::string detail)> cb);
  void SetOnDiskFailed(std::function<void(std::string)> cb);
  void SetLogger(std::function<void(int level, const std::string&)> cb);

  // Blocking calls into the replication thread (short).
  Status Promote(bool force);
  // Asynchronous: `done` runs (on the replication thread) once in-flight
  // writes are acknowledged and the replica is secondary.
  void Demote(std::function<void()> done);
  Status Verify();
  Status SetSyncRate(uint64_t bytes_per_s);
  Status ResolveSplitBrain(bool discard_local);
  Status Reconnect();
  // `ha invalidate`: Replica::Invalidate (full sync from the peer).
  Status Invalidate();

  // In-process writers (the collector): thread-safe; `done` runs on the
  // replication thread.
  void Submit(Write w, WriteDone done);

  nlohmann::json StatusJson();  // snapshot
  bool up_to_date();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::repl
