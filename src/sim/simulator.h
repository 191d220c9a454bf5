// The deterministic simulator: a cluster of Raft cores on a simulated network, disk and clock,
// driven by simulated clients and a fault schedule, with every safety invariant checked after
// every step (sim/checker.h). Everything random comes from one generator seeded by the run's
// seed, so a seed replays one run exactly, trace and all.
//
// A run has two phases (TigerBeetle's VOPR): a safety phase with faults, then a liveness phase
// in which every fault is healed and the cluster must elect a leader and commit every pending
// client request within a bounded number of ticks.
#pragma once

#include <cstdint>

#include "sim/run.h"

namespace synod::sim {

struct SimStats : RunStats {
  uint64_t membership_changes = 0;
  uint64_t transfers = 0;
  uint64_t leaders_elected = 0;
  uint64_t committed = 0;
  uint64_t proposals = 0;
  uint64_t proposals_applied = 0;
  uint64_t reads_released = 0;
  uint64_t snapshots_installed = 0;
  // Disk faults, and what recovery made of them.
  uint64_t fsync_failures = 0;
  uint64_t torn_writes_cut = 0;
  uint64_t torn_writes_kept_whole = 0;
  uint64_t corruptions_detected = 0;

  // Folds in another run's figures: every counter is summed, liveness_ticks keeps the slowest.
  void Add(const SimStats& run);
};

using SimResult = RunResult<SimStats>;

SimResult RunSimulation(const SimOptions& options);

}  // namespace synod::sim
