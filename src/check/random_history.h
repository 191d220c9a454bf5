// Seeded random histories for the checker's tests: linearizable ones recorded from a real
// sequential execution with random overlaps, and mutations of them that may not be.
#pragma once

#include <cstdint>
#include <vector>

#include "base/prng.h"
#include "check/history.h"

namespace synod::check {

struct RandomHistoryOptions {
  uint64_t operations = 8;
  uint64_t keys = 1;
  uint64_t clients = 3;
  // Writes pick from this many values per key ("v0".."v{n-1}"), so values repeat and reads are
  // ambiguous; 0 makes every written value unique, as the fault harness writes them.
  uint64_t values = 3;
  // Per cent of operations whose outcome is unknown (half of those take effect) and failed.
  uint64_t unknown_percent = 10;
  uint64_t failed_percent = 5;
  // Each client waits up to this long between operations; an operation lasts up to this long.
  int64_t gap_max = 10;
  int64_t duration_max = 20;
};

// Clients issue operations one after another; each operation that takes effect does so at a
// random point of its interval (an unknown one possibly long after its client gave up), and
// the results are those of executing the operations in the order of those points.
std::vector<Operation> RandomLinearizableHistory(base::Prng& prng,
                                                 const RandomHistoryOptions& options);

// Changes one operation at random: a result, an outcome, a value or its times. The result may
// or may not be linearizable.
void MutateOne(base::Prng& prng, std::vector<Operation>& history);

}  // namespace synod::check
