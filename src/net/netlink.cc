#include "net/netlink.h"

// The kernel's netlink macros (NLMSG_DATA, RTA_NEXT, ...) are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-align"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem::net {

namespace {

constexpr size_t kNetlinkBufferBytes = 32 * 1024;
constexpr size_t kLabelBytesMax = IFNAMSIZ - 1;

Status Errno(const std::string& what, int err = errno) {
  return Status::Error(what + ": " + std::strerror(err));
}

// A request: header + ifaddrmsg + attributes, built in one buffer.
struct AddrRequest {
  nlmsghdr hdr;
  ifaddrmsg ifa;
  char attrs[256];
};

void AddAttr(AddrRequest* r, uint16_t type, const void* data, size_t len) {
  auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(r) + NLMSG_ALIGN(r->hdr.nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
  std::memcpy(RTA_DATA(rta), data, len);
  r->hdr.nlmsg_len = static_cast<uint32_t>(NLMSG_ALIGN(r->hdr.nlmsg_len) + RTA_ALIGN(rta->rta_len));
}

// Sends one request and waits for the kernel's ACK; returns the errno it
// reports (0 = success).
Result<int> Transact(const void* req, size_t len) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Errno("netlink socket");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, req, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    Status st = Errno("netlink send");
    close(fd);
    return st;
  }
  alignas(nlmsghdr) char buf[kNetlinkBufferBytes];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  close(fd);
  if (n < 0) return Errno("netlink recv");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<uint32_t>(n)) || h->nlmsg_type != NLMSG_ERROR) {
    return Status::Error("netlink: unexpected reply");
  }
  return -static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
}

Result<in_addr> ParseAddr(const std::string& addr) {
  in_addr a{};
  if (inet_pton(AF_INET, addr.c_str(), &a) != 1) {
    return Status::Error("'" + addr + "' is not an IPv4 address");
  }
  return a;
}

AddrRequest MakeAddrRequest(uint16_t type, uint16_t flags, int ifindex, in_addr a, int prefix) {
  AddrRequest r{};
  r.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  r.hdr.nlmsg_type = type;
  r.hdr.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  r.ifa.ifa_family = AF_INET;
  r.ifa.ifa_prefixlen = static_cast<uint8_t>(prefix);
  r.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  r.ifa.ifa_index = static_cast<unsigned>(ifindex);
  AddAttr(&r, IFA_LOCAL, &a, sizeof a);
  AddAttr(&r, IFA_ADDRESS, &a, sizeof a);
  return r;
}

}  // namespace

Result<int> InterfaceIndex(const std::string& ifname) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) return Errno("interface '" + ifname + "'");
  return static_cast<int>(idx);
}

Status AddAddress(int ifindex, const std::string& addr, int prefix, const std::string& label) {
  auto a = ParseAddr(addr);
  if (!a.ok()) return a.status();
  if (prefix < 1 || prefix > 32) return Status::Error("prefix must be 1..32");
  if (label.empty() || label.size() > kLabelBytesMax) {
    return Status::Error("address label '" + label + "' must be 1.." +
                         std::to_string(kLabelBytesMax) + " bytes");
  }
  AddrRequest r = MakeAddrRequest(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, *a, prefix);
  AddAttr(&r, IFA_LABEL, label.c_str(), label.size() + 1);
  auto err = Transact(&r, r.hdr.nlmsg_len);
  if (!err.ok()) return err.status();
  if (*err != 0 && *err != EEXIST) return Errno("adding " + addr + "/" + std::to_string(prefix), *err);
  return Status::Ok();
}

Status DeleteAddress(int ifindex, const std::string& addr, int prefix) {
  auto a = ParseAddr(addr);
  if (!a.ok()) return a.status();
  AddrRequest r = MakeAddrRequest(RTM_DELADDR, 0, ifindex, *a, prefix);
  auto err = Transact(&r, r.hdr.nlmsg_len);
  if (!err.ok()) return err.status();
  if (*err != 0 && *err != EADDRNOTAVAIL) {
    return Errno("removing " + addr + "/" + std::to_string(prefix), *err);
  }
  return Status::Ok();
}

namespace {

IfAddr ParseIfAddr(nlmsghdr* h) {
  auto* ifa = static_cast<ifaddrmsg*>(NLMSG_DATA(h));
  IfAddr out;
  out.prefix = ifa->ifa_prefixlen;
  out.ifindex = static_cast<int>(ifa->ifa_index);
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (rtattr* rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    if (rta->rta_type == IFA_LOCAL) {
      char s[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, RTA_DATA(rta), s, sizeof s);
      out.address = s;
    } else if (rta->rta_type == IFA_LABEL) {
      out.label = static_cast<const char*>(RTA_DATA(rta));
    }
  }
  return out;
}

}  // namespace

Result<std::vector<IfAddr>> ListAddresses(int ifindex) {
  struct {
    nlmsghdr hdr;
    ifaddrmsg ifa;
  } req{};
  req.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  req.hdr.nlmsg_type = RTM_GETADDR;
  req.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.ifa.ifa_family = AF_INET;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Errno("netlink socket");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &req, req.hdr.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    Status st = Errno("netlink send");
    close(fd);
    return st;
  }
  std::vector<IfAddr> out;
  alignas(nlmsghdr) char buf[kNetlinkBufferBytes];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<uint32_t>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        close(fd);
        return out;
      }
      if (h->nlmsg_type != RTM_NEWADDR) continue;
      IfAddr a = ParseIfAddr(h);
      if (ifindex == 0 || a.ifindex == ifindex) out.push_back(a);
    }
  }
  close(fd);
  return out;
}

namespace {

#pragma pack(push, 1)
struct ArpFrame {
  uint8_t dst[6], src[6];
  uint16_t ethertype;
  uint16_t htype, ptype;
  uint8_t hlen, plen;
  uint16_t oper;
  uint8_t sha[6];
  uint8_t spa[4];
  uint8_t tha[6];
  uint8_t tpa[4];
};
#pragma pack(pop)
static_assert(sizeof(ArpFrame) == 42, "Ethernet + ARP for IPv4");

}  // namespace

Status SendGratuitousArp(const std::string& ifname, const std::string& addr, int count) {
  auto a = ParseAddr(addr);
  if (!a.ok()) return a.status();
  auto idx = InterfaceIndex(ifname);
  if (!idx.ok()) return idx.status();
  // Protocol 0: a send-only packet socket. One bound to ETH_P_ARP would
  // register a receive hook whose removal on close waits for an RCU grace
  // period (synchronize_net), ~10 ms on the take-over path.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("packet socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    Status st = Errno("reading the MAC of " + ifname);
    close(fd);
    return st;
  }
  ArpFrame f{};
  std::memset(f.dst, 0xff, 6);
  std::memcpy(f.src, ifr.ifr_hwaddr.sa_data, 6);
  f.ethertype = htons(ETH_P_ARP);
  f.htype = htons(ARPHRD_ETHER);
  f.ptype = htons(ETH_P_IP);
  f.hlen = 6;
  f.plen = 4;
  f.oper = htons(ARPOP_REQUEST);
  std::memcpy(f.sha, f.src, 6);
  std::memcpy(f.spa, &a->s_addr, 4);
  std::memcpy(f.tpa, &a->s_addr, 4);  // gratuitous: sender = target
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = *idx;
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  Status st = Status::Ok();
  for (int i = 0; i < count && st.ok(); ++i) {
    if (sendto(fd, &f, sizeof f, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
      st = Errno("sending gratuitous ARP on " + ifname);
    }
  }
  close(fd);
  return st;
}

}  // namespace tandem::net
