#include "peer/link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#include <cerrno>
#include <cstring>

namespace tandem::peer {

namespace {

sockaddr_in ToSockaddr(const config::Endpoint& e) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(e.port);
  inet_pton(AF_INET, e.host.c_str(), &sa.sin_addr);
  return sa;
}

constexpr int kRecvPerWakeupMax = 64;  // datagrams read per readiness event

// How long a datagram waited in the socket: now minus the kernel's receive
// time (SO_TIMESTAMPNS, CLOCK_REALTIME). 0 when the kernel gave none, or
// when the clock stepped back in between.
int64_t QueuedMs(const msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
    timespec at{};
    std::memcpy(&at, CMSG_DATA(c), sizeof at);
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = (static_cast<int64_t>(now.tv_sec) - at.tv_sec) * 1000 +
                 (static_cast<int64_t>(now.tv_nsec) - at.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
  }
  return 0;
}

}  // namespace

HeartbeatLink::HeartbeatLink(os::EventLoop& loop, std::string self_name, std::string key,
                             std::vector<Path> paths, uint64_t incarnation, int64_t interval_ms,
                             OnHeartbeat on_heartbeat, std::vector<config::Endpoint> witnesses)
    : loop_(loop),
      self_(std::move(self_name)),
      key_(std::move(key)),
      cfg_(std::move(paths)),
      replay_(cfg_.size()),
      sent_at_(cfg_.size()),
      incarnation_(incarnation),
      interval_ms_(interval_ms),
      on_heartbeat_(std::move(on_heartbeat)),
      witnesses_(std::move(witnesses)) {
  TANDEM_CHECK(cfg_.size() >= 1 && cfg_.size() <= static_cast<size_t>(ha::kPathsMax));
  for (size_t i = 0; i < cfg_.size(); ++i) {
    PathStats st;
    st.name = i == 0 ? "management" : "crossover";
    st.listen = cfg_[i].listen;
    st.peer = cfg_[i].peer;
    stats_.push_back(st);
  }
}

HeartbeatLink::~HeartbeatLink() {
  if (timer_) loop_.CancelTimer(timer_);
  if (query_.timer) loop_.CancelTimer(query_.timer);
  for (int fd : fds_) {
    loop_.RemoveFd(fd);
    close(fd);
  }
}

Status HeartbeatLink::Open() {
  for (size_t i = 0; i < cfg_.size(); ++i) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::Error(std::string("socket: ") + std::strerror(errno));
    fds_.push_back(fd);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Receive times: a heartbeat read long after it arrived (we hung) is old news.
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    sockaddr_in sa = ToSockaddr(cfg_[i].listen);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return Status::Error("heartbeat " + stats_[i].name + " path: cannot bind " +
                           cfg_[i].listen.ToString() + ": " + std::strerror(errno));
    }
    TANDEM_RETURN_IF_ERROR(loop_.AddFd(fd, EPOLLIN, [this, i](uint32_t) { OnReadable(i); }));
  }
  ScheduleTick();
  return Status::Ok();
}

void HeartbeatLink::ScheduleTick() {
  timer_ = loop_.AddTimer(interval_ms_, [this] {
    timer_ = 0;
    SendNow();
    ScheduleTick();
  });
}

void HeartbeatLink::SetInterval(int64_t interval_ms) {
  interval_ms_ = interval_ms;
  if (timer_ == 0) return;  // not open (or closing): Open starts the timer
  loop_.CancelTimer(timer_);
  timer_ = 0;
  SendNow();
  ScheduleTick();
}

void HeartbeatLink::SendNow() {
  for (size_t i = 0; i < fds_.size(); ++i) Send(i, PacketType::kHeartbeat, 0);
  // Witnesses hear our heartbeats too (management path), for R-NC-4.
  for (const config::Endpoint& w : witnesses_) SendTo(w, PacketType::kHeartbeat, 0, "");
}

void HeartbeatLink::SendTo(const config::Endpoint& to_ep, PacketType type, uint64_t echo_seq,
                           const std::string& subject) {
  if (fds_.empty()) return;
  Packet p;
  p.type = type;
  p.incarnation = incarnation_;
  p.seq = ++seq_;
  p.echo_seq = echo_seq;
  p.sender = self_;
  p.subject = subject;
  p.advert = advert_;
  std::vector<uint8_t> bytes = Encode(p, key_);
  sockaddr_in to = ToSockaddr(to_ep);
  sendto(fds_[0], bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  if (type == PacketType::kWitnessQuery) query_.seq = p.seq;
}

void HeartbeatLink::QueryWitnesses(const std::string& subject, int64_t fresh_ms,
                                   int64_t timeout_ms,
                                   std::function<void(const WitnessReport&)> done) {
  query_.done.push_back(std::move(done));
  if (query_.seq != 0) return;  // joins the query in flight
  if (witnesses_.empty()) return FinishWitnessQuery();
  query_.fresh_ms = fresh_ms;
  query_.answered.assign(witnesses_.size(), false);
  query_.report = WitnessReport{};
  query_.report.asked = static_cast<int>(witnesses_.size());
  for (const config::Endpoint& w : witnesses_) SendTo(w, PacketType::kWitnessQuery, 0, subject);
  // Each witness got its own seq; query_.seq is the last: replies echo one of
  // the last witnesses_.size() seqs.
  query_.timer = loop_.AddTimer(timeout_ms, [this] {
    query_.timer = 0;
    FinishWitnessQuery();
  });
}

void HeartbeatLink::HandleWitnessReply(const Packet& p, size_t w, int64_t queued_ms) {
  if (p.type != PacketType::kWitnessReply || query_.seq == 0 || query_.answered[w]) return;
  if (p.peer_incarnation != incarnation_) return;  // answers a query of an earlier run
  if (p.echo_seq + witnesses_.size() <= query_.seq || p.echo_seq > query_.seq) return;
  query_.answered[w] = true;
  WitnessReport& r = query_.report;
  r.answered++;
  // The witness's news aged while the reply waited in our socket.
  const uint64_t ago = p.heard_ms_ago == UINT32_MAX
                           ? UINT64_MAX
                           : uint64_t{p.heard_ms_ago} + static_cast<uint64_t>(queued_ms);
  bool fresh = ago <= static_cast<uint64_t>(query_.fresh_ms);
  bool active = fresh && p.advert.status == ha::HostStatus::kActive;
  r.subject_active = r.subject_active || active;
  if (fresh) {
    const auto& best = r.subject_advert;
    bool better = !best || (active && best->status != ha::HostStatus::kActive) ||
                  ((active || best->status != ha::HostStatus::kActive) && p.advert.epoch > best->epoch);
    if (better) r.subject_advert = p.advert;
  }
  r.detail += (r.detail.empty() ? "" : "; ") + witnesses_[w].ToString() +
              (p.heard_ms_ago == UINT32_MAX
                   ? " never heard " + (p.subject.empty() ? std::string("it") : p.subject)
                   : " heard " + p.subject + " " + std::string(ha::StatusName(p.advert.status)) +
                         " " + std::to_string(ago) + " ms ago");
  if (r.answered == r.asked) FinishWitnessQuery();
}

void HeartbeatLink::FinishWitnessQuery() {
  if (query_.timer) loop_.CancelTimer(query_.timer);
  query_.timer = 0;
  query_.seq = 0;
  WitnessReport r = query_.report;
  if (r.asked == 0) r.detail = "no witnesses configured";
  if (r.answered < r.asked) {
    r.detail += (r.detail.empty() ? "" : "; ") + std::to_string(r.asked - r.answered) +
                " witness(es) did not answer";
  }
  auto done = std::move(query_.done);
  query_.done.clear();
  for (auto& cb : done) cb(r);
}

void HeartbeatLink::Send(size_t path, PacketType type, uint64_t echo_seq) {
  Packet p;
  p.type = type;
  p.path = static_cast<uint8_t>(path);
  p.incarnation = incarnation_;
  p.seq = ++seq_;  // one counter across paths: the receiver can tell the newest advert
  p.echo_seq = echo_seq;
  p.peer_incarnation = peer_incarnation_;
  p.sender = self_;
  p.advert = advert_;
  std::vector<uint8_t> bytes = Encode(p, key_);
  sockaddr_in to = ToSockaddr(cfg_[path].peer);
  PathStats& st = stats_[path];
  if (sendto(fds_[path], bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to),
             sizeof to) < 0) {
    st.send_error = std::strerror(errno);
    return;
  }
  st.send_error.clear();
  st.sent++;
  if (type == PacketType::kHeartbeat) {
    sent_at_[path][p.seq % kRttSamplesMax] = {p.seq, loop_.clock().NowMs()};
  }
}

void HeartbeatLink::OnReadable(size_t path) {
  uint8_t buf[kPacketBytesMax + 1];
  for (int n = 0; n < kRecvPerWakeupMax; ++n) {
    sockaddr_in from{};
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t got = recvmsg(fds_[path], &msg, 0);
    if (got < 0) return;  // EAGAIN: drained
    const int64_t queued_ms = QueuedMs(msg);
    sockaddr_in want = ToSockaddr(cfg_[path].peer);
    int witness = path == 0 ? WitnessIndex(from) : -1;
    if (witness < 0 &&
        (from.sin_addr.s_addr != want.sin_addr.s_addr || from.sin_port != want.sin_port)) {
      counters_.unknown_sender++;
      continue;
    }
    Packet p;
    DropReason why{};
    if (!Decode(std::span<const uint8_t>(buf, static_cast<size_t>(got)), key_, &p, &why)) {
      counters_.dropped[static_cast<size_t>(why)]++;
      continue;
    }
    if (witness >= 0) {
      HandleWitnessReply(p, static_cast<size_t>(witness), queued_ms);
    } else {
      Handle(path, p, queued_ms);
    }
  }
}

void HeartbeatLink::Handle(size_t path, const Packet& p, int64_t queued_ms) {
  // Both hosts hold the key: a packet of our own reflected back at us is
  // authentic, so the sender's name must not be ours.
  if (p.sender == self_) {
    counters_.unknown_sender++;
    return;
  }
  if (p.path != path) {
    counters_.dropped[static_cast<size_t>(DropReason::kMalformed)]++;
    return;
  }
  if (!replay_[path].Accept(p.incarnation, p.seq)) {
    counters_.dropped[static_cast<size_t>(DropReason::kReplay)]++;
    return;
  }
  // Learn the peer's incarnation (never downwards) so that our packets echo
  // it; act only on packets that echo ours, so that packets recorded before
  // our restart cannot be replayed to us.
  if (p.incarnation > peer_incarnation_) peer_incarnation_ = p.incarnation;
  if (p.peer_incarnation != incarnation_) {
    counters_.unconfirmed++;
    if (p.type == PacketType::kHeartbeat) Send(path, PacketType::kAck, p.seq);
    return;
  }
  PathStats& st = stats_[path];
  st.received++;
  st.last_heard_ms = loop_.clock().NowMs() - queued_ms;
  peer_name_ = p.sender;
  if (p.type == PacketType::kHeartbeat) {
    Send(path, PacketType::kAck, p.seq);
  } else {
    auto& slot = sent_at_[path][p.echo_seq % kRttSamplesMax];
    if (slot.first == p.echo_seq && p.echo_seq != 0) st.rtt_ms = st.last_heard_ms - slot.second;
  }
  std::pair<uint64_t, uint64_t> id{p.incarnation, p.seq};
  bool stale = id <= newest_;
  if (!stale) newest_ = id;
  if (queued_ms > interval_ms_) counters_.late++;
  on_heartbeat_(ha::PeerHeartbeat{static_cast<int>(path), p.advert, stale, queued_ms});
}

int HeartbeatLink::WitnessIndex(const sockaddr_in& from) const {
  for (size_t i = 0; i < witnesses_.size(); ++i) {
    sockaddr_in w = ToSockaddr(witnesses_[i]);
    if (w.sin_addr.s_addr == from.sin_addr.s_addr && w.sin_port == from.sin_port) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int64_t HeartbeatLink::rtt_ms() const {
  int64_t best = -1;
  for (const PathStats& st : stats_) {
    if (st.rtt_ms >= 0 && (best < 0 || st.rtt_ms < best)) best = st.rtt_ms;
  }
  return best;
}

}  // namespace tandem::peer
