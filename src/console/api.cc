#include "console/api.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "console/api_internal.h"
#include "console/json_body.h"
#include "os/files.h"

namespace tandem::console {

using nlohmann::json;

// Helpers shared with the other api_*.cc files (console/api_internal.h).
namespace api_internal {

constexpr size_t kEchoBytesMax = 80;      // user text quoted in messages
constexpr size_t kAuditFieldBytesMax = 200;
constexpr int64_t kAuditPageDefault = 100;
constexpr std::string_view kBearer = "Bearer ";

std::string CodeOf(int status) {
  switch (status) {
    case 400: return "invalid_argument";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 415: return "unsupported_media_type";
    case 429: return "too_many_requests";
    case 502: return "unreachable";
    case 503: return "unavailable";
    default: return "internal";
  }
}

ApiResponse Fail(int status, const std::string& message, const std::string& field) {
  return ApiError(status, CodeOf(status), message, field);
}

// User text made safe for one line of a log or an audit row: control bytes
// escaped, cut at `max` bytes (on a UTF-8 boundary) with "...".
std::string Printable(std::string_view s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (i >= max && (c & 0xC0) != 0x80) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7F || c == '\\') {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string Quote(std::string_view s) { return "\"" + Printable(s, kEchoBytesMax) + "\""; }

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool IsValidUserName(std::string_view s) {
  if (s.empty() || s.size() > kUserNameLenMax) return false;
  for (char c : s) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

bool IsHexToken(std::string_view s) {
  if (s.size() != 2 * kTokenBytes) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string TypeName(const json& v) { return JsonTypeName(v); }

// The JSON body of a call that takes one: a JSON object of known fields,
// no key given twice (console/json_body.h).
Error ParseBody(const ApiRequest& r, std::initializer_list<std::string_view> known, json* out,
                size_t max_bytes) {
  if (auto e = ParseJsonBody(r.content_type, r.body, known, max_bytes, Quote, out)) {
    return Fail(e->status, e->message, e->field);
  }
  return std::nullopt;
}

Error GetString(const json& body, const std::string& key, std::string* out) {
  if (auto e = GetJsonString(body, key, out)) return Fail(e->status, e->message, e->field);
  return std::nullopt;
}

Error CheckUserName(const std::string& name, const std::string& field) {
  if (!IsValidUserName(name)) {
    return Fail(400, "must be 1 to " + std::to_string(kUserNameLenMax) +
                         " characters from A-Z a-z 0-9 _ . -, got " + Quote(name),
                field);
  }
  return std::nullopt;
}

// The password's length only: a password is never echoed.
Error CheckPasswordLength(const std::string& password, size_t min) {
  if (password.size() < min || password.size() > kPasswordLenMax) {
    return Fail(400, "must be " + std::to_string(min) + " to " + std::to_string(kPasswordLenMax) +
                         " bytes long, got " + std::to_string(password.size()),
                "password");
  }
  return std::nullopt;
}

// Query parameters: each at most once, all known.
Error CheckParams(const ApiRequest& r, std::initializer_list<std::string_view> known,
                  std::map<std::string, std::string>* out) {
  for (const auto& [k, v] : r.params) {
    bool found = false;
    for (std::string_view name : known) found = found || k == name;
    if (!found) return Fail(400, "unknown query parameter", k);
    if (!out->emplace(k, v).second) return Fail(400, "query parameter given more than once", k);
  }
  return std::nullopt;
}

Error ParamInt(const std::map<std::string, std::string>& params, const std::string& key,
               int64_t lo, int64_t hi, int64_t* out) {
  auto it = params.find(key);
  if (it == params.end()) return std::nullopt;
  const std::string& s = it->second;
  int64_t v = 0;
  bool ok = !s.empty() && s.size() <= 18;
  for (char c : s) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) v = v * 10 + (c - '0');
  }
  if (!ok || v < lo || v > hi) {
    return Fail(400, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                         ", got " + Quote(s),
                key);
  }
  *out = v;
  return std::nullopt;
}

Error PageParams(const std::map<std::string, std::string>& params, int64_t limit_default,
                 int64_t limit_max, int64_t* limit, int64_t* before) {
  *limit = limit_default;
  *before = INT64_MAX;
  if (Error e = ParamInt(params, "limit", 1, limit_max, limit)) return e;
  return ParamInt(params, "before", 1, INT64_MAX / 16, before);
}

Error ListRows(Stmt& s, const std::function<json(const Stmt&)>& entry, json* entries) {
  for (;;) {
    auto row = s.Step();
    if (!row.ok()) return Internal(row.status());
    if (!*row) return std::nullopt;
    entries->push_back(entry(s));
  }
}

ApiResponse Internal(const Status& st) { return Fail(500, "database: " + st.message()); }

// Whether `path` matches the route `pattern`, segment by segment; a
// "{name}" segment of the pattern matches any one non-empty segment, which
// goes to *name.
bool MatchRoute(std::string_view pattern, std::string_view path, std::string* name) {
  std::string captured;
  for (;;) {
    const size_t pe = pattern.find('/', 1), xe = path.find('/', 1);
    const std::string_view ps = pattern.substr(0, pe), xs = path.substr(0, xe);
    if (ps == "/{name}") {
      if (xs.size() < 2) return false;
      captured = std::string(xs.substr(1));
    } else if (ps != xs) {
      return false;
    }
    if (pe == std::string_view::npos || xe == std::string_view::npos) {
      if (pe != xe) return false;
      *name = std::move(captured);
      return true;
    }
    pattern = pattern.substr(pe);
    path = path.substr(xe);
  }
}

}  // namespace api_internal

using namespace api_internal;

ApiResponse ApiError(int status, const std::string& code, const std::string& message,
                     const std::string& field) {
  return ApiResponse{
      status, json{{"error",
                    {{"code", code},
                     {"message", message},
                     {"field", field.empty() ? json(nullptr) : json(field)}}}}};
}

std::string Rfc3339Ms(int64_t wall_ms) {
  time_t secs = static_cast<time_t>(wall_ms / 1000);
  int64_t ms = wall_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

Api::Api(Db& db, ApiOptions options) : db_(db), options_(std::move(options)) {
  TANDEM_CHECK(options_.clock != nullptr);
  TANDEM_CHECK(options_.session_ttl_s > 0);
  auto dummy = HashPassword("not a password: equalizes the time of a login", options_.kdf);
  TANDEM_CHECK(dummy.ok());
  dummy_hash_ = *dummy;
}

ApiResponse Api::Handle(const ApiRequest& r) {
  Audit audit;
  audit.remote = Printable(r.remote, 64);
  audit.action = Printable(r.method, 16) + " " + Printable(r.path, kAuditFieldBytesMax);
  ApiResponse resp;
  bool audited = false;
  try {
    resp = Route(r, &audit);
    // A success wrote its row in the transaction of its change.
    audited = !audit.result.empty() && resp.status < 400;
  } catch (const std::exception& e) {
    resp = Fail(500, std::string("internal error: ") + e.what());
  }
  if (resp.body.is_null()) resp.body = json::object();
  const bool changes = r.method != "GET" && r.method != "HEAD";
  if (changes && !audited) {
    audit.status = resp.status;
    if (resp.status < 400) {
      audit.result = "ok";
    } else {
      const json& e = resp.body.contains("error") ? resp.body["error"] : json::object();
      audit.result = e.value("code", "error") + ": " + e.value("message", "");
      if (e.contains("field") && e["field"].is_string()) {
        audit.result += " (field " + e["field"].get<std::string>() + ")";
      }
    }
    WriteAudit(audit);
  }
  {
    std::lock_guard<std::mutex> l(counters_mu_);
    ++counters_.requests;
    if (resp.status >= 500) ++counters_.errors;
    else if (resp.status >= 400) ++counters_.refused;
    else if (changes) ++counters_.changes;
    if (r.method == "POST" && r.path == "/api/v1/sessions") {
      if (resp.status == 201) ++counters_.logins;
      if (resp.status == 401) ++counters_.login_failures;
      if (resp.status == 429) ++counters_.login_throttled;
    }
  }
  return resp;
}

ApiCounters Api::counters() const {
  std::lock_guard<std::mutex> l(counters_mu_);
  return counters_;
}

std::string Api::MetricsText() const {
  const ApiCounters c = counters();
  std::string out;
  auto add = [&out](const char* name, const char* help, uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
           " " + std::to_string(v) + "\n";
  };
  add("tandem_console_requests_total", "API requests answered", c.requests);
  add("tandem_console_refused_total", "API requests answered 4xx", c.refused);
  add("tandem_console_errors_total", "API requests answered 5xx", c.errors);
  add("tandem_console_changes_total", "state-changing API calls accepted", c.changes);
  add("tandem_console_logins_total", "sessions opened", c.logins);
  add("tandem_console_login_failures_total", "logins refused: wrong user name or password",
      c.login_failures);
  add("tandem_console_login_throttled_total",
      "logins refused unchecked: too many failures for the user or the address", c.login_throttled);
  return out;
}

ApiResponse Api::Route(const ApiRequest& r, Audit* audit) {
  const std::string& p = r.path;
  const std::string& m = r.method;
  if (p == "/api/v1/sessions" && m == "POST") return Login(r, audit);
  Caller c;
  ApiResponse denied = Authenticate(r, &c);
  if (denied.status != 200) {
    audit->user = c.user.empty() ? "-" : c.user;  // known for an expired session
    return denied;
  }
  audit->user = c.user;

  struct RouteDef {
    const char* path;     // a "{name}" segment matches any one non-empty segment
    const char* methods;  // allowed, for 405
  };
  static constexpr RouteDef kRoutes[] = {{"/api/v1/sessions", "POST"},
                                         {"/api/v1/sessions/current", "GET, DELETE"},
                                         {"/api/v1/users", "GET, POST"},
                                         {"/api/v1/audit", "GET"},
                                         {"/api/v1/hosts", "GET, POST"},
                                         {"/api/v1/hosts/{name}", "GET, DELETE"},
                                         {"/api/v1/hosts/{name}/actions", "POST"},
                                         {"/api/v1/status", "GET"},
                                         {"/api/v1/history", "GET"},
                                         {"/api/v1/clusters", "GET, POST"},
                                         {"/api/v1/clusters/{name}", "GET, PATCH"},
                                         {"/api/v1/clusters/{name}/secondary", "DELETE"},
                                         {"/api/v1/clusters/{name}/upgrade", "POST"},
                                         {"/api/v1/clusters/{name}/replace", "POST"},
                                         {"/api/v1/licenses", "GET, POST"},
                                         {"/api/v1/licenses/{name}", "GET, DELETE"},
                                         {"/api/v1/settings", "GET"},
                                         {"/api/v1/settings/{name}", "PUT"},
                                         {"/api/v1/backup", "POST"},
                                         {"/api/v1/restore", "POST"},
                                         {"/api/v1/deploy", "GET, POST"}};
  const RouteDef* route = nullptr;
  std::string name;  // the {name} segment of the matched route, if it has one
  for (const RouteDef& d : kRoutes) {
    if (MatchRoute(d.path, p, &name)) {
      route = &d;
      break;
    }
  }
  if (route == nullptr) return Fail(404, "no such resource: " + Quote(p));
  // Dispatch on the route's pattern (rp), not the raw path.
  const std::string_view rp = route->path;
  const bool takes_body = m == "POST" || m == "PATCH" || m == "PUT";
  if (!takes_body && !r.body.empty()) return Fail(400, "this call takes no body");
  if (m != "GET") {
    for (const auto& [k, v] : r.params) return Fail(400, "this call takes no query parameters", k);
  }
  const bool admin = c.role == "admin";
  auto admin_only = [&] {
    return Fail(403, "user " + Quote(c.user) + " (role " + c.role + ") may not do this; it needs role admin");
  };
  if (rp == "/api/v1/backup" && m == "POST") return admin ? Backup(r, audit) : admin_only();
  if (rp == "/api/v1/restore" && m == "POST") return admin ? Restore(r, audit) : admin_only();
  if (rp == "/api/v1/deploy") {
    if (m == "GET") {
      std::map<std::string, std::string> params;
      if (Error e = CheckParams(r, {}, &params)) return *e;
      return DeployStatus();
    }
    if (m == "POST") return admin ? Deploy(r, audit) : admin_only();
  }
  if (p == "/api/v1/sessions/current") {
    if (m == "GET") {
      std::map<std::string, std::string> params;
      if (Error e = CheckParams(r, {}, &params)) return *e;
      return CurrentSession(c);
    }
    if (m == "DELETE") return Logout(c, audit);
  } else if (p == "/api/v1/users") {
    if (m == "GET") {
      std::map<std::string, std::string> params;
      if (Error e = CheckParams(r, {}, &params)) return *e;
      return admin ? ListUsers() : admin_only();
    }
    if (m == "POST") return admin ? CreateUser(r, c, audit) : admin_only();
  } else if (p == "/api/v1/audit" && m == "GET") {
    return admin ? ListAudit(r) : admin_only();
  } else if (rp == "/api/v1/hosts") {
    if (m == "GET") {
      std::map<std::string, std::string> params;
      if (Error e = CheckParams(r, {}, &params)) return *e;
      return ListHosts();
    }
    if (m == "POST") return admin ? AddHost(r, audit) : admin_only();
  } else if (rp == "/api/v1/hosts/{name}") {
    if (m == "GET") {
      std::map<std::string, std::string> params;
      if (Error e = CheckParams(r, {}, &params)) return *e;
      return GetHost(name);
    }
    if (m == "DELETE") return admin ? DeleteHost(name, audit) : admin_only();
  } else if (rp == "/api/v1/hosts/{name}/actions" && m == "POST") {
    return admin ? HostAction(name, r, c.user, audit) : admin_only();
  } else if (rp == "/api/v1/status" && m == "GET") {
    std::map<std::string, std::string> params;
    if (Error e = CheckParams(r, {}, &params)) return *e;
    return DeploymentStatus();
  } else if (rp == "/api/v1/history" && m == "GET") {
    return ListHistory(r);
  } else if (rp == "/api/v1/clusters/{name}/upgrade") {
    if (m == "POST") return admin ? UpgradeCluster(name, audit) : admin_only();
  } else if (rp.starts_with("/api/v1/clusters") || rp.starts_with("/api/v1/licenses") ||
             rp.starts_with("/api/v1/settings")) {
    if (auto answer = RouteClusters(r, rp, name, c, audit)) return *answer;
  }
  return Fail(405, "method " + Quote(m) + " is not allowed here; allowed: " + route->methods);
}

ApiResponse Api::Authenticate(const ApiRequest& r, Caller* c) {
  if (r.authorization.empty()) {
    return Fail(401, "missing Authorization: Bearer <token> (log in with POST /api/v1/sessions)");
  }
  std::string_view auth = r.authorization;
  if (auth.substr(0, kBearer.size()) != kBearer || !IsHexToken(auth.substr(kBearer.size()))) {
    return Fail(401, "invalid token");
  }
  // Looked up by its SHA-256: the time this takes says nothing useful about
  // the token (no secret-dependent comparison on the token itself).
  c->token_sha256 = Sha256Hex(auth.substr(kBearer.size()));
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare(
      "SELECT s.user_id, s.expires_at_ms, u.name, u.role FROM sessions s "
      "JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = ?1");
  if (!s.ok()) return Internal(s.status());
  s->Bind(1, c->token_sha256);
  auto row = s->Step();
  if (!row.ok()) return Internal(row.status());
  if (!*row) return Fail(401, "invalid token");
  c->user_id = s->Int(0);
  c->expires_at_ms = s->Int(1);
  c->user = s->Text(2);
  c->role = s->Text(3);
  if (c->expires_at_ms <= NowMs()) {
    return Fail(401, "session expired at " + Rfc3339Ms(c->expires_at_ms) + "; log in again");
  }
  return ApiResponse{200, json()};
}

ApiResponse Api::Login(const ApiRequest& r, Audit* audit) {
  json body;
  if (!r.params.empty()) return Fail(400, "this call takes no query parameters", r.params.begin()->first);
  if (Error e = ParseBody(r, {"user", "password"}, &body)) return *e;
  std::string user, password;
  if (Error e = GetString(body, "user", &user)) return *e;
  if (Error e = CheckUserName(user, "user")) return *e;
  if (Error e = GetString(body, "password", &password)) return *e;
  if (Error e = CheckPasswordLength(password, 1)) return *e;
  audit->target = "session";
  // Throttled before anything is looked up or hashed: a locked-out guesser
  // learns nothing and costs nothing.
  const std::string user_key = "user:" + user, addr_key = "addr:" + r.remote;
  const int64_t tried_at = NowMs();
  const int64_t wait_ms = std::max(login_user_throttle_.RetryAfterMs(user_key, tried_at),
                                   login_addr_throttle_.RetryAfterMs(addr_key, tried_at));
  if (wait_ms > 0) {
    return Fail(429, "too many failed logins for this user or from this address; try again in " +
                         std::to_string((wait_ms + 999) / 1000) + " s");
  }
  auto failed = [&] {
    login_user_throttle_.Failed(user_key, tried_at);
    login_addr_throttle_.Failed(addr_key, tried_at);
    return Fail(401, "wrong user name or password");
  };
  int64_t user_id = 0;
  std::string role, hash;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto s = db_.Prepare("SELECT id, role, password_hash FROM users WHERE name = ?1");
    if (!s.ok()) return Internal(s.status());
    s->Bind(1, user);
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (*row) {
      user_id = s->Int(0);
      role = s->Text(1);
      hash = s->Text(2);
    }
  }
  // Only a user that exists is named in the audit: a password typed into
  // the user field must not end up there.
  if (user_id != 0) audit->user = user;
  auto match = VerifyPassword(password, user_id != 0 ? hash : dummy_hash_);
  if (!match.ok()) {
    Log(2, "console: login of " + Quote(user) + ": stored password hash unusable: " + match.status().message());
    return failed();
  }
  if (!*match || user_id == 0) return failed();
  login_user_throttle_.Succeeded(user_key);

  auto token = RandomHex(kTokenBytes);
  if (!token.ok()) return Fail(500, token.status().message());
  const int64_t now = NowMs();
  const int64_t expires = now + options_.session_ttl_s * 1000;
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  // Housekeeping with the change: expired sessions go, and a user keeps at
  // most kSessionsPerUserMax (the oldest end).
  auto gc = db_.Prepare("DELETE FROM sessions WHERE expires_at_ms <= ?1");
  if (!gc.ok()) return Internal(gc.status());
  if (st = gc->Bind(1, now).Run(); !st.ok()) return Internal(st);
  auto cap = db_.Prepare(
      "DELETE FROM sessions WHERE token_sha256 IN (SELECT token_sha256 FROM sessions "
      "WHERE user_id = ?1 ORDER BY created_at_ms DESC LIMIT -1 OFFSET ?2)");
  if (!cap.ok()) return Internal(cap.status());
  if (st = cap->Bind(1, user_id).Bind(2, kSessionsPerUserMax - 1).Run(); !st.ok()) return Internal(st);
  auto ins = db_.Prepare(
      "INSERT INTO sessions (token_sha256, user_id, created_at_ms, expires_at_ms) "
      "VALUES (?1, ?2, ?3, ?4)");
  if (!ins.ok()) return Internal(ins.status());
  if (st = ins->Bind(1, Sha256Hex(*token)).Bind(2, user_id).Bind(3, now).Bind(4, expires).Run();
      !st.ok()) {
    return Internal(st);
  }
  audit->result = "ok";
  audit->status = 201;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{201, json{{"token", *token},
                               {"user", user},
                               {"role", role},
                               {"expires_at", Rfc3339Ms(expires)},
                               {"expires_at_ms", expires}}};
}

ApiResponse Api::Logout(const Caller& c, Audit* audit) {
  audit->target = "session";
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto del = db_.Prepare("DELETE FROM sessions WHERE token_sha256 = ?1");
  if (!del.ok()) return Internal(del.status());
  if (st = del->Bind(1, c.token_sha256).Run(); !st.ok()) return Internal(st);
  audit->result = "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"logged_out", true}}};
}

ApiResponse Api::CurrentSession(const Caller& c) {
  return ApiResponse{200, json{{"user", c.user},
                               {"role", c.role},
                               {"expires_at", Rfc3339Ms(c.expires_at_ms)},
                               {"expires_at_ms", c.expires_at_ms}}};
}

ApiResponse Api::ListUsers() {
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare("SELECT name, role, created_at_ms FROM users ORDER BY name");
  if (!s.ok()) return Internal(s.status());
  json users = json::array();
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (!*row) break;
    users.push_back(
        {{"name", s->Text(0)}, {"role", s->Text(1)}, {"created_at", Rfc3339Ms(s->Int(2))}});
  }
  return ApiResponse{200, json{{"users", users}}};
}

ApiResponse Api::CreateUser(const ApiRequest& r, const Caller&, Audit* audit) {
  json body;
  if (Error e = ParseBody(r, {"name", "password", "role"}, &body)) return *e;
  std::string name, password, role;
  if (Error e = GetString(body, "name", &name)) return *e;
  if (Error e = CheckUserName(name, "name")) return *e;
  audit->target = "user " + name;
  if (Error e = GetString(body, "password", &password)) return *e;
  if (Error e = CheckPasswordLength(password, kPasswordLenMin)) return *e;
  if (Error e = GetString(body, "role", &role)) return *e;
  if (role != "admin" && role != "viewer") {
    return Fail(400, "must be \"admin\" or \"viewer\", got " + Quote(role), "role");
  }
  auto exists = [&]() -> Result<bool> {
    auto s = db_.Prepare("SELECT 1 FROM users WHERE name = ?1");
    if (!s.ok()) return s.status();
    s->Bind(1, name);
    return s->Step();
  };
  {
    std::lock_guard<std::mutex> l(db_.mu());
    auto e = exists();
    if (!e.ok()) return Internal(e.status());
    if (*e) return Fail(409, "user " + Quote(name) + " already exists", "name");
  }
  auto hash = HashPassword(password, options_.kdf);  // slow: outside the lock
  if (!hash.ok()) return Fail(500, hash.status().message());
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto e = exists();  // again: another call may have created it meanwhile
  if (!e.ok()) return Internal(e.status());
  if (*e) return Fail(409, "user " + Quote(name) + " already exists", "name");
  auto ins = db_.Prepare(
      "INSERT INTO users (name, role, password_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)");
  if (!ins.ok()) return Internal(ins.status());
  if (st = ins->Bind(1, name).Bind(2, role).Bind(3, *hash).Bind(4, now).Run(); !st.ok()) {
    return Internal(st);
  }
  audit->result = "ok";
  audit->status = 201;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{201, json{{"user", {{"name", name}, {"role", role}, {"created_at", Rfc3339Ms(now)}}}}};
}

ApiResponse Api::ListAudit(const ApiRequest& r) {
  std::map<std::string, std::string> params;
  if (Error e = CheckParams(r, {"limit", "before"}, &params)) return *e;
  int64_t limit = 0, before = 0;
  if (Error e = PageParams(params, kAuditPageDefault, kAuditPageMax, &limit, &before)) return *e;
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare(
      "SELECT id, at_ms, user, remote, action, target, result, status FROM audit "
      "WHERE id < ?1 ORDER BY id DESC LIMIT ?2");
  if (!s.ok()) return Internal(s.status());
  s->Bind(1, before).Bind(2, limit);
  json entries = json::array();
  Error e = ListRows(
      *s,
      [](const Stmt& q) {
        return json{{"id", q.Int(0)},
                    {"at", Rfc3339Ms(q.Int(1))},
                    {"user", q.Text(2)},
                    {"remote", q.Text(3)},
                    {"action", q.Text(4)},
                    {"target", q.Text(5)},
                    {"result", q.Text(6)},
                    {"status", q.Int(7)}};
      },
      &entries);
  if (e) return *e;
  return ApiResponse{200, json{{"entries", entries}}};
}

// ListHosts and the other hosts calls: console/api_hosts.cc.

Status Api::InsertAudit(const Audit& a) {
  auto ins = db_.Prepare(
      "INSERT INTO audit (at_ms, user, remote, action, target, result, status) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!ins.ok()) return ins.status();
  std::string result = Printable(a.result, 2 * kAuditFieldBytesMax);
  TANDEM_RETURN_IF_ERROR(ins->Bind(1, NowMs())
                             .Bind(2, a.user)
                             .Bind(3, a.remote)
                             .Bind(4, a.action)
                             .Bind(5, Printable(a.target, kAuditFieldBytesMax))
                             .Bind(6, result)
                             .Bind(7, int64_t{a.status})
                             .Run());
  auto trim = db_.Prepare("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1");
  if (!trim.ok()) return trim.status();
  TANDEM_RETURN_IF_ERROR(trim->Bind(1, kAuditRowsMax).Run());
  Log(a.status < 400 ? 1 : 2, "console: audit: user=" + a.user + " remote=" + a.remote +
                                  " action=" + a.action + " target=" +
                                  Printable(a.target, kAuditFieldBytesMax) + " result=" + result);
  return Status::Ok();
}

void Api::WriteAudit(const Audit& a) {
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (st.ok()) st = InsertAudit(a);
  if (st.ok()) st = t.Commit();
  if (!st.ok()) Log(2, "console: audit: cannot record " + a.action + ": " + st.message());
}

Status EnsureInitialAdmin(Db& db, const std::string& password_file, const ScryptParams& kdf,
                          int64_t now_ms, bool* created) {
  *created = false;
  std::lock_guard<std::mutex> l(db.mu());
  auto users = db.Count("users");
  if (!users.ok()) return users.status();
  if (*users > 0) return Status::Ok();
  auto password = RandomPassword(kInitialPasswordChars);
  if (!password.ok()) return password.status();
  auto hash = HashPassword(*password, kdf);
  if (!hash.ok()) return hash.status();
  Transaction t(db);
  TANDEM_RETURN_IF_ERROR(t.Begin());
  auto ins = db.Prepare(
      "INSERT INTO users (name, role, password_hash, created_at_ms) VALUES (?1, 'admin', ?2, ?3)");
  if (!ins.ok()) return ins.status();
  TANDEM_RETURN_IF_ERROR(ins->Bind(1, std::string_view(kInitialAdmin)).Bind(2, *hash).Bind(3, now_ms).Run());
  // The file first: a committed admin whose password nobody has would lock
  // the console; a file whose user was never committed is rewritten by the
  // next start.
  TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(password_file, *password + "\n", 0600));
  Status st = t.Commit();
  if (!st.ok()) {
    ::unlink(password_file.c_str());
    return st;
  }
  *created = true;
  return Status::Ok();
}

Status EnsureConsoleHost(Db& db, const std::string& name, const std::string& address,
                         int64_t now_ms) {
  std::lock_guard<std::mutex> l(db.mu());
  auto s = db.Prepare(
      "INSERT INTO hosts (name, role, address, added_at_ms) VALUES (?1, 'console', ?2, ?3) "
      "ON CONFLICT (name) DO UPDATE SET address = excluded.address WHERE role = 'console'");
  if (!s.ok()) return s.status();
  return s->Bind(1, name).Bind(2, address).Bind(3, now_ms).Run();
}

}  // namespace tandem::console
