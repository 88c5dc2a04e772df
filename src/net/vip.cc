#include "net/vip.h"

#include <arpa/inet.h>

#include "net/netlink.h"

namespace tandem::net {
namespace {

class LoopbackVip final : public VipManager {
 public:
  explicit LoopbackVip(std::string vip) : vip_(std::move(vip)) {}
  Status Cleanup() override {
    held_ = false;
    return Status::Ok();
  }
  Status AddAlias() override { return Status::Ok(); }
  Status AssignVip() override {
    in_addr a{};
    if (inet_pton(AF_INET, vip_.c_str(), &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
      return Status::Error("loopback mode needs a VIP in 127.0.0.0/8, got '" + vip_ + "'");
    }
    held_ = true;
    return Status::Ok();
  }
  Status UnassignVip() override {
    held_ = false;
    return Status::Ok();
  }
  Status RemoveAlias() override { return Status::Ok(); }
  bool held() const override { return held_; }
  std::string Describe() const override { return vip_ + " (loopback)"; }

 private:
  std::string vip_;
  bool held_ = false;
};

class InterfaceVip final : public VipManager {
 public:
  InterfaceVip(os::EventLoop& loop, InterfaceVipOptions o)
      : loop_(loop), o_(std::move(o)), label_(o_.interface + ":0") {}
  ~InterfaceVip() override { CancelAnnouncements(); }

  Status Cleanup() override {
    auto idx = InterfaceIndex(o_.interface);
    if (!idx.ok()) return idx.status();
    held_ = false;
    return DeleteAddress(*idx, o_.vip, o_.prefix);
  }
  Status AddAlias() override {
    // A Linux alias is a label on an address: checking the interface is all
    // there is to do before the address is added with that label.
    auto idx = InterfaceIndex(o_.interface);
    return idx.ok() ? Status::Ok() : idx.status();
  }
  Status AssignVip() override {
    auto idx = InterfaceIndex(o_.interface);
    if (!idx.ok()) return idx.status();
    TANDEM_RETURN_IF_ERROR(AddAddress(*idx, o_.vip, o_.prefix, label_));
    held_ = true;
    Status st = SendGratuitousArp(o_.interface, o_.vip, o_.garp_count);
    CancelAnnouncements();
    ScheduleAnnouncements();
    return st;
  }
  Status UnassignVip() override {
    CancelAnnouncements();
    auto idx = InterfaceIndex(o_.interface);
    if (!idx.ok()) return idx.status();
    held_ = false;
    return DeleteAddress(*idx, o_.vip, o_.prefix);
  }
  Status RemoveAlias() override { return Status::Ok(); }  // the label went with the address
  bool held() const override { return held_; }
  std::string Describe() const override {
    return o_.vip + "/" + std::to_string(o_.prefix) + " on " + label_;
  }

 private:
  // The second burst, then (with garp_refresh_ms) one announcement per period.
  void ScheduleAnnouncements() {
    if (o_.garp_repeat_delay_ms > 0 && o_.garp_repeat_count > 0) {
      Announce(o_.garp_repeat_delay_ms, o_.garp_repeat_count);
    } else if (o_.garp_refresh_ms > 0) {
      Announce(o_.garp_refresh_ms, 1);
    }
  }
  void Announce(int64_t delay_ms, int count) {
    timer_ = loop_.AddTimer(delay_ms, [this, count] {
      timer_ = 0;
      if (!held_) return;
      (void)SendGratuitousArp(o_.interface, o_.vip, count);
      if (o_.garp_refresh_ms > 0) Announce(o_.garp_refresh_ms, 1);
    });
  }
  void CancelAnnouncements() {
    if (timer_) loop_.CancelTimer(timer_);
    timer_ = 0;
  }

  os::EventLoop& loop_;
  InterfaceVipOptions o_;
  std::string label_;
  bool held_ = false;
  os::EventLoop::TimerId timer_ = 0;
};

}  // namespace

std::unique_ptr<VipManager> MakeInterfaceVip(os::EventLoop& loop, InterfaceVipOptions o) {
  return std::make_unique<InterfaceVip>(loop, std::move(o));
}

std::unique_ptr<VipManager> MakeLoopbackVip(const std::string& vip) {
  return std::make_unique<LoopbackVip>(vip);
}

}  // namespace tandem::net
