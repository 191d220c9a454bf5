#include "delivery_check.h"

#include <algorithm>

namespace synod::bench {

bool DeliveryCheck::OnEvent(int64_t watch_id, bool is_put, int64_t revision, Nanos arrived_ns) {
  int64_t& last_revision = last_revision_of_watch_[watch_id];
  // etcd delivers a watcher's events in revision order, each once (the watch API guarantees
  // "ordered" and "unique"); anything else is a fault.
  if (!is_put || revision <= last_revision) {
    ++counts_.unexpected;
    return false;
  }
  last_revision = revision;
  const std::optional<Nanos> acked_ns = lookup_(revision);
  if (acked_ns.has_value()) {
    Deliver(arrived_ns, *acked_ns);
  } else {
    waiting_for_ack_.emplace_back(revision, arrived_ns);
  }
  return true;
}

void DeliveryCheck::Settle() {
  for (const auto& [revision, arrived_ns] : waiting_for_ack_) {
    const std::optional<Nanos> acked_ns = lookup_(revision);
    if (!acked_ns.has_value()) {
      ++counts_.unexpected;  // no acknowledged put made this revision
      continue;
    }
    if (arrived_ns < *acked_ns) ++counts_.before_ack;
    Deliver(arrived_ns, *acked_ns);
  }
  waiting_for_ack_.clear();
}

void DeliveryCheck::Deliver(Nanos arrived_ns, Nanos acked_ns) {
  ++counts_.delivered;
  latency_ns_.Record(static_cast<uint64_t>(std::max<Nanos>(0, arrived_ns - acked_ns)));
}

}  // namespace synod::bench
