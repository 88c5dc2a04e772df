// tandemd configuration loading and validation. Reference: docs/CONFIG.md.
//
// Shape: toml++ turns the text into a tree (syntax errors are caught here
// and never leave this file as exceptions), then one small function per
// table checks its keys. The first error found is returned; its message is
// always one line: "<path>: <dotted key>: <what is wrong>".
#include "config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

namespace tandem::config {
namespace {

namespace fs = std::filesystem;

// Limits (ENGINEERING.md #7). Each is checked and documented in CONFIG.md.
constexpr size_t kConfigFileBytesMax = 1 << 20;
constexpr size_t kKeyFileBytesMax = 64 * 1024;
constexpr size_t kClusterKeyBytesMin = 32;
constexpr size_t kHostNameLenMax = 63;  // cluster.name, host.name
constexpr size_t kServiceNameLenMax = 64;
constexpr size_t kGroupNameLenMax = 32;
constexpr size_t kInterfaceNameLenMax = 13;  // "<name>:0" fits IFNAMSIZ - 1
constexpr int64_t kGarpCountMax = 100;
constexpr size_t kServicesMax = 64;
constexpr size_t kArgvMax = 256;
constexpr size_t kConnectivityPeersMax = 64;
constexpr size_t kUnixSocketPathMax = 107;  // sun_path minus the NUL
static_assert(sizeof(sockaddr_un{}.sun_path) == kUnixSocketPathMax + 1);
constexpr size_t kQuoteBytesMax = 80;  // user text echoed in messages

constexpr int64_t kHeartbeatIntervalMsMin = 10;
constexpr int64_t kHeartbeatIntervalMsMax = 600000;
constexpr int64_t kHeartbeatTimeoutMsMax = 3600000;
constexpr int64_t kInitialDeadTimeMsMax = 86400000;
constexpr int64_t kConnIntervalMsMin = 10;
constexpr int64_t kConnIntervalMsMax = 3600000;
constexpr int64_t kBackoffMsMax = 3600000;
constexpr int64_t kTimeoutMsMax = 600000;  // stop, notify, backoff min
static_assert(kHeartbeatIntervalMsMax < kHeartbeatTimeoutMsMax);
static_assert(2 * kHeartbeatTimeoutMsMax <= kInitialDeadTimeMsMax);
static_assert(kTimeoutMsMax <= kBackoffMsMax);

constexpr std::string_view kDefaultControlSocketName = "tandemd.sock";

// Echoes user text safely on one line: quoted, control bytes escaped, long
// text cut (at a UTF-8 character boundary) and marked with "...".
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (i >= kQuoteBytesMax && (c & 0xC0) != 0x80) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

bool IsBareKeyChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// One component of a dotted key, as TOML would write it: bare when
// possible, quoted otherwise (so a key with a newline stays on one line).
std::string KeyPart(std::string_view key) {
  bool bare = !key.empty() && key.size() <= kQuoteBytesMax;
  for (char c : key) bare = bare && IsBareKeyChar(c);
  return bare ? std::string(key) : Quote(key);
}

std::string_view TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "floating-point";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

bool IsNameChar(char c) { return IsBareKeyChar(c) || c == '.'; }

// [A-Za-z0-9_.-]{1,max_len}
bool IsValidName(std::string_view s, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

// Where messages point and relative paths resolve.
struct Context {
  std::string path;  // as the caller gave it; starts every message
  fs::path dir;      // absolute directory of the file
  bool read_key = true;

  Status Error(std::string_view key, std::string_view what) const {
    std::string m = path;
    m.append(": ").append(key).append(": ").append(what);
    return Status::Error(std::move(m));
  }
};

// One TOML table (or an absent one, which reads as empty) and the dotted
// name of it used in messages ("heartbeat", "service[2]").
class Section {
 public:
  Section(const Context& ctx, const toml::table* table, std::string name)
      : ctx_(ctx), table_(table), name_(std::move(name)) {}

  std::string Key(std::string_view key) const { return name_ + "." + KeyPart(key); }
  Status Error(std::string_view key, std::string_view what) const {
    return ctx_.Error(Key(key), what);
  }
  const Context& ctx() const { return ctx_; }
  const toml::node* Get(std::string_view key) const {
    return table_ == nullptr ? nullptr : table_->get(key);
  }
  bool present() const { return table_ != nullptr; }

  Status CheckKnown(std::initializer_list<std::string_view> known) const;
  // Each getter: absent and !required leaves *out (the default) alone.
  Status GetString(std::string_view key, bool required, std::string* out) const;
  Status GetInt(std::string_view key, int64_t* out, bool* present = nullptr) const;
  Status GetIntInRange(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const;
  Status GetName(std::string_view key, size_t max_len, std::string* out) const;
  Status GetEnum(std::string_view key, std::initializer_list<std::string_view> allowed,
                 std::string* out) const;
  Status GetPath(std::string_view key, bool required, std::string* out) const;
  Status GetEndpoint(std::string_view key, bool required, Endpoint* out) const;
  Status GetArray(std::string_view key, size_t max_size, const toml::array** out) const;
  Status GetStringList(std::string_view key, size_t max_size, std::vector<std::string>* out) const;
  Status GetCommand(std::string_view key, bool required, std::vector<std::string>* out) const;

 private:
  const Context& ctx_;
  const toml::table* table_;
  std::string name_;
};

Status Section::CheckKnown(std::initializer_list<std::string_view> known) const {
  if (table_ == nullptr) return Status::Ok();
  for (const auto& [key, value] : *table_) {
    bool found = false;
    for (std::string_view k : known) found = found || key.str() == k;
    if (!found) return Error(key.str(), "unknown key");
  }
  return Status::Ok();
}

Status Section::GetString(std::string_view key, bool required, std::string* out) const {
  const toml::node* node = Get(key);
  if (node == nullptr) {
    return required ? Error(key, "required key is missing") : Status::Ok();
  }
  const auto* str = node->as_string();
  if (str == nullptr) {
    return Error(key, "expected a string, got " + std::string(TypeName(*node)));
  }
  *out = str->get();
  return Status::Ok();
}

Status Section::GetInt(std::string_view key, int64_t* out, bool* present) const {
  const toml::node* node = Get(key);
  if (present != nullptr) *present = node != nullptr;
  if (node == nullptr) return Status::Ok();
  const auto* i = node->as_integer();
  if (i == nullptr) {
    return Error(key, "expected an integer, got " + std::string(TypeName(*node)));
  }
  *out = i->get();
  return Status::Ok();
}

Status Section::GetIntInRange(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const {
  int64_t v = *out;
  TANDEM_RETURN_IF_ERROR(GetInt(key, &v));
  if (v < lo || v > hi) {
    return Error(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                          ", got " + std::to_string(v));
  }
  *out = v;
  return Status::Ok();
}

Status Section::GetName(std::string_view key, size_t max_len, std::string* out) const {
  std::string v;
  TANDEM_RETURN_IF_ERROR(GetString(key, /*required=*/true, &v));
  if (!IsValidName(v, max_len)) {
    return Error(key, "must be 1 to " + std::to_string(max_len) +
                          " characters from A-Z a-z 0-9 _ . -, got " + Quote(v));
  }
  *out = std::move(v);
  return Status::Ok();
}

Status Section::GetEnum(std::string_view key, std::initializer_list<std::string_view> allowed,
                        std::string* out) const {
  std::string v = *out;
  TANDEM_RETURN_IF_ERROR(GetString(key, /*required=*/false, &v));
  std::string list;
  for (std::string_view a : allowed) {
    if (v == a) {
      *out = std::move(v);
      return Status::Ok();
    }
    list += (list.empty() ? "" : ", ") + Quote(a);
  }
  return Error(key, "must be one of " + list + "; got " + Quote(v));
}

// Relative paths resolve against the config file's directory; the result
// is lexically normalized ("a/../b" -> "b"), without touching the disk.
Status Section::GetPath(std::string_view key, bool required, std::string* out) const {
  if (Get(key) == nullptr && !required) return Status::Ok();
  std::string v;
  TANDEM_RETURN_IF_ERROR(GetString(key, required, &v));
  if (v.empty()) return Error(key, "must not be empty");
  if (v.find('\0') != std::string::npos) return Error(key, "must not contain a NUL byte");
  fs::path p = (ctx_.dir / v).lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  *out = p.string();
  return Status::Ok();
}

Status Section::GetEndpoint(std::string_view key, bool required, Endpoint* out) const {
  if (Get(key) == nullptr && !required) return Status::Ok();
  std::string v;
  TANDEM_RETURN_IF_ERROR(GetString(key, required, &v));
  Result<Endpoint> ep = ParseEndpoint(v);
  if (!ep.ok()) return Error(key, ep.status().message());
  *out = std::move(ep).value();
  return Status::Ok();
}

Status Section::GetArray(std::string_view key, size_t max_size, const toml::array** out) const {
  const toml::node* node = Get(key);
  *out = node == nullptr ? nullptr : node->as_array();
  if (node != nullptr && *out == nullptr) {
    return Error(key, "expected an array of strings, got " + std::string(TypeName(*node)));
  }
  if (*out != nullptr && (*out)->size() > max_size) {
    return Error(key, "must have at most " + std::to_string(max_size) + " elements, got " +
                          std::to_string((*out)->size()));
  }
  return Status::Ok();
}

// An array of strings; absent leaves *out alone.
Status Section::GetStringList(std::string_view key, size_t max_size,
                              std::vector<std::string>* out) const {
  const toml::array* array = nullptr;
  TANDEM_RETURN_IF_ERROR(GetArray(key, max_size, &array));
  if (array == nullptr) return Status::Ok();
  std::vector<std::string> list;
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& elem = (*array)[i];
    const auto* str = elem.as_string();
    if (str == nullptr) {
      return ctx_.Error(Key(key) + "[" + std::to_string(i) + "]",
                        "expected a string, got " + std::string(TypeName(elem)));
    }
    list.push_back(str->get());
  }
  *out = std::move(list);
  return Status::Ok();
}

// An argv: non-empty array of non-empty strings without NUL bytes.
Status Section::GetCommand(std::string_view key, bool required,
                           std::vector<std::string>* out) const {
  if (Get(key) == nullptr) {
    return required ? Error(key, "required key is missing") : Status::Ok();
  }
  std::vector<std::string> argv;
  TANDEM_RETURN_IF_ERROR(GetStringList(key, kArgvMax, &argv));
  if (argv.empty()) return Error(key, "must not be empty (give at least the program)");
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string elem_key = Key(key) + "[" + std::to_string(i) + "]";
    if (argv[i].empty()) return ctx_.Error(elem_key, "must not be empty");
    if (argv[i].find('\0') != std::string::npos) {
      return ctx_.Error(elem_key, "must not contain a NUL byte");
    }
  }
  *out = std::move(argv);
  return Status::Ok();
}

// A top-level table; absent reads as empty (so its required keys report
// themselves as missing).
Result<const toml::table*> GetTable(const Context& ctx, const toml::table& root,
                                    std::string_view name) {
  const toml::node* node = root.get(name);
  if (node == nullptr) return static_cast<const toml::table*>(nullptr);
  if (const auto* table = node->as_table()) return table;
  return ctx.Error(name, "expected a table, got " + std::string(TypeName(*node)));
}

Status CheckTopLevel(const Context& ctx, const toml::table& root) {
  static constexpr std::string_view kKnown[] = {"cluster", "host", "heartbeat", "connectivity",
                                                "service", "notify", "log",  "api", "vip",
                                                "replication", "collector", "console",
                                                "agent"};
  for (const auto& [key, value] : root) {
    bool found = false;
    for (std::string_view k : kKnown) found = found || key.str() == k;
    if (!found) return ctx.Error(KeyPart(key.str()), "unknown key");
  }
  return Status::Ok();
}

Status ParseCluster(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"name", "key_file", "vip", "vip_mode", "vip_prefix"}));
  TANDEM_RETURN_IF_ERROR(s.GetName("name", kHostNameLenMax, &c->cluster_name));
  TANDEM_RETURN_IF_ERROR(s.GetPath("key_file", /*required=*/true, &c->key_file));
  TANDEM_RETURN_IF_ERROR(s.GetString("vip", /*required=*/true, &c->vip));
  const std::optional<uint32_t> vip = ParseIPv4(c->vip);
  if (!vip) return s.Error("vip", "expected a dotted-quad IPv4 address, got " + Quote(c->vip));
  TANDEM_RETURN_IF_ERROR(s.GetEnum("vip_mode", {"loopback", "interface"}, &c->vip_mode));
  if (c->vip_mode == "loopback" && (*vip >> 24) != 127) {
    return s.Error(
        "vip", "must be in 127.0.0.0/8 with cluster.vip_mode \"loopback\", got " + Quote(c->vip));
  }
  int64_t prefix = c->vip_prefix;
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("vip_prefix", 1, 32, &prefix));
  c->vip_prefix = static_cast<int>(prefix);
  return Status::Ok();
}

// host.interface: required in interface mode; "<interface>:0" must fit the
// kernel's 15-byte address label.
Status ParseInterface(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.GetString("interface", /*required=*/false, &c->interface));
  if (c->vip_mode != "interface") return Status::Ok();
  if (c->interface.empty()) {
    return s.Error("interface", "required with cluster.vip_mode \"interface\"");
  }
  if (!IsValidName(c->interface, kInterfaceNameLenMax)) {
    return s.Error("interface", "must be 1 to " + std::to_string(kInterfaceNameLenMax) +
                                    " characters from A-Z a-z 0-9 _ . -, got " +
                                    Quote(c->interface));
  }
  return Status::Ok();
}

// [vip]: gratuitous ARP on take-over (interface mode).
Status ParseVip(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown(
      {"garp_count", "garp_repeat_count", "garp_repeat_delay_ms", "garp_refresh_ms"}));
  int64_t count = c->garp_count, repeat = c->garp_repeat_count;
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("garp_count", 0, kGarpCountMax, &count));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("garp_repeat_count", 0, kGarpCountMax, &repeat));
  TANDEM_RETURN_IF_ERROR(
      s.GetIntInRange("garp_repeat_delay_ms", 0, 600000, &c->garp_repeat_delay_ms));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("garp_refresh_ms", 0, 3600000, &c->garp_refresh_ms));
  c->garp_count = static_cast<int>(count);
  c->garp_repeat_count = static_cast<int>(repeat);
  return Status::Ok();
}

Status ParseHost(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(
      s.CheckKnown({"name", "role", "state_dir", "run_dir", "admin_group", "interface"}));
  TANDEM_RETURN_IF_ERROR(s.GetName("name", kHostNameLenMax, &c->host_name));
  // An agent-only host has no HA role: host.role is optional there.
  if (s.Get("role") == nullptr && !c->agent_only) return s.Error("role", "required key is missing");
  std::string role = "primary";
  TANDEM_RETURN_IF_ERROR(s.GetEnum("role", {"primary", "secondary"}, &role));
  c->role = role == "primary" ? ha::Role::kPrimary : ha::Role::kSecondary;
  TANDEM_RETURN_IF_ERROR(s.GetPath("state_dir", /*required=*/true, &c->state_dir));
  TANDEM_RETURN_IF_ERROR(s.GetPath("run_dir", /*required=*/true, &c->run_dir));
  TANDEM_RETURN_IF_ERROR(s.GetString("admin_group", /*required=*/false, &c->admin_group));
  if (!c->admin_group.empty() && !IsValidName(c->admin_group, kGroupNameLenMax)) {
    return s.Error("admin_group", "must be empty or 1 to " + std::to_string(kGroupNameLenMax) +
                                      " characters from A-Z a-z 0-9 _ . -, got " +
                                      Quote(c->admin_group));
  }
  return ParseInterface(s, c);
}

Status ParseHeartbeatTimers(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("interval_ms", kHeartbeatIntervalMsMin,
                                         kHeartbeatIntervalMsMax, &c->heartbeat_interval_ms));
  bool present = false;
  TANDEM_RETURN_IF_ERROR(s.GetInt("timeout_ms", &c->heartbeat_timeout_ms, &present));
  if (c->heartbeat_timeout_ms <= c->heartbeat_interval_ms) {
    return s.Error("timeout_ms", "must be greater than heartbeat.interval_ms (" +
                                     std::to_string(c->heartbeat_interval_ms) + "), got " +
                                     std::to_string(c->heartbeat_timeout_ms) +
                                     (present ? "" : " (the default)"));
  }
  if (c->heartbeat_timeout_ms > kHeartbeatTimeoutMsMax) {
    return s.Error("timeout_ms", "must be at most " + std::to_string(kHeartbeatTimeoutMsMax) +
                                     ", got " + std::to_string(c->heartbeat_timeout_ms));
  }
  c->initial_dead_time_ms = 2 * c->heartbeat_timeout_ms;
  return s.GetIntInRange("initial_dead_time_ms", 0, kInitialDeadTimeMsMax,
                         &c->initial_dead_time_ms);
}

// Each crossover endpoint must differ from both management endpoints and
// from the other crossover endpoint.
Status CheckCrossoverDistinct(const Section& s, const Config& c) {
  const std::pair<std::string_view, const Endpoint*> mgmt[] = {{"listen", &c.listen},
                                                               {"peer", &c.peer}};
  const std::pair<std::string_view, const Endpoint*> xover[] = {
      {"crossover_listen", &c.crossover_listen}, {"crossover_peer", &c.crossover_peer}};
  for (const auto& [xkey, xep] : xover) {
    for (const auto& [mkey, mep] : mgmt) {
      if (*xep == *mep) {
        return s.Error(
            xkey, "must differ from heartbeat." + std::string(mkey) + " (" + mep->ToString() + ")");
      }
    }
  }
  if (c.crossover_listen == c.crossover_peer) {
    return s.Error("crossover_peer", "must differ from heartbeat.crossover_listen (" +
                                         c.crossover_listen.ToString() + ")");
  }
  return Status::Ok();
}

Status ParseHeartbeatPaths(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("listen", /*required=*/true, &c->listen));
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("peer", /*required=*/true, &c->peer));
  if (c->peer == c->listen) {
    return s.Error("peer", "must differ from heartbeat.listen (" + c->listen.ToString() + ")");
  }
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("crossover_listen", false, &c->crossover_listen));
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("crossover_peer", false, &c->crossover_peer));
  if (c->crossover_listen.empty() != c->crossover_peer.empty()) {
    const bool listen_missing = c->crossover_listen.empty();
    return s.Error(listen_missing ? "crossover_listen" : "crossover_peer",
                   std::string("required when heartbeat.") +
                       (listen_missing ? "crossover_peer" : "crossover_listen") +
                       " is set (give both or neither)");
  }
  if (c->crossover_listen.empty()) return Status::Ok();
  return CheckCrossoverDistinct(s, *c);
}

Status ParseHeartbeat(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"interval_ms", "timeout_ms", "initial_dead_time_ms",
                                       "listen", "peer", "crossover_listen", "crossover_peer"}));
  TANDEM_RETURN_IF_ERROR(ParseHeartbeatTimers(s, c));
  return ParseHeartbeatPaths(s, c);
}

// connectivity.peers / connectivity.witnesses: lists of unique endpoints.
Status ParseEndpointList(const Section& s, const char* name, std::vector<Endpoint>* out) {
  std::vector<std::string> items;
  TANDEM_RETURN_IF_ERROR(s.GetStringList(name, kConnectivityPeersMax, &items));
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string key = s.Key(name) + "[" + std::to_string(i) + "]";
    Result<Endpoint> ep = ParseEndpoint(items[i]);
    if (!ep.ok()) return s.ctx().Error(key, ep.status().message());
    for (size_t j = 0; j < i; ++j) {
      if ((*out)[j] == *ep) {
        return s.ctx().Error(key, "duplicate of connectivity." + std::string(name) + "[" +
                                      std::to_string(j) + "] (" + ep->ToString() + ")");
      }
    }
    out->push_back(std::move(ep).value());
  }
  return Status::Ok();
}

// connectivity.icmp_peers: addresses pinged with ICMP echo; stored among
// connectivity_peers with port 0.
Status ParseIcmpPeers(const Section& s, Config* c) {
  std::vector<std::string> items;
  TANDEM_RETURN_IF_ERROR(s.GetStringList("icmp_peers", kConnectivityPeersMax, &items));
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string key = s.Key("icmp_peers") + "[" + std::to_string(i) + "]";
    if (!ParseIPv4(items[i])) {
      return s.ctx().Error(key, "expected a dotted-quad IPv4 address, got " + Quote(items[i]));
    }
    Endpoint ep{items[i], 0};
    for (const Endpoint& e : c->connectivity_peers) {
      if (e == ep) return s.ctx().Error(key, "duplicate ICMP peer " + Quote(items[i]));
    }
    c->connectivity_peers.push_back(ep);
  }
  return Status::Ok();
}

Status ParseConnectivity(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(
      s.CheckKnown({"peers", "icmp_peers", "witnesses", "interval_ms", "timeout_ms", "require"}));
  TANDEM_RETURN_IF_ERROR(ParseEndpointList(s, "peers", &c->connectivity_peers));
  TANDEM_RETURN_IF_ERROR(ParseIcmpPeers(s, c));
  TANDEM_RETURN_IF_ERROR(ParseEndpointList(s, "witnesses", &c->witnesses));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("interval_ms", kConnIntervalMsMin, kConnIntervalMsMax,
                                         &c->connectivity_interval_ms));
  int64_t timeout = c->connectivity_timeout_ms;
  TANDEM_RETURN_IF_ERROR(s.GetInt("timeout_ms", &timeout));
  if (timeout < 1 || timeout > c->connectivity_interval_ms) {
    return s.Error("timeout_ms", "must be between 1 and connectivity.interval_ms (" +
                                     std::to_string(c->connectivity_interval_ms) + "), got " +
                                     std::to_string(timeout));
  }
  c->connectivity_timeout_ms = timeout;
  std::string require = "any";
  TANDEM_RETURN_IF_ERROR(s.GetEnum("require", {"any", "all"}, &require));
  c->connectivity_require_all = require == "all";
  return Status::Ok();
}

Status ParseService(const Section& s, ServiceConfig* svc) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown(
      {"name", "command", "restart_backoff_min_ms", "restart_backoff_max_ms", "stop_timeout_ms"}));
  TANDEM_RETURN_IF_ERROR(s.GetName("name", kServiceNameLenMax, &svc->name));
  TANDEM_RETURN_IF_ERROR(s.GetCommand("command", /*required=*/true, &svc->command));
  TANDEM_RETURN_IF_ERROR(
      s.GetIntInRange("restart_backoff_min_ms", 1, kTimeoutMsMax, &svc->restart_backoff_min_ms));
  int64_t max_ms = svc->restart_backoff_max_ms;
  TANDEM_RETURN_IF_ERROR(s.GetInt("restart_backoff_max_ms", &max_ms));
  if (max_ms < svc->restart_backoff_min_ms || max_ms > kBackoffMsMax) {
    return s.Error("restart_backoff_max_ms",
                   "must be between " + s.Key("restart_backoff_min_ms") + " (" +
                       std::to_string(svc->restart_backoff_min_ms) + ") and " +
                       std::to_string(kBackoffMsMax) + ", got " + std::to_string(max_ms));
  }
  svc->restart_backoff_max_ms = max_ms;
  return s.GetIntInRange("stop_timeout_ms", 1, kTimeoutMsMax, &svc->stop_timeout_ms);
}

Status ParseServices(const Context& ctx, const toml::table& root, Config* c) {
  const toml::node* node = root.get("service");
  if (node == nullptr) return Status::Ok();
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    return ctx.Error("service", "expected an array of tables ([[service]]), got " +
                                    std::string(TypeName(*node)));
  }
  if (array->size() > kServicesMax) {
    return ctx.Error("service", "at most " + std::to_string(kServicesMax) +
                                    " services are allowed, got " + std::to_string(array->size()));
  }
  std::set<std::string> names;
  for (size_t i = 0; i < array->size(); ++i) {
    const std::string name = "service[" + std::to_string(i) + "]";
    const toml::table* table = (*array)[i].as_table();
    if (table == nullptr) {
      return ctx.Error(name, "expected a table, got " + std::string(TypeName((*array)[i])));
    }
    const Section s(ctx, table, name);
    ServiceConfig svc;
    TANDEM_RETURN_IF_ERROR(ParseService(s, &svc));
    if (!names.insert(svc.name).second) {
      return s.Error("name", "duplicate service name " + Quote(svc.name));
    }
    c->services.push_back(std::move(svc));
  }
  return Status::Ok();
}

Status ParseNotify(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"command", "timeout_ms"}));
  TANDEM_RETURN_IF_ERROR(s.GetCommand("command", /*required=*/false, &c->notify_command));
  return s.GetIntInRange("timeout_ms", 1, kTimeoutMsMax, &c->notify_timeout_ms);
}

Status ParseLog(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"level", "file"}));
  TANDEM_RETURN_IF_ERROR(
      s.GetEnum("level", {"trace", "debug", "info", "warn", "error"}, &c->log_level));
  return s.GetPath("file", /*required=*/false, &c->log_file);
}

// REQUIRES: c->run_dir is set (ParseHost succeeded).
Status ParseApi(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"control_socket", "http_listen", "token_file"}));
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("http_listen", /*required=*/false, &c->http_listen));
  TANDEM_RETURN_IF_ERROR(
      s.GetPath("token_file", /*required=*/!c->http_listen.empty(), &c->api_token_file));
  const bool given = s.Get("control_socket") != nullptr;
  c->control_socket = (fs::path(c->run_dir) / kDefaultControlSocketName).string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("control_socket", /*required=*/false, &c->control_socket));
  if (c->control_socket.size() > kUnixSocketPathMax) {
    return s.Error("control_socket",
                   std::string(given ? "" : "the default <host.run_dir>/tandemd.sock ") +
                       "must be at most " + std::to_string(kUnixSocketPathMax) +
                       " bytes (the Unix socket path limit), got " +
                       std::to_string(c->control_socket.size()) + ": " + Quote(c->control_socket));
  }
  return Status::Ok();
}

// [replication]: present (with store_dir) = /store is replicated.
// REQUIRES: host, heartbeat and api parsed.
Status ParseReplication(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"store_dir", "meta_dir", "listen", "peer", "protocol",
                                       "sync_rate_mb", "merge_prefixes", "volume_socket",
                                       "timeout_ms"}));
  if (s.Get("store_dir") == nullptr) {
    if (s.Get("listen") != nullptr || s.Get("peer") != nullptr) {
      return s.Error("store_dir", "required when [replication] is configured");
    }
    return Status::Ok();
  }
  c->replication = true;
  TANDEM_RETURN_IF_ERROR(s.GetPath("store_dir", /*required=*/true, &c->store_dir));
  c->repl_meta_dir = (fs::path(c->state_dir) / "replica").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("meta_dir", /*required=*/false, &c->repl_meta_dir));
  auto inside = [](const std::string& a, const std::string& b) {
    return a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/');
  };
  if (inside(c->repl_meta_dir, c->store_dir) || inside(c->store_dir, c->repl_meta_dir)) {
    return s.Error("meta_dir", "must be outside store_dir (and not contain it), got " +
                                   Quote(c->repl_meta_dir));
  }
  if (inside(c->state_dir, c->store_dir)) {
    return s.Error("store_dir", "must not contain host.state_dir");
  }
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("listen", /*required=*/true, &c->repl_listen));
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("peer", /*required=*/true, &c->repl_peer));
  std::string protocol = "C";
  TANDEM_RETURN_IF_ERROR(s.GetEnum("protocol", {"A", "B", "C"}, &protocol));
  c->repl_protocol = protocol[0];
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("sync_rate_mb", 1, 4096, &c->sync_rate_mb));
  if (s.Get("merge_prefixes") != nullptr) {
    c->merge_prefixes.clear();
    TANDEM_RETURN_IF_ERROR(s.GetStringList("merge_prefixes", 64, &c->merge_prefixes));
    for (const std::string& p : c->merge_prefixes) {
      if (p.empty() || p.front() == '/' || p.back() != '/' || p.find("..") != std::string::npos) {
        return s.Error("merge_prefixes", "each must be a relative directory ending in '/', got " + Quote(p));
      }
    }
  }
  c->volume_socket = (fs::path(c->run_dir) / "volume.sock").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("volume_socket", /*required=*/false, &c->volume_socket));
  if (c->volume_socket.size() > kUnixSocketPathMax) {
    return s.Error("volume_socket", "must be at most " + std::to_string(kUnixSocketPathMax) +
                                        " bytes (the Unix socket path limit)");
  }
  c->repl_timeout_ms = c->heartbeat_timeout_ms;
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("timeout_ms", 100, 600000, &c->repl_timeout_ms));
  return Status::Ok();
}

// [collector]: present = this host collects (on the VIP, while active).
// REQUIRES: cluster and replication parsed.
Status ParseCollector(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown(
      {"listen_address", "syslog_udp_port", "syslog_tcp_port", "relp_port", "netflow_port",
       "message_bytes_max", "batch_ms", "queue_mb", "capacity_stop_percent",
       "capacity_resume_percent", "retention_days", "retention_gb", "segment_mb",
       "segment_seconds", "tcp_connections_max", "status_file"}));
  if (!s.present()) return Status::Ok();
  CollectorConfig& k = c->collector;
  k.enabled = true;
  if (!c->replication) {
    return s.Error("listen_address",
                   "[collector] needs [replication]: events are written to the replicated store");
  }
  k.listen_address = c->vip;
  TANDEM_RETURN_IF_ERROR(s.GetString("listen_address", /*required=*/false, &k.listen_address));
  if (!ParseIPv4(k.listen_address)) {
    return s.Error("listen_address", "expected a dotted-quad IPv4 address, got " +
                                         Quote(k.listen_address));
  }
  const std::pair<const char*, int*> ports[] = {{"syslog_udp_port", &k.syslog_udp_port},
                                                {"syslog_tcp_port", &k.syslog_tcp_port},
                                                {"relp_port", &k.relp_port},
                                                {"netflow_port", &k.netflow_port}};
  for (const auto& [key, port] : ports) {
    int64_t v = *port;
    TANDEM_RETURN_IF_ERROR(s.GetIntInRange(key, 0, 65535, &v));
    *port = static_cast<int>(v);
  }
  if (k.syslog_tcp_port != 0 && k.syslog_tcp_port == k.relp_port) {
    return s.Error("relp_port", "must differ from syslog_tcp_port (" +
                                    std::to_string(k.syslog_tcp_port) + ")");
  }
  if (k.syslog_udp_port != 0 && k.syslog_udp_port == k.netflow_port) {
    return s.Error("netflow_port", "must differ from syslog_udp_port (" +
                                       std::to_string(k.syslog_udp_port) + ")");
  }
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("message_bytes_max", 480, 1 << 20, &k.message_bytes_max));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("batch_ms", 1, 1000, &k.batch_ms));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("queue_mb", 1, 1024, &k.queue_mb));
  TANDEM_RETURN_IF_ERROR(
      s.GetIntInRange("capacity_stop_percent", 1, 100, &k.capacity_stop_percent));
  TANDEM_RETURN_IF_ERROR(
      s.GetIntInRange("capacity_resume_percent", 0, 99, &k.capacity_resume_percent));
  if (k.capacity_resume_percent >= k.capacity_stop_percent) {
    return s.Error("capacity_resume_percent",
                   "must be below capacity_stop_percent (" +
                       std::to_string(k.capacity_stop_percent) + "), got " +
                       std::to_string(k.capacity_resume_percent));
  }
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("retention_days", 0, 36500, &k.retention_days));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("retention_gb", 0, 1 << 20, &k.retention_gb));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("segment_mb", 1, 4096, &k.segment_mb));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("segment_seconds", 1, 86400, &k.segment_seconds));
  TANDEM_RETURN_IF_ERROR(
      s.GetIntInRange("tcp_connections_max", 1, 65536, &k.tcp_connections_max));
  k.status_file = (fs::path(c->run_dir) / "collector.json").string();
  return s.GetPath("status_file", /*required=*/false, &k.status_file);
}

// [console]: present (and not enabled = false) = this host runs the
// console role. REQUIRES: host parsed.
Status ParseConsole(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(
      s.CheckKnown({"enabled", "listen", "state_dir", "session_ttl_s", "tls_cert", "tls_key",
                    "poll_interval_ms", "license_keys_dir"}));
  if (!s.present()) return Status::Ok();
  ConsoleConfig& k = c->console;
  k.enabled = true;
  if (const toml::node* node = s.Get("enabled")) {
    const auto* b = node->as_boolean();
    if (b == nullptr) {
      return s.Error("enabled", "expected a boolean, got " + std::string(TypeName(*node)));
    }
    k.enabled = b->get();
  }
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("listen", /*required=*/true, &k.listen));
  k.state_dir = (fs::path(c->state_dir) / "console").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("state_dir", /*required=*/false, &k.state_dir));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("session_ttl_s", 1, 2592000, &k.session_ttl_s));
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("poll_interval_ms", 200, 3600000, &k.poll_interval_ms));
  TANDEM_RETURN_IF_ERROR(s.GetPath("tls_cert", /*required=*/false, &k.tls_cert));
  TANDEM_RETURN_IF_ERROR(s.GetPath("tls_key", /*required=*/false, &k.tls_key));
  k.license_keys_dir = (fs::path(k.state_dir) / "license-keys").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("license_keys_dir", /*required=*/false, &k.license_keys_dir));
  if (k.tls_cert.empty() != k.tls_key.empty()) {
    const char* missing = k.tls_cert.empty() ? "tls_cert" : "tls_key";
    return s.Error(missing, std::string("required when ") +
                                (k.tls_cert.empty() ? "tls_key" : "tls_cert") +
                                " is set (give both, or neither for a generated certificate)");
  }
  if (c->replication && !c->store_dir.empty()) {
    const std::string& a = k.state_dir;
    const std::string& b = c->store_dir;
    if (a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/')) {
      return s.Error("state_dir", "must be outside replication.store_dir (the console's "
                                  "database is not replicated), got " + Quote(a));
    }
  }
  return Status::Ok();
}

// A boolean key; absent leaves *out alone.
Status GetBool(const Section& s, std::string_view key, bool* out) {
  const toml::node* node = s.Get(key);
  if (node == nullptr) return Status::Ok();
  const auto* b = node->as_boolean();
  if (b == nullptr) return s.Error(key, "expected a boolean, got " + std::string(TypeName(*node)));
  *out = b->get();
  return Status::Ok();
}

// [agent]: present = this host runs the agent (docs/CONSOLE.md).
// REQUIRES: host and replication parsed.
Status ParseAgent(const Section& s, Config* c) {
  TANDEM_RETURN_IF_ERROR(s.CheckKnown({"listen", "state_dir", "packages_dir", "store_dir",
                                       "transient_dir", "external_storage", "virtual",
                                       "heartbeat_port", "replication_port"}));
  if (!s.present()) return Status::Ok();
  AgentConfig& k = c->agent;
  k.enabled = true;
  TANDEM_RETURN_IF_ERROR(s.GetEndpoint("listen", /*required=*/true, &k.listen));
  k.state_dir = (fs::path(c->state_dir) / "agent").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("state_dir", /*required=*/false, &k.state_dir));
  k.packages_dir = (fs::path(k.state_dir) / "packages").string();
  TANDEM_RETURN_IF_ERROR(s.GetPath("packages_dir", /*required=*/false, &k.packages_dir));
  k.store_dir = c->store_dir;
  TANDEM_RETURN_IF_ERROR(s.GetPath("store_dir", /*required=*/false, &k.store_dir));
  TANDEM_RETURN_IF_ERROR(s.GetPath("transient_dir", /*required=*/false, &k.transient_dir));
  TANDEM_RETURN_IF_ERROR(GetBool(s, "external_storage", &k.external_storage));
  TANDEM_RETURN_IF_ERROR(GetBool(s, "virtual", &k.virtual_appliance));
  int64_t port = k.heartbeat_port;
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("heartbeat_port", 1, 65535, &port));
  k.heartbeat_port = static_cast<int>(port);
  port = k.replication_port;
  TANDEM_RETURN_IF_ERROR(s.GetIntInRange("replication_port", 1, 65535, &port));
  k.replication_port = static_cast<int>(port);
  if (c->replication && !c->store_dir.empty()) {
    const std::string& a = k.state_dir;
    const std::string& b = c->store_dir;
    if (a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/')) {
      return s.Error("state_dir", "must be outside replication.store_dir (the agent's pairing "
                                  "is this host's own), got " + Quote(a));
    }
  }
  if (c->console.enabled && c->console.listen == k.listen) {
    return s.Error("listen", "must differ from console.listen (" + k.listen.ToString() + ")");
  }
  return Status::Ok();
}

// An agent-only host (docs/CONFIG.md, [agent]) runs no HA role: the
// sections that configure one are refused rather than ignored.
Status CheckAgentOnly(const Context& ctx, const toml::table& root, const Config& c) {
  for (std::string_view name :
       {"connectivity", "service", "notify", "vip", "replication", "collector"}) {
    if (root.get(name) != nullptr) {
      return ctx.Error(name, "needs [cluster] and [heartbeat]; a host with [agent] and without "
                             "them is an unclustered managed host that runs the agent only");
    }
  }
  if (!c.http_listen.empty()) {
    return ctx.Error("api.http_listen",
                     "needs [cluster] and [heartbeat] (an agent-only host has no HA status or "
                     "store to serve)");
  }
  return Status::Ok();
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads up to max_bytes + 1 bytes (so the caller can tell "too large").
Status ReadAll(int fd, size_t max_bytes, std::string* out) {
  out->clear();
  char buf[4096];
  while (out->size() <= max_bytes) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error(ErrnoText(errno));
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Opens and checks a secret file (mode 0600 or stricter, regular, bounded),
// and reads it. O_NONBLOCK so a FIFO cannot hang the daemon; fstat on the
// open fd so the checked file is the read file.
Status ReadSecretFile(const Context& ctx, std::string_view key_name, const std::string& file,
                      std::string* out) {
  const std::string_view kKey = key_name;
  const Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    return ctx.Error(kKey, "cannot open " + Quote(file) + ": " + ErrnoText(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    const int err = errno;
    return ctx.Error(kKey, "cannot stat " + Quote(file) + ": " + ErrnoText(err));
  }
  if (!S_ISREG(st.st_mode)) return ctx.Error(kKey, Quote(file) + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return ctx.Error(kKey, Quote(file) + " has mode " + mode +
                               "; it must not be readable or writable by group or others "
                               "(chmod 600)");
  }
  std::string key;
  Status read = ReadAll(fd.get(), kKeyFileBytesMax, &key);
  if (!read.ok()) return ctx.Error(kKey, "cannot read " + Quote(file) + ": " + read.message());
  if (key.size() > kKeyFileBytesMax) {
    return ctx.Error(
        kKey, Quote(file) + " is larger than " + std::to_string(kKeyFileBytesMax) + " bytes");
  }
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (key.size() < kClusterKeyBytesMin) {
    return ctx.Error(kKey, "key in " + Quote(file) + " is " + std::to_string(key.size()) +
                               " bytes, must be at least " + std::to_string(kClusterKeyBytesMin));
  }
  *out = std::move(key);
  return Status::Ok();
}

Status ReadKeyFile(const Context& ctx, Config* c) {
  return ReadSecretFile(ctx, "cluster.key_file", c->key_file, &c->cluster_key);
}

Status ReadTokenFile(const Context& ctx, Config* c) {
  return ReadSecretFile(ctx, "api.token_file", c->api_token_file, &c->api_token);
}

using SectionFn = Status (*)(const Section&, Config*);

Status ParseSection(const Context& ctx, const toml::table& root, std::string_view name,
                    SectionFn fn, Config* c) {
  Result<const toml::table*> table = GetTable(ctx, root, name);
  if (!table.ok()) return table.status();
  return fn(Section(ctx, *table, std::string(name)), c);
}

// Tables in file order of the reference; the key file is read last, so
// every mistake in the text is reported before one on disk.
Status ParseSections(const Context& ctx, const toml::table& root, Config* c) {
  TANDEM_RETURN_IF_ERROR(CheckTopLevel(ctx, root));
  c->agent_only = root.get("agent") != nullptr && root.get("cluster") == nullptr &&
                  root.get("heartbeat") == nullptr;
  if (c->agent_only) {
    TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "host", ParseHost, c));
    TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "log", ParseLog, c));
    TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "api", ParseApi, c));
    TANDEM_RETURN_IF_ERROR(CheckAgentOnly(ctx, root, *c));
    TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "console", ParseConsole, c));
    return ParseSection(ctx, root, "agent", ParseAgent, c);
  }
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "cluster", ParseCluster, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "host", ParseHost, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "heartbeat", ParseHeartbeat, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "connectivity", ParseConnectivity, c));
  TANDEM_RETURN_IF_ERROR(ParseServices(ctx, root, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "notify", ParseNotify, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "log", ParseLog, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "api", ParseApi, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "vip", ParseVip, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "replication", ParseReplication, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "collector", ParseCollector, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "console", ParseConsole, c));
  TANDEM_RETURN_IF_ERROR(ParseSection(ctx, root, "agent", ParseAgent, c));
  if (!ctx.read_key) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(ReadKeyFile(ctx, c));
  return c->api_token_file.empty() ? Status::Ok() : ReadTokenFile(ctx, c);
}

// Never returns a message with a line break in it.
std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : s) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

Result<Config> ParseOrThrow(const std::string& text, const std::string& path, bool read_key) {
  if (text.size() > kConfigFileBytesMax) {
    return Status::Error(path + ": file is larger than " + std::to_string(kConfigFileBytesMax) +
                         " bytes");
  }
  std::error_code ec;
  fs::path abs = fs::absolute(path.empty() ? fs::path(".") : fs::path(path), ec);
  if (ec) return Status::Error(path + ": cannot resolve path: " + ec.message());
  abs = abs.lexically_normal();
  const Context ctx{path, abs.parent_path(), read_key};
  const toml::table root = toml::parse(text, path);
  Config c;
  c.path = abs.string();
  TANDEM_RETURN_IF_ERROR(ParseSections(ctx, root, &c));
  return c;
}

}  // namespace

std::string Endpoint::ToString() const {
  if (empty()) return std::string();
  return port == 0 ? "icmp:" + host : host + ":" + std::to_string(port);
}

std::optional<uint32_t> ParseIPv4(std::string_view text) {
  uint32_t addr = 0;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    size_t n = 0;
    uint32_t octet = 0;
    while (n < text.size() && n < 4 && text[n] >= '0' && text[n] <= '9') {
      octet = octet * 10 + static_cast<uint32_t>(text[n] - '0');
      ++n;
    }
    if (n == 0 || n > 3 || octet > 255 || (n > 1 && text.front() == '0')) return std::nullopt;
    addr = (addr << 8) | octet;
    text.remove_prefix(n);
  }
  if (!text.empty()) return std::nullopt;
  return addr;
}

Result<Endpoint> ParseEndpoint(std::string_view text) {
  const auto fail = [text](std::string_view why) {
    return Status::Error("expected \"a.b.c.d:port\", got " + Quote(text) + " (" + std::string(why) +
                         ")");
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail("no \":port\"");
  const std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (!ParseIPv4(host)) return fail("not a dotted-quad IPv4 address");
  constexpr std::string_view kBadPort = "port must be a decimal number 1..65535";
  if (port.empty() || port.size() > 5 || port.front() == '0') return fail(kBadPort);
  uint32_t value = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return fail(kBadPort);
    value = value * 10 + static_cast<uint32_t>(ch - '0');
  }
  if (value > 65535) return fail(kBadPort);
  return Endpoint{std::string(host), static_cast<uint16_t>(value)};
}

Result<Config> Parse(const std::string& text, const std::string& path, bool read_key) {
  try {
    return ParseOrThrow(text, path, read_key);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    return Status::Error(path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) +
                         ": TOML syntax error: " + OneLine(e.description()));
  } catch (const std::exception& e) {
    return Status::Error(path + ": cannot parse: " + OneLine(e.what()));
  } catch (...) {
    return Status::Error(path + ": cannot parse: unknown error");
  }
}

Result<Config> Load(const std::string& path, bool read_key) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    return Status::Error(path + ": cannot read: " + ErrnoText(err));
  }
  std::string text;
  Status read = ReadAll(fd.get(), kConfigFileBytesMax, &text);
  if (!read.ok()) return Status::Error(path + ": cannot read: " + read.message());
  return Parse(text, path, read_key);
}

}  // namespace tandem::config
