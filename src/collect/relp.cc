#include "collect/relp.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace tandem::collect {
namespace {

constexpr std::string_view kOk = "200 OK";
// What we accept in the `open` rsp: protocol version 0 (what librelp speaks;
// relp.html calls it "experimental", but every deployed peer uses it) and
// the one optional command we implement.
constexpr std::string_view kOpenOk =
    "200 OK\nrelp_version=0\nrelp_software=tandem\ncommands=syslog";
// librelp's server answers a repeated `open` this way instead of failing
// (some librelp clients send one inside a live session); so do we.
constexpr std::string_view kDuplicateOpen = "200 connection already open - ignored";
constexpr std::string_view kServerClose = "serverclose";
// Offer grammar limits (relp.html: FEATURENAME = *32OCTET, VALUE = *255OCTET).
constexpr size_t kOfferNameBytesMax = 32;
constexpr size_t kOfferValueBytesMax = 255;

static_assert(kRelpTxnrMax == 999'999'999, "TXNR is at most 9 digits");
static_assert(kOpenOk.size() < kRelpReasonBytesMax + 64, "open rsp stays small");

bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsAlpha(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Printable, LF-free, at most kRelpReasonBytesMax bytes.
std::string SanitizeReason(std::string_view why) {
  std::string out(why.substr(0, kRelpReasonBytesMax));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

struct Offers {
  std::optional<uint32_t> relp_version;
  bool syslog = false;
};

// Parses `open` DATA: offers separated by LF, each NAME["=" VALUE *("," VALUE)].
// Unknown offers are ignored; the result is an error text or the offers.
std::optional<std::string> ParseOffers(std::string_view data, Offers* offers) {
  while (!data.empty()) {
    size_t eol = data.find('\n');
    std::string_view line = data.substr(0, eol);
    data = eol == std::string_view::npos ? std::string_view() : data.substr(eol + 1);
    if (line.empty()) continue;
    size_t eq = line.find('=');
    std::string_view name = line.substr(0, eq);
    if (name.empty() || name.size() > kOfferNameBytesMax) return "bad offer name";
    std::vector<std::string_view> values;
    if (eq != std::string_view::npos) {
      std::string_view rest = line.substr(eq + 1);
      while (true) {
        size_t comma = rest.find(',');
        std::string_view v = rest.substr(0, comma);
        if (v.size() > kOfferValueBytesMax) return "offer value too long";
        if (!v.empty()) values.push_back(v);
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
      }
    }
    if (name == "relp_version") {
      if (values.size() != 1 || values[0].size() > kRelpNumberDigitsMax ||
          !std::all_of(values[0].begin(), values[0].end(),
                       [](char c) { return IsDigit(static_cast<uint8_t>(c)); })) {
        return "bad relp_version offer";
      }
      uint32_t v = 0;
      for (char c : values[0]) v = v * 10 + static_cast<uint32_t>(c - '0');
      offers->relp_version = v;
    } else if (name == "commands") {
      for (std::string_view v : values) {
        if (v == "syslog") offers->syslog = true;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

RelpTxnr RelpNextTxnr(RelpTxnr t) {
  TANDEM_CHECK(t >= 1 && t <= kRelpTxnrMax);
  return t == kRelpTxnrMax ? 1 : t + 1;
}

RelpSession::RelpSession(RelpLimits limits) : limits_(limits) {
  TANDEM_CHECK(limits_.window_max >= 1);
  TANDEM_CHECK(limits_.data_bytes_max >= 1 && limits_.data_bytes_max <= kRelpTxnrMax);
}

bool RelpSession::want_read() const {
  return !closed_ && state_ != State::kClosing && pending_.size() < limits_.window_max;
}

void RelpSession::TEST_SetExpectedTxnr(RelpTxnr t) {
  TANDEM_CHECK(t >= 1 && t <= kRelpTxnrMax && pending_.empty());
  expected_txnr_ = t;
}

Status RelpSession::Feed(std::span<const uint8_t> in, std::vector<RelpMessage>* out) {
  if (closed_) return error_.ok() ? Status::Error("relp: session closed") : error_;
  counters_.bytes_received += in.size();
  size_t pos = 0;
  while (pos < in.size() && !closed_) {
    if (parse_ == ParseState::kData) {
      pos += ParseData(in.subspan(pos));
      continue;
    }
    uint8_t c = in[pos++];
    if (parse_ == ParseState::kTrailer) {
      if (c != '\n') {
        Fail(TxnPrefix() + "no LF trailer after DATALEN bytes (DATALEN wrong?)");
        break;
      }
      FinishFrame(out);
      continue;
    }
    if (ParseHeaderByte(c)) FinishFrame(out);
  }
  if (!error_.ok()) return error_;
  if (pos < in.size()) {
    // Bytes after the `close` that ended the session; nothing to answer.
    return Status::Error("relp: " + std::to_string(in.size() - pos) + " bytes after close");
  }
  return Status::Ok();
}

// Consumes one header byte. Returns true when the byte ended a frame without
// data (DATALEN 0, then LF). On bad input calls Fail and returns false.
bool RelpSession::ParseHeaderByte(uint8_t c) {
  switch (parse_) {
    case ParseState::kTxnr:
      ParseTxnrByte(c);
      return false;
    case ParseState::kCommand:
      ParseCommandByte(c);
      return false;
    case ParseState::kDatalen:
      return ParseDatalenByte(c);
    case ParseState::kData:
    case ParseState::kTrailer:
      break;
  }
  TANDEM_CHECK(false);
  return false;
}

void RelpSession::ParseTxnrByte(uint8_t c) {
  if (IsDigit(c)) {
    if (++digits_ > kRelpNumberDigitsMax) {
      Fail("relp: TXNR longer than 9 digits");
      return;
    }
    txnr_ = txnr_ * 10 + (c - '0');
    return;
  }
  if (c != ' ' || digits_ == 0) {
    Fail("relp: frame does not start with a TXNR");
  } else if (txnr_ != expected_txnr_) {
    Fail("relp: txnr " + std::to_string(txnr_) + " out of sequence (expected " +
         std::to_string(expected_txnr_) + ")");
  } else {
    parse_ = ParseState::kCommand;
  }
}

void RelpSession::ParseCommandByte(uint8_t c) {
  if (IsAlpha(c)) {
    if (command_.size() == kRelpCommandBytesMax) {
      Fail(TxnPrefix() + "command longer than 32 letters");
      return;
    }
    command_.push_back(static_cast<char>(c));
    return;
  }
  if (c != ' ' || command_.empty()) {
    Fail(TxnPrefix() + "bad command");
    return;
  }
  parse_ = ParseState::kDatalen;
  digits_ = 0;
}

bool RelpSession::ParseDatalenByte(uint8_t c) {
  if (IsDigit(c)) {
    if (++digits_ > kRelpNumberDigitsMax) {
      Fail(TxnPrefix() + "DATALEN longer than 9 digits");
    } else if ((datalen_ = datalen_ * 10 + (c - '0')) > limits_.data_bytes_max) {
      Fail(TxnPrefix() + "DATALEN over the limit of " + std::to_string(limits_.data_bytes_max) +
           " bytes");
    }
    return false;
  }
  if (digits_ == 0) {
    Fail(TxnPrefix() + "no DATALEN");
  } else if (c == '\n' && datalen_ == 0) {
    return true;
  } else if (c != ' ' || datalen_ == 0) {
    Fail(TxnPrefix() + "bad byte after DATALEN");
  } else {
    BeginData();
  }
  return false;
}

std::string RelpSession::TxnPrefix() const { return "relp: txnr " + std::to_string(txnr_) + ": "; }

void RelpSession::BeginData() {
  parse_ = ParseState::kData;
  data_.clear();
  data_.reserve(datalen_);  // <= data_bytes_max, checked above
}

size_t RelpSession::ParseData(std::span<const uint8_t> in) {
  size_t n = std::min<size_t>(in.size(), datalen_ - data_.size());
  data_.append(reinterpret_cast<const char*>(in.data()), n);
  if (data_.size() == datalen_) parse_ = ParseState::kTrailer;
  return n;
}

void RelpSession::FinishFrame(std::vector<RelpMessage>* out) {
  ++counters_.frames;
  expected_txnr_ = RelpNextTxnr(expected_txnr_);
  if (state_ == State::kClosing) {
    Fail(TxnPrefix() + "command after close");
  } else if (command_ == "syslog") {
    HandleSyslog(out);
  } else if (command_ == "open") {
    HandleOpen();
  } else if (command_ == "close") {
    HandleClose();
  } else {
    Fail(TxnPrefix() + "unsupported command '" + command_ + "'",
         /*answer=*/true);
  }
  parse_ = ParseState::kTxnr;
  digits_ = 0;
  txnr_ = 0;
  datalen_ = 0;
  command_.clear();
  data_.clear();
}

void RelpSession::HandleSyslog(std::vector<RelpMessage>* out) {
  if (state_ != State::kOpen) {
    Fail(TxnPrefix() + "syslog before open", /*answer=*/true);
    return;
  }
  if (!Push(TxnKind::kMessage, /*ready=*/false, std::string())) return;
  ++in_flight_;
  ++counters_.messages;
  counters_.message_bytes += data_.size();
  out->push_back(RelpMessage{txnr_, std::move(data_)});
}

void RelpSession::HandleOpen() {
  if (state_ == State::kOpen) {
    ++counters_.duplicate_opens;
    if (Push(TxnKind::kReply, /*ready=*/true, std::string(kDuplicateOpen))) Flush();
    return;
  }
  Offers offers;
  if (auto bad = ParseOffers(data_, &offers)) {
    Fail("relp: open: " + *bad, /*answer=*/true);
  } else if (!offers.relp_version) {
    Fail("relp: open: no relp_version offer", /*answer=*/true);
  } else if (!offers.syslog) {
    Fail("relp: open: client does not offer commands=syslog", /*answer=*/true);
  } else if (Push(TxnKind::kReply, /*ready=*/true, std::string(kOpenOk))) {
    state_ = State::kOpen;
    Flush();
  }
}

void RelpSession::HandleClose() {
  // librelp answers `close` with an empty rsp ("N rsp 0"), which librelp's
  // own client cannot parse (it needs a 3-digit code); "200 OK" takes its
  // clean path. The rsp goes out after every earlier one; then we are done.
  if (Push(TxnKind::kClose, /*ready=*/true, std::string(kOk))) {
    state_ = State::kClosing;
    Flush();
  }
}

bool RelpSession::Push(TxnKind kind, bool ready, std::string rsp) {
  size_t max = limits_.window_max + (kind == TxnKind::kClose ? 1 : 0);
  if (pending_.size() >= max) {
    Fail(TxnPrefix() + "more than " + std::to_string(limits_.window_max) +
         " transactions unanswered (sender window too big)");
    return false;
  }
  pending_.push_back(Txn{txnr_, kind, ready, std::move(rsp)});
  return true;
}

RelpSession::Txn* RelpSession::Find(RelpTxnr txnr) {
  if (pending_.empty() || txnr < 1 || txnr > kRelpTxnrMax) return nullptr;
  RelpTxnr front = pending_.front().txnr;
  size_t index = txnr >= front ? txnr - front : txnr + kRelpTxnrMax - front;
  if (index >= pending_.size()) return nullptr;
  Txn* t = &pending_[index];
  TANDEM_CHECK(t->txnr == txnr);  // pending_ holds consecutive txnrs
  return t;
}

void RelpSession::Ack(RelpTxnr txnr) {
  if (closed_) return;
  Txn* t = Find(txnr);
  TANDEM_CHECK(t != nullptr && t->kind == TxnKind::kMessage && !t->ready);
  t->ready = true;
  t->rsp = kOk;
  --in_flight_;
  ++counters_.acked;
  Flush();
}

void RelpSession::Nack(RelpTxnr txnr, std::string_view why) {
  if (closed_) return;
  Txn* t = Find(txnr);
  TANDEM_CHECK(t != nullptr && t->kind == TxnKind::kMessage && !t->ready);
  t->ready = true;
  t->rsp = "500 " + SanitizeReason(why);
  --in_flight_;
  ++counters_.nacked;
  Flush();
}

void RelpSession::Flush() {
  while (!pending_.empty() && pending_.front().ready) {
    Txn& t = pending_.front();
    AppendFrame(t.txnr, "rsp", t.rsp);
    ++counters_.rsp_sent;
    bool close = t.kind == TxnKind::kClose;
    pending_.pop_front();
    if (close) {
      TANDEM_CHECK(pending_.empty());  // nothing is accepted after close
      closed_ = true;
    }
  }
}

void RelpSession::ServerClose() {
  if (closed_) return;
  AppendFrame(0, kServerClose, "");
  pending_.clear();
  in_flight_ = 0;
  closed_ = true;
}

void RelpSession::Fail(std::string why, bool answer) {
  TANDEM_CHECK(!closed_);
  // The offending frame's txnr_ was never pushed; it may be answered only if
  // no earlier rsp is still owed, to keep rsps in order.
  if (answer && pending_.empty() && txnr_ != 0) {
    std::string_view text = std::string_view(why).substr(std::string_view("relp: ").size());
    AppendFrame(txnr_, "rsp", "500 " + SanitizeReason(text));
    ++counters_.rsp_sent;
  }
  error_ = Status::Error(std::move(why));
  ServerClose();
}

std::string RelpSession::TakeOutput() { return std::exchange(output_, std::string()); }

void RelpSession::AppendFrame(RelpTxnr txnr, std::string_view command, std::string_view data) {
  output_ += std::to_string(txnr);
  output_ += ' ';
  output_ += command;
  output_ += ' ';
  output_ += std::to_string(data.size());
  if (!data.empty()) {
    output_ += ' ';
    output_ += data;
  }
  output_ += '\n';
}

}  // namespace tandem::collect
