// The interface VIP against the real kernel: each run of this binary moves
// itself into a fresh network namespace (unshare), builds a veth pair there
// (198.18.0.0/24, no default route) and tears it all down by exiting.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "net/connectivity.h"
#include "net/netlink.h"
#include "net/vip.h"
#include "os/testing.h"

namespace tandem::net {
namespace {

constexpr char kVip[] = "198.18.0.10";

bool Has(const std::string& label, const std::string& addr) {
  auto list = ListAddresses(0);
  if (!list.ok()) return false;
  for (const auto& a : *list) {
    if (a.address == addr && a.label == label) return true;
  }
  return false;
}

// A packet socket on tdm1 (the other end of the veth) counting gratuitous
// ARPs for `addr`.
class ArpSniffer {
 public:
  ArpSniffer() {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ARP));
    sockaddr_ll sa{};
    sa.sll_family = AF_PACKET;
    sa.sll_protocol = htons(ETH_P_ARP);
    sa.sll_ifindex = static_cast<int>(if_nametoindex("tdm1"));
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }
  ~ArpSniffer() { close(fd_); }
  int Count(const std::string& addr, int wait_ms) {
    in_addr want{};
    inet_pton(AF_INET, addr.c_str(), &want);
    pollfd p{fd_, POLLIN, 0};
    while (poll(&p, 1, wait_ms) == 1) {
      uint8_t buf[128];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      // Ethernet(14) + ARP: sender IP at 28, target IP at 38.
      if (n >= 42 && std::memcmp(buf + 28, &want, 4) == 0 && std::memcmp(buf + 38, &want, 4) == 0) {
        ++count_;
      }
    }
    return count_;
  }

 private:
  int fd_ = -1;
  int count_ = 0;
};

InterfaceVipOptions Options() {
  InterfaceVipOptions o;
  o.interface = "tdm0";
  o.vip = kVip;
  o.prefix = 24;
  o.garp_count = 5;
  o.garp_repeat_count = 5;
  o.garp_repeat_delay_ms = 200;
  return o;
}

TEST(InterfaceVip, AssignLabelsAnnouncesAndReleases) {
  os::EventLoop loop;
  ArpSniffer sniffer;
  auto vip = MakeInterfaceVip(loop, Options());
  ASSERT_TRUE(vip->Cleanup().ok());
  ASSERT_TRUE(vip->AddAlias().ok());
  ASSERT_TRUE(vip->AssignVip().ok());
  EXPECT_TRUE(vip->held());
  EXPECT_TRUE(Has("tdm0:0", kVip));
  EXPECT_EQ(sniffer.Count(kVip, 100), 5) << "first burst";
  loop.AddTimer(500, [&] { loop.Stop(); });
  os::RunWithDeadline(loop, 5000);
  EXPECT_EQ(sniffer.Count(kVip, 100), 10) << "second burst after the repeat delay";
  ASSERT_TRUE(vip->AssignVip().ok()) << "idempotent";
  ASSERT_TRUE(vip->UnassignVip().ok());
  EXPECT_FALSE(Has("tdm0:0", kVip));
  EXPECT_FALSE(vip->held());
  EXPECT_TRUE(vip->UnassignVip().ok()) << "idempotent";
  EXPECT_TRUE(Has("tdm0", "198.18.0.1")) << "the host's own address is untouched";
}

TEST(InterfaceVip, CleanupRemovesAVipLeftByAnEarlierRun) {
  ASSERT_TRUE(AddAddress(static_cast<int>(if_nametoindex("tdm0")), kVip, 24, "tdm0:0").ok());
  ASSERT_TRUE(Has("tdm0:0", kVip));
  os::EventLoop loop;
  auto vip = MakeInterfaceVip(loop, Options());
  ASSERT_TRUE(vip->Cleanup().ok());
  EXPECT_FALSE(Has("tdm0:0", kVip));
}

TEST(InterfaceVip, MissingInterfaceIsAClearError) {
  os::EventLoop loop;
  InterfaceVipOptions o = Options();
  o.interface = "nope0";
  auto vip = MakeInterfaceVip(loop, o);
  Status st = vip->AssignVip();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("interface 'nope0'"), std::string::npos) << st.message();
  EXPECT_FALSE(AddAddress(1, "not-an-ip", 24, "lo:0").ok());
  EXPECT_FALSE(AddAddress(1, kVip, 33, "lo:0").ok());
}

// ICMP connectivity tests against hosts in this private namespace only.
TEST(IcmpConnectivity, AnsweringAndSilentHosts) {
  os::EventLoop loop;
  ConnectivityTester t(loop, {config::Endpoint{"198.18.0.2", 0}, config::Endpoint{"198.18.0.99", 0}},
                       300, /*require_all=*/false);
  TestReport got;
  t.Run([&](const TestReport& r) {
    got = r;
    loop.Stop();
  });
  os::RunWithDeadline(loop, 5000);
  ASSERT_EQ(got.probes.size(), 2u);
  EXPECT_TRUE(got.probes[0].ok) << got.Summary();
  EXPECT_FALSE(got.probes[1].ok);
  EXPECT_NE(got.probes[1].error.find("timed out"), std::string::npos) << got.Summary();
  EXPECT_TRUE(got.ok) << "any";
  EXPECT_NE(got.Summary().find("icmp:198.18.0.99: timed out"), std::string::npos) << got.Summary();
}

}  // namespace
}  // namespace tandem::net

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (needs root)");
    return 1;
  }
  const char* setup =
      "ip link set lo up && ip link add tdm0 type veth peer name tdm1 && "
      "ip link set tdm0 up && ip link set tdm1 up && ip addr add 198.18.0.1/24 dev tdm0 && "
      "ip addr add 198.18.0.2/32 dev tdm1";
  if (std::system(setup) != 0) {
    std::fprintf(stderr, "cannot build the test network: %s\n", setup);
    return 1;
  }
  return RUN_ALL_TESTS();
}
