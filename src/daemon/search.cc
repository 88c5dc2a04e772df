// The "search" control command, its worker thread and the HTTP JSON API
// (docs/SEARCH.md, "CLI and HTTP API"). Why a worker: see daemon.h.
#include <charconv>
#include <chrono>
#include <future>

#include "collect/syslog.h"
#include "daemon/daemon.h"
#include "os/fs.h"
#include "store/search.h"

namespace tandem::daemon {

using nlohmann::json;

namespace {

constexpr int64_t kUsPerS = 1000 * 1000;
constexpr int64_t kRelativeMax = 100LL * 366 * 86400;  // seconds: ±100 years
constexpr int64_t kEpochSecondsMax = 253402300799;      // 9999-12-31T23:59:59Z

json Error(const std::string& why) { return json{{"ok", false}, {"error", why}}; }

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int DaysInMonth(int64_t y, int64_t m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Reads exactly `n` digits at `pos`.
bool Digits(std::string_view s, size_t pos, size_t n, int64_t* out) {
  if (pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

std::optional<int64_t> ParseRfc3339(std::string_view s) {
  int64_t y, mo, d, h, mi, sec;
  if (!Digits(s, 0, 4, &y) || s.size() < 19 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, &h) || s[13] != ':' || !Digits(s, 14, 2, &mi) || s[16] != ':' ||
      !Digits(s, 17, 2, &sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 || mi > 59 || sec > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t frac_us = 0;
  if (pos < s.size() && s[pos] == '.') {
    size_t start = ++pos;
    int64_t scale = 100000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 6) frac_us += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int64_t oh, om;
    if (!Digits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (s[pos] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;  // RFC 3339 requires the offset
  }
  if (pos != s.size()) return std::nullopt;
  int64_t secs = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * kUsPerS + frac_us;
}

std::optional<int64_t> ParseUnsigned(std::string_view s, int64_t max) {
  int64_t v = 0;
  if (s.empty() || s.size() > 19) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max) return std::nullopt;
  return v;
}

std::optional<bool> ParseBool(std::string_view s) {
  if (s == "1" || s == "true") return true;
  if (s == "0" || s == "false") return false;
  return std::nullopt;
}

// ---- strict reading of the control request ----

// The request's fields, each checked for its type; records what was read so
// leftovers are reported as unknown.
class Fields {
 public:
  explicit Fields(const json& j) : j_(j) {}

  Status Int(const char* key, int64_t min, int64_t max, std::optional<int64_t>* out) {
    seen_.push_back(key);
    auto it = j_.find(key);
    if (it == j_.end()) return Status::Ok();
    if (!it->is_number_integer()) return Bad(key, "must be an integer");
    int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX
                    ? INT64_MAX
                    : it->get<int64_t>();
    if (v < min || v > max) {
      return Bad(key, "must be in " + std::to_string(min) + ".." + std::to_string(max) +
                          ", got " + it->dump());
    }
    *out = v;
    return Status::Ok();
  }
  Status Str(const char* key, std::optional<std::string>* out) {
    seen_.push_back(key);
    auto it = j_.find(key);
    if (it == j_.end()) return Status::Ok();
    if (!it->is_string() || it->get<std::string>().empty()) {
      return Bad(key, "must be a non-empty string");
    }
    *out = it->get<std::string>();
    return Status::Ok();
  }
  Status Bool(const char* key, bool* out) {
    seen_.push_back(key);
    auto it = j_.find(key);
    if (it == j_.end()) return Status::Ok();
    if (!it->is_boolean()) return Bad(key, "must be true or false");
    *out = it->get<bool>();
    return Status::Ok();
  }
  // Error naming the first field that was not read.
  Status NoOthers() const {
    for (const auto& [k, v] : j_.items()) {
      if (std::find(seen_.begin(), seen_.end(), k) == seen_.end()) {
        std::string known;
        for (const auto& s : seen_) known += (known.empty() ? "" : ", ") + s;
        return Status::Error("search: unknown field \"" + k + "\" (known: " + known + ")");
      }
    }
    return Status::Ok();
  }

 private:
  static Status Bad(const char* key, const std::string& what) {
    return Status::Error(std::string("search: \"") + key + "\" " + what);
  }
  const json& j_;
  std::vector<std::string> seen_;
};

struct Common {
  int64_t from_us = std::numeric_limits<int64_t>::min();
  int64_t to_us = std::numeric_limits<int64_t>::max();
  size_t limit = store::kSearchLimitDefault;
  bool newest_first = false;
  bool count_only = false;
  std::string top_field;
  size_t top_n = store::kTopNDefault;
};

Status ReadCommon(Fields& f, Common* c) {
  std::optional<int64_t> from, to, limit, top_n;
  std::optional<std::string> top, cmd, kind;
  TANDEM_RETURN_IF_ERROR(f.Str("cmd", &cmd));
  TANDEM_RETURN_IF_ERROR(f.Str("kind", &kind));
  TANDEM_RETURN_IF_ERROR(f.Int("from_us", INT64_MIN, INT64_MAX, &from));
  TANDEM_RETURN_IF_ERROR(f.Int("to_us", INT64_MIN, INT64_MAX, &to));
  TANDEM_RETURN_IF_ERROR(
      f.Int("limit", 1, static_cast<int64_t>(store::kSearchLimitMax), &limit));
  TANDEM_RETURN_IF_ERROR(f.Bool("newest_first", &c->newest_first));
  TANDEM_RETURN_IF_ERROR(f.Bool("count", &c->count_only));
  TANDEM_RETURN_IF_ERROR(f.Str("top", &top));
  TANDEM_RETURN_IF_ERROR(f.Int("top_n", 1, static_cast<int64_t>(store::kTopNMax), &top_n));
  if (from) c->from_us = *from;
  if (to) c->to_us = *to;
  if (c->from_us >= c->to_us) {
    return Status::Error("search: \"from_us\" must be before \"to_us\" (got " +
                         std::to_string(c->from_us) + " >= " + std::to_string(c->to_us) + ")");
  }
  if (limit) c->limit = static_cast<size_t>(*limit);
  if (top) c->top_field = *top;
  if (top_n) c->top_n = static_cast<size_t>(*top_n);
  return Status::Ok();
}

template <typename Q>
void Apply(const Common& c, Q* q) {
  q->from_us = c.from_us;
  q->to_us = c.to_us;
  q->limit = c.limit;
  q->newest_first = c.newest_first;
  q->count_only = c.count_only;
  q->top_field = c.top_field;
  q->top_n = c.top_n;
}

Result<store::EventQuery> ReadEventQuery(const json& req) {
  Fields f(req);
  Common c;
  TANDEM_RETURN_IF_ERROR(ReadCommon(f, &c));
  store::EventQuery q;
  std::optional<int64_t> severity;
  TANDEM_RETURN_IF_ERROR(f.Str("host", &q.host));
  TANDEM_RETURN_IF_ERROR(f.Int("severity", 0, 7, &severity));
  TANDEM_RETURN_IF_ERROR(f.Str("contains", &q.contains));
  TANDEM_RETURN_IF_ERROR(f.NoOthers());
  if (severity) q.severity_max = static_cast<int>(*severity);
  if (!c.top_field.empty() && c.top_field != "host" && c.top_field != "app" &&
      c.top_field != "severity" && c.top_field != "sender") {
    return Status::Error("search: \"top\" for events must be host, app, severity or sender, got \"" +
                         c.top_field + "\"");
  }
  Apply(c, &q);
  return q;
}

Result<store::FlowQuery> ReadFlowQuery(const json& req) {
  Fields f(req);
  Common c;
  TANDEM_RETURN_IF_ERROR(ReadCommon(f, &c));
  store::FlowQuery q;
  std::optional<int64_t> port, protocol;
  std::optional<std::string> top_by;
  TANDEM_RETURN_IF_ERROR(f.Str("src", &q.src));
  TANDEM_RETURN_IF_ERROR(f.Str("dst", &q.dst));
  TANDEM_RETURN_IF_ERROR(f.Int("port", 0, 65535, &port));
  TANDEM_RETURN_IF_ERROR(f.Int("protocol", 0, 255, &protocol));
  TANDEM_RETURN_IF_ERROR(f.Str("top_by", &top_by));
  TANDEM_RETURN_IF_ERROR(f.NoOthers());
  if (port) q.port = static_cast<uint16_t>(*port);
  if (protocol) q.protocol = static_cast<uint8_t>(*protocol);
  static const std::vector<std::string> kTop = {"src",      "dst",      "src_port",
                                                "dst_port", "protocol", "exporter"};
  if (!c.top_field.empty() && std::find(kTop.begin(), kTop.end(), c.top_field) == kTop.end()) {
    return Status::Error(
        "search: \"top\" for flows must be src, dst, src_port, dst_port, protocol or exporter, "
        "got \"" + c.top_field + "\"");
  }
  if (top_by && *top_by != "count" && *top_by != "bytes") {
    return Status::Error("search: \"top_by\" must be count or bytes, got \"" + *top_by + "\"");
  }
  q.top_by_bytes = top_by && *top_by == "bytes";
  Apply(c, &q);
  return q;
}

Status KindOf(const json& req, std::string* kind) {
  auto k = req.find("kind");
  if (k == req.end() || !k->is_string() ||
      (k->get<std::string>() != "events" && k->get<std::string>() != "flows")) {
    return Status::Error("search: \"kind\" must be \"events\" or \"flows\"");
  }
  *kind = k->get<std::string>();
  return Status::Ok();
}

Status Validate(const json& req) {
  if (!req.is_object()) return Status::Error("search: the request must be a JSON object");
  std::string kind;
  TANDEM_RETURN_IF_ERROR(KindOf(req, &kind));
  if (kind == "events") return ReadEventQuery(req).status();
  return ReadFlowQuery(req).status();
}

json RunSearch(const std::string& store_dir, const json& req) {
  std::string kind;
  Status st = KindOf(req, &kind);
  if (!st.ok()) return Error(st.message());
  Result<store::SearchResult> r = Status::Error("unreachable");
  if (kind == "events") {
    auto q = ReadEventQuery(req);
    if (!q.ok()) return Error(q.status().message());
    r = store::SearchEvents(os::RealFileSystem(), store_dir, *q);
  } else {
    auto q = ReadFlowQuery(req);
    if (!q.ok()) return Error(q.status().message());
    r = store::SearchFlows(os::RealFileSystem(), store_dir, *q);
  }
  if (!r.ok()) return Error("search failed: " + r.status().message());
  json j = store::ToJson(*r);
  j["ok"] = true;
  return j;
}

// ---- text parameters ----

Status SetTime(const std::map<std::string, std::string>& p, const char* key, const char* field,
               int64_t now_us, json* req) {
  auto it = p.find(key);
  if (it == p.end()) return Status::Ok();
  auto t = ParseSearchTime(it->second, now_us);
  if (!t.ok()) return Status::Error(std::string(key) + ": " + t.status().message());
  (*req)[field] = *t;
  return Status::Ok();
}

Status SetInt(const std::map<std::string, std::string>& p, const char* key, int64_t min,
              int64_t max, json* req) {
  auto it = p.find(key);
  if (it == p.end()) return Status::Ok();
  auto v = ParseUnsigned(it->second, max);
  if (!v || *v < min) {
    return Status::Error(std::string(key) + ": expected an integer " + std::to_string(min) + ".." +
                         std::to_string(max) + ", got \"" + it->second + "\"");
  }
  (*req)[key] = *v;
  return Status::Ok();
}

Status SetBool(const std::map<std::string, std::string>& p, const char* key, const char* field,
               json* req) {
  auto it = p.find(key);
  if (it == p.end()) return Status::Ok();
  auto v = ParseBool(it->second);
  if (!v) return Status::Error(std::string(key) + ": expected 1, 0, true or false, got \"" + it->second + "\"");
  (*req)[field] = *v;
  return Status::Ok();
}

Status SetStr(const std::map<std::string, std::string>& p, const char* key, json* req) {
  auto it = p.find(key);
  if (it == p.end()) return Status::Ok();
  if (it->second.empty()) return Status::Error(std::string(key) + ": must not be empty");
  (*req)[key] = it->second;
  return Status::Ok();
}

}  // namespace

Result<int64_t> ParseSearchTime(std::string_view text, int64_t now_us) {
  const std::string forms =
      " (expected RFC 3339 like 2026-12-02T10:00:00Z or 2026-12-02T11:00:00+01:00, epoch "
      "seconds, \"now\", or relative like -15m, -2h, -30s, -7d)";
  if (text == "now") return now_us;
  if (!text.empty() && (text[0] == '-' || text[0] == '+') && text.size() >= 3) {
    static const std::map<char, int64_t> kUnit = {
        {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
    auto unit = kUnit.find(text.back());
    auto n = ParseUnsigned(text.substr(1, text.size() - 2), kRelativeMax);
    if (unit != kUnit.end() && n && *n * unit->second <= kRelativeMax) {
      int64_t d = *n * unit->second * kUsPerS;
      return text[0] == '-' ? now_us - d : now_us + d;
    }
    return Status::Error("bad time \"" + std::string(text) + "\"" + forms);
  }
  if (auto secs = ParseUnsigned(text, kEpochSecondsMax)) return *secs * kUsPerS;
  if (auto t = ParseRfc3339(text)) return *t;
  return Status::Error("bad time \"" + std::string(text) + "\"" + forms);
}

Result<json> SearchRequestFromParams(const std::string& kind,
                                     const std::map<std::string, std::string>& params,
                                     int64_t now_us) {
  if (kind != "events" && kind != "flows") {
    return Status::Error("kind must be events or flows, got \"" + kind + "\"");
  }
  bool events = kind == "events";
  std::vector<std::string> known = {"from", "to", "limit", "newest", "count", "top", "top_n"};
  if (events) {
    known.insert(known.end(), {"host", "severity", "contains"});
  } else {
    known.insert(known.end(), {"src", "dst", "port", "protocol", "top_by"});
  }
  for (const auto& [k, v] : params) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
      return Status::Error("unknown parameter \"" + k + "\" (known for " + kind + ": " + list + ")");
    }
  }
  json req{{"cmd", "search"}, {"kind", kind}};
  TANDEM_RETURN_IF_ERROR(SetTime(params, "from", "from_us", now_us, &req));
  TANDEM_RETURN_IF_ERROR(SetTime(params, "to", "to_us", now_us, &req));
  if (req.contains("from_us") && req.contains("to_us") &&
      req["from_us"].get<int64_t>() >= req["to_us"].get<int64_t>()) {
    return Status::Error("from must be before to");
  }
  TANDEM_RETURN_IF_ERROR(SetInt(params, "limit", 1, store::kSearchLimitMax, &req));
  TANDEM_RETURN_IF_ERROR(SetInt(params, "top_n", 1, store::kTopNMax, &req));
  TANDEM_RETURN_IF_ERROR(SetBool(params, "newest", "newest_first", &req));
  TANDEM_RETURN_IF_ERROR(SetBool(params, "count", "count", &req));
  TANDEM_RETURN_IF_ERROR(SetStr(params, "top", &req));
  if (events) {
    TANDEM_RETURN_IF_ERROR(SetStr(params, "host", &req));
    TANDEM_RETURN_IF_ERROR(SetStr(params, "contains", &req));
    if (auto s = params.find("severity"); s != params.end()) {
      auto sev = collect::ParseSeverity(s->second);
      if (!sev.ok()) return Status::Error("severity: " + sev.status().message());
      req["severity"] = *sev;
    }
  } else {
    TANDEM_RETURN_IF_ERROR(SetStr(params, "src", &req));
    TANDEM_RETURN_IF_ERROR(SetStr(params, "dst", &req));
    TANDEM_RETURN_IF_ERROR(SetStr(params, "top_by", &req));
    TANDEM_RETURN_IF_ERROR(SetInt(params, "port", 0, 65535, &req));
    if (auto p = params.find("protocol"); p != params.end()) {
      static const std::map<std::string, int> kNames = {{"icmp", 1}, {"tcp", 6}, {"udp", 17}};
      auto name = kNames.find(p->second);
      if (name != kNames.end()) {
        req["protocol"] = name->second;
      } else {
        TANDEM_RETURN_IF_ERROR(SetInt(params, "protocol", 0, 255, &req));
      }
    }
  }
  TANDEM_RETURN_IF_ERROR(Validate(req));
  return req;
}

// ---- SearchWorker ----

SearchWorker::SearchWorker(std::string store_dir) : store_dir_(std::move(store_dir)) {
  thread_ = std::thread([this] { Work(); });
}

SearchWorker::~SearchWorker() {
  std::deque<Job> left;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    left.swap(jobs_);
  }
  cv_.notify_all();
  for (auto& j : left) j.done(Error("shutting down"));
  thread_.join();
}

bool SearchWorker::Submit(const json& request, Done done) {
  Status st = ValidateRequest(request);
  if (!st.ok()) {
    done(Error(st.message()));
    return true;
  }
  if (store_dir_.empty()) {
    done(Error("this host has no store: no [replication] store_dir in its configuration"));
    return true;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      done(Error("shutting down"));
      return true;
    }
    if (jobs_.size() >= kSearchQueueMax) return false;
    jobs_.push_back(Job{request, std::move(done)});
  }
  cv_.notify_one();
  return true;
}

Status SearchWorker::ValidateRequest(const json& request) { return Validate(request); }

void SearchWorker::Work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    json response;
    try {
      response = RunSearch(store_dir_, job.request);
    } catch (const std::exception& e) {
      response = Error(std::string("search failed: ") + e.what());
    }
    job.done(std::move(response));
  }
}

// ---- the daemon's side ----

Status Daemon::StartSearch() {
  search_ = std::make_unique<SearchWorker>(cfg_.replication ? cfg_.store_dir : std::string());
  control_->SetAsync("search", [this](const json& req, api::Reply reply) {
    HandleSearch(req, std::move(reply));
  });
  if (cfg_.http_listen.empty()) return Status::Ok();
  if (cfg_.api_token.size() < api::kHttpTokenBytesMin) {
    return Status::Error(cfg_.path + ": api.token_file: the token must be at least " +
                         std::to_string(api::kHttpTokenBytesMin) + " bytes");
  }
  http_ = std::make_unique<api::HttpServer>(
      cfg_.api_token, [this](const api::HttpRequest& r) { return HandleHttp(r); });
  TANDEM_RETURN_IF_ERROR(http_->Start(cfg_.http_listen.host, cfg_.http_listen.port));
  log_->info("HTTP API on {}", cfg_.http_listen.ToString());
  return Status::Ok();
}

// Loop thread: hands the search to the worker; the reply comes back through
// the loop (Post), never from the worker thread.
void Daemon::HandleSearch(const json& req, api::Reply reply) {
  os::EventLoop* loop = &loop_;
  bool queued = search_->Submit(req, [loop, reply](json response) {
    loop->Post([reply, r = std::move(response)] { reply(r); });
  });
  if (!queued) {
    reply(Error("busy: " + std::to_string(kSearchQueueMax) +
                " searches are already waiting; try again later"));
  }
}

// HTTP threads.
api::HttpResponse Daemon::HandleHttp(const api::HttpRequest& req) {
  if (req.path == "/api/v1/status") {
    if (!req.params.empty()) return api::HttpError(400, "status takes no parameters");
    auto status = RunOnLoop<json>(loop_, [this] { return StatusJson(); });
    if (!status) return api::HttpError(503, "the daemon did not answer in time");
    return api::HttpResponse{200, std::move(*status)};
  }
  static const std::string kPrefix = "/api/v1/search/";
  if (req.path.rfind(kPrefix, 0) != 0 ||
      (req.path != kPrefix + "events" && req.path != kPrefix + "flows")) {
    return api::HttpError(404, "no such path: " + req.path +
                                   " (known: /api/v1/status, /api/v1/search/events, "
                                   "/api/v1/search/flows)");
  }
  int64_t now_us = loop_.clock().WallMs() * 1000;
  auto request = SearchRequestFromParams(req.path.substr(kPrefix.size()), req.params, now_us);
  if (!request.ok()) return api::HttpError(400, request.status().message());
  auto p = std::make_shared<std::promise<json>>();
  std::future<json> f = p->get_future();
  if (!search_->Submit(*request, [p](json r) { p->set_value(std::move(r)); })) {
    return api::HttpError(503, "busy: too many searches waiting; try again later");
  }
  if (f.wait_for(std::chrono::milliseconds(kHttpSearchTimeoutMs)) != std::future_status::ready) {
    return api::HttpError(504, "the search did not finish in time");
  }
  json r = f.get();
  if (!r.value("ok", false)) return api::HttpResponse{500, r};
  r.erase("ok");
  return api::HttpResponse{200, r};
}

}  // namespace tandem::daemon
