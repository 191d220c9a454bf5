// Core assertions as failing seeds (docs/architecture.md, "Assertions in the simulator"): a
// simulator run installs a handler that throws, so a SYNOD_ASSERT inside the core ends one seed
// with its message instead of the whole multi-seed process.
#pragma once

#include <string>

namespace synod::sim {

// A failed assertion inside the core (or the simulator) during a run.
struct AssertionFailure {
  std::string what;
};

// Makes every later SYNOD_ASSERT failure throw AssertionFailure. Idempotent and thread-safe;
// every simulator calls it before its first run.
void ThrowAssertionFailures();

}  // namespace synod::sim
