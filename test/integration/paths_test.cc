// R-HB-2 and start-up against a real tandemd with two heartbeat paths. The
// test plays the secondary and speaks only on the crossover path: the daemon
// must wait for its peer (or the initial dead time) before becoming active,
// treat the peer as alive while any path is heard, and take over only when
// every path is silent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-paths");
    std::random_device rd;
    subnet_ = "127.202." + std::to_string(rd() % 256);
    key_ = std::string(48, 'p');
    ASSERT_TRUE(os::WriteFileAtomic(dir_ + "/key", key_, 0600).ok());
    mgmt_ = std::make_unique<FakePeer>(subnet_ + ".2");
    cross_ = std::make_unique<FakePeer>(subnet_ + ".102");
    int mgmt_port = FakePeer(subnet_ + ".1").port();
    cross_port_ = FakePeer(subnet_ + ".101").port();
    config_ = dir_ + "/tandemd.toml";
    std::ofstream(config_) << "[cluster]\nname = \"paths\"\nkey_file = \"key\"\nvip = \"" << subnet_
                           << ".10\"\n[host]\nname = \"paths-primary\"\nrole = \"primary\"\n"
                           << "state_dir = \"state\"\nrun_dir = \"run\"\n[heartbeat]\n"
                           << "interval_ms = 100\ntimeout_ms = 500\ninitial_dead_time_ms = 1500\n"
                           << "listen = \"" << subnet_ << ".1:" << mgmt_port << "\"\n"
                           << "peer = \"" << subnet_ << ".2:" << mgmt_->port() << "\"\n"
                           << "crossover_listen = \"" << subnet_ << ".101:" << cross_port_ << "\"\n"
                           << "crossover_peer = \"" << subnet_ << ".102:" << cross_->port() << "\"\n"
                           << "[log]\nfile = \"log\"\n";
    pid_ = fork();
    if (pid_ == 0) {
      execl((BinDir() + "/tandemd").c_str(), "tandemd", "--config", config_.c_str(), nullptr);
      _exit(127);
    }
    ASSERT_TRUE(WaitFor(5000, [&] { return !HostStatus(config_).is_null(); }));
  }
  void TearDown() override {
    sending_ = false;
    if (sender_.joinable()) sender_.join();
    kill(pid_, SIGTERM);
    int ws;
    waitpid(pid_, &ws, 0);
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  json Local() { return LocalOf(HostStatus(config_)); }

  // Sends an ACTIVE secondary's heartbeats on the crossover path only.
  void StartSending() {
    sending_ = true;
    sender_ = std::thread([this] {
      uint64_t seq = 0, their_incarnation = 0;
      while (sending_) {
        peer::Packet theirs;
        if (cross_->Receive(key_, &theirs, 0)) their_incarnation = theirs.incarnation;
        peer::Packet p;
        p.path = 1;
        p.incarnation = 3;
        p.seq = ++seq;
        p.peer_incarnation = their_incarnation;
        p.sender = "paths-secondary";
        p.advert.role = ha::Role::kSecondary;
        p.advert.status = ha::HostStatus::kActive;
        p.advert.epoch = 5;
        p.advert.active_in_epoch = true;
        cross_->SendTo(subnet_ + ".101", cross_port_, peer::Encode(p, key_));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }

  std::string dir_, subnet_, key_, config_;
  std::unique_ptr<FakePeer> mgmt_, cross_;
  int cross_port_ = 0;
  pid_t pid_ = -1;
  std::atomic<bool> sending_{false};
  std::thread sender_;
};

TEST_F(PathsTest, PeerAliveWhileAnyPathIsHeardGoneWhenAllAreSilent) {
  // No peer heard yet and the initial dead time (1500 ms) not passed.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Local()["status"], "STARTING");
  StartSending();
  // Heard on the crossover only: the peer is active, so this host is standby.
  EXPECT_TRUE(WaitFor(3000, [&] { return Local()["status"] == "STANDBY"; }));
  json hb = Local()["heartbeat"];
  EXPECT_EQ(hb["paths"].size(), 2u);
  EXPECT_EQ(hb["paths_up"], 1);
  EXPECT_FALSE(hb["paths"][0]["up"].get<bool>()) << hb.dump();
  EXPECT_TRUE(hb["paths"][1]["up"].get<bool>()) << hb.dump();
  // Management silent for many timeouts: still standby.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Local()["status"], "STANDBY");
  EXPECT_EQ(Local()["epoch"], 5);
  // Every path silent: take over.
  sending_ = false;
  sender_.join();
  EXPECT_TRUE(WaitFor(5000, [&] { return Local()["status"] == "ACTIVE"; }));
  EXPECT_EQ(Local()["epoch"], 6);
  auto r = RunCommand({BinDir() + "/ha", "cstate", "--config", config_});
  EXPECT_NE(r.output.find("P:0:2 HBT:DOWN"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tandem::itest
