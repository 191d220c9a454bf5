#include "check/history.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "base/assert.h"

namespace synod::check {

bool MayWrite(const Operation& operation) {
  return operation.kind != OperationKind::kGet;
}

Status Validate(const Operation& operation) {
  // etcd refuses an empty key, so a history holding one was not recorded from a real store.
  if (operation.key.empty()) return absl::InvalidArgumentError("the key is empty");
  if (operation.outcome == Outcome::kOk && operation.complete_time < operation.invoke_time) {
    return absl::InvalidArgumentError(fmt::format("it completes at {}, before it is invoked at {}",
                                                  operation.complete_time, operation.invoke_time));
  }
  return absl::OkStatus();
}

std::string DescribeRequest(const Operation& operation) {
  switch (operation.kind) {
    case OperationKind::kPut:
      return fmt::format("put {} = \"{}\"", operation.key, operation.value);
    case OperationKind::kGet:
      return fmt::format("get {}", operation.key);
    case OperationKind::kDelete:
      return fmt::format("delete {}", operation.key);
    case OperationKind::kCompareAndSet:
      return fmt::format("cas {} \"{}\" -> \"{}\"", operation.key, operation.expected,
                         operation.value);
  }
  SYNOD_ASSERT_MSG(false, "unknown operation kind {}", static_cast<int>(operation.kind));
}

std::string DescribeResult(const Operation& operation) {
  switch (operation.outcome) {
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
    case Outcome::kOk:
      break;
  }
  switch (operation.kind) {
    case OperationKind::kGet:
      return operation.found ? fmt::format("found \"{}\"", operation.observed) : "absent";
    case OperationKind::kCompareAndSet:
      return operation.succeeded ? "succeeded" : "did not succeed";
    case OperationKind::kPut:
    case OperationKind::kDelete:
      return "ok";
  }
  SYNOD_ASSERT_MSG(false, "unknown operation kind {}", static_cast<int>(operation.kind));
}

std::string FormatTable(const std::vector<Operation>& operations) {
  if (operations.empty()) return "(no operations)\n";
  std::vector<const Operation*> ordered;
  for (const Operation& operation : operations) ordered.push_back(&operation);
  std::stable_sort(ordered.begin(), ordered.end(), [](const Operation* a, const Operation* b) {
    return a->invoke_time < b->invoke_time;
  });
  const int64_t base_time = ordered.front()->invoke_time;

  constexpr size_t kColumns = 6;
  using Row = std::array<std::string, kColumns>;
  std::vector<Row> rows;
  rows.push_back({"invoke", "complete", "client", "operation", "result", "line"});
  for (const Operation* operation : ordered) {
    // An unknown operation has no completion: it may take effect at any later time.
    const std::string complete = operation->outcome == Outcome::kOk
                                     ? fmt::format("+{}", operation->complete_time - base_time)
                                     : "-";
    const std::string line =
        operation->source_line == 0 ? "-" : fmt::format("{}", operation->source_line);
    rows.push_back({fmt::format("+{}", operation->invoke_time - base_time), complete,
                    fmt::format("{}", operation->client), DescribeRequest(*operation),
                    DescribeResult(*operation), line});
  }
  std::array<size_t, kColumns> widths{};
  for (const Row& row : rows) {
    for (size_t column = 0; column < kColumns; ++column) {
      widths[column] = std::max(widths[column], row[column].size());
    }
  }
  std::string table = fmt::format("times are relative to {}\n", base_time);
  for (const Row& row : rows) {
    std::string line;
    for (size_t column = 0; column < kColumns; ++column) {
      line += fmt::format("{:<{}}", row[column], column + 1 < kColumns ? widths[column] + 2 : 0);
    }
    table += line + "\n";
  }
  return table;
}

}  // namespace synod::check
