// HA clusters (R-DEP-2..4, R-CL-1..5, R-OP-4, R-OP-5), HA licenses and the
// console's settings: the handlers of /api/v1/clusters, /api/v1/licenses and
// /api/v1/settings (docs/CONSOLE.md, "Clusters", "Licenses", "Settings").
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "console/api.h"
#include "console/api_internal.h"
#include "console/license.h"

namespace tandem::console {

using nlohmann::json;
using namespace api_internal;

namespace {

// ---- settings ----

struct SettingDef {
  const char* key;
  int64_t def, lo, hi;
  const char* what;
};

constexpr SettingDef kSettings[] = {
    {"min_store_gb", 130, 0, 1 << 20,
     "R-CL-4: warn at cluster creation when a host's store + transient is below this many GB "
     "(10^9 bytes); 0: never"},
    {"min_store_gb_virtual", 256, 0, 1 << 20,
     "the same minimum for virtual appliances (facts.virtual)"},
    {"measure_bytes", 16 << 20, 1 << 20, 256 << 20,
     "bytes streamed by the link measurement at cluster creation (R-CL-4)"},
    {"auto_push_packages", 1, 0, 1,
     "R-UP-2: 1: the poller pushes a cluster primary's newer content packages to its secondary"},
};

const SettingDef* FindSetting(std::string_view key) {
  for (const SettingDef& d : kSettings) {
    if (key == d.key) return &d;
  }
  return nullptr;
}

// The stored value, else the default. REQUIRES: db.mu() held.
Result<int64_t> SettingValue(Db& db, const SettingDef& d, bool* set = nullptr) {
  auto s = db.Prepare("SELECT value FROM settings WHERE key = ?1");
  if (!s.ok()) return s.status();
  s->Bind(1, std::string_view(d.key));
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (set != nullptr) *set = *row;
  if (!*row) return d.def;
  const std::string v = s->Text(0);
  int64_t n = 0;
  bool ok = !v.empty() && v.size() <= 18;
  for (char ch : v) {
    ok = ok && ch >= '0' && ch <= '9';
    if (ok) n = n * 10 + (ch - '0');
  }
  if (!ok || n < d.lo || n > d.hi) return d.def;  // not written by this API: ignored
  return n;
}

// ---- addresses ----

// A strict dotted quad ("198.18.0.1"; no leading zeros, each part 0..255).
bool ParseIpv4(std::string_view s, uint32_t* out) {
  uint32_t v = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    size_t start = i;
    uint32_t part = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
      part = part * 10 + static_cast<uint32_t>(s[i] - '0');
      ++i;
    }
    if (i == start || part > 255 || (i - start > 1 && s[start] == '0')) return false;
    v = (v << 8) | part;
    ++parts;
    if (parts < 4) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  if (i != s.size()) return false;
  *out = v;
  return true;
}

// "a.b.c.d/len".
bool ParseCidr(std::string_view s, uint32_t* addr, int* len) {
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos || !ParseIpv4(s.substr(0, slash), addr)) return false;
  std::string_view l = s.substr(slash + 1);
  if (l.empty() || l.size() > 2) return false;
  int n = 0;
  for (char ch : l) {
    if (ch < '0' || ch > '9') return false;
    n = n * 10 + (ch - '0');
  }
  if (n > 32) return false;
  *len = n;
  return true;
}

uint32_t Mask(int len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }

std::string Ipv4Text(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

// "host:port" -> "host" (an address without a port is returned whole).
std::string HostPart(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// ---- facts (docs/CONSOLE.md, "Facts") ----

struct Iface {
  std::string name;
  std::vector<std::pair<uint32_t, int>> addresses;  // address, prefix length
  bool physical = false;
};

struct Package {
  std::string version, kind;
};

struct Facts {
  std::string version, management_interface;
  uint32_t address = 0;
  std::map<std::string, Package> packages;  // by name
  std::vector<Iface> interfaces;
  int64_t store_bytes = 0, transient_bytes = 0;
  bool has_store = false, external_storage = false, is_virtual = false;

  const Iface* Find(const std::string& name) const {
    for (const Iface& i : interfaces) {
      if (i.name == name) return &i;
    }
    return nullptr;
  }
  // The prefix length of `address` on its interfaces, or -1.
  int PrefixOfAddress() const {
    for (const Iface& i : interfaces) {
      for (const auto& [a, len] : i.addresses) {
        if (a == address) return len;
      }
    }
    return -1;
  }
  int PhysicalCount() const {
    return static_cast<int>(std::count_if(interfaces.begin(), interfaces.end(),
                                          [](const Iface& i) { return i.physical; }));
  }
};

ApiResponse FactsIncomplete(const std::string& host, const std::string& what,
                            const std::string& field) {
  return ApiError(409, "facts_incomplete",
                  "the facts of host " + Quote(host) + " " + what +
                      " (the console needs the host's current facts: is it paired and reachable?)",
                  field);
}

// Reads the facts a host's agent reported (facts_json). `field` is the
// request field naming the host, for the error.
Error ParseFacts(const std::string& facts_json, const std::string& host, const std::string& field,
                 Facts* f) {
  if (facts_json.empty()) return FactsIncomplete(host, "are not known yet", field);
  json j = json::parse(facts_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return FactsIncomplete(host, "are not a JSON object", field);
  auto str = [&](const char* key, std::string* out) -> Error {
    if (!j.contains(key) || !j[key].is_string()) {
      return FactsIncomplete(host, std::string("lack the string \"") + key + "\"", field);
    }
    *out = j[key].get<std::string>();
    return std::nullopt;
  };
  std::string address;
  if (Error e = str("version", &f->version)) return e;
  if (Error e = str("management_interface", &f->management_interface)) return e;
  if (Error e = str("address", &address)) return e;
  if (!ParseIpv4(address, &f->address)) {
    return FactsIncomplete(host, "give an address that is not a dotted quad: " + Quote(address),
                           field);
  }
  if (!j.contains("packages") || !j["packages"].is_array()) {
    return FactsIncomplete(host, "lack the \"packages\" array", field);
  }
  for (const json& p : j["packages"]) {
    if (!p.is_object() || !p.value("name", json()).is_string() ||
        !p.value("version", json()).is_string() || !p.value("kind", json()).is_string()) {
      return FactsIncomplete(host, "have a package without a name, version or kind", field);
    }
    f->packages[p["name"].get<std::string>()] =
        Package{p["version"].get<std::string>(), p["kind"].get<std::string>()};
  }
  if (!j.contains("interfaces") || !j["interfaces"].is_array()) {
    return FactsIncomplete(host, "lack the \"interfaces\" array", field);
  }
  for (const json& i : j["interfaces"]) {
    if (!i.is_object() || !i.value("name", json()).is_string() ||
        !i.value("addresses", json()).is_array()) {
      return FactsIncomplete(host, "have an interface without a name or addresses", field);
    }
    Iface iface;
    iface.name = i["name"].get<std::string>();
    iface.physical = i.value("physical", json()).is_boolean() && i["physical"].get<bool>();
    for (const json& a : i["addresses"]) {
      uint32_t addr = 0;
      int len = 0;
      if (a.is_string() && ParseCidr(a.get<std::string>(), &addr, &len)) {
        iface.addresses.emplace_back(addr, len);
      }
    }
    f->interfaces.push_back(std::move(iface));
  }
  auto bytes = [&](const char* key, int64_t* out, bool* present) -> Error {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    const json& v = j[key];
    if (!v.is_object() || !v.value("bytes_total", json()).is_number_integer()) {
      return FactsIncomplete(host, std::string("give \"") + key + "\" without bytes_total", field);
    }
    *out = v["bytes_total"].get<int64_t>();
    if (present != nullptr) *present = true;
    return std::nullopt;
  };
  if (Error e = bytes("store", &f->store_bytes, &f->has_store)) return e;
  if (Error e = bytes("transient", &f->transient_bytes, nullptr)) return e;
  f->external_storage = j.value("external_storage", json()).is_boolean() && j["external_storage"].get<bool>();
  f->is_virtual = j.value("virtual", json()).is_boolean() && j["virtual"].get<bool>();
  return std::nullopt;
}

// ---- hosts ----

struct HostRow {
  int64_t id = 0;
  std::string name, role, address;
  std::optional<int64_t> cluster_id;
  std::string agent_address, cert_pem, key, facts_json, status, status_reason;
};

constexpr const char* kHostColumns =
    "id, name, role, address, cluster_id, agent_address, agent_cert_pem, agent_key, facts_json, "
    "status, status_reason";

HostRow ReadHost(const Stmt& s) {
  HostRow h;
  h.id = s.Int(0);
  h.name = s.Text(1);
  h.role = s.Text(2);
  h.address = s.Text(3);
  if (!s.IsNull(4)) h.cluster_id = s.Int(4);
  h.agent_address = s.Text(5);
  h.cert_pem = s.Text(6);
  h.key = s.Text(7);
  h.facts_json = s.Text(8);
  h.status = s.Text(9);
  h.status_reason = s.Text(10);
  return h;
}

// REQUIRES: db.mu() held.
Result<std::optional<HostRow>> LoadHost(Db& db, std::string_view sql_where, const std::string& name,
                                        int64_t id) {
  auto s = db.Prepare(std::string("SELECT ") + kHostColumns + " FROM hosts WHERE " +
                      std::string(sql_where));
  if (!s.ok()) return s.status();
  if (id != 0) s->Bind(1, id);
  else s->Bind(1, name);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<HostRow>();
  return std::optional<HostRow>(ReadHost(*s));
}
Result<std::optional<HostRow>> HostByName(Db& db, const std::string& name) {
  return LoadHost(db, "name = ?1", name, 0);
}
Result<std::optional<HostRow>> HostById(Db& db, int64_t id) {
  return LoadHost(db, "id = ?1", "", id);
}

// ---- advanced options (R-CL-2) ----

constexpr size_t kPeersMax = 64;
constexpr size_t kInterfaceNameMax = 15;  // IFNAMSIZ - 1

struct ClusterOptions {
  int64_t heartbeat_interval_ms = 10000;
  int64_t heartbeat_timeout_ms = 30000;
  std::optional<std::vector<std::string>> connectivity_peers;  // nullopt: the default
  int64_t sync_rate_mb = 100;
  bool disable_replication = false;
  std::string crossover_interface, crossover_primary_ip, crossover_secondary_ip;  // "": none

  json ToJson() const {
    auto opt = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    return json{{"heartbeat_interval_ms", heartbeat_interval_ms},
                {"heartbeat_timeout_ms", heartbeat_timeout_ms},
                {"connectivity_peers",
                 connectivity_peers ? json(*connectivity_peers) : json(nullptr)},
                {"sync_rate_mb", sync_rate_mb},
                {"disable_replication", disable_replication},
                {"crossover_interface", opt(crossover_interface)},
                {"crossover_primary_ip", opt(crossover_primary_ip)},
                {"crossover_secondary_ip", opt(crossover_secondary_ip)}};
  }
};

constexpr std::string_view kOptionKeys[] = {
    "heartbeat_interval_ms", "heartbeat_timeout_ms", "connectivity_peers",
    "sync_rate_mb",          "disable_replication",  "crossover_interface",
    "crossover_primary_ip",  "crossover_secondary_ip"};

Error OptInt(const json& v, const std::string& field, int64_t lo, int64_t hi, int64_t* out) {
  if (!v.is_number_integer()) return Fail(400, "must be an integer, got " + TypeName(v), field);
  const int64_t n = v.get<int64_t>();
  if (n < lo || n > hi) {
    return Fail(400, "must be from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                         std::to_string(n),
                field);
  }
  *out = n;
  return std::nullopt;
}

// A connectivity-test peer: "a.b.c.d" (ICMP) or "a.b.c.d:port" (TCP).
bool IsPeer(const std::string& s) {
  uint32_t a = 0;
  const size_t colon = s.find(':');
  if (colon == std::string::npos) return ParseIpv4(s, &a);
  if (!ParseIpv4(std::string_view(s).substr(0, colon), &a)) return false;
  std::string_view port = std::string_view(s).substr(colon + 1);
  if (port.empty() || port.size() > 5 || port[0] == '0') return false;
  int64_t p = 0;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return false;
    p = p * 10 + (ch - '0');
  }
  return p >= 1 && p <= 65535;
}

// Applies the fields given in `in` (an object of the option keys) to *o,
// each type- and range-checked; fields are named "options.<key>". A null
// resets connectivity_peers to the default and clears a crossover field.
Error ApplyOptions(const json& in, ClusterOptions* o) {
  if (!in.is_object()) return Fail(400, "must be an object, got " + TypeName(in), "options");
  for (const auto& [key, v] : in.items()) {
    const std::string field = "options." + key;
    if (std::find(std::begin(kOptionKeys), std::end(kOptionKeys), key) == std::end(kOptionKeys)) {
      return Fail(400, "unknown option", field);
    }
    if (key == "heartbeat_interval_ms") {
      if (Error e = OptInt(v, field, 10, 600000, &o->heartbeat_interval_ms)) return e;
    } else if (key == "heartbeat_timeout_ms") {
      if (Error e = OptInt(v, field, 11, 3600000, &o->heartbeat_timeout_ms)) return e;
    } else if (key == "sync_rate_mb") {
      if (Error e = OptInt(v, field, 1, 4096, &o->sync_rate_mb)) return e;
    } else if (key == "disable_replication") {
      if (!v.is_boolean()) return Fail(400, "must be a boolean, got " + TypeName(v), field);
      o->disable_replication = v.get<bool>();
    } else if (key == "connectivity_peers") {
      if (v.is_null()) {
        o->connectivity_peers.reset();
        continue;
      }
      if (!v.is_array()) return Fail(400, "must be an array of addresses or null, got " + TypeName(v), field);
      if (v.size() > kPeersMax) {
        return Fail(400, "at most " + std::to_string(kPeersMax) + " peers, got " + std::to_string(v.size()), field);
      }
      std::vector<std::string> peers;
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string f = field + "[" + std::to_string(i) + "]";
        if (!v[i].is_string() || !IsPeer(v[i].get<std::string>())) {
          return Fail(400, "must be \"a.b.c.d\" (ICMP) or \"a.b.c.d:port\" (TCP), got " +
                               (v[i].is_string() ? Quote(v[i].get<std::string>()) : TypeName(v[i])),
                      f);
        }
        if (std::find(peers.begin(), peers.end(), v[i].get<std::string>()) != peers.end()) {
          return Fail(400, "duplicate peer " + Quote(v[i].get<std::string>()), f);
        }
        peers.push_back(v[i].get<std::string>());
      }
      o->connectivity_peers = std::move(peers);
    } else {  // the crossover fields
      std::string* out = key == "crossover_interface"    ? &o->crossover_interface
                         : key == "crossover_primary_ip" ? &o->crossover_primary_ip
                                                         : &o->crossover_secondary_ip;
      if (v.is_null()) {
        out->clear();
        continue;
      }
      if (!v.is_string()) return Fail(400, "must be a string or null, got " + TypeName(v), field);
      const std::string s = v.get<std::string>();
      if (key == "crossover_interface") {
        const bool ok = !s.empty() && s.size() <= kInterfaceNameMax &&
                        std::all_of(s.begin(), s.end(), [](char ch) {
                          return ch > ' ' && ch < 0x7F && ch != '/' && ch != ':';
                        });
        if (!ok) {
          return Fail(400, "must be an interface name (1 to 15 characters, no space, / or :), got " + Quote(s),
                      field);
        }
      } else {
        uint32_t a = 0;
        if (!ParseIpv4(s, &a)) return Fail(400, "must be a dotted-quad address, got " + Quote(s), field);
      }
      *out = s;
    }
  }
  return std::nullopt;
}

// What the options are checked against beyond their own ranges.
struct OptionsContext {
  bool primary_is_console = false;
  const Facts* primary = nullptr;    // null: unknown
  const Facts* secondary = nullptr;  // null: no secondary (or unknown)
  std::vector<uint32_t> cluster_ips;  // VIP, primary, secondary addresses
};

Error CheckOptions(const ClusterOptions& o, const OptionsContext& ctx) {
  if (o.heartbeat_timeout_ms <= o.heartbeat_interval_ms) {
    return Fail(400, "must be greater than options.heartbeat_interval_ms (" +
                         std::to_string(o.heartbeat_interval_ms) + "), got " +
                         std::to_string(o.heartbeat_timeout_ms),
                "options.heartbeat_timeout_ms");
  }
  if (o.disable_replication && ctx.primary_is_console) {
    return Fail(400, "disk replication can be disabled on clusters of managed hosts only; the "
                     "primary is the console",
                "options.disable_replication");
  }
  const bool any = !o.crossover_interface.empty() || !o.crossover_primary_ip.empty() ||
                   !o.crossover_secondary_ip.empty();
  if (!any) return std::nullopt;
  for (const auto& [value, key] : {std::pair{&o.crossover_interface, "crossover_interface"},
                                   std::pair{&o.crossover_primary_ip, "crossover_primary_ip"},
                                   std::pair{&o.crossover_secondary_ip, "crossover_secondary_ip"}}) {
    if (value->empty()) {
      return Fail(400, "give crossover_interface, crossover_primary_ip and crossover_secondary_ip "
                       "together, or none of them",
                  std::string("options.") + key);
    }
  }
  uint32_t p = 0, s = 0;
  ParseIpv4(o.crossover_primary_ip, &p);
  ParseIpv4(o.crossover_secondary_ip, &s);
  if (p == s) {
    return Fail(400, "must differ from options.crossover_primary_ip", "options.crossover_secondary_ip");
  }
  for (uint32_t ip : ctx.cluster_ips) {
    if (ip == p || ip == s) {
      return Fail(400, "the crossover addresses must differ from the cluster's VIP and host addresses, "
                       "but " + Ipv4Text(ip) + " is one of them",
                  ip == p ? "options.crossover_primary_ip" : "options.crossover_secondary_ip");
    }
  }
  for (const Facts* f : {ctx.primary, ctx.secondary}) {
    if (f == nullptr) continue;
    const char* which = f == ctx.primary ? "primary" : "secondary";
    if (f->management_interface == o.crossover_interface) {
      return Fail(400, std::string("must not be the management interface of the ") + which + " (" +
                           o.crossover_interface + ")",
                  "options.crossover_interface");
    }
    if (f->Find(o.crossover_interface) == nullptr) {
      return ApiError(409, "crossover_interface_missing",
                      std::string("the ") + which + " has no interface " + Quote(o.crossover_interface),
                      "options.crossover_interface");
    }
  }
  return std::nullopt;
}

ClusterOptions OptionsFromStored(const std::string& text) {
  ClusterOptions o;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) (void)ApplyOptions(j, &o);  // written by this file: valid
  return o;
}

// Default connectivity-test peers (R-CL-2): every other managed host of
// the deployment (a clustered host by its cluster's VIP), in host order.
// REQUIRES: db.mu() held.
Result<std::vector<std::string>> DefaultPeers(Db& db, int64_t cluster_id, int64_t primary_id,
                                              int64_t secondary_id) {
  auto s = db.Prepare(
      "SELECT h.id, h.address, h.cluster_id, c.vip FROM hosts h "
      "LEFT JOIN clusters c ON c.id = h.cluster_id WHERE h.role = 'managed' ORDER BY h.id");
  if (!s.ok()) return s.status();
  std::vector<std::string> peers;
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (s->Int(0) == primary_id || s->Int(0) == secondary_id) continue;
    if (!s->IsNull(2) && s->Int(2) == cluster_id) continue;
    std::string a = s->IsNull(2) ? HostPart(s->Text(1)) : s->Text(3);
    uint32_t ip = 0;
    if (!ParseIpv4(a, &ip)) continue;
    if (std::find(peers.begin(), peers.end(), a) == peers.end()) peers.push_back(a);
  }
  return peers;
}

// ---- licenses ----

struct LicenseRow {
  int64_t row = 0;
  std::string license_id, kind, issued_to, key_id, document;
  int64_t expires_at_ms = 0, added_at_ms = 0;
  std::optional<std::string> cluster;
};

constexpr const char* kLicenseSelect =
    "SELECT l.id, l.license_id, l.kind, l.issued_to, l.key_id, l.document, l.expires_at_ms, "
    "l.added_at_ms, c.name FROM licenses l LEFT JOIN clusters c ON c.license_id = l.id ";

LicenseRow ReadLicense(const Stmt& s) {
  LicenseRow l;
  l.row = s.Int(0);
  l.license_id = s.Text(1);
  l.kind = s.Text(2);
  l.issued_to = s.Text(3);
  l.key_id = s.Text(4);
  l.document = s.Text(5);
  l.expires_at_ms = s.Int(6);
  l.added_at_ms = s.Int(7);
  if (!s.IsNull(8)) l.cluster = s.Text(8);
  return l;
}

// REQUIRES: db.mu() held. `where` binds ?1 to `key`.
Result<std::vector<LicenseRow>> LoadLicenses(Db& db, const char* where, std::string_view key,
                                             int64_t id) {
  auto s = db.Prepare(std::string(kLicenseSelect) + where);
  if (!s.ok()) return s.status();
  if (id != 0) s->Bind(1, id);
  else if (!key.empty()) s->Bind(1, key);
  std::vector<LicenseRow> out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(ReadLicense(*s));
  }
  return out;
}

json LicenseJson(const LicenseRow& l, const LicenseCheck& check) {
  return json{{"id", l.license_id},
              {"kind", l.kind},
              {"issued_to", l.issued_to},
              {"expires", Rfc3339Seconds(l.expires_at_ms)},
              {"expires_at_ms", l.expires_at_ms},
              {"key_id", l.key_id},
              {"added_at", Rfc3339Ms(l.added_at_ms)},
              {"cluster", l.cluster ? json(*l.cluster) : json(nullptr)},
              {"valid", check.problem == LicenseProblem::kNone},
              {"problem", check.problem == LicenseProblem::kNone ? json(nullptr)
                                                                 : json(LicenseProblemName(check.problem))},
              {"message", check.problem == LicenseProblem::kNone ? json(nullptr) : json(check.message)}};
}

// The error of a license that cannot be used (added or assigned).
ApiResponse LicenseRefusal(const LicenseCheck& c, const std::string& field) {
  switch (c.problem) {
    case LicenseProblem::kMalformed: return ApiError(400, "license_malformed", c.message, field);
    case LicenseProblem::kUnknownKey: return ApiError(400, "license_unknown_key", c.message, field);
    case LicenseProblem::kBadSignature: return ApiError(400, "license_bad_signature", c.message, field);
    case LicenseProblem::kExpired: return ApiError(400, "license_expired", c.message, field);
    case LicenseProblem::kNone: break;
  }
  return Fail(500, "license: no problem to report");
}

// ---- clusters ----

json Warning(const std::string& code, const std::string& message) {
  return json{{"code", code}, {"message", message}};
}

Status AddPendingChange(Db& db, int64_t now, const std::string& what) {
  auto s = db.Prepare("INSERT INTO pending_changes (at_ms, what) VALUES (?1, ?2)");
  if (!s.ok()) return s.status();
  return s->Bind(1, now).Bind(2, what).Run();
}

Result<int64_t> CountRows(Db& db, const char* sql) {
  auto s = db.Prepare(sql);
  if (!s.ok()) return s.status();
  auto row = s->Step();
  if (!row.ok()) return row.status();
  return s->Int(0);
}

struct CreateInput {
  std::string primary, secondary, new_ip_text;
  uint32_t new_ip = 0;
  std::optional<std::string> license;  // nullopt: the console picks a free one
  ClusterOptions options;
};

struct CreatePlan {
  HostRow p, s;
  Facts pf, sf;
  int64_t license_row = 0;  // 0: none
  std::string license_id;
  int64_t measure_bytes = 0;
  json warnings = json::array();  // storage and license warnings
};

std::string GbText(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GB", static_cast<double>(bytes) / 1e9);
  return b;
}

std::string PackageDifferences(const Facts& p, const Facts& s) {
  std::vector<std::string> diffs;
  for (const auto& [name, pkg] : p.packages) {
    auto it = s.packages.find(name);
    if (it == s.packages.end()) {
      diffs.push_back(name + " " + pkg.version + " (" + pkg.kind + ") only on the primary");
    } else if (it->second.version != pkg.version || it->second.kind != pkg.kind) {
      diffs.push_back(name + ": primary " + pkg.version + " (" + pkg.kind + "), secondary " +
                      it->second.version + " (" + it->second.kind + ")");
    }
  }
  for (const auto& [name, pkg] : s.packages) {
    if (!p.packages.contains(name)) {
      diffs.push_back(name + " " + pkg.version + " (" + pkg.kind + ") only on the secondary");
    }
  }
  std::string out;
  for (size_t i = 0; i < diffs.size() && i < 5; ++i) out += (i ? "; " : "") + diffs[i];
  if (diffs.size() > 5) out += "; and " + std::to_string(diffs.size() - 5) + " more";
  return out;
}

// The R-CL-3 checks between the facts of a cluster's two members: version,
// content packages, storage, subnet, physical interfaces, management
// interface. Used at creation and, against the remaining member, when a
// member is replaced. `pfield`/`sfield`: the request field naming each
// host ("" for none), for facts_incomplete; `subnet_field`: the field a
// subnet_mismatch names.
Error CheckMemberFacts(const HostRow& ph, const Facts& pf, const std::string& pfield, const HostRow& sh,
                       const Facts& sf, const std::string& sfield, const std::string& subnet_field) {
  auto conflict = [](const std::string& code, const std::string& message,
                     const std::string& field = "") { return ApiError(409, code, message, field); };
  if (pf.version != sf.version) {
    return conflict("version_mismatch", "the primary runs version " + pf.version +
                                            ", the secondary " + sf.version +
                                            "; both hosts must run the same version");
  }
  if (std::string d = PackageDifferences(pf, sf); !d.empty()) {
    return conflict("packages_mismatch", "the installed content packages differ: " + d);
  }
  if (pf.external_storage && !sf.external_storage) {
    return conflict("external_storage_unreachable",
                    "the primary uses external storage and the secondary does not reach it "
                    "(its agent reports external_storage = false)");
  }
  if (!pf.external_storage && sf.store_bytes + sf.transient_bytes < pf.store_bytes) {
    return conflict("secondary_storage_too_small",
                    "the secondary's store + transient (" + GbText(sf.store_bytes + sf.transient_bytes) +
                        ") is smaller than the primary's store (" + GbText(pf.store_bytes) + ")");
  }
  const int plen = pf.PrefixOfAddress(), slen = sf.PrefixOfAddress();
  if (plen < 0) {
    return FactsIncomplete(ph.name, "do not show its address " + Ipv4Text(pf.address) + " on any interface",
                           pfield);
  }
  if (slen < 0) {
    return FactsIncomplete(sh.name, "do not show its address " + Ipv4Text(sf.address) + " on any interface",
                           sfield);
  }
  const uint32_t pnet = pf.address & Mask(plen), snet = sf.address & Mask(slen);
  if (plen != slen || pnet != snet) {
    return conflict("subnet_mismatch", "the hosts are not in the same subnet: the primary is in " +
                                           Ipv4Text(pnet) + "/" + std::to_string(plen) +
                                           ", the secondary in " + Ipv4Text(snet) + "/" +
                                           std::to_string(slen),
                    subnet_field);
  }
  if (pf.PhysicalCount() > sf.PhysicalCount()) {
    return conflict("interfaces_fewer", "the primary has " + std::to_string(pf.PhysicalCount()) +
                                            " physical interfaces, the secondary only " +
                                            std::to_string(sf.PhysicalCount()));
  }
  if (pf.management_interface != sf.management_interface) {
    return conflict("management_interface_mismatch",
                    "the management interfaces differ: primary " + Quote(pf.management_interface) +
                        ", secondary " + Quote(sf.management_interface));
  }
  return std::nullopt;
}

// Every R-CL-3 check of creating a cluster, against the database as it is
// now; fills *plan. REQUIRES: db.mu() held.
Error PlanCreate(Db& db, const CreateInput& in, const std::vector<LicenseKey>& keys, int64_t now,
                 CreatePlan* plan) {
  auto conflict = [](const std::string& code, const std::string& message,
                     const std::string& field = "") { return ApiError(409, code, message, field); };
  // The hosts.
  auto p = HostByName(db, in.primary);
  if (!p.ok()) return Internal(p.status());
  if (!*p) return Fail(404, "no host named " + Quote(in.primary), "primary");
  auto s = HostByName(db, in.secondary);
  if (!s.ok()) return Internal(s.status());
  if (!*s) return Fail(404, "no host named " + Quote(in.secondary), "secondary");
  plan->p = **p;
  plan->s = **s;
  const HostRow& ph = plan->p;
  const HostRow& sh = plan->s;
  if (sh.role == "console") {
    return conflict("secondary_is_console",
                    "host " + Quote(sh.name) + " is the console; the console can be the primary of a "
                    "cluster, never the secondary",
                    "secondary");
  }
  if (ph.cluster_id) {
    return conflict("primary_in_cluster", "host " + Quote(ph.name) + " is already in a cluster", "primary");
  }
  if (sh.cluster_id) {
    return conflict("secondary_in_cluster",
                    "host " + Quote(sh.name) + " is already in a cluster; disconnect it first", "secondary");
  }
  // The credential of R-CL-1: the secondary (and primary) were paired with
  // the console with their one-time pairing tokens.
  for (const HostRow* h : {&ph, &sh}) {
    if (h->agent_address.empty() || h->key.empty()) {
      return conflict("host_not_paired",
                      "host " + Quote(h->name) + " is not paired with the console (POST /api/v1/hosts "
                      "with its pairing token first)",
                      h == &ph ? "primary" : "secondary");
    }
  }
  if (Error e = ParseFacts(ph.facts_json, ph.name, "primary", &plan->pf)) return e;
  if (Error e = ParseFacts(sh.facts_json, sh.name, "secondary", &plan->sf)) return e;
  const Facts& pf = plan->pf;
  const Facts& sf = plan->sf;
  auto pending = CountRows(db, "SELECT COUNT(*) FROM pending_changes");
  if (!pending.ok()) return Internal(pending.status());
  if (*pending > 0) {
    return conflict("undeployed_changes",
                    "there are " + std::to_string(*pending) +
                        " undeployed configuration changes; deploy them before creating a cluster");
  }
  if (Error e = CheckMemberFacts(ph, pf, "primary", sh, sf, "secondary", "secondary")) return e;
  const int plen = pf.PrefixOfAddress();  // >= 0: checked
  const uint32_t pnet = pf.address & Mask(plen);
  if ((in.new_ip & Mask(plen)) != pnet) {
    return conflict("subnet_mismatch",
                    "the new primary IP " + in.new_ip_text + " is not in the VIP's subnet " +
                        Ipv4Text(pnet) + "/" + std::to_string(plen),
                    "primary_new_ip");
  }
  if (plen <= 30 && (in.new_ip == pnet || in.new_ip == (pnet | ~Mask(plen)))) {
    return conflict("subnet_mismatch",
                    "the new primary IP " + in.new_ip_text + " is the network or broadcast address of " +
                        Ipv4Text(pnet) + "/" + std::to_string(plen),
                    "primary_new_ip");
  }
  // The new primary IP must be unused: no host's address or interface
  // address, no cluster's VIP or primary IP.
  {
    auto hs = db.Prepare("SELECT name, address, agent_address, facts_json FROM hosts");
    if (!hs.ok()) return Internal(hs.status());
    for (;;) {
      auto row = hs->Step();
      if (!row.ok()) return Internal(row.status());
      if (!*row) break;
      const std::string host = hs->Text(0);
      uint32_t a = 0;
      bool used = (ParseIpv4(HostPart(hs->Text(1)), &a) && a == in.new_ip) ||
                  (ParseIpv4(HostPart(hs->Text(2)), &a) && a == in.new_ip);
      Facts f;
      if (!used && !ParseFacts(hs->Text(3), host, "", &f)) {
        for (const Iface& i : f.interfaces) {
          for (const auto& [addr, len] : i.addresses) used = used || addr == in.new_ip;
        }
      }
      if (used) {
        return conflict("address_in_use",
                        "the new primary IP " + in.new_ip_text + " is already used by host " + Quote(host),
                        "primary_new_ip");
      }
    }
    auto cs = db.Prepare("SELECT name, vip, primary_ip FROM clusters");
    if (!cs.ok()) return Internal(cs.status());
    for (;;) {
      auto row = cs->Step();
      if (!row.ok()) return Internal(row.status());
      if (!*row) break;
      uint32_t a = 0;
      if ((ParseIpv4(cs->Text(1), &a) && a == in.new_ip) ||
          (ParseIpv4(cs->Text(2), &a) && a == in.new_ip)) {
        return conflict("address_in_use",
                        "the new primary IP " + in.new_ip_text + " is already used by cluster " +
                            Quote(cs->Text(0)),
                        "primary_new_ip");
      }
    }
  }
  // Names (R-DEP-3): the cluster takes the primary's name; the hosts become
  // <name>-primary and <name>-secondary.
  const std::string& name = ph.name;
  if (name.size() + 10 > 63) {
    return conflict("name_too_long", "the cluster's name " + Quote(name) +
                                         " is too long: its hosts' names (" + name +
                                         "-secondary) would exceed 63 characters",
                    "primary");
  }
  for (const std::string& n : {name + "-primary", name + "-secondary"}) {
    auto other = HostByName(db, n);
    if (!other.ok()) return Internal(other.status());
    if (*other) return conflict("name_in_use", "a host is already named " + Quote(n), "primary");
  }
  {
    auto c = db.Prepare("SELECT 1 FROM clusters WHERE name = ?1");
    if (!c.ok()) return Internal(c.status());
    c->Bind(1, name);
    auto row = c->Step();
    if (!row.ok()) return Internal(row.status());
    if (*row) return conflict("name_in_use", "a cluster is already named " + Quote(name), "primary");
  }
  // Options against the hosts.
  OptionsContext octx;
  octx.primary_is_console = ph.role == "console";
  octx.primary = &pf;
  octx.secondary = &sf;
  octx.cluster_ips = {pf.address, in.new_ip, sf.address};
  if (Error e = CheckOptions(in.options, octx)) return e;
  // The license (R-DEP-4): the one named, else the free valid HA license
  // that expires last, else none (the cluster then shows Needs License).
  if (in.license) {
    auto ls = LoadLicenses(db, "WHERE l.license_id = ?1", *in.license, 0);
    if (!ls.ok()) return Internal(ls.status());
    if (ls->empty()) return Fail(404, "no license " + Quote(*in.license), "license");
    const LicenseRow& l = ls->front();
    if (l.cluster) {
      return conflict("license_in_use",
                      "license " + Quote(l.license_id) + " is assigned to cluster " + Quote(*l.cluster),
                      "license");
    }
    LicenseCheck check = CheckLicense(l.document, keys, now);
    if (check.problem != LicenseProblem::kNone) return LicenseRefusal(check, "license");
    plan->license_row = l.row;
    plan->license_id = l.license_id;
  } else {
    auto ls = LoadLicenses(db, "WHERE c.id IS NULL ORDER BY l.expires_at_ms DESC, l.license_id", "", 0);
    if (!ls.ok()) return Internal(ls.status());
    for (const LicenseRow& l : *ls) {
      if (CheckLicense(l.document, keys, now).problem == LicenseProblem::kNone) {
        plan->license_row = l.row;
        plan->license_id = l.license_id;
        break;
      }
    }
    if (plan->license_row == 0) {
      plan->warnings.push_back(Warning(
          "no_license", "no valid HA license is free: the cluster shows Needs License and runs no "
                        "services until one is added (POST /api/v1/licenses) and assigned "
                        "(PATCH /api/v1/clusters/" + name + ")"));
    }
  }
  // Storage minimums (R-CL-4): warnings.
  for (const auto& [h, f] : {std::pair{&ph, &pf}, std::pair{&sh, &sf}}) {
    const SettingDef& d = *FindSetting(f->is_virtual ? "min_store_gb_virtual" : "min_store_gb");
    auto gb = SettingValue(db, d);
    if (!gb.ok()) return Internal(gb.status());
    const int64_t total = f->store_bytes + f->transient_bytes;
    if (*gb > 0 && total < *gb * 1000000000) {
      plan->warnings.push_back(Warning(
          "storage_below_minimum",
          "host " + h->name + ": store + transient is " + GbText(total) + ", below the " +
              (f->is_virtual ? "virtual " : "") + "appliance minimum of " + std::to_string(*gb) +
              " GB (setting " + d.key + ")"));
    }
  }
  auto mb = SettingValue(db, *FindSetting("measure_bytes"));
  if (!mb.ok()) return Internal(mb.status());
  plan->measure_bytes = *mb;
  return std::nullopt;
}

// A required field naming a host.
Error HostNameField(const json& body, const char* key, std::string* out) {
  if (Error e = GetString(body, key, out)) return e;
  if (!IsValidUserName(*out)) {
    return Fail(400, "must be a host name (1 to 64 characters from A-Z a-z 0-9 _ . -), got " + Quote(*out),
                key);
  }
  return std::nullopt;
}

}  // namespace

// ---- routing ----

std::optional<ApiResponse> Api::RouteClusters(const ApiRequest& r, std::string_view rp,
                                              const std::string& name, const Caller& c,
                                              Audit* audit) {
  const std::string& m = r.method;
  const bool admin = c.role == "admin";
  auto admin_only = [&] {
    return Fail(403, "user " + Quote(c.user) + " (role " + c.role + ") may not do this; it needs role admin");
  };
  auto no_params = [&]() -> Error {
    std::map<std::string, std::string> params;
    return CheckParams(r, {}, &params);
  };
  if (rp == "/api/v1/clusters") {
    if (m == "GET") {
      if (Error e = no_params()) return *e;
      return ListClusters();
    }
    if (m == "POST") return admin ? CreateCluster(r, audit) : admin_only();
  } else if (rp == "/api/v1/clusters/{name}") {
    if (m == "GET") {
      if (Error e = no_params()) return *e;
      return GetCluster(name);
    }
    if (m == "PATCH") return admin ? EditCluster(name, r, audit) : admin_only();
  } else if (rp == "/api/v1/clusters/{name}/secondary") {
    if (m == "DELETE") return admin ? DisconnectSecondary(name, audit) : admin_only();
  } else if (rp == "/api/v1/clusters/{name}/replace") {
    if (m == "POST") return admin ? ReplaceMember(name, r, c.user, audit) : admin_only();
  } else if (rp == "/api/v1/licenses") {
    if (m == "GET") {
      if (Error e = no_params()) return *e;
      return ListLicenses();
    }
    if (m == "POST") return admin ? AddLicense(r, audit) : admin_only();
  } else if (rp == "/api/v1/licenses/{name}") {
    if (m == "GET") {
      if (Error e = no_params()) return *e;
      return GetLicense(name);
    }
    if (m == "DELETE") return admin ? DeleteLicense(name, audit) : admin_only();
  } else if (rp == "/api/v1/settings") {
    if (m == "GET") {
      if (Error e = no_params()) return *e;
      return ListSettings();
    }
  } else if (rp == "/api/v1/settings/{name}") {
    if (m == "PUT") return admin ? PutSetting(name, r, audit) : admin_only();
  }
  return std::nullopt;
}

std::vector<LicenseKey> Api::LicenseKeysNow() {
  auto keys = LoadLicenseKeys(options_.license_keys_dir);
  if (!keys.ok()) {
    Log(2, "console: " + keys.status().message());
    return {};
  }
  for (const std::string& p : keys->problems) Log(2, "console: license keys: " + p);
  return std::move(keys->keys);
}

// ---- clusters ----

namespace {

// One cluster as the API shows it. REQUIRES: db.mu() held.
Result<json> ClusterJson(Db& db, int64_t id, const std::vector<LicenseKey>& keys, int64_t now) {
  auto s = db.Prepare(
      "SELECT name, vip, created_at_ms, primary_host_id, secondary_host_id, primary_ip, "
      "secondary_original_name, options_json, license_id FROM clusters WHERE id = ?1");
  if (!s.ok()) return s.status();
  s->Bind(1, id);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Error("cluster " + std::to_string(id) + " vanished");
  const std::string name = s->Text(0), vip = s->Text(1), primary_ip = s->Text(5);
  const int64_t created = s->Int(2);
  const int64_t primary_id = s->IsNull(3) ? 0 : s->Int(3);
  const int64_t secondary_id = s->IsNull(4) ? 0 : s->Int(4);
  const std::string secondary_original = s->Text(6);
  const ClusterOptions options = OptionsFromStored(s->Text(7));
  const int64_t license_row = s->IsNull(8) ? 0 : s->Int(8);

  json members = json::array();
  std::string secondary_address;
  for (const auto& [hid, role] : {std::pair{primary_id, "primary"}, std::pair{secondary_id, "secondary"}}) {
    if (hid == 0) continue;
    auto h = HostById(db, hid);
    if (!h.ok()) return h.status();
    if (!*h) continue;
    const HostRow& hr = **h;
    std::string address = std::string(role) == "primary" ? primary_ip : hr.address;
    if (std::string(role) == "secondary") secondary_address = address;
    members.push_back({{"role", role},
                       {"name", hr.name},
                       {"original_name", std::string(role) == "primary" ? name : secondary_original},
                       {"address", address},
                       {"status", hr.status},
                       {"status_reason", hr.status_reason.empty() ? json(nullptr) : json(hr.status_reason)}});
  }
  json license = nullptr;
  std::string status = "Protected", reason;
  if (license_row != 0) {
    auto ls = LoadLicenses(db, "WHERE l.id = ?1", "", license_row);
    if (!ls.ok()) return ls.status();
    if (!ls->empty()) {
      LicenseCheck check = CheckLicense(ls->front().document, keys, now);
      license = LicenseJson(ls->front(), check);
      if (check.problem != LicenseProblem::kNone) {
        status = "Needs License";
        reason = "license " + ls->front().license_id + ": " + check.message;
      }
    }
  } else {
    status = "Needs License";
    reason = "no HA license is assigned";
  }
  if (status != "Needs License" && secondary_id == 0) {
    status = "Unprotected";
    reason = "the secondary was disconnected; the primary runs alone";
  }
  auto peers = DefaultPeers(db, id, primary_id, secondary_id);
  if (!peers.ok()) return peers.status();
  json crossover = nullptr;
  if (!options.crossover_interface.empty()) {
    crossover = {{"interface", options.crossover_interface},
                 {"primary", options.crossover_primary_ip},
                 {"secondary", options.crossover_secondary_ip}};
  }
  return json{{"name", name},
              {"status", status},
              {"status_reason", reason.empty() ? json(nullptr) : json(reason)},
              {"created_at", Rfc3339Ms(created)},
              {"members", members},
              {"ips", {{"vip", vip},
                       {"primary", primary_ip},
                       {"secondary", secondary_address.empty() ? json(nullptr) : json(secondary_address)},
                       {"crossover", crossover}}},
              {"options", options.ToJson()},
              {"connectivity_peers_effective",
               options.connectivity_peers ? json(*options.connectivity_peers) : json(*peers)},
              {"license", license}};
}

// The cluster's row id by name, or 0. REQUIRES: db.mu() held.
Result<int64_t> ClusterId(Db& db, const std::string& name) {
  auto s = db.Prepare("SELECT id FROM clusters WHERE name = ?1");
  if (!s.ok()) return s.status();
  s->Bind(1, name);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  return *row ? s->Int(0) : int64_t{0};
}

// The id of the cluster `name`: a 404 when there is none, a 500 on a database
// error.
Error FindCluster(Db& db, const std::string& name, int64_t* id) {
  auto found = ClusterId(db, name);
  if (!found.ok()) return Internal(found.status());
  if (*found == 0) return Fail(404, "no cluster named " + Quote(name));
  *id = *found;
  return std::nullopt;
}

// The statement `sql` (?1: the cluster id) for cluster `id`, stepped to its
// row (an error if there is none).
Result<Stmt> ClusterRow(Db& db, int64_t id, const char* sql) {
  auto s = db.Prepare(sql);
  if (!s.ok()) return s.status();
  s->Bind(1, id);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Error("cluster vanished");
  return std::move(*s);
}

}  // namespace

ApiResponse Api::ListClusters() {
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  std::lock_guard<std::mutex> l(db_.mu());
  auto s = db_.Prepare("SELECT id FROM clusters ORDER BY name");
  if (!s.ok()) return Internal(s.status());
  std::vector<int64_t> ids;
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return Internal(row.status());
    if (!*row) break;
    ids.push_back(s->Int(0));
  }
  json clusters = json::array();
  for (int64_t id : ids) {
    auto j = ClusterJson(db_, id, keys, NowMs());
    if (!j.ok()) return Internal(j.status());
    clusters.push_back(std::move(*j));
  }
  return ApiResponse{200, json{{"clusters", clusters}}};
}

ApiResponse Api::GetCluster(const std::string& name) {
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  std::lock_guard<std::mutex> l(db_.mu());
  int64_t id = 0;
  if (Error e = FindCluster(db_, name, &id)) return *e;
  auto j = ClusterJson(db_, id, keys, NowMs());
  if (!j.ok()) return Internal(j.status());
  return ApiResponse{200, json{{"cluster", *j}}};
}

ApiResponse Api::CreateCluster(const ApiRequest& r, Audit* audit) {
  json body;
  if (Error e = ParseBody(r, {"primary", "secondary", "primary_new_ip", "license", "options"}, &body)) {
    return *e;
  }
  CreateInput in;
  if (Error e = HostNameField(body, "primary", &in.primary)) return *e;
  audit->target = "cluster " + in.primary;
  if (Error e = HostNameField(body, "secondary", &in.secondary)) return *e;
  if (in.secondary == in.primary) {
    return Fail(400, "the secondary must be another host than the primary", "secondary");
  }
  if (Error e = GetString(body, "primary_new_ip", &in.new_ip_text)) return *e;
  if (!ParseIpv4(in.new_ip_text, &in.new_ip)) {
    return Fail(400, "must be a dotted-quad address, got " + Quote(in.new_ip_text), "primary_new_ip");
  }
  if (body.contains("license") && !body["license"].is_null()) {
    std::string lic;
    if (Error e = GetString(body, "license", &lic)) return *e;
    in.license = lic;
  }
  if (body.contains("options")) {
    if (Error e = ApplyOptions(body["options"], &in.options)) return *e;
  }
  // Every check against the database; then the measurement, slow, outside
  // the lock; then every check again in the transaction that writes.
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  CreatePlan plan;
  {
    std::lock_guard<std::mutex> l(db_.mu());
    if (Error e = PlanCreate(db_, in, keys, NowMs(), &plan)) return *e;
  }
  json warnings = plan.warnings;
  json link = nullptr;
  if (options_.agents == nullptr) {
    warnings.push_back(Warning("link_not_measured", "the link was not measured: this console has no agent client"));
  } else {
    AgentClient& agents = *options_.agents;
    const AgentEndpoint sec{plan.s.agent_address, plan.s.cert_pem, plan.s.key};
    const AgentEndpoint pri{plan.p.agent_address, plan.p.cert_pem, plan.p.key};
    auto listen = agents.MeasureListen(sec, plan.measure_bytes);
    Result<json> run = Status::Error("no listener");
    if (!listen.ok()) {
      run = listen.status().Prefix("the secondary's agent: ");
    } else if (!listen->is_object() || !listen->value("port", json()).is_number_integer() ||
               !listen->value("nonce", json()).is_string()) {
      run = Status::Error("the secondary's agent answered no port and nonce");
    } else {
      run = agents.MeasureRun(pri, HostPart(sec.address), (*listen)["port"].get<int64_t>(),
                              (*listen)["nonce"].get<std::string>(), plan.measure_bytes);
      if (!run.ok()) run = run.status().Prefix("the primary's agent: ");
    }
    if (run.ok() && (!run->is_object() || !run->value("rtt_ms", json()).is_number() ||
                     !run->value("mbps", json()).is_number())) {
      run = Status::Error("the primary's agent answered no rtt_ms and mbps");
    }
    if (!run.ok()) {
      warnings.push_back(Warning("link_not_measured", "the link between the hosts could not be measured: " +
                                                          run.status().message()));
    } else {
      const double rtt = (*run)["rtt_ms"].get<double>(), mbps = (*run)["mbps"].get<double>();
      link = {{"rtt_ms", rtt}, {"mbps", mbps}, {"bytes", plan.measure_bytes}};
      char b[160];
      if (mbps < 1000) {
        std::snprintf(b, sizeof b, "the measured link is %.0f Mbit/s, below 1 Gbit/s", mbps);
        warnings.push_back(Warning("link_slow", b));
      }
      if (rtt >= 2) {
        std::snprintf(b, sizeof b, "the measured round trip is %.2f ms, 2 ms or more", rtt);
        warnings.push_back(Warning("link_latency", b));
      }
    }
  }

  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  CreatePlan again;  // the deployment may have changed during the measurement
  if (Error e = PlanCreate(db_, in, keys, now, &again)) return *e;
  const std::string name = again.p.name;
  const std::string vip = Ipv4Text(again.pf.address);
  const std::string pname = name + "-primary", sname = name + "-secondary";
  auto ins = db_.Prepare(
      "INSERT INTO clusters (name, vip, created_at_ms, primary_host_id, secondary_host_id, primary_ip, "
      "secondary_original_name, options_json, license_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!ins.ok()) return Internal(ins.status());
  ins->Bind(1, name).Bind(2, vip).Bind(3, now).Bind(4, again.p.id).Bind(5, again.s.id);
  ins->Bind(6, in.new_ip_text).Bind(7, again.s.name).Bind(8, in.options.ToJson().dump());
  if (again.license_row != 0) ins->Bind(9, again.license_row);
  else ins->BindNull(9);
  if (st = ins->Run(); !st.ok()) return Internal(st);
  auto cid = ClusterId(db_, name);
  if (!cid.ok()) return Internal(cid.status());
  for (const auto& [hid, new_name] : {std::pair{again.p.id, pname}, std::pair{again.s.id, sname}}) {
    auto up = db_.Prepare("UPDATE hosts SET name = ?1, cluster_id = ?2 WHERE id = ?3");
    if (!up.ok()) return Internal(up.status());
    if (st = up->Bind(1, new_name).Bind(2, *cid).Bind(3, hid).Run(); !st.ok()) return Internal(st);
  }
  for (const std::string& what :
       {"cluster " + name + ": created (VIP " + vip + ", primary " + pname + " at " + in.new_ip_text +
            ", secondary " + sname + " at " + Ipv4Text(again.sf.address) +
            (again.license_id.empty() ? ", no license" : ", license " + again.license_id) + ")",
        "host " + pname + " (was " + name + "): joins cluster " + name + " as primary; its address " +
            vip + " becomes the cluster's VIP and it takes " + in.new_ip_text,
        "host " + sname + " (was " + again.s.name + "): joins cluster " + name + " as secondary"}) {
    if (st = AddPendingChange(db_, now, what); !st.ok()) return Internal(st);
  }
  auto j = ClusterJson(db_, *cid, keys, now);
  if (!j.ok()) return Internal(j.status());
  audit->result = "ok";
  for (size_t i = 0; i < warnings.size(); ++i) {
    audit->result += (i == 0 ? "; warnings: " : ", ") + warnings[i]["code"].get<std::string>();
  }
  audit->status = 201;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  for (const json& w : warnings) {
    Log(2, "console: cluster " + name + ": warning " + w["code"].get<std::string>() + ": " +
               w["message"].get<std::string>());
  }
  return ApiResponse{201, json{{"cluster", *j}, {"warnings", warnings}, {"link", link}}};
}

ApiResponse Api::EditCluster(const std::string& name, const ApiRequest& r, Audit* audit) {
  audit->target = "cluster " + Printable(name, 80);
  json body;
  if (Error e = ParseBody(r, {"options", "license"}, &body)) return *e;
  if (body.empty()) return Fail(400, "give \"options\" and/or \"license\"");
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  int64_t cid = 0;
  if (Error e = FindCluster(db_, name, &cid)) return *e;
  auto s = ClusterRow(
      db_, cid,
      "SELECT c.vip, c.primary_ip, c.primary_host_id, c.secondary_host_id, c.options_json, "
      "l.license_id FROM clusters c LEFT JOIN licenses l ON l.id = c.license_id WHERE c.id = ?1");
  if (!s.ok()) return Internal(s.status());
  const std::string vip = s->Text(0), primary_ip = s->Text(1), old_options_text = s->Text(4);
  const int64_t primary_id = s->IsNull(2) ? 0 : s->Int(2), secondary_id = s->IsNull(3) ? 0 : s->Int(3);
  const std::string old_license = s->Text(5);
  const ClusterOptions old_options = OptionsFromStored(old_options_text);
  std::vector<std::string> changes;

  if (body.contains("options")) {
    ClusterOptions o = old_options;
    if (Error e = ApplyOptions(body["options"], &o)) return *e;
    std::optional<HostRow> ph, sh;
    for (const auto& [hid, out] : {std::pair{primary_id, &ph}, std::pair{secondary_id, &sh}}) {
      if (hid == 0) continue;
      auto h = HostById(db_, hid);
      if (!h.ok()) return Internal(h.status());
      *out = *h;
    }
    Facts pf, sf;
    OptionsContext octx;
    octx.primary_is_console = ph && ph->role == "console";
    uint32_t a = 0;
    for (const std::string& ip : {vip, primary_ip}) {
      if (ParseIpv4(ip, &a)) octx.cluster_ips.push_back(a);
    }
    if (!o.crossover_interface.empty()) {  // checked against the hosts' interfaces
      if (ph) {
        if (Error e = ParseFacts(ph->facts_json, ph->name, "options.crossover_interface", &pf)) return *e;
        octx.primary = &pf;
      }
      if (sh) {
        if (Error e = ParseFacts(sh->facts_json, sh->name, "options.crossover_interface", &sf)) return *e;
        octx.secondary = &sf;
        octx.cluster_ips.push_back(sf.address);
      }
    }
    if (Error e = CheckOptions(o, octx)) return *e;
    const json before = old_options.ToJson(), after = o.ToJson();
    std::string diff;
    for (const auto& [k, v] : after.items()) {
      if (before.value(k, json()) != v) {
        diff += (diff.empty() ? "" : "; ") + k + " " + before.value(k, json()).dump() + " -> " + v.dump();
      }
    }
    if (!diff.empty()) {
      auto up = db_.Prepare("UPDATE clusters SET options_json = ?1 WHERE id = ?2");
      if (!up.ok()) return Internal(up.status());
      if (st = up->Bind(1, after.dump()).Bind(2, cid).Run(); !st.ok()) return Internal(st);
      changes.push_back("cluster " + name + ": advanced options changed: " + diff);
    }
  }
  if (body.contains("license")) {
    const json& v = body["license"];
    if (!v.is_null() && !v.is_string()) {
      return Fail(400, "must be a license id or null, got " + TypeName(v), "license");
    }
    int64_t row_id = 0;
    std::string lic;
    if (v.is_string()) {
      lic = v.get<std::string>();
      auto ls = LoadLicenses(db_, "WHERE l.license_id = ?1", lic, 0);
      if (!ls.ok()) return Internal(ls.status());
      if (ls->empty()) return Fail(404, "no license " + Quote(lic), "license");
      const LicenseRow& lr = ls->front();
      if (lr.cluster && *lr.cluster != name) {
        return ApiError(409, "license_in_use",
                        "license " + Quote(lic) + " is assigned to cluster " + Quote(*lr.cluster), "license");
      }
      LicenseCheck check = CheckLicense(lr.document, keys, now);
      if (check.problem != LicenseProblem::kNone) return LicenseRefusal(check, "license");
      row_id = lr.row;
    }
    if (lic != old_license) {
      auto up = db_.Prepare("UPDATE clusters SET license_id = ?1 WHERE id = ?2");
      if (!up.ok()) return Internal(up.status());
      if (row_id != 0) up->Bind(1, row_id);
      else up->BindNull(1);
      if (st = up->Bind(2, cid).Run(); !st.ok()) return Internal(st);
      changes.push_back("cluster " + name + ": license " + (lic.empty() ? "removed" : lic + " assigned") +
                        (old_license.empty() ? "" : " (was " + old_license + ")"));
    }
  }
  for (const std::string& what : changes) {
    if (st = AddPendingChange(db_, now, what); !st.ok()) return Internal(st);
  }
  auto j = ClusterJson(db_, cid, keys, now);
  if (!j.ok()) return Internal(j.status());
  audit->result = changes.empty() ? "ok (no change)" : "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"cluster", *j}, {"changed", !changes.empty()}}};
}

ApiResponse Api::DisconnectSecondary(const std::string& name, Audit* audit) {
  audit->target = "cluster " + Printable(name, 80);
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  int64_t cid = 0;
  if (Error e = FindCluster(db_, name, &cid)) return *e;
  auto s = ClusterRow(db_, cid,
                      "SELECT vip, primary_ip, primary_host_id, secondary_host_id, "
                      "secondary_original_name FROM clusters WHERE id = ?1");
  if (!s.ok()) return Internal(s.status());
  const std::string vip = s->Text(0), primary_ip = s->Text(1), original = s->Text(4);
  const int64_t primary_id = s->IsNull(2) ? 0 : s->Int(2);
  if (s->IsNull(3)) {
    return ApiError(409, "no_secondary", "cluster " + Quote(name) + " has no secondary to disconnect");
  }
  const int64_t secondary_id = s->Int(3);
  auto sh = HostById(db_, secondary_id);
  if (!sh.ok()) return Internal(sh.status());
  if (!*sh) return Internal(Status::Error("the secondary host vanished"));
  auto taken = HostByName(db_, original);
  if (!taken.ok()) return Internal(taken.status());
  if (*taken && (*taken)->id != secondary_id) {
    return ApiError(409, "name_in_use",
                    "the secondary's original name " + Quote(original) + " is now used by another host; "
                    "rename or remove that host first");
  }
  std::string pname = name + "-primary";
  if (primary_id != 0) {
    auto ph = HostById(db_, primary_id);
    if (!ph.ok()) return Internal(ph.status());
    if (*ph) pname = (*ph)->name;
  }
  // R-CL-5: the secondary leaves with its original name; the primary runs
  // unprotected and takes the VIP back as its own address.
  auto up = db_.Prepare("UPDATE hosts SET name = ?1, cluster_id = NULL WHERE id = ?2");
  if (!up.ok()) return Internal(up.status());
  if (st = up->Bind(1, original).Bind(2, secondary_id).Run(); !st.ok()) return Internal(st);
  auto uc = db_.Prepare(
      "UPDATE clusters SET secondary_host_id = NULL, secondary_original_name = NULL, primary_ip = vip "
      "WHERE id = ?1");
  if (!uc.ok()) return Internal(uc.status());
  if (st = uc->Bind(1, cid).Run(); !st.ok()) return Internal(st);
  for (const std::string& what :
       {"cluster " + name + ": secondary " + (*sh)->name + " disconnected; " + pname +
            " runs unprotected and takes the VIP " + vip + " back as its address (was " + primary_ip + ")",
        "host " + original + " (was " + (*sh)->name + "): leaves cluster " + name +
            " and restarts its services as a stand-alone host; nothing stored is removed"}) {
    if (st = AddPendingChange(db_, now, what); !st.ok()) return Internal(st);
  }
  auto j = ClusterJson(db_, cid, keys, now);
  if (!j.ok()) return Internal(j.status());
  audit->result = "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"cluster", *j}, {"host", original}}};
}

ApiResponse Api::ReplaceMember(const std::string& name, const ApiRequest& r, const std::string& user,
                               Audit* audit) {
  audit->target = "cluster " + Printable(name, 80);
  json body;
  if (Error e = ParseBody(r, {"role", "host"}, &body)) return *e;
  std::string role, host;
  if (Error e = GetString(body, "role", &role)) return *e;
  if (role != "primary" && role != "secondary") {
    return Fail(400, "must be \"primary\" or \"secondary\", got " + Quote(role), "role");
  }
  if (Error e = HostNameField(body, "host", &host)) return *e;
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  int64_t cid = 0;
  if (Error e = FindCluster(db_, name, &cid)) return *e;
  auto s = ClusterRow(db_, cid,
                      "SELECT vip, primary_ip, primary_host_id, secondary_host_id, options_json "
                      "FROM clusters WHERE id = ?1");
  if (!s.ok()) return Internal(s.status());
  const std::string vip_text = s->Text(0), primary_ip = s->Text(1);
  const int64_t primary_id = s->IsNull(2) ? 0 : s->Int(2), secondary_id = s->IsNull(3) ? 0 : s->Int(3);
  const ClusterOptions options = OptionsFromStored(s->Text(4));
  const bool replacing_primary = role == "primary";
  const int64_t old_id = replacing_primary ? primary_id : secondary_id;
  const int64_t other_id = replacing_primary ? secondary_id : primary_id;
  if (old_id == 0) {
    return ApiError(409, "no_" + role,
                    "cluster " + Quote(name) + " has no " + role + " to replace" +
                        (replacing_primary ? "" : " (it was disconnected)"),
                    "role");
  }
  auto old_host = HostById(db_, old_id);
  if (!old_host.ok()) return Internal(old_host.status());
  if (!*old_host) return Internal(Status::Error("the " + role + " host vanished"));
  const HostRow& oh = **old_host;
  std::optional<HostRow> other;
  if (other_id != 0) {
    auto h = HostById(db_, other_id);
    if (!h.ok()) return Internal(h.status());
    other = *h;
  }
  // The new host: paired, in no cluster, not the console.
  auto found = HostByName(db_, host);
  if (!found.ok()) return Internal(found.status());
  if (!*found) return Fail(404, "no host named " + Quote(host), "host");
  const HostRow nh = **found;
  if (nh.role == "console") {
    return ApiError(409, "host_is_console", "host " + Quote(host) + " is the console; it cannot replace a member",
                    "host");
  }
  if (nh.cluster_id) {
    return ApiError(409, "host_in_cluster",
                    "host " + Quote(host) + " is in a cluster; only a host in no cluster can replace a member",
                    "host");
  }
  if (nh.agent_address.empty() || nh.key.empty()) {
    return ApiError(409, "host_not_paired",
                    "host " + Quote(host) + " is not paired with the console (POST /api/v1/hosts with its "
                    "pairing token first)",
                    "host");
  }
  // The member replaced must not be the one serving: its hardware is gone.
  if (oh.status == "Active") {
    return ApiError(409, "member_active",
                    "the " + role + " " + Quote(oh.name) + " is the cluster's Active host; take over to the "
                    "other member first",
                    "role");
  }
  // The checks of creation between the new host and the remaining member.
  Facts nf, of;
  if (Error e = ParseFacts(nh.facts_json, nh.name, "host", &nf)) return *e;
  if (other) {
    if (Error e = ParseFacts(other->facts_json, other->name, "", &of)) return *e;
    Error e = replacing_primary ? CheckMemberFacts(nh, nf, "host", *other, of, "", "host")
                                : CheckMemberFacts(*other, of, "", nh, nf, "host", "host");
    if (e) return *e;
  }
  // The member's IP becomes the new host's address; a primary's must be in
  // the VIP's subnet and not the VIP.
  const std::string new_address = HostPart(nh.address);
  uint32_t new_ip = 0, vip = 0;
  if (!ParseIpv4(new_address, &new_ip)) {
    return FactsIncomplete(nh.name, "give an address that is not a dotted quad: " + Quote(new_address), "host");
  }
  if (replacing_primary) {
    const int len = nf.PrefixOfAddress();
    if (len < 0) {
      return FactsIncomplete(nh.name, "do not show its address " + Ipv4Text(nf.address) + " on any interface",
                             "host");
    }
    if (!ParseIpv4(vip_text, &vip)) return Internal(Status::Error("the cluster's VIP is not a dotted quad"));
    if ((new_ip & Mask(len)) != (vip & Mask(len))) {
      return ApiError(409, "subnet_mismatch",
                      "host " + Quote(host) + "'s address " + new_address + " is not in the VIP's subnet " +
                          Ipv4Text(vip & Mask(len)) + "/" + std::to_string(len),
                      "host");
    }
    if (new_ip == vip) {
      return ApiError(409, "address_in_use",
                      "host " + Quote(host) + "'s address " + new_address + " is the cluster's VIP", "host");
    }
  }
  // The options against the new pair (the crossover interface on the new
  // host).
  OptionsContext octx;
  octx.primary_is_console = replacing_primary ? false : other && other->role == "console";
  octx.primary = replacing_primary ? &nf : (other ? &of : nullptr);
  octx.secondary = replacing_primary ? (other ? &of : nullptr) : &nf;
  for (const std::string& ip :
       {vip_text, replacing_primary ? new_address : primary_ip,
        replacing_primary ? (other ? HostPart(other->address) : std::string()) : new_address}) {
    uint32_t a = 0;
    if (ParseIpv4(ip, &a)) octx.cluster_ips.push_back(a);
  }
  if (Error e = CheckOptions(options, octx)) {
    ApiResponse refused = *e;
    refused.body["error"]["field"] = "host";
    return refused;
  }

  // The clusters row first (it references the host row removed), then the
  // replaced host's row, then the new host takes the member's name.
  const std::string member_name = name + "-" + role;
  auto uc = db_.Prepare(replacing_primary
                            ? "UPDATE clusters SET primary_host_id = ?1, primary_ip = ?2 WHERE id = ?3"
                            : "UPDATE clusters SET secondary_host_id = ?1, secondary_original_name = ?2 "
                              "WHERE id = ?3");
  if (!uc.ok()) return Internal(uc.status());
  uc->Bind(1, nh.id).Bind(2, replacing_primary ? new_address : nh.name).Bind(3, cid);
  if (st = uc->Run(); !st.ok()) return Internal(st);
  auto del = db_.Prepare("DELETE FROM hosts WHERE id = ?1");
  if (!del.ok()) return Internal(del.status());
  if (st = del->Bind(1, oh.id).Run(); !st.ok()) return Internal(st);
  auto up = db_.Prepare("UPDATE hosts SET name = ?1, cluster_id = ?2 WHERE id = ?3");
  if (!up.ok()) return Internal(up.status());
  if (st = up->Bind(1, member_name).Bind(2, cid).Bind(3, nh.id).Run(); !st.ok()) return Internal(st);
  const std::string from = other ? " from " + other->name : "";
  for (const std::string& what :
       {"cluster " + name + ": the " + role + " " + oh.name + " is replaced by host " + nh.name + " at " +
            new_address + "; the replaced host's record is removed" +
            (replacing_primary ? "; the primary's IP becomes " + new_address + " (was " + primary_ip + ")"
                               : std::string()),
        "host " + member_name + " (was " + nh.name + "): joins cluster " + name + " as " + role +
            "; its store is synchronized in full" + from}) {
    if (st = AddPendingChange(db_, now, what); !st.ok()) return Internal(st);
  }
  auto hist = db_.Prepare(
      "INSERT INTO host_history (at_ms, kind, host, cluster, old_status, new_status, reason) "
      "VALUES (?1, 'action', ?2, ?3, ?4, ?4, ?5)");
  if (!hist.ok()) return Internal(hist.status());
  hist->Bind(1, now).Bind(2, member_name).Bind(3, name).Bind(4, nh.status);
  hist->Bind(5, "replace requested by " + user + ": host " + nh.name + " replaces the " + role + " " +
                    oh.name + " (last " + oh.status + "), whose record is removed");
  if (st = hist->Run(); !st.ok()) return Internal(st);
  auto j = ClusterJson(db_, cid, keys, now);
  if (!j.ok()) return Internal(j.status());
  audit->result = "ok (" + role + " " + oh.name + " replaced by " + nh.name + ")";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  Log(1, "console: cluster " + name + ": the " + role + " " + oh.name + " replaced by host " + nh.name +
             " (now " + member_name + ") by " + user);
  return ApiResponse{200, json{{"cluster", *j}}};
}

// ---- licenses ----

ApiResponse Api::ListLicenses() {
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  std::lock_guard<std::mutex> l(db_.mu());
  auto ls = LoadLicenses(db_, "ORDER BY l.license_id", "", 0);
  if (!ls.ok()) return Internal(ls.status());
  json out = json::array();
  for (const LicenseRow& lr : *ls) out.push_back(LicenseJson(lr, CheckLicense(lr.document, keys, NowMs())));
  return ApiResponse{200, json{{"licenses", out}}};
}

ApiResponse Api::GetLicense(const std::string& id) {
  const std::vector<LicenseKey> keys = LicenseKeysNow();
  std::lock_guard<std::mutex> l(db_.mu());
  auto ls = LoadLicenses(db_, "WHERE l.license_id = ?1", id, 0);
  if (!ls.ok()) return Internal(ls.status());
  if (ls->empty()) return Fail(404, "no license " + Quote(id));
  return ApiResponse{
      200, json{{"license", LicenseJson(ls->front(), CheckLicense(ls->front().document, keys, NowMs()))}}};
}

ApiResponse Api::AddLicense(const ApiRequest& r, Audit* audit) {
  audit->target = "license";
  json body;
  if (Error e = ParseBody(r, {"document"}, &body)) return *e;
  std::string document;
  if (Error e = GetString(body, "document", &document)) return *e;
  const int64_t now = NowMs();
  const LicenseCheck check = CheckLicense(document, LicenseKeysNow(), now);
  if (check.problem != LicenseProblem::kMalformed) audit->target = "license " + check.fields.id;
  if (check.problem != LicenseProblem::kNone) return LicenseRefusal(check, "document");
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto dup = LoadLicenses(db_, "WHERE l.license_id = ?1", check.fields.id, 0);
  if (!dup.ok()) return Internal(dup.status());
  if (!dup->empty()) {
    return ApiError(409, "license_duplicate", "license " + Quote(check.fields.id) + " was already added",
                    "document");
  }
  auto ins = db_.Prepare(
      "INSERT INTO licenses (license_id, kind, issued_to, expires_at_ms, key_id, document, added_at_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!ins.ok()) return Internal(ins.status());
  ins->Bind(1, check.fields.id).Bind(2, check.fields.kind).Bind(3, check.fields.issued_to);
  ins->Bind(4, check.fields.expires_at_ms).Bind(5, check.key_id).Bind(6, document).Bind(7, now);
  if (st = ins->Run(); !st.ok()) return Internal(st);
  auto added = LoadLicenses(db_, "WHERE l.license_id = ?1", check.fields.id, 0);
  if (!added.ok() || added->empty()) return Internal(added.ok() ? Status::Error("license vanished") : added.status());
  audit->result = "ok";
  audit->status = 201;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{201, json{{"license", LicenseJson(added->front(), check)}}};
}

ApiResponse Api::DeleteLicense(const std::string& id, Audit* audit) {
  audit->target = "license " + Printable(id, 80);
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto ls = LoadLicenses(db_, "WHERE l.license_id = ?1", id, 0);
  if (!ls.ok()) return Internal(ls.status());
  if (ls->empty()) return Fail(404, "no license " + Quote(id));
  if (ls->front().cluster) {
    return ApiError(409, "license_in_use",
                    "license " + Quote(id) + " is assigned to cluster " + Quote(*ls->front().cluster) +
                        "; assign another license to the cluster first");
  }
  auto del = db_.Prepare("DELETE FROM licenses WHERE id = ?1");
  if (!del.ok()) return Internal(del.status());
  if (st = del->Bind(1, ls->front().row).Run(); !st.ok()) return Internal(st);
  audit->result = "ok";
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"deleted", id}}};
}

// ---- settings ----

ApiResponse Api::ListSettings() {
  std::lock_guard<std::mutex> l(db_.mu());
  json out = json::array();
  for (const SettingDef& d : kSettings) {
    bool set = false;
    auto v = SettingValue(db_, d, &set);
    if (!v.ok()) return Internal(v.status());
    out.push_back({{"key", d.key},
                   {"value", *v},
                   {"default", d.def},
                   {"min", d.lo},
                   {"max", d.hi},
                   {"set", set},
                   {"description", d.what}});
  }
  return ApiResponse{200, json{{"settings", out}}};
}

ApiResponse Api::PutSetting(const std::string& key, const ApiRequest& r, Audit* audit) {
  audit->target = "setting " + Printable(key, 80);
  const SettingDef* d = FindSetting(key);
  if (d == nullptr) return Fail(404, "no setting " + Quote(key));
  json body;
  if (Error e = ParseBody(r, {"value"}, &body)) return *e;
  if (!body.contains("value")) return Fail(400, "required field is missing", "value");
  const json& v = body["value"];
  int64_t n = d->def;
  if (!v.is_null()) {
    if (Error e = OptInt(v, "value", d->lo, d->hi, &n)) return *e;
  }
  std::lock_guard<std::mutex> l(db_.mu());
  Transaction t(db_);
  Status st = t.Begin();
  if (!st.ok()) return Internal(st);
  auto s = v.is_null() ? db_.Prepare("DELETE FROM settings WHERE key = ?1")
                       : db_.Prepare(
                             "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  if (!s.ok()) return Internal(s.status());
  s->Bind(1, std::string_view(d->key));
  if (!v.is_null()) s->Bind(2, std::to_string(n));
  if (st = s->Run(); !st.ok()) return Internal(st);
  audit->result = "ok (" + std::to_string(n) + (v.is_null() ? ", the default)" : ")");
  audit->status = 200;
  if (st = InsertAudit(*audit); !st.ok()) return Internal(st);
  if (st = t.Commit(); !st.ok()) return Internal(st);
  return ApiResponse{200, json{{"key", d->key}, {"value", n}, {"set", !v.is_null()}}};
}

}  // namespace tandem::console
