#include "sim/paxos_simulator.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

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
  const PaxosSimResult result = RunPaxosSimulation(options);
  EXPECT_TRUE(result.passed) << result.failure;
  return trace.str();
}

// One seed replays one run exactly, to the last message.
TEST(PaxosSimulator, OneSeedReplaysExactly) {
  const std::string first = TraceOf(Options(7, "all"));
  const std::string second = TraceOf(Options(7, "all"));
  EXPECT_GT(first.size(), 5000u);
  EXPECT_EQ(first, second);
}

TEST(PaxosSimulator, DifferentSeedsRunDifferently) {
  EXPECT_NE(TraceOf(Options(7, "all")), TraceOf(Options(8, "all")));
}

TEST(PaxosSimulator, WithoutFaultsAValueIsChosenAndEveryNodeLearnsIt) {
  for (uint32_t nodes : {3u, 5u, 7u}) {
    SimOptions options = Options(3, "none");
    options.nodes = nodes;
    std::ostringstream trace;
    options.trace = &trace;
    const PaxosSimResult result = RunPaxosSimulation(options);
    ASSERT_TRUE(result.passed) << result.failure;
    EXPECT_EQ(result.stats.chosen_under_faults, 1u);
    EXPECT_EQ(result.stats.crashes + result.stats.partitions + result.stats.pauses, 0u);
    EXPECT_EQ(result.stats.messages_dropped, 0u);
    // Every node reported its decision.
    size_t decided = 0;
    for (size_t at = trace.str().find(" decides "); at != std::string::npos;
         at = trace.str().find(" decides ", at + 1)) {
      ++decided;
    }
    EXPECT_EQ(decided, nodes);
  }
}

TEST(PaxosSimulator, FaultsAreInjected) {
  PaxosSimStats totals;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const PaxosSimResult result = RunPaxosSimulation(Options(seed, "all"));
    ASSERT_TRUE(result.passed) << "seed " << seed << ": " << result.failure;
    totals.Add(result.stats);
  }
  EXPECT_GT(totals.crashes, 0u);
  EXPECT_GT(totals.partitions, 0u);
  EXPECT_GT(totals.pauses, 0u);
  EXPECT_GT(totals.messages_dropped, 0u);
  EXPECT_GT(totals.messages_duplicated, 0u);
  // Some proposers were preempted or timed out and tried again.
  EXPECT_GT(totals.prepares, totals.proposers);
}

// Liveness is checked too: a run whose liveness bound is too short to decide fails as such.
TEST(PaxosSimulator, ARunThatCannotDecideInTimeFailsLiveness) {
  SimOptions options = Options(5, "none");
  options.safety_ticks = 1;
  options.liveness_ticks_max = 1;
  const PaxosSimResult result = RunPaxosSimulation(options);
  EXPECT_FALSE(result.passed);
  EXPECT_TRUE(result.failure.starts_with("Liveness:")) << result.failure;
}

}  // namespace
}  // namespace synod::sim
