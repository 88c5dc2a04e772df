// The agent (docs/CONSOLE.md, "Hosts: pairing and the agent channel"):
// pairing (right token -> key once; wrong token 401, nothing changes; a
// second pairing 409; the rate limit 429; bad bodies 400 naming the field),
// the facts document, the pairing string, and a link measurement over
// loopback. Handle() is called directly; one test goes through HTTPS.
#include "daemon/agent.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "api/httplib.h"
#include "console/password.h"
#include "console/tls.h"
#include "os/files.h"

namespace tandem::daemon {
namespace {

using console::ApiRequest;
using console::ApiResponse;
using nlohmann::json;

class FakeClock : public os::Clock {
 public:
  int64_t NowMs() const override { return now_ms.load(); }
  int64_t WallMs() const override { return 1'800'000'000'000 + now_ms.load(); }
  std::atomic<int64_t> now_ms{1000};
};

std::string ReadText(const std::string& path) {
  auto r = os::ReadFile(path, 1 << 20);
  return r.ok() ? *r : std::string();
}

// Every file of a directory tree with its contents: "nothing changed".
std::string TreeSnapshot(const std::string& dir) {
  std::string out;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) out += f + "\n" + ReadText(f) + "\n";
  return out;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem_agent_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    state_ = dir_ + "/agent";
    ASSERT_TRUE(os::MakeDirs(dir_ + "/packages").ok());
    ASSERT_TRUE(os::MakeDirs(dir_ + "/store").ok());
  }
  void TearDown() override {
    agent_.reset();
    std::filesystem::remove_all(dir_);
  }

  AgentOptions Options() {
    AgentOptions o;
    o.state_dir = state_;
    o.packages_dir = dir_ + "/packages";
    o.store_dir = dir_ + "/store";
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    o.host_name = "alpha";
    o.cluster = json{{"name", "lab"}, {"role", "primary"}, {"peer", "127.0.0.2"}};
    o.ha_status = [] {
      return json{{"ok", true}, {"local", {{"status", "ACTIVE"}}}};
    };
    o.clock = &clock_;
    o.log = [this](int level, const std::string& m) {
      std::lock_guard<std::mutex> l(log_mu_);
      log_ += std::to_string(level) + " " + m + "\n";
    };
    return o;
  }
  void StartAgent() {
    agent_ = std::make_unique<Agent>(Options());
    Status st = agent_->Start();
    ASSERT_TRUE(st.ok()) << st.message();
  }
  std::string Token() {
    auto s = PairingString(state_, "alpha", "127.0.0.1");
    EXPECT_TRUE(s.ok()) << s.status().message();
    if (!s.ok()) return "";
    return s->substr(4, 64);
  }
  ApiResponse Call(const std::string& method, const std::string& path, const std::string& body = "",
                   const std::string& key = "") {
    ApiRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    if (!body.empty()) r.content_type = "application/json";
    if (!key.empty()) r.authorization = "Bearer " + key;
    r.remote = "127.0.0.1";
    return agent_->Handle(r);
  }
  ApiResponse PairWith(const std::string& token, const std::string& console = "cons") {
    return Call("POST", "/api/v1/agent/pair", json{{"token", token}, {"console", console}}.dump());
  }
  std::string PairOk() {
    ApiResponse a = PairWith(Token());
    EXPECT_EQ(a.status, 201) << a.body.dump();
    return a.body.value("key", "");
  }
  std::string Log() {
    std::lock_guard<std::mutex> l(log_mu_);
    return log_;
  }

  std::string dir_, state_;
  FakeClock clock_;
  std::unique_ptr<Agent> agent_;
  std::mutex log_mu_;
  std::string log_;
};

void ExpectError(const ApiResponse& a, int status, const std::string& code,
                 const std::string& field = "") {
  EXPECT_EQ(a.status, status) << a.body.dump();
  EXPECT_EQ(a.body["error"]["code"], code) << a.body.dump();
  EXPECT_TRUE(a.body["error"]["message"].is_string()) << a.body.dump();
  if (field.empty()) {
    EXPECT_TRUE(a.body["error"]["field"].is_null()) << a.body.dump();
  } else {
    EXPECT_EQ(a.body["error"]["field"], field) << a.body.dump();
  }
}

TEST_F(AgentTest, PairingStringPinsTheCertificateAndIsStable) {
  auto s = PairingString(state_, "alpha", "127.0.0.1");
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->size(), 4 + 64 + 1 + 64) << *s;
  EXPECT_EQ(s->substr(0, 4), "tp1.");
  EXPECT_EQ((*s)[68], '.');
  auto fp = console::CertSha256Hex(AgentCertFile(state_));
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(s->substr(69), *fp);
  EXPECT_EQ(ReadText(PairingTokenFile(state_)), s->substr(4, 64) + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(PairingTokenFile(state_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(state_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Asked again: the same token (the file is reused), the same certificate.
  auto again = PairingString(state_, "alpha", "127.0.0.1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *s);
}

TEST_F(AgentTest, RightTokenPairsOnceAndTheKeyOpensFacts) {
  StartAgent();
  const std::string token = Token();
  ApiResponse a = PairWith(token);
  ASSERT_EQ(a.status, 201) << a.body.dump();
  const std::string key = a.body.value("key", "");
  ASSERT_EQ(key.size(), 64u);
  EXPECT_EQ(a.body["facts"]["name"], "alpha");
  // paired.json holds the key's SHA-256 only; the token file is gone.
  json rec = json::parse(ReadText(PairedFile(state_)));
  EXPECT_EQ(rec["console"], "cons");
  EXPECT_EQ(rec["key_sha256"], console::Sha256Hex(key));
  EXPECT_EQ(rec["paired_at_ms"], clock_.WallMs());
  EXPECT_EQ(ReadText(PairedFile(state_)).find(key), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(PairingTokenFile(state_)));
  struct stat st {};
  ASSERT_EQ(::stat(PairedFile(state_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ApiResponse f = Call("GET", "/api/v1/agent/facts", "", key);
  EXPECT_EQ(f.status, 200) << f.body.dump();
  EXPECT_EQ(f.body["name"], "alpha");
  // Wrong key, no key: 401.
  ExpectError(Call("GET", "/api/v1/agent/facts", "", std::string(64, 'a')), 401,
              "unauthenticated");
  ExpectError(Call("GET", "/api/v1/agent/facts"), 401, "unauthenticated");

  // The same token again, or any other: 409, nothing changes.
  const std::string before = TreeSnapshot(state_);
  ExpectError(PairWith(token), 409, "conflict");
  ExpectError(PairWith(std::string(64, 'b')), 409, "conflict");
  EXPECT_EQ(TreeSnapshot(state_), before);
  // pair-token on a paired host fails, naming the console.
  auto s = PairingString(state_, "alpha", "127.0.0.1");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("already paired with console cons"), std::string::npos);
  // Neither the token nor the key was logged.
  EXPECT_EQ(Log().find(token), std::string::npos) << Log();
  EXPECT_EQ(Log().find(key), std::string::npos) << Log();
  EXPECT_NE(Log().find("paired with console cons"), std::string::npos) << Log();
  EXPECT_EQ(agent_->counters().pairings, 1u);

  // Unpair: the key no longer works; a new token pairs again.
  auto u = Unpair(state_);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(*u, "cons");
  ExpectError(Call("GET", "/api/v1/agent/facts", "", key), 401, "unauthenticated");
  std::string key2 = PairOk();
  EXPECT_NE(key2, key);
}

TEST_F(AgentTest, WrongTokenIsRefusedAndChangesNothing) {
  StartAgent();
  const std::string token = Token();
  const std::string before = TreeSnapshot(state_);
  std::string wrong = token;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  ExpectError(PairWith(wrong), 401, "unauthenticated");
  EXPECT_EQ(TreeSnapshot(state_), before);
  EXPECT_EQ(agent_->counters().pair_failures, 1u);
  EXPECT_EQ(Log().find(wrong), std::string::npos);
  EXPECT_EQ(Log().find(token), std::string::npos);
  // The right one still pairs.
  EXPECT_EQ(PairWith(token).status, 201);
}

TEST_F(AgentTest, NoTokenIssuedIsRefused) {
  StartAgent();
  ExpectError(PairWith(std::string(64, 'c')), 401, "unauthenticated");
  EXPECT_FALSE(std::filesystem::exists(PairedFile(state_)));
}

TEST_F(AgentTest, FiveWrongTokensWithinAMinuteRateLimit) {
  StartAgent();
  const std::string token = Token();
  for (int i = 0; i < kPairFailuresMax; ++i) {
    ExpectError(PairWith(std::string(64, static_cast<char>('a' + i))), 401, "unauthenticated");
    clock_.now_ms += 1000;
  }
  // Even the right token is refused while the limit holds.
  const std::string before = TreeSnapshot(state_);
  ExpectError(PairWith(token), 429, "too_many_requests");
  EXPECT_EQ(TreeSnapshot(state_), before);
  // Once the first failure is 60 s old, one more attempt is allowed.
  clock_.now_ms += kPairFailureWindowMs - kPairFailuresMax * 1000;
  EXPECT_EQ(PairWith(token).status, 201);
}

TEST_F(AgentTest, BadBodiesNameTheField) {
  StartAgent();
  const std::string token = Token();
  const std::string before = TreeSnapshot(state_);
  struct Case {
    std::string body;
    int status;
    std::string code, field;
  } cases[] = {
      {"not json", 400, "invalid_argument", ""},
      {"[1]", 400, "invalid_argument", ""},
      {json{{"console", "cons"}}.dump(), 400, "invalid_argument", "token"},
      {json{{"token", token}}.dump(), 400, "invalid_argument", "console"},
      {json{{"token", 5}, {"console", "cons"}}.dump(), 400, "invalid_argument", "token"},
      {json{{"token", "short"}, {"console", "cons"}}.dump(), 400, "invalid_argument", "token"},
      {json{{"token", token}, {"console", "bad name!"}}.dump(), 400, "invalid_argument",
       "console"},
      {json{{"token", token}, {"console", ""}}.dump(), 400, "invalid_argument", "console"},
      {json{{"token", token}, {"console", "c"}, {"extra", 1}}.dump(), 400, "invalid_argument",
       "extra"},
      {"{\"token\":\"" + token + "\",\"console\":\"a\",\"console\":\"b\"}", 400,
       "invalid_argument", "console"},
  };
  for (const Case& c : cases) {
    ApiResponse a = Call("POST", "/api/v1/agent/pair", c.body);
    ExpectError(a, c.status, c.code, c.field);
    // A refusal never echoes the token.
    EXPECT_EQ(a.body.dump().find(token), std::string::npos) << a.body.dump();
  }
  ApiRequest r;
  r.method = "POST";
  r.path = "/api/v1/agent/pair";
  r.body = json{{"token", token}, {"console", "cons"}}.dump();
  r.content_type = "text/plain";
  ExpectError(agent_->Handle(r), 415, "unsupported_media_type");
  r.content_type = "application/json";
  r.body = std::string(kAgentBodyBytesMax + 1, ' ');
  ExpectError(agent_->Handle(r), 413, "payload_too_large");
  EXPECT_EQ(TreeSnapshot(state_), before);
  EXPECT_EQ(agent_->counters().pair_failures, 0u);  // malformed is not a guess

  // Routing: unknown path 404, wrong method 405, query parameters 400.
  ExpectError(Call("GET", "/api/v1/agent/nothing"), 404, "not_found");
  ExpectError(Call("GET", "/api/v1/hosts"), 404, "not_found");
  ExpectError(Call("GET", "/api/v1/agent/pair"), 405, "method_not_allowed");
  ExpectError(Call("DELETE", "/api/v1/agent/certificate"), 405, "method_not_allowed");
  r = ApiRequest{};
  r.method = "GET";
  r.path = "/api/v1/agent/certificate";
  r.params.emplace("x", "1");
  ExpectError(agent_->Handle(r), 400, "invalid_argument", "x");
  ApiResponse cert = Call("GET", "/api/v1/agent/certificate");
  ASSERT_EQ(cert.status, 200);
  EXPECT_EQ(cert.body["pem"], ReadText(AgentCertFile(state_)));
}

TEST_F(AgentTest, FactsHaveTheDocumentedShape) {
  std::ofstream(dir_ + "/packages/b.json") << R"({"name":"dsm-b","version":"1.10.2","kind":"parser"})";
  std::ofstream(dir_ + "/packages/a.json") << R"({"name":"proto-a","version":"2","kind":"protocol"})";
  std::ofstream(dir_ + "/packages/bad1.json") << "not json";
  std::ofstream(dir_ + "/packages/bad2.json") << R"({"name":"x","version":"1.a","kind":"parser"})";
  std::ofstream(dir_ + "/packages/bad3.json") << R"({"name":"y","version":"1","kind":"rpm"})";
  std::ofstream(dir_ + "/packages/bad4.json") << R"({"name":"z","version":"1","kind":"parser","x":1})";
  std::ofstream(dir_ + "/packages/readme.txt") << "not a manifest";
  StartAgent();
  json f = agent_->Facts();
  EXPECT_EQ(f["name"], "alpha");
  EXPECT_EQ(f["version"], TANDEM_VERSION);
  ASSERT_EQ(f["packages"].size(), 2u) << f["packages"].dump();
  EXPECT_EQ(f["packages"][0], (json{{"name", "dsm-b"}, {"version", "1.10.2"}, {"kind", "parser"}}));
  EXPECT_EQ(f["packages"][1], (json{{"name", "proto-a"}, {"version", "2"}, {"kind", "protocol"}}));
  for (const char* bad : {"bad1.json", "bad2.json", "bad3.json", "bad4.json"}) {
    EXPECT_NE(Log().find(bad), std::string::npos) << bad << "\n" << Log();
  }
  ASSERT_TRUE(f["interfaces"].is_array());
  bool lo = false;
  for (const json& i : f["interfaces"]) {
    ASSERT_TRUE(i["name"].is_string());
    ASSERT_TRUE(i["addresses"].is_array());
    ASSERT_TRUE(i["physical"].is_boolean());
    ASSERT_TRUE(i["up"].is_boolean());
    for (const json& a : i["addresses"]) {
      if (a == "127.0.0.1/8") {
        lo = true;
        EXPECT_FALSE(i["physical"].get<bool>());  // loopback has no device
        EXPECT_EQ(f["management_interface"], i["name"]);
      }
    }
  }
  EXPECT_TRUE(lo) << f["interfaces"].dump();
  EXPECT_EQ(f["address"], "127.0.0.1");
  ASSERT_TRUE(f["store"].is_object());
  EXPECT_EQ(f["store"]["dir"], dir_ + "/store");
  EXPECT_GT(f["store"]["bytes_total"].get<uint64_t>(), 0u);
  EXPECT_LE(f["store"]["bytes_free"].get<uint64_t>(), f["store"]["bytes_total"].get<uint64_t>());
  EXPECT_TRUE(f["transient"].is_null());
  EXPECT_EQ(f["external_storage"], false);
  EXPECT_EQ(f["virtual"], false);
  EXPECT_EQ(f["cluster"], (json{{"name", "lab"}, {"role", "primary"}, {"peer", "127.0.0.2"}}));
  EXPECT_EQ(f["ha"], (json{{"ok", true}, {"local", {{"status", "ACTIVE"}}}}));
  EXPECT_TRUE(f["deployed_revision"].is_null());  // nothing deployed yet
  EXPECT_EQ(f["ha_ports"], (json{{"heartbeat", 7788}, {"replication", 7789}}));
  EXPECT_TRUE(f["deploy_error"].is_null());
  EXPECT_EQ(f.size(), 15u) << f.dump();
}

TEST_F(AgentTest, MeasureListenAndRunOverLoopback) {
  StartAgent();
  const std::string key = PairOk();
  constexpr int64_t kBytes = 4 << 20;
  ApiResponse l = Call("POST", "/api/v1/agent/measure/listen", json{{"bytes", kBytes}}.dump(), key);
  ASSERT_EQ(l.status, 201) << l.body.dump();
  const int port = l.body["port"].get<int>();
  const std::string nonce = l.body["nonce"].get<std::string>();
  EXPECT_GT(port, 0);
  EXPECT_EQ(nonce.size(), 64u);
  ApiResponse r = Call("POST", "/api/v1/agent/measure/run",
                       json{{"address", "127.0.0.1"}, {"port", port}, {"nonce", nonce},
                            {"bytes", kBytes}}.dump(),
                       key);
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["bytes"], kBytes);
  EXPECT_GT(r.body["rtt_ms"].get<double>(), 0.0);
  EXPECT_GT(r.body["mbps"].get<double>(), 0.0);
  // The listener counted the same bytes (it acknowledged them).
  EXPECT_EQ(agent_->counters().measure_bytes_received, static_cast<uint64_t>(kBytes));

  // A wrong nonce: the listener closes; the run fails (502), nothing counted.
  l = Call("POST", "/api/v1/agent/measure/listen", json{{"bytes", kMeasureBytesMin}}.dump(), key);
  ASSERT_EQ(l.status, 201);
  r = Call("POST", "/api/v1/agent/measure/run",
           json{{"address", "127.0.0.1"}, {"port", l.body["port"]}, {"nonce", std::string(64, 'f')},
                {"bytes", kMeasureBytesMin}}.dump(),
           key);
  ExpectError(r, 502, "measurement_failed");
  EXPECT_EQ(agent_->counters().measure_bytes_received, static_cast<uint64_t>(kBytes));

  // Validation.
  ExpectError(Call("POST", "/api/v1/agent/measure/listen", json{{"bytes", 5}}.dump(), key), 400,
              "invalid_argument", "bytes");
  ExpectError(Call("POST", "/api/v1/agent/measure/listen", json{{"size", 5}}.dump(), key), 400,
              "invalid_argument", "size");
  ExpectError(Call("POST", "/api/v1/agent/measure/listen", json{{"bytes", kBytes}}.dump()), 401,
              "unauthenticated");
  json run{{"address", "127.0.0.1"}, {"port", 9}, {"nonce", nonce}, {"bytes", kBytes}};
  for (auto [field, value] : std::vector<std::pair<std::string, json>>{
           {"address", "localhost"}, {"port", 0}, {"port", 70000}, {"port", "80"},
           {"nonce", "xyz"}, {"bytes", kMeasureBytesMax + 1}, {"bytes", 1.5}}) {
    json b = run;
    b[field] = value;
    ExpectError(Call("POST", "/api/v1/agent/measure/run", b.dump(), key), 400, "invalid_argument",
                field);
  }
}

TEST_F(AgentTest, PairsOverHttpsWithThePinnedCertificate) {
  StartAgent();
  const std::string token = Token();
  httplib::SSLClient cli("127.0.0.1", agent_->port());
  X509_STORE* store = X509_STORE_new();
  {
    std::string pem = ReadText(AgentCertFile(state_));
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    ASSERT_NE(cert, nullptr);
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    BIO_free(bio);
  }
  cli.set_ca_cert_store(store);
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(10, 0);
  cli.set_read_timeout(10, 0);
  auto res = cli.Post("/api/v1/agent/pair", json{{"token", token}, {"console", "c1"}}.dump(),
                      "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 201) << res->body;
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  json a = json::parse(res->body);
  httplib::Headers h{{"Authorization", "Bearer " + a.value("key", "")}};
  res = cli.Get("/api/v1/agent/facts", h);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["name"], "alpha");
  EXPECT_NE(agent_->MetricsText().find("tandem_agent_pairings_total 1\n"), std::string::npos)
      << agent_->MetricsText();
}

// POST /api/v1/agent/ha (docs/CONSOLE.md, "Host actions"): the command goes
// to the daemon's control handler as is; its reply is answered 200, its
// refusal 409 refused; an agent-only host 409 not_clustered.
TEST_F(AgentTest, HaCommandRunsTheDaemonsHandlerAndMapsItsReply) {
  std::mutex mu;
  std::vector<json> seen;
  AgentOptions o = Options();
  o.ha_command = [&](const json& request) -> Result<json> {
    std::lock_guard<std::mutex> l(mu);
    seen.push_back(request);
    const std::string cmd = request.value("cmd", "");
    if (cmd == "takeover") return json{{"ok", false}, {"error", "this host is already ACTIVE"}};
    if (cmd == "verify") return Status::Error("no answer within 2000 ms");
    return json{{"ok", true}, {"message", cmd + " accepted"}};
  };
  agent_ = std::make_unique<Agent>(std::move(o));
  const std::string key = PairOk();
  ASSERT_FALSE(key.empty());

  ApiResponse a = Call("POST", "/api/v1/agent/ha", json{{"cmd", "offline"}}.dump(), key);
  EXPECT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body, (json{{"ok", true}, {"message", "offline accepted"}}));

  a = Call("POST", "/api/v1/agent/ha", json{{"cmd", "takeover"}, {"force", true}}.dump(), key);
  ExpectError(a, 409, "refused");
  EXPECT_EQ(a.body["error"]["message"], "this host is already ACTIVE");

  a = Call("POST", "/api/v1/agent/ha", json{{"cmd", "verify"}}.dump(), key);
  ExpectError(a, 503, "unavailable");

  // Bad requests never reach the daemon.
  const size_t before = seen.size();
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "status"}}.dump(), key), 400,
              "invalid_argument", "cmd");
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", 3}}.dump(), key), 400,
              "invalid_argument", "cmd");
  ExpectError(Call("POST", "/api/v1/agent/ha", json::object().dump(), key), 400,
              "invalid_argument", "cmd");
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "giveback"}, {"force", true}}.dump(),
                   key),
              400, "invalid_argument", "force");
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "online"}, {"x", 1}}.dump(), key), 400,
              "invalid_argument", "x");
  ExpectError(Call("GET", "/api/v1/agent/ha", "", key), 405, "method_not_allowed");
  // No key, a wrong key: 401, nothing run.
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "offline"}}.dump()), 401,
              "unauthenticated");
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "offline"}}.dump(),
                   std::string(64, 'a')),
              401, "unauthenticated");
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(seen.size(), before);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (json{{"cmd", "offline"}}));
  EXPECT_EQ(seen[1], (json{{"cmd", "takeover"}, {"force", true}}));
  EXPECT_EQ(seen[2], (json{{"cmd", "verify"}}));
}

TEST_F(AgentTest, HaCommandOnAnAgentOnlyHostIsNotClustered) {
  AgentOptions o = Options();
  o.cluster = nullptr;
  o.ha_status = nullptr;
  agent_ = std::make_unique<Agent>(std::move(o));
  const std::string key = PairOk();
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "offline"}}.dump(), key), 409,
              "not_clustered");
  // Still validated first: a bad command is a 400 there too.
  ExpectError(Call("POST", "/api/v1/agent/ha", json{{"cmd", "reboot"}}.dump(), key), 400,
              "invalid_argument", "cmd");
}


// ---- content packages (R-UP-1, R-UP-2) ----

std::string B64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

json PackageBody(const std::string& name, const std::string& version, const std::string& payload) {
  return json{{"manifest", {{"name", name}, {"version", version}, {"kind", "parser"}}},
              {"payload_base64", B64(payload)},
              {"sha256", console::Sha256Hex(payload)}};
}

TEST_F(AgentTest, PackagesAreListedReadAndInstalled) {
  StartAgent();
  const std::string key = PairOk();
  const std::string pk = dir_ + "/packages";
  ASSERT_TRUE(os::WriteFileAtomic(pk + "/http.json",
                                  R"({"name": "http", "version": "1.2", "kind": "protocol"})", 0644)
                  .ok());
  static constexpr char kBin[] = "GET \x00\x01\xff payload";  // with NUL and 0xFF bytes
  std::string bin(kBin, sizeof kBin - 1);
  ASSERT_TRUE(os::WriteFileAtomic(pk + "/http.pkg", bin, 0644).ok());
  ASSERT_TRUE(os::WriteFileAtomic(pk + "/dns.json",
                                  R"({"name": "dns", "version": "3", "kind": "parser"})", 0644)
                  .ok());
  // Keyed like the facts.
  ExpectError(Call("GET", "/api/v1/agent/packages"), 401, "unauthenticated");
  ExpectError(Call("GET", "/api/v1/agent/packages/http", "", std::string(64, 'a')), 401,
              "unauthenticated");

  ApiResponse list = Call("GET", "/api/v1/agent/packages", "", key);
  ASSERT_EQ(list.status, 200) << list.body.dump();
  ASSERT_EQ(list.body["packages"].size(), 2u) << list.body.dump();
  EXPECT_EQ(list.body["packages"][0],
            (json{{"name", "dns"}, {"version", "3"}, {"kind", "parser"}, {"sha256", nullptr}, {"bytes", 0}}));
  EXPECT_EQ(list.body["packages"][1]["name"], "http");
  EXPECT_EQ(list.body["packages"][1]["sha256"], console::Sha256Hex(bin));
  EXPECT_EQ(list.body["packages"][1]["bytes"], bin.size());

  ApiResponse one = Call("GET", "/api/v1/agent/packages/http", "", key);
  ASSERT_EQ(one.status, 200) << one.body.dump();
  EXPECT_EQ(one.body["manifest"], (json{{"name", "http"}, {"version", "1.2"}, {"kind", "protocol"}}));
  EXPECT_EQ(one.body["payload_base64"], B64(bin));
  EXPECT_EQ(one.body["sha256"], console::Sha256Hex(bin));
  ApiResponse none = Call("GET", "/api/v1/agent/packages/dns", "", key);
  ASSERT_EQ(none.status, 200) << none.body.dump();
  EXPECT_TRUE(none.body["payload_base64"].is_null());
  EXPECT_TRUE(none.body["sha256"].is_null());
  ExpectError(Call("GET", "/api/v1/agent/packages/smtp", "", key), 404, "not_found");
  ExpectError(Call("POST", "/api/v1/agent/packages/http", "{}", key), 405, "method_not_allowed");
  ExpectError(Call("PUT", "/api/v1/agent/packages", "{}", key), 405, "method_not_allowed");

  // PUT what the GET answered (the console's copy between two agents), in a
  // newer version: installed, then read back the same.
  const std::string payload(300 * 1024, 'z');
  ApiResponse put = Call("PUT", "/api/v1/agent/packages/smtp", PackageBody("smtp", "2.0.1", payload).dump(), key);
  ASSERT_EQ(put.status, 200) << put.body.dump();
  EXPECT_EQ(put.body["package"]["name"], "smtp");
  EXPECT_EQ(put.body["package"]["sha256"], console::Sha256Hex(payload));
  EXPECT_EQ(ReadText(pk + "/smtp.pkg"), payload);
  EXPECT_EQ(json::parse(ReadText(pk + "/smtp.json")),
            (json{{"name", "smtp"}, {"version", "2.0.1"}, {"kind", "parser"}}));
  struct stat st {};
  ASSERT_EQ(::stat((pk + "/smtp.pkg").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ApiResponse back = Call("GET", "/api/v1/agent/packages/smtp", "", key);
  ASSERT_EQ(back.status, 200);
  EXPECT_EQ(back.body, PackageBody("smtp", "2.0.1", payload));
  // The facts report it.
  json facts = Call("GET", "/api/v1/agent/facts", "", key).body;
  ASSERT_EQ(facts["packages"].size(), 3u) << facts.dump();
  EXPECT_EQ(facts["packages"][2]["version"], "2.0.1");
  // A PUT without a payload replaces the package and removes the old payload.
  json bare{{"manifest", {{"name", "http"}, {"version", "1.3"}, {"kind", "protocol"}}},
            {"payload_base64", nullptr},
            {"sha256", nullptr}};
  ASSERT_EQ(Call("PUT", "/api/v1/agent/packages/http", bare.dump(), key).status, 200);
  EXPECT_FALSE(std::filesystem::exists(pk + "/http.pkg"));
  EXPECT_EQ(json::parse(ReadText(pk + "/http.json"))["version"], "1.3");
  // An empty payload is a payload (of 0 bytes).
  ASSERT_EQ(Call("PUT", "/api/v1/agent/packages/dns", PackageBody("dns", "4", "").dump(), key).status, 200);
  EXPECT_TRUE(std::filesystem::exists(pk + "/dns.pkg"));
  EXPECT_EQ(Call("GET", "/api/v1/agent/packages/dns", "", key).body["sha256"], console::Sha256Hex(""));
  EXPECT_NE(Log().find("installed package smtp 2.0.1"), std::string::npos) << Log();
}

TEST_F(AgentTest, BadPackagesAreRefusedWithNothingWritten) {
  StartAgent();
  const std::string key = PairOk();
  const std::string pk = dir_ + "/packages";
  ASSERT_TRUE(os::WriteFileAtomic(pk + "/http.json",
                                  R"({"name": "http", "version": "1.2", "kind": "protocol"})", 0644)
                  .ok());
  ASSERT_TRUE(os::WriteFileAtomic(pk + "/http.pkg", "old", 0644).ok());
  const std::string before = TreeSnapshot(pk);
  auto put = [&](const std::string& name, const json& body) {
    return Call("PUT", "/api/v1/agent/packages/" + name, body.dump(), key);
  };
  json sha_wrong = PackageBody("http", "2", "new bytes");
  sha_wrong["sha256"] = console::Sha256Hex("other bytes");
  ExpectError(put("http", sha_wrong), 400, "invalid_argument", "sha256");
  json sha_missing = PackageBody("http", "2", "new bytes");
  sha_missing["sha256"] = nullptr;
  ExpectError(put("http", sha_missing), 400, "invalid_argument", "sha256");
  // The manifest names another package than the path.
  ExpectError(put("http", PackageBody("dns", "2", "x")), 400, "invalid_argument", "manifest");
  // A name that cannot be a package (path traversal included): 404.
  ExpectError(put("..", PackageBody("..", "2", "x")), 404, "not_found");
  ExpectError(put("a%2Fb", PackageBody("a%2Fb", "2", "x")), 404, "not_found");
  // Bad manifests, as ReadPackages would skip them.
  json bad_version = PackageBody("http", "2.x", "x");
  ExpectError(put("http", bad_version), 400, "invalid_argument", "manifest");
  json bad_kind = PackageBody("http", "2", "x");
  bad_kind["manifest"]["kind"] = "firmware";
  ExpectError(put("http", bad_kind), 400, "invalid_argument", "manifest");
  json extra = PackageBody("http", "2", "x");
  extra["manifest"]["url"] = "http://x";
  ExpectError(put("http", extra), 400, "invalid_argument", "manifest");
  json not_b64 = PackageBody("http", "2", "x");
  not_b64["payload_base64"] = "not base64!";
  ExpectError(put("http", not_b64), 400, "invalid_argument", "payload_base64");
  json missing = PackageBody("http", "2", "x");
  missing.erase("sha256");
  ExpectError(put("http", missing), 400, "invalid_argument", "sha256");
  json unknown = PackageBody("http", "2", "x");
  unknown["path"] = "/etc/passwd";
  ExpectError(put("http", unknown), 400, "invalid_argument", "path");
  // Over the payload limit by one byte: refused, naming the payload.
  const std::string big(kPackagePayloadBytesMax + 1, 'b');
  ExpectError(put("http", PackageBody("http", "2", big)), 400, "invalid_argument", "payload_base64");
  EXPECT_EQ(TreeSnapshot(pk), before);
  // At the limit: accepted (the PUT's body limit is raised for it alone).
  const std::string max(kPackagePayloadBytesMax, 'm');
  ApiResponse ok = put("http", PackageBody("http", "2", max));
  EXPECT_EQ(ok.status, 200) << ok.body.dump().substr(0, 300);
  EXPECT_EQ(std::filesystem::file_size(pk + "/http.pkg"), kPackagePayloadBytesMax);
  // Every other call keeps the 64 KiB body limit.
  ExpectError(Call("POST", "/api/v1/agent/measure/listen",
                   json{{"bytes", std::string(kAgentBodyBytesMax, 'x')}}.dump(), key),
              413, "payload_too_large");
}

// ---- deployed configuration (PUT/GET /api/v1/agent/config) ----

json DeployDocument(int64_t revision) {
  return json{{"revision", revision},
              {"console", {{"name", "cons"}}},
              {"host", {{"name", "alpha-primary"}, {"role", "primary"}}},
              {"cluster",
               {{"name", "alpha"},
                {"key", std::string(60, 'a') + "09bf"},
                {"vip", "198.18.0.1"},
                {"vip_prefix", 24},
                {"primary_ip", "198.18.0.10"},
                {"secondary_ip", "198.18.0.2"},
                {"license_valid", true},
                {"options",
                 {{"heartbeat_interval_ms", 2000},
                  {"heartbeat_timeout_ms", 6000},
                  {"connectivity_peers", {"198.18.0.3", "198.18.0.4:22"}},
                  {"sync_rate_mb", 250},
                  {"disable_replication", false},
                  {"crossover_interface", nullptr},
                  {"crossover_primary_ip", nullptr},
                  {"crossover_secondary_ip", nullptr}}}}}};
}

TEST_F(AgentTest, DeployedConfigIsStored0600AppliedAndAnsweredBack) {
  AgentOptions o = Options();
  std::vector<json> applied;
  std::mutex applied_mu;
  o.apply_config = [&](const json& d) {
    std::lock_guard<std::mutex> l(applied_mu);
    applied.push_back(d);
    return Status::Ok();
  };
  agent_ = std::make_unique<Agent>(o);
  const std::string key = PairOk();
  ExpectError(Call("GET", "/api/v1/agent/config", "", key), 404, "not_found");
  EXPECT_TRUE(Call("GET", "/api/v1/agent/facts", "", key).body["deployed_revision"].is_null());

  const json body{{"revision", 7}, {"document", DeployDocument(7)}};
  ApiResponse put = Call("PUT", "/api/v1/agent/config", body.dump(), key);
  ASSERT_EQ(put.status, 200) << put.body.dump();
  EXPECT_EQ(put.body["revision"], 7);
  struct stat st {};
  ASSERT_EQ(::stat(DeployedConfigFile(state_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  json stored = json::parse(ReadText(DeployedConfigFile(state_)));
  EXPECT_EQ(stored["revision"], 7);
  EXPECT_EQ(stored["deployed_at_ms"], clock_.WallMs());
  EXPECT_EQ(stored["document"], DeployDocument(7));
  {
    std::lock_guard<std::mutex> l(applied_mu);
    ASSERT_EQ(applied.size(), 1u);
    EXPECT_EQ(applied[0], DeployDocument(7));
  }
  ApiResponse get = Call("GET", "/api/v1/agent/config", "", key);
  ASSERT_EQ(get.status, 200) << get.body.dump();
  EXPECT_EQ(get.body["revision"], 7);
  json shown = DeployDocument(7);
  shown["cluster"]["key"] = "(hidden)";  // stored, never answered
  EXPECT_EQ(get.body["document"], shown);
  EXPECT_EQ(get.body["deployed_at"], console::Rfc3339Ms(clock_.WallMs()));
  EXPECT_EQ(Call("GET", "/api/v1/agent/facts", "", key).body["deployed_revision"], 7);
  auto read = ReadDeployedConfig(state_);
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((**read)["revision"], 7);

  // An agent-only document (no cluster) replaces it.
  json managed{{"revision", 8},
               {"console", {{"name", "cons"}}},
               {"host", {{"name", "alpha"}, {"role", "managed"}}},
               {"cluster", nullptr}};
  put = Call("PUT", "/api/v1/agent/config", json{{"revision", 8}, {"document", managed}}.dump(), key);
  ASSERT_EQ(put.status, 200) << put.body.dump();
  EXPECT_EQ(Call("GET", "/api/v1/agent/config", "", key).body["document"], managed);

  // A failing apply: stored, answered 500 apply_failed.
  o.apply_config = [](const json&) { return Status::Error("the loop did not answer"); };
  agent_ = std::make_unique<Agent>(o);
  put = Call("PUT", "/api/v1/agent/config", body.dump(), key);
  ExpectError(put, 500, "apply_failed");
  EXPECT_NE(put.body["error"]["message"].get<std::string>().find("the loop did not answer"), std::string::npos);
}

TEST_F(AgentTest, BadConfigBodiesAreRefusedWithNothingStored) {
  AgentOptions o = Options();
  int applied = 0;
  o.apply_config = [&](const json&) {
    ++applied;
    return Status::Ok();
  };
  agent_ = std::make_unique<Agent>(o);
  const std::string key = PairOk();
  ASSERT_EQ(Call("PUT", "/api/v1/agent/config", json{{"revision", 3}, {"document", DeployDocument(3)}}.dump(), key)
                .status,
            200);
  applied = 0;
  const std::string before = TreeSnapshot(state_);
  auto refused = [&](const std::string& what, const json& body, const std::string& field) {
    ApiResponse a = Call("PUT", "/api/v1/agent/config", body.dump(), key);
    EXPECT_EQ(a.status, 400) << what << ": " << a.body.dump();
    EXPECT_EQ(a.body["error"]["field"], field) << what << ": " << a.body.dump();
    EXPECT_EQ(TreeSnapshot(state_), before) << what;
  };
  auto with = [](const std::function<void(json&)>& change) {
    json b{{"revision", 4}, {"document", DeployDocument(4)}};
    change(b);
    return b;
  };
  refused("no revision", json{{"document", DeployDocument(4)}}, "revision");
  refused("revision 0", with([](json& b) { b["revision"] = 0; b["document"]["revision"] = 0; }), "revision");
  refused("revision a string", with([](json& b) { b["revision"] = "4"; }), "revision");
  refused("no document", json{{"revision", 4}}, "document");
  refused("unknown field", with([](json& b) { b["extra"] = 1; }), "extra");
  refused("revisions differ", with([](json& b) { b["document"]["revision"] = 5; }), "document.revision");
  refused("unknown document field", with([](json& b) { b["document"]["x"] = 1; }), "document.x");
  refused("bad role", with([](json& b) { b["document"]["host"]["role"] = "boss"; }), "document.host.role");
  refused("bad host name", with([](json& b) { b["document"]["host"]["name"] = "a b"; }), "document.host.name");
  refused("member without cluster", with([](json& b) { b["document"]["cluster"] = nullptr; }), "document.cluster");
  refused("bad vip", with([](json& b) { b["document"]["cluster"]["vip"] = "198.18.0"; }), "document.cluster.vip");
  refused("no key", with([](json& b) { b["document"]["cluster"].erase("key"); }), "document.cluster.key");
  refused("short key", with([](json& b) { b["document"]["cluster"]["key"] = std::string(62, 'a'); }),
          "document.cluster.key");
  refused("upper-case key", with([](json& b) { b["document"]["cluster"]["key"] = std::string(64, 'A'); }),
          "document.cluster.key");
  refused("vip prefix 33", with([](json& b) { b["document"]["cluster"]["vip_prefix"] = 33; }),
          "document.cluster.vip_prefix");
  refused("vip prefix a string", with([](json& b) { b["document"]["cluster"]["vip_prefix"] = "24"; }),
          "document.cluster.vip_prefix");
  refused("missing option",
          with([](json& b) { b["document"]["cluster"]["options"].erase("sync_rate_mb"); }),
          "document.cluster.options.sync_rate_mb");
  refused("sync rate too high",
          with([](json& b) { b["document"]["cluster"]["options"]["sync_rate_mb"] = 4097; }),
          "document.cluster.options.sync_rate_mb");
  refused("timeout not above the interval",
          with([](json& b) { b["document"]["cluster"]["options"]["heartbeat_timeout_ms"] = 2000; }),
          "document.cluster.options.heartbeat_timeout_ms");
  refused("bad peer",
          with([](json& b) { b["document"]["cluster"]["options"]["connectivity_peers"] = {"198.18.0.3:0"}; }),
          "document.cluster.options.connectivity_peers[0]");
  refused("half a crossover",
          with([](json& b) { b["document"]["cluster"]["options"]["crossover_interface"] = "eth1"; }),
          "document.cluster.options.crossover_interface");
  refused("license_valid not a boolean",
          with([](json& b) { b["document"]["cluster"]["license_valid"] = 1; }), "document.cluster.license_valid");
  EXPECT_EQ(applied, 0);
  EXPECT_EQ(Call("GET", "/api/v1/agent/config", "", key).body["revision"], 3);
  // Without the key: 401; other methods 405.
  ExpectError(Call("PUT", "/api/v1/agent/config", with([](json&) {}).dump()), 401, "unauthenticated");
  ExpectError(Call("GET", "/api/v1/agent/config", "", std::string(64, 'c')), 401, "unauthenticated");
  ExpectError(Call("POST", "/api/v1/agent/config", with([](json&) {}).dump(), key), 405, "method_not_allowed");
  EXPECT_EQ(TreeSnapshot(state_), before);
}

// ---- factory reset (docs/CONSOLE.md, "Host actions") ----

class FactoryResetTest : public AgentTest {
 protected:
  // An unclustered managed host with what a deploy and an earlier
  // membership left: deployed.json, cluster.key, the HA state file and the
  // replica's metadata; a package and data in the store.
  void SetUpHost(bool clustered) {
    AgentOptions o = Options();
    if (!clustered) {
      o.cluster = nullptr;
      o.ha_status = nullptr;
    }
    o.ha_state_file = dir_ + "/host/state.json";
    o.replica_dir = dir_ + "/host/replica";
    agent_ = std::make_unique<Agent>(std::move(o));
    key_ = PairOk();
    ASSERT_FALSE(key_.empty());
    ASSERT_TRUE(os::MakeDirs(dir_ + "/host/replica/sub", 0700).ok());
    for (const auto& [path, text] : std::vector<std::pair<std::string, std::string>>{
             {DeployedConfigFile(state_), "{}\n"},
             {ClusterKeyFile(state_), std::string(64, 'c') + "\n"},
             {dir_ + "/host/state.json", "{\"epoch\": 3}\n"},
             {dir_ + "/host/replica/meta.json", "{}\n"},
             {dir_ + "/host/replica/sub/bitmap", "xx"},
             {dir_ + "/host/tandemd.log", "kept\n"},
             {dir_ + "/packages/p.json", R"({"name": "p", "version": "1.0", "kind": "parser"})"},
             {dir_ + "/store/data.bin", "records"}}) {
      ASSERT_TRUE(os::WriteFileAtomic(path, text, 0600).ok()) << path;
    }
  }
  ApiResponse Reset(const json& body, const std::string& key) {
    return Call("POST", "/api/v1/agent/factory-reset", body.dump(), key);
  }
  std::string key_;
};

TEST_F(FactoryResetTest, RefusedOnAHostThatRunsAnHaRoleNothingChanges) {
  SetUpHost(/*clustered=*/true);
  const std::string before = TreeSnapshot(dir_);
  ApiResponse a = Reset(json{{"confirm", "alpha"}}, key_);
  ExpectError(a, 409, "clustered");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("cluster lab"), std::string::npos)
      << a.body.dump();
  // The daemon's HA command alone also makes it a member.
  AgentOptions o = Options();
  o.cluster = nullptr;
  o.ha_command = [](const json&) -> Result<json> { return json{{"ok", true}}; };
  agent_ = std::make_unique<Agent>(std::move(o));
  ExpectError(Reset(json{{"confirm", "alpha"}}, key_), 409, "clustered");
  EXPECT_EQ(TreeSnapshot(dir_), before);
}

TEST_F(FactoryResetTest, WrongConfirmBadBodiesAndNoKeyChangeNothing) {
  SetUpHost(/*clustered=*/false);
  const std::string before = TreeSnapshot(dir_);
  ApiResponse a = Reset(json{{"confirm", "beta"}}, key_);
  ExpectError(a, 400, "wrong_host", "confirm");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("\"alpha\""), std::string::npos);
  ExpectError(Reset(json::object(), key_), 400, "invalid_argument", "confirm");
  ExpectError(Reset(json{{"confirm", 1}}, key_), 400, "invalid_argument", "confirm");
  ExpectError(Reset(json{{"confirm", "alpha"}, {"wipe", true}}, key_), 400, "invalid_argument", "wipe");
  ExpectError(Reset(json{{"confirm", "alpha"}}, ""), 401, "unauthenticated");
  ExpectError(Reset(json{{"confirm", "alpha"}}, std::string(64, 'f')), 401, "unauthenticated");
  ExpectError(Call("GET", "/api/v1/agent/factory-reset", "", key_), 405, "method_not_allowed");
  EXPECT_EQ(TreeSnapshot(dir_), before);
}

TEST_F(FactoryResetTest, RemovesExactlyTheStateAndPairsAgain) {
  SetUpHost(/*clustered=*/false);
  const std::string old_token = ReadText(PairingTokenFile(state_));  // gone since the pairing
  EXPECT_TRUE(old_token.empty());
  const std::string cert = ReadText(AgentCertFile(state_));
  ApiResponse a = Reset(json{{"confirm", "alpha"}}, key_);
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body, (json{{"reset", true},
                          {"removed",
                           {DeployedConfigFile(state_), ClusterKeyFile(state_), dir_ + "/host/state.json",
                            dir_ + "/host/replica", PairedFile(state_)}}}));
  for (const std::string& gone : {DeployedConfigFile(state_), ClusterKeyFile(state_), PairedFile(state_),
                                  dir_ + "/host/state.json", dir_ + "/host/replica"}) {
    EXPECT_FALSE(std::filesystem::exists(gone)) << gone;
  }
  // Kept: the packages, the store, the certificate, the host's other files.
  EXPECT_EQ(ReadText(dir_ + "/packages/p.json"), R"({"name": "p", "version": "1.0", "kind": "parser"})");
  EXPECT_EQ(ReadText(dir_ + "/store/data.bin"), "records");
  EXPECT_EQ(ReadText(dir_ + "/host/tandemd.log"), "kept\n");
  EXPECT_EQ(ReadText(AgentCertFile(state_)), cert);
  // A fresh pairing token (0600), which the pairing string carries.
  const std::string token = ReadText(PairingTokenFile(state_));
  ASSERT_EQ(token.size(), 65u) << token;
  struct stat st {};
  ASSERT_EQ(::stat(PairingTokenFile(state_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(Log().find("agent: factory reset by console cons"), std::string::npos) << Log();
  // The old key no longer opens anything; the host pairs anew.
  ExpectError(Call("GET", "/api/v1/agent/facts", "", key_), 401, "unauthenticated");
  EXPECT_EQ(Token(), token.substr(0, 64));
  const std::string key = PairOk();
  ASSERT_FALSE(key.empty());
  EXPECT_NE(key, key_);
  // Nothing left to remove but the new pairing.
  ApiResponse again = Reset(json{{"confirm", "alpha"}}, key);
  ASSERT_EQ(again.status, 200) << again.body.dump();
  EXPECT_EQ(again.body["removed"], json::array({PairedFile(state_)}));
}

}  // namespace
}  // namespace tandem::daemon
