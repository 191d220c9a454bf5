#pragma once

// etcd's key ranges (etcdserver/apply.go mkGteRange and the index's Range), shared by reads,
// transactions and watchers: an empty range_end means the single key; "\0" means every key >=
// key; otherwise [key, range_end).

#include <string>
#include <string_view>

namespace synod::kv {

struct KeyRange {
  std::string key;
  std::string end;
  bool single = false;
  bool unbounded = false;

  KeyRange(std::string_view k, std::string_view range_end) : key(k) {
    if (range_end.empty()) {
      single = true;
    } else if (range_end == std::string_view("\0", 1)) {
      unbounded = true;
    } else {
      end = std::string(range_end);
    }
  }
  bool Contains(std::string_view k) const {
    if (single) return k == key;
    return k >= key && (unbounded || k < end);
  }
  // True once keys in ascending order can no longer be in the range.
  bool Past(std::string_view k) const {
    if (single) return k > key;
    return !unbounded && k >= end;
  }
};

}  // namespace synod::kv
