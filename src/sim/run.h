// What a run of either simulator (Raft: sim/simulator.h, single-decree Paxos:
// sim/paxos_simulator.h) takes and returns.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>

#include "sim/assertion_failure.h"
#include "sim/faults.h"

namespace synod::sim {

struct SimOptions {
  uint64_t seed = 1;
  FaultSet faults;
  // Cluster size: 3, 5 or 7 voters; 0 picks one from the seed.
  uint32_t nodes = 0;
  // Ticks of the safety phase (with faults).
  uint64_t safety_ticks = 1000;
  // Ticks the liveness phase may take before the run fails.
  uint64_t liveness_ticks_max = 500;
  // Where to write the readable trace; nullptr for none.
  std::ostream* trace = nullptr;
};

// The figures every simulator counts; each adds its protocol's own.
struct RunStats {
  uint64_t events = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t messages_duplicated = 0;
  uint64_t crashes = 0;
  uint64_t pauses = 0;
  uint64_t partitions = 0;
  uint64_t liveness_ticks = 0;

  // Folds in another run's figures: every counter is summed, liveness_ticks keeps the slowest.
  void Add(const RunStats& run) {
    events += run.events;
    messages_sent += run.messages_sent;
    messages_dropped += run.messages_dropped;
    messages_duplicated += run.messages_duplicated;
    crashes += run.crashes;
    pauses += run.pauses;
    partitions += run.partitions;
    liveness_ticks = std::max(liveness_ticks, run.liveness_ticks);
  }
};

template <typename Stats>
struct RunResult {
  bool passed = false;
  // The first invariant violated, or why liveness failed.
  std::string failure;
  // Every random parameter the seed chose, on one line.
  std::string parameters;
  Stats stats;
};

// Runs `simulation` (whose Run() returns a RunResult and whose parameters_description() names
// its random choices), reporting a failed assertion inside it as the run's failure.
// Precondition: ThrowAssertionFailures() was called before the simulation was built.
template <typename Simulation>
auto RunReportingAssertions(Simulation& simulation, std::ostream* trace) {
  using Result = decltype(simulation.Run());
  try {
    return simulation.Run();
  } catch (const AssertionFailure& failure) {
    if (trace != nullptr) *trace << "FAILURE: " << failure.what << "\n";
    Result result;
    result.failure = failure.what;
    result.parameters = simulation.parameters_description();
    return result;
  }
}

}  // namespace synod::sim
