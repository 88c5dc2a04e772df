#include "peer/witness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <random>

namespace tandem::peer {

namespace {
constexpr int kRecvPerWakeupMax = 64;
}  // namespace

Witness::Witness(os::EventLoop& loop, std::string name, std::string key, config::Endpoint listen)
    : loop_(loop),
      name_(std::move(name)),
      key_(std::move(key)),
      listen_(std::move(listen)),
      incarnation_(std::random_device{}() | 1) {}

Witness::~Witness() {
  if (fd_ >= 0) {
    loop_.RemoveFd(fd_);
    close(fd_);
  }
}

Status Witness::Open() {
  fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(listen_.port);
  inet_pton(AF_INET, listen_.host.c_str(), &sa.sin_addr);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return Status::Error("witness: cannot bind " + listen_.ToString() + ": " + std::strerror(errno));
  }
  return loop_.AddFd(fd_, EPOLLIN, [this](uint32_t) { OnReadable(); });
}

void Witness::OnReadable() {
  uint8_t buf[kPacketBytesMax + 1];
  for (int i = 0; i < kRecvPerWakeupMax; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;
    Packet p;
    DropReason why{};
    if (!Decode(std::span<const uint8_t>(buf, static_cast<size_t>(n)), key_, &p, &why)) {
      counters_.dropped++;
      continue;
    }
    Handle(p, &from, len);
  }
}

void Witness::Handle(const Packet& p, const void* from, unsigned from_len) {
  bool known = hosts_.count(p.sender) > 0;
  if (!known && hosts_.size() >= kWitnessHostsMax) {
    counters_.dropped++;
    return;
  }
  Host& h = hosts_[p.sender];
  if (!h.replay.Accept(p.incarnation, p.seq)) {
    counters_.dropped++;
    return;
  }
  if (p.type == PacketType::kHeartbeat) {
    counters_.heartbeats++;
    h.last_heard_ms = loop_.clock().NowMs();
    h.advert = p.advert;
  } else if (p.type == PacketType::kWitnessQuery) {
    counters_.queries++;
    Reply(p, from, from_len);
  } else {
    counters_.dropped++;
  }
}

// Reports on the subject (or, with no subject, the freshest other host).
void Witness::Reply(const Packet& query, const void* from, unsigned from_len) {
  const Host* best = nullptr;
  std::string subject = query.subject;
  for (const auto& [name, h] : hosts_) {
    bool candidate = query.subject.empty() ? name != query.sender : name == query.subject;
    if (!candidate || h.last_heard_ms < 0) continue;
    if (!best || h.last_heard_ms > best->last_heard_ms) {
      best = &h;
      subject = name;
    }
  }
  Packet r;
  r.type = PacketType::kWitnessReply;
  r.incarnation = incarnation_;
  r.seq = ++seq_;
  r.echo_seq = query.seq;
  r.peer_incarnation = query.incarnation;
  r.sender = name_;
  r.subject = subject;
  r.heard_ms_ago = std::numeric_limits<uint32_t>::max();
  if (best) {
    int64_t ago = loop_.clock().NowMs() - best->last_heard_ms;
    r.heard_ms_ago = static_cast<uint32_t>(std::min<int64_t>(ago, r.heard_ms_ago - 1));
    r.advert = best->advert;
  }
  std::vector<uint8_t> bytes = Encode(r, key_);
  sendto(fd_, bytes.data(), bytes.size(), 0, static_cast<const sockaddr*>(from), from_len);
}

}  // namespace tandem::peer
