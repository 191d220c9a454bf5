// The fault kinds the simulators inject, and the --faults syntax that selects them.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/prng.h"
#include "base/status.h"
#include "consensus/raft/types.h"

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

inline bool Enabled(const FaultSet& faults, Fault fault) {
  return faults.test(static_cast<size_t>(fault));
}

// Of the enabled faults, those that start as events on a node rather than per message:
// partition, crash and pause.
std::vector<Fault> NodeEventFaults(const FaultSet& faults);

// The fault rates the Paxos simulators (single-decree and Multi-Paxos) draw from a seed, for the
// enabled faults (zero for the others). Times are in the simulators' units, `tick_units` a tick.
struct FaultRates {
  uint32_t loss_percent = 0;
  uint32_t duplicate_percent = 0;
  uint32_t long_delay_percent = 0;
  uint64_t long_delay_units_max = 0;
  uint32_t fault_per_mille = 0;  // chance per tick of starting a node fault
  uint64_t downtime_units_max = 0;
  // FoundationDB-style "buggify": the chance of a fault (crash, isolation or pause) of an
  // acceptor right after its promise or acceptance left, the moment at which it has promised
  // something it must not forget and the proposer's next step is still on the wire.
  uint32_t acceptor_fault_percent = 0;

  std::string ToString() const;
};
FaultRates ChooseFaultRates(const FaultSet& faults, uint64_t tick_units, base::Prng& prng);

// The target of a transfer fault: a random voter of `membership` other than `leader`, or
// kNoNode when there is none (the Raft and Multi-Paxos simulators share the choice).
NodeId ChooseTransferTarget(const raft::Membership& membership, NodeId leader,
                            base::Prng& prng);

}  // namespace synod::sim
