// R-HB-3 against a real tandemd: the test plays the peer on a UDP socket,
// knows the cluster key, and sends forged, replayed, truncated, oversized,
// unconfirmed and garbage heartbeats. Each is dropped and counted, and none
// changes the daemon's state — while one authentic packet with the same
// claim does (so the test can fail).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "os/files.h"
#include "peer/packet.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class HeartbeatSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-hbsec");
    std::random_device rd;
    subnet_ = "127.201." + std::to_string(rd() % 256);
    key_ = std::string(40, 'k');
    ASSERT_TRUE(os::WriteFileAtomic(dir_ + "/key", key_, 0600).ok());
    peer_ = std::make_unique<FakePeer>(subnet_ + ".2");
    int my_port = FreeUdpPort(subnet_ + ".1");
    config_ = dir_ + "/tandemd.toml";
    std::ofstream(config_) << "[cluster]\nname = \"sec\"\nkey_file = \"key\"\nvip = \"" << subnet_
                           << ".10\"\n[host]\nname = \"sec-primary\"\nrole = \"primary\"\n"
                           << "state_dir = \"state\"\nrun_dir = \"run\"\n[heartbeat]\n"
                           << "interval_ms = 100\ntimeout_ms = 500\ninitial_dead_time_ms = 300\n"
                           << "listen = \"" << subnet_ << ".1:" << my_port << "\"\npeer = \""
                           << subnet_ << ".2:" << peer_->port() << "\"\n[log]\nfile = \"log\"\n";
    daemon_port_ = my_port;
    pid_ = fork();
    if (pid_ == 0) {
      execl((BinDir() + "/tandemd").c_str(), "tandemd", "--config", config_.c_str(), nullptr);
      _exit(127);
    }
    ASSERT_TRUE(WaitFor(10000, [&] { return Local()["status"] == "ACTIVE"; }));
  }
  void TearDown() override {
    kill(pid_, SIGTERM);
    int ws;
    waitpid(pid_, &ws, 0);
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  json Full() { return HostStatus(config_); }
  json Local() {
    json s = Full();
    return s.is_null() ? json::object() : s["local"];
  }
  uint64_t Dropped(const std::string& reason) {
    return Full()["counters"]["heartbeats_dropped"].value(reason, uint64_t{0});
  }
  // An authentic packet from the fake secondary, echoing the daemon's incarnation.
  peer::Packet Authentic(ha::HostStatus status, uint64_t epoch) {
    peer::Packet theirs;
    EXPECT_TRUE(peer_->Receive(key_, &theirs, 1000));
    peer::Packet p;
    p.type = peer::PacketType::kHeartbeat;
    p.incarnation = 7;
    p.seq = ++seq_;
    p.peer_incarnation = theirs.incarnation;
    p.sender = "sec-secondary";
    p.advert.role = ha::Role::kSecondary;
    p.advert.status = status;
    p.advert.epoch = epoch;
    p.advert.active_in_epoch = status == ha::HostStatus::kActive;
    return p;
  }
  void Send(const std::vector<uint8_t>& b) { peer_->SendTo(subnet_ + ".1", daemon_port_, b); }

  std::string dir_, subnet_, key_, config_;
  std::unique_ptr<FakePeer> peer_;
  int daemon_port_ = 0;
  pid_t pid_ = -1;
  uint64_t seq_ = 0;
};

TEST_F(HeartbeatSecurityTest, BadPacketsAreDroppedCountedAndIgnored) {
  uint64_t epoch = Local()["epoch"];
  // A takeover claim: ACTIVE with a much newer epoch would make the daemon step down.
  peer::Packet claim = Authentic(ha::HostStatus::kActive, epoch + 100);

  Send(peer::Encode(claim, std::string(40, 'x')));  // forged: wrong key
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("bad_mac") >= 1; }));

  std::vector<uint8_t> good = peer::Encode(claim, key_);
  Send(std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));  // truncated
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("too_short") + Dropped("bad_mac") >= 2; }));

  Send(std::vector<uint8_t>(2000, 0xAB));  // oversized garbage
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("too_long") >= 1; }));

  std::mt19937 rng(42);
  std::vector<uint8_t> garbage(100);
  for (auto& b : garbage) b = static_cast<uint8_t>(rng());
  Send(garbage);
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("bad_magic") >= 1; }));

  peer::Packet unconfirmed = claim;
  unconfirmed.peer_incarnation = 999999;  // recorded before the daemon's last restart
  unconfirmed.seq = ++seq_;
  Send(peer::Encode(unconfirmed, key_));
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("unconfirmed") >= 1; }));

  // None of it changed anything.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Local()["status"], "ACTIVE");
  EXPECT_EQ(Local()["epoch"], epoch);
  EXPECT_EQ(Full()["remote"]["status"], "UNKNOWN");

  // A standby heartbeat that is authentic is accepted; its replay is not.
  peer::Packet standby = Authentic(ha::HostStatus::kStandby, epoch);
  std::vector<uint8_t> bytes = peer::Encode(standby, key_);
  Send(bytes);
  EXPECT_TRUE(WaitFor(3000, [&] { return Full()["remote"]["status"] == "STANDBY"; }));
  Send(bytes);
  EXPECT_TRUE(WaitFor(3000, [&] { return Dropped("replay") >= 1; }));

  // The authentic takeover claim is acted on: the test could have failed.
  claim = Authentic(ha::HostStatus::kActive, epoch + 100);
  Send(peer::Encode(claim, key_));
  EXPECT_TRUE(WaitFor(5000, [&] { return Local()["status"] == "STANDBY"; }));
}

}  // namespace
}  // namespace tandem::itest
