#include "check/history_json.h"

#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace synod::check {
namespace {

using Json = nlohmann::json;

Status Invalid(std::string message) {
  return absl::InvalidArgumentError(std::move(message));
}

Result<std::string> StringField(const Json& object, const char* name) {
  const auto field = object.find(name);
  if (field == object.end()) return Invalid(fmt::format("\"{}\" is missing", name));
  if (!field->is_string()) return Invalid(fmt::format("\"{}\" must be a string", name));
  return field->get<std::string>();
}

Result<bool> BoolField(const Json& object, const char* name) {
  const auto field = object.find(name);
  if (field == object.end()) return Invalid(fmt::format("\"{}\" is missing", name));
  if (!field->is_boolean()) return Invalid(fmt::format("\"{}\" must be true or false", name));
  return field->get<bool>();
}

Result<int64_t> TimeField(const Json& object, const char* name) {
  const auto field = object.find(name);
  if (field == object.end()) return Invalid(fmt::format("\"{}\" is missing", name));
  const bool fits = field->is_number_integer() &&
                    (!field->is_number_unsigned() ||
                     field->get<uint64_t>() <= uint64_t{std::numeric_limits<int64_t>::max()});
  if (!fits) return Invalid(fmt::format("\"{}\" must be an integer of at most 64 bits", name));
  return field->get<int64_t>();
}

Result<uint64_t> ClientField(const Json& object) {
  const auto field = object.find("client");
  if (field == object.end()) return Invalid("\"client\" is missing");
  if (!field->is_number_unsigned()) {
    return Invalid("\"client\" must be a non-negative integer");
  }
  return field->get<uint64_t>();
}

Result<OperationKind> KindField(const Json& object) {
  Result<std::string> name = StringField(object, "op");
  if (!name.ok()) return name.status();
  if (*name == "put") return OperationKind::kPut;
  if (*name == "get") return OperationKind::kGet;
  if (*name == "delete") return OperationKind::kDelete;
  if (*name == "cas") return OperationKind::kCompareAndSet;
  return Invalid(fmt::format("\"op\" is \"{}\"; expected put, get, delete or cas", *name));
}

Result<Outcome> OutcomeField(const Json& object) {
  Result<std::string> name = StringField(object, "outcome");
  if (!name.ok()) return name.status();
  if (*name == "ok") return Outcome::kOk;
  if (*name == "failed") return Outcome::kFailed;
  if (*name == "unknown") return Outcome::kUnknown;
  return Invalid(fmt::format("\"outcome\" is \"{}\"; expected ok, failed or unknown", *name));
}

// The fields an operation of this kind and outcome may carry; any other is refused, so a
// misspelt field in the harness is an error rather than a silently missing result.
bool Allowed(std::string_view field, OperationKind kind, Outcome outcome) {
  if (field == "client" || field == "op" || field == "key" || field == "outcome" ||
      field == "invoke" || field == "complete") {
    return true;
  }
  const bool known = outcome == Outcome::kOk;
  switch (kind) {
    case OperationKind::kPut:
      return field == "value";
    case OperationKind::kGet:
      return known && field == "value";
    case OperationKind::kDelete:
      return false;
    case OperationKind::kCompareAndSet:
      return field == "expected" || field == "value" || (known && field == "succeeded");
  }
  return false;
}

// Assigns a field's value to `target`, or returns its error from the enclosing function.
#define SYNOD_ASSIGN_OR_RETURN(target, expression) \
  do {                                             \
    auto result = (expression);                    \
    if (!result.ok()) return result.status();      \
    target = *std::move(result);                   \
  } while (false)

Result<Operation> FromJson(const Json& object) {
  if (!object.is_object()) return Invalid("an operation must be a JSON object");
  Operation operation;
  SYNOD_ASSIGN_OR_RETURN(operation.client, ClientField(object));
  SYNOD_ASSIGN_OR_RETURN(operation.kind, KindField(object));
  SYNOD_ASSIGN_OR_RETURN(operation.key, StringField(object, "key"));
  SYNOD_ASSIGN_OR_RETURN(operation.outcome, OutcomeField(object));
  SYNOD_ASSIGN_OR_RETURN(operation.invoke_time, TimeField(object, "invoke"));
  // An operation without an answer has no completion time that matters; the harness may still
  // record when it gave up.
  if (operation.outcome == Outcome::kOk || object.contains("complete")) {
    SYNOD_ASSIGN_OR_RETURN(operation.complete_time, TimeField(object, "complete"));
  }
  for (const auto& [field, value] : object.items()) {
    if (!Allowed(field, operation.kind, operation.outcome)) {
      return Invalid(fmt::format("unexpected field \"{}\"", field));
    }
  }
  const bool known = operation.outcome == Outcome::kOk;
  switch (operation.kind) {
    case OperationKind::kPut:
      SYNOD_ASSIGN_OR_RETURN(operation.value, StringField(object, "value"));
      break;
    case OperationKind::kGet:
      if (!known) break;
      if (!object.contains("value")) {
        return Invalid("\"value\" is missing (null when the key was absent)");
      }
      operation.found = !object["value"].is_null();
      if (operation.found) SYNOD_ASSIGN_OR_RETURN(operation.observed, StringField(object, "value"));
      break;
    case OperationKind::kDelete:
      break;
    case OperationKind::kCompareAndSet:
      SYNOD_ASSIGN_OR_RETURN(operation.expected, StringField(object, "expected"));
      SYNOD_ASSIGN_OR_RETURN(operation.value, StringField(object, "value"));
      if (known) SYNOD_ASSIGN_OR_RETURN(operation.succeeded, BoolField(object, "succeeded"));
      break;
  }
  if (Status valid = Validate(operation); !valid.ok()) return valid;
  return operation;
}

#undef SYNOD_ASSIGN_OR_RETURN

}  // namespace

Result<Operation> ParseOperation(std::string_view json) {
  Json object;
  // nlohmann::json reports a syntax error only by exception; it stays inside this function.
  try {
    object = Json::parse(json);
  } catch (const Json::parse_error& error) {
    return Invalid(fmt::format("not valid JSON: {}", error.what()));
  }
  return FromJson(object);
}

Result<std::vector<Operation>> ReadHistory(std::istream& input) {
  std::vector<Operation> history;
  std::string line;
  for (uint64_t number = 1; std::getline(input, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Result<Operation> operation = ParseOperation(line);
    if (!operation.ok()) {
      return Invalid(fmt::format("line {}: {}", number, std::string(operation.status().message())));
    }
    operation->source_line = number;
    history.push_back(*std::move(operation));
  }
  if (input.bad()) return absl::DataLossError("reading the history failed");
  return history;
}

}  // namespace synod::check
