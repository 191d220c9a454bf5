// The watch workload's check: every watcher sees every acknowledged put once, in revision
// order, and nothing else; and the latency from each put's answer to each watcher's event.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "histogram.h"
#include "schedule.h"

namespace synod::bench {

struct DeliveryCounts {
  uint64_t delivered = 0;   // events of acknowledged puts, in order, once per watcher
  uint64_t unexpected = 0;  // repeated or out-of-order revisions, non-put events, unknown puts
  uint64_t before_ack = 0;  // delivered events that arrived before their put's answer

  // Whether the watchers saw exactly the `expected` events (watchers x acknowledged puts).
  bool Complete(uint64_t expected) const { return delivered == expected && unexpected == 0; }
  void Add(const DeliveryCounts& other) {
    delivered += other.delivered;
    unexpected += other.unexpected;
    before_ack += other.before_ack;
  }
};

// The events of the watchers of one stream (single-threaded).
class DeliveryCheck {
 public:
  // When the put that created `revision` was answered, if it has been (yet).
  using AckLookup = std::function<std::optional<Nanos>(int64_t revision)>;

  explicit DeliveryCheck(AckLookup lookup) : lookup_(std::move(lookup)) {}

  // Returns whether the event counts towards delivery (in order, a put).
  bool OnEvent(int64_t watch_id, bool is_put, int64_t revision, Nanos arrived_ns);
  // Once no more answers can come: events that arrived before their put's answer are matched
  // now, or found to belong to no acknowledged put.
  void Settle();

  const DeliveryCounts& counts() const { return counts_; }
  // Put answer to event, 0 for an event that came first.
  const LatencyHistogram& latency_ns() const { return latency_ns_; }

 private:
  void Deliver(Nanos arrived_ns, Nanos acked_ns);

  AckLookup lookup_;
  std::unordered_map<int64_t, int64_t> last_revision_of_watch_;
  std::vector<std::pair<int64_t, Nanos>> waiting_for_ack_;  // (revision, arrival)
  DeliveryCounts counts_;
  LatencyHistogram latency_ns_;
};

}  // namespace synod::bench
