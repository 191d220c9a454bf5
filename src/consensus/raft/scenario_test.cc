// Runs every scenario script in testdata/ (commands: scenario_env.h), one test per file.
//
// A script is a sequence of cases separated by blank lines; lines starting with # between cases
// are comments. A case is one command line, a line "----", and the expected output, which ends
// at the next blank line:
//
//   propose 1 x
//   ----
//   proposed at 1/2
//
// With SYNOD_REWRITE=1 in the environment the test writes the actual output into the files
// instead of comparing, so a change of behaviour is reviewed as a diff of testdata/. A case may
// be written without "----" and output; the rewrite fills it in.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "consensus/raft/scenario_env.h"

namespace synod::raft {
namespace {

constexpr std::string_view kSeparator = "----";

struct Case {
  int line = 0;  // Of the command, counting from 1.
  std::string command;
  std::vector<std::string> expected;
};

// A comment or blank line between cases is kept as it is.
using Item = std::variant<std::string, Case>;

std::vector<Item> ParseScript(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(std::move(line));
  std::vector<Item> items;
  size_t i = 0;
  while (i < lines.size()) {
    if (lines[i].empty() || lines[i].starts_with('#')) {
      items.emplace_back(lines[i++]);
      continue;
    }
    Case scenario_case{static_cast<int>(i) + 1, lines[i++], {}};
    if (i < lines.size() && lines[i] == kSeparator) {
      for (++i; i < lines.size() && !lines[i].empty(); ++i) {
        scenario_case.expected.push_back(lines[i]);
      }
    }
    // The blank line that ends a case belongs to it; rendering writes it again.
    if (i < lines.size() && lines[i].empty()) ++i;
    items.emplace_back(std::move(scenario_case));
  }
  return items;
}

// The script with each case's output replaced by `outputs` (one per case, in order).
std::string RenderScript(const std::vector<Item>& items, const std::vector<std::string>& outputs) {
  std::string text;
  size_t next_output = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (const auto* line = std::get_if<std::string>(&items[i])) {
      text += *line + "\n";
      continue;
    }
    text += std::get<Case>(items[i]).command + "\n";
    text += std::string(kSeparator) + "\n" + outputs.at(next_output++) + "\n";
    if (i + 1 < items.size()) text += "\n";
  }
  return text;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<std::filesystem::path> ScenarioFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(SYNOD_RAFT_TESTDATA_DIR)) {
    if (entry.is_regular_file() && entry.path().extension() == ".txt") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool RewriteRequested() {
  const char* rewrite = std::getenv("SYNOD_REWRITE");
  return rewrite != nullptr && std::string_view(rewrite) == "1";
}

class ScenarioTest : public testing::TestWithParam<std::filesystem::path> {};

TEST_P(ScenarioTest, MatchesExpectedOutput) {
  const std::filesystem::path& path = GetParam();
  const std::vector<Item> items = ParseScript(ReadFile(path));
  const bool rewrite = RewriteRequested();
  ScenarioEnv env;
  std::vector<std::string> outputs;
  for (const Item& item : items) {
    const auto* scenario_case = std::get_if<Case>(&item);
    if (scenario_case == nullptr) continue;
    const std::string where = fmt::format("{}:{}", path.string(), scenario_case->line);
    Result<std::string> actual = env.Run(scenario_case->command);
    ASSERT_TRUE(actual.ok()) << where << ": " << scenario_case->command << "\n" << actual.status();
    const std::string expected = fmt::format("{}", fmt::join(scenario_case->expected, "\n"));
    if (!rewrite && *actual != expected) {
      // Later cases run on from a different state; their differences would only be echoes.
      FAIL() << where << ": " << scenario_case->command << "\nexpected:\n"
             << expected << "\nactual:\n"
             << *actual << "\n(SYNOD_REWRITE=1 rewrites the file with the actual output)";
    }
    outputs.push_back(*std::move(actual));
  }
  if (rewrite) std::ofstream(path) << RenderScript(items, outputs);
}

std::string TestName(const testing::TestParamInfo<std::filesystem::path>& info) {
  std::string name = info.param.stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Testdata, ScenarioTest, testing::ValuesIn(ScenarioFiles()), TestName);

}  // namespace
}  // namespace synod::raft
