#include "collect/framing.h"

#include <algorithm>
#include <utility>

#include "util/status.h"

namespace tandem::collect {
namespace {

bool IsTrailer(uint8_t b) { return b == '\n' || b == '\0'; }
bool IsDigit(uint8_t b) { return b >= '0' && b <= '9'; }

std::string_view View(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Index of the first LF or NUL at or after `from`, or in.size().
size_t FindTrailer(std::span<const uint8_t> in, size_t from) {
  const auto it = std::find_if(in.begin() + static_cast<std::ptrdiff_t>(from), in.end(), IsTrailer);
  return static_cast<size_t>(it - in.begin());
}

}  // namespace

SyslogStreamFramer::SyslogStreamFramer(size_t message_bytes_max, Sink sink)
    : max_(message_bytes_max), sink_(std::move(sink)) {
  TANDEM_CHECK(max_ >= kSyslogMessageBytesMin);
}

void SyslogStreamFramer::Feed(std::span<const uint8_t> bytes) {
  TANDEM_CHECK(sink_ != nullptr);
  Process(bytes, sink_);
}

void SyslogStreamFramer::Feed(std::span<const uint8_t> bytes, std::vector<SyslogFrame>* out) {
  Process(bytes, [out](std::string_view m, bool t) { out->push_back({std::string(m), t}); });
}

void SyslogStreamFramer::Finish() {
  TANDEM_CHECK(sink_ != nullptr);
  FinishWith(sink_);
}

void SyslogStreamFramer::Finish(std::vector<SyslogFrame>* out) {
  FinishWith([out](std::string_view m, bool t) { out->push_back({std::string(m), t}); });
}

void SyslogStreamFramer::Process(std::span<const uint8_t> in, const Emit& emit) {
  counters_.bytes += in.size();
  size_t i = 0;
  while (i < in.size()) {
    switch (state_) {
      case State::kFrameStart: i = OnFrameStart(in, i); break;
      case State::kCount: i = OnCount(in, i); break;
      case State::kOctets: i = OnOctets(in, i, emit); break;
      case State::kLine: i = OnLine(in, i, emit); break;
      case State::kSkipLine: i = OnSkipLine(in, i); break;
    }
  }
}

size_t SyslogStreamFramer::OnFrameStart(std::span<const uint8_t> in, size_t i) {
  if (IsTrailer(in[i])) return i + 1;  // an empty line between messages
  buffer_.clear();
  count_ = 0;
  digits_ = 0;
  state_ = IsDigit(in[i]) ? State::kCount : State::kLine;
  return i;
}

// MSG-LEN digits, then SP. On a bad count the digits stay in buffer_ and the
// frame continues as a non-transparent line from the offending byte.
size_t SyslogStreamFramer::OnCount(std::span<const uint8_t> in, size_t i) {
  const uint8_t b = in[i];
  if (b == ' ' && digits_ > 0) {
    buffer_.clear();
    remaining_ = count_;
    delivered_ = false;
    state_ = State::kOctets;
    return i + 1;
  }
  const bool leading_zero = digits_ == 0 && b == '0';
  if (!IsDigit(b) || leading_zero || digits_ == kOctetCountDigitsMax) {
    ++counters_.framing_errors;
    state_ = State::kLine;
    return i;
  }
  count_ = count_ * 10 + (b - '0');
  ++digits_;
  buffer_.push_back(static_cast<char>(b));
  return i + 1;
}

// The MSG-LEN bytes of an octet-counted frame: the first max_ are the
// message, the rest is discarded.
size_t SyslogStreamFramer::OnOctets(std::span<const uint8_t> in, size_t i, const Emit& emit) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
  const size_t want = static_cast<size_t>(std::min<uint64_t>(count_, max_));
  if (!delivered_) {
    const size_t keep = std::min(take, want - buffer_.size());
    const std::span<const uint8_t> part = in.subspan(i, keep);
    const bool truncated = count_ > max_;
    if (buffer_.empty() && keep == want) {
      Deliver(View(part), truncated, emit);  // whole message in this chunk: no copy
      delivered_ = true;
    } else {
      Append(part);
      if (buffer_.size() == want) {
        Deliver(Buffered(), truncated, emit);
        buffer_.clear();
        delivered_ = true;
      }
    }
  }
  remaining_ -= take;
  if (remaining_ == 0) {
    buffer_.clear();
    state_ = State::kFrameStart;
  }
  return i + take;
}

// A non-transparent message: bytes up to LF/NUL; cut at max_.
size_t SyslogStreamFramer::OnLine(std::span<const uint8_t> in, size_t i, const Emit& emit) {
  const size_t end = FindTrailer(in, i);
  const std::span<const uint8_t> part = in.subspan(i, end - i);
  const size_t room = max_ - std::min(max_, buffer_.size());
  if (part.size() > room) {  // over the limit: deliver what fits, skip the rest
    Append(part.first(room));
    DeliverLine(Buffered(), true, emit);
    buffer_.clear();
    state_ = State::kSkipLine;
    return i + room;
  }
  if (end == in.size()) {  // no trailer yet
    Append(part);
    return end;
  }
  if (buffer_.empty()) {
    DeliverLine(View(part), false, emit);  // whole line in this chunk: no copy
  } else {
    Append(part);
    DeliverLine(Buffered(), false, emit);
    buffer_.clear();
  }
  state_ = State::kFrameStart;
  return end + 1;
}

size_t SyslogStreamFramer::OnSkipLine(std::span<const uint8_t> in, size_t i) {
  const size_t end = FindTrailer(in, i);
  if (end == in.size()) return end;
  state_ = State::kFrameStart;
  return end + 1;
}

void SyslogStreamFramer::FinishWith(const Emit& emit) {
  switch (state_) {
    case State::kCount:  // "123" and then the end: a bad count, kept as a line
      ++counters_.framing_errors;
      DeliverLine(Buffered(), false, emit);
      break;
    case State::kLine:
      DeliverLine(Buffered(), false, emit);
      break;
    case State::kOctets:
      ++counters_.framing_errors;
      if (!delivered_ && !buffer_.empty()) Deliver(Buffered(), true, emit);
      break;
    case State::kFrameStart:
    case State::kSkipLine:
      break;
  }
  buffer_.clear();
  state_ = State::kFrameStart;
}

// Grows buffer_ geometrically but never past max_ + kOctetCountDigitsMax
// (vector::reserve allocates exactly what is asked).
void SyslogStreamFramer::Append(std::span<const uint8_t> bytes) {
  const size_t need = buffer_.size() + bytes.size();
  TANDEM_CHECK(need <= max_ + kOctetCountDigitsMax);
  if (need > buffer_.capacity()) {
    buffer_.reserve(std::min(max_ + kOctetCountDigitsMax, std::max(need, 2 * buffer_.capacity())));
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

void SyslogStreamFramer::Deliver(std::string_view message, bool truncated, const Emit& emit) {
  ++counters_.messages;
  if (truncated) ++counters_.truncated;
  emit(message, truncated);
}

// A line that is empty or only the CR of a CRLF is not a message.
void SyslogStreamFramer::DeliverLine(std::string_view line, bool truncated, const Emit& emit) {
  if (line.empty() || line == "\r") return;
  Deliver(line, truncated, emit);
}

DatagramMessage FrameDatagram(std::span<const uint8_t> datagram, size_t message_bytes_max) {
  std::string_view m = View(datagram);
  while (!m.empty() && (m.back() == '\n' || m.back() == '\0')) m.remove_suffix(1);
  if (m.size() <= message_bytes_max) return {m, false};
  return {m.substr(0, message_bytes_max), true};
}

}  // namespace tandem::collect
