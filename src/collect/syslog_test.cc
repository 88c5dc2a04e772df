#include "collect/syslog.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "collect/framing.h"

namespace tandem::collect {
namespace {

using store::EventFormat;
using store::EventRecord;
using namespace std::string_literals;

constexpr std::string_view kSender = "192.0.2.7:514";

// Independent oracle for expected times: glibc's timegm.
int64_t Utc(int y, int mo, int d, int h, int mi, int s, int64_t us = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000 + us;
}

const int64_t kRecv = Utc(2024, 10, 20, 12, 0, 0);

bool AllDigitsForTest(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

EventRecord Parse(std::string_view msg, int64_t recv = kRecv) {
  return ParseSyslog(msg, recv, kSender);
}

// --- RFC 5424 ---------------------------------------------------------------

TEST(SyslogRfc5424, Rfc5424Example1WithBom) {
  const EventRecord r = Parse(
      "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' "
      "failed for lonvick on /dev/pts/8");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.facility, 4);
  EXPECT_EQ(r.severity, 2);
  EXPECT_EQ(r.event_time_us, Utc(2003, 10, 11, 22, 14, 15, 3000));
  EXPECT_EQ(r.receive_time_us, kRecv);
  EXPECT_EQ(r.host, "mymachine.example.com");
  EXPECT_EQ(r.app, "su");
  EXPECT_EQ(r.procid, "");
  EXPECT_EQ(r.msgid, "ID47");
  EXPECT_EQ(r.structured_data, "");
  EXPECT_EQ(r.message, "'su root' failed for lonvick on /dev/pts/8");
  EXPECT_EQ(r.sender, kSender);
  EXPECT_FALSE(r.truncated);
}

TEST(SyslogRfc5424, Rfc5424Example2OffsetAndMicroseconds) {
  const EventRecord r = Parse(
      "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make "
      "the do-nuts.");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.facility, 20);
  EXPECT_EQ(r.severity, 5);
  EXPECT_EQ(r.event_time_us, Utc(2003, 8, 24, 12, 14, 15, 3));
  EXPECT_EQ(r.host, "192.0.2.1");
  EXPECT_EQ(r.app, "myproc");
  EXPECT_EQ(r.procid, "8710");
  EXPECT_EQ(r.msgid, "");
  EXPECT_EQ(r.structured_data, "");
  EXPECT_EQ(r.message, "%% It's time to make the do-nuts.");
}

TEST(SyslogRfc5424, Rfc5424Example3StructuredData) {
  const std::string sd =
      R"([exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"])";
  const EventRecord r = Parse("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - "
                              "ID47 " + sd + " \xEF\xBB\xBF" "An application event log entry...");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.app, "evntslog");
  EXPECT_EQ(r.msgid, "ID47");
  EXPECT_EQ(r.structured_data, sd);
  EXPECT_EQ(r.message, "An application event log entry...");
}

TEST(SyslogRfc5424, Rfc5424Example4TwoElementsNoMsg) {
  const std::string sd = R"([exampleSDID@32473 iut="3" eventSource="Application" )"
                         R"(eventID="1011"][examplePriority@32473 class="high"])";
  const EventRecord r =
      Parse("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd);
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.structured_data, sd);
  EXPECT_EQ(r.message, "");
}

TEST(SyslogRfc5424, EscapesInParamValuesDoNotEndTheElement) {
  const std::string sd = R"([id@1 a="q\"uote" b="br\]acket" c="back\\" d="x]y"])";
  const EventRecord r = Parse("<13>1 - h a p m " + sd + " the message ] \"");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.structured_data, sd);
  EXPECT_EQ(r.message, "the message ] \"");
}

TEST(SyslogRfc5424, EscapedBackslashBeforeClosingQuote) {
  // "back\\" ends the value; "\\\"" is an escaped backslash then an escaped quote.
  const std::string sd = R"([a b="\\\"" c="\\"])";
  const EventRecord r = Parse("<13>1 - - - - - " + sd + " m");
  EXPECT_EQ(r.structured_data, sd);
  EXPECT_EQ(r.message, "m");
}

TEST(SyslogRfc5424, BadStructuredDataKeepsHeaderAndRestIsMessage) {
  for (const std::string bad : {R"([id a="unterminated)", R"([id a=unquoted])", R"([])",
                                R"([id a="1"]trailing)", R"([id a="1"] [x])" "x", "-x",
                                R"([id  a="1"])", R"([id a ="1"])"}) {
    const EventRecord r = Parse("<13>1 - host app 1 ID " + bad);
    EXPECT_EQ(r.format, EventFormat::kRfc5424) << bad;
    EXPECT_EQ(r.host, "host") << bad;
    EXPECT_EQ(r.msgid, "ID") << bad;
    if (bad == R"([id a="1"] [x])" "x") {
      EXPECT_EQ(r.structured_data, R"([id a="1"])");  // valid SD, then MSG "[x]x"
      EXPECT_EQ(r.message, "[x]x");
    } else {
      EXPECT_EQ(r.structured_data, "") << bad;
      EXPECT_EQ(r.message, bad) << bad;
    }
  }
}

TEST(SyslogRfc5424, EveryFieldNil) {
  const EventRecord r = Parse("<13>1 - - - - - -");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.facility, 1);
  EXPECT_EQ(r.severity, 5);
  EXPECT_EQ(r.event_time_us, 0);
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.procid, "");
  EXPECT_EQ(r.msgid, "");
  EXPECT_EQ(r.structured_data, "");
  EXPECT_EQ(r.message, "");
}

TEST(SyslogRfc5424, EndsAfterMsgidOrAfterSd) {
  EventRecord r = Parse("<13>1 - h a p m");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.msgid, "m");
  EXPECT_EQ(r.message, "");
  r = Parse("<13>1 - h a p m - ");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.message, "");
  r = Parse("<13>1 - h a p m -  two spaces");
  EXPECT_EQ(r.message, " two spaces");  // only one SP separates SD and MSG
}

TEST(SyslogRfc5424, BomOnlyStrippedAtStartOfMsg) {
  EXPECT_EQ(Parse("<13>1 - - - - - - \xEF\xBB\xBF").message, "");
  EXPECT_EQ(Parse("<13>1 - - - - - - a\xEF\xBB\xBF").message, "a\xEF\xBB\xBF");
  EXPECT_EQ(Parse("<13>1 - - - - - - \xEF\xBB\xBF\xEF\xBB\xBFx").message, "\xEF\xBB\xBFx");
}

TEST(SyslogRfc5424, TimeZones) {
  struct Case {
    std::string ts;
    int64_t want;
  };
  const std::vector<Case> cases = {
      {"1985-04-12T23:20:50.52Z", Utc(1985, 4, 12, 23, 20, 50, 520000)},
      {"1985-04-12T19:20:50.52-04:00", Utc(1985, 4, 12, 23, 20, 50, 520000)},
      {"2024-01-01T00:30:00+01:00", Utc(2023, 12, 31, 23, 30, 0)},
      {"2024-06-30T23:45:00-05:30", Utc(2024, 7, 1, 5, 15, 0)},
      {"2024-03-10T12:00:00+05:45", Utc(2024, 3, 10, 6, 15, 0)},
      {"2024-03-10T12:00:00+00:00", Utc(2024, 3, 10, 12, 0, 0)},
      {"2024-03-10T12:00:00-00:00", Utc(2024, 3, 10, 12, 0, 0)},
      {"2024-03-10t12:00:00z", Utc(2024, 3, 10, 12, 0, 0)},
      {"2024-02-29T00:00:00Z", Utc(2024, 2, 29, 0, 0, 0)},
      {"1970-01-01T00:00:00Z", 0},
      {"1969-12-31T23:59:59.5Z", -500000},
      {"2016-12-31T23:59:60Z", Utc(2017, 1, 1, 0, 0, 0)},  // leap second
      {"2024-03-10T12:00:00.1Z", Utc(2024, 3, 10, 12, 0, 0, 100000)},
      {"2024-03-10T12:00:00.123456789Z", Utc(2024, 3, 10, 12, 0, 0, 123456)},  // ns cut
  };
  for (const Case& c : cases) {
    const EventRecord r = Parse("<13>1 " + c.ts + " h a p m - x");
    EXPECT_EQ(r.format, EventFormat::kRfc5424) << c.ts;
    EXPECT_EQ(r.event_time_us, c.want) << c.ts;
    EXPECT_EQ(r.message, "x") << c.ts;
  }
}

TEST(SyslogRfc5424, InvalidTimestampIsNotRfc5424) {
  for (const std::string ts :
       {"2003-13-11T22:14:15Z", "2023-02-29T00:00:00Z", "2003-10-32T22:14:15Z",
        "2003-10-11T24:00:00Z", "2003-10-11T22:60:15Z", "2003-10-11T22:14:61Z",
        "2003-10-11T22:14:15", "2003-10-11 22:14:15Z", "2003-10-11T22:14:15.Z",
        "2003-10-11T22:14:15.0000000001Z", "2003-10-11T22:14:15+24:00", "2003-10-11T22:14:15+0100",
        "03-10-11T22:14:15Z", "2003-00-11T22:14:15Z", "2003-10-00T22:14:15Z"}) {
    const std::string line = "<13>1 " + ts + " h a p m - x";
    const EventRecord r = Parse(line);
    EXPECT_EQ(r.format, EventFormat::kRfc3164) << ts;  // PRI, then unparsed content
    EXPECT_EQ(r.event_time_us, 0) << ts;
    EXPECT_EQ(r.message, line.substr(4)) << ts;  // nothing lost
    EXPECT_EQ(r.severity, 5) << ts;
  }
}

TEST(SyslogRfc5424, FieldLengthLimits) {
  const std::string app48(48, 'a'), app49(49, 'a');
  EXPECT_EQ(Parse("<13>1 - h " + app48 + " - - - m").app, app48);
  const EventRecord r = Parse("<13>1 - h " + app49 + " - - - m");
  EXPECT_NE(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.app, "");
  const std::string msgid32(32, 'm'), msgid33(33, 'm');
  EXPECT_EQ(Parse("<13>1 - h a p " + msgid32 + " - m").msgid, msgid32);
  EXPECT_NE(Parse("<13>1 - h a p " + msgid33 + " - m").format, EventFormat::kRfc5424);
  const std::string procid128(128, '9'), procid129(129, '9');
  EXPECT_EQ(Parse("<13>1 - h a " + procid128 + " m - m").procid, procid128);
  EXPECT_NE(Parse("<13>1 - h a " + procid129 + " m - m").format, EventFormat::kRfc5424);
  const std::string host255(255, 'h'), host256(256, 'h');
  EXPECT_EQ(Parse("<13>1 - " + host255 + " a p m - m").host, host255);
  EXPECT_NE(Parse("<13>1 - " + host256 + " a p m - m").format, EventFormat::kRfc5424);
  const std::string sdid32(32, 's'), sdid33(33, 's');
  EXPECT_EQ(Parse("<13>1 - h a p m [" + sdid32 + "] x").structured_data, "[" + sdid32 + "]");
  EXPECT_EQ(Parse("<13>1 - h a p m [" + sdid33 + "] x").structured_data, "");
}

TEST(SyslogRfc5424, NonPrintableInHeaderIsNotRfc5424) {
  const std::string line = "<13>1 - ho\x01st a p m - x";
  const EventRecord r = Parse(line);
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.message, line.substr(4));
}

TEST(SyslogRfc5424, VersionGrammar) {
  EXPECT_EQ(Parse("<13>1 - h a p m - x").format, EventFormat::kRfc5424);
  EXPECT_EQ(Parse("<13>12 - h a p m - x").format, EventFormat::kRfc5424);
  EXPECT_NE(Parse("<13>0 - h a p m - x").format, EventFormat::kRfc5424);
  EXPECT_NE(Parse("<13>01 - h a p m - x").format, EventFormat::kRfc5424);
  EXPECT_NE(Parse("<13>1234 - h a p m - x").format, EventFormat::kRfc5424);
  EXPECT_NE(Parse("<13>1- h a p m - x").format, EventFormat::kRfc5424);
}

TEST(SyslogRfc5424, RsyslogSyslogProtocol23Format) {
  // template "<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID%
  // %STRUCTURED-DATA% %msg%\n"
  const EventRecord r = Parse(
      "<86>1 2024-01-05T10:00:00.123456+01:00 web01 sshd 2211 - - Accepted publickey for deploy "
      "from 10.0.0.5 port 51234 ssh2\n");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.facility, 10);
  EXPECT_EQ(r.severity, 6);
  EXPECT_EQ(r.event_time_us, Utc(2024, 1, 5, 9, 0, 0, 123456));
  EXPECT_EQ(r.host, "web01");
  EXPECT_EQ(r.app, "sshd");
  EXPECT_EQ(r.procid, "2211");
  EXPECT_EQ(r.message, "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2");
}

// --- RFC 3164 ---------------------------------------------------------------

TEST(SyslogRfc3164, Rfc3164Example1) {
  const EventRecord r =
      Parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 4);
  EXPECT_EQ(r.severity, 2);
  EXPECT_EQ(r.event_time_us, Utc(2024, 10, 11, 22, 14, 15));
  EXPECT_EQ(r.host, "mymachine");
  EXPECT_EQ(r.app, "su");
  EXPECT_EQ(r.procid, "");
  EXPECT_EQ(r.msgid, "");
  EXPECT_EQ(r.structured_data, "");
  EXPECT_EQ(r.message, "'su root' failed for lonvick on /dev/pts/8");
}

TEST(SyslogRfc3164, Rfc3164Example2NoPriNoHeaderIsRaw) {
  const EventRecord r = Parse("Use the BFG!");
  EXPECT_EQ(r.format, EventFormat::kRaw);
  EXPECT_EQ(r.facility, -1);
  EXPECT_EQ(r.severity, -1);
  EXPECT_EQ(r.event_time_us, 0);
  EXPECT_EQ(r.message, "Use the BFG!");
  EXPECT_EQ(r.sender, kSender);
}

TEST(SyslogRfc3164, Rfc3164Example3IpHostNoTag) {
  const EventRecord r = Parse("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.event_time_us, Utc(2024, 2, 5, 17, 32, 18));
  EXPECT_EQ(r.host, "10.0.0.99");
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message, "Use the BFG!");
}

TEST(SyslogRfc3164, Rfc3164Example4ZoneAndYearAfterTime) {
  // The RFC's own example of a non-conforming relay: "CST 1987" is not part
  // of the timestamp. Nothing is lost: it lands in host and message.
  const EventRecord r = Parse(
      "<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  "
      "Ingredients: Mix=OK, Jam=OK, Frying=OK");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.event_time_us, Utc(2024, 8, 24, 5, 34, 0));
  EXPECT_EQ(r.host, "CST");
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message,
            "1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  Ingredients: "
            "Mix=OK, Jam=OK, Frying=OK");
}

TEST(SyslogRfc3164, Rfc3164Example5UnrecognisedTimestamp) {
  const std::string body =
      "1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!";
  const EventRecord r = Parse("<0>" + body);
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 0);
  EXPECT_EQ(r.severity, 0);
  EXPECT_EQ(r.event_time_us, 0);
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.message, body);
}

TEST(SyslogRfc3164, TagWithPidAndColonVariants) {
  EventRecord r = Parse("<13>Oct 11 22:14:15 host sshd[1234]: Accepted");
  EXPECT_EQ(r.app, "sshd");
  EXPECT_EQ(r.procid, "1234");
  EXPECT_EQ(r.message, "Accepted");
  r = Parse("<13>Oct 11 22:14:15 host postfix/smtpd[99] no colon after pid");
  EXPECT_EQ(r.app, "postfix/smtpd");
  EXPECT_EQ(r.procid, "99");
  EXPECT_EQ(r.message, "no colon after pid");
  r = Parse("<13>Oct 11 22:14:15 host CRON:");
  EXPECT_EQ(r.app, "CRON");
  EXPECT_EQ(r.message, "");
  r = Parse("<13>Oct 11 22:14:15 host app:no-space-is-not-a-tag");
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message, "app:no-space-is-not-a-tag");
  r = Parse("<13>Oct 11 22:14:15 host app[12 unterminated pid");
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message, "app[12 unterminated pid");
  r = Parse("<13>Oct 11 22:14:15 host " + std::string(49, 't') + ": too long");
  EXPECT_EQ(r.app, "");
  r = Parse("<13>Oct 11 22:14:15 host " + std::string(48, 't') + ": ok");
  EXPECT_EQ(r.app, std::string(48, 't'));
  EXPECT_EQ(r.message, "ok");
}

TEST(SyslogRfc3164, NoHostnameWhenFirstWordIsATag) {
  EventRecord r = Parse("<13>Oct 11 22:14:15 kernel: eth0 up");
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "kernel");
  EXPECT_EQ(r.message, "eth0 up");
  r = Parse("<13>Oct 11 22:14:15 sshd[7]: hello");
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "sshd");
  EXPECT_EQ(r.procid, "7");
  r = Parse("<13>Oct 11 22:14:15 lonely");  // a last word is message, not host
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.message, "lonely");
  r = Parse("<13>Oct 11 22:14:15 - app: nil host");
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "app");
}

TEST(SyslogRfc3164, DayPaddingVariantsAndCase) {
  const int64_t want = Utc(2024, 10, 5, 1, 2, 3);
  for (const std::string ts : {"Oct  5 01:02:03", "Oct 05 01:02:03", "Oct 5 01:02:03",
                               "oct  5 01:02:03", "OCT  5 01:02:03"}) {
    const EventRecord r = Parse("<13>" + ts + " h a: m");
    EXPECT_EQ(r.event_time_us, want) << ts;
    EXPECT_EQ(r.host, "h") << ts;
    EXPECT_EQ(r.app, "a") << ts;
  }
}

TEST(SyslogRfc3164, InvalidBsdTimestampsAreContent) {
  for (const std::string ts : {"Oct 32 01:02:03", "Oct  0 01:02:03", "Feb 30 01:02:03",
                               "Oct  5 24:02:03", "Oct  5 01:60:03", "Oct  5 1:02:03",
                               "Foo  5 01:02:03", "Oct  5 01:02", "Oct   5 01:02:03",
                               "Oct  5 01:02:03x"}) {
    const std::string body = ts + " h a: m";
    const EventRecord r = Parse("<13>" + body);
    EXPECT_EQ(r.format, EventFormat::kRfc3164) << ts;
    EXPECT_EQ(r.event_time_us, 0) << ts;
    EXPECT_EQ(r.host, "") << ts;
    // The content has no TAG at its start (it begins with the broken stamp).
    EXPECT_EQ(r.message, body) << ts;
  }
}

TEST(SyslogRfc3164, YearInference) {
  struct Case {
    int64_t recv;
    std::string ts;
    int64_t want;
  };
  const std::vector<Case> cases = {
      // Same year.
      {Utc(2024, 10, 20, 12, 0, 0), "Oct 11 22:14:15", Utc(2024, 10, 11, 22, 14, 15)},
      // Up to 30 days ahead is still this year (sender clock ahead).
      {Utc(2024, 3, 1, 0, 0, 0), "Mar 25 00:00:00", Utc(2024, 3, 25, 0, 0, 0)},
      {Utc(2024, 3, 1, 0, 0, 0), "Mar 31 00:00:00", Utc(2024, 3, 31, 0, 0, 0)},
      // More than 30 days ahead: last year.
      {Utc(2024, 3, 1, 0, 0, 0), "Mar 31 00:00:01", Utc(2023, 3, 31, 0, 0, 1)},
      {Utc(2024, 3, 1, 0, 0, 0), "Apr 15 10:00:00", Utc(2023, 4, 15, 10, 0, 0)},
      // Year rollover: received just after New Year, sent just before.
      {Utc(2025, 1, 2, 0, 0, 0), "Dec 31 23:59:59", Utc(2024, 12, 31, 23, 59, 59)},
      // Year rollover the other way: the sender's clock is already in the new year.
      {Utc(2024, 12, 31, 23, 59, 58), "Jan  1 00:00:01", Utc(2025, 1, 1, 0, 0, 1)},
      // Feb 29 goes back to the last leap year within one year...
      {Utc(2025, 1, 10, 0, 0, 0), "Feb 29 12:00:00", Utc(2024, 2, 29, 12, 0, 0)},
      {Utc(2024, 3, 10, 0, 0, 0), "Feb 29 12:00:00", Utc(2024, 2, 29, 12, 0, 0)},
      // ... or has no usable time.
      {Utc(2026, 6, 1, 0, 0, 0), "Feb 29 12:00:00", 0},
      // Milliseconds (Cisco "service timestamps log datetime msec").
      {Utc(2024, 10, 20, 12, 0, 0), "Oct 11 22:14:15.123", Utc(2024, 10, 11, 22, 14, 15, 123000)},
      // An explicit year (Cisco ASA) is used as it is.
      {Utc(2024, 10, 20, 12, 0, 0), "Jun 18 2012 10:52:22", Utc(2012, 6, 18, 10, 52, 22)},
      {Utc(2024, 10, 20, 12, 0, 0), "Feb 29 2023 10:52:22", 0},
  };
  for (const Case& c : cases) {
    const EventRecord r = Parse("<13>" + c.ts + " host app: m", c.recv);
    EXPECT_EQ(r.format, EventFormat::kRfc3164) << c.ts;
    EXPECT_EQ(r.event_time_us, c.want) << c.ts << " recv=" << c.recv;
    EXPECT_EQ(r.host, "host") << c.ts;
  }
}

TEST(SyslogRfc3164, RsyslogForwardFormatRfc3339Timestamp) {
  // RSYSLOG_ForwardFormat: "<%PRI%>%TIMESTAMP:::date-rfc3339% %HOSTNAME%
  // %syslogtag:1:32%%msg:::sp-if-no-1st-sp%%msg%"
  const EventRecord r = Parse(
      "<30>2024-01-05T10:00:00.123456+01:00 web01 systemd[1]: Started Session 42 of user root.");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 3);
  EXPECT_EQ(r.severity, 6);
  EXPECT_EQ(r.event_time_us, Utc(2024, 1, 5, 9, 0, 0, 123456));
  EXPECT_EQ(r.host, "web01");
  EXPECT_EQ(r.app, "systemd");
  EXPECT_EQ(r.procid, "1");
  EXPECT_EQ(r.message, "Started Session 42 of user root.");
}

TEST(SyslogRfc3164, RsyslogTraditionalForwardFormat) {
  const EventRecord r = Parse(
      "<86>Jan  5 10:00:00 web01 sshd[2211]: Accepted publickey for deploy from 10.0.0.5 port "
      "51234 ssh2",
      Utc(2024, 1, 5, 10, 0, 1));
  EXPECT_EQ(r.event_time_us, Utc(2024, 1, 5, 10, 0, 0));
  EXPECT_EQ(r.host, "web01");
  EXPECT_EQ(r.app, "sshd");
  EXPECT_EQ(r.procid, "2211");
  EXPECT_EQ(r.message, "Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2");
}

TEST(SyslogRfc3164, CiscoAsaWithDeviceIdAndYear) {
  const EventRecord r = Parse(
      "<166>Jun 18 2012 10:52:22 asa1 : %ASA-6-302016: Teardown UDP connection 1 for "
      "outside:10.0.0.1/53 to inside:10.0.0.2/5353 duration 0:00:00 bytes 100");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 20);
  EXPECT_EQ(r.severity, 6);
  EXPECT_EQ(r.event_time_us, Utc(2012, 6, 18, 10, 52, 22));
  EXPECT_EQ(r.host, "asa1");
  EXPECT_EQ(r.app, "%ASA-6-302016");
  EXPECT_EQ(r.message,
            "Teardown UDP connection 1 for outside:10.0.0.1/53 to inside:10.0.0.2/5353 duration "
            "0:00:00 bytes 100");
}

TEST(SyslogRfc3164, CiscoAsaWithoutTimestampOrHost) {
  const EventRecord r = Parse(
      "<166>%ASA-6-302013: Built outbound TCP connection 123 for outside:1.2.3.4/443 "
      "(1.2.3.4/443) to inside:10.0.0.1/5000 (10.0.0.1/5000)");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.event_time_us, 0);
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "%ASA-6-302013");
  EXPECT_EQ(r.message.substr(0, 14), "Built outbound");
}

TEST(SyslogRfc3164, CiscoIosTimestampColonAndUnsyncedMark) {
  const EventRecord r =
      Parse("<189>*Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console by console");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 23);
  EXPECT_EQ(r.severity, 5);
  EXPECT_EQ(r.event_time_us, Utc(2024, 3, 1, 18, 46, 11, 123000));
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.app, "%SYS-5-CONFIG_I");
  EXPECT_EQ(r.message, "Configured from console by console");
}

TEST(SyslogRfc3164, CiscoIosSequenceNumberIsNotATag) {
  const std::string body = "52: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console";
  const EventRecord r = Parse("<189>" + body);
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message, body);
}

TEST(SyslogRfc3164, PriOnlyAndPriWithText) {
  EventRecord r = Parse("<13>");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.severity, 5);
  EXPECT_EQ(r.message, "");
  r = Parse("<13>hello world");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.app, "");
  EXPECT_EQ(r.message, "hello world");
}

// --- No PRI / raw -----------------------------------------------------------

TEST(SyslogNoPri, BsdHeaderWithoutPri) {
  const EventRecord r = Parse("Oct 11 22:14:15 mymachine su: hi");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, -1);
  EXPECT_EQ(r.severity, -1);
  EXPECT_EQ(r.event_time_us, Utc(2024, 10, 11, 22, 14, 15));
  EXPECT_EQ(r.host, "mymachine");
  EXPECT_EQ(r.app, "su");
  EXPECT_EQ(r.message, "hi");
}

TEST(SyslogNoPri, Rfc3339HeaderWithoutPri) {
  const EventRecord r = Parse("2024-01-05T10:00:00Z fw01 filterlog[1]: pass in");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, -1);
  EXPECT_EQ(r.event_time_us, Utc(2024, 1, 5, 10, 0, 0));
  EXPECT_EQ(r.host, "fw01");
  EXPECT_EQ(r.app, "filterlog");
  EXPECT_EQ(r.message, "pass in");
}

TEST(SyslogNoPri, TextWithoutHeaderIsRawWholeLine) {
  for (const std::string line : {"hello: world", "1 2003-10-11T22:14:15Z h a p m - x", "-",
                                 " leading space", "<>", "<1a>x", "<1234>x", "<-1>x", "<13",
                                 "<192>1 - - - - - -", "<999>Oct 11 22:14:15 h a: m", "<", ">"}) {
    const EventRecord r = Parse(line);
    EXPECT_EQ(r.format, EventFormat::kRaw) << line;
    EXPECT_EQ(r.facility, -1) << line;
    EXPECT_EQ(r.severity, -1) << line;
    EXPECT_EQ(r.event_time_us, 0) << line;
    EXPECT_EQ(r.host, "") << line;
    EXPECT_EQ(r.app, "") << line;
    EXPECT_EQ(r.message, line);
  }
}

TEST(SyslogPri, RangeAndLeadingZeros) {
  EXPECT_EQ(Parse("<0>x").facility, 0);
  EXPECT_EQ(Parse("<0>x").severity, 0);
  EXPECT_EQ(Parse("<191>x").facility, 23);
  EXPECT_EQ(Parse("<191>x").severity, 7);
  EXPECT_EQ(Parse("<013>x").facility, 1);
  EXPECT_EQ(Parse("<013>x").severity, 5);
  EXPECT_EQ(Parse("<192>x").format, EventFormat::kRaw);
  EXPECT_EQ(Parse("<0013>x").format, EventFormat::kRaw);
}

TEST(SyslogStrip, TrailingNewlinesCrAndNuls) {
  EXPECT_EQ(Parse("<13>1 - - - - - - m\n").message, "m");
  EXPECT_EQ(Parse("<13>1 - - - - - - m\r\n").message, "m");
  EXPECT_EQ(Parse("<13>1 - - - - - - m\0\0\0"s).message, "m");
  EXPECT_EQ(Parse("<13>1 - - - - - - m\r\n\0"s).message, "m");
  EXPECT_EQ(Parse("raw line\r\n").message, "raw line");
  EXPECT_EQ(Parse("\n\0\r"s).message, "");
  EXPECT_EQ(Parse("").format, EventFormat::kRaw);
  EXPECT_EQ(Parse("").message, "");
}

TEST(SyslogGarbage, EmbeddedNulsAreKept) {
  EventRecord r = Parse("<13>Oct 11 22:14:15 host app: a\0b\0c"s);
  EXPECT_EQ(r.app, "app");
  EXPECT_EQ(r.message, "a\0b\0c"s);
  r = Parse("raw\0line"s);
  EXPECT_EQ(r.format, EventFormat::kRaw);
  EXPECT_EQ(r.message, "raw\0line"s);
  // A NUL in an RFC 5424 header field: not RFC 5424, nothing lost.
  const std::string line = "<13>1 - ho\0st a p m - x"s;
  r = Parse(line);
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.message, line.substr(4));
}

TEST(SyslogGarbage, HugeLines) {
  const std::string big(4 << 20, 'x');
  EventRecord r = Parse("<13>1 - h a p m - " + big);
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.message, big);
  r = Parse(big);
  EXPECT_EQ(r.format, EventFormat::kRaw);
  EXPECT_EQ(r.message.size(), big.size());
  r = Parse("<13>1 - " + big + " a p m - x");  // hostname far over 255
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  const std::string long_sd = "[id a=\"" + big + "\"]";
  r = Parse("<13>1 - h a p m " + long_sd + " x");
  EXPECT_EQ(r.structured_data.size(), long_sd.size());
  EXPECT_EQ(r.message, "x");
}

TEST(SyslogGarbage, EveryPrefixOfValidMessagesParses) {
  // Under ASan this shows that no prefix makes the parser read past the end;
  // everywhere the record must be self-consistent.
  const std::vector<std::string> lines = {
      "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
      R"([exampleSDID@32473 iut="3" a="\"\\\]"][examplePriority@32473 class="high"] )"
      "\xEF\xBB\xBF" "An application event",
      "<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed",
      "<166>Jun 18 2012 10:52:22.123 asa1 : %ASA-6-302016: Teardown",
      "<30>2024-01-05T10:00:00.123456+01:00 web01 systemd[1]: Started"};
  for (const std::string& line : lines) {
    for (size_t n = 0; n <= line.size(); ++n) {
      const std::string prefix = line.substr(0, n);  // exact-size heap copy for ASan
      const EventRecord r = Parse(prefix);
      EXPECT_LE(r.message.size(), prefix.size());
      EXPECT_TRUE(r.facility >= -1 && r.facility <= 23) << prefix;
      EXPECT_TRUE(r.severity >= -1 && r.severity <= 7) << prefix;
      if (r.format == EventFormat::kRaw) {
        EXPECT_EQ(r.message, prefix);
      }
    }
  }
}

TEST(SyslogGarbage, RandomBytesNeverCrashAndRawKeepsTheLine) {
  std::mt19937_64 rng(20240105);
  const std::string alphabet = "<>0123456789 -:[]\"\\=TZ.+abcJanOct\n\r\0\xEF\xBB\xBF\xff"s;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s(rng() % 80, '\0');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    if (iter % 3 == 0) s = "<13>1 " + s;
    if (iter % 3 == 1) s = "<13>Oct 11 22:14:15 " + s;
    const EventRecord r = ParseSyslog(s, static_cast<int64_t>(rng()), kSender);
    if (r.format == EventFormat::kRaw) {
      std::string_view want(s);
      while (!want.empty() && (want.back() == '\n' || want.back() == '\r' || want.back() == '\0')) {
        want.remove_suffix(1);
      }
      EXPECT_EQ(r.message, want);
      EXPECT_EQ(r.facility, -1);
    } else {
      EXPECT_GE(r.facility, -1);
    }
    EXPECT_LE(r.message.size(), s.size());
  }
}

TEST(SyslogParseInto, OverwritesEveryField) {
  EventRecord r;
  ParseSyslogInto(
      "<165>1 2003-10-11T22:14:15.003Z h app 12 ID [a b=\"c\"] msg", kRecv, "a:1", &r);
  EXPECT_EQ(r.msgid, "ID");
  ParseSyslogInto("plain", kRecv + 1, "b:2", &r);
  EventRecord want;
  want.receive_time_us = kRecv + 1;
  want.message = "plain";
  want.sender = "b:2";
  EXPECT_EQ(r, want);
  r.truncated = true;
  ParseSyslogInto("plain", kRecv + 1, "b:2", &r);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r, ParseSyslog("plain", kRecv + 1, "b:2"));
}

// --- syslog-ng loggen --------------------------------------------------------

// loggen's templates (syslog-ng tests/loggen): RFC 3164 mode sends an RFC 3339
// time without a zone; --syslog-proto sends RFC 5424 with a BOM.
TEST(SyslogLoggen, Rfc3164ModeZonelessIsoTimestamp) {
  const EventRecord r = Parse(
      "<38>2007-12-24T12:28:51 localhost prg00000[1234]: seq: 0000000000, thread: 0000, runid: "
      "1198495731, stamp: 2007-12-24T12:28:51 PADDPADDPADD\n");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.facility, 4);
  EXPECT_EQ(r.severity, 6);
  EXPECT_EQ(r.event_time_us, Utc(2007, 12, 24, 12, 28, 51));  // no zone: taken as UTC
  EXPECT_EQ(r.host, "localhost");
  EXPECT_EQ(r.app, "prg00000");
  EXPECT_EQ(r.procid, "1234");
  EXPECT_EQ(r.message,
            "seq: 0000000000, thread: 0000, runid: 1198495731, stamp: 2007-12-24T12:28:51 "
            "PADDPADDPADD");
}

TEST(SyslogLoggen, SyslogProtoMode) {
  const EventRecord r = Parse(
      "<38>1 2007-12-24T12:28:51+02:00 localhost prg00003 1234 - - \xEF\xBB\xBFseq: 0000000007, "
      "thread: 0003, runid: 1198495731, stamp: 2007-12-24T12:28:51 PADD\n");
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.event_time_us, Utc(2007, 12, 24, 10, 28, 51));
  EXPECT_EQ(r.host, "localhost");
  EXPECT_EQ(r.app, "prg00003");
  EXPECT_EQ(r.procid, "1234");
  EXPECT_EQ(r.msgid, "");
  EXPECT_EQ(r.structured_data, "");
  EXPECT_EQ(r.message,
            "seq: 0000000007, thread: 0003, runid: 1198495731, stamp: 2007-12-24T12:28:51 PADD");
}

TEST(SyslogLoggen, ZonelessTimeIsOnlyAcceptedInRfc3164Headers) {
  // RFC 5424 requires the offset: the header is then read as RFC 3164.
  EXPECT_EQ(Parse("<38>1 2007-12-24T12:28:51 h a p m - x").format, EventFormat::kRfc3164);
  // A torn offset is not silently dropped: no timestamp at all then.
  EXPECT_EQ(Parse("<38>2007-12-24T12:28:51+01 h app: x").event_time_us, 0);
  EXPECT_EQ(Parse("<38>2007-12-24T12:28:51+01:00 h app: x").event_time_us,
            Utc(2007, 12, 24, 11, 28, 51));
  EXPECT_EQ(Parse("<38>2007-12-24T12:28:51x h app: x").event_time_us, 0);
}

// --- Bytes that are not text ------------------------------------------------

TEST(SyslogGarbage, InvalidUtf8IsKeptByteForByte) {
  const std::string bad = "caf\xC3 \xFF\xFE \xED\xA0\x80 \xC0\xAF end";
  EventRecord r = Parse("<13>1 - h a p m - \xEF\xBB\xBF" + bad);
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.message, bad);
  r = Parse("<13>Oct 11 22:14:15 host app: " + bad);
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.message, bad);
  r = Parse(bad);
  EXPECT_EQ(r.format, EventFormat::kRaw);
  EXPECT_EQ(r.message, bad);
  // A non-ASCII byte in an RFC 5424 header field: not RFC 5424, nothing lost.
  r = Parse("<13>1 - h\xC3\xA9 a p m - x");
  EXPECT_EQ(r.format, EventFormat::kRfc3164);
  EXPECT_EQ(r.message, "1 - h\xC3\xA9 a p m - x");
}

TEST(SyslogGarbage, NulInsideHeaderPartsNeverEndsParsingEarly) {
  for (const std::string& line :
       {"<13>\0Oct 11 22:14:15 h app: x"s, "<1\0>Oct 11 22:14:15 h app: x"s,
        "<13>Oct 11 22:14:15 h ap\0p: x"s, "<13>1 2003-10-11T22:14:15Z h a p m [x\0 a=\"b\"] m"s}) {
    const EventRecord r = Parse(line);
    EXPECT_NE(r.message.size(), 0u) << line;
    EXPECT_NE(r.message.find('\0'), std::string::npos) << "the NUL is kept: " << line;
  }
}

// --- Severity names ---------------------------------------------------------

TEST(SyslogSeverity, NamesAndDigits) {
  const std::vector<std::pair<std::string, int>> good = {
      {"emerg", 0}, {"EMERG", 0}, {"emergency", 0}, {"panic", 0}, {"alert", 1},
      {"crit", 2}, {"critical", 2}, {"err", 3}, {"error", 3}, {"Error", 3},
      {"warning", 4}, {"warn", 4}, {"notice", 5}, {"info", 6}, {"informational", 6},
      {"debug", 7}, {"0", 0}, {"3", 3}, {"7", 7}};
  for (const auto& [text, want] : good) {
    const Result<int> r = ParseSeverity(text);
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_EQ(*r, want) << text;
  }
  const std::vector<std::string> bads = {"",      "8",     "-1",    "07",
                                         "10",    "war",   "errors", "info ",
                                         " info", "debugging-verbose-mode-long-name", "\0"s};
  for (const std::string& bad : bads) {
    const Result<int> r = ParseSeverity(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("unknown severity"), std::string::npos);
    }
  }
  for (int s = 0; s <= 7; ++s) EXPECT_EQ(*ParseSeverity(SeverityName(s)), s);
  EXPECT_EQ(SeverityName(-1), "-");
  EXPECT_EQ(SeverityName(8), "-");
}

// --- Rate (prints, never asserts timing) ------------------------------------

std::string Pad(std::string s, size_t n) {
  while (s.size() < n) s += static_cast<char>('a' + s.size() % 26);
  return s.substr(0, n);
}

TEST(SyslogRate, ParsesPerSecondOn256ByteMessages) {
  std::vector<std::string> msgs;
  for (int i = 0; i < 1024; ++i) {
    const std::string n = std::to_string(i);
    switch (i % 4) {
      case 0: msgs.push_back(Pad("<86>1 2024-01-05T10:00:00.123456+01:00 web" + n +
                                 " sshd 2211 - [meta@1 seq=\"" + n + "\"] Accepted key ", 256));
        break;
      case 1: msgs.push_back(Pad("<86>Jan  5 10:00:00 web" + n + " sshd[2211]: Accepted ", 256));
        break;
      case 2: msgs.push_back(Pad("<30>2024-01-05T10:00:00.123456+01:00 web" + n +
                                 " systemd[1]: Started ", 256));
        break;
      default: msgs.push_back(Pad("<166>Jun 18 2012 10:52:22 asa" + n +
                                  " : %ASA-6-302016: Teardown UDP ", 256));
    }
  }
  EventRecord r;
  size_t checksum = 0;
  size_t count = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = std::chrono::duration<double>(0);
  while (elapsed.count() < 0.3) {
    for (const std::string& m : msgs) {
      ParseSyslogInto(m, kRecv, kSender, &r);
      checksum += r.message.size() + r.host.size();
    }
    count += msgs.size();
    elapsed = std::chrono::steady_clock::now() - start;
  }
  std::printf("ParseSyslogInto: %.0f messages/s (256-byte messages, one core)\n",
              static_cast<double>(count) / elapsed.count());
  const auto start2 = std::chrono::steady_clock::now();
  size_t count2 = 0;
  for (int rep = 0; rep < 100; ++rep) {
    for (const std::string& m : msgs) checksum += ParseSyslog(m, kRecv, kSender).message.size();
    count2 += msgs.size();
  }
  const std::chrono::duration<double> e2 = std::chrono::steady_clock::now() - start2;
  std::printf("ParseSyslog (new record each): %.0f messages/s\n",
              static_cast<double>(count2) / e2.count());
  EXPECT_GT(checksum, 0u);  // the work was done (and not optimised away)
}

// --- Real client output: util-linux logger over loopback ---------------------

constexpr int kLoopbackWaitMs = 5000;  // bound on every wait for logger's output
constexpr size_t kLoopbackReadBytesMax = 1 << 20;

bool HaveLogger() { return std::system("command -v logger >/dev/null 2>&1") == 0; }

// Runs `logger <args>` with TZ=UTC (its RFC 3164 time is local time) and the
// given lines on stdin (a printf format without '%'; none: the message is in
// args). True if it exited 0.
bool RunLogger(const std::string& args, const std::string& stdin_text = "") {
  std::string cmd = "TZ=UTC logger " + args;
  if (!stdin_text.empty()) cmd = "printf '" + stdin_text + "' | " + cmd;
  return std::system(cmd.c_str()) == 0;
}

// A socket bound to 127.0.0.1 on a free port; closed on destruction.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(int type) : fd_(socket(AF_INET, type | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
          getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
          (type != SOCK_STREAM || listen(fd_, 4) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackSocket() {
    if (fd_ >= 0) close(fd_);
  }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;

  bool ok() const { return ok_; }
  int port() const { return port_; }

  // UDP: the next datagram, or "" after kLoopbackWaitMs.
  std::string ReceiveDatagram() const {
    if (!Readable(fd_)) return "";
    std::string buf(kLoopbackReadBytesMax, '\0');
    const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
  }
  // TCP: accepts one connection and reads it to EOF (bounded in time and size).
  std::string ReceiveStream() const {
    if (!Readable(fd_)) return "";
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    std::string all;
    char buf[4096];
    while (conn >= 0 && all.size() < kLoopbackReadBytesMax && Readable(conn)) {
      const ssize_t n = recv(conn, buf, sizeof(buf), 0);
      if (n <= 0) break;
      all.append(buf, static_cast<size_t>(n));
    }
    if (conn >= 0) close(conn);
    return all;
  }

 private:
  static bool Readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, kLoopbackWaitMs) == 1;
  }

  int fd_;
  int port_ = 0;
  bool ok_ = false;
};

std::string HostName(bool short_name) {
  char buf[256] = {};
  EXPECT_EQ(gethostname(buf, sizeof(buf) - 1), 0);
  std::string h(buf);
  if (short_name) h = h.substr(0, h.find('.'));
  return h;
}

int64_t NowUs() { return static_cast<int64_t>(std::time(nullptr)) * 1'000'000; }

// The event time logger wrote is "now" (within a minute, whole seconds for 3164).
void ExpectNow(const EventRecord& r) {
  EXPECT_NEAR(static_cast<double>(r.event_time_us), static_cast<double>(NowUs()), 60e6);
}

std::vector<SyslogFrame> FrameAll(const std::string& stream, size_t max) {
  SyslogStreamFramer framer(max);
  std::vector<SyslogFrame> out;
  framer.Feed({reinterpret_cast<const uint8_t*>(stream.data()), stream.size()}, &out);
  framer.Finish(&out);
  EXPECT_EQ(framer.counters().framing_errors, 0u) << stream;
  return out;
}

TEST(SyslogLogger, Rfc5424OverUdp) {
  if (!HaveLogger()) GTEST_SKIP() << "util-linux logger not installed";
  LoopbackSocket udp(SOCK_DGRAM);
  ASSERT_TRUE(udp.ok());
  ASSERT_TRUE(RunLogger("-d -n 127.0.0.1 -P " + std::to_string(udp.port()) +
                        " --rfc5424 -i -t tandem-test -p local3.warning --msgid MID "
                        "--sd-id test@32473 --sd-param 'k=\"v\\]\"' 'hello 5424 \"quoted\"'"));
  const std::string datagram = udp.ReceiveDatagram();
  ASSERT_FALSE(datagram.empty()) << "no datagram from logger";
  const DatagramMessage d = FrameDatagram(
      {reinterpret_cast<const uint8_t*>(datagram.data()), datagram.size()});
  const EventRecord r = ParseSyslog(d.message, NowUs(), kSender);
  EXPECT_EQ(r.format, EventFormat::kRfc5424) << datagram;
  EXPECT_EQ(r.facility, 19);
  EXPECT_EQ(r.severity, 4);
  EXPECT_EQ(r.host, HostName(false));
  EXPECT_EQ(r.app, "tandem-test");
  EXPECT_FALSE(r.procid.empty());
  EXPECT_TRUE(AllDigitsForTest(r.procid)) << r.procid;
  EXPECT_EQ(r.msgid, "MID");
  EXPECT_NE(r.structured_data.find("[test@32473 k=\"v\\]\"]"), std::string::npos)
      << r.structured_data;
  EXPECT_NE(r.structured_data.find("[timeQuality "), std::string::npos) << r.structured_data;
  EXPECT_EQ(r.message, "hello 5424 \"quoted\"");
  ExpectNow(r);
}

TEST(SyslogLogger, Rfc3164OverUdp) {
  if (!HaveLogger()) GTEST_SKIP() << "util-linux logger not installed";
  LoopbackSocket udp(SOCK_DGRAM);
  ASSERT_TRUE(udp.ok());
  ASSERT_TRUE(RunLogger("-d -n 127.0.0.1 -P " + std::to_string(udp.port()) +
                        " --rfc3164 -i -t tandem-test -p auth.crit 'hello: 3164 [x]'"));
  const std::string datagram = udp.ReceiveDatagram();
  ASSERT_FALSE(datagram.empty()) << "no datagram from logger";
  const EventRecord r = ParseSyslog(datagram, NowUs(), kSender);
  EXPECT_EQ(r.format, EventFormat::kRfc3164) << datagram;
  EXPECT_EQ(r.facility, 4);
  EXPECT_EQ(r.severity, 2);
  EXPECT_EQ(r.host, HostName(true));
  EXPECT_EQ(r.app, "tandem-test");
  EXPECT_TRUE(AllDigitsForTest(r.procid)) << r.procid;
  EXPECT_EQ(r.message, "hello: 3164 [x]");
  ExpectNow(r);
}

// logger -T sends LF-terminated (non-transparent) frames by default and
// octet-counted ones with --octet-count; one message per stdin line.
void CheckTcpLines(const std::string& framing_flag, const std::string& format_flag,
                   EventFormat want_format) {
  LoopbackSocket tcp(SOCK_STREAM);
  ASSERT_TRUE(tcp.ok());
  ASSERT_TRUE(RunLogger("-T " + framing_flag + " -n 127.0.0.1 -P " + std::to_string(tcp.port()) +
                            " " + format_flag + " -t app -p daemon.info",
                        "first line\\n2nd line starts with a digit\\nthird\\n"));
  const std::string stream = tcp.ReceiveStream();
  ASSERT_FALSE(stream.empty()) << "no connection from logger";
  const std::vector<SyslogFrame> frames = FrameAll(stream, kSyslogMessageBytesMaxDefault);
  const std::vector<std::string> want = {"first line", "2nd line starts with a digit", "third"};
  ASSERT_EQ(frames.size(), want.size()) << stream;
  for (size_t i = 0; i < want.size(); ++i) {
    const EventRecord r = ParseSyslog(frames[i].message, NowUs(), kSender);
    EXPECT_EQ(r.format, want_format) << frames[i].message;
    EXPECT_EQ(r.facility, 3);
    EXPECT_EQ(r.severity, 6);
    EXPECT_EQ(r.app, "app");
    EXPECT_EQ(r.message, want[i]);
    ExpectNow(r);
  }
  // The same stream, split at every byte position, frames the same.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SyslogStreamFramer framer;
    std::vector<SyslogFrame> out;
    framer.Feed({reinterpret_cast<const uint8_t*>(stream.data()), cut}, &out);
    framer.Feed({reinterpret_cast<const uint8_t*>(stream.data()) + cut, stream.size() - cut},
                &out);
    framer.Finish(&out);
    ASSERT_EQ(out, frames) << "cut at " << cut;
  }
}

TEST(SyslogLogger, TcpNonTransparentRfc5424) {
  if (!HaveLogger()) GTEST_SKIP() << "util-linux logger not installed";
  CheckTcpLines("", "--rfc5424", EventFormat::kRfc5424);
}

TEST(SyslogLogger, TcpOctetCountedRfc3164) {
  if (!HaveLogger()) GTEST_SKIP() << "util-linux logger not installed";
  CheckTcpLines("--octet-count", "--rfc3164", EventFormat::kRfc3164);
}

TEST(SyslogLogger, TcpOctetCountedLongMessageIsTruncatedByTheFramer) {
  if (!HaveLogger()) GTEST_SKIP() << "util-linux logger not installed";
  LoopbackSocket tcp(SOCK_STREAM);
  ASSERT_TRUE(tcp.ok());
  const std::string body(3000, 'L');
  ASSERT_TRUE(RunLogger("-T --octet-count --size 8192 -n 127.0.0.1 -P " +
                        std::to_string(tcp.port()) + " --rfc5424 -t app '" + body + "'"));
  const std::string stream = tcp.ReceiveStream();
  ASSERT_FALSE(stream.empty()) << "no connection from logger";
  constexpr size_t kMax = 1024;
  const std::vector<SyslogFrame> frames = FrameAll(stream, kMax);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].truncated);
  ASSERT_EQ(frames[0].message.size(), kMax);
  const EventRecord r = ParseSyslog(frames[0].message, NowUs(), kSender);
  EXPECT_EQ(r.format, EventFormat::kRfc5424);
  EXPECT_EQ(r.app, "app");
  EXPECT_TRUE(body.starts_with(r.message));
  EXPECT_GT(r.message.size(), kMax / 2);
}

}  // namespace
}  // namespace tandem::collect
