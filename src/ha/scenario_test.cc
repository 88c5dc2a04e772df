// Data-driven scenario tests of ha::Step (etcd raft testdata style).
// Each test/scenarios/*.txt holds blocks:
//   <command line>
//   ----
//   <expected output lines>
//   <blank line>
// Run with TANDEM_REWRITE=1 to rewrite the expected output after a
// deliberate behaviour change; review the diff like code.
#include <gtest/gtest.h>

#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ha/state_machine.h"

namespace tandem::ha {
namespace {

namespace fs = std::filesystem;

struct Block {
  std::string comments;  // comment lines before the command, kept on rewrite
  std::string command;
  std::string expected;
};

std::vector<Block> ReadBlocks(const std::string& path) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  std::string line, comments;
  enum { kCommand, kExpect } mode = kCommand;
  while (std::getline(in, line)) {
    if (mode != kExpect && line.empty()) continue;
    if (mode != kExpect && line[0] == '#') {
      comments += line + "\n";
      continue;
    }
    if (mode != kExpect) {
      blocks.push_back(Block{comments, line, ""});
      comments.clear();
      std::getline(in, line);
      EXPECT_EQ(line, "----") << path << ": command not followed by ----: " << blocks.back().command;
      mode = kExpect;
      continue;
    }
    if (line.empty()) {
      mode = kCommand;
      continue;
    }
    blocks.back().expected += line + "\n";
  }
  return blocks;
}

// The rest of the line, split at blanks outside double quotes (which are
// dropped): `detail="Inconsistent, SyncTarget 42%"` is one token.
std::vector<std::string> Tokens(std::istringstream& in) {
  std::string rest;
  std::getline(in, rest);
  std::vector<std::string> out;
  std::string tok;
  bool quoted = false, any = false;
  for (char c : rest) {
    if (c == '"') {
      quoted = !quoted;
      any = true;
    } else if (!quoted && (c == ' ' || c == '\t')) {
      if (any) out.push_back(tok);
      tok.clear();
      any = false;
    } else {
      tok += c;
      any = true;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quote in: " << rest;
  if (any) out.push_back(tok);
  return out;
}

std::map<std::string, std::string> Args(std::istringstream& in) {
  std::map<std::string, std::string> kv;
  for (const std::string& tok : Tokens(in)) {
    auto eq = tok.find('=');
    if (eq == std::string::npos) {
      kv[tok] = "";
    } else {
      kv[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return kv;
}

// `key`, `key=true|1` -> true; `key=false|0` -> false; absent -> def.
bool Bool(const std::map<std::string, std::string>& kv, const std::string& k, bool def) {
  auto it = kv.find(k);
  if (it == kv.end()) return def;
  if (it->second.empty() || it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  ADD_FAILURE() << "bad boolean " << k << "=" << it->second;
  return def;
}

int64_t Int(const std::map<std::string, std::string>& kv, const std::string& k, int64_t def) {
  auto it = kv.find(k);
  return it == kv.end() ? def : std::stoll(it->second);
}

HostStatus ParseStatus(const std::string& s) {
  for (uint8_t v = 0; v <= kHostStatusMax; ++v) {
    if (StatusName(static_cast<HostStatus>(v)) == s) return static_cast<HostStatus>(v);
  }
  ADD_FAILURE() << "unknown status " << s;
  return HostStatus::kUnknown;
}

class Runner {
 public:
  std::string Run(const std::string& command) {
    std::istringstream in(command);
    std::string verb;
    in >> verb;
    if (verb == "init") return Init(in);
    int64_t t = 0;
    in >> t;
    if (verb == "fail") {  // fail T <reason, the rest of the line (quotes optional)>
      std::string reason;
      for (const std::string& tok : Tokens(in)) reason += (reason.empty() ? "" : " ") + tok;
      return Apply(Event{t, LocalFailure{reason.empty() ? "failure" : reason}});
    }
    auto kv = Args(in);
    Event e{t, Tick{}};
    if (verb == "tick") {
      e.body = Tick{};
    } else if (verb == "peer") {
      // age=MS: the packet waited that long in the socket (read after a hang).
      e.body = PeerHeartbeat{static_cast<int>(Int(kv, "path", 0)), ParseAdvert(kv), false,
                             Int(kv, "age", 0)};
    } else if (verb == "conn") {
      std::optional<Advert> w;
      if (kv.count("witness")) {  // witness=EPOCH: a witness heard the peer ACTIVE in EPOCH
        Advert a;
        a.status = HostStatus::kActive;
        a.role = state_.opts.role == Role::kPrimary ? Role::kSecondary : Role::kPrimary;
        a.epoch = static_cast<uint64_t>(Int(kv, "witness", 0));
        a.active_in_epoch = true;
        w = a;
      }
      e.body = ConnectivityResult{kv.count("ok") > 0, "", w};
    } else if (verb == "seqdone") {
      uint64_t seq = static_cast<uint64_t>(Int(kv, "seq", static_cast<int64_t>(state_.sequence)));
      e.body = SequenceDone{seq, kv.count("fail") == 0, kv.count("fail") ? kv["fail"] : ""};
    } else if (verb == "admin") {  // admin T OP [force]
      e.body = AdminCommand{ParseOp(kv), kv.count("force") > 0};
    } else if (verb == "disk") {  // disk T [up_to_date=BOOL] [synchronizing=BOOL] [detail="..."]
      e.body = DiskState{Bool(kv, "up_to_date", true), Bool(kv, "synchronizing", false),
                         kv.count("detail") ? kv["detail"] : ""};
    } else {
      ADD_FAILURE() << "unknown command " << verb;
      return "";
    }
    return Apply(e);
  }

 private:
  std::string Init(std::istringstream& in) {
    auto kv = Args(in);
    Options o;
    o.role = kv["role"] == "secondary" ? Role::kSecondary : Role::kPrimary;
    o.heartbeat_interval_ms = Int(kv, "interval", 1000);
    o.heartbeat_timeout_ms = Int(kv, "timeout", 3000);
    o.initial_dead_time_ms = Int(kv, "dead", 6000);
    o.has_connectivity_peers = Int(kv, "conn", 0) != 0;
    o.connectivity_interval_ms = Int(kv, "conn_interval", 1000);
    o.request_id_base = static_cast<uint32_t>(Int(kv, "idbase", 100));
    Persistent d;
    d.epoch = static_cast<uint64_t>(Int(kv, "epoch", 0));
    d.last_active_epoch = static_cast<uint64_t>(Int(kv, "last_active", 0));
    d.admin_offline = kv.count("offline") > 0;
    d.failed = kv.count("failed") > 0;
    if (d.failed) d.failed_reason = "disk";
    state_ = Boot(o, d, Int(kv, "t", 0));
    return Summary();
  }

  Advert ParseAdvert(std::map<std::string, std::string>& kv) {
    Advert a;
    a.role = kv["role"] == "PRIMARY" ? Role::kPrimary : Role::kSecondary;
    a.status = ParseStatus(kv.count("status") ? kv["status"] : "STANDBY");
    a.admin = kv["admin"] == "OFFLINE" ? AdminMode::kOffline : AdminMode::kOnline;
    a.epoch = static_cast<uint64_t>(Int(kv, "epoch", 0));
    a.active_in_epoch = kv.count("active_in_epoch") > 0;
    a.handover = kv.count("handover") > 0;
    a.connectivity_ok = kv["conn"] != "fail";
    a.takeover_request = static_cast<uint32_t>(Int(kv, "takeover", 0));
    a.conn_check_request = static_cast<uint32_t>(Int(kv, "conncheck", 0));
    a.conn_check_answer_id = static_cast<uint32_t>(Int(kv, "answer", 0));
    a.conn_check_answer_ok = kv.count("answer_ok") > 0;
    return a;
  }

  AdminOp ParseOp(const std::map<std::string, std::string>& kv) {
    for (const auto& [op, unused] : kv) {
      if (op == "offline") return AdminOp::kSetOffline;
      if (op == "online") return AdminOp::kSetOnline;
      if (op == "takeover") return AdminOp::kTakeover;
      if (op == "giveback") return AdminOp::kGiveback;
      if (op == "restore") return AdminOp::kRestore;
      if (op != "force") ADD_FAILURE() << "unknown admin op " << op;
    }
    ADD_FAILURE() << "admin command without an op";
    return AdminOp::kRestore;
  }

  std::string Apply(const Event& e) {
    Output out = Step(state_, e);
    std::ostringstream os;
    if (out.admin_accepted) {
      os << (*out.admin_accepted ? "accepted: " : "refused: ") << out.admin_message << "\n";
    }
    for (const auto& n : out.notes) os << "note: " << n << "\n";
    for (const auto& t : out.transitions) {
      os << StatusName(t.from) << " -> " << StatusName(t.to) << ": " << t.reason << "\n";
    }
    for (const auto& a : out.actions) {
      if (a.type == ActionType::kNotify) continue;  // mirrors the transitions above
      os << "  " << ActionName(a.type);
      if (a.sequence) os << " [seq " << a.sequence << (a.last_in_sequence ? ", last]" : "]");
      if (a.type == ActionType::kPersist || a.type == ActionType::kRunConnectivityTest) {
        os << " (" << a.detail << ")";
      }
      os << "\n";
    }
    state_ = out.state;
    os << Summary();
    return os.str();
  }

  std::string Summary() const {
    std::ostringstream os;
    Advert a = MakeAdvert(state_);
    os << "= " << StatusName(state_.status) << "/" << AdminName(a.admin) << " epoch=" << a.epoch
       << (a.handover ? " handover" : "") << (a.takeover_request ? " takeover-req" : "")
       << (a.conn_check_request ? " conncheck-req=" + std::to_string(a.conn_check_request) : "")
       << (a.conn_check_answer_id ? " answered=" + std::to_string(a.conn_check_answer_id) +
                                        (a.conn_check_answer_ok ? ":ok" : ":fail")
                                  : "")
       << " peer=" << (PeerAlive(state_) ? "up" : "down");
    // The local replica, only once a DiskState said something else than the
    // default (UpToDate), so scenarios without replication read as before.
    const DiskState& r = state_.replica;
    if (!(r == DiskState{})) {
      os << " replica=" << (r.up_to_date ? "uptodate" : "not-uptodate")
         << (r.synchronizing ? ",syncing" : "");
    }
    if (state_.promotion_forced) os << " forced";
    os << " | " << state_.reason << "\n";
    return os.str();
  }

  State state_;
};

std::vector<std::string> ScenarioFiles() {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(std::string(TANDEM_SOURCE_DIR) + "/test/scenarios")) {
    if (e.path().extension() == ".txt") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Scenarios, AllFilesMatch) {
  bool rewrite = std::getenv("TANDEM_REWRITE") != nullptr;
  auto files = ScenarioFiles();
  ASSERT_GE(files.size(), 5u) << "scenario files missing";
  for (const auto& path : files) {
    auto blocks = ReadBlocks(path);
    ASSERT_FALSE(blocks.empty()) << path;
    Runner runner;
    std::ostringstream rewritten;
    for (const auto& b : blocks) {
      std::string got = runner.Run(b.command);
      if (!rewrite) {
        EXPECT_EQ(got, b.expected) << path << ": after `" << b.command << "`";
      }
      rewritten << b.comments << b.command << "\n----\n" << got << "\n";
    }
    if (rewrite) std::ofstream(path) << rewritten.str();
  }
}

}  // namespace
}  // namespace tandem::ha
