#include "console/json_body.h"

#include <algorithm>
#include <set>
#include <vector>

namespace tandem::console {

using nlohmann::json;

std::string JsonTypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "something else";
  }
}

std::optional<JsonBodyError> ParseJsonBody(std::string_view content_type, std::string_view text,
                                           std::initializer_list<std::string_view> known,
                                           size_t max_bytes,
                                           std::string (*quote)(std::string_view), json* out) {
  if (text.size() > max_bytes) {
    return JsonBodyError{413, "the body is larger than " + std::to_string(max_bytes) + " bytes", ""};
  }
  std::string_view ct = content_type;
  if (ct.substr(0, 16) != "application/json" || (ct.size() > 16 && ct[16] != ';')) {
    return JsonBodyError{415,
                         "the body must be JSON (Content-Type: application/json), got " +
                             (ct.empty() ? std::string("no Content-Type") : quote(ct)),
                         ""};
  }
  std::vector<std::set<std::string>> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) seen.emplace_back();
    if (event == json::parse_event_t::object_end && !seen.empty()) seen.pop_back();
    if (event == json::parse_event_t::key && !seen.empty() &&
        !seen.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json body = json::parse(text, cb, /*allow_exceptions=*/false);
  if (body.is_discarded()) return JsonBodyError{400, "the body is not valid JSON", ""};
  if (!body.is_object()) {
    return JsonBodyError{400, "the body must be a JSON object, got " + JsonTypeName(body), ""};
  }
  if (!duplicate.empty()) return JsonBodyError{400, "field given more than once", duplicate};
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return JsonBodyError{400, "unknown field", key};
    }
  }
  *out = std::move(body);
  return std::nullopt;
}

std::optional<JsonBodyError> GetJsonString(const json& body, const std::string& key,
                                           std::string* out) {
  auto it = body.find(key);
  if (it == body.end()) return JsonBodyError{400, "required field is missing", key};
  if (!it->is_string()) {
    return JsonBodyError{400, "must be a string, got " + JsonTypeName(*it), key};
  }
  *out = it->get<std::string>();
  return std::nullopt;
}

}  // namespace tandem::console
