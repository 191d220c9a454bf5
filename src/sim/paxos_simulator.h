// The deterministic simulator for single-decree Paxos (consensus/paxos): 3, 5 or 7 nodes, some
// of which are asked to propose different values, on the same simulated network as the Raft
// simulator (sim/network.h), with a disk that keeps only what was synced, crashes, restarts and
// pauses. The global invariants (sim/paxos_checker.h) are checked after every event and every
// node runs its own CheckInvariants after every input. Everything random comes from one
// generator seeded by the run's seed, so a seed replays one run exactly.
//
// As in the Raft simulator, a safety phase with faults is followed by a liveness phase in which
// every fault is healed and every node must learn the chosen value within a bound.
#pragma once

#include <cstdint>

#include "sim/run.h"

namespace synod::sim {

struct PaxosSimStats : RunStats {
  uint64_t proposers = 0;
  // Phase 1 rounds started by all proposers together (the first and every retry).
  uint64_t prepares = 0;
  // Runs in which a value was chosen before the faults stopped.
  uint64_t chosen_under_faults = 0;

  // Folds in another run's figures: every counter is summed, liveness_ticks keeps the slowest.
  void Add(const PaxosSimStats& run);
};

using PaxosSimResult = RunResult<PaxosSimStats>;

// Of the Fault kinds in options.faults, Paxos runs use loss, duplicate, delay, partition, crash
// and pause; the others (slow, membership, transfer, disk) have no Paxos counterpart here and
// are ignored. options.nodes is the number of nodes, each proposer, acceptor and learner.
PaxosSimResult RunPaxosSimulation(const SimOptions& options);

}  // namespace synod::sim
