// IPv4 addresses on interfaces through rtnetlink (RTM_NEWADDR / RTM_DELADDR /
// RTM_GETADDR), and gratuitous ARP through a packet socket. The only code
// that changes the host's network configuration. Blocking calls (each one
// round trip to the kernel); safe from any thread.
#pragma once

#include <string>
#include <vector>

#include "util/status.h"

namespace tandem::net {

struct IfAddr {
  std::string address;  // dotted quad
  int prefix = 32;
  std::string label;    // e.g. "eth0:0" (a Linux alias is an address label)
  int ifindex = 0;
};

// Interface index of `ifname`, or an error naming it.
Result<int> InterfaceIndex(const std::string& ifname);

// Adds addr/prefix with `label` (which must start with the interface name,
// at most 15 bytes). Already present: OK (idempotent).
Status AddAddress(int ifindex, const std::string& addr, int prefix, const std::string& label);

// Removes addr/prefix from the interface. Not present: OK (idempotent).
Status DeleteAddress(int ifindex, const std::string& addr, int prefix);

// Every IPv4 address on the interface (ifindex 0: on all interfaces).
Result<std::vector<IfAddr>> ListAddresses(int ifindex);

// Broadcasts `count` gratuitous ARP requests (sender = target = addr, from
// the interface's MAC) on `ifname`, so switches and neighbours learn where
// the address now lives.
Status SendGratuitousArp(const std::string& ifname, const std::string& addr, int count);

}  // namespace tandem::net
