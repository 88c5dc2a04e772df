// The cluster VIP as the executor sees it (R-FO-3 steps 2 and 3). The
// loopback implementation is the lab's: the VIP is an address in 127/8 that
// only the active host's services bind to. The interface implementation
// (rtnetlink alias + gratuitous ARP) slots in behind the same interface.
#pragma once

#include <memory>
#include <string>

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

}  // namespace tandem::net
