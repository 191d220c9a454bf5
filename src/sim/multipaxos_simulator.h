// The deterministic simulator for the Multi-Paxos engine (consensus/multipaxos): 3, 5 or 7
// nodes under client load (proposals and linearizable reads), on the same simulated network as
// the other simulators (sim/network.h), with a disk that keeps only what was synced, crashes,
// restarts, pauses, snapshots and log compaction, and membership changes (spare nodes join as
// learners or voters, members are removed, learners promoted). The global invariants
// (sim/multipaxos_checker.h) are checked after every event and every node runs its own
// CheckInvariants after every input. Everything random comes from one generator seeded by the
// run's seed, so a seed replays one run exactly.
//
// A safety phase with faults is followed by a liveness phase in which every fault is healed and
// a command proposed then must be applied by every node within a bound.
#pragma once

#include <cstdint>

#include "sim/run.h"

namespace synod::sim {

struct MultiPaxosSimStats : RunStats {
  uint64_t leaders_elected = 0;
  uint64_t proposals = 0;
  // Slots chosen (a majority accepted them in one ballot), no-ops included.
  uint64_t chosen = 0;
  uint64_t reads_released = 0;
  // Of those, reads a follower asked its leader for (kReadIndex) and released.
  uint64_t follower_reads_released = 0;
  uint64_t snapshots_installed = 0;
  // Configuration changes the leaders accepted for proposal.
  uint64_t membership_changes = 0;
  // Leadership transfers the leaders accepted, and those whose target then led.
  uint64_t transfers = 0;
  uint64_t transfers_completed = 0;

  // Folds in another run's figures: every counter is summed, liveness_ticks keeps the slowest.
  void Add(const MultiPaxosSimStats& run);
};

using MultiPaxosSimResult = RunResult<MultiPaxosSimStats>;

// Of the Fault kinds in options.faults, Multi-Paxos runs use loss, duplicate, delay, partition,
// crash, pause, membership and transfer; the others (slow, disk) are ignored here.
MultiPaxosSimResult RunMultiPaxosSimulation(const SimOptions& options);

}  // namespace synod::sim
