// Test-only: two replicas joined by an in-memory "network" on a manual
// clock, over any FileSystem (the fault-injecting one for crash tests).
// Used by replica_test.cc and the replication simulator (replica_sim_test.cc).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "os/clock.h"
#include "os/fs.h"
#include "repl/replica.h"

namespace tandem::repl::testing {

class ManualClock final : public os::Clock {
 public:
  int64_t NowMs() const override { return now_; }
  int64_t WallMs() const override { return 1'700'000'000'000 + now_; }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  int64_t now_ = 0;
};

// One direction of a connection: bytes queued for the other side.
struct Wire {
  std::deque<std::vector<uint8_t>> chunks;
  size_t bytes = 0;
  bool closed = false;
  uint64_t sync_payload_bytes = 0;  // SyncData frames seen (measured on the wire)
  uint64_t total_bytes = 0;
  std::function<void(std::vector<uint8_t>&)> tap;  // may inspect/alter what is sent
};

class PipeTransport final : public Transport {
 public:
  explicit PipeTransport(std::shared_ptr<Wire> out) : out_(std::move(out)) {}
  void Send(std::vector<uint8_t> bytes) override {
    if (out_->closed) return;
    // Measure resync payload independently of the replica's counters: the
    // frame type is byte 5, SyncData = 6; data length is what follows the
    // fixed fields, so count the whole frame (an upper bound).
    if (bytes.size() > 5 && bytes[5] == static_cast<uint8_t>(FrameType::kSyncData)) {
      out_->sync_payload_bytes += bytes.size();
    }
    out_->total_bytes += bytes.size();
    if (out_->tap) out_->tap(bytes);
    out_->bytes += bytes.size();
    out_->chunks.push_back(std::move(bytes));
  }
  size_t Backlog() const override { return out_->bytes; }
  void Close() override { out_->closed = true; }

 private:
  std::shared_ptr<Wire> out_;
};

struct Node {
  std::string name;
  os::FileSystem* fs = nullptr;
  std::unique_ptr<Replica> replica;
  ReplicaOptions opts;
  std::vector<std::string> log;
  int disk_failures = 0;
};

class Pair {
 public:
  Pair(os::FileSystem& fs_a, os::FileSystem& fs_b, const std::string& root, uint64_t seed = 1,
       Protocol protocol = Protocol::kC)
      : rng_(seed) {
    nodes_[0].name = "alpha";
    nodes_[1].name = "beta";
    nodes_[0].fs = &fs_a;
    nodes_[1].fs = &fs_b;
    for (int i = 0; i < 2; ++i) {
      ReplicaOptions& o = nodes_[i].opts;
      o.node = nodes_[i].name;
      o.peer_node = nodes_[1 - i].name;
      o.store_dir = root + "/" + nodes_[i].name + "/store";
      o.meta_dir = root + "/" + nodes_[i].name + "/meta";
      o.key = "0123456789abcdef0123456789abcdef";
      o.protocol = protocol;
      o.sync_rate_bytes = 4096ull * 1000 * 1000;
      o.merge_prefixes = {"events/", "flows/"};
      o.hot_chunks = 64;
      o.initial_primary = i == 0;
      o.software = "test";
    }
  }

  ReplicaOptions& opts(int i) { return nodes_[i].opts; }
  Replica& r(int i) { return *nodes_[i].replica; }
  Node& node(int i) { return nodes_[i]; }
  ManualClock& clock() { return clock_; }
  Wire* wire(int from) { return wires_[from].get(); }

  Status Start(int i) {
    Node& n = nodes_[i];
    n.replica = std::make_unique<Replica>(*n.fs, clock_, n.opts, [this] { return rng_(); });
    n.replica->SetLogger([&n](int, const std::string& m) { n.log.push_back(m); });
    n.replica->SetOnDiskFailed([&n](const std::string&) { n.disk_failures++; });
    return n.replica->Open();
  }
  // The process dies (no clean shutdown): the object goes away, nothing is
  // flushed. Use the fault FS's PowerLoss for a host crash.
  void Kill(int i) {
    nodes_[i].replica.reset();
    Cut();
  }

  // The next connection's bytes sent by node i pass through `tap`.
  void SetNextTap(int i, std::function<void(std::vector<uint8_t>&)> tap) { next_tap_[i] = std::move(tap); }
  bool Connected() const { return wires_[0] && !wires_[0]->closed && wires_[1] && !wires_[1]->closed; }
  // A silent partition: while held, nothing sent is delivered (it stays
  // queued, as in TCP retransmission); the replicas' timers notice. A side
  // that gives up closes its end, and the connection is torn down with
  // whatever was still queued.
  void SetHeld(bool held) { held_ = held; }
  bool held() const { return held_; }
  // Connects 0 -> 1 (0 is the connecting side) if both want it.
  void Connect(int connector = 0) {
    int a = connector, b = 1 - connector;
    if (!nodes_[a].replica || !nodes_[b].replica) return;
    if (!nodes_[a].replica->wants_connection() || !nodes_[b].replica->wants_connection()) return;
    wires_[a] = std::make_shared<Wire>();
    wires_[b] = std::make_shared<Wire>();
    for (int i = 0; i < 2; ++i) {
      wires_[i]->tap = std::move(next_tap_[i]);
      next_tap_[i] = nullptr;
    }
    nodes_[b].replica->Connected(std::make_unique<PipeTransport>(wires_[b]), false);
    nodes_[a].replica->Connected(std::make_unique<PipeTransport>(wires_[a]), true);
  }
  void Cut() {
    for (int i = 0; i < 2; ++i) {
      if (wires_[i]) wires_[i]->closed = true;
      wires_[i].reset();
      if (nodes_[i].replica && nodes_[i].replica->connected()) {
        nodes_[i].replica->Disconnected("test: connection cut");
      }
    }
  }

  // Delivers queued bytes both ways, flushes writers and ticks, until
  // nothing moves (or `rounds` run out). Advances the clock by `step_ms`
  // per round.
  void Run(int rounds = 10000, int64_t step_ms = 1) {
    for (int k = 0; k < rounds; ++k) {
      bool moved = false;
      for (int i = 0; i < 2; ++i) {
        if (nodes_[i].replica) {
          nodes_[i].replica->Flush();
          nodes_[i].replica->Tick();
        }
      }
      for (int from = 0; from < 2; ++from) {
        auto w = wires_[from];
        Replica* to = nodes_[1 - from].replica.get();
        // Bytes sent before a close still arrive (TCP delivers, then FIN).
        while (!held_ && w && !w->chunks.empty() && to && to->connected()) {
          std::vector<uint8_t> c = std::move(w->chunks.front());
          w->chunks.pop_front();
          w->bytes -= c.size();
          to->Received(c);
          moved = true;
        }
      }
      if (wires_[0] || wires_[1]) {
        bool gone = false;
        for (int i = 0; i < 2; ++i) {
          if (!nodes_[i].replica || !nodes_[i].replica->connected() || !wires_[i] || wires_[i]->closed) gone = true;
        }
        bool drained = true;
        for (int from = 0; from < 2; ++from) {
          Replica* to = nodes_[1 - from].replica.get();
          if (!held_ && wires_[from] && !wires_[from]->chunks.empty() && to && to->connected()) drained = false;
        }
        if (gone && drained) {
          for (int i = 0; i < 2; ++i) {
            if (nodes_[i].replica && nodes_[i].replica->connected()) {
              nodes_[i].replica->Disconnected("test: peer closed the connection");
            }
          }
          wires_[0].reset();
          wires_[1].reset();
          moved = true;
        }
      }
      clock_.Advance(step_ms);
      if (!moved && Idle()) return;
    }
  }

  bool Idle() const {
    for (int i = 0; i < 2; ++i) {
      if (!nodes_[i].replica) continue;
      ReplState s = nodes_[i].replica->state();
      if (s == ReplState::kSyncSource || s == ReplState::kSyncTarget || s == ReplState::kMerging ||
          s == ReplState::kVerifySource || s == ReplState::kVerifyTarget ||
          s == ReplState::kHandshake || s == ReplState::kSplitBrainWait) {
        return false;
      }
    }
    return true;
  }

  // Submits a write on node i; *acked is set when its callback succeeds.
  void Write(int i, repl::Write w, std::function<void(const Status&)> done) {
    nodes_[i].replica->Submit(std::move(w), std::move(done));
  }

 private:
  std::mt19937_64 rng_;
  ManualClock clock_;
  Node nodes_[2];
  std::shared_ptr<Wire> wires_[2];
  std::function<void(std::vector<uint8_t>&)> next_tap_[2];
  bool held_ = false;
};

inline repl::Write AppendOp(const std::string& path, const std::string& data) {
  repl::Write w;
  w.op = WriteOp::kAppend;
  w.path = path;
  w.data.assign(data.begin(), data.end());
  w.length = w.data.size();
  return w;
}
inline repl::Write WriteAtOp(const std::string& path, uint64_t offset, std::vector<uint8_t> data) {
  repl::Write w;
  w.op = WriteOp::kWriteAt;
  w.path = path;
  w.offset = offset;
  w.length = data.size();
  w.data = std::move(data);
  return w;
}
inline repl::Write SimpleOp(WriteOp op, const std::string& path, const std::string& path2 = "",
                            uint64_t length = 0) {
  repl::Write w;
  w.op = op;
  w.path = path;
  w.path2 = path2;
  w.length = length;
  return w;
}

// Every file under `dir` with its content, for byte-for-byte comparison.
inline std::map<std::string, std::vector<uint8_t>> Snapshot(os::FileSystem& fs,
                                                            const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  auto files = fs.ListFiles(dir);
  if (!files.ok()) return out;
  for (const std::string& p : *files) {
    auto data = os::ReadWholeFile(fs, dir + "/" + p, uint64_t{1} << 32);
    if (data.ok() && data->has_value()) out[p] = **data;
  }
  return out;
}

}  // namespace tandem::repl::testing
