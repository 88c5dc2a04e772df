// POST /api/v1/hosts/{name}/actions (console/api_actions.cc): an HA command
// on a paired host through its agent (POST /api/v1/agent/ha), with a
// scripted agent (FakeAgentClient): every answer's code, the audit and
// history rows, and refusals that never reach the agent.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "console/agent_client.h"
#include "console/api.h"
#include "console/api_test_support.h"
#include "console/fake_agent_client.h"
#include "console/tls.h"
#include "os/files.h"
#include "util/temp_dir.h"

namespace tandem::console {
namespace {

using nlohmann::json;

const std::string kToken(64, 'a');
const std::string kKey = "1111111111111111111111111111111111111111111111111111111111111111";
const std::string kAddress = "127.0.0.2:7790";
const std::string kAgentHa = "POST /api/v1/agent/ha";

class ActionsTest : public test_support::ApiFixture {
 protected:
  ActionsTest() : ApiFixture("console-actions") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OpenDb("127.0.0.1"));
    ApiOptions options = Options();
    options.agents = &agents_;
    options.console_name = "console-1";
    ASSERT_NO_FATAL_FAILURE(StartApi(std::move(options)));
    const std::string cert = dir_ / "a.cert.pem", key = dir_ / "a.key.pem";
    ASSERT_TRUE(GenerateSelfSigned(cert, key, "a", {"127.0.0.1"}, {"localhost"}).ok());
    auto pem = os::ReadFile(cert, 1 << 20);
    auto sha = CertSha256Hex(cert);
    ASSERT_TRUE(pem.ok() && sha.ok());
    FakeAgentClient::Host h;
    h.cert_pem = *pem;
    h.token = kToken;
    h.key = kKey;
    h.facts = json{{"name", "fw-1"}, {"version", "0.1.0"}, {"packages", json::array()},
                   {"address", "198.18.0.5"},
                   {"cluster", {{"name", "lab"}, {"role", "primary"}, {"peer", "x"}}},
                   {"ha", {{"local", {{"name", "fw-1"}, {"status", "ACTIVE"}}}}}};
    agents_.hosts[kAddress] = h;
    ApiResponse paired = Call("POST", "/api/v1/hosts", admin_,
                              json{{"address", kAddress}, {"pairing_token", "tp1." + kToken + "." + *sha}}
                                  .dump());
    ASSERT_EQ(paired.status, 201) << paired.body.dump();
    // The scripted agent: what /agent/ha answers for each command.
    agents_.handlers[kAgentHa] = [this](FakeAgentClient::Host&, const json& body) -> Result<json> {
      seen_.push_back(body);
      const std::string cmd = body.value("cmd", "");
      if (cmd == "takeover") {
        return Status::Error("agent " + kAddress + " answered 409: this host is already ACTIVE");
      }
      if (cmd == "verify") {
        return Status::Error("agent " + kAddress +
                             " answered 503: the daemon did not answer verify: no answer within 2000 ms");
      }
      if (not_clustered_) {
        return Status::Error("agent " + kAddress + " answered 409: host fw-1 is not in an HA cluster "
                             "(agent only): " + cmd + " does not apply");
      }
      return json{{"ok", true}, {"message", "status ACTIVE -> OFFLINE"}};
    };
  }

  ApiResponse Act(const std::string& host, const json& body, const std::string& as = "") {
    return Call("POST", "/api/v1/hosts/" + host + "/actions", as.empty() ? admin_ : as, body.dump());
  }

  std::vector<std::string> Rows(const char* sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    EXPECT_TRUE(s.ok());
    std::vector<std::string> out;
    while (*s->Step()) out.push_back(s->Text(0));
    return out;
  }
  std::vector<std::string> History() {
    return Rows("SELECT host || '|' || IFNULL(cluster, '-') || '|' || old_status || '|' || new_status || '|' "
                "|| reason FROM host_history WHERE reason LIKE 'action %' ORDER BY id");
  }
  std::string LastAudit() {
    auto rows = Rows("SELECT user || '|' || action || '|' || target || '|' || result || '|' || status "
                     "FROM audit ORDER BY id DESC LIMIT 1");
    return rows.empty() ? "" : rows[0];
  }

  void ExpectError(const ApiResponse& a, int status, const std::string& code, const std::string& field = "") {
    EXPECT_EQ(a.status, status) << a.body.dump();
    EXPECT_EQ(a.body["error"]["code"], code) << a.body.dump();
    if (field.empty()) {
      EXPECT_TRUE(a.body["error"]["field"].is_null()) << a.body.dump();
    } else {
      EXPECT_EQ(a.body["error"]["field"], field) << a.body.dump();
    }
  }

  FakeAgentClient agents_;
  std::vector<json> seen_;  // bodies the agent got (under agents_.mu)
  bool not_clustered_ = false;
};

TEST_F(ActionsTest, AcceptedActionAnswersTheReplyAndIsAuditedAndInTheHistory) {
  ApiResponse a = Act("fw-1", json{{"action", "offline"}});
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body, (json{{"host", "fw-1"},
                          {"action", "offline"},
                          {"reply", {{"ok", true}, {"message", "status ACTIVE -> OFFLINE"}}}}));
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0], (json{{"cmd", "offline"}}));
  const auto history = History();
  ASSERT_EQ(history.size(), 1u);
  // host|cluster|old|new|reason: the status is the host's (unchanged by the row).
  const auto status = Rows("SELECT status FROM hosts WHERE name = 'fw-1'");
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(history[0], "fw-1|-|" + status[0] + "|" + status[0] +
                            "|action offline requested by admin: accepted: status ACTIVE -> OFFLINE");
  EXPECT_EQ(LastAudit(),
            "admin|POST /api/v1/hosts/fw-1/actions|host fw-1 (offline)|ok: accepted: status ACTIVE -> "
            "OFFLINE|200");
  // The history API shows it.
  ApiResponse h = Call("GET", "/api/v1/history", admin_, "", "", {{"host", "fw-1"}});
  ASSERT_EQ(h.status, 200);
  ASSERT_FALSE(h.body["entries"].empty());
  EXPECT_EQ(h.body["entries"][0]["reason"],
            "action offline requested by admin: accepted: status ACTIVE -> OFFLINE");
}

TEST_F(ActionsTest, TheHostsRefusalIsActionRefusedWithItsMessage) {
  ApiResponse a = Act("fw-1", json{{"action", "takeover"}});
  ExpectError(a, 409, "action_refused");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("this host is already ACTIVE"),
            std::string::npos)
      << a.body.dump();
  const auto history = History();
  ASSERT_EQ(history.size(), 1u);
  EXPECT_NE(history[0].find("action takeover requested by admin: refused: this host is already ACTIVE"),
            std::string::npos)
      << history[0];
  const std::string audit = LastAudit();
  EXPECT_NE(audit.find("admin|POST /api/v1/hosts/fw-1/actions|host fw-1 (takeover)|action_refused: "),
            std::string::npos)
      << audit;
  EXPECT_NE(audit.find("|409"), std::string::npos) << audit;
}

TEST_F(ActionsTest, NotClusteredUnreachableAndAgentErrors) {
  not_clustered_ = true;
  ApiResponse a = Act("fw-1", json{{"action", "online"}});
  ExpectError(a, 409, "not_clustered");
  not_clustered_ = false;

  a = Act("fw-1", json{{"action", "verify"}});
  ExpectError(a, 502, "agent_error");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("answered 503"), std::string::npos);

  agents_.hosts[kAddress].reachable = false;
  a = Act("fw-1", json{{"action", "giveback"}});
  ExpectError(a, 502, "unreachable");
  EXPECT_NE(LastAudit().find("host fw-1 (giveback)|unreachable: "), std::string::npos) << LastAudit();

  const auto history = History();
  ASSERT_EQ(history.size(), 3u);
  EXPECT_NE(history[0].find("action online requested by admin: not clustered"), std::string::npos);
  EXPECT_NE(history[1].find("action verify requested by admin: agent error 503"), std::string::npos);
  EXPECT_NE(history[2].find("action giveback requested by admin: unreachable"), std::string::npos);
}

TEST_F(ActionsTest, BadRequestsNeverReachTheAgent) {
  ExpectError(Act("fw-1", json{{"action", "reboot"}}), 400, "invalid_argument", "action");
  ExpectError(Act("fw-1", json{{"action", "status"}}), 400, "invalid_argument", "action");
  ExpectError(Act("fw-1", json{{"action", 1}}), 400, "invalid_argument", "action");
  ExpectError(Act("fw-1", json::object()), 400, "invalid_argument", "action");
  ExpectError(Act("fw-1", json{{"action", "offline"}, {"force", true}}), 400, "invalid_argument", "force");
  ExpectError(Act("nosuch", json{{"action", "offline"}}), 404, "not_found");
  // The console's own row has no agent.
  ExpectError(Act("console-1", json{{"action", "offline"}}), 409, "not_paired");
  // A viewer may not; nor may nobody; GET is not a method here.
  ExpectError(Act("fw-1", json{{"action", "offline"}}, viewer_), 403, "forbidden");
  EXPECT_EQ(Call("POST", "/api/v1/hosts/fw-1/actions", "", json{{"action", "offline"}}.dump()).status, 401);
  ExpectError(Call("GET", "/api/v1/hosts/fw-1/actions", admin_), 405, "method_not_allowed");
  EXPECT_TRUE(seen_.empty());
  EXPECT_TRUE(History().empty());
  // Each refusal is audited (the viewer's too).
  auto audit = Rows("SELECT user || '|' || result FROM audit WHERE action LIKE '%/actions' ORDER BY id");
  ASSERT_GE(audit.size(), 9u);
  bool viewer_seen = false;
  for (const auto& row : audit) viewer_seen = viewer_seen || row.rfind("vera|forbidden: ", 0) == 0;
  EXPECT_TRUE(viewer_seen);
}

}  // namespace
}  // namespace tandem::console
