// The cluster VIP as the executor sees it (R-FO-3 steps 2 and 3). The
// loopback implementation is the lab's: the VIP is an address in 127/8 that
// only the active host's services bind to. The interface implementation
// (rtnetlink alias + gratuitous ARP) slots in behind the same interface.
#pragma once

#include <memory>
#include <string>

#include "os/event_loop.h"
#include "util/status.h"

namespace tandem::net {

class VipManager {
 public:
  virtual ~VipManager() = default;
  // Removes whatever an earlier run of this daemon left (start-up cleanup).
  virtual Status Cleanup() = 0;
  virtual Status AddAlias() = 0;     // e.g. create eth0:0
  virtual Status AssignVip() = 0;    // put the VIP on the alias and announce it
  virtual Status UnassignVip() = 0;
  virtual Status RemoveAlias() = 0;
  virtual bool held() const = 0;     // this host holds the VIP now
  virtual std::string Describe() const = 0;  // "127.77.0.10 (loopback)"
};

// Loopback mode: no interface changes; holding the VIP means this host's
// services are the ones that bind it. AssignVip checks the address is in
// 127.0.0.0/8.
std::unique_ptr<VipManager> MakeLoopbackVip(const std::string& vip);

struct InterfaceVipOptions {
  std::string interface;             // the management interface, e.g. "eth0"
  std::string vip;                   // dotted quad
  int prefix = 24;                   // the VIP's subnet
  int garp_count = 5;                // gratuitous ARPs sent at once on take-over
  int garp_repeat_count = 5;         // ... and again after garp_repeat_delay_ms
  int64_t garp_repeat_delay_ms = 5000;
  int64_t garp_refresh_ms = 0;       // > 0: one more every so often while held
};

// Interface mode (keepalived style): the VIP is an address labelled
// "<interface>:0" (the Linux form of an interface alias), added and removed
// with rtnetlink, announced with gratuitous ARP. Cleanup removes the VIP from
// the interface if an earlier run left it there. The loop runs the delayed
// and periodic announcements; all calls on the loop thread.
std::unique_ptr<VipManager> MakeInterfaceVip(os::EventLoop& loop, InterfaceVipOptions o);

}  // namespace tandem::net
