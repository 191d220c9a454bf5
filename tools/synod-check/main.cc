// synod-check: is a recorded history of key-value operations linearizable?
//
//   synod-check history.jsonl
//
// Reads a JSON-lines history (schema: docs/check.md) and exits 0 when it is linearizable; 1
// when it is not, after printing the keys that are not and, for the first, a small sub-history
// that shows it; 2 when the file cannot be read or a line is malformed (the message names it).
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

// More violating keys than this are counted, not listed.
constexpr size_t kKeysListedMax = 20;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Checks that a recorded key-value history is linearizable"};
  std::string path;
  app.add_option("history", path, "JSON-lines history file (docs/check.md)")->required();
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
  const synod::check::CheckReport report = synod::check::CheckHistory(*history);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string figures = fmt::format(
      "{} operations on {} keys ({} checked, {} configurations explored) in {:.3f} s",
      history->size(), report.keys, report.operations_checked, report.configurations, seconds);
  if (report.linearizable) {
    fmt::print("linearizable: {}\n", figures);
    return kLinearizable;
  }

  const std::vector<std::string>& keys = report.violating_keys;
  std::string listed;
  for (size_t i = 0; i < std::min(keys.size(), kKeysListedMax); ++i) {
    listed += fmt::format("{}\"{}\"", i == 0 ? "" : ", ", keys[i]);
  }
  if (keys.size() > kKeysListedMax)
    listed += fmt::format(" and {} more", keys.size() - kKeysListedMax);
  fmt::print("NOT linearizable: {} of {} keys: {}\n", keys.size(), report.keys, listed);
  fmt::print("{}\n", figures);
  fmt::print(
      "\nKey \"{}\": these {} operations cannot be ordered so that every answer is right "
      "(a shrunk sub-history; \"line\" is the line in {}):\n{}",
      report.violation.key, report.violation.operations.size(), path,
      synod::check::FormatTable(report.violation.operations));
  return kNotLinearizable;
}
