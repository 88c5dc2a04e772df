// The agent of a real tandemd (docs/CONSOLE.md, "Hosts: pairing and the
// agent channel"): `tandemd pair-token` prints a pairing string whose
// fingerprint is the served certificate's; the console's side is played by
// an HTTPS client that trusts only that certificate (verification on). The
// token pairs once and is consumed, the key opens the facts (with the HA
// status of a clustered host), and neither secret reaches the log. An
// agent-only host (no [cluster]/[heartbeat]) runs the agent alone.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>

#include "api/httplib.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "console/tls.h"
#include "os/files.h"
#include "test_util.h"

namespace tandem::itest {
namespace {

using nlohmann::json;

uint16_t FreePortOn(const std::string& addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// An X509 store holding only `pem` (the client's SSL context takes it).
X509_STORE* StoreWith(const std::string& pem) {
  X509_STORE* store = X509_STORE_new();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  if (cert != nullptr) X509_STORE_add_cert(store, cert);
  X509_free(cert);
  BIO_free(bio);
  return store;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tandem-agent");
    ASSERT_FALSE(dir_.empty());
    std::random_device rd;
    subnet_ = "127.204." + std::to_string(rd() % 256);
    agent_port_ = FreePortOn(subnet_ + ".1");
    ASSERT_NE(agent_port_, 0);
    config_ = dir_ + "/tandemd.toml";
    state_ = dir_ + "/state/agent";
  }
  void TearDown() override {
    Stop();
    if (HasFailure()) {
      std::ifstream in(dir_ + "/log");
      std::cerr << "---- tandemd log\n" << in.rdbuf() << "\n";
    }
    std::filesystem::remove_all(dir_);
  }

  void WriteConfig(bool clustered) {
    std::ofstream out(config_);
    if (clustered) {
      ASSERT_TRUE(os::WriteFileAtomic(dir_ + "/key", std::string(48, 'k'), 0600).ok());
      out << "[cluster]\nname = \"lab\"\nkey_file = \"key\"\nvip = \"" << subnet_ << ".10\"\n";
    }
    out << "[host]\nname = \"alpha\"\n"
        << (clustered ? "role = \"primary\"\n" : "") << "state_dir = \"state\"\nrun_dir = \"run\"\n";
    if (clustered) {
      out << "[heartbeat]\ninterval_ms = 100\ntimeout_ms = 500\ninitial_dead_time_ms = 500\n"
          << "listen = \"" << subnet_ << ".1:" << FreePortOn(subnet_ + ".1") << "\"\n"
          << "peer = \"" << subnet_ << ".2:" << FreePortOn(subnet_ + ".2") << "\"\n";
    }
    out << "[agent]\nlisten = \"" << subnet_ << ".1:" << agent_port_ << "\"\n"
        << "[log]\nfile = \"log\"\n";
  }

  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      execl((BinDir() + "/tandemd").c_str(), "tandemd", "--config", config_.c_str(), nullptr);
      _exit(127);
    }
    ASSERT_GT(pid_, 0);
    // Up when the certificate is served (no verification yet: nothing pinned).
    ASSERT_TRUE(WaitFor(10000, [&] {
      httplib::SSLClient cli(subnet_ + ".1", agent_port_);
      cli.enable_server_certificate_verification(false);
      cli.set_connection_timeout(1, 0);
      auto r = cli.Get("/api/v1/agent/certificate");
      if (r && r->status == 200) served_pem_ = json::parse(r->body)["pem"];
      return r && r->status == 200;
    }));
  }
  // SIGTERM, bounded wait, SIGKILL; the exit code (or -1).
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int ws = 0;
    bool exited = WaitFor(10000, [&] { return waitpid(pid_, &ws, WNOHANG) == pid_; });
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &ws, 0);
    }
    pid_ = -1;
    return exited && WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  }

  // A client that trusts only `pem`, with server certificate verification on.
  std::unique_ptr<httplib::SSLClient> Pinned(const std::string& pem) {
    auto cli = std::make_unique<httplib::SSLClient>(subnet_ + ".1", agent_port_);
    cli->set_ca_cert_store(StoreWith(pem));
    cli->enable_server_certificate_verification(true);
    cli->set_connection_timeout(5, 0);
    cli->set_read_timeout(10, 0);
    return cli;
  }

  // `tandemd pair-token`, checked for its form; the pinned fingerprint and
  // the token in *fp / *token.
  void PairToken(std::string* token, std::string* fp) {
    auto r = RunCommand({BinDir() + "/tandemd", "pair-token", "--config", config_});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string s = r.output;
    ASSERT_EQ(s.size(), 4u + 64 + 1 + 64 + 1) << s;  // and nothing else
    ASSERT_EQ(s.substr(0, 4), "tp1.");
    ASSERT_EQ(s[68], '.');
    *token = s.substr(4, 64);
    *fp = s.substr(69, 64);
  }

  // The served certificate's SHA-256 (what the console checks the pairing
  // string against before trusting it).
  std::string ServedFingerprint() {
    const std::string path = dir_ + "/served.pem";
    EXPECT_TRUE(os::WriteFileAtomic(path, served_pem_, 0644).ok());
    auto fp = console::CertSha256Hex(path);
    EXPECT_TRUE(fp.ok());
    return fp.ok() ? *fp : "";
  }

  std::string Log() {
    auto r = os::ReadFile(dir_ + "/log", 16 << 20);
    return r.ok() ? *r : "";
  }

  std::string dir_, subnet_, config_, state_, served_pem_;
  uint16_t agent_port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(AgentTest, ClusteredHostPairsOverThePinnedCertificate) {
  WriteConfig(/*clustered=*/true);
  Start();
  std::string token, fp;
  PairToken(&token, &fp);
  EXPECT_EQ(fp, ServedFingerprint());

  // A client pinning some other certificate cannot even connect.
  const std::string other = dir_ + "/other";
  ASSERT_TRUE(console::GenerateSelfSigned(other + ".crt", other + ".key", "alpha",
                                          {subnet_ + ".1"}, {"alpha"})
                  .ok());
  auto other_pem = os::ReadFile(other + ".crt", 1 << 20);
  ASSERT_TRUE(other_pem.ok());
  auto refused = Pinned(*other_pem)->Post(
      "/api/v1/agent/pair", json{{"token", token}, {"console", "cons"}}.dump(), "application/json");
  EXPECT_FALSE(refused) << "a wrongly pinned client got an answer";

  auto cli = Pinned(served_pem_);
  // A wrong token: 401, and the right one still pairs afterwards.
  auto wrong = cli->Post("/api/v1/agent/pair",
                         json{{"token", std::string(64, 'e')}, {"console", "cons"}}.dump(),
                         "application/json");
  ASSERT_TRUE(wrong) << httplib::to_string(wrong.error());
  EXPECT_EQ(wrong->status, 401) << wrong->body;

  auto paired = cli->Post("/api/v1/agent/pair",
                          json{{"token", token}, {"console", "cons"}}.dump(), "application/json");
  ASSERT_TRUE(paired) << httplib::to_string(paired.error());
  ASSERT_EQ(paired->status, 201) << paired->body;
  const std::string key = json::parse(paired->body).value("key", "");
  ASSERT_EQ(key.size(), 64u);

  // The token is consumed: gone from disk, refused as a second pairing.
  EXPECT_FALSE(std::filesystem::exists(state_ + "/pairing.token"));
  auto again = cli->Post("/api/v1/agent/pair",
                         json{{"token", token}, {"console", "cons"}}.dump(), "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409) << again->body;
  auto r = RunCommand({BinDir() + "/tandemd", "pair-token", "--config", config_});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("already paired with console cons"), std::string::npos) << r.output;

  auto facts = cli->Get("/api/v1/agent/facts", {{"Authorization", "Bearer " + key}});
  ASSERT_TRUE(facts);
  ASSERT_EQ(facts->status, 200) << facts->body;
  json f = json::parse(facts->body);
  EXPECT_EQ(f["name"], "alpha");
  EXPECT_EQ(f["address"], subnet_ + ".1");
  EXPECT_EQ(f["cluster"]["name"], "lab");
  EXPECT_EQ(f["cluster"]["role"], "primary");
  EXPECT_EQ(f["cluster"]["peer"], subnet_ + ".2");
  // The HA status the control socket gives, read across threads.
  ASSERT_TRUE(f["ha"].is_object()) << f.dump();
  EXPECT_TRUE(f["ha"]["local"]["status"].is_string()) << f["ha"].dump();
  EXPECT_EQ(f["ha"]["local"]["name"], HostStatus(config_)["local"]["name"]);
  auto nokey = cli->Get("/api/v1/agent/facts");
  ASSERT_TRUE(nokey);
  EXPECT_EQ(nokey->status, 401);

  // The agent's counters are part of tandemd's metrics.
  auto m = api::Call(dir_ + "/run/tandemd.sock", json{{"cmd", "metrics"}}, 2000);
  ASSERT_TRUE(m.ok());
  const std::string text = (*m).value("text", "");
  EXPECT_NE(text.find("tandem_agent_pairings_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_agent_pair_failures_total 1\n"), std::string::npos) << text;

  EXPECT_EQ(Stop(), 0);
  const std::string log = Log();
  EXPECT_NE(log.find("agent: paired with console cons"), std::string::npos) << log;
  EXPECT_EQ(log.find(token), std::string::npos) << "the pairing token reached the log";
  EXPECT_EQ(log.find(key), std::string::npos) << "the agent key reached the log";
}

TEST_F(AgentTest, AgentOnlyHostRunsTheAgentAlone) {
  WriteConfig(/*clustered=*/false);
  auto check = RunCommand({BinDir() + "/tandemd", "--check", "--config", config_});
  ASSERT_EQ(check.exit_code, 0) << check.output;
  Start();
  std::string token, fp;
  PairToken(&token, &fp);
  EXPECT_EQ(fp, ServedFingerprint());
  auto cli = Pinned(served_pem_);
  auto paired = cli->Post("/api/v1/agent/pair",
                          json{{"token", token}, {"console", "cons"}}.dump(), "application/json");
  ASSERT_TRUE(paired) << httplib::to_string(paired.error());
  ASSERT_EQ(paired->status, 201) << paired->body;
  const std::string key = json::parse(paired->body).value("key", "");
  json f = json::parse(paired->body)["facts"];
  EXPECT_EQ(f["name"], "alpha");
  EXPECT_TRUE(f["cluster"].is_null()) << f.dump();
  EXPECT_TRUE(f["ha"].is_null()) << f.dump();
  // No HA role: no control socket, no heartbeats.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/run/tandemd.sock"));

  // Unpair while it runs: the key stops working at once.
  auto u = RunCommand({BinDir() + "/tandemd", "unpair", "--config", config_});
  EXPECT_EQ(u.exit_code, 0) << u.output;
  EXPECT_NE(u.output.find("unpaired from console cons"), std::string::npos) << u.output;
  auto facts = cli->Get("/api/v1/agent/facts", {{"Authorization", "Bearer " + key}});
  ASSERT_TRUE(facts);
  EXPECT_EQ(facts->status, 401) << facts->body;

  EXPECT_EQ(Stop(), 0);
  const std::string log = Log();
  EXPECT_NE(log.find("agent only"), std::string::npos) << log;
  EXPECT_EQ(log.find(token), std::string::npos);
  EXPECT_EQ(log.find(key), std::string::npos);
}

}  // namespace
}  // namespace tandem::itest
