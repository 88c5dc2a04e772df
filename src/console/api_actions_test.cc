// POST /api/v1/hosts/{name}/actions (console/api_actions.cc): an HA command
// on a paired host through its agent (POST /api/v1/agent/ha), with a
// scripted agent (FakeAgentClient): every answer's code, the audit and
// history rows, and refusals that never reach the agent; factory_reset
// (POST /api/v1/agent/factory-reset, then the row deleted) and its refusals.
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
const std::string kAgentReset = "POST /api/v1/agent/factory-reset";

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
    // The scripted agent: what /agent/ha answers for each command (the
    // status, code and message daemon/agent.cc's HaCommand answers).
    agents_.handlers[kAgentHa] = [this](FakeAgentClient::Host&, const json& body) -> AgentReply {
      seen_.push_back(body);
      const std::string cmd = body.value("cmd", "");
      if (!answer_code_.empty()) return AgentReply::Answered(kAddress, 409, answer_code_, answer_message_);
      if (cmd == "takeover") {
        return AgentReply::Answered(kAddress, 409, "refused", "this host is already ACTIVE");
      }
      if (cmd == "verify") {
        return AgentReply::Answered(kAddress, 503, "unavailable",
                                    "the daemon did not answer verify: no answer within 2000 ms");
      }
      if (not_clustered_) {
        return AgentReply::Answered(kAddress, 409, "not_clustered",
                                    "host fw-1 is not in an HA cluster (agent only): " + cmd +
                                        " does not apply");
      }
      return json{{"ok", true}, {"message", "status ACTIVE -> OFFLINE"}};
    };
    // What daemon/agent.cc's FactoryReset answers: refused with
    // reset_status_/reset_code_ when set, else reset (and unpaired).
    agents_.handlers[kAgentReset] = [this](FakeAgentClient::Host& host, const json& body) -> AgentReply {
      reset_seen_.push_back(body);
      if (reset_status_ != 0) return AgentReply::Answered(kAddress, reset_status_, reset_code_, "scripted refusal");
      host.paired = false;
      return json{{"reset", true},
                  {"removed", {"/s/agent/deployed.json", "/s/agent/cluster.key", "/s/agent/paired.json"}}};
    };
  }

  void Exec(const std::string& sql) {
    std::lock_guard<std::mutex> l(db_->mu());
    auto s = db_->Prepare(sql);
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_TRUE(s->Run().ok()) << sql;
  }
  size_t HostRows(const std::string& name) {
    return Rows(("SELECT name FROM hosts WHERE name = '" + name + "'").c_str()).size();
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
                "|| reason FROM host_history WHERE kind = 'action' ORDER BY id");
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
  std::string answer_code_, answer_message_;  // set: every command answers 409 with them
  std::vector<json> reset_seen_;  // bodies of factory-reset calls
  int reset_status_ = 0;
  std::string reset_code_;
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
  EXPECT_EQ(h.body["entries"][0]["kind"], "action");
  EXPECT_EQ(h.body["entries"][0]["reason"],
            "action offline requested by admin: accepted: status ACTIVE -> OFFLINE");
  // No row of kind status: the action changed no status by itself.
  EXPECT_TRUE(Rows("SELECT reason FROM host_history WHERE kind = 'status' AND reason LIKE 'action %'").empty());
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

// The answer is decided on the agent's status and error code, not on its
// message: a refusal whose reason reads like the agent-only message is a
// refusal, and not_clustered whatever its message says.
TEST_F(ActionsTest, TheAgentsErrorCodeDecidesNotItsMessage) {
  answer_code_ = "refused";
  answer_message_ = "peer fw-2 is not in an HA cluster (agent only) yet";
  ApiResponse a = Act("fw-1", json{{"action", "online"}});
  ExpectError(a, 409, "action_refused");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("peer fw-2 is not in an HA cluster"),
            std::string::npos)
      << a.body.dump();

  answer_code_ = "not_clustered";
  answer_message_ = "no HA role on this host";
  ExpectError(Act("fw-1", json{{"action", "offline"}}), 409, "not_clustered");

  // Another 409 code of the agent is not the host's refusal.
  answer_code_ = "conflict";
  answer_message_ = "refused";
  a = Act("fw-1", json{{"action", "restore"}});
  ExpectError(a, 502, "agent_error");

  const auto history = History();
  ASSERT_EQ(history.size(), 3u);
  EXPECT_NE(history[0].find("action online requested by admin: refused: peer fw-2 is not in an HA cluster"),
            std::string::npos)
      << history[0];
  EXPECT_NE(history[1].find("action offline requested by admin: not clustered"), std::string::npos)
      << history[1];
  EXPECT_NE(history[2].find("action restore requested by admin: agent error 409"), std::string::npos)
      << history[2];
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

// factory_reset: the agent confirms the name it knows itself by (its
// facts' name, not the row's), then the row goes as DELETE does.
TEST_F(ActionsTest, FactoryResetResetsTheHostAndDeletesItsRow) {
  Exec("UPDATE hosts SET name = 'edge-1' WHERE name = 'fw-1'");
  ApiResponse a = Act("edge-1", json{{"action", "factory_reset"}});
  ASSERT_EQ(a.status, 200) << a.body.dump();
  EXPECT_EQ(a.body["host"], "edge-1");
  EXPECT_EQ(a.body["action"], "factory_reset");
  EXPECT_EQ(a.body["deleted"], "edge-1");
  EXPECT_EQ(a.body["reply"]["reset"], true) << a.body.dump();
  ASSERT_EQ(reset_seen_.size(), 1u);
  EXPECT_EQ(reset_seen_[0], (json{{"confirm", "fw-1"}}));
  EXPECT_TRUE(seen_.empty());  // no HA command
  EXPECT_EQ(HostRows("edge-1"), 0u);
  EXPECT_EQ(Call("GET", "/api/v1/hosts/edge-1", admin_).status, 404);
  const auto history = History();
  ASSERT_EQ(history.size(), 1u);
  EXPECT_NE(history[0].find("edge-1|-|"), std::string::npos) << history[0];
  EXPECT_NE(history[0].find("|action factory_reset requested by admin: reset (3 paths removed on the host); "
                            "host removed from the console"),
            std::string::npos)
      << history[0];
  EXPECT_EQ(LastAudit(), "admin|POST /api/v1/hosts/edge-1/actions|host edge-1|ok|200");
  // A second reset finds no host.
  ExpectError(Act("edge-1", json{{"action", "factory_reset"}}), 404, "not_found");
  EXPECT_EQ(reset_seen_.size(), 1u);
}

TEST_F(ActionsTest, FactoryResetRefusalsChangeNothing) {
  // The console's own row, a viewer: never reach the agent.
  ExpectError(Act("console-1", json{{"action", "factory_reset"}}), 409, "console_host");
  ExpectError(Act("fw-1", json{{"action", "factory_reset"}}, viewer_), 403, "forbidden");
  // A member of a console cluster: remove it first.
  Exec("INSERT INTO clusters (name, vip, created_at_ms) VALUES ('lab', '198.18.0.100', 1)");
  Exec("UPDATE hosts SET cluster_id = (SELECT id FROM clusters WHERE name = 'lab') WHERE name = 'fw-1'");
  ApiResponse a = Act("fw-1", json{{"action", "factory_reset"}});
  ExpectError(a, 409, "cluster_member");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("cluster \"lab\""), std::string::npos)
      << a.body.dump();
  EXPECT_TRUE(reset_seen_.empty());
  Exec("UPDATE hosts SET cluster_id = NULL WHERE name = 'fw-1'");

  // The agent unreachable: 502, the row stays.
  agents_.hosts[kAddress].reachable = false;
  ExpectError(Act("fw-1", json{{"action", "factory_reset"}}), 502, "unreachable");
  agents_.hosts[kAddress].reachable = true;
  // The host refuses: it runs an HA role; the name is not its own.
  reset_status_ = 409;
  reset_code_ = "clustered";
  ExpectError(Act("fw-1", json{{"action", "factory_reset"}}), 409, "clustered");
  reset_status_ = 400;
  reset_code_ = "wrong_host";
  ExpectError(Act("fw-1", json{{"action", "factory_reset"}}), 409, "wrong_host");
  reset_status_ = 500;
  reset_code_ = "internal";
  ExpectError(Act("fw-1", json{{"action", "factory_reset"}}), 502, "agent_error");
  EXPECT_EQ(reset_seen_.size(), 3u);

  // Nothing changed: the row (still paired), no history row; each refusal audited.
  EXPECT_EQ(HostRows("fw-1"), 1u);
  EXPECT_EQ(Rows("SELECT name FROM hosts WHERE name = 'fw-1' AND agent_key IS NOT NULL").size(), 1u);
  EXPECT_TRUE(History().empty());
  auto audit = Rows("SELECT result FROM audit WHERE target LIKE '%(factory_reset)' ORDER BY id");
  ASSERT_EQ(audit.size(), 6u);  // the viewer's is refused before the action is read
  EXPECT_EQ(audit[0].rfind("console_host: ", 0), 0u) << audit[0];
  EXPECT_EQ(audit[1].rfind("cluster_member: ", 0), 0u) << audit[1];
  EXPECT_EQ(audit[2].rfind("unreachable: ", 0), 0u) << audit[2];
  // The host still answers other actions: it was not reset.
  EXPECT_EQ(Act("fw-1", json{{"action", "offline"}}).status, 200);
}

}  // namespace
}  // namespace tandem::console
