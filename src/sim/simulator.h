// The deterministic simulator: a cluster of Raft cores on a simulated network, disk and clock,
// driven by simulated clients and a fault schedule, with every safety invariant checked after
// every step (sim/checker.h). Everything random comes from one generator seeded by the run's
// seed, so a seed replays one run exactly, trace and all.
//
// A run has two phases (TigerBeetle's VOPR): a safety phase with faults, then a liveness phase
// in which every fault is healed and the cluster must elect a leader and commit every pending
// client request within a bounded number of ticks.
#pragma once

#include <bitset>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "base/status.h"

namespace synod::sim {

enum class Fault : uint8_t {
  kLoss,        // messages dropped
  kDuplicate,   // messages delivered twice
  kDelay,       // long, arbitrary delays, so messages are reordered
  kPartition,   // symmetric and one-way partitions, healed later
  kCrash,       // crash (losing everything not yet persisted) and restart
  kPause,       // a node stops for a while and resumes (a long GC pause, SIGSTOP)
  kSlow,        // a node's disk and network become much slower for a while
  kMembership,  // add and remove voters and learners, promote learners
  kTransfer,    // leadership transfers
  kDisk,        // torn writes at a crash, fsync failures, flipped bits in old log records
};
inline constexpr size_t kFaultCount = 10;
using FaultSet = std::bitset<kFaultCount>;

std::string_view ToString(Fault fault);
// "all", "none", or a comma-separated list of fault names ("loss,crash,partition").
Result<FaultSet> ParseFaults(std::string_view spec);
std::string ToString(const FaultSet& faults);

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

struct SimStats {
  uint64_t events = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t messages_duplicated = 0;
  uint64_t crashes = 0;
  uint64_t pauses = 0;
  uint64_t partitions = 0;
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
  uint64_t liveness_ticks = 0;

  // Folds in another run's figures: every counter is summed, liveness_ticks keeps the slowest.
  void Add(const SimStats& run);
};

struct SimResult {
  bool passed = false;
  // The first invariant violated, or why liveness failed.
  std::string failure;
  // Every random parameter the seed chose, on one line.
  std::string parameters;
  SimStats stats;
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace synod::sim
