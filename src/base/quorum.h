// Majority arithmetic shared by the consensus cores.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

#include "base/assert.h"

namespace synod::base {

// The largest value that at least `quorum` of `values` reach: sorting descending, the
// quorum-th one; T{} when there are fewer values than the quorum. Raft uses it for the commit
// index (Raft 5.3: "a majority of matchIndex[i] >= N"), both engines for the confirmed ReadIndex
// round.
template <typename T>
T QuorumValue(std::vector<T> values, size_t quorum) {
  SYNOD_ASSERT(quorum >= 1);
  if (values.size() < quorum) return T{};
  std::sort(values.begin(), values.end(), std::greater<T>());
  return values[quorum - 1];
}

}  // namespace synod::base
