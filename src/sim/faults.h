// The fault kinds the simulators inject, and the --faults syntax that selects them.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
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

}  // namespace synod::sim
