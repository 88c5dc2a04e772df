// R-NC-1..3 with real TCP connectivity tests on a lab cluster: each host
// tests its own test peer (a listener the test opens and closes).
//  - the active loses its test peer while the standby still has its own:
//    controlled failover (R-NC-2);
//  - both lose theirs: no failover;
//  - the active dies while the standby's own test fails: no takeover until
//    the standby's test passes again (R-NC-3).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "lab/lab.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

// A TCP listener on addr:port that accepts and closes, until Close().
class Listener {
 public:
  Listener(const std::string& addr, int port) : addr_(addr), port_(port) { Open(); }
  ~Listener() { Close(); }
  int port() const { return port_; }
  void Open() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, addr_.c_str(), &sa.sin_addr);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    listen(fd_, 64);
    socklen_t len = sizeof sa;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    open_ = true;
    thread_ = std::thread([this] {
      while (open_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 20) == 1) {
          int c = accept(fd_, nullptr, nullptr);
          if (c >= 0) close(c);
        }
      }
    });
  }
  void Close() {
    if (!open_) return;
    open_ = false;
    thread_.join();
    close(fd_);
  }

 private:
  std::string addr_;
  int port_;
  int fd_ = -1;
  std::atomic<bool> open_{false};
  std::thread thread_;
};

class ConnectivityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-conn");
    std::random_device rd;
    std::string witness = "127.203." + std::to_string(rd() % 256);
    x_ = std::make_unique<Listener>(witness + ".50", 0);
    y_ = std::make_unique<Listener>(witness + ".51", 0);
    x_addr_ = witness + ".50:" + std::to_string(x_->port());
    y_addr_ = witness + ".51:" + std::to_string(y_->port());
    lab::LabOptions o = FastLabOptions(dir_);
    o.connectivity_peers = {x_addr_};
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
    ASSERT_EQ(StatusOf(0), "ACTIVE");
    // The secondary tests its own peer Y instead of X.
    std::string cfg = Config(1);
    std::ifstream in(cfg);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    text = std::regex_replace(text, std::regex(x_addr_), y_addr_);
    std::ofstream(cfg) << text;
    int old = Pid(1);
    kill(old, SIGTERM);
    ASSERT_TRUE(WaitFor(10000, [&] { return waitpid(old, nullptr, WNOHANG) == old; }));
    auto pid = lab::StartHost(dir_, "secondary");
    ASSERT_TRUE(pid.ok()) << pid.status().message();
    ASSERT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "STANDBY"; }));
  }
  void TearDown() override {
    tandem::Status st = lab::Down(dir_);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  int Pid(int i) { return (*lab::Describe(dir_))["hosts"][static_cast<size_t>(i)]["pid"]; }
  json Local(int i) { return LocalOf(HostStatus(Config(i))); }
  std::string StatusOf(int i) { return Local(i).value("status", ""); }
  std::string Reason(int i) { return Local(i).value("reason", ""); }

  std::string dir_, x_addr_, y_addr_;
  std::unique_ptr<Listener> x_, y_;
  json lab_;
};

TEST_F(ConnectivityTest, ControlledFailoverOnlyWhenTheStandbyCanReachItsPeers) {
  EXPECT_TRUE(WaitFor(3000, [&] { return Local(0)["connectivity"]["ok"] == true; }));
  // The active (primary) loses X; the standby still reaches Y.
  x_->Close();
  EXPECT_TRUE(WaitFor(10000, [&] { return StatusOf(1) == "ACTIVE"; }));
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(0) == "STANDBY"; }));
  EXPECT_NE(Reason(0).find("controlled failover"), std::string::npos) << Reason(0);
  // Now the active (secondary) loses Y too, and the standby's X is gone: no failover.
  y_->Close();
  EXPECT_TRUE(WaitFor(5000, [&] {
    return Reason(1).find("standby's test failed too: no failover") != std::string::npos;
  })) << Reason(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(StatusOf(1), "ACTIVE");
  EXPECT_EQ(StatusOf(0), "STANDBY");
  // The active dies while the standby's own test fails: no takeover (R-NC-3)...
  ASSERT_EQ(kill(Pid(1), SIGKILL), 0);
  EXPECT_TRUE(WaitFor(5000, [&] {
    return Reason(0).find("not taking over: own connectivity test failed") != std::string::npos;
  })) << Reason(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(StatusOf(0), "STANDBY");
  // ... until its test peer answers again.
  x_->Open();
  EXPECT_TRUE(WaitFor(5000, [&] { return StatusOf(0) == "ACTIVE"; })) << Reason(0);
}

}  // namespace
}  // namespace tandem::itest
