#include "daemon/agent.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "api/http.h"
#include "config/config.h"
#include "console/https_server.h"
#include "console/json_body.h"
#include "console/password.h"
#include "console/tls.h"
#include "os/files.h"

namespace tandem::daemon {

using console::ApiError;
using console::ApiRequest;
using console::ApiResponse;
using console::JsonTypeName;
using nlohmann::json;

namespace {

constexpr size_t kTransportBodyBytesMax = std::max(4 * kAgentBodyBytesMax, kAgentPackageBodyBytesMax);
constexpr size_t kSmallFileBytesMax = 64 * 1024;
constexpr int64_t kPollSliceMs = 200;  // stop flag checked at least this often
constexpr size_t kStreamChunkBytes = 256 * 1024;
constexpr size_t kNonceBytes = 32;  // 64 hex characters
constexpr std::string_view kBearer = "Bearer ";
constexpr std::string_view kPrefix = "/api/v1/agent/";

using Error = std::optional<ApiResponse>;

std::string CodeOf(int status) {
  switch (status) {
    case 400: return "invalid_argument";
    case 401: return "unauthenticated";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 415: return "unsupported_media_type";
    case 429: return "too_many_requests";
    case 502: return "measurement_failed";
    default: return "internal";
  }
}

ApiResponse Fail(int status, const std::string& message, const std::string& field = "") {
  return ApiError(status, CodeOf(status), message, field);
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool IsValidName(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), IsNameChar);
}

// User text for a message: printable ASCII only, at most 80 bytes.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') ? static_cast<char>(c) : '?';
  }
  return out + (s.size() > 80 ? "...\"" : "\"");
}

// The JSON object body of a POST: known fields only, none twice
// (console/json_body.h).
Error ParseBody(const ApiRequest& r, std::initializer_list<std::string_view> known, json* out) {
  if (auto e = console::ParseJsonBody(r.content_type, r.body, known, kAgentBodyBytesMax, Quote,
                                      out)) {
    return Fail(e->status, e->message, e->field);
  }
  return std::nullopt;
}

Error GetString(const json& body, const std::string& key, std::string* out) {
  if (auto e = console::GetJsonString(body, key, out)) return Fail(e->status, e->message, e->field);
  return std::nullopt;
}

// An integer field in [lo, hi]; absent and !required leaves *out alone.
Error GetInt(const json& body, const std::string& key, bool required, int64_t lo, int64_t hi,
             int64_t* out) {
  auto it = body.find(key);
  if (it == body.end()) {
    return required ? Error(Fail(400, "required field is missing", key)) : std::nullopt;
  }
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!it->is_number_integer()) {
    return Fail(400, "must be " + range + ", got " + JsonTypeName(*it), key);
  }
  const bool neg = it->is_number_integer() && !it->is_number_unsigned() && it->get<int64_t>() < 0;
  if (neg || (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) ||
      it->get<int64_t>() < lo || it->get<int64_t>() > hi) {
    return Fail(400, "must be " + range + ", got " + it->dump(), key);
  }
  *out = it->get<int64_t>();
  return std::nullopt;
}

// ---- sockets ----

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// Waits for `events` on fd until deadline (SteadyMs) or *stop.
Status WaitFd(int fd, short events, int64_t deadline, const std::atomic<bool>* stop) {
  for (;;) {
    if (stop != nullptr && stop->load()) return Status::Error("stopping");
    const int64_t left = deadline - SteadyMs();
    if (left <= 0) return Status::Error("timed out");
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min(left, kPollSliceMs)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error("poll: " + ErrnoText(errno));
    if (n > 0) return Status::Ok();
  }
}

// Reads exactly n bytes. Error "closed" on EOF before that.
Status ReadFull(int fd, char* buf, size_t n, int64_t deadline, const std::atomic<bool>* stop) {
  size_t got = 0;
  while (got < n) {
    TANDEM_RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline, stop));
    const ssize_t r = ::recv(fd, buf + got, n - got, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r < 0) return Status::Error("recv: " + ErrnoText(errno));
    if (r == 0) return Status::Error("closed");
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status WriteFull(int fd, const char* buf, size_t n, int64_t deadline,
                 const std::atomic<bool>* stop) {
  size_t sent = 0;
  while (sent < n) {
    TANDEM_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline, stop));
    const ssize_t w = ::send(fd, buf + sent, n - sent, MSG_NOSIGNAL);
    if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (w < 0) return Status::Error("send: " + ErrnoText(errno));
    sent += static_cast<size_t>(w);
  }
  return Status::Ok();
}

// ---- interfaces ----

struct Interface {
  std::string name;
  std::vector<std::string> addresses;  // "a.b.c.d/n"
  std::vector<std::string> ips;        // "a.b.c.d"
  bool up = false;
  bool loopback = false;
};

int PrefixLength(const sockaddr* mask) {
  if (mask == nullptr || mask->sa_family != AF_INET) return 32;
  uint32_t m = ntohl(reinterpret_cast<const sockaddr_in*>(mask)->sin_addr.s_addr);
  int n = 0;
  while (n < 32 && (m & (0x80000000u >> n)) != 0) ++n;
  return n;
}

std::vector<Interface> ListInterfaces() {
  std::map<std::string, Interface> by_name;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_name == nullptr) continue;
    Interface& i = by_name[a->ifa_name];
    i.name = a->ifa_name;
    i.up = i.up || (a->ifa_flags & IFF_UP) != 0;
    i.loopback = i.loopback || (a->ifa_flags & IFF_LOOPBACK) != 0;
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if (::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) == nullptr) continue;
    i.ips.push_back(text);
    i.addresses.push_back(std::string(text) + "/" + std::to_string(PrefixLength(a->ifa_netmask)));
  }
  ::freeifaddrs(list);
  std::vector<Interface> out;
  for (auto& [name, i] : by_name) out.push_back(std::move(i));
  return out;
}

bool IsPhysical(const std::string& name) {
  if (name.find('/') != std::string::npos || name == "." || name == "..") return false;
  struct stat st {};
  return ::stat(("/sys/class/net/" + name + "/device").c_str(), &st) == 0;
}

const Interface* Holding(const std::vector<Interface>& all, const std::string& ip) {
  for (const Interface& i : all) {
    if (std::find(i.ips.begin(), i.ips.end(), ip) != i.ips.end()) return &i;
  }
  return nullptr;
}

// Dotted integers ("1", "1.2.10"), each 1..9 digits.
bool IsDottedVersion(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  size_t digits = 0;
  for (char c : v) {
    if (c == '.') {
      if (digits == 0) return false;
      digits = 0;
    } else if (c >= '0' && c <= '9') {
      if (++digits > 9) return false;
    } else {
      return false;
    }
  }
  return digits > 0;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}


}  // namespace

// ---- state directory ----

std::string AgentCertFile(const std::string& state_dir) { return state_dir + "/tls/cert.pem"; }
std::string AgentKeyFile(const std::string& state_dir) { return state_dir + "/tls/key.pem"; }
std::string PairingTokenFile(const std::string& state_dir) {
  return state_dir + "/pairing.token";
}
std::string PairedFile(const std::string& state_dir) { return state_dir + "/paired.json"; }

Status EnsureAgentCertificate(const std::string& state_dir, const std::string& host_name,
                              const std::string& listen_host, bool* generated) {
  if (generated != nullptr) *generated = false;
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(state_dir, 0700));
  ::chmod(state_dir.c_str(), 0700);
  const std::string cert = AgentCertFile(state_dir), key = AgentKeyFile(state_dir);
  if (Exists(cert) && Exists(key)) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(os::MakeDirs(state_dir + "/tls", 0700));
  std::vector<std::string> ips{listen_host == "0.0.0.0" ? std::string("127.0.0.1") : listen_host};
  for (const Interface& i : ListInterfaces()) {
    for (const std::string& ip : i.ips) {
      if (std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(ip);
    }
  }
  std::vector<std::string> dns{host_name};
  if (host_name != "localhost") dns.push_back("localhost");
  TANDEM_RETURN_IF_ERROR(
      console::GenerateSelfSigned(cert, key, host_name, ips, dns).Prefix("agent: "));
  if (generated != nullptr) *generated = true;
  return Status::Ok();
}

Result<std::optional<Pairing>> ReadPairing(const std::string& state_dir) {
  const std::string path = PairedFile(state_dir);
  if (!Exists(path)) return std::optional<Pairing>();
  auto text = os::ReadFile(path, kSmallFileBytesMax);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  Pairing p;
  if (!j.is_object() || !j.contains("console") || !j["console"].is_string() ||
      !j.contains("key_sha256") || !j["key_sha256"].is_string() ||
      !IsLowerHex(j["key_sha256"].get<std::string>(), 64)) {
    return Status::Error(path + ": malformed (expected {\"console\", \"key_sha256\", "
                                "\"paired_at_ms\"}); remove it with tandemd unpair");
  }
  p.console = j["console"].get<std::string>();
  p.key_sha256 = j["key_sha256"].get<std::string>();
  if (j.contains("paired_at_ms") && j["paired_at_ms"].is_number_integer()) {
    p.paired_at_ms = j["paired_at_ms"].get<int64_t>();
  }
  return std::optional<Pairing>(std::move(p));
}

Result<std::string> PairingString(const std::string& state_dir, const std::string& host_name,
                                  const std::string& listen_host) {
  auto paired = ReadPairing(state_dir);
  if (!paired.ok()) return paired.status();
  if (paired->has_value()) {
    return Status::Error("already paired with console " + (*paired)->console +
                         " (tandemd unpair removes the pairing)");
  }
  TANDEM_RETURN_IF_ERROR(EnsureAgentCertificate(state_dir, host_name, listen_host));
  const std::string file = PairingTokenFile(state_dir);
  std::string token;
  if (Exists(file)) {
    auto text = os::ReadFile(file, kSmallFileBytesMax);
    if (!text.ok()) return text.status();
    token = Trimmed(*text);
  }
  if (!IsLowerHex(token, 2 * kPairingTokenBytes)) {
    auto fresh = console::RandomHex(kPairingTokenBytes);
    if (!fresh.ok()) return fresh.status();
    token = *fresh;
    TANDEM_RETURN_IF_ERROR(os::WriteFileAtomic(file, token + "\n", 0600));
  }
  auto fp = console::CertSha256Hex(AgentCertFile(state_dir));
  if (!fp.ok()) return fp.status();
  return "tp1." + token + "." + *fp;
}

Result<std::string> Unpair(const std::string& state_dir) {
  auto paired = ReadPairing(state_dir);
  std::string console = paired.ok() && paired->has_value() ? (*paired)->console : "";
  const std::string path = PairedFile(state_dir);
  if (!Exists(path)) return std::string();
  if (::unlink(path.c_str()) != 0) {
    return Status::Error(path + ": cannot remove: " + ErrnoText(errno));
  }
  // The removal is durable before we say so.
  Fd dir(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) (void)::fsync(dir.get());
  return console.empty() ? std::string("(unreadable pairing record)") : console;
}

json StorageJson(const std::string& dir) {
  if (dir.empty()) return nullptr;
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return nullptr;
  const auto frsize = static_cast<uint64_t>(st.f_frsize);
  return json{{"dir", dir},
              {"bytes_total", static_cast<uint64_t>(st.f_blocks) * frsize},
              {"bytes_free", static_cast<uint64_t>(st.f_bavail) * frsize}};
}

std::string PackageManifestProblem(const json& j) {
  if (!j.is_object()) return "not a JSON object";
  if (j.size() != 3 || !j.contains("name") || !j.contains("version") || !j.contains("kind")) {
    return "expected exactly the fields name, version and kind";
  }
  if (!j["name"].is_string() || !IsValidName(j["name"].get<std::string>(), 128) ||
      j["name"].get<std::string>()[0] == '.') {
    return "name must be 1 to 128 characters from A-Z a-z 0-9 _ . -, not starting with '.'";
  }
  if (!j["version"].is_string() || !IsDottedVersion(j["version"].get<std::string>())) {
    return "version must be dotted integers (\"1.2.3\")";
  }
  if (!j["kind"].is_string() || (j["kind"] != "parser" && j["kind"] != "protocol")) {
    return "kind must be \"parser\" or \"protocol\"";
  }
  return "";
}

json ReadPackages(const std::string& dir, std::vector<std::string>* warnings) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0 && n[0] != '.') {
        names.push_back(std::move(n));
      }
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  if (names.size() > kPackagesMax) {
    warnings->push_back(dir + ": more than " + std::to_string(kPackagesMax) +
                        " package manifests; only the first are read");
    names.resize(kPackagesMax);
  }
  std::map<std::string, json> by_name;
  for (const std::string& n : names) {
    const std::string path = dir + "/" + n;
    auto text = os::ReadFile(path, kPackageManifestBytesMax);
    if (!text.ok()) {
      warnings->push_back("package manifest skipped: " + text.status().message());
      continue;
    }
    json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    std::string why = PackageManifestProblem(j);
    if (why.empty() && by_name.count(j["name"].get<std::string>()) != 0) {
      why = "another manifest already names package " + j["name"].get<std::string>();
    }
    if (!why.empty()) {
      warnings->push_back("package manifest " + path + " skipped: " + why);
      continue;
    }
    by_name[j["name"].get<std::string>()] = json{
        {"name", j["name"]}, {"version", j["version"]}, {"kind", j["kind"]}};
  }
  json out = json::array();
  for (auto& [name, p] : by_name) out.push_back(std::move(p));
  return out;
}

namespace {

json InterfacesJsonOf(const std::vector<Interface>& all) {
  json out = json::array();
  for (const Interface& i : all) {
    out.push_back(json{{"name", i.name},
                       {"addresses", i.addresses},
                       {"physical", IsPhysical(i.name)},
                       {"up", i.up}});
  }
  return out;
}

}  // namespace

json InterfacesJson() { return InterfacesJsonOf(ListInterfaces()); }

// ---- the agent ----

struct Agent::Listener {
  Fd sock;
  std::string nonce;
  int64_t bytes = 0;
  int64_t deadline = 0;  // SteadyMs
  std::thread thread;
  std::atomic<bool> done{false};
};

Agent::Agent(AgentOptions options) : options_(std::move(options)) {}

Agent::~Agent() { Stop(); }

Status Agent::Start() {
  if (server_) return Status::Error("agent already started");
  const AgentOptions& o = options_;
  TANDEM_CHECK(!o.state_dir.empty() && o.clock != nullptr);
  stopping_ = false;
  bool generated = false;
  TANDEM_RETURN_IF_ERROR(
      EnsureAgentCertificate(o.state_dir, o.host_name, o.listen_host, &generated));
  if (generated) {
    auto fp = console::CertFingerprint(cert_file());
    Log(1, "agent: generated a self-signed TLS certificate " + cert_file() +
               (fp.ok() ? " (SHA-256 " + *fp + ")" : std::string()));
  }
  console::HttpsServerOptions https;
  https.name = "agent";
  https.cert = cert_file();
  https.key = AgentKeyFile(o.state_dir);
  https.host = o.listen_host;
  https.port = o.listen_port;
  https.threads = kAgentThreads;
  https.queue_max = kAgentQueueMax;
  https.timeout_s = kAgentReadTimeoutS;
  https.keep_alive_s = kAgentKeepAliveS;
  https.transport_body_max = kTransportBodyBytesMax;
  auto on_error = [this](const ApiRequest&, int status) {
    {
      std::lock_guard<std::mutex> l(counters_mu_);
      ++counters_.requests;
      ++(status >= 500 ? counters_.errors : counters_.refused);
    }
    return ApiError(status, CodeOf(status),
                    "request refused by the HTTP layer (status " + std::to_string(status) + ")");
  };
  auto server = console::HttpsServer::Start(
      https, [this](const ApiRequest& r) { return Handle(r); }, on_error);
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
  auto paired = ReadPairing(o.state_dir);
  std::string state = !paired.ok()        ? paired.status().message()
                      : paired->has_value() ? "paired with console " + (*paired)->console
                                            : "not paired (tandemd pair-token prints a pairing "
                                              "string)";
  Log(1, "agent: serving /api/v1/agent on " + url() + "; " + state);
  return Status::Ok();
}

uint16_t Agent::port() const { return server_ ? static_cast<uint16_t>(server_->port()) : 0; }

std::string Agent::url() const {
  return "https://" + options_.listen_host + ":" + std::to_string(port());
}

void Agent::Stop() {
  stopping_ = true;
  if (server_) {
    server_->Stop();
    server_.reset();
  }
  ReapListeners(/*all=*/true);
}

AgentCounters Agent::counters() const {
  std::lock_guard<std::mutex> l(counters_mu_);
  return counters_;
}

std::string Agent::MetricsText() const {
  const AgentCounters c = counters();
  std::ostringstream os;
  os << "tandem_agent_requests_total " << c.requests << "\n"
     << "tandem_agent_refused_total " << c.refused << "\n"
     << "tandem_agent_errors_total " << c.errors << "\n"
     << "tandem_agent_pairings_total " << c.pairings << "\n"
     << "tandem_agent_pair_failures_total " << c.pair_failures << "\n"
     << "tandem_agent_measure_listens_total " << c.measure_listens << "\n"
     << "tandem_agent_measure_runs_total " << c.measure_runs << "\n"
     << "tandem_agent_measure_bytes_received_total " << c.measure_bytes_received << "\n";
  return os.str();
}

ApiResponse Agent::Handle(const ApiRequest& r) {
  ApiResponse a;
  try {
    a = Route(r);
  } catch (const std::exception& e) {
    a = Fail(500, std::string("internal error: ") + e.what());
  }
  std::lock_guard<std::mutex> l(counters_mu_);
  ++counters_.requests;
  if (a.status >= 500) {
    ++counters_.errors;
  } else if (a.status >= 400) {
    ++counters_.refused;
  }
  return a;
}

ApiResponse Agent::Route(const ApiRequest& r) {
  const std::string_view path = r.path;
  if (path.substr(0, kPrefix.size()) != kPrefix) return Fail(404, "no such resource");
  const std::string_view what = path.substr(kPrefix.size());
  if (what == "packages" || what.starts_with("packages/")) return Packages(r, what);
  if (what == "config") return Config(r);
  struct Route {
    std::string_view name, method;
    bool keyed;
  };
  static constexpr Route kRoutes[] = {{"certificate", "GET", false},
                                      {"pair", "POST", false},
                                      {"facts", "GET", true},
                                      {"measure/listen", "POST", true},
                                      {"measure/run", "POST", true},
                                      {"ha", "POST", true},
                                      {"factory-reset", "POST", true}};
  const Route* route = nullptr;
  for (const Route& k : kRoutes) {
    if (k.name == what) route = &k;
  }
  if (route == nullptr) return Fail(404, "no such resource");
  if (route->keyed) {
    if (auto e = CheckKey(r)) return *e;
  }
  if (r.method != route->method) {
    return Fail(405, "use " + std::string(route->method) + " for " + r.path);
  }
  if (!r.params.empty()) return Fail(400, "unknown query parameter", r.params.begin()->first);
  if (r.method != "POST" && !r.body.empty()) return Fail(400, "this call takes no body");
  if (what == "certificate") {
    auto pem = os::ReadFile(cert_file(), kSmallFileBytesMax);
    if (!pem.ok()) return Fail(500, pem.status().message());
    return ApiResponse{200, json{{"pem", *pem}}};
  }
  if (what == "pair") return Pair(r);
  if (what == "facts") return ApiResponse{200, Facts()};
  if (what == "measure/listen") return MeasureListen(r);
  if (what == "ha") return HaCommand(r);
  if (what == "factory-reset") return FactoryReset(r);
  return MeasureRun(r);
}

std::optional<ApiResponse> Agent::CheckKey(const ApiRequest& r) {
  const std::string_view auth = r.authorization;
  if (auth.substr(0, kBearer.size()) != kBearer ||
      !IsLowerHex(auth.substr(kBearer.size()), 2 * kAgentKeyBytes)) {
    return Fail(401, "this call needs Authorization: Bearer <agent key>");
  }
  auto paired = ReadPairing(options_.state_dir);
  if (!paired.ok()) return Fail(500, paired.status().message());
  if (!paired->has_value()) return Fail(401, "this host is not paired");
  const std::string presented = console::Sha256Hex(auth.substr(kBearer.size()));
  if (!api::TokenEquals(presented, (*paired)->key_sha256)) {
    return Fail(401, "wrong agent key");
  }
  return std::nullopt;
}

ApiResponse Agent::Pair(const ApiRequest& r) {
  json body;
  if (Error e = ParseBody(r, {"token", "console"}, &body)) return *e;
  std::string token, console_name;
  if (Error e = GetString(body, "token", &token)) return *e;
  if (!IsLowerHex(token, 2 * kPairingTokenBytes)) {
    // The token is never echoed, not even a wrong one.
    return Fail(400,
                "must be the pairing token: " + std::to_string(2 * kPairingTokenBytes) +
                    " lowercase hex characters (got " + std::to_string(token.size()) +
                    " characters)",
                "token");
  }
  if (Error e = GetString(body, "console", &console_name)) return *e;
  if (!IsValidName(console_name, kConsoleNameLenMax)) {
    return Fail(400,
                "must be 1 to " + std::to_string(kConsoleNameLenMax) +
                    " characters from A-Z a-z 0-9 _ . -, got " + Quote(console_name),
                "console");
  }
  const std::string dir = options_.state_dir;
  std::string key;
  {
    std::lock_guard<std::mutex> l(pair_mu_);
    const int64_t now = options_.clock->NowMs();
    while (!pair_failures_ms_.empty() && now - pair_failures_ms_.front() >= kPairFailureWindowMs) {
      pair_failures_ms_.pop_front();
    }
    if (pair_failures_ms_.size() >= static_cast<size_t>(kPairFailuresMax)) {
      const int64_t wait_s =
          (pair_failures_ms_.front() + kPairFailureWindowMs - now + 999) / 1000;
      Log(2, "agent: pairing refused (rate limit) from " + r.remote);
      return Fail(429, std::to_string(kPairFailuresMax) + " wrong pairing tokens within " +
                           std::to_string(kPairFailureWindowMs / 1000) + " s; try again in " +
                           std::to_string(wait_s) + " s");
    }
    auto paired = ReadPairing(dir);
    if (!paired.ok()) return Fail(500, paired.status().message());
    if (paired->has_value()) {
      return Fail(409, "this host is already paired with console " + (*paired)->console);
    }
    std::string expected;
    if (Exists(PairingTokenFile(dir))) {
      auto text = os::ReadFile(PairingTokenFile(dir), kSmallFileBytesMax);
      if (!text.ok()) return Fail(500, text.status().message());
      expected = Trimmed(*text);
    }
    if (expected.empty() || !api::TokenEquals(token, expected)) {
      pair_failures_ms_.push_back(now);
      {
        std::lock_guard<std::mutex> c(counters_mu_);
        ++counters_.pair_failures;
      }
      Log(2, "agent: pairing refused from " + r.remote + " (console " + console_name + "): " +
                 (expected.empty() ? "no pairing token issued" : "wrong token"));
      return Fail(401, expected.empty() ? "no pairing token has been issued on this host "
                                          "(run tandemd pair-token there)"
                                        : "wrong pairing token");
    }
    auto fresh = console::RandomHex(kAgentKeyBytes);
    if (!fresh.ok()) return Fail(500, fresh.status().message());
    key = *fresh;
    json record{{"console", console_name},
                {"key_sha256", console::Sha256Hex(key)},
                {"paired_at_ms", options_.clock->WallMs()}};
    Status st = os::WriteFileAtomic(PairedFile(dir), record.dump() + "\n", 0600);
    if (!st.ok()) return Fail(500, "cannot record the pairing: " + st.message());
    if (::unlink(PairingTokenFile(dir).c_str()) != 0 && errno != ENOENT) {
      Log(2, "agent: cannot remove " + PairingTokenFile(dir) + ": " + ErrnoText(errno) +
                 " (it no longer pairs: the host is paired)");
    }
    {
      std::lock_guard<std::mutex> c(counters_mu_);
      ++counters_.pairings;
    }
    Log(1, "agent: paired with console " + console_name + " (from " + r.remote + ")");
  }
  // The key is answered this once; only its SHA-256 is kept.
  return ApiResponse{201, json{{"key", key}, {"facts", Facts()}}};
}

namespace {

// The revision of deployed.json for the facts (null: none, or unreadable).
json DeployedRevisionOf(const std::string& state_dir) {
  auto d = ReadDeployedConfig(state_dir);
  if (!d.ok() || !d->has_value()) return nullptr;
  return (**d)["revision"];
}

}  // namespace

json Agent::Facts() const {
  const AgentOptions& o = options_;
  std::vector<std::string> warnings;
  json packages = ReadPackages(o.packages_dir, &warnings);
  for (const std::string& w : warnings) Log(2, "agent: " + w);
  const std::vector<Interface> all = ListInterfaces();
  json interfaces = InterfacesJsonOf(all);
  const Interface* mgmt = nullptr;
  if (!o.host_interface.empty()) {
    for (const Interface& i : all) {
      if (i.name == o.host_interface) mgmt = &i;
    }
  } else if (o.listen_host != "0.0.0.0") {
    mgmt = Holding(all, o.listen_host);
  } else if (!o.heartbeat_host.empty() && Holding(all, o.heartbeat_host) != nullptr) {
    mgmt = Holding(all, o.heartbeat_host);
  } else {
    for (const Interface& i : all) {
      if (!i.loopback && !i.ips.empty() && mgmt == nullptr) mgmt = &i;
    }
  }
  json management = o.host_interface.empty() ? (mgmt ? json(mgmt->name) : json(nullptr))
                                             : json(o.host_interface);
  json address = nullptr;
  if (o.listen_host != "0.0.0.0") {
    address = o.listen_host;
  } else if (mgmt != nullptr && !mgmt->ips.empty()) {
    address = mgmt->ips.front();
  }
  json ha = o.ha_status ? o.ha_status() : json(nullptr);
  return json{{"name", o.host_name},
              {"version", TANDEM_VERSION},
              {"packages", std::move(packages)},
              {"interfaces", std::move(interfaces)},
              {"management_interface", std::move(management)},
              {"address", std::move(address)},
              {"store", StorageJson(o.store_dir)},
              {"transient", StorageJson(o.transient_dir)},
              {"external_storage", o.external_storage},
              {"virtual", o.virtual_appliance},
              {"cluster", o.cluster.is_object() ? o.cluster : json(nullptr)},
              {"ha", std::move(ha)},
              {"deployed_revision", DeployedRevisionOf(o.state_dir)},
              {"ha_ports", {{"heartbeat", o.heartbeat_port}, {"replication", o.replication_port}}},
              {"deploy_error", o.deploy_error.empty() ? json(nullptr) : json(o.deploy_error)}};
}

// ---- HA commands (docs/CONSOLE.md, "Host actions") ----

ApiResponse Agent::HaCommand(const ApiRequest& r) {
  static constexpr std::string_view kCommands[] = {"takeover", "giveback", "offline", "online",
                                                   "restore",  "verify",   "connect"};
  json body;
  if (Error e = ParseBody(r, {"cmd", "force"}, &body)) return *e;
  std::string cmd;
  if (Error e = GetString(body, "cmd", &cmd)) return *e;
  if (std::find(std::begin(kCommands), std::end(kCommands), cmd) == std::end(kCommands)) {
    return Fail(400,
                "must be one of takeover, giveback, offline, online, restore, verify, connect; "
                "got " + Quote(cmd),
                "cmd");
  }
  json request{{"cmd", cmd}};
  if (auto f = body.find("force"); f != body.end()) {
    if (!f->is_boolean()) return Fail(400, "must be true or false, got " + JsonTypeName(*f), "force");
    if (cmd != "takeover") return Fail(400, "only takeover takes force", "force");
    request["force"] = f->get<bool>();
  }
  if (!options_.ha_command) {
    return ApiError(409, "not_clustered",
                    "host " + options_.host_name + " is not in an HA cluster (agent only): " + cmd +
                        " does not apply");
  }
  auto reply = options_.ha_command(request);
  if (!reply.ok()) {
    Log(2, "agent: ha " + cmd + ": " + reply.status().message());
    return ApiError(503, "unavailable",
                    "the daemon did not answer " + cmd + ": " + reply.status().message());
  }
  if (!reply->is_object() || !reply->value("ok", false)) {
    const json err = reply->is_object() ? reply->value("error", json()) : json();
    const std::string why = err.is_string() ? err.get<std::string>() : "refused";
    Log(1, "agent: ha " + cmd + " refused: " + why);
    return ApiError(409, "refused", why);
  }
  Log(1, "agent: ha " + cmd + " accepted (from the console at " + r.remote + ")");
  return ApiResponse{200, *reply};
}

// ---- factory reset (docs/CONSOLE.md, "Host actions") ----

namespace {

// Removes `path` (a file or a directory tree) when it exists and appends it
// to *removed. "" : nothing to do.
Status RemovePath(const std::string& path, json* removed) {
  if (path.empty()) return Status::Ok();
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::Error(path + ": " + ErrnoText(errno));
  }
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Status::Error(path + ": cannot remove: " + ec.message());
  removed->push_back(path);
  return Status::Ok();
}

}  // namespace

ApiResponse Agent::FactoryReset(const ApiRequest& r) {
  json body;
  if (Error e = ParseBody(r, {"confirm"}, &body)) return *e;
  std::string confirm;
  if (Error e = GetString(body, "confirm", &confirm)) return *e;
  const AgentOptions& o = options_;
  if (o.ha_command || o.cluster.is_object()) {
    const std::string cluster = o.cluster.is_object() ? " of cluster " + o.cluster.value("name", "?") : "";
    return ApiError(409, "clustered",
                    "host " + o.host_name + " runs an HA role" + cluster +
                        ": only an unclustered managed host is factory reset; a deploy that "
                        "leaves it in no cluster comes first");
  }
  if (confirm != o.host_name) {
    return ApiError(400, "wrong_host",
                    "this host is " + Quote(o.host_name) + ", not " + Quote(confirm) +
                        ": nothing was reset",
                    "confirm");
  }
  const std::string& dir = o.state_dir;
  // No deploy and no pairing while the state goes.
  std::lock_guard<std::mutex> cl(config_mu_);
  std::lock_guard<std::mutex> pl(pair_mu_);
  json removed = json::array();
  // The pairing goes last: until then the console can call again.
  for (const std::string& path :
       {DeployedConfigFile(dir), ClusterKeyFile(dir), o.ha_state_file, o.replica_dir}) {
    if (Status st = RemovePath(path, &removed); !st.ok()) {
      Log(3, "agent: factory reset: " + st.message() + " (removed so far: " + removed.dump() + ")");
      return Fail(500, "factory reset incomplete: " + st.message() + "; removed so far: " +
                           removed.dump() + "; the host is still paired");
    }
  }
  auto console_name = Unpair(dir);
  if (!console_name.ok()) {
    Log(3, "agent: factory reset: " + console_name.status().message());
    return Fail(500, "factory reset incomplete: " + console_name.status().message() +
                         "; removed so far: " + removed.dump() + "; the host is still paired");
  }
  if (!console_name->empty()) removed.push_back(PairedFile(dir));
  // A fresh pairing token: `tandemd pair-token` prints the new pairing
  // string (it makes one itself if this fails).
  auto token = console::RandomHex(kPairingTokenBytes);
  Status st = token.ok() ? os::WriteFileAtomic(PairingTokenFile(dir), *token + "\n", 0600) : token.status();
  if (!st.ok()) Log(3, "agent: factory reset: cannot write a fresh pairing token: " + st.message());
  {
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.get() >= 0) (void)::fsync(d.get());
  }
  std::string list;
  for (const json& p : removed) list += (list.empty() ? "" : ", ") + p.get<std::string>();
  Log(2, "agent: factory reset by console " + *console_name + " (from " + r.remote + "): removed " +
             (list.empty() ? "nothing" : list) +
             "; the store and the content packages are kept; not paired now (tandemd pair-token "
             "prints a new pairing string)");
  return ApiResponse{200, json{{"reset", true}, {"removed", std::move(removed)}}};
}

// ---- measurement (R-CL-4) ----
//
// On the wire, after the runner connects: the nonce (64 hex characters);
// kMeasurePings times one byte each way; the runner's bytes, then it shuts
// its side down; the listener answers the count it received (8 bytes, big
// endian) and closes. The listener closes at once on a wrong nonce and
// counts at most the bytes it was asked to listen for.

ApiResponse Agent::MeasureListen(const ApiRequest& r) {
  json body;
  if (Error e = ParseBody(r, {"bytes"}, &body)) return *e;
  int64_t bytes = kMeasureBytesDefault;
  if (Error e = GetInt(body, "bytes", false, kMeasureBytesMin, kMeasureBytesMax, &bytes)) {
    return *e;
  }
  ReapListeners(/*all=*/false);
  if (stopping_) return Fail(500, "the agent is stopping");
  auto nonce = console::RandomHex(kNonceBytes);
  if (!nonce.ok()) return Fail(500, nonce.status().message());
  auto l = std::make_unique<Listener>();
  l->nonce = *nonce;
  l->bytes = bytes;
  l->sock.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (l->sock.get() < 0) return Fail(500, "socket: " + ErrnoText(errno));
  int yes = 1;
  (void)setsockopt(l->sock.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, options_.listen_host.c_str(), &sa.sin_addr);
  socklen_t len = sizeof sa;
  if (::bind(l->sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(l->sock.get(), 1) != 0 ||
      ::getsockname(l->sock.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return Fail(500, "cannot listen on " + options_.listen_host + ": " + ErrnoText(errno));
  }
  const int port = ntohs(sa.sin_port);
  l->deadline = SteadyMs() + kMeasureTimeoutMs;
  {
    std::lock_guard<std::mutex> g(listeners_mu_);
    if (listeners_.size() >= kMeasureListenersMax) {
      return Fail(429, std::to_string(kMeasureListenersMax) +
                           " measurement listeners are already open; try again later");
    }
    Listener* raw = l.get();
    listeners_.push_back(std::move(l));
    raw->thread = std::thread([this, raw] { RunListener(raw); });
  }
  {
    std::lock_guard<std::mutex> c(counters_mu_);
    ++counters_.measure_listens;
  }
  Log(0, "agent: measurement listener on port " + std::to_string(port) + " for " +
             std::to_string(bytes) + " bytes");
  return ApiResponse{201, json{{"port", port}, {"nonce", *nonce}}};
}

void Agent::RunListener(Listener* l) {
  const int64_t deadline = l->deadline;
  std::string outcome;
  uint64_t count = 0;
  Fd conn;
  if (Status st = WaitFd(l->sock.get(), POLLIN, deadline, &stopping_); !st.ok()) {
    outcome = "no connection (" + st.message() + ")";
  } else {
    conn.reset(::accept4(l->sock.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    l->sock.reset();  // one-shot
    if (conn.get() < 0) outcome = "accept: " + ErrnoText(errno);
  }
  if (outcome.empty()) {
    std::string nonce(2 * kNonceBytes, '\0');
    Status st = ReadFull(conn.get(), nonce.data(), nonce.size(), deadline, &stopping_);
    if (!st.ok() || !api::TokenEquals(nonce, l->nonce)) {
      outcome = st.ok() ? "wrong nonce" : "no nonce (" + st.message() + ")";
    }
  }
  for (int i = 0; outcome.empty() && i < kMeasurePings; ++i) {
    char b = 0;
    Status st = ReadFull(conn.get(), &b, 1, deadline, &stopping_);
    if (st.ok()) st = WriteFull(conn.get(), &b, 1, deadline, &stopping_);
    if (!st.ok()) outcome = "ping " + std::to_string(i + 1) + ": " + st.message();
  }
  if (outcome.empty()) {
    std::vector<char> buf(kStreamChunkBytes);
    const auto want = static_cast<uint64_t>(l->bytes);
    while (count < want) {
      Status st = WaitFd(conn.get(), POLLIN, deadline, &stopping_);
      if (!st.ok()) {
        outcome = "stream: " + st.message();
        break;
      }
      const ssize_t n = ::recv(conn.get(), buf.data(),
                               static_cast<size_t>(std::min<uint64_t>(buf.size(), want - count)), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n <= 0) break;  // the runner is done (or gone): acknowledge what came
      count += static_cast<uint64_t>(n);
    }
    {
      std::lock_guard<std::mutex> c(counters_mu_);
      counters_.measure_bytes_received += count;
    }
    if (outcome.empty()) {
      unsigned char ack[8];
      for (int i = 0; i < 8; ++i) ack[i] = static_cast<unsigned char>(count >> (56 - 8 * i));
      Status st = WriteFull(conn.get(), reinterpret_cast<const char*>(ack), sizeof ack, deadline,
                            &stopping_);
      outcome = st.ok() ? "counted " + std::to_string(count) + " bytes" : "ack: " + st.message();
    }
  }
  Log(outcome.rfind("counted", 0) == 0 ? 0 : 2, "agent: measurement listener: " + outcome);
  l->sock.reset();
  l->done = true;
}

void Agent::ReapListeners(bool all) {
  std::list<std::unique_ptr<Listener>> finished;
  {
    std::lock_guard<std::mutex> g(listeners_mu_);
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      if (all || (*it)->done) {
        finished.push_back(std::move(*it));
        it = listeners_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& l : finished) {
    if (l->thread.joinable()) l->thread.join();
  }
}

ApiResponse Agent::MeasureRun(const ApiRequest& r) {
  json body;
  if (Error e = ParseBody(r, {"address", "port", "nonce", "bytes"}, &body)) return *e;
  std::string address, nonce;
  int64_t port = 0, bytes = kMeasureBytesDefault;
  if (Error e = GetString(body, "address", &address)) return *e;
  if (!config::ParseIPv4(address)) {
    return Fail(400, "must be a dotted-quad IPv4 address, got " + Quote(address), "address");
  }
  if (Error e = GetInt(body, "port", true, 1, 65535, &port)) return *e;
  if (Error e = GetString(body, "nonce", &nonce)) return *e;
  if (!IsLowerHex(nonce, 2 * kNonceBytes)) {
    return Fail(400, "must be the " + std::to_string(2 * kNonceBytes) +
                         " lowercase hex characters measure/listen answered",
                "nonce");
  }
  if (Error e = GetInt(body, "bytes", false, kMeasureBytesMin, kMeasureBytesMax, &bytes)) {
    return *e;
  }
  std::unique_lock<std::mutex> running(run_mu_, std::try_to_lock);
  if (!running.owns_lock()) return Fail(429, "a measurement is already running on this host");
  {
    std::lock_guard<std::mutex> c(counters_mu_);
    ++counters_.measure_runs;
  }
  const std::string target = address + ":" + std::to_string(port);
  auto failed = [&](const std::string& why) {
    Log(2, "agent: measurement against " + target + " failed: " + why);
    return Fail(502, "measurement against " + target + " failed: " + why);
  };
  const int64_t deadline = SteadyMs() + kMeasureTimeoutMs;
  Fd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.get() < 0) return failed("socket: " + ErrnoText(errno));
  int one = 1;
  (void)setsockopt(sock.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 &&
      errno != EINPROGRESS) {
    return failed("connect: " + ErrnoText(errno));
  }
  if (Status st = WaitFd(sock.get(), POLLOUT, deadline, &stopping_); !st.ok()) {
    return failed("connect: " + st.message());
  }
  int err = 0;
  socklen_t len = sizeof err;
  (void)getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return failed("connect: " + ErrnoText(err));
  if (Status st = WriteFull(sock.get(), nonce.data(), nonce.size(), deadline, &stopping_);
      !st.ok()) {
    return failed("nonce: " + st.message());
  }
  std::vector<double> rtts;
  for (int i = 0; i < kMeasurePings; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    char b = static_cast<char>('0' + i);
    Status st = WriteFull(sock.get(), &b, 1, deadline, &stopping_);
    char echo = 0;
    if (st.ok()) st = ReadFull(sock.get(), &echo, 1, deadline, &stopping_);
    if (!st.ok()) {
      return failed("ping " + std::to_string(i + 1) + ": " + st.message() +
                    (st.message() == "closed" ? " (wrong nonce, or the listener expired)" : ""));
    }
    if (echo != b) return failed("ping " + std::to_string(i + 1) + ": wrong echo");
    rtts.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rtts.begin(), rtts.end());
  const double rtt_ms = (rtts[kMeasurePings / 2 - 1] + rtts[kMeasurePings / 2]) / 2;
  const auto t_start = std::chrono::steady_clock::now();
  std::vector<char> chunk(kStreamChunkBytes, 'x');
  uint64_t sent = 0;
  const auto want = static_cast<uint64_t>(bytes);
  while (sent < want) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), want - sent));
    Status st = WriteFull(sock.get(), chunk.data(), n, deadline, &stopping_);
    if (!st.ok()) return failed("stream after " + std::to_string(sent) + " bytes: " + st.message());
    sent += n;
  }
  (void)::shutdown(sock.get(), SHUT_WR);
  unsigned char ack[8];
  if (Status st = ReadFull(sock.get(), reinterpret_cast<char*>(ack), sizeof ack, deadline,
                           &stopping_);
      !st.ok()) {
    return failed("acknowledgement: " + st.message());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  uint64_t counted = 0;
  for (unsigned char c : ack) counted = (counted << 8) | c;
  if (counted != sent) {
    return failed("the listener counted " + std::to_string(counted) + " of " +
                  std::to_string(sent) + " bytes");
  }
  const double mbps = seconds > 0 ? static_cast<double>(counted) * 8 / seconds / 1e6 : 0.0;
  Log(1, "agent: measured the link to " + target + ": rtt " + std::to_string(rtt_ms) + " ms, " +
             std::to_string(mbps) + " Mbit/s (" + std::to_string(counted) + " bytes)");
  return ApiResponse{200, json{{"rtt_ms", rtt_ms}, {"mbps", mbps}, {"bytes", counted}}};
}

// ---- content packages (R-UP-1, R-UP-2; docs/formats/packages.md) ----

namespace {

std::string PackageBase64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Strict base64 (RFC 4648 alphabet, padded, no whitespace); nullopt when
// `in` is not that.
std::optional<std::string> PackageUnbase64(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    const bool pad_ok = c == '=' && i + 2 >= in.size() && (i + 1 == in.size() || in[i + 1] == '=');
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
          c == '/' || pad_ok)) {
      return std::nullopt;
    }
  }
  if (in.empty()) return std::string();
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes.
  size_t len = static_cast<size_t>(n);
  if (in.back() == '=') --len;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

std::string PackageManifestFile(const std::string& dir, const std::string& name) {
  return dir + "/" + name + ".json";
}
std::string PackagePayloadFile(const std::string& dir, const std::string& name) {
  return dir + "/" + name + ".pkg";
}

// The payload of package `name`: nullopt when it has none. Error: present
// but unreadable or over kPackagePayloadBytesMax.
Result<std::optional<std::string>> ReadPayload(const std::string& dir, const std::string& name) {
  const std::string path = PackagePayloadFile(dir, name);
  if (!Exists(path)) return std::optional<std::string>();
  auto bytes = os::ReadFile(path, kPackagePayloadBytesMax);
  if (!bytes.ok()) return bytes.status();
  return std::optional<std::string>(std::move(*bytes));
}

}  // namespace

ApiResponse Agent::Packages(const ApiRequest& r, std::string_view what) {
  if (auto e = CheckKey(r)) return *e;
  const bool one = what != "packages";
  const std::string name(one ? what.substr(std::string_view("packages/").size()) : "");
  if (one && (!IsValidName(name, 128) || name[0] == '.')) {
    return Fail(404, "no such package: a name is 1 to 128 characters from A-Z a-z 0-9 _ . -, not "
                     "starting with '.'");
  }
  if (r.method != "GET" && !(one && r.method == "PUT")) {
    return Fail(405, std::string("use ") + (one ? "GET or PUT" : "GET") + " for " + r.path);
  }
  if (!r.params.empty()) return Fail(400, "unknown query parameter", r.params.begin()->first);
  if (r.method == "PUT") return PutPackage(r, name);
  if (!r.body.empty()) return Fail(400, "this call takes no body");
  const std::string& dir = options_.packages_dir;
  std::vector<std::string> warnings;
  const json installed = ReadPackages(dir, &warnings);
  for (const std::string& w : warnings) Log(2, "agent: " + w);
  if (!one) {
    json list = json::array();
    for (const json& p : installed) {
      auto payload = ReadPayload(dir, p["name"].get<std::string>());
      if (!payload.ok()) return Fail(500, payload.status().message());
      json entry = p;
      entry["sha256"] = payload->has_value() ? json(console::Sha256Hex(**payload)) : json(nullptr);
      entry["bytes"] = payload->has_value() ? (*payload)->size() : 0;
      list.push_back(std::move(entry));
    }
    return ApiResponse{200, json{{"packages", std::move(list)}}};
  }
  for (const json& p : installed) {
    if (p["name"] != name) continue;
    auto payload = ReadPayload(dir, name);
    if (!payload.ok()) return Fail(500, payload.status().message());
    const bool has = payload->has_value();
    return ApiResponse{200, json{{"manifest", p},
                                 {"payload_base64", has ? json(PackageBase64(**payload)) : json(nullptr)},
                                 {"sha256", has ? json(console::Sha256Hex(**payload)) : json(nullptr)}}};
  }
  return Fail(404, "no package named " + Quote(name) + " is installed");
}

ApiResponse Agent::PutPackage(const ApiRequest& r, const std::string& name) {
  json body;
  if (auto e = console::ParseJsonBody(r.content_type, r.body, {"manifest", "payload_base64", "sha256"},
                                      kAgentPackageBodyBytesMax, Quote, &body)) {
    return Fail(e->status, e->message, e->field);
  }
  for (const char* key : {"manifest", "payload_base64", "sha256"}) {
    if (!body.contains(key)) return Fail(400, "required field is missing", key);
  }
  const json& manifest = body["manifest"];
  if (std::string why = PackageManifestProblem(manifest); !why.empty()) {
    return Fail(400, "not a package manifest: " + why, "manifest");
  }
  if (manifest["name"] != name) {
    return Fail(400, "names package " + Quote(manifest["name"].get<std::string>()) + ", not " +
                         Quote(name) + " of the path",
                "manifest");
  }
  const json& b64 = body["payload_base64"];
  const json& sha = body["sha256"];
  std::optional<std::string> payload;
  if (b64.is_null()) {
    if (!sha.is_null()) return Fail(400, "must be null when payload_base64 is null", "sha256");
  } else {
    if (!b64.is_string()) {
      return Fail(400, "must be a base64 string or null, got " + JsonTypeName(b64), "payload_base64");
    }
    if (b64.get_ref<const std::string&>().size() > (kPackagePayloadBytesMax + 2) / 3 * 4) {
      return Fail(400, "the payload is larger than " + std::to_string(kPackagePayloadBytesMax) + " bytes",
                  "payload_base64");
    }
    payload = PackageUnbase64(b64.get_ref<const std::string&>());
    if (!payload) return Fail(400, "is not valid base64 (RFC 4648, padded)", "payload_base64");
    if (payload->size() > kPackagePayloadBytesMax) {
      return Fail(400, "the payload is larger than " + std::to_string(kPackagePayloadBytesMax) + " bytes",
                  "payload_base64");
    }
    if (!sha.is_string() || !IsLowerHex(sha.get<std::string>(), 64)) {
      return Fail(400, "must be the payload's SHA-256 (64 lowercase hex characters)", "sha256");
    }
    const std::string actual = console::Sha256Hex(*payload);
    if (actual != sha.get<std::string>()) {
      return Fail(400, "does not match the payload (its SHA-256 is " + actual + ")", "sha256");
    }
  }
  const std::string& dir = options_.packages_dir;
  if (dir.empty()) return Fail(500, "this agent has no packages directory");
  std::lock_guard<std::mutex> l(packages_mu_);
  if (Status st = os::MakeDirs(dir, 0755); !st.ok()) {
    return Fail(500, "cannot create the packages directory: " + st.message());
  }
  // Payload first, then the manifest: a manifest on disk always describes
  // the payload beside it once both are in place.
  const std::string payload_file = PackagePayloadFile(dir, name);
  if (payload) {
    if (Status st = os::WriteFileAtomic(payload_file, *payload, 0644); !st.ok()) {
      return Fail(500, "cannot install the payload: " + st.message());
    }
  } else if (Exists(payload_file)) {
    if (::unlink(payload_file.c_str()) != 0) {
      return Fail(500, payload_file + ": cannot remove the old payload: " + ErrnoText(errno));
    }
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.get() >= 0) (void)::fsync(d.get());
  }
  const json clean{{"name", manifest["name"]}, {"version", manifest["version"]}, {"kind", manifest["kind"]}};
  if (Status st = os::WriteFileAtomic(PackageManifestFile(dir, name), clean.dump(2) + "\n", 0644);
      !st.ok()) {
    return Fail(500, "cannot install the manifest: " + st.message());
  }
  Log(1, "agent: installed package " + name + " " + clean["version"].get<std::string>() +
             (payload ? " (" + std::to_string(payload->size()) + " bytes)" : std::string(" (no payload)")) +
             " from " + r.remote);
  json answer = clean;
  answer["sha256"] = payload ? json(console::Sha256Hex(*payload)) : json(nullptr);
  answer["bytes"] = payload ? payload->size() : 0;
  return ApiResponse{200, json{{"package", std::move(answer)}}};
}

// ---- deployed configuration (docs/CONSOLE.md, "Deploying";
// docs/formats/deployment.md) ----

std::string DeployedConfigFile(const std::string& state_dir) { return state_dir + "/deployed.json"; }
std::string ClusterKeyFile(const std::string& state_dir) { return state_dir + "/cluster.key"; }

namespace {

constexpr int64_t kRevisionMax = (int64_t{1} << 53) - 1;  // exact in any JSON reader
constexpr size_t kDeployPeersMax = 64;

bool IsDottedQuad(const std::string& s) {
  in_addr a{};
  return s.size() <= 15 && ::inet_pton(AF_INET, s.c_str(), &a) == 1;
}

// "a.b.c.d" or "a.b.c.d:port".
bool IsPeerAddress(const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos) return IsDottedQuad(s);
  if (!IsDottedQuad(s.substr(0, colon))) return false;
  const std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port[0] == '0') return false;
  int p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  return p <= 65535;
}

// Checks that `v` is an object with exactly the keys `keys`.
Status ExactKeys(const json& v, std::initializer_list<std::string_view> keys, const std::string& at,
                 std::string* field) {
  if (!v.is_object()) {
    *field = at;
    return Status::Error("must be an object, got " + JsonTypeName(v));
  }
  for (const auto& [k, _] : v.items()) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      *field = at + "." + k;
      return Status::Error("unknown field");
    }
  }
  for (std::string_view k : keys) {
    if (!v.contains(std::string(k))) {
      *field = at + "." + std::string(k);
      return Status::Error("required field is missing");
    }
  }
  return Status::Ok();
}

Status IntIn(const json& v, int64_t lo, int64_t hi, const std::string& at, std::string* field) {
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi ||
      (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))) {
    *field = at;
    return Status::Error("must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                         ", got " + (v.is_number() ? v.dump() : JsonTypeName(v)));
  }
  return Status::Ok();
}

Status NameIn(const json& v, const std::string& at, std::string* field) {
  if (!v.is_string() || !IsValidName(v.get<std::string>(), kConsoleNameLenMax)) {
    *field = at;
    return Status::Error("must be 1 to 64 characters from A-Z a-z 0-9 _ . -");
  }
  return Status::Ok();
}

Status AddressIn(const json& v, bool nullable, const std::string& at, std::string* field) {
  if ((nullable && v.is_null()) || (v.is_string() && IsDottedQuad(v.get<std::string>()))) {
    return Status::Ok();
  }
  *field = at;
  return Status::Error(std::string("must be a dotted-quad address") + (nullable ? " or null" : ""));
}

}  // namespace

Status ValidateDeployDocument(const json& d, int64_t revision, std::string* field) {
  std::string ignored;
  std::string* f = field != nullptr ? field : &ignored;
  TANDEM_RETURN_IF_ERROR(ExactKeys(d, {"revision", "console", "host", "cluster"}, "document", f));
  if (d["revision"] != json(revision)) {
    *f = "document.revision";
    return Status::Error("must equal revision (" + std::to_string(revision) + ")");
  }
  TANDEM_RETURN_IF_ERROR(ExactKeys(d["console"], {"name"}, "document.console", f));
  TANDEM_RETURN_IF_ERROR(NameIn(d["console"]["name"], "document.console.name", f));
  const json& host = d["host"];
  TANDEM_RETURN_IF_ERROR(ExactKeys(host, {"name", "role"}, "document.host", f));
  TANDEM_RETURN_IF_ERROR(NameIn(host["name"], "document.host.name", f));
  const json& role = host["role"];
  const bool member = role == "primary" || role == "secondary";
  if (!member && role != "managed" && role != "console") {
    *f = "document.host.role";
    return Status::Error("must be \"managed\", \"console\", \"primary\" or \"secondary\"");
  }
  const json& c = d["cluster"];
  if (c.is_null()) {
    if (!member) return Status::Ok();
    *f = "document.cluster";
    return Status::Error("a primary or secondary host needs its cluster");
  }
  if (!member) {
    *f = "document.cluster";
    return Status::Error("must be null for a host of role " + role.get<std::string>());
  }
  TANDEM_RETURN_IF_ERROR(ExactKeys(c,
                                   {"name", "key", "vip", "vip_prefix", "primary_ip", "secondary_ip",
                                    "license_valid", "options"},
                                   "document.cluster", f));
  TANDEM_RETURN_IF_ERROR(NameIn(c["name"], "document.cluster.name", f));
  {
    const json& k = c["key"];
    bool hex = k.is_string() && k.get<std::string>().size() == 64;
    for (char ch : hex ? k.get<std::string>() : std::string()) {
      hex = hex && ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
    }
    if (!hex) {
      *f = "document.cluster.key";
      return Status::Error("must be 64 lowercase hexadecimal digits (the cluster key)");
    }
  }
  TANDEM_RETURN_IF_ERROR(AddressIn(c["vip"], false, "document.cluster.vip", f));
  TANDEM_RETURN_IF_ERROR(IntIn(c["vip_prefix"], 1, 32, "document.cluster.vip_prefix", f));
  TANDEM_RETURN_IF_ERROR(AddressIn(c["primary_ip"], false, "document.cluster.primary_ip", f));
  TANDEM_RETURN_IF_ERROR(AddressIn(c["secondary_ip"], true, "document.cluster.secondary_ip", f));
  if (!c["license_valid"].is_boolean()) {
    *f = "document.cluster.license_valid";
    return Status::Error("must be true or false");
  }
  const json& o = c["options"];
  const std::string at = "document.cluster.options";
  TANDEM_RETURN_IF_ERROR(ExactKeys(
      o, {"heartbeat_interval_ms", "heartbeat_timeout_ms", "connectivity_peers", "sync_rate_mb",
          "disable_replication", "crossover_interface", "crossover_primary_ip", "crossover_secondary_ip"},
      at, f));
  TANDEM_RETURN_IF_ERROR(IntIn(o["heartbeat_interval_ms"], 10, 600000, at + ".heartbeat_interval_ms", f));
  TANDEM_RETURN_IF_ERROR(IntIn(o["heartbeat_timeout_ms"], o["heartbeat_interval_ms"].get<int64_t>() + 1,
                               3600000, at + ".heartbeat_timeout_ms", f));
  TANDEM_RETURN_IF_ERROR(IntIn(o["sync_rate_mb"], 1, 4096, at + ".sync_rate_mb", f));
  if (!o["disable_replication"].is_boolean()) {
    *f = at + ".disable_replication";
    return Status::Error("must be true or false");
  }
  const json& peers = o["connectivity_peers"];
  if (!peers.is_array() || peers.size() > kDeployPeersMax) {
    *f = at + ".connectivity_peers";
    return Status::Error("must be an array of at most " + std::to_string(kDeployPeersMax) + " peers");
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    if (!peers[i].is_string() || !IsPeerAddress(peers[i].get<std::string>())) {
      *f = at + ".connectivity_peers[" + std::to_string(i) + "]";
      return Status::Error("must be \"a.b.c.d\" or \"a.b.c.d:port\"");
    }
  }
  const json& xi = o["crossover_interface"];
  if (!xi.is_null() && !(xi.is_string() && !xi.get<std::string>().empty() && xi.get<std::string>().size() <= 15 &&
                         IsValidName(xi.get<std::string>(), 15))) {
    *f = at + ".crossover_interface";
    return Status::Error("must be an interface name (1 to 15 characters) or null");
  }
  TANDEM_RETURN_IF_ERROR(AddressIn(o["crossover_primary_ip"], true, at + ".crossover_primary_ip", f));
  TANDEM_RETURN_IF_ERROR(AddressIn(o["crossover_secondary_ip"], true, at + ".crossover_secondary_ip", f));
  if (xi.is_null() != o["crossover_primary_ip"].is_null() || xi.is_null() != o["crossover_secondary_ip"].is_null()) {
    *f = at + ".crossover_interface";
    return Status::Error("the crossover interface and its two addresses go together, or none");
  }
  return Status::Ok();
}

Result<std::optional<json>> ReadDeployedConfig(const std::string& state_dir) {
  const std::string path = DeployedConfigFile(state_dir);
  if (!Exists(path)) return std::optional<json>();
  auto text = os::ReadFile(path, 4 * kAgentBodyBytesMax);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.value("revision", json()).is_number_integer() ||
      !j.value("deployed_at_ms", json()).is_number_integer() || !j.value("document", json()).is_object()) {
    return Status::Error(path + ": malformed (expected {\"revision\", \"deployed_at_ms\", \"document\"})");
  }
  return std::optional<json>(std::move(j));
}

ApiResponse Agent::Config(const ApiRequest& r) {
  if (auto e = CheckKey(r)) return *e;
  if (r.method != "GET" && r.method != "PUT") return Fail(405, "use GET or PUT for " + r.path);
  if (!r.params.empty()) return Fail(400, "unknown query parameter", r.params.begin()->first);
  const std::string& dir = options_.state_dir;
  if (r.method == "GET") {
    if (!r.body.empty()) return Fail(400, "this call takes no body");
    auto d = ReadDeployedConfig(dir);
    if (!d.ok()) return Fail(500, d.status().message());
    if (!d->has_value()) return Fail(404, "no configuration has been deployed to this host");
    const json& j = **d;
    json document = j["document"];
    // The cluster key is a secret: stored, never answered.
    if (document.contains("cluster") && document["cluster"].is_object() && document["cluster"].contains("key")) {
      document["cluster"]["key"] = "(hidden)";
    }
    return ApiResponse{200, json{{"revision", j["revision"]},
                                 {"deployed_at", console::Rfc3339Ms(j["deployed_at_ms"].get<int64_t>())},
                                 {"document", std::move(document)}}};
  }
  json body;
  if (Error e = ParseBody(r, {"revision", "document"}, &body)) return *e;
  int64_t revision = 0;
  if (Error e = GetInt(body, "revision", true, 1, kRevisionMax, &revision)) return *e;
  if (!body.contains("document")) return Fail(400, "required field is missing", "document");
  std::string field;
  if (Status st = ValidateDeployDocument(body["document"], revision, &field); !st.ok()) {
    return Fail(400, st.message(), field);
  }
  std::lock_guard<std::mutex> l(config_mu_);
  const int64_t now = options_.clock->WallMs();
  const json record{{"revision", revision}, {"deployed_at_ms", now}, {"document", body["document"]}};
  if (Status st = os::WriteFileAtomic(DeployedConfigFile(dir), record.dump() + "\n", 0600); !st.ok()) {
    return Fail(500, "cannot store the configuration: " + st.message());
  }
  Log(1, "agent: configuration revision " + std::to_string(revision) + " deployed by console " +
             body["document"]["console"]["name"].get<std::string>() + " (from " + r.remote + ")");
  if (options_.apply_config) {
    if (Status st = options_.apply_config(body["document"]); !st.ok()) {
      Log(2, "agent: configuration revision " + std::to_string(revision) + ": cannot apply: " + st.message());
      return ApiError(500, "apply_failed",
                      "revision " + std::to_string(revision) + " was stored but not applied: " + st.message());
    }
  }
  return ApiResponse{200, json{{"revision", revision}, {"deployed_at", console::Rfc3339Ms(now)}}};
}

}  // namespace tandem::daemon
