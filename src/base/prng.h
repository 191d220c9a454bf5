// The only source of randomness in Synod's deterministic code. It is seeded explicitly and
// passed in, never global (etcd raft's regret was a global source that needed a test hook), so
// one seed replays one simulator run exactly.
#pragma once

#include <cstdint>
#include <random>

#include "base/assert.h"

namespace synod::base {

class Prng {
  // The GCC/Clang 128-bit integer; __extension__ marks the deliberate use of a non-ISO type.
  __extension__ using Uint128 = unsigned __int128;

 public:
  explicit Prng(uint64_t seed) : engine_(seed) {}

  uint64_t NextU64() { return engine_(); }

  // Uniform in [0, bound). Lemire's multiply-shift with rejection: unlike
  // std::uniform_int_distribution its output is specified here, so it is identical on every
  // standard library.
  uint64_t Below(uint64_t bound) {
    SYNOD_ASSERT(bound > 0);
    Uint128 product = static_cast<Uint128>(engine_()) * bound;
    uint64_t low = static_cast<uint64_t>(product);
    if (low < bound) {
      const uint64_t threshold = -bound % bound;
      while (low < threshold) {
        product = static_cast<Uint128>(engine_()) * bound;
        low = static_cast<uint64_t>(product);
      }
    }
    return static_cast<uint64_t>(product >> 64);
  }

  // Uniform in [low, high], both inclusive.
  uint64_t Between(uint64_t low, uint64_t high) {
    SYNOD_ASSERT(low <= high);
    return low + Below(high - low + 1);
  }

  // True with probability numerator / denominator.
  bool Chance(uint64_t numerator, uint64_t denominator) {
    SYNOD_ASSERT(denominator > 0);
    SYNOD_ASSERT(numerator <= denominator);
    return Below(denominator) < numerator;
  }

 private:
  // std::mt19937_64's output sequence for a given seed is fixed by the C++ standard.
  std::mt19937_64 engine_;
};

}  // namespace synod::base
