// Helpers of the console API shared by its api_*.cc files (defined in
// console/api.cc). Not a public interface: only the API's own files use it.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "console/api.h"
#include "console/db.h"

namespace tandem::console::api_internal {

using Error = std::optional<ApiResponse>;

// An error answer whose code follows from the status (400 invalid_argument,
// 401 unauthenticated, 403 forbidden, 404 not_found, 405, 409 conflict, ...).
ApiResponse Fail(int status, const std::string& message, const std::string& field = "");
// A database error: 500 "database: ...".
ApiResponse Internal(const Status& st);
// User text made safe for one line of a log or an audit row (control bytes
// escaped, cut at `max` bytes).
std::string Printable(std::string_view s, size_t max);
// User text quoted for a message ("..." with Printable, cut at 80 bytes).
std::string Quote(std::string_view s);
// 1..64 characters from A-Z a-z 0-9 _ . -
bool IsValidUserName(std::string_view s);
// "a string", "an integer", ...: for messages.
std::string TypeName(const nlohmann::json& v);
// The JSON object body of a POST: known fields only, none twice.
Error ParseBody(const ApiRequest& r, std::initializer_list<std::string_view> known,
                nlohmann::json* out, size_t max_bytes = kApiBodyBytesMax);
// A required string field.
Error GetString(const nlohmann::json& body, const std::string& key, std::string* out);
// Query parameters: each at most once, all known.
Error CheckParams(const ApiRequest& r, std::initializer_list<std::string_view> known,
                  std::map<std::string, std::string>* out);
// An optional integer query parameter in [lo, hi] (*out unchanged if absent).
Error ParamInt(const std::map<std::string, std::string>& params, const std::string& key,
               int64_t lo, int64_t hi, int64_t* out);
// The paging parameters of a list newest first by id: "limit" in
// [1, limit_max] (default limit_default) and "before" (only ids below it;
// default all).
Error PageParams(const std::map<std::string, std::string>& params, int64_t limit_default,
                 int64_t limit_max, int64_t* limit, int64_t* before);
// Appends an entry made by `entry` for every row of the bound statement `s`
// to the array *entries; a failed step is a 500.
Error ListRows(Stmt& s, const std::function<nlohmann::json(const Stmt&)>& entry,
               nlohmann::json* entries);
// Route matching: a "{name}" segment of `pattern` matches any one non-empty
// segment of `path`, which goes to *name.
bool MatchRoute(std::string_view pattern, std::string_view path, std::string* name);

}  // namespace tandem::console::api_internal
