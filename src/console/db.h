// The console's deployment database (docs/CONSOLE.md, "Database"): one
// SQLite file in the console's state directory, in WAL mode with
// synchronous=FULL (a committed change survives power loss), foreign keys
// on. Values only ever reach SQL through bound parameters of prepared
// statements; SQL text is always a constant of this module.
//
// Schema: versioned by the schema_migrations table (one row per applied
// migration). Open applies the migrations this build knows that the file
// lacks, each in its own transaction, and refuses a file whose version is
// newer than this build's (a downgrade would misread it).
//
// Thread-safety: a Db is used by one thread at a time; callers serialize
// with mu() (the console's HTTP threads do).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "util/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tandem::console {

// The schema version this build writes (the last migration's number).
int KnownSchemaVersion();

// One prepared statement. Bind parameters are 1-based, columns 0-based.
class Stmt {
 public:
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  Stmt& Bind(int index, int64_t value);
  Stmt& Bind(int index, std::string_view text);
  Stmt& BindNull(int index);

  // Runs to the next row: true (a row is available), false (done), or an
  // error (a constraint violated: "constraint: ..."; else the SQLite message).
  Result<bool> Step();
  // Step until done; error if a row comes back or a step fails.
  Status Run();

  int64_t Int(int column) const;
  std::string Text(int column) const;  // "" for NULL
  bool IsNull(int column) const;
  bool IsInteger(int column) const;  // stored as an INTEGER

 private:
  friend class Db;
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  Status bind_error_ = Status::Ok();
};

class Db {
 public:
  // Opens (creating it with mode 0600 if missing) and migrates `path`.
  // Error: the path and what failed (open, a pragma, a migration).
  static Result<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Result<Stmt> Prepare(std::string_view sql);
  // Prepares and runs every statement of a constant, parameterless script.
  Status Exec(std::string_view sql);

  // BEGIN IMMEDIATE / COMMIT / ROLLBACK.
  Status Begin();
  Status Commit();
  void Rollback();

  // The highest applied migration.
  Result<int> SchemaVersion();
  // The number of rows of `table` (one of the schema's own tables; CHECKs).
  Result<int64_t> Count(std::string_view table);

  std::mutex& mu() { return mu_; }
  const std::string& path() const { return path_; }

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status Migrate();

  sqlite3* db_;
  std::string path_;
  std::mutex mu_;
};

// A transaction that rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) {}
  ~Transaction() {
    if (open_) db_.Rollback();
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status Begin() {
    TANDEM_RETURN_IF_ERROR(db_.Begin());
    open_ = true;
    return Status::Ok();
  }
  Status Commit() {
    open_ = false;
    return db_.Commit();
  }

 private:
  Db& db_;
  bool open_ = false;
};

}  // namespace tandem::console
