// /store replication with real processes: two tandemd from the lab, the
// real replication TCP connection, writes through the volume socket
// (`tandem store fill`), real kill -9 and restart. After every scenario the
// test compares the two store directories byte for byte itself and checks
// that every acknowledged write is there.
#include <gtest/gtest.h>

#include <iostream>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "lab/lab.h"
#include "lab/store_tool.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-repl");
    lab::LabOptions o = FastLabOptions(dir_);
    o.replication = true;
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
  }
  void TearDown() override {
    if (HasFailure() && !dir_.empty()) std::cerr << LabLogTails(dir_);
    if (!dir_.empty()) {
      EXPECT_TRUE(lab::Down(dir_).ok());
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  std::string Store(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["store_dir"]; }
  // The host's state file (<state_dir>/state.json; the lab's state_dir is
  // "state" next to the configuration).
  json StateFile(int i) const {
    std::ifstream in(fs::path(Config(i)).parent_path() / "state" / "state.json");
    return json::parse(in, nullptr, false);
  }
  json Repl(int i) {
    json s = HostStatus(Config(i));
    return s.is_null() ? json() : s["replication"];
  }
  std::string Status(int i) {
    json s = HostStatus(Config(i));
    return s.is_null() ? "" : s["local"].value("status", "");
  }
  bool InSync() {
    json a = Repl(0), b = Repl(1);
    return !a.is_null() && !b.is_null() && a.value("replication", "") == "Established" &&
           b.value("replication", "") == "Established" && a.value("disk", "") == "UpToDate" &&
           b.value("disk", "") == "UpToDate" && a.value("generations", "") == b.value("generations", "");
  }
  json Fill(int i, int files, uint64_t bytes, const std::string& prefix, uint64_t seed) {
    lab::FillOptions fo;
    fo.config = Config(i);
    fo.files = files;
    fo.bytes = bytes;
    fo.prefix = prefix;
    fo.seed = seed;
    auto r = lab::StoreFill(fo);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : json();
  }
  void ExpectFilled(int host, int files, uint64_t bytes, const std::string& prefix, uint64_t seed) {
    auto tree = ReadTree(Store(host));
    for (int f = 0; f < files; ++f) {
      std::string p = prefix + std::to_string(f) + ".dat";
      ASSERT_TRUE(tree.count(p)) << p << " missing on host " << host;
      const std::string& d = tree[p];
      ASSERT_EQ(d.size(), bytes) << p;
      for (uint64_t i = 0; i < bytes; i += 4093) {
        ASSERT_EQ(static_cast<uint8_t>(d[i]), lab::FillByte(seed, f, i)) << p << " @" << i;
      }
    }
  }
  void ExpectIdentical() {
    auto a = ReadTree(Store(0)), b = ReadTree(Store(1));
    EXPECT_EQ(a.size(), b.size());
    for (auto& [p, d] : a) {
      ASSERT_TRUE(b.count(p)) << p << " only on the primary";
      EXPECT_TRUE(b[p] == d) << p << " differs";
    }
  }

  std::string dir_;
  json lab_;
};

TEST_F(ReplicationTest, WritesThroughTheVolumeAreOnBothHostsByteForByte) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  json r = Fill(0, 4, 3'000'000, "fill/", 7);
  EXPECT_EQ(r.value("bytes", 0), 12'000'000);
  ExpectFilled(1, 4, 3'000'000, "fill/", 7);  // acknowledged = already on the secondary
  ExpectIdentical();
  json s = Repl(0);
  EXPECT_EQ(s["protocol"], "C");
  EXPECT_TRUE(s["protected"].get<bool>());
  EXPECT_EQ(s["unacked_writes"], 0) << s.dump();
  EXPECT_EQ(s["peer"]["node"], lab_["hosts"][1]["name"]);
  // The metadata lives outside the store.
  EXPECT_FALSE(fs::exists(Store(0) + "/meta.json"));
}

TEST_F(ReplicationTest, TheSecondaryRefusesWrites) {
  lab::FillOptions fo;
  fo.config = Config(1);
  auto r = lab::StoreFill(fo);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not writable"), std::string::npos) << r.status().message();
}

TEST_F(ReplicationTest, KillNineOfTheActiveThenResyncOnlyTheChanges) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  Fill(0, 6, 8'000'000, "a/", 1);
  auto d = lab::Describe(dir_);
  int pid = (*d)["hosts"][0]["pid"];
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(10000, [&] { return Status(1) == "ACTIVE"; }));
  Fill(1, 2, 500'000, "b/", 2);  // the new active writes while the old one is away
  EXPECT_TRUE(WaitFor(2000, [&] {
    json away = Repl(1);
    return !away["protected"].get<bool>() && away["out_of_sync_bytes"].get<uint64_t>() > 0;
  })) << Repl(1).dump();
  auto pid2 = lab::StartHost(dir_, "primary");
  ASSERT_TRUE(pid2.ok());
  ASSERT_TRUE(WaitFor(15000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  EXPECT_EQ(Status(0), "STANDBY");  // no failback
  // The new active wrote its ACTIVE at once; the returning host's
  // STANDBY (after SYNCHRONIZING) and its peer's ACTIVE reach its state
  // file within a second of the change (Daemon::PersistSoon).
  EXPECT_EQ(StateFile(1).value("last_status", ""), "ACTIVE");
  EXPECT_TRUE(WaitFor(5000, [&] {
    json f = StateFile(0);
    return f.value("last_status", "") == "STANDBY" && f.value("peer_status", "") == "ACTIVE";
  })) << StateFile(0).dump();
  ExpectFilled(0, 6, 8'000'000, "a/", 1);
  ExpectFilled(0, 2, 500'000, "b/", 2);
  ExpectIdentical();
  // Only the changes travelled back: the 1 MB written meanwhile plus at most
  // what the old active's journal can hold after a crash (activity log of
  // 256 chunks + a quarter before compaction + 16, of 64 KiB: 22 MB) — not
  // the 49 MB store.
  uint64_t sent = Repl(1)["counters"]["sync_bytes_sent"];
  EXPECT_LT(sent, (256u + 64 + 16) * 65536 + 2'000'000u);
}

TEST_F(ReplicationTest, VerifyAndAdminCommands) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  Fill(0, 2, 1'000'000, "v/", 3);
  // Damage the secondary's copy behind the volume's back.
  {
    std::fstream f(Store(1) + "/v/1.dat", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500'000);
    f.put('\x55');
  }
  auto r = RunCommand({BinDir() + "/ha", "verify", "--config", Config(0)});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(WaitFor(10000, [&] { return Repl(0).value("last_verify", "") != ""; }));
  EXPECT_NE(Repl(0)["last_verify"].get<std::string>().find("1 differed"), std::string::npos)
      << Repl(0)["last_verify"];
  ExpectIdentical();
  r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "250"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(Repl(0)["sync_rate_bytes_per_s"], 250'000'000);
  r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "99999"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(Repl(0)["sync_rate_bytes_per_s"], 250'000'000);
  r = RunCommand({BinDir() + "/ha", "split-brain", "--config", Config(0), "--survivor", "nobody"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown host"), std::string::npos) << r.output;
}


// `ha invalidate` (DRBD's invalidate): the standby's replica, damaged behind
// the volume's back, is replaced by a full sync from the active.
TEST_F(ReplicationTest, InvalidateTheSecondaryReplacesItsReplicaByAFullSync) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  const uint64_t kStoreBytes = 4 * 8'000'000;
  Fill(0, 4, 8'000'000, "inv/", 11);
  {
    std::fstream f(Store(1) + "/inv/2.dat", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3'000'000);
    f.put('\x55');
  }
  { std::ofstream(Store(1) + "/stray.dat") << "only on the standby"; }
  const std::string ha = BinDir() + "/ha";
  auto r = RunCommand({ha, "invalidate", "--config", Config(0)});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("primary"), std::string::npos) << r.output;
  EXPECT_EQ(Repl(0)["disk"], "UpToDate");
  // Slow enough to watch the sync run.
  r = RunCommand({ha, "sync-rate", "--config", Config(0), "20"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const uint64_t sent_before = Repl(0)["counters"]["sync_bytes_sent"].get<uint64_t>();
  r = RunCommand({ha, "invalidate", "--config", Config(1)});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json seen;
  ASSERT_TRUE(WaitFor(10000, [&] {
    seen = Repl(1);
    return seen.value("replication", "") == "SyncTarget";
  })) << Repl(1).dump();
  EXPECT_TRUE(seen["sync"].value("full", false)) << seen.dump();
  EXPECT_EQ(seen["disk"], "Inconsistent");
  EXPECT_TRUE(seen["full_sync_wanted"].get<bool>());
  r = RunCommand({ha, "sync-rate", "--config", Config(0), "4096"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(WaitFor(30000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  EXPECT_FALSE(Repl(1)["full_sync_wanted"].get<bool>());
  const uint64_t sent = Repl(0)["counters"]["sync_bytes_sent"].get<uint64_t>() - sent_before;
  EXPECT_GE(sent, kStoreBytes) << "not a full sync";
  EXPECT_FALSE(fs::exists(Store(1) + "/stray.dat"));
  ExpectFilled(1, 4, 8'000'000, "inv/", 11);
  ExpectIdentical();
  EXPECT_EQ(ReadTree(Store(0)).size(), ReadTree(Store(1)).size());
}

// Gone, and reaped if it was our child (labs started in-process).
bool Dead(int pid) { return waitpid(pid, nullptr, WNOHANG) == pid || kill(pid, 0) != 0; }

// The host gets a new, empty disk, stopped; returns once it is down.
void StopAndWipe(const std::string& dir, int host) {
  auto d = lab::Describe(dir);
  ASSERT_TRUE(d.ok());
  int pid = (*d)["hosts"][static_cast<size_t>(host)]["pid"];
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(5000, [&] { return Dead(pid); }));
  std::string h = dir + (host == 0 ? "/primary" : "/secondary");
  fs::remove_all(h + "/store");
  fs::remove_all(h + "/state/replica");
}

TEST_F(ReplicationTest, KillNineOfTheSecondaryDuringItsInitialSync) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  StopAndWipe(dir_, 1);
  Fill(0, 4, 10'000'000, "big/", 5);  // 40 MB, unprotected
  auto r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "10"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(lab::StartHost(dir_, "secondary").ok());
  ASSERT_TRUE(WaitFor(10000, [&] {
    json s = Repl(1);
    return s.is_object() && s.contains("sync") && s["sync"].value("done_bytes", uint64_t{0}) > 5'000'000;
  })) << Repl(1).dump();
  EXPECT_EQ(Status(1), "SYNCHRONIZING");
  EXPECT_EQ(Repl(1)["disk"], "Inconsistent");
  auto d = lab::Describe(dir_);
  int pid = (*d)["hosts"][1]["pid"];
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(5000, [&] { return Dead(pid); }));
  Fill(0, 1, 1'000'000, "more/", 6);  // writes keep flowing meanwhile
  r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "4096"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(lab::StartHost(dir_, "secondary").ok());
  ASSERT_TRUE(WaitFor(30000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  EXPECT_TRUE(WaitFor(5000, [&] { return Status(1) == "STANDBY"; }));
  ExpectFilled(1, 4, 10'000'000, "big/", 5);
  ExpectFilled(1, 1, 1'000'000, "more/", 6);
  ExpectIdentical();
}

TEST_F(ReplicationTest, ASynchronizingStandbyDoesNotTakeOverAndTheResyncResumes) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  auto d = lab::Describe(dir_);
  int spid = (*d)["hosts"][1]["pid"];
  ASSERT_EQ(kill(spid, SIGTERM), 0);
  ASSERT_TRUE(WaitFor(5000, [&] { return Dead(spid); }));
  Fill(0, 3, 10'000'000, "away/", 8);  // changed while the standby is away
  auto r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "8"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(lab::StartHost(dir_, "secondary").ok());
  ASSERT_TRUE(WaitFor(10000, [&] { return Status(1) == "SYNCHRONIZING"; })) << Repl(1).dump();
  // The active dies mid-resync: the synchronizing standby must not take over.
  d = lab::Describe(dir_);
  int ppid = (*d)["hosts"][0]["pid"];
  ASSERT_EQ(kill(ppid, SIGKILL), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // 4 heartbeat timeouts
  EXPECT_NE(Status(1), "ACTIVE");
  EXPECT_NE(Repl(1)["disk"], "UpToDate");
  // The old active comes back, is the only one that may serve, and the
  // resync resumes to the end.
  ASSERT_TRUE(lab::StartHost(dir_, "primary").ok());
  r = RunCommand({BinDir() + "/ha", "sync-rate", "--config", Config(0), "4096"});
  ASSERT_TRUE(WaitFor(30000, [&] { return InSync() && Status(0) == "ACTIVE" && Status(1) == "STANDBY"; }))
      << Repl(0).dump() << Repl(1).dump();
  ExpectFilled(1, 3, 10'000'000, "away/", 8);
  ExpectIdentical();
}


// One request on a fresh volume-socket connection; the reply line ("" if
// the daemon closed without one).
std::string VolumeRequest(const std::string& socket, const std::string& bytes) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string reply;
  char c;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (::recv(fd, &c, 1, 0) == 1 && c != '\n') reply += c;
  ::close(fd);
  return reply;
}

TEST_F(ReplicationTest, BadVolumeRequestsGetClearErrorsAndChangeNothing) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  std::string sock = lab_["hosts"][0]["volume_socket"];
  auto before0 = ReadTree(Store(0));
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {"not json\n", "not a JSON object"},
      {"[1,2]\n", "not a JSON object"},
      {R"({"id":1,"op":"explode","path":"a"})" "\n", "unknown op"},
      {R"({"id":2,"op":"append","path":"../etc/passwd","length":1})" "\nx", "invalid write"},
      {R"({"id":3,"op":"append","path":"/abs","length":1})" "\nx", "invalid write"},
      {R"({"id":4,"op":"append","path":"a/./b","length":1})" "\nx", "invalid write"},
      {R"({"id":5,"op":"append","path":"a","length":-1})" "\n", "length"},
      {R"({"id":6,"op":"append","path":"a","length":999999999999})" "\n", "64 MiB"},
      {R"({"id":7,"op":"append","path":7,"length":1})" "\nx", "path"},
      {R"({"id":8,"op":"rename","path":"missing","to":"b"})" "\n", "No such file"},
      {R"({"id":9,"op":"truncate","path":"a"})" "\n", "length"},
      {std::string(10000, 'x'), "too long"},
  };
  for (const Case& c : cases) {
    std::string reply = VolumeRequest(sock, c.bytes);
    EXPECT_NE(reply.find("\"ok\":false"), std::string::npos) << c.bytes.substr(0, 80) << " -> " << reply;
    EXPECT_NE(reply.find(c.expect), std::string::npos) << c.bytes.substr(0, 80) << " -> " << reply;
  }
  EXPECT_EQ(ReadTree(Store(0)), before0);
  EXPECT_EQ(ReadTree(Store(1)), before0);
  json s = HostStatus(Config(0));
  EXPECT_EQ(LocalOf(s).value("status", ""), "ACTIVE") << "the daemon survived";
  EXPECT_EQ(s["replication"]["disk"], "UpToDate");
}


TEST_F(ReplicationTest, KillNineOfTheActiveInTheMiddleOfWritesLosesNoAcknowledgedByte) {
  ASSERT_TRUE(WaitFor(10000, [&] { return InSync(); }));
  // Four files appended concurrently (64 in flight); the active dies while
  // the writes stream. Protocol C: whatever was acknowledged is on the
  // standby, which takes over with it.
  std::mutex mu;
  std::map<int, uint64_t> acked;  // file -> acknowledged prefix
  std::thread writer([&] {
    lab::FillOptions fo;
    fo.config = Config(0);
    fo.files = 4;
    fo.bytes = 200'000'000;  // far more than gets written before the kill
    fo.write_bytes = 16 * 1024;
    fo.prefix = "stream/";
    fo.seed = 9;
    fo.on_ack = [&](int f, uint64_t end) {
      std::lock_guard<std::mutex> g(mu);
      acked[f] = std::max(acked[f], end);
    };
    (void)lab::StoreFill(fo);  // fails when the active dies
  });
  // Some megabytes acknowledged (slow under sanitizers: bounded, not fixed).
  bool streaming = WaitFor(60000, [&] {
    std::lock_guard<std::mutex> g(mu);
    uint64_t sum = 0;
    for (auto& [f, e] : acked) sum += e;
    return sum > 4'000'000;
  });
  auto d = lab::Describe(dir_);
  int pid = (*d)["hosts"][0]["pid"];
  EXPECT_EQ(kill(pid, SIGKILL), 0);
  writer.join();  // the fill fails once the active is gone
  ASSERT_TRUE(streaming) << "the write stream never got going";
  std::map<int, uint64_t> got;
  {
    std::lock_guard<std::mutex> g(mu);
    got = acked;
  }
  ASSERT_TRUE(WaitFor(10000, [&] { return Status(1) == "ACTIVE"; }));
  auto check = [&](int host) {
    auto tree = ReadTree(Store(host));
    for (auto& [f, end] : got) {
      std::string p = "stream/" + std::to_string(f) + ".dat";
      ASSERT_TRUE(tree.count(p)) << p << " missing on host " << host;
      const std::string& data = tree[p];
      ASSERT_GE(data.size(), end) << p << ": acknowledged bytes lost on host " << host;
      for (uint64_t i = 0; i < end; i += 997) {
        ASSERT_EQ(static_cast<uint8_t>(data[i]), lab::FillByte(9, f, i)) << p << " @" << i;
      }
    }
  };
  check(1);  // the new active has every acknowledged byte
  // The old active restarts, resyncs, and both copies are identical.
  ASSERT_TRUE(lab::StartHost(dir_, "primary").ok());
  ASSERT_TRUE(WaitFor(20000, [&] { return InSync(); })) << Repl(0).dump() << Repl(1).dump();
  check(0);
  ExpectIdentical();
}

}  // namespace
}  // namespace tandem::itest
