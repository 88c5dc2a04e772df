// The strict JSON request body shared by the console API (console/api.cc)
// and the agent (daemon/agent.cc): a JSON object of known fields, no key
// given twice (at any depth), Content-Type application/json, at most a given
// size.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tandem::console {

// Why a body was refused: the HTTP status (400, 413 or 415), the message
// and, when one field is at fault, its name.
struct JsonBodyError {
  int status = 400;
  std::string message;
  std::string field;
};

// "a string", "an integer", ...: for messages.
std::string JsonTypeName(const nlohmann::json& v);

// Parses `body` into *out (only on success). `quote` quotes user text (the
// Content-Type) for the 415 message.
std::optional<JsonBodyError> ParseJsonBody(std::string_view content_type, std::string_view body,
                                           std::initializer_list<std::string_view> known,
                                           size_t max_bytes,
                                           std::string (*quote)(std::string_view),
                                           nlohmann::json* out);

// The required string field `key` of a parsed body into *out.
std::optional<JsonBodyError> GetJsonString(const nlohmann::json& body, const std::string& key,
                                           std::string* out);

}  // namespace tandem::console
