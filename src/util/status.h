// Status and Result<T>: expected errors are values (ENGINEERING.md #6).
// Bugs are not errors: broken invariants hit TANDEM_CHECK and abort.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace tandem {

// An error (or OK) with a human-readable message. Cheap to copy when OK.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  // REQUIRES: !ok(). The message names what failed and why.
  const std::string& message() const { return *message_; }
  std::string ToString() const { return ok() ? "OK" : *message_; }
  // Prefixes the message with context ("file.toml: "); no-op when OK.
  Status Prefix(const std::string& context) const {
    return ok() ? *this : Status(context + *message_);
  }

 private:
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

// A value or an error Status. REQUIRES for value(): ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status::Error("Result constructed from OK status without value");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace tandem

// Always-on invariant check: a broken invariant is a bug, so the process
// aborts (the peer then takes over, which is what HA is for).
#define TANDEM_CHECK(cond)                                                       \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

#define TANDEM_RETURN_IF_ERROR(expr)      \
  do {                                    \
    ::tandem::Status _st = (expr);        \
    if (!_st.ok()) return _st;            \
  } while (0)
