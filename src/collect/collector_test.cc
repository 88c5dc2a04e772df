// Collector end to end over loopback sockets into a FileBlockSink on a temp
// directory: every listener, RELP acknowledgement after durability,
// back-pressure, the capacity guard, rotation, recovery, retention, bad input
// and Stop. Every wait is bounded (kWait).
#include "collect/collector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "os/fs.h"
#include "store/search.h"
#include "store/segment.h"
#include "util/temp_dir.h"

#if defined(TANDEM_HAVE_LIBRELP)
extern "C" {
#include <librelp.h>
}
#endif

namespace tandem::collect {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr auto kWait = std::chrono::seconds(20);

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = kWait) {
  const auto deadline = SteadyClock::now() + limit;
  while (SteadyClock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

void SendUdp(uint16_t port, std::string_view data) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a = Loopback(port);
  ssize_t n = ::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  EXPECT_EQ(n, static_cast<ssize_t>(data.size()));
  ::close(fd);
}

int TcpConnect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a = Loopback(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads what arrives within `ms` (returns early once `until` is found).
std::string ReadFor(int fd, int ms, std::string_view until = {}) {
  std::string got;
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(ms);
  while (SteadyClock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5) != 1) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    if (!until.empty() && got.find(until) != std::string::npos) break;
  }
  return got;
}

std::string RelpFrame(int txnr, std::string_view cmd, std::string_view data) {
  std::string f = std::to_string(txnr) + " " + std::string(cmd) + " " +
                  std::to_string(data.size());
  if (!data.empty()) f += " " + std::string(data);
  return f + "\n";
}
constexpr std::string_view kOffers = "relp_version=0\nrelp_software=test\ncommands=syslog";

std::string Msg5424(const std::string& text) {
  return "<13>1 2026-01-02T03:04:05Z hostx app 42 ID1 - " + text;
}

// A sink that can hold back Append completions (the replicated write is
// "not durable yet"): the inner write happens, `done` waits for Release.
class HoldingSink final : public BlockSink {
 public:
  explicit HoldingSink(BlockSink& inner) : inner_(inner) {}
  ~HoldingSink() override { Release(); }
  void Hold() { hold_ = true; }
  void Release() {
    std::vector<std::function<void()>> run;
    {
      std::lock_guard<std::mutex> l(mu_);
      hold_ = false;
      run.swap(held_);
    }
    for (auto& f : run) f();
  }
  size_t held() {
    std::lock_guard<std::mutex> l(mu_);
    return held_.size();
  }
  std::atomic<int> fail_appends{0};  // the next N appends fail

  void Create(const std::string& p, Done d) override { inner_.Create(p, std::move(d)); }
  void Append(const std::string& p, uint64_t off, std::vector<uint8_t> b, Done d) override {
    if (fail_appends.load() > 0) {
      --fail_appends;
      d(Status::Error("injected append failure"));
      return;
    }
    inner_.Append(p, off, std::move(b), [this, d](Status st) {
      std::lock_guard<std::mutex> l(mu_);
      if (hold_) {
        held_.push_back([d, st] { d(st); });
        return;
      }
      d(st);
    });
  }
  void Sync(const std::string& p, Done d) override { inner_.Sync(p, std::move(d)); }
  void Truncate(const std::string& p, uint64_t s, Done d) override {
    inner_.Truncate(p, s, std::move(d));
  }
  void Delete(const std::string& p, Done d) override { inner_.Delete(p, std::move(d)); }

 private:
  BlockSink& inner_;
  std::mutex mu_;
  bool hold_ = false;
  std::vector<std::function<void()>> held_;
};

class CollectorTest : public ::testing::Test {
 protected:
  CollectorTest() : store_(dir_.path() + "/store"), file_sink_(fs_, store_), sink_(file_sink_) {
    EXPECT_TRUE(fs_.MakeDirs(store_).ok());
  }

  CollectorOptions Options() {
    CollectorOptions o;
    o.syslog_udp_port = 0;
    o.syslog_tcp_port = 0;
    o.relp_port = 0;
    o.netflow_port = 0;
    o.store_dir = store_;
    o.writer = "hostA";
    o.generation = 1;
    o.batch_ms = 2;
    o.capacity_check_ms = 20;
    o.capacity_probe = [this](const std::string&) -> Result<double> { return used_.load(); };
    return o;
  }

  uint64_t CountEvents(const std::string& contains = "") {
    store::EventQuery q;
    q.count_only = true;
    if (!contains.empty()) q.contains = contains;
    auto r = store::SearchEvents(fs_, store_, q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->total : 0;
  }

  static uint64_t Get(const Collector& c, const nlohmann::json::json_pointer& p) {
    return c.StatusJson().at(p).get<uint64_t>();
  }

  TempDir dir_{"collector-test"};
  os::FileSystem& fs_ = os::RealFileSystem();
  std::string store_;
  FileBlockSink file_sink_;
  HoldingSink sink_;
  std::atomic<double> used_{10.0};
};

using JP = nlohmann::json::json_pointer;

TEST_F(CollectorTest, UdpSyslogIsSearchable) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  ASSERT_NE(c.syslog_udp_port(), 0);
  SendUdp(c.syslog_udp_port(), Msg5424("udp-one") + "\n");
  SendUdp(c.syslog_udp_port(), "<34>Oct 11 22:14:15 mymachine su: udp-two");
  SendUdp(c.syslog_udp_port(), "no pri at all udp-three");
  ASSERT_TRUE(WaitFor([&] { return CountEvents("udp-") == 3; })) << c.StatusJson().dump();
  store::EventQuery q;
  q.contains = "udp-one";
  auto r = store::SearchEvents(fs_, store_, q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->events.size(), 1u);
  EXPECT_EQ(r->events[0].host, "hostx");
  EXPECT_EQ(r->events[0].app, "app");
  EXPECT_EQ(r->events[0].severity, 5);
  EXPECT_EQ(r->events[0].message, "udp-one");
  EXPECT_EQ(r->events[0].sender.rfind("127.0.0.1:", 0), 0u);
  auto s = c.StatusJson();
  EXPECT_EQ(s["listeners"]["syslog_udp"]["received"], 3);
  EXPECT_EQ(s["listeners"]["syslog_udp"]["parsed_raw"], 1);
  EXPECT_EQ(s["capacity"]["state"], "ok");
  c.Stop();
}

TEST_F(CollectorTest, TcpOctetCountingAndLf) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  int fd = TcpConnect(c.syslog_tcp_port());
  const std::string a = Msg5424("tcp-octet-a");
  const std::string b = Msg5424("tcp-octet-b with\nembedded newline");
  std::string stream = std::to_string(a.size()) + " " + a + std::to_string(b.size()) + " " + b;
  stream += Msg5424("tcp-lf-c") + "\n" + Msg5424("tcp-lf-d") + "\n";
  // Cut into odd pieces: framing must not depend on it.
  for (size_t i = 0; i < stream.size(); i += 7) {
    ASSERT_TRUE(SendAll(fd, std::string_view(stream).substr(i, 7)));
  }
  ASSERT_TRUE(WaitFor([&] { return CountEvents("tcp-") == 4; })) << c.StatusJson().dump();
  EXPECT_EQ(CountEvents("embedded newline"), 1u);
  ::close(fd);
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/received")), 4u);
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/framing_errors")), 0u);
  c.Stop();
}

// No rsp for a syslog transaction before the sink said its block is durable.
TEST_F(CollectorTest, RelpAckedOnlyAfterDurable) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  int fd = TcpConnect(c.relp_port());
  ASSERT_TRUE(SendAll(fd, RelpFrame(1, "open", kOffers)));
  std::string open_rsp = ReadFor(fd, 5000, "\n");
  ASSERT_EQ(open_rsp.rfind("1 rsp ", 0), 0u) << open_rsp;
  sink_.Hold();
  ASSERT_TRUE(SendAll(fd, RelpFrame(2, "syslog", Msg5424("relp-held-1")) +
                              RelpFrame(3, "syslog", Msg5424("relp-held-2"))));
  ASSERT_TRUE(WaitFor([&] { return sink_.held() >= 1; }));
  // The data is written, but not "durable": no rsp may come.
  EXPECT_EQ(ReadFor(fd, 300), "");
  EXPECT_EQ(Get(c, JP("/listeners/relp/acked")), 0u);
  sink_.Release();
  std::string rsp = ReadFor(fd, 5000, "3 rsp 6 200 OK\n");
  EXPECT_EQ(rsp, "2 rsp 6 200 OK\n3 rsp 6 200 OK\n");
  EXPECT_EQ(CountEvents("relp-held"), 2u);
  ASSERT_TRUE(SendAll(fd, RelpFrame(4, "close", "")));
  std::string close_rsp = ReadFor(fd, 5000, "serverclose");
  EXPECT_NE(close_rsp.find("4 rsp 6 200 OK"), std::string::npos) << close_rsp;
  ::close(fd);
  EXPECT_EQ(Get(c, JP("/listeners/relp/acked")), 2u);
  c.Stop();
}

TEST_F(CollectorTest, RelpNackedWhenAppendFails) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  int fd = TcpConnect(c.relp_port());
  ASSERT_TRUE(SendAll(fd, RelpFrame(1, "open", kOffers)));
  ASSERT_FALSE(ReadFor(fd, 5000, "\n").empty());
  sink_.fail_appends = 1;
  ASSERT_TRUE(SendAll(fd, RelpFrame(2, "syslog", Msg5424("relp-fail"))));
  std::string rsp = ReadFor(fd, 5000, "\n");
  EXPECT_EQ(rsp.rfind("2 rsp ", 0), 0u) << rsp;
  EXPECT_NE(rsp.find("500"), std::string::npos) << rsp;
  EXPECT_EQ(Get(c, JP("/listeners/relp/nacked")), 1u);
  EXPECT_EQ(Get(c, JP("/store/append_errors")), 1u);
  // The next message goes to a fresh segment (after the retry delay) and is acked.
  ASSERT_TRUE(SendAll(fd, RelpFrame(3, "syslog", Msg5424("relp-after"))));
  EXPECT_EQ(ReadFor(fd, 10000, "\n"), "3 rsp 6 200 OK\n");
  EXPECT_EQ(CountEvents("relp-after"), 1u);
  ::close(fd);
  c.Stop();
}

TEST_F(CollectorTest, BackPressureWhenSinkStalls) {
  CollectorOptions o = Options();
  o.queue_bytes_max = 64 * 1024;
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  sink_.Hold();
  constexpr int kLines = 100'000;  // ~8 MB: more than the socket buffers hold
  int fd = TcpConnect(c.syslog_tcp_port());
  std::atomic<bool> sent_all{false};
  std::thread sender([&] {
    std::string batch;
    for (int i = 0; i < kLines; ++i) {
      batch += Msg5424("bp-" + std::to_string(i)) + "\n";
      if (batch.size() > 64 * 1024) {
        if (!SendAll(fd, batch)) return;
        batch.clear();
      }
    }
    sent_all = SendAll(fd, batch);
  });
  ASSERT_TRUE(WaitFor([&] { return c.StatusJson()["queue"]["full"].get<bool>(); }))
      << c.StatusJson().dump();
  // Reads stop: the byte count stays put while the sink is stalled.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const uint64_t bytes1 = Get(c, JP("/listeners/syslog_tcp/bytes"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/bytes")), bytes1);
  EXPECT_FALSE(sent_all.load());
  // Over the bound by at most the records of one read (64 KiB of input; each
  // ~80-byte line costs its encoded size + 64 bytes of accounting).
  EXPECT_LE(Get(c, JP("/queue/bytes")), o.queue_bytes_max + 2 * 64 * 1024);
  // UDP arriving meanwhile is dropped and counted.
  SendUdp(c.syslog_udp_port(), Msg5424("udp-while-full"));
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/listeners/syslog_udp/udp_dropped")) == 1; }));
  sink_.Release();
  sender.join();
  EXPECT_TRUE(sent_all.load());
  ::close(fd);
  ASSERT_TRUE(WaitFor([&] { return CountEvents("bp-") == kLines; })) << c.StatusJson().dump();
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/received")), static_cast<uint64_t>(kLines));
  EXPECT_FALSE(c.StatusJson()["queue"]["full"].get<bool>());
  c.Stop();
}

TEST_F(CollectorTest, CapacityGuardStopsAndResumes) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  int relp = TcpConnect(c.relp_port());
  ASSERT_TRUE(SendAll(relp, RelpFrame(1, "open", kOffers)));
  ASSERT_FALSE(ReadFor(relp, 5000, "\n").empty());

  used_ = 96.0;
  ASSERT_TRUE(WaitFor([&] { return c.StatusJson()["capacity"]["state"] == "stopped"; }));
  EXPECT_NE(c.StatusJson()["capacity"]["reason"].get<std::string>().find("96.0%"),
            std::string::npos);
  SendUdp(c.syslog_udp_port(), Msg5424("cap-udp-dropped"));
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/listeners/syslog_udp/udp_dropped")) == 1; }));
  ASSERT_TRUE(SendAll(relp, RelpFrame(2, "syslog", Msg5424("cap-relp-refused"))));
  std::string rsp = ReadFor(relp, 5000, "\n");
  EXPECT_NE(rsp.find("2 rsp"), std::string::npos);
  EXPECT_NE(rsp.find("500 store full"), std::string::npos) << rsp;
  // TCP: not read while stopped.
  int tcp = TcpConnect(c.syslog_tcp_port());
  ASSERT_TRUE(SendAll(tcp, Msg5424("cap-tcp-later") + "\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/received")), 0u);

  used_ = 92.0;  // between the marks: still stopped
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(c.StatusJson()["capacity"]["state"], "stopped");
  used_ = 80.0;
  ASSERT_TRUE(WaitFor([&] { return c.StatusJson()["capacity"]["state"] == "ok"; }));
  ASSERT_TRUE(WaitFor([&] { return CountEvents("cap-tcp-later") == 1; }));
  SendUdp(c.syslog_udp_port(), Msg5424("cap-udp-stored"));
  ASSERT_TRUE(SendAll(relp, RelpFrame(3, "syslog", Msg5424("cap-relp-stored"))));
  EXPECT_EQ(ReadFor(relp, 5000, "\n"), "3 rsp 6 200 OK\n");
  ASSERT_TRUE(WaitFor([&] { return CountEvents("cap-") == 3; }));
  EXPECT_EQ(CountEvents("cap-relp-refused"), 0u);
  ::close(tcp);
  ::close(relp);
  c.Stop();
}

void Put16(std::vector<uint8_t>* b, uint16_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>* b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}

TEST_F(CollectorTest, NetflowV5BecomesFlowRecord) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  std::vector<uint8_t> d;
  const uint32_t now_s = static_cast<uint32_t>(::time(nullptr));
  Put16(&d, 5);
  Put16(&d, 1);         // count
  Put32(&d, 100'000);   // sysuptime ms
  Put32(&d, now_s);     // unix_secs
  Put32(&d, 0);         // unix_nsecs
  Put32(&d, 1);         // flow_sequence
  Put32(&d, 0);         // engine type, id, sampling
  Put32(&d, 0x0A000001);  // 10.0.0.1
  Put32(&d, 0x0A000002);  // 10.0.0.2
  Put32(&d, 0);           // nexthop
  Put16(&d, 1);
  Put16(&d, 2);           // input, output
  Put32(&d, 7);           // packets
  Put32(&d, 4200);        // bytes
  Put32(&d, 90'000);      // first
  Put32(&d, 95'000);      // last
  Put16(&d, 40000);
  Put16(&d, 443);
  d.push_back(0);
  d.push_back(0x18);  // pad1, tcp_flags
  d.push_back(6);
  d.push_back(0);  // proto, tos
  Put16(&d, 0);
  Put16(&d, 0);  // AS
  d.push_back(24);
  d.push_back(24);
  Put16(&d, 0);
  ASSERT_EQ(d.size(), 24u + 48u);
  SendUdp(c.netflow_port(), std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
  store::FlowQuery q;
  q.port = 443;
  ASSERT_TRUE(WaitFor([&] {
    auto r = store::SearchFlows(fs_, store_, q);
    return r.ok() && r->total == 1;
  })) << c.StatusJson().dump();
  auto r = store::SearchFlows(fs_, store_, q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->flows.size(), 1u);
  EXPECT_EQ(r->flows[0].src, "10.0.0.1");
  EXPECT_EQ(r->flows[0].dst, "10.0.0.2");
  EXPECT_EQ(r->flows[0].src_port, 40000);
  EXPECT_EQ(r->flows[0].protocol, 6);
  EXPECT_EQ(r->flows[0].bytes, 4200u);
  EXPECT_EQ(r->flows[0].packets, 7u);
  EXPECT_EQ(r->flows[0].version, 5);
  EXPECT_EQ(Get(c, JP("/listeners/netflow/flows")), 1u);
  c.Stop();
}

TEST_F(CollectorTest, SegmentsRotateBySize) {
  CollectorOptions o = Options();
  o.segment_bytes = 4096;
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  constexpr int kN = 300;
  int fd = TcpConnect(c.syslog_tcp_port());
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(SendAll(fd, Msg5424("rot-" + std::to_string(i) + " " + std::string(150, 'x')) +
                                "\n"));
    if (i % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(WaitFor([&] { return CountEvents("rot-") == kN; })) << c.StatusJson().dump();
  EXPECT_GE(Get(c, JP("/store/segments_sealed")), 3u);
  auto files = fs_.ListFiles(store_ + "/events");
  ASSERT_TRUE(files.ok());
  size_t sealed = 0;
  for (const std::string& f : files.value()) {
    auto name = store::ParseSegmentFileName(store::SegmentKind::kEvents, f);
    ASSERT_TRUE(name.has_value()) << f;
    EXPECT_EQ(name->writer, "hostA");
    EXPECT_EQ(name->generation, 1u);
    auto rd = store::SegmentReader::Open(fs_, store_ + "/events/" + f);
    ASSERT_TRUE(rd.ok());
    if (rd->sealed()) {
      ++sealed;
      EXPECT_LT(rd->file_size(), 4096u + 1024u) << f;  // sealed near the size mark
    }
  }
  EXPECT_GE(sealed, 3u);
  EXPECT_GE(files->size(), sealed);
  ::close(fd);
  c.Stop();
}

TEST_F(CollectorTest, SealsByAgeAndWritesStatusFile) {
  CollectorOptions o = Options();
  o.segment_seconds = 1;
  o.status_file = dir_.path() + "/collector.json";
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  SendUdp(c.syslog_udp_port(), Msg5424("age-1"));
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/store/segments_sealed")) == 1; }))
      << c.StatusJson().dump();
  SendUdp(c.syslog_udp_port(), Msg5424("age-2"));  // goes to a new segment
  ASSERT_TRUE(WaitFor([&] { return CountEvents("age-") == 2; }));
  auto files = fs_.ListFiles(store_ + "/events");
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 2u);
  ASSERT_TRUE(WaitFor([&] {
    auto text = os::ReadWholeFile(fs_, o.status_file, 1 << 20);
    if (!text.ok() || !text->has_value()) return false;
    auto j = nlohmann::json::parse(text->value().begin(), text->value().end(), nullptr, false);
    return !j.is_discarded() && j["store"]["segments_sealed"] == 1;
  }));
  c.Stop();
}

// A crash leaves an unsealed segment with a torn tail: the next Start cuts the
// tail, seals the segment and continues with a new seq.
TEST_F(CollectorTest, RecoversTornSegmentOnRestart) {
  std::string seg_path;
  {
    Collector c(Options(), sink_);
    ASSERT_TRUE(c.Start().ok());
    for (int i = 0; i < 5; ++i) SendUdp(c.syslog_udp_port(), Msg5424("rec-" + std::to_string(i)));
    ASSERT_TRUE(WaitFor([&] { return CountEvents("rec-") == 5; }));
    c.Stop();  // the open segment stays unsealed
  }
  auto files = fs_.ListFiles(store_ + "/events");
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  seg_path = store_ + "/events/" + files->front();
  {
    auto rd = store::SegmentReader::Open(fs_, seg_path);
    ASSERT_TRUE(rd.ok());
    EXPECT_FALSE(rd->sealed());
  }
  // Torn tail: half a block header of garbage.
  {
    auto f = fs_.Open(seg_path, false);
    ASSERT_TRUE(f.ok());
    auto size = f.value()->Size();
    ASSERT_TRUE(size.ok());
    std::vector<uint8_t> junk(30, 0xA5);
    ASSERT_TRUE(f.value()->WriteAt(size.value(), junk).ok());
  }
  auto before = store::RecoverSegment(fs_, seg_path);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->torn_bytes, 30u);

  Collector c2(Options(), sink_);
  ASSERT_TRUE(c2.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Get(c2, JP("/store/segments_recovered")) == 1; }))
      << c2.StatusJson().dump();
  EXPECT_EQ(Get(c2, JP("/store/torn_bytes_cut")), 30u);
  auto rd = store::SegmentReader::Open(fs_, seg_path);
  ASSERT_TRUE(rd.ok());
  EXPECT_TRUE(rd->sealed());
  EXPECT_EQ(rd->torn_bytes(), 0u);
  auto evs = rd->ReadAllEvents();
  ASSERT_TRUE(evs.ok());
  EXPECT_EQ(evs->size(), 5u);
  SendUdp(c2.syslog_udp_port(), Msg5424("rec-after"));
  ASSERT_TRUE(WaitFor([&] { return CountEvents("rec-") == 6; }));
  auto name = store::ParseSegmentFileName(store::SegmentKind::kEvents, files->front());
  ASSERT_TRUE(name.has_value());
  store::SegmentName next = *name;
  next.seq += 1;
  auto size = fs_.FileSize(store_ + "/" + store::SegmentPath(next));
  ASSERT_TRUE(size.ok());
  EXPECT_TRUE(size->has_value()) << store::SegmentPath(next);
  c2.Stop();
}

void WriteSealedSegment(os::FileSystem& fs, const std::string& store, const std::string& writer,
                        uint64_t seq, int64_t time_us) {
  store::SegmentName n{store::SegmentKind::kEvents, writer, 7, seq};
  auto w = store::SegmentWriter::Create(n, time_us);
  ASSERT_TRUE(w.ok());
  store::EventRecord e;
  e.event_time_us = time_us;
  e.receive_time_us = time_us;
  e.message = "retention";
  ASSERT_TRUE(w->Add(e).ok());
  std::vector<uint8_t> bytes = w->Header();
  auto blk = w->TakeBlock();
  bytes.insert(bytes.end(), blk.begin(), blk.end());
  auto seal = w->Seal();
  bytes.insert(bytes.end(), seal.begin(), seal.end());
  ASSERT_TRUE(fs.MakeDirs(store + "/events").ok());
  ASSERT_TRUE(os::WriteWholeFileAtomic(fs, store + "/" + store::SegmentPath(n), bytes).ok());
}

TEST_F(CollectorTest, RetentionDeletesOldSealedSegments) {
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count();
  const int64_t day_us = 86'400LL * 1'000'000;
  WriteSealedSegment(fs_, store_, "old", 1, now_us - 10 * day_us);
  WriteSealedSegment(fs_, store_, "old", 2, now_us - 5 * day_us);
  WriteSealedSegment(fs_, store_, "old", 3, now_us - day_us / 2);
  CollectorOptions o = Options();
  o.retention_days = 1;
  o.retention_interval_ms = 50;
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/store/segments_deleted")) == 2; }))
      << c.StatusJson().dump();
  auto files = fs_.ListFiles(store_ + "/events");
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ(files->front(), "old-0000000000000007-0000000003.seg");
  c.Stop();
}

TEST_F(CollectorTest, BadInputIsCountedAndNeverCrashes) {
  CollectorOptions o = Options();
  o.message_bytes_max = 1024;
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  std::mt19937_64 rng(42);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  // UDP syslog: random datagrams, an empty one, an oversized one.
  for (int i = 0; i < 50; ++i) SendUdp(c.syslog_udp_port(), random_bytes(1 + rng() % 2000));
  SendUdp(c.syslog_udp_port(), "");
  SendUdp(c.syslog_udp_port(), std::string(5000, 'L'));
  // TCP: bad octet counts, a huge line, random bytes.
  {
    int fd = TcpConnect(c.syslog_tcp_port());
    ASSERT_TRUE(SendAll(fd, "0123 leading zero\n9999999999 too many digits\n12x bad\n"));
    ASSERT_TRUE(SendAll(fd, std::string(10'000, 'T') + "\n"));
    ASSERT_TRUE(SendAll(fd, random_bytes(100'000)));
    ::close(fd);
  }
  // RELP: garbage before open; then a frame over the data limit.
  {
    int fd = TcpConnect(c.relp_port());
    ASSERT_TRUE(SendAll(fd, "garbage that is not relp\n"));
    EXPECT_NE(ReadFor(fd, 5000, "serverclose").find("serverclose"), std::string::npos);
    ::close(fd);
    fd = TcpConnect(c.relp_port());
    ASSERT_TRUE(SendAll(fd, RelpFrame(1, "open", kOffers) + "2 syslog 999999999 x"));
    EXPECT_NE(ReadFor(fd, 5000, "serverclose").find("serverclose"), std::string::npos);
    ::close(fd);
  }
  // NetFlow: random datagrams and truncated headers.
  for (int i = 0; i < 50; ++i) SendUdp(c.netflow_port(), random_bytes(1 + rng() % 1500));
  SendUdp(c.netflow_port(), std::string("\x00\x05\x00\x01", 4));
  // Still serving: a good message after all that is stored.
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/listeners/syslog_udp/received")) >= 51; }));
  SendUdp(c.syslog_udp_port(), Msg5424("still-alive"));
  ASSERT_TRUE(WaitFor([&] { return CountEvents("still-alive") == 1; })) << c.StatusJson().dump();
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/listeners/netflow/framing_errors")) >= 40; }))
      << c.StatusJson().dump();
  auto s = c.StatusJson();
  EXPECT_GE(s["listeners"]["syslog_udp"]["truncated"].get<uint64_t>(), 1u);
  EXPECT_GE(s["listeners"]["syslog_udp"]["parsed_raw"].get<uint64_t>(), 40u);
  EXPECT_GE(s["listeners"]["syslog_tcp"]["framing_errors"].get<uint64_t>(), 2u);
  EXPECT_GE(s["listeners"]["syslog_tcp"]["truncated"].get<uint64_t>(), 1u);
  EXPECT_EQ(s["listeners"]["relp"]["framing_errors"].get<uint64_t>(), 2u);
  EXPECT_EQ(s["store"]["record_errors"].get<uint64_t>(), 0u);
  c.Stop();
}

TEST_F(CollectorTest, TcpConnectionsBeyondMaxAreClosed) {
  CollectorOptions o = Options();
  o.tcp_connections_max = 2;
  Collector c(o, sink_);
  ASSERT_TRUE(c.Start().ok());
  int a = TcpConnect(c.syslog_tcp_port());
  int b = TcpConnect(c.relp_port());
  ASSERT_TRUE(WaitFor([&] { return c.StatusJson()["connections_open"] == 2; }));
  int extra = TcpConnect(c.syslog_tcp_port());
  pollfd p{extra, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  char ch;
  EXPECT_EQ(::read(extra, &ch, 1), 0);  // closed by the collector
  EXPECT_EQ(Get(c, JP("/listeners/syslog_tcp/connections_rejected")), 1u);
  ::close(extra);
  ::close(a);
  ::close(b);
  c.Stop();
}

// Stop while RELP messages wait for durability: the session gets serverclose,
// Stop returns within its bound, and late completions are harmless.
TEST_F(CollectorTest, StopWithRelpInFlight) {
  CollectorOptions o = Options();
  o.stop_timeout_ms = 300;
  auto c = std::make_unique<Collector>(o, sink_);
  ASSERT_TRUE(c->Start().ok());
  int fd = TcpConnect(c->relp_port());
  ASSERT_TRUE(SendAll(fd, RelpFrame(1, "open", kOffers)));
  ASSERT_FALSE(ReadFor(fd, 5000, "\n").empty());
  sink_.Hold();
  for (int i = 2; i < 12; ++i) {
    ASSERT_TRUE(SendAll(fd, RelpFrame(i, "syslog", Msg5424("inflight-" + std::to_string(i)))));
  }
  ASSERT_TRUE(WaitFor([&] { return sink_.held() >= 1; }));
  const auto t0 = SteadyClock::now();
  c->Stop();
  const auto took = SteadyClock::now() - t0;
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_GE(took, std::chrono::milliseconds(250));  // it did wait for the held append
  std::string got = ReadFor(fd, 2000, "serverclose");
  EXPECT_NE(got.find("0 serverclose 0"), std::string::npos) << got;
  EXPECT_EQ(got.find("200 OK"), std::string::npos) << got;  // nothing acked
  EXPECT_EQ(c->StatusJson()["listeners"]["relp"]["acked"], 0);
  ::close(fd);
  c.reset();
  sink_.Release();  // completions after the collector is gone
}

TEST_F(CollectorTest, InvalidOptionsAndBusyPortFailStart) {
  CollectorOptions o = Options();
  o.writer = "bad name/";
  Collector bad(o, sink_);
  EXPECT_FALSE(bad.Start().ok());
  Collector a(Options(), sink_);
  ASSERT_TRUE(a.Start().ok());
  CollectorOptions o2 = Options();
  o2.syslog_tcp_port = a.syslog_tcp_port();
  Collector b(o2, sink_);
  Status st = b.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("syslog_tcp"), std::string::npos) << st.ToString();
  a.Stop();
}

// Not a benchmark (that is `tandem bench ingest`): a sanity number for the
// report, TCP into FileBlockSink with real fdatasync, 256-byte messages.
TEST_F(CollectorTest, TcpThroughputSanity) {
  Collector c(Options(), file_sink_);
  ASSERT_TRUE(c.Start().ok());
  constexpr int kN = 200'000;
  std::string line = Msg5424("tput-");
  line += std::string(255 - line.size(), 'x') + "\n";  // 256 bytes with the LF
  std::string batch;
  for (int i = 0; i < 256; ++i) batch += line;
  int fd = TcpConnect(c.syslog_tcp_port());
  const auto t0 = SteadyClock::now();
  for (int i = 0; i < kN / 256; ++i) ASSERT_TRUE(SendAll(fd, batch));
  const uint64_t want = static_cast<uint64_t>(kN / 256 * 256);
  ASSERT_TRUE(WaitFor([&] { return Get(c, JP("/store/records_written")) == want; }))
      << c.StatusJson().dump();
  const double s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  std::printf("[ tput     ] tcp -> FileBlockSink: %.0f events/s (%llu events, %.2f s, %llu syncs)\n",
              static_cast<double>(want) / s, static_cast<unsigned long long>(want), s,
              static_cast<unsigned long long>(file_sink_.syncs()));
  ::close(fd);
  EXPECT_EQ(CountEvents("tput-"), want);
  c.Stop();
}

#if defined(TANDEM_HAVE_LIBRELP)

std::atomic<int> g_rsp_ok{0};
void DbgPrint(char* fmt, ...) {
  // librelp's debug line for an rsp: count the 200s.
  constexpr std::string_view kRsp = "in rsp command handler";
  if (std::string_view(fmt).substr(0, kRsp.size()) != kRsp) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (std::strstr(buf, ", code 200,") != nullptr) ++g_rsp_ok;
}
unsigned char* U(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

// The real librelp client (as rsyslog's omrelp uses it): its window fills
// while nothing is durable, and every message is acked once it is.
TEST_F(CollectorTest, LibrelpClientAckedAfterDurable) {
  Collector c(Options(), sink_);
  ASSERT_TRUE(c.Start().ok());
  g_rsp_ok = 0;
  relpEngine_t* engine = nullptr;
  relpClt_t* client = nullptr;
  ASSERT_EQ(relpEngineConstruct(&engine), RELP_RET_OK);
  ASSERT_EQ(relpEngineSetDbgprint(engine, DbgPrint), RELP_RET_OK);
  std::string syslog_cmd = "syslog";
  ASSERT_EQ(relpEngineSetEnableCmd(engine, U(syslog_cmd), eRelpCmdState_Required), RELP_RET_OK);
  ASSERT_EQ(relpEngineCltConstruct(engine, &client), RELP_RET_OK);
  ASSERT_EQ(relpCltSetTimeout(client, 20), RELP_RET_OK);
  std::string port = std::to_string(c.relp_port());
  std::string host = "127.0.0.1";
  ASSERT_EQ(relpCltConnect(client, AF_INET, U(port), U(host)), RELP_RET_OK);
  const int open_oks = g_rsp_ok.load();
  sink_.Hold();
  constexpr int kHeld = 20;  // within librelp's window (128): Send returns at once
  for (int i = 0; i < kHeld; ++i) {
    std::string m = Msg5424("librelp-" + std::to_string(i));
    ASSERT_EQ(relpCltSendSyslog(client, U(m), m.size()), RELP_RET_OK);
  }
  ASSERT_TRUE(WaitFor([&] { return sink_.held() >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Get(c, JP("/listeners/relp/acked")), 0u);
  sink_.Release();
  constexpr int kMore = 2000;
  for (int i = kHeld; i < kHeld + kMore; ++i) {
    std::string m = Msg5424("librelp-" + std::to_string(i));
    ASSERT_EQ(relpCltSendSyslog(client, U(m), m.size()), RELP_RET_OK) << i;
  }
  EXPECT_EQ(relpEngineCltDestruct(engine, &client), RELP_RET_OK);  // close: waits for rsps
  EXPECT_EQ(relpEngineDestruct(&engine), RELP_RET_OK);
  EXPECT_EQ(Get(c, JP("/listeners/relp/acked")), static_cast<uint64_t>(kHeld + kMore));
  EXPECT_GE(g_rsp_ok.load() - open_oks, kHeld + kMore);
  EXPECT_EQ(CountEvents("librelp-"), static_cast<uint64_t>(kHeld + kMore));
  c.Stop();
}

#endif  // TANDEM_HAVE_LIBRELP

}  // namespace
}  // namespace tandem::collect
