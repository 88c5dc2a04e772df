#include "console/backup.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <optional>
#include <set>
#include <vector>

#include "console/password.h"

namespace tandem::console {
namespace {

using nlohmann::json;

// Tables that are not configuration.
const std::set<std::string> kSkippedTables = {"sessions", "audit", "schema_migrations",
                                              "host_history"};
// Columns that are observations, re-learnt from the hosts.
const std::set<std::string> kSkippedColumns = {"hosts.facts_json", "hosts.facts_at_ms",
                                               "hosts.status", "hosts.status_reason"};

constexpr size_t kSaltBytes = 16, kIvBytes = 12, kTagBytes = 16, kKeyBytes = 32;

// The schema's own tables, in creation order (parents before children).
Result<std::vector<std::string>> Tables(Db& db) {
  auto s = db.Prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid");
  if (!s.ok()) return s.status();
  std::vector<std::string> out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (kSkippedTables.count(s->Text(0)) == 0) out.push_back(s->Text(0));
  }
  return out;
}

// Column names of `table` (a name from Tables(), never from input).
Result<std::vector<std::string>> Columns(Db& db, const std::string& table) {
  auto s = db.Prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid");
  if (!s.ok()) return s.status();
  s->Bind(1, table);
  std::vector<std::string> out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (kSkippedColumns.count(table + "." + s->Text(0)) == 0) out.push_back(s->Text(0));
  }
  return out;
}

std::string Quoted(const std::string& identifier) { return "\"" + identifier + "\""; }

std::string Base64(const std::vector<unsigned char>& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::vector<unsigned char>> Unbase64(const std::string& in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::vector<unsigned char> out(in.size() / 4 * 3 + 1);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts padding as zero bytes.
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

std::optional<std::vector<unsigned char>> Unhex(const std::string& s, size_t bytes) {
  if (s.size() != 2 * bytes) return std::nullopt;
  std::vector<unsigned char> out(bytes);
  for (size_t i = 0; i < bytes; ++i) {
    int v = 0;
    for (char c : {s[2 * i], s[2 * i + 1]}) {
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out[i] = static_cast<unsigned char>(v);
  }
  return out;
}

Status DeriveKey(const std::string& passphrase, const unsigned char* salt, const ScryptParams& p,
                 unsigned char* key) {
  if (p.log2_n < kScryptLog2NMin || p.log2_n > kScryptLog2NMax || p.r < 1 || p.r > 32 || p.p < 1 ||
      p.p > 16) {
    return Status::Error("backup: unsupported scrypt parameters");
  }
  const uint64_t n = uint64_t{1} << p.log2_n;
  const uint64_t maxmem = 128 * n * static_cast<uint64_t>(p.r) * static_cast<uint64_t>(p.p) + (64u << 20);
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), salt, kSaltBytes, n,
                     static_cast<uint64_t>(p.r), static_cast<uint64_t>(p.p), maxmem, key,
                     kKeyBytes) != 1) {
    return Status::Error("backup: scrypt failed");
  }
  return Status::Ok();
}

// The envelope without "data": what the tag also authenticates.
std::string Header(const json& envelope) {
  json h = envelope;
  h.erase("data");
  return h.dump();
}

}  // namespace

Result<json> DumpDeployment(Db& db) {
  auto version = db.SchemaVersion();
  if (!version.ok()) return version.status();
  auto tables = Tables(db);
  if (!tables.ok()) return tables.status();
  json out = {{"schema_version", *version}, {"tables", json::object()}};
  for (const std::string& t : *tables) {
    auto cols = Columns(db, t);
    if (!cols.ok()) return cols.status();
    std::string sql = "SELECT ";
    for (size_t i = 0; i < cols->size(); ++i) sql += (i ? ", " : "") + Quoted((*cols)[i]);
    sql += " FROM " + Quoted(t) + " ORDER BY rowid";
    auto s = db.Prepare(sql);
    if (!s.ok()) return s.status();
    json rows = json::array();
    for (;;) {
      auto row = s->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      json r = json::array();
      for (size_t i = 0; i < cols->size(); ++i) {
        const int c = static_cast<int>(i);
        if (s->IsNull(c)) r.push_back(nullptr);
        else if (s->IsInteger(c)) r.push_back(s->Int(c));
        else r.push_back(s->Text(c));
      }
      rows.push_back(std::move(r));
    }
    out["tables"][t] = {{"columns", *cols}, {"rows", std::move(rows)}};
  }
  return out;
}

Status RestoreDeployment(Db& db, const json& dump) {
  if (!dump.is_object() || !dump.contains("schema_version") || !dump["schema_version"].is_number_integer() ||
      !dump.contains("tables") || !dump["tables"].is_object()) {
    return Status::Error("the backup's content is malformed (schema_version, tables)");
  }
  auto version = db.SchemaVersion();
  if (!version.ok()) return version.status();
  if (dump["schema_version"].get<int64_t>() != *version) {
    return Status::Error("the backup has database schema version " +
                         std::to_string(dump["schema_version"].get<int64_t>()) + ", this console " +
                         std::to_string(*version) + "; restore it on a console of the same version");
  }
  auto tables = Tables(db);
  if (!tables.ok()) return tables.status();
  const json& in = dump["tables"];
  for (const auto& [name, v] : in.items()) {
    bool known = false;
    for (const std::string& t : *tables) known = known || t == name;
    if (!known) return Status::Error("the backup has a table this console does not: " + name.substr(0, 64));
  }
  size_t total = 0;
  // Children first out, parents first in.
  TANDEM_RETURN_IF_ERROR(db.Exec("PRAGMA defer_foreign_keys = ON"));
  TANDEM_RETURN_IF_ERROR(db.Exec("DELETE FROM sessions"));
  for (auto t = tables->rbegin(); t != tables->rend(); ++t) {
    TANDEM_RETURN_IF_ERROR(db.Exec("DELETE FROM " + Quoted(*t)));
  }
  for (const std::string& t : *tables) {
    if (!in.contains(t)) return Status::Error("the backup lacks table " + t);
    const json& tj = in[t];
    auto cols = Columns(db, t);
    if (!cols.ok()) return cols.status();
    if (!tj.is_object() || !tj.contains("columns") || tj["columns"] != json(*cols) || !tj.contains("rows") ||
        !tj["rows"].is_array()) {
      return Status::Error("table " + t + ": columns differ from this console's or rows missing");
    }
    std::string sql = "INSERT INTO " + Quoted(t) + " (";
    std::string marks;
    for (size_t i = 0; i < cols->size(); ++i) {
      sql += (i ? ", " : "") + Quoted((*cols)[i]);
      marks += (i ? ", ?" : "?") + std::to_string(i + 1);
    }
    sql += ") VALUES (" + marks + ")";
    for (const json& row : tj["rows"]) {
      if (++total > kBackupRowsMax) return Status::Error("the backup has too many rows");
      if (!row.is_array() || row.size() != cols->size()) {
        return Status::Error("table " + t + ": a row does not have " + std::to_string(cols->size()) + " values");
      }
      auto s = db.Prepare(sql);
      if (!s.ok()) return s.status();
      for (size_t i = 0; i < row.size(); ++i) {
        const int idx = static_cast<int>(i + 1);
        if (row[i].is_null()) s->BindNull(idx);
        else if (row[i].is_number_integer()) s->Bind(idx, row[i].get<int64_t>());
        else if (row[i].is_string()) s->Bind(idx, row[i].get<std::string>());
        else return Status::Error("table " + t + ": a value is neither an integer, a string nor null");
      }
      Status st = s->Run();
      if (!st.ok()) return st.Prefix("table " + t + ": ");
    }
  }
  // Deferred foreign keys are checked here, inside the transaction.
  auto fk = db.Prepare("SELECT COUNT(*) FROM pragma_foreign_key_check");
  if (!fk.ok()) return fk.status();
  auto row = fk->Step();
  if (!row.ok()) return row.status();
  if (*row && fk->Int(0) != 0) return Status::Error("the backup's rows refer to rows it does not have");
  return Status::Ok();
}

Result<json> SealBackup(const json& dump, const std::string& passphrase, int64_t created_at_ms,
                        const ScryptParams& kdf) {
  unsigned char salt[kSaltBytes], iv[kIvBytes], key[kKeyBytes], tag[kTagBytes];
  if (RAND_bytes(salt, sizeof salt) != 1 || RAND_bytes(iv, sizeof iv) != 1) {
    return Status::Error("backup: RAND_bytes failed");
  }
  TANDEM_RETURN_IF_ERROR(DeriveKey(passphrase, salt, kdf, key));
  json env = {{"format", kBackupFormat},
              {"version", kBackupVersion},
              {"created_at_ms", created_at_ms},
              {"kdf", {{"alg", "scrypt"}, {"ln", kdf.log2_n}, {"r", kdf.r}, {"p", kdf.p},
                       {"salt", Hex(salt, sizeof salt)}}},
              {"cipher", "aes-256-gcm"},
              {"iv", Hex(iv, sizeof iv)}};
  const std::string aad = Header(env), plain = dump.dump();
  std::vector<unsigned char> out(plain.size() + kTagBytes);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  bool ok = ctx != nullptr && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, iv) == 1 &&
            EVP_EncryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx, out.data(), &len, reinterpret_cast<const unsigned char*>(plain.data()),
                              static_cast<int>(plain.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx, out.data() + len, &fin) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) return Status::Error("backup: encryption failed");
  out.resize(static_cast<size_t>(len + fin));
  out.insert(out.end(), tag, tag + kTagBytes);
  env["data"] = Base64(out);
  return env;
}

Result<json> OpenBackup(const json& env, const std::string& passphrase) {
  auto str = [&](const char* k) -> const json* {
    return env.contains(k) && env[k].is_string() ? &env[k] : nullptr;
  };
  if (!env.is_object() || str("format") == nullptr || env["format"] != kBackupFormat) {
    return Status::Error("not a Tandem console backup (format)");
  }
  if (!env.contains("version") || env["version"] != kBackupVersion) {
    return Status::Error("unsupported backup version (this console reads version 1)");
  }
  if (str("cipher") == nullptr || env["cipher"] != "aes-256-gcm") return Status::Error("unsupported cipher");
  const json* kdfj = env.contains("kdf") && env["kdf"].is_object() ? &env["kdf"] : nullptr;
  if (kdfj == nullptr || kdfj->value("alg", "") != "scrypt" || !(*kdfj)["ln"].is_number_integer() ||
      !(*kdfj)["r"].is_number_integer() || !(*kdfj)["p"].is_number_integer() || !(*kdfj)["salt"].is_string()) {
    return Status::Error("malformed kdf");
  }
  ScryptParams p{(*kdfj)["ln"].get<int>(), (*kdfj)["r"].get<int>(), (*kdfj)["p"].get<int>()};
  auto salt = Unhex((*kdfj)["salt"].get<std::string>(), kSaltBytes);
  auto iv = str("iv") ? Unhex(env["iv"].get<std::string>(), kIvBytes) : std::nullopt;
  auto data = str("data") ? Unbase64(env["data"].get<std::string>()) : std::nullopt;
  if (!salt || !iv || !data || data->size() < kTagBytes) return Status::Error("malformed salt, iv or data");
  unsigned char key[kKeyBytes];
  TANDEM_RETURN_IF_ERROR(DeriveKey(passphrase, salt->data(), p, key));
  const std::string aad = Header(env);
  const size_t n = data->size() - kTagBytes;
  std::string plain(n, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  bool ok = ctx != nullptr && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, iv->data()) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(plain.data()), &len, data->data(),
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, data->data() + n) == 1 &&
            EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(plain.data()) + len, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) return Status::Error("wrong passphrase or damaged backup");
  json dump = json::parse(plain, nullptr, false);
  if (dump.is_discarded()) return Status::Error("the backup's content is not JSON");
  return dump;
}

}  // namespace tandem::console
