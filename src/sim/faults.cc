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

}  // namespace synod::sim
