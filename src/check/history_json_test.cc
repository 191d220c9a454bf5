#include "check/history_json.h"

#include <gtest/gtest.h>

#include <sstream>

namespace synod::check {
namespace {

TEST(HistoryJson, ReadsEveryKindAndOutcome) {
  std::istringstream input(
      R"({"client": 1, "op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 10, "complete": 20})"
      "\n\n"
      R"({"client": 2, "op": "get", "key": "k", "value": "a", "outcome": "ok", "invoke": 21, "complete": 22})"
      "\n"
      R"({"client": 2, "op": "get", "key": "j", "value": null, "outcome": "ok", "invoke": 23, "complete": 24})"
      "\n"
      R"({"client": 3, "op": "cas", "key": "k", "expected": "a", "value": "b", "succeeded": true, "outcome": "ok", "invoke": 25, "complete": 26})"
      "\n"
      R"({"client": 4, "op": "delete", "key": "k", "outcome": "unknown", "invoke": 27})"
      "\n"
      R"({"client": 5, "op": "cas", "key": "k", "expected": "b", "value": "c", "outcome": "failed", "invoke": 28, "complete": 29})"
      "\n");
  const Result<std::vector<Operation>> history = ReadHistory(input);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 6u);
  const std::vector<Operation>& operations = *history;
  EXPECT_EQ(operations[0].kind, OperationKind::kPut);
  EXPECT_EQ(operations[0].value, "a");
  EXPECT_EQ(operations[0].invoke_time, 10);
  EXPECT_EQ(operations[0].complete_time, 20);
  EXPECT_EQ(operations[0].source_line, 1u);
  // The blank line counts: line numbers are those an editor shows.
  EXPECT_EQ(operations[1].source_line, 3u);
  EXPECT_TRUE(operations[1].found);
  EXPECT_EQ(operations[1].observed, "a");
  EXPECT_EQ(operations[1].client, 2u);
  EXPECT_FALSE(operations[2].found);
  EXPECT_EQ(operations[3].kind, OperationKind::kCompareAndSet);
  EXPECT_EQ(operations[3].expected, "a");
  EXPECT_EQ(operations[3].value, "b");
  EXPECT_TRUE(operations[3].succeeded);
  EXPECT_EQ(operations[4].kind, OperationKind::kDelete);
  EXPECT_EQ(operations[4].outcome, Outcome::kUnknown);
  EXPECT_EQ(operations[5].outcome, Outcome::kFailed);
}

// The error a single bad line gets.
std::string ErrorOf(const std::string& json) {
  const Result<Operation> operation = ParseOperation(json);
  EXPECT_FALSE(operation.ok()) << json;
  return std::string(operation.status().message());
}

TEST(HistoryJson, RefusesMalformedOperationsWithTheReason) {
  EXPECT_EQ(ErrorOf(R"(["put"])"), "an operation must be a JSON object");
  EXPECT_EQ(
      ErrorOf(
          R"({"op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"client\" is missing");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": -1, "op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"client\" must be a non-negative integer");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "append", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"op\" is \"append\"; expected put, get, delete or cas");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"value\" is missing");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "get", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"value\" is missing (null when the key was absent)");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 1})"),
      "\"complete\" is missing");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 1.5, "complete": 2})"),
      "\"invoke\" must be an integer of at most 64 bits");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "value": "a", "outcome": "ok", "invoke": 3, "complete": 2})"),
      "it completes at 2, before it is invoked at 3");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "cas", "key": "k", "expected": "a", "value": "b", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"succeeded\" is missing");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "value": "a", "outcome": "maybe", "invoke": 1, "complete": 2})"),
      "\"outcome\" is \"maybe\"; expected ok, failed or unknown");
  // A misspelt result would otherwise be read as a missing one.
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "cas", "key": "k", "expected": "a", "value": "b", "succeded": true, "outcome": "ok", "invoke": 1, "complete": 2})"),
      "unexpected field \"succeded\"");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "", "value": "a", "outcome": "ok", "invoke": 1, "complete": 2})"),
      "the key is empty");
  EXPECT_EQ(
      ErrorOf(
          R"({"client": 1, "op": "put", "key": "k", "value": 7, "outcome": "ok", "invoke": 1, "complete": 2})"),
      "\"value\" must be a string");
  EXPECT_NE(ErrorOf(R"({"client": 1,)").find("not valid JSON"), std::string::npos);
}

TEST(HistoryJson, ErrorNamesTheLine) {
  std::istringstream input(
      R"({"client": 1, "op": "delete", "key": "k", "outcome": "ok", "invoke": 1, "complete": 2})"
      "\n"
      R"({"client": 1, "op": "delete", "key": "k", "outcome": "ok", "invoke": 3})"
      "\n");
  const Result<std::vector<Operation>> history = ReadHistory(input);
  ASSERT_FALSE(history.ok());
  EXPECT_EQ(history.status().message(), "line 2: \"complete\" is missing");
}

}  // namespace
}  // namespace synod::check
