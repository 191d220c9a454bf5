// A linearizability checker for a key-value store (Herlihy & Wing 1990): is there one order of
// the operations, consistent with real time, in which each key behaves as a register that starts
// absent and every answer the clients got is the one that register gives?
//
// The search is Wing & Gong's depth-first search over linearization points with Lowe's
// memoisation of (set of linearized operations, register state) ("Testing for
// linearizability", Lowe 2017, sections 3 and 4). Keys are independent registers, so a history
// is linearizable exactly when each key's sub-history is (P-compositionality, Herlihy & Wing
// 1990 section 3.3); the search runs per key, which keeps each search small.
//
// Operations that failed are left out (they did not take effect). Unknown reads are left out
// (they changed nothing and nobody saw their answer). Unknown writes may take effect at any
// point after their invocation or never: their completion is +infinity and linearizing them is
// optional.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "check/history.h"

namespace synod::check {

// The search is exponential in the worst case (many concurrent operations on one key, many
// pending unknown writes); each search of one key stops after this many configurations
// (100 to 250 bytes each, so under about 1 GB) and leaves the key undecided. Shrinking a
// violation gets the same budget for all its searches together.
inline constexpr uint64_t kConfigurationsMaxDefault = 5'000'000;

enum class Verdict { kLinearizable, kNotLinearizable, kUndecided };

struct Violation {
  std::string key;
  // A small sub-history of the key that is not linearizable on its own, in order of invocation.
  // It is a proof for the whole history: every step that shrank it removed an operation whose
  // absence cannot turn a linearizable history into one that is not (see ShrinkViolation), so
  // the whole history is not linearizable either.
  std::vector<Operation> operations;
};

struct CheckReport {
  // True when every key's sub-history was shown linearizable.
  bool linearizable = true;
  // Every key whose sub-history is not linearizable, in key order.
  std::vector<std::string> violating_keys;
  // Every key whose search ran out of its budget of configurations, in key order.
  std::vector<std::string> undecided_keys;
  // The first violating key's shrunk sub-history; empty when there is none.
  Violation violation;
  uint64_t keys = 0;
  // Operations the search considered (failed operations and unknown reads excluded).
  uint64_t operations_checked = 0;
  // Configurations (linearized set, state) the search memoised, over all keys.
  uint64_t configurations = 0;
};

// Checks a history of any number of keys, each search stopping after `configurations_max`
// configurations. Precondition: every operation passes Validate.
CheckReport CheckHistory(const std::vector<Operation>& history,
                         uint64_t configurations_max = kConfigurationsMaxDefault);

// Whether the operations, all on one key, are linearizable. Precondition: as CheckHistory.
Verdict DecideKey(const std::vector<Operation>& operations,
                  uint64_t configurations_max = kConfigurationsMaxDefault);

// Shrinks a non-linearizable sub-history of one key: removes operations while the rest is still
// not linearizable, but only operations whose removal cannot make a linearizable history
// non-linearizable (reads, and writes of a value no remaining operation reads), so the result
// still proves the original is not linearizable. Returns the rest in order of invocation. The
// searches of all attempted removals share `configurations_max`; once it is spent the
// shrinking stops, and a removal whose search ran out is not made.
std::vector<Operation> ShrinkViolation(std::vector<Operation> operations,
                                       uint64_t configurations_max = kConfigurationsMaxDefault);

// Whether operations[index] is one the shrinking may remove: if the operations (all on one key)
// are linearizable, they stay linearizable without it.
bool RemovalKeepsLinearizable(const std::vector<Operation>& operations, size_t index);

}  // namespace synod::check
