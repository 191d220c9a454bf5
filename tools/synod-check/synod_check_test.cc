// Runs the synod-check binary on history files, as the fault harness will.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace {

struct ToolRun {
  int exit_status = -1;
  std::string output;  // stdout and stderr together
};

ToolRun RunCheck(const std::string& arguments) {
  const std::string command = fmt::format("{} {} 2>&1", SYNOD_CHECK_BINARY, arguments);
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr) << command;
  ToolRun run;
  if (pipe == nullptr) return run;
  char buffer[4096];
  while (size_t read = fread(buffer, 1, sizeof buffer, pipe)) run.output.append(buffer, read);
  const int status = pclose(pipe);
  run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string Testdata(const char* name) {
  return fmt::format("{}/{}", SYNOD_CHECK_TESTDATA, name);
}

TEST(SynodCheckTool, LinearizableHistoryExitsZero) {
  const ToolRun run = RunCheck(Testdata("linearizable.jsonl"));
  EXPECT_EQ(run.exit_status, 0) << run.output;
  EXPECT_EQ(run.output.rfind("linearizable: 8 operations on 2 keys (7 checked,", 0), 0u)
      << run.output;
}

TEST(SynodCheckTool, StaleReadExitsOneWithTheShrunkSubHistory) {
  const ToolRun run = RunCheck(Testdata("stale_read.jsonl"));
  EXPECT_EQ(run.exit_status, 1) << run.output;
  EXPECT_EQ(run.output.rfind("NOT linearizable: 1 of 2 keys: \"x\"\n", 0), 0u) << run.output;
  // Put 1, put 2, and the read of 1 after put 2 completed; the other reads are shrunk away.
  const std::string table =
      "Key \"x\": these 3 operations cannot be ordered so that every answer is right "
      "(a shrunk sub-history; \"line\" is the line in " +
      Testdata("stale_read.jsonl") +
      "):\n"
      "times are relative to 1000\n"
      "invoke  complete  client  operation    result     line\n"
      "+0      +100      1       put x = \"1\"  ok         1\n"
      "+400    +500      1       put x = \"2\"  ok         4\n"
      "+600    +700      3       get x        found \"1\"  6\n";
  EXPECT_NE(run.output.find(table), std::string::npos) << run.output;
}

TEST(SynodCheckTool, MalformedLineExitsTwoNamingTheLine) {
  const ToolRun run = RunCheck(Testdata("malformed.jsonl"));
  EXPECT_EQ(run.exit_status, 2) << run.output;
  EXPECT_EQ(run.output, fmt::format("synod-check: {}: line 2: \"value\" is missing (null when the "
                                    "key was absent)\n",
                                    Testdata("malformed.jsonl")));
}

TEST(SynodCheckTool, SearchOutOfBudgetExitsThree) {
  const ToolRun run = RunCheck("--max-configurations 1 " + Testdata("linearizable.jsonl"));
  EXPECT_EQ(run.exit_status, 3) << run.output;
  EXPECT_EQ(run.output.rfind("UNDECIDED: the search of 1 of 2 keys ran out of 1 configurations: "
                             "\"x\"\n",
                             0),
            0u)
      << run.output;
}

TEST(SynodCheckTool, MissingFileExitsTwo) {
  const ToolRun run = RunCheck(Testdata("no_such_file.jsonl"));
  EXPECT_EQ(run.exit_status, 2) << run.output;
  EXPECT_NE(run.output.find("cannot open"), std::string::npos) << run.output;
}

}  // namespace
