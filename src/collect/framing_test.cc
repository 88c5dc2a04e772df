#include "collect/framing.h"

#include <gtest/gtest.h>

#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::collect {
namespace {

using namespace std::string_literals;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Octet(std::string_view msg) {
  return std::to_string(msg.size()) + " " + std::string(msg);
}

SyslogFrame F(std::string m, bool truncated = false) { return {std::move(m), truncated}; }

struct Outcome {
  std::vector<SyslogFrame> frames;
  FramerCounters counters;
  bool operator==(const Outcome&) const = default;
};

// Feeds `stream` cut at the given offsets (ascending), then Finish().
Outcome RunCuts(std::string_view stream, const std::vector<size_t>& cuts,
            size_t max = kSyslogMessageBytesMaxDefault, bool finish = true) {
  SyslogStreamFramer framer(max);
  Outcome out;
  size_t from = 0;
  for (size_t cut : cuts) {
    framer.Feed(Bytes(stream.substr(from, cut - from)), &out.frames);
    from = cut;
  }
  framer.Feed(Bytes(stream.substr(from)), &out.frames);
  if (finish) framer.Finish(&out.frames);
  out.counters = framer.counters();
  return out;
}

Outcome RunWhole(std::string_view stream, size_t max = kSyslogMessageBytesMaxDefault,
                 bool finish = true) {
  return RunCuts(stream, {}, max, finish);
}

Outcome RunBytewise(std::string_view stream, size_t max = kSyslogMessageBytesMaxDefault) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  return RunCuts(stream, cuts, max);
}

const std::string kM1 = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - hi";
const std::string kM2 = "<13>Oct 11 22:14:15 host app: line\nwith LF inside";
const std::string kM3 = "<165>1 - - - - - [a b=\"c\\]\"] x";

TEST(FramingNonTransparent, LfAndNulTrailers) {
  const Outcome o = RunWhole("<13>a\n<14>b\0<15>c\n"s);
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F("<13>a"), F("<14>b"), F("<15>c")}));
  EXPECT_EQ(o.counters.messages, 3u);
  EXPECT_EQ(o.counters.truncated, 0u);
  EXPECT_EQ(o.counters.framing_errors, 0u);
  EXPECT_EQ(o.counters.bytes, 18u);
}

TEST(FramingNonTransparent, EmptyLinesAndBareCrLfAreSkipped) {
  const Outcome o = RunWhole("\n\n\0<13>a\r\n\r\n\n<13>b\n"s);
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F("<13>a\r"), F("<13>b")}));
  EXPECT_EQ(o.counters.messages, 2u);
}

TEST(FramingNonTransparent, FinishDeliversALastLineWithoutTrailer) {
  EXPECT_EQ(RunWhole("<13>a\n<13>tail").frames,
            (std::vector<SyslogFrame>{F("<13>a"), F("<13>tail")}));
  EXPECT_EQ(RunWhole("<13>a\n<13>tail", kSyslogMessageBytesMaxDefault, false).frames,
            (std::vector<SyslogFrame>{F("<13>a")}));
}

TEST(FramingOctetCounting, Basic) {
  const Outcome o = RunWhole(Octet(kM1) + Octet(kM2) + Octet(kM3));
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F(kM1), F(kM2), F(kM3)}));
  EXPECT_EQ(o.counters.messages, 3u);
  EXPECT_EQ(o.counters.framing_errors, 0u);
}

TEST(FramingOctetCounting, PayloadMayContainLfNulAndDigits) {
  const std::string m = "12 \n\0 34\n"s;
  const Outcome o = RunWhole(Octet(m) + Octet("9"));
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F(m), F("9")}));
}

TEST(FramingOctetCounting, SplitAtEveryByteBoundary) {
  const std::string stream = Octet(kM1) + Octet(kM2) + Octet(kM3);
  const Outcome want = RunWhole(stream);
  ASSERT_EQ(want.frames.size(), 3u);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    EXPECT_EQ(RunCuts(stream, {cut}), want) << "cut at " << cut;
    for (size_t cut2 = cut; cut2 <= stream.size(); cut2 += 7) {
      EXPECT_EQ(RunCuts(stream, {cut, cut2}), want) << "cuts at " << cut << "," << cut2;
    }
  }
  EXPECT_EQ(RunBytewise(stream), want);
}

TEST(FramingMixed, OctetAndNonTransparentInOneStream) {
  const std::string stream =
      Octet(kM1) + "<13>plain line\n" + Octet(kM2) + "<14>nul ended\0"s + Octet(kM3) + "\n" +
      "<15>last\n";
  const std::vector<SyslogFrame> want = {F(kM1), F("<13>plain line"), F(kM2), F("<14>nul ended"),
                                         F(kM3), F("<15>last")};
  EXPECT_EQ(RunWhole(stream).frames, want);
  EXPECT_EQ(RunBytewise(stream).frames, want);
  EXPECT_EQ(RunWhole(stream).counters.framing_errors, 0u);
}

TEST(FramingTruncation, NonTransparentAtTheLimit) {
  constexpr size_t kMax = 32;
  const std::string exact(kMax, 'a'), over(kMax + 1, 'b'), way_over(1000, 'c');
  const std::string stream = exact + "\n" + over + "\n" + way_over + "\n<13>next\n";
  const std::vector<SyslogFrame> want = {F(exact), F(std::string(kMax, 'b'), true),
                                         F(std::string(kMax, 'c'), true), F("<13>next")};
  for (const Outcome& o : {RunWhole(stream, kMax), RunBytewise(stream, kMax)}) {
    EXPECT_EQ(o.frames, want);
    EXPECT_EQ(o.counters.messages, 4u);
    EXPECT_EQ(o.counters.truncated, 2u);
    EXPECT_EQ(o.counters.framing_errors, 0u);
  }
}

TEST(FramingTruncation, OctetCountedOverTheLimitRestDiscarded) {
  constexpr size_t kMax = 32;
  const std::string exact(kMax, 'a');
  std::string over(100, 'b');
  over[50] = '\n';  // LF inside the discarded part does not end the frame
  const std::string stream = Octet(exact) + Octet(over) + Octet("<13>next") + "<13>line\n";
  const std::vector<SyslogFrame> want = {F(exact), F(over.substr(0, kMax), true), F("<13>next"),
                                         F("<13>line")};
  for (const Outcome& o : {RunWhole(stream, kMax), RunBytewise(stream, kMax)}) {
    EXPECT_EQ(o.frames, want);
    EXPECT_EQ(o.counters.truncated, 1u);
    EXPECT_EQ(o.counters.framing_errors, 0u);
  }
}

TEST(FramingTruncation, DeliveredAsSoonAsTheLimitIsReached) {
  SyslogStreamFramer framer(16);
  std::vector<SyslogFrame> out;
  framer.Feed(Bytes("1000 " + std::string(20, 'x')), &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].truncated);
  framer.Feed(Bytes(std::string(20, 'y')), &out);  // still inside the first frame
  EXPECT_EQ(out.size(), 1u);
  framer.Feed(Bytes(std::string(30, 'z')), &out);
  framer.Feed(Bytes(std::string(1000 - 70, 'w') + "3 abc"), &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1], F("abc"));
}

TEST(FramingErrors, BadOctetCountsResyncAtLf) {
  for (const std::string bad : {"0 <13>zero count", "012 <13>leading zero", "12a <13>non-digit",
                                "1234567890 <13>ten digits", "12\t<13>tab", "99"}) {
    const std::string stream = Octet("<13>before") + bad + "\n" + Octet("<13>after");
    const std::vector<SyslogFrame> want = {F("<13>before"), F(bad), F("<13>after")};
    for (const Outcome& o : {RunWhole(stream), RunBytewise(stream)}) {
      EXPECT_EQ(o.frames, want) << bad;
      EXPECT_EQ(o.counters.framing_errors, 1u) << bad;
      EXPECT_EQ(o.counters.messages, 3u) << bad;
    }
  }
}

TEST(FramingErrors, NineDigitsIsAValidCount) {
  SyslogStreamFramer framer(16);
  std::vector<SyslogFrame> out;
  framer.Feed(Bytes("999999999 " + std::string(40, 'x')), &out);
  EXPECT_EQ(framer.counters().framing_errors, 0u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], F(std::string(16, 'x'), true));
}

TEST(FramingErrors, OversizedBadLineIsTruncatedToo) {
  const std::string stream = "7x" + std::string(100, 'q') + "\n5 hello";
  const Outcome o = RunWhole(stream, 16);
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F("7x" + std::string(14, 'q'), true), F("hello")}));
  EXPECT_EQ(o.counters.framing_errors, 1u);
  EXPECT_EQ(o.counters.truncated, 1u);
}

TEST(FramingFinish, TornOctetFrameIsTruncatedAndAFramingError) {
  Outcome o = RunWhole("5 <13>a\n10 <13>");
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F("<13>a"), F("<13>", true)}));
  EXPECT_EQ(o.counters.framing_errors, 1u);
  EXPECT_EQ(o.counters.truncated, 1u);
  o = RunWhole("10 ");  // count, nothing after
  EXPECT_TRUE(o.frames.empty());
  EXPECT_EQ(o.counters.framing_errors, 1u);
  o = RunWhole("123");  // a pending count is a bad count, kept as a line
  EXPECT_EQ(o.frames, (std::vector<SyslogFrame>{F("123")}));
  EXPECT_EQ(o.counters.framing_errors, 1u);
}

TEST(FramingFinish, FramerIsReusableAfterFinish) {
  SyslogStreamFramer framer(64);
  std::vector<SyslogFrame> out;
  framer.Feed(Bytes("20 <13>cut short"), &out);
  framer.Finish(&out);
  framer.Feed(Bytes("3 abc"), &out);
  framer.Finish(&out);
  EXPECT_EQ(out, (std::vector<SyslogFrame>{F("<13>cut short", true), F("abc")}));
  EXPECT_EQ(framer.counters().messages, 2u);
  EXPECT_EQ(framer.counters().bytes, 21u);
}

TEST(FramingSink, CallbackGetsTheSameAsTheVector) {
  std::vector<SyslogFrame> via_sink;
  SyslogStreamFramer framer(32, [&](std::string_view m, bool t) {
    via_sink.push_back({std::string(m), t});
  });
  const std::string stream = Octet(kM1) + "<13>x\n" + std::string(40, 'l') + "\n";
  framer.Feed(Bytes(stream.substr(0, 10)));
  framer.Feed(Bytes(stream.substr(10)));
  framer.Finish();
  EXPECT_EQ(via_sink, RunWhole(stream, 32).frames);
  EXPECT_EQ(framer.counters(), RunWhole(stream, 32).counters);
}

TEST(FramingMemory, BoundedOnHugeLinesAndCounts) {
  constexpr size_t kMax = 1024;
  SyslogStreamFramer framer(kMax);
  std::vector<SyslogFrame> out;
  const std::string chunk(4096, 'x');
  for (int i = 0; i < 2560; ++i) {  // 10 MiB line
    framer.Feed(Bytes(chunk), &out);
    ASSERT_LE(framer.buffered_bytes(), kMax + kOctetCountDigitsMax);
  }
  framer.Feed(Bytes("\n999999999 "), &out);
  for (int i = 0; i < 2560; ++i) {  // ~3 MiB of one octet-counted frame
    framer.Feed(Bytes(chunk.substr(0, 1 + i % 4000)), &out);
    ASSERT_LE(framer.buffered_bytes(), kMax + kOctetCountDigitsMax);
  }
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(framer.counters().truncated, 2u);
}

TEST(FramingDatagram, OneDatagramOneMessage) {
  EXPECT_EQ(FrameDatagram(Bytes("<13>a\n")).message, "<13>a");
  EXPECT_EQ(FrameDatagram(Bytes("<13>a\0\n\0"s)).message, "<13>a");
  EXPECT_EQ(FrameDatagram(Bytes("<13>a\nb\n")).message, "<13>a\nb");  // inner LF kept
  EXPECT_EQ(FrameDatagram(Bytes("<13>a\r\n")).message, "<13>a\r");   // CR left to the parser
  EXPECT_EQ(FrameDatagram(Bytes("")).message, "");
  EXPECT_EQ(FrameDatagram(Bytes("\n")).message, "");
  const std::string exact(20, 'e'), over(21, 'o');
  EXPECT_FALSE(FrameDatagram(Bytes(exact + "\n"), 20).truncated);
  EXPECT_EQ(FrameDatagram(Bytes(exact + "\n"), 20).message, exact);
  const DatagramMessage d = FrameDatagram(Bytes(over), 20);
  EXPECT_TRUE(d.truncated);
  EXPECT_EQ(d.message, over.substr(0, 20));
}

// --- Properties -------------------------------------------------------------

std::vector<size_t> RandomCuts(std::mt19937_64* rng, size_t n) {
  std::vector<size_t> cuts;
  size_t at = 0;
  while (true) {
    at += 1 + (*rng)() % 9;
    if ((*rng)() % 8 == 0) at += (*rng)() % 64;
    if (at >= n) break;
    cuts.push_back(at);
  }
  return cuts;
}

TEST(FramingProperty, RandomBytesIndependentOfChunking) {
  std::mt19937_64 rng(6587);
  // Bytes that steer every state: digits (counts), SP, trailers, CR, text.
  const std::string alphabet = "0123456789     \n\n\0\r<13>abc"s;
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t max = kSyslogMessageBytesMin + rng() % 48;
    std::string stream(rng() % 400, '\0');
    for (char& c : stream) c = alphabet[rng() % alphabet.size()];
    const Outcome whole = RunWhole(stream, max);
    ASSERT_EQ(RunCuts(stream, RandomCuts(&rng, stream.size()), max), whole) << "iter " << iter;
    if (iter % 10 == 0) {
      ASSERT_EQ(RunBytewise(stream, max), whole) << "iter " << iter;
    }
    EXPECT_EQ(whole.counters.bytes, stream.size());
    EXPECT_EQ(whole.counters.messages, whole.frames.size());
    size_t truncated = 0;
    for (const SyslogFrame& f : whole.frames) {
      EXPECT_LE(f.message.size(), max);
      EXPECT_FALSE(f.message.empty());
      if (f.truncated) {
        ++truncated;
        EXPECT_TRUE(f.message.size() == max || whole.counters.framing_errors > 0);
      }
    }
    EXPECT_EQ(truncated, whole.counters.truncated);
  }
}

TEST(FramingProperty, RandomlyFramedMessagesComeBackExactly) {
  std::mt19937_64 rng(5424);
  const std::string body_chars = "<>13 abcxyz:[]-\n\0\r0123456789"s;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string stream;
    std::vector<SyslogFrame> want;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      std::string m(1 + rng() % 60, '\0');
      for (char& c : m) c = body_chars[rng() % body_chars.size()];
      if (rng() % 2 == 0) {
        stream += Octet(m);
      } else {  // non-transparent: no trailer inside, no digit or trailer first
        for (char& c : m) {
          if (c == '\n' || c == '\0') c = '.';
        }
        if (m[0] >= '0' && m[0] <= '9') m[0] = '<';
        if (m == "\r") m = "x";
        stream += m + (rng() % 2 ? "\n"s : "\0"s);
      }
      want.push_back(F(m));
    }
    const Outcome o = RunCuts(stream, RandomCuts(&rng, stream.size()), 64);
    ASSERT_EQ(o.frames, want) << "iter " << iter;
    EXPECT_EQ(o.counters.framing_errors, 0u);
    EXPECT_EQ(o.counters.truncated, 0u);
  }
}

}  // namespace
}  // namespace tandem::collect
