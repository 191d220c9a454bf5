#include "sim/faults.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

namespace synod::sim {
namespace {

constexpr std::array<std::string_view, kFaultCount> kFaultNames = {
    "loss",  "duplicate", "delay",      "partition", "crash",
    "pause", "slow",      "membership", "transfer",  "disk"};

}  // namespace

std::string_view ToString(Fault fault) {
  return kFaultNames[static_cast<size_t>(fault)];
}

std::string ToString(const FaultSet& faults) {
  if (faults.all()) return "all";
  if (faults.none()) return "none";
  std::vector<std::string_view> names;
  for (size_t i = 0; i < kFaultCount; ++i) {
    if (faults.test(i)) names.push_back(kFaultNames[i]);
  }
  return fmt::format("{}", fmt::join(names, ","));
}

Result<FaultSet> ParseFaults(std::string_view spec) {
  FaultSet faults;
  if (spec == "all") return faults.set();
  if (spec == "none") return faults;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view name = spec.substr(0, comma);
    auto it = std::find(kFaultNames.begin(), kFaultNames.end(), name);
    if (it == kFaultNames.end()) {
      return absl::InvalidArgumentError(fmt::format("unknown fault \"{}\" (known: all, none, {})",
                                                    name, fmt::join(kFaultNames, ", ")));
    }
    faults.set(static_cast<size_t>(it - kFaultNames.begin()));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
  }
  return faults;
}

std::vector<Fault> NodeEventFaults(const FaultSet& faults) {
  std::vector<Fault> enabled;
  for (Fault fault : {Fault::kPartition, Fault::kCrash, Fault::kPause}) {
    if (Enabled(faults, fault)) enabled.push_back(fault);
  }
  return enabled;
}

std::string FaultRates::ToString() const {
  return fmt::format(
      "loss={}% dup={}% long_delay={}% long_delay_max={}u faults_per_mille={} downtime_max={}u "
      "acceptor_faults={}%",
      loss_percent, duplicate_percent, long_delay_percent, long_delay_units_max, fault_per_mille,
      downtime_units_max, acceptor_fault_percent);
}

FaultRates ChooseFaultRates(const FaultSet& f, uint64_t tick_units, base::Prng& prng) {
  FaultRates r;
  if (Enabled(f, Fault::kLoss)) r.loss_percent = static_cast<uint32_t>(prng.Between(1, 20));
  if (Enabled(f, Fault::kDuplicate)) {
    r.duplicate_percent = static_cast<uint32_t>(prng.Between(1, 10));
  }
  if (Enabled(f, Fault::kDelay)) {
    r.long_delay_percent = static_cast<uint32_t>(prng.Between(1, 20));
    r.long_delay_units_max = prng.Between(2, 40) * tick_units;
  }
  const bool events = !NodeEventFaults(f).empty();
  r.fault_per_mille = events ? static_cast<uint32_t>(prng.Between(10, 80)) : 0;
  if (Enabled(f, Fault::kCrash)) {
    r.downtime_units_max =
        prng.Chance(1, 2) ? prng.Between(2, 30) : prng.Between(5, 50) * tick_units;
  }
  if (events && prng.Chance(1, 2)) {
    r.acceptor_fault_percent = static_cast<uint32_t>(prng.Between(1, 20));
  }
  return r;
}

NodeId ChooseTransferTarget(const raft::Membership& membership, NodeId leader,
                            base::Prng& prng) {
  std::vector<NodeId> others;
  for (NodeId voter : membership.voters) {
    if (voter != leader) others.push_back(voter);
  }
  return others.empty() ? kNoNode : others[prng.Below(others.size())];
}

}  // namespace synod::sim
