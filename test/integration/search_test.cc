// tandem search and the HTTP JSON API against a running lab: segments are
// written with store::SegmentWriter and stored through the primary's volume
// socket (the real replicated write path), then searched over the control
// socket (`tandem search ...`, exit codes) and over HTTP on the secondary,
// which is restarted with an [api] section and searches its replica.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "api/httplib.h"

#include <filesystem>
#include <fstream>
#include <future>

#include "api/control.h"
#include "daemon/daemon.h"
#include "lab/lab.h"
#include "lab/store_tool.h"
#include "store/segment.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int64_t kT0 = 1796205600;  // 2026-12-02T10:00:00Z
constexpr int64_t kUs = 1000000;
constexpr int kEvents = 100;
constexpr int kFlows = 20;

// Event i: second kT0 + i, host fw1 (even) / fw2 (odd), severity i % 8,
// message "login user <i>" with " FAILED" when i % 10 == 0.
Result<std::string> EventSegment() {
  auto w = store::SegmentWriter::Create({store::SegmentKind::kEvents, "h22test", 1, 1}, kT0 * kUs);
  if (!w.ok()) return w.status();
  std::string bytes(w->Header().begin(), w->Header().end());
  for (int i = 0; i < kEvents; ++i) {
    store::EventRecord e;
    e.event_time_us = (kT0 + i) * kUs;
    e.receive_time_us = e.event_time_us + 1000;
    e.facility = 4;
    e.severity = static_cast<int16_t>(i % 8);
    e.host = i % 2 == 0 ? "fw1" : "fw2";
    e.app = "sshd";
    e.message = "login user " + std::to_string(i) + (i % 10 == 0 ? " FAILED" : "");
    e.sender = "10.9.9.9:514";
    TANDEM_RETURN_IF_ERROR(w->Add(e));
  }
  auto sealed = w->Seal();
  bytes.append(sealed.begin(), sealed.end());
  return bytes;
}

// Flow i: kT0 + i, src 10.0.0.<i % 4>:<40000 + i> -> 10.0.1.1:<443 | 53>
// (tcp for even i, udp for odd), 1000 * (i + 1) bytes, i + 1 packets.
Result<std::string> FlowSegment() {
  auto w = store::SegmentWriter::Create({store::SegmentKind::kFlows, "h22test", 1, 1}, kT0 * kUs);
  if (!w.ok()) return w.status();
  std::string bytes(w->Header().begin(), w->Header().end());
  for (int i = 0; i < kFlows; ++i) {
    store::FlowRecord f;
    f.start_us = (kT0 + i) * kUs;
    f.end_us = f.start_us + kUs;
    f.receive_time_us = f.end_us;
    f.src = "10.0.0." + std::to_string(i % 4);
    f.dst = "10.0.1.1";
    f.src_port = static_cast<uint16_t>(40000 + i);
    f.dst_port = i % 2 == 0 ? 443 : 53;
    f.protocol = i % 2 == 0 ? 6 : 17;
    f.bytes = 1000 * static_cast<uint64_t>(i + 1);
    f.packets = static_cast<uint64_t>(i + 1);
    f.exporter = "10.9.9.8:2055";
    f.version = 9;
    TANDEM_RETURN_IF_ERROR(w->Add(f));
  }
  auto sealed = w->Seal();
  bytes.append(sealed.begin(), sealed.end());
  return bytes;
}

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// ---- pure parts (daemon/search.cc) ----

TEST(SearchTimeTest, Forms) {
  int64_t now = 1796300000 * kUs;
  EXPECT_EQ(*daemon::ParseSearchTime("2026-12-02T10:00:00Z", now), kT0 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("2026-12-02T11:00:00+01:00", now), kT0 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("2026-12-02T05:30:00-04:30", now), kT0 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("2026-12-02t10:00:00.25z", now), kT0 * kUs + 250000);
  EXPECT_EQ(*daemon::ParseSearchTime("1796205600", now), kT0 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("now", now), now);
  EXPECT_EQ(*daemon::ParseSearchTime("-15m", now), now - 15 * 60 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("-2h", now), now - 2 * 3600 * kUs);
  EXPECT_EQ(*daemon::ParseSearchTime("+1d", now), now + 86400 * kUs);
  for (const char* bad : {"", "yesterday", "2026-12-02T10:00:00", "2026-02-30T10:00:00Z",
                          "2026-12-02T24:00:00Z", "2026-12-02T10:00:00+1:00", "-15", "-m",
                          "-15x", "1e9", "-99999999999d", "2026-12-02T10:00:00Zjunk"}) {
    EXPECT_FALSE(daemon::ParseSearchTime(bad, now).ok()) << bad;
  }
  auto err = daemon::ParseSearchTime("yesterday", now);
  EXPECT_NE(err.status().message().find("RFC 3339"), std::string::npos);
}

TEST(SearchRequestTest, FromParamsIsStrict) {
  int64_t now = 1796300000 * kUs;
  auto r = daemon::SearchRequestFromParams(
      "events", {{"from", "1796205600"}, {"to", "now"}, {"severity", "warning"}, {"count", "1"},
                 {"host", "fw1"}, {"top", "app"}, {"limit", "5"}},
      now);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)["severity"], 4);
  EXPECT_EQ((*r)["count"], true);
  EXPECT_EQ((*r)["from_us"], kT0 * kUs);
  EXPECT_EQ((*r)["limit"], 5);
  auto f = daemon::SearchRequestFromParams("flows", {{"protocol", "udp"}, {"port", "53"}}, now);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)["protocol"], 17);
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> bad = {
      {"events", {{"bogus", "1"}}},        {"events", {{"src", "1.2.3.4"}}},
      {"flows", {{"host", "fw1"}}},        {"events", {{"from", "now"}, {"to", "-1h"}}},
      {"events", {{"limit", "0"}}},        {"events", {{"limit", "100001"}}},
      {"events", {{"limit", "-1"}}},       {"events", {{"severity", "loud"}}},
      {"events", {{"count", "yes"}}},      {"events", {{"contains", ""}}},
      {"events", {{"top", "message"}}},    {"flows", {{"port", "65536"}}},
      {"flows", {{"protocol", "256"}}},    {"flows", {{"top_by", "packets"}}},
      {"logs", {}},                        {"events", {{"top_n", "1001"}}}};
  for (const auto& [kind, params] : bad) {
    EXPECT_FALSE(daemon::SearchRequestFromParams(kind, params, now).ok()) << json(params).dump();
  }
}

TEST(SearchRequestTest, ControlRequestValidation) {
  using daemon::SearchWorker;
  EXPECT_TRUE(SearchWorker::ValidateRequest(json{{"cmd", "search"}, {"kind", "events"}}).ok());
  for (const json& bad :
       {json{{"cmd", "search"}}, json{{"cmd", "search"}, {"kind", "logs"}},
        json{{"cmd", "search"}, {"kind", "events"}, {"limit", "10"}},
        json{{"cmd", "search"}, {"kind", "events"}, {"limit", 0}},
        json{{"cmd", "search"}, {"kind", "events"}, {"from_us", 5}, {"to_us", 5}},
        json{{"cmd", "search"}, {"kind", "events"}, {"severity", 8}},
        json{{"cmd", "search"}, {"kind", "events"}, {"port", 53}},
        json{{"cmd", "search"}, {"kind", "flows"}, {"port", -1}},
        json{{"cmd", "search"}, {"kind", "flows"}, {"count", 1}},
        json{{"cmd", "search"}, {"kind", "events"}, {"from_us", 1.5}}}) {
    Status st = SearchWorker::ValidateRequest(bad);
    EXPECT_FALSE(st.ok()) << bad.dump();
  }
  Status st = SearchWorker::ValidateRequest(json{{"cmd", "search"}, {"kind", "events"}, {"hots", "x"}});
  EXPECT_NE(st.message().find("unknown field \"hots\""), std::string::npos) << st.message();
}

TEST(SearchWorkerTest, NoStoreIsAClearErrorAndInvalidIsAnsweredAtOnce) {
  daemon::SearchWorker w("");
  json got;
  EXPECT_TRUE(w.Submit(json{{"cmd", "search"}, {"kind", "events"}}, [&](json r) { got = r; }));
  EXPECT_EQ(got["ok"], false);
  EXPECT_NE(got.value("error", "").find("no store"), std::string::npos) << got.dump();
  got = json();
  EXPECT_TRUE(w.Submit(json{{"cmd", "search"}, {"kind", "events"}, {"limit", -3}},
                       [&](json r) { got = r; }));
  EXPECT_NE(got.value("error", "").find("\"limit\""), std::string::npos) << got.dump();
}

TEST(SearchWorkerTest, SearchesAnEmptyStoreOnTheWorker) {
  std::string dir = MakeTempDir("tandem-search-empty");
  daemon::SearchWorker w(dir);
  std::promise<json> p;
  auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  EXPECT_TRUE(w.Submit(json{{"cmd", "search"}, {"kind", "flows"}}, [&](json r) {
    ran_on = std::this_thread::get_id();
    p.set_value(r);
  }));
  json r = p.get_future().get();
  EXPECT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["total"], 0);
  EXPECT_NE(ran_on, caller);
  fs::remove_all(dir);
}

// ---- against a lab ----

class SearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-search");
    lab::LabOptions o = FastLabOptions(dir_);
    o.replication = true;
    auto up = lab::Up(o);
    ASSERT_TRUE(up.ok()) << up.status().message();
    lab_ = *up;
    auto ev = EventSegment();
    auto fl = FlowSegment();
    ASSERT_TRUE(ev.ok() && fl.ok());
    // The primary becomes active and accepts writes shortly after `lab up`.
    Status st;
    ASSERT_TRUE(WaitFor(20000, [&] {
      st = lab::StorePut(Config(0), "events/h22test-0000000000000001-0000000001.seg", *ev);
      return st.ok();
    })) << st.message();
    st = lab::StorePut(Config(0), "flows/h22test-0000000000000001-0000000001.seg", *fl);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  void TearDown() override {
    if (HasFailure() && !dir_.empty()) std::cerr << LabLogTails(dir_);
    if (!dir_.empty()) {
      EXPECT_TRUE(lab::Down(dir_).ok());
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Config(int i) const { return lab_["hosts"][static_cast<size_t>(i)]["config"]; }
  CommandResult Tandem(std::vector<std::string> args) {
    args.insert(args.begin(), BinDir() + "/tandem");
    return RunCommand(args);
  }
  std::string dir_;
  json lab_;
};

TEST_F(SearchTest, CliEventsAndFlows) {
  const std::string c = Config(0);
  const std::string from = "2026-12-02T10:00:00Z", to = "2026-12-02T10:01:40Z";
  auto r = Tandem({"search", "events", "--config", c, "--from", from, "--to", to, "--count"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "100\n");
  const std::vector<std::string> window = {"--from", from, "--to", to};
  auto T = [&](std::vector<std::string> args) {
    args.insert(args.end(), window.begin(), window.end());
    return Tandem(args);
  };
  r = T({"search", "events", "--config", c, "--host", "fw1", "--count"});
  EXPECT_EQ(r.output, "50\n");
  r = T({"search", "events", "--config", c, "--severity", "err", "--count"});
  EXPECT_EQ(r.output, "52\n");  // i % 8 in 0..3: 12 * 4 + (96..99)
  // Offsets and epoch seconds: [10:00:30Z, 10:01:40Z).
  r = Tandem({"search", "events", "--config", c, "--from", "2026-12-02T11:00:30+01:00", "--to",
              std::to_string(kT0 + 100), "--count"});
  EXPECT_EQ(r.output, "70\n") << r.output;
  r = Tandem({"search", "events", "--config", c, "--from", "-5000w", "--to", to, "--count"});
  EXPECT_EQ(r.output, "100\n") << r.output;
  r = Tandem({"search", "events", "--config", c, "--from", from, "--to", "-15m", "--count"});
  EXPECT_EQ(r.output, "100\n") << r.output;

  r = T({"search", "events", "--config", c, "--contains", "FAILED", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["kind"], "events");
  EXPECT_EQ(j["total"], 10);
  ASSERT_EQ(j["records"].size(), 10u);
  EXPECT_EQ(j["records"][0]["message"], "login user 0 FAILED");
  EXPECT_EQ(j["records"][9]["message"], "login user 90 FAILED");
  EXPECT_FALSE(j.contains("ok"));

  r = T({"search", "events", "--config", c, "--limit", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2026-12-02T10:00:00.000Z fw1 emerg sshd: login user 0 FAILED\n"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2026-12-02T10:00:02.000Z fw1 crit sshd: login user 2\n"),
            std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("login user 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 of 100 matching events"), std::string::npos) << r.output;

  r = T({"search", "events", "--config", c, "--newest", "--limit", "1", "--json"});
  j = json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["records"][0]["message"], "login user 99");

  r = T({"search", "events", "--config", c, "--top", "host", "--json", "--count"});
  j = json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["returned"], 0);
  ASSERT_EQ(j["top"]["values"].size(), 2u);
  EXPECT_EQ(j["top"]["values"][0]["value"], "fw1");
  EXPECT_EQ(j["top"]["values"][0]["count"], 50);

  r = T({"search", "flows", "--config", c, "--port", "53", "--count"});
  EXPECT_EQ(r.output, "10\n") << r.output;
  r = T({"search", "flows", "--config", c, "--protocol", "tcp", "--src", "10.0.0.2", "--count"});
  EXPECT_EQ(r.output, "5\n") << r.output;
  r = T({"search", "flows", "--config", c, "--dst", "10.0.1.1", "--limit", "1"});
  EXPECT_NE(r.output.find("10.0.0.0:40000 -> 10.0.1.1:443 tcp 1000 bytes 1 packets"),
            std::string::npos) << r.output;
  r = T({"search", "flows", "--config", c, "--top", "src", "--top-by", "bytes", "--json"});
  j = json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["top"]["by"], "bytes");
  EXPECT_EQ(j["top"]["values"][0]["value"], "10.0.0.3");  // 4+8+...+20 thousand bytes
}

TEST_F(SearchTest, CliBadArgumentsExit2AndDaemonErrorsExit1) {
  const std::string c = Config(0);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"search", "events", "--config", c, "--from", "garbage"},
           {"search", "events", "--config", c, "--from", "now", "--to", "-1h"},
           {"search", "events", "--config", c, "--limit", "0"},
           {"search", "events", "--config", c, "--severity", "loud"},
           {"search", "events", "--config", c, "--bogus"},
           {"search", "events", "--config", c, "--port", "53"},
           {"search", "flows", "--config", c, "--port", "70000"},
           {"search", "flows", "--config", c, "--top", "host"},
           {"search", "events", "--from", "now"},
           {"search", "events", "--config", dir_ + "/missing.toml"},
           {"search", "logs", "--config", c}}) {
    auto r = Tandem(bad);
    EXPECT_EQ(r.exit_code, 2) << json(bad).dump() << "\n" << r.output;
  }
  // The daemon's own strict validation (over the raw control socket).
  std::string sock = fs::path(c).parent_path().string() + "/run/tandemd.sock";
  for (const json& req : {json{{"cmd", "search"}, {"kind", "events"}, {"limit", "7"}},
                          json{{"cmd", "search"}, {"kind", "events"}, {"nope", 1}},
                          json{{"cmd", "search"}, {"kind", "flows"}, {"from_us", 9}, {"to_us", 1}},
                          json{{"cmd", "search"}}}) {
    auto r = api::Call(sock, req, 5000);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)["ok"], false) << req.dump();
    EXPECT_FALSE((*r).value("error", "").empty());
  }
  auto ok = api::Call(sock, json{{"cmd", "search"}, {"kind", "flows"}, {"count", true}, {"from_us", kT0 * kUs}, {"to_us", (kT0 + 100) * kUs}}, 5000);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)["ok"], true);
  EXPECT_EQ((*ok)["total"], kFlows);
  // The control socket still serves other commands meanwhile.
  EXPECT_FALSE(HostStatus(c).is_null());
  // No daemon: exit 1.
  EXPECT_TRUE(lab::Down(dir_).ok());
  auto r = Tandem({"search", "events", "--config", c, "--count"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST_F(SearchTest, HttpApiOnTheSecondary) {
  // Restart the secondary with an [api] section.
  int pid = lab_["hosts"][1]["pid"];
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_TRUE(WaitFor(10000, [&] {
    waitpid(pid, nullptr, WNOHANG);
    return kill(pid, 0) != 0;
  }));
  const std::string token = "h22-search-test-token-0123456789abcdef";
  const std::string token_file = dir_ + "/api.token";
  {
    std::ofstream t(token_file);
    t << token << "\n";
  }
  ASSERT_EQ(chmod(token_file.c_str(), 0600), 0);
  uint16_t port = FreePort();
  ASSERT_NE(port, 0);
  {
    std::ofstream cf(Config(1), std::ios::app);
    cf << "\n[api]\nhttp_listen = \"127.0.0.1:" << port << "\"\ntoken_file = \"" << token_file
       << "\"\n";
  }
  auto started = lab::StartHost(dir_, "secondary");
  ASSERT_TRUE(started.ok()) << started.status().message();

  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  httplib::Headers auth{{"Authorization", "Bearer " + token}};
  auto get = [&](const std::string& target, const httplib::Headers& h) { return cli.Get(target, h); };
  ASSERT_TRUE(WaitFor(20000, [&] {
    auto r = get("/api/v1/status", auth);
    return r && r->status == 200;
  }));
  auto r = get("/api/v1/status", auth);
  json st = json::parse(r->body);
  EXPECT_EQ(st["local"]["role"], "SECONDARY");
  EXPECT_TRUE(st.contains("replication"));

  // The replica has both segments once the secondary is back in sync.
  json j;
  ASSERT_TRUE(WaitFor(20000, [&] {
    auto s = get("/api/v1/search/events?count=1&host=fw2&from=1796205600&to=1796205700", auth);
    if (!s || s->status != 200) return false;
    j = json::parse(s->body, nullptr, false);
    return !j.is_discarded() && j.value("total", 0) == 50;
  })) << j.dump();
  EXPECT_EQ(j["returned"], 0);
  r = get("/api/v1/search/events?from=2026-12-02T10:00:00Z&to=2026-12-02T10:00:10Z&severity=0&top=host",
          auth);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_EQ(j["total"], 2);  // i = 0 and 8
  EXPECT_EQ(j["records"][1]["message"], "login user 8");
  EXPECT_EQ(j["top"]["field"], "host");
  r = get("/api/v1/search/flows?protocol=udp&limit=2&newest=1&from=1796205600&to=1796205700", auth);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_EQ(j["total"], 10);
  EXPECT_EQ(j["records"].size(), 2u);
  EXPECT_EQ(j["records"][0]["src_port"], 40019);

  // Authentication.
  r = get("/api/v1/search/events?count=1", {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = get("/api/v1/status", {{"Authorization", "Bearer wrong-token-wrong-token-wrong"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["ok"], false);
  // Bad queries and paths.
  for (const char* bad : {"/api/v1/search/events?from=garbage", "/api/v1/search/events?limit=0",
                          "/api/v1/search/events?bogus=1", "/api/v1/search/flows?host=fw1",
                          "/api/v1/search/events?from=now&to=-1h", "/api/v1/status?x=1"}) {
    r = get(bad, auth);
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 400) << bad << " " << r->body;
    EXPECT_FALSE(json::parse(r->body).value("error", "").empty());
  }
  r = get("/api/v1/search/logs", auth);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = get("/", auth);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

}  // namespace
}  // namespace tandem::itest
