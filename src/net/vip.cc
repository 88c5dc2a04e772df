#include "net/vip.h"

#include <arpa/inet.h>

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

}  // namespace

std::unique_ptr<VipManager> MakeLoopbackVip(const std::string& vip) {
  return std::make_unique<LoopbackVip>(vip);
}

}  // namespace tandem::net
