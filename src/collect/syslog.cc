#include "collect/syslog.h"

#include <array>
#include <optional>
#include <string>

namespace tandem::collect {
namespace {

constexpr int64_t kUsPerSecond = 1'000'000;
constexpr int64_t kSecondsPerDay = 86'400;
constexpr int kPriMax = 191;  // facility 23, severity 7
constexpr size_t kSecfracDigitsMax = 9;  // RFC 5424 allows 6; nanoseconds are cut to µs
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// RFC 5424 PRINTUSASCII: %d33-126.
bool IsPrint(char c) { return c >= 33 && c <= 126; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// A read position in one message. Every accessor checks the bounds, so no
// parser below can read past the input.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}

  bool done() const { return pos_ >= s_.size(); }
  size_t pos() const { return pos_; }
  void set_pos(size_t p) { pos_ = p; }
  std::string_view rest() const { return s_.substr(pos_); }
  std::string_view from(size_t start) const { return s_.substr(start, pos_ - start); }
  bool At(char c) const { return !done() && s_[pos_] == c; }

  bool Consume(char c) {
    if (!At(c)) return false;
    ++pos_;
    return true;
  }
  // Reads exactly `n` digits into *v; on failure the position is unchanged.
  bool Digits(size_t n, int* v) {
    if (s_.size() - pos_ < n) return false;
    int x = 0;
    for (size_t i = 0; i < n; ++i) {
      const char c = s_[pos_ + i];
      if (!IsDigit(c)) return false;
      x = x * 10 + (c - '0');
    }
    pos_ += n;
    *v = x;
    return true;
  }
  // Reads up to the next SP (or the end); the SP is not consumed.
  std::string_view Word() {
    const size_t start = pos_;
    while (!done() && s_[pos_] != ' ') ++pos_;
    return from(start);
  }
  void SkipSpaces() {
    while (At(' ')) ++pos_;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

// The header fields of one message, as views into it.
struct Fields {
  int64_t time_us = 0;
  std::string_view host, app, procid, msgid, sd, message;
};

std::string_view StripTrailer(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view Nil(std::string_view v) { return v == "-" ? std::string_view() : v; }

// --- Calendar ---------------------------------------------------------------

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t y, int m) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[static_cast<size_t>(m - 1)];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil). REQUIRES: 1 <= m <= 12, 1 <= d <= DaysInMonth(y, m).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t mp = m > 2 ? m - 3 : m + 9;
  const int64_t doy = (153 * mp + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// The UTC year of a time in microseconds since the epoch.
int64_t YearOf(int64_t time_us) {
  int64_t days = time_us / (kSecondsPerDay * kUsPerSecond);
  if (time_us % (kSecondsPerDay * kUsPerSecond) < 0) --days;  // floor
  // civil_from_days, year only.
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  return yoe + era * 400 + (mp >= 10 ? 1 : 0);
}

struct CivilTime {
  int64_t year = 0;
  int month = 0, day = 0, hour = 0, minute = 0, second = 0;
  int64_t frac_us = 0;
};

// REQUIRES: the fields are in range (day valid for the month and year).
int64_t ToUnixUs(const CivilTime& t, int64_t offset_s) {
  const int64_t s = DaysFromCivil(t.year, t.month, t.day) * kSecondsPerDay + t.hour * 3600 +
                    t.minute * 60 + t.second - offset_s;
  return s * kUsPerSecond + t.frac_us;
}

bool TimeOfDayValid(const CivilTime& t) {
  // second 60: a leap second (RFC 3339 §5.6); it counts as the next second.
  return t.hour <= 23 && t.minute <= 59 && t.second <= 60;
}

// "." 1*9DIGIT, if present: the fraction in microseconds (digits past the
// sixth are dropped). False on a '.' without digits.
bool ParseFraction(Cursor* c, size_t digits_max, int64_t* frac_us) {
  *frac_us = 0;
  if (!c->Consume('.')) return true;
  size_t n = 0;
  int d = 0;
  while (n < digits_max && c->Digits(1, &d)) {
    if (n < 6) *frac_us = *frac_us * 10 + d;
    ++n;
  }
  if (n == 0) return false;
  for (size_t i = n; i < 6; ++i) *frac_us *= 10;
  return true;
}

// --- Timestamps -------------------------------------------------------------

// "Z" / ("+" / "-") HH ":" MM, as seconds east of UTC. On failure the
// cursor is unchanged.
bool ParseOffset(Cursor* c, int64_t* offset_s) {
  if (c->Consume('Z') || c->Consume('z')) {
    *offset_s = 0;
    return true;
  }
  const size_t start = c->pos();
  const bool east = c->At('+');
  if (!east && !c->At('-')) return false;
  c->set_pos(c->pos() + 1);
  int h = 0, m = 0;
  if (!c->Digits(2, &h) || !c->Consume(':') || !c->Digits(2, &m) || h > 23 || m > 59) {
    c->set_pos(start);
    return false;
  }
  *offset_s = (east ? 1 : -1) * (h * 3600 + m * 60);
  return true;
}

// Whether an RFC 3339 timestamp must carry its offset. RFC 5424 requires
// one; in RFC 3164 headers syslog-ng's loggen sends "2007-12-24T12:28:51"
// (local time, no zone), taken as UTC like a BSD timestamp.
enum class Offset : uint8_t { kRequired, kOptional };

// RFC 3339 / RFC 5424 TIMESTAMP (without NILVALUE) -> UTC µs. On failure the
// cursor is unchanged.
std::optional<int64_t> ParseRfc3339(Cursor* c, Offset offset) {
  const size_t start = c->pos();
  CivilTime t;
  int year = 0;
  int64_t offset_s = 0;
  const bool ok = c->Digits(4, &year) && c->Consume('-') && c->Digits(2, &t.month) &&
                  c->Consume('-') && c->Digits(2, &t.day) && (c->Consume('T') || c->Consume('t')) &&
                  c->Digits(2, &t.hour) && c->Consume(':') && c->Digits(2, &t.minute) &&
                  c->Consume(':') && c->Digits(2, &t.second) &&
                  ParseFraction(c, kSecfracDigitsMax, &t.frac_us) &&
                  (ParseOffset(c, &offset_s) ||
                   (offset == Offset::kOptional && (c->done() || c->At(' ') || c->At(':'))));
  t.year = year;
  if (!ok || t.month < 1 || t.month > 12 || t.day < 1 || t.day > DaysInMonth(t.year, t.month) ||
      !TimeOfDayValid(t)) {
    c->set_pos(start);
    return std::nullopt;
  }
  return ToUnixUs(t, offset_s);
}

// "Jan".."Dec", case-insensitive -> 1..12; 0 if none.
int ParseMonth(Cursor* c) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  const std::string_view r = c->rest();
  if (r.size() < 3) return 0;
  const std::array<char, 3> w = {Lower(r[0]), Lower(r[1]), Lower(r[2])};
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (std::string_view(w.data(), 3) == kMonths[i]) {
      c->set_pos(c->pos() + 3);
      return static_cast<int>(i) + 1;
    }
  }
  return 0;
}

// The time of a year-less BSD timestamp: the latest of the receive time's
// UTC year + 1, year, year - 1 in which the date exists and which is not more
// than kSyslogFutureSkewUs after the receive time. 0 if none.
int64_t InferYear(CivilTime t, int64_t receive_time_us) {
  const int64_t year = YearOf(receive_time_us);
  if (year < 1 || year > 9998) return 0;  // keeps the arithmetic far from overflow
  for (int64_t y = year + 1; y >= year - 1; --y) {
    if (t.day > DaysInMonth(y, t.month)) continue;
    t.year = y;
    const int64_t us = ToUnixUs(t, 0);
    if (us - receive_time_us <= kSyslogFutureSkewUs) return us;
  }
  return 0;
}

// RFC 3164 "Mmm dd hh:mm:ss" (day space- or zero-padded, or one digit), also
// with milliseconds ("hh:mm:ss.mmm", Cisco), a year before the time
// ("Mmm dd yyyy hh:mm:ss", Cisco ASA) and a leading '*' or '.' (Cisco's
// clock-not-synchronised marks). False (cursor unchanged) if none; else
// *time_us is the UTC time (taken as UTC: the format has no zone), 0 if the
// date does not exist.
bool ParseBsdTimestamp(Cursor* c, int64_t receive_time_us, int64_t* time_us) {
  const size_t start = c->pos();
  if (!c->Consume('*')) c->Consume('.');
  CivilTime t;
  int year = -1;
  t.month = ParseMonth(c);
  bool ok = t.month != 0 && c->Consume(' ');
  if (ok) {
    if (c->Consume(' ')) {
      ok = c->Digits(1, &t.day);
    } else {
      ok = c->Digits(2, &t.day) || c->Digits(1, &t.day);
    }
  }
  ok = ok && c->Consume(' ');
  if (ok && c->Digits(4, &year)) ok = c->Consume(' ');
  ok = ok && c->Digits(2, &t.hour) && c->Consume(':') && c->Digits(2, &t.minute) &&
       c->Consume(':') && c->Digits(2, &t.second) && ParseFraction(c, 6, &t.frac_us);
  if (!ok || t.day < 1 || t.day > DaysInMonth(2000, t.month) || !TimeOfDayValid(t)) {
    c->set_pos(start);
    return false;
  }
  if (year < 0) {
    *time_us = InferYear(t, receive_time_us);
  } else {
    t.year = year;
    *time_us = t.day <= DaysInMonth(year, t.month) ? ToUnixUs(t, 0) : 0;
  }
  return true;
}

// --- RFC 5424 ---------------------------------------------------------------

// 1*max PRINTUSASCII followed by SP (consumed), or by the end when
// `end_ok`. NILVALUE "-" gives "".
bool HeaderField(Cursor* c, size_t max, bool end_ok, std::string_view* v) {
  const std::string_view w = c->Word();
  if (w.empty() || w.size() > max) return false;
  for (char ch : w) {
    if (!IsPrint(ch)) return false;
  }
  if (!c->Consume(' ') && !(end_ok && c->done())) return false;
  *v = Nil(w);
  return true;
}

// SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']', '"'.
bool ScanSdName(Cursor* c) {
  const std::string_view r = c->rest();
  size_t n = 0;
  while (n < r.size() && IsPrint(r[n]) && r[n] != '=' && r[n] != ']' && r[n] != '"') ++n;
  if (n == 0 || n > kSyslogSdNameBytesMax) return false;
  c->set_pos(c->pos() + n);
  return true;
}

// PARAM-VALUE after the opening '"', through the closing '"'. '\' escapes
// the next byte ('\"', '\\', '\]'). An unescaped ']' is tolerated: inside
// the quotes it is unambiguous.
bool ScanParamValue(Cursor* c) {
  const std::string_view r = c->rest();
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i] == '\\') {
      ++i;  // skip the escaped byte (if it is the last byte, the loop ends)
    } else if (r[i] == '"') {
      c->set_pos(c->pos() + i + 1);
      return true;
    }
  }
  return false;
}

// SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]"; SD-PARAM = NAME "=" '"' VALUE '"'.
bool ScanSdElement(Cursor* c) {
  if (!c->Consume('[') || !ScanSdName(c)) return false;
  while (!c->Consume(']')) {
    if (!c->Consume(' ') || !ScanSdName(c) || !c->Consume('=') || !c->Consume('"') ||
        !ScanParamValue(c)) {
      return false;
    }
  }
  return true;
}

std::string_view StripBom(std::string_view s) {
  if (s.starts_with(kUtf8Bom)) s.remove_prefix(kUtf8Bom.size());
  return s;
}

// STRUCTURED-DATA [SP MSG] at the cursor. Lenient: if it is not valid
// STRUCTURED-DATA followed by SP or the end, the whole rest is MSG (the header
// fields are kept; nothing is lost).
void ParseSdAndMsg(Cursor* c, Fields* f) {
  const size_t start = c->pos();
  bool ok = c->Consume('-');
  if (!ok && c->At('[')) {
    ok = true;
    while (ok && c->At('[')) ok = ScanSdElement(c);
  }
  if (ok && (c->done() || c->At(' '))) {
    f->sd = Nil(c->from(start));
    c->Consume(' ');
    f->message = StripBom(c->rest());
    return;
  }
  c->set_pos(start);
  f->sd = {};
  f->message = c->rest();
}

// VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG],
// after the PRI. A message that ends right after MSGID is accepted (SD and MSG
// empty). False if the header does not fit the grammar.
bool ParseRfc5424(std::string_view s, Fields* f) {
  Cursor c(s);
  int version = 0;
  if (!c.Digits(1, &version) || version == 0) return false;
  for (int i = 0; i < 2 && c.Digits(1, &version);) ++i;
  if (!c.Consume(' ')) return false;
  if (!c.Consume('-')) {
    const std::optional<int64_t> t = ParseRfc3339(&c, Offset::kRequired);
    if (!t) return false;
    f->time_us = *t;
  }
  if (!c.Consume(' ')) return false;
  if (!HeaderField(&c, kSyslogHostBytesMax, false, &f->host) ||
      !HeaderField(&c, kSyslogAppBytesMax, false, &f->app) ||
      !HeaderField(&c, kSyslogProcidBytesMax, false, &f->procid) ||
      !HeaderField(&c, kSyslogMsgidBytesMax, true, &f->msgid)) {
    return false;
  }
  ParseSdAndMsg(&c, f);
  return true;
}

// --- RFC 3164 ---------------------------------------------------------------

// TAG byte: PRINTUSASCII except ':', '[' and ']'.
bool IsTagChar(char c) { return IsPrint(c) && c != ':' && c != '[' && c != ']'; }

bool AllDigits(std::string_view s) {
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// TAG ["[" PID "]"] ":" SP MSG, where the ':' is optional after a [PID] and
// the SP optional at the end. If the content does not start with a TAG, it
// is all MSG. A TAG of only digits is a sequence number (Cisco), not a TAG.
void ParseTagAndMsg(std::string_view s, Fields* f) {
  f->message = s;
  size_t i = 0;
  while (i < s.size() && i <= kSyslogTagBytesMax && IsTagChar(s[i])) ++i;
  if (i == 0 || i > kSyslogTagBytesMax || AllDigits(s.substr(0, i))) return;
  std::string_view pid;
  size_t j = i;
  if (j < s.size() && s[j] == '[') {
    const size_t close = s.find(']', j + 1);
    if (close == std::string_view::npos || close - j - 1 > kSyslogProcidBytesMax) return;
    pid = s.substr(j + 1, close - j - 1);
    for (char c : pid) {
      if (!IsPrint(c)) return;
    }
    j = close + 1;
  }
  const bool colon = j < s.size() && s[j] == ':';
  if (colon) ++j;
  const bool end_or_space = j == s.size() || s[j] == ' ';
  if (!end_or_space || (!colon && j == i)) return;  // a bare word is not a TAG
  if (j < s.size()) ++j;
  f->app = s.substr(0, i);
  f->procid = pid;
  f->message = s.substr(j);
}

// HOSTNAME after a timestamp: a word of PRINTUSASCII followed by SP that does
// not end in ':' and has no '[' or ']' (those make it a TAG). Cursor is
// unchanged if there is none.
void ParseBsdHost(Cursor* c, Fields* f) {
  const size_t start = c->pos();
  const std::string_view w = c->Word();
  bool ok = !w.empty() && w.size() <= kSyslogHostBytesMax && w.back() != ':' && c->At(' ');
  for (size_t i = 0; ok && i < w.size(); ++i) ok = IsPrint(w[i]) && w[i] != '[' && w[i] != ']';
  if (!ok) {
    c->set_pos(start);
    return;
  }
  f->host = Nil(w);
  c->SkipSpaces();
  // Cisco ASA with "logging device-id": "<host> : %ASA-6-302013: ...".
  if (c->rest().starts_with(": ")) c->set_pos(c->pos() + 2);
}

// [TIMESTAMP SP [HOSTNAME SP]] [TAG] MSG, after the (optional) PRI. The
// timestamp is RFC 3164's or RFC 3339's (rsyslog's forwarding format). Without
// a PRI a timestamp is required; false if the text is not RFC 3164 then.
bool ParseRfc3164(std::string_view s, bool have_pri, int64_t receive_time_us, Fields* f) {
  Cursor c(s);
  bool have_time = false;
  if (const std::optional<int64_t> t = ParseRfc3339(&c, Offset::kOptional)) {
    f->time_us = *t;
    have_time = true;
  } else {
    have_time = ParseBsdTimestamp(&c, receive_time_us, &f->time_us);
  }
  if (have_time) {
    c.Consume(':');  // Cisco: "Mar  1 18:46:11.123: %SYS-5-..."
    if (c.Consume(' ') || c.done()) {
      c.SkipSpaces();
      ParseBsdHost(&c, f);
    } else {  // "Oct 11 22:14:15x": not a timestamp after all
      have_time = false;
      f->time_us = 0;
      c.set_pos(0);
    }
  }
  if (!have_time && !have_pri) return false;
  ParseTagAndMsg(c.rest(), f);
  return true;
}

// PRI = "<" 1*3DIGIT ">", value 0..191. Returns the PRI and sets *len to its
// length, or -1 if `s` does not start with one.
int ParsePri(std::string_view s, size_t* len) {
  if (s.size() < 3 || s[0] != '<') return -1;
  int pri = 0;
  size_t i = 1;
  while (i < s.size() && i <= 3 && IsDigit(s[i])) pri = pri * 10 + (s[i++] - '0');
  if (i == 1 || i >= s.size() || s[i] != '>' || pri > kPriMax) return -1;
  *len = i + 1;
  return pri;
}

}  // namespace

void ParseSyslogInto(std::string_view msg, int64_t receive_time_us, std::string_view sender,
                     store::EventRecord* out) {
  const std::string_view line = StripTrailer(msg);
  size_t pri_len = 0;
  const int pri = ParsePri(line, &pri_len);
  const std::string_view body = pri >= 0 ? line.substr(pri_len) : line;
  Fields f;
  store::EventFormat format = store::EventFormat::kRaw;
  if (pri >= 0 && ParseRfc5424(body, &f)) {
    format = store::EventFormat::kRfc5424;
  } else if (f = Fields{}; ParseRfc3164(body, pri >= 0, receive_time_us, &f)) {
    format = store::EventFormat::kRfc3164;
  } else {
    f = Fields{};
    f.message = line;
  }
  out->event_time_us = f.time_us;
  out->receive_time_us = receive_time_us;
  out->facility = static_cast<int16_t>(pri >= 0 ? pri / 8 : -1);
  out->severity = static_cast<int16_t>(pri >= 0 ? pri % 8 : -1);
  out->format = format;
  out->truncated = false;
  out->host.assign(f.host);
  out->app.assign(f.app);
  out->procid.assign(f.procid);
  out->msgid.assign(f.msgid);
  out->structured_data.assign(f.sd);
  out->message.assign(f.message);
  out->sender.assign(sender);
}

store::EventRecord ParseSyslog(std::string_view msg, int64_t receive_time_us,
                               std::string_view sender) {
  store::EventRecord r;
  ParseSyslogInto(msg, receive_time_us, sender, &r);
  return r;
}

Result<int> ParseSeverity(std::string_view text) {
  struct Name {
    std::string_view name;
    int severity;
  };
  static constexpr std::array<Name, 14> kNames = {{
      {"emerg", 0}, {"emergency", 0}, {"panic", 0}, {"alert", 1}, {"crit", 2},
      {"critical", 2}, {"err", 3}, {"error", 3}, {"warning", 4}, {"warn", 4},
      {"notice", 5}, {"info", 6}, {"informational", 6}, {"debug", 7},
  }};
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '7') return text[0] - '0';
  if (text.size() <= 16) {
    std::array<char, 16> lower{};
    for (size_t i = 0; i < text.size(); ++i) lower[i] = Lower(text[i]);
    const std::string_view l(lower.data(), text.size());
    for (const Name& n : kNames) {
      if (l == n.name) return n.severity;
    }
  }
  return Status::Error("unknown severity '" + std::string(text) +
                       "' (expected 0..7 or emerg, alert, crit, err, warning, notice, info, "
                       "debug)");
}

std::string_view SeverityName(int severity) {
  static constexpr std::array<std::string_view, 8> kNames = {
      "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};
  if (severity < 0 || severity > 7) return "-";
  return kNames[static_cast<size_t>(severity)];
}

}  // namespace tandem::collect
