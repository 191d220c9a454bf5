// synod-check: is a recorded history of key-value operations linearizable?
//
//   synod-check history.jsonl
//
// Reads a JSON-lines history (schema: docs/check.md) and exits 0 when it is linearizable; 1
// when it is not, after printing the keys that are not and, for the first, a small sub-history
// that shows it; 2 when the file cannot be read or a line is malformed (the message names it);
// 3 when no key is shown to violate linearizability but the search of some key ran out of
// --max-configurations (they are listed).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>

#include "check/history_json.h"
#include "check/linearizability.h"

namespace {

constexpr int kLinearizable = 0;
constexpr int kNotLinearizable = 1;
constexpr int kBadInput = 2;
constexpr int kUndecided = 3;

// More violating keys than this are counted, not listed.
constexpr size_t kKeysListedMax = 20;

std::string ListKeys(const std::vector<std::string>& keys) {
  std::string listed;
  for (size_t i = 0; i < std::min(keys.size(), kKeysListedMax); ++i) {
    listed += fmt::format("{}\"{}\"", i == 0 ? "" : ", ", keys[i]);
  }
  if (keys.size() > kKeysListedMax) {
    listed += fmt::format(" and {} more", keys.size() - kKeysListedMax);
  }
  return listed;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Checks that a recorded key-value history is linearizable"};
  std::string path;
  uint64_t configurations_max = synod::check::kConfigurationsMaxDefault;
  app.add_option("history", path, "JSON-lines history file (docs/check.md)")->required();
  app.add_option("--max-configurations", configurations_max,
                 "Give up on a key after its search has memoised this many configurations "
                 "(100 to 250 bytes each); shrinking a violation gets as many in all")
      ->check(CLI::PositiveNumber)
      ->default_val(synod::check::kConfigurationsMaxDefault);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int status = app.exit(error);
    return status == 0 ? kLinearizable : kBadInput;
  }

  std::ifstream input(path);
  if (!input) {
    fmt::print(stderr, "synod-check: cannot open {}\n", path);
    return kBadInput;
  }
  const synod::Result<std::vector<synod::check::Operation>> history =
      synod::check::ReadHistory(input);
  if (!history.ok()) {
    fmt::print(stderr, "synod-check: {}: {}\n", path, std::string(history.status().message()));
    return kBadInput;
  }

  const auto start = std::chrono::steady_clock::now();
  const synod::check::CheckReport report = synod::check::CheckHistory(*history, configurations_max);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string figures = fmt::format(
      "{} operations on {} keys ({} checked, {} configurations explored) in {:.3f} s",
      history->size(), report.keys, report.operations_checked, report.configurations, seconds);
  if (report.linearizable) {
    fmt::print("linearizable: {}\n", figures);
    return kLinearizable;
  }

  if (report.violating_keys.empty()) {
    fmt::print("UNDECIDED: the search of {} of {} keys ran out of {} configurations: {}\n",
               report.undecided_keys.size(), report.keys, configurations_max,
               ListKeys(report.undecided_keys));
    fmt::print("{}\n", figures);
    return kUndecided;
  }
  fmt::print("NOT linearizable: {} of {} keys: {}\n", report.violating_keys.size(), report.keys,
             ListKeys(report.violating_keys));
  if (!report.undecided_keys.empty()) {
    fmt::print("undecided (out of configurations): {}\n", ListKeys(report.undecided_keys));
  }
  fmt::print("{}\n", figures);
  fmt::print(
      "\nKey \"{}\": these {} operations cannot be ordered so that every answer is right "
      "(a shrunk sub-history; \"line\" is the line in {}):\n{}",
      report.violation.key, report.violation.operations.size(), path,
      synod::check::FormatTable(report.violation.operations));
  return kNotLinearizable;
}
