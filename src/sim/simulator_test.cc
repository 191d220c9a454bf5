#include "sim/simulator.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace synod::sim {
namespace {

SimOptions Options(uint64_t seed, const std::string& faults) {
  SimOptions options;
  options.seed = seed;
  options.faults = *ParseFaults(faults);
  return options;
}

std::string TraceOf(SimOptions options) {
  std::ostringstream trace;
  options.trace = &trace;
  const SimResult result = RunSimulation(options);
  EXPECT_TRUE(result.passed) << result.failure;
  return trace.str();
}

// The simulator's whole point: one seed replays one run exactly, to the last message.
TEST(Simulator, OneSeedReplaysExactly) {
  const std::string first = TraceOf(Options(7, "all"));
  const std::string second = TraceOf(Options(7, "all"));
  EXPECT_GT(first.size(), 10000u);
  EXPECT_EQ(first, second);
}

TEST(Simulator, DifferentSeedsRunDifferently) {
  EXPECT_NE(TraceOf(Options(7, "all")), TraceOf(Options(8, "all")));
}

TEST(Simulator, WithoutFaultsEveryRequestCommits) {
  for (uint32_t nodes : {3u, 5u, 7u}) {
    SimOptions options = Options(3, "none");
    options.nodes = nodes;
    const SimResult result = RunSimulation(options);
    ASSERT_TRUE(result.passed) << result.failure;
    EXPECT_EQ(result.stats.leaders_elected, 1u);
    EXPECT_GT(result.stats.committed, 100u);
    EXPECT_GT(result.stats.reads_released, 0u);
    EXPECT_EQ(result.stats.crashes, 0u);
  }
}

TEST(Simulator, FaultsAreInjected) {
  SimResult result = RunSimulation(Options(11, "all"));
  ASSERT_TRUE(result.passed) << result.failure;
  const SimStats& stats = result.stats;
  EXPECT_GT(stats.leaders_elected, 1u);
  EXPECT_GT(stats.crashes + stats.partitions + stats.pauses, 0u);
  EXPECT_GT(stats.messages_dropped, 0u);
}

// Seeds that once exposed a bug (in the core or the simulator) replay on every test run.
TEST(Simulator, RegressionSeedsPass) {
  std::ifstream file(SYNOD_SIM_REGRESSION_SEEDS);
  ASSERT_TRUE(file.is_open()) << SYNOD_SIM_REGRESSION_SEEDS;
  std::string line;
  int count = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint64_t seed = 0;
    std::string faults;
    ASSERT_TRUE(fields >> seed >> faults) << "bad line: " << line;
    const SimResult result = RunSimulation(Options(seed, faults));
    EXPECT_TRUE(result.passed) << "seed " << seed << ": " << result.failure;
    ++count;
  }
  EXPECT_GT(count, 0);
}

TEST(Simulator, ParseFaults) {
  EXPECT_TRUE(ParseFaults("all")->all());
  EXPECT_TRUE(ParseFaults("none")->none());
  FaultSet two = *ParseFaults("crash,loss");
  EXPECT_EQ(two.count(), 2u);
  EXPECT_TRUE(two.test(static_cast<size_t>(Fault::kCrash)));
  EXPECT_EQ(ToString(two), "loss,crash");
  EXPECT_EQ(ParseFaults("crash,earthquake").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace synod::sim
