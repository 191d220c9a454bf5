// The simulators' clock and agenda: events ordered by time, ties broken by the order in which
// they were scheduled, so one seed always runs the same events in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <queue>
#include <tuple>
#include <utility>
#include <vector>

#include "base/assert.h"

namespace synod::sim {

template <typename Event>
class EventQueue {
 public:
  // The time of the event last popped; nothing may be scheduled before it.
  uint64_t now() const { return now_; }
  bool empty() const { return queue_.empty(); }

  void Schedule(uint64_t time, Event event) {
    SYNOD_ASSERT(time >= now_);
    size_t slot;
    if (free_slots_.empty()) {
      slot = slots_.size();
      slots_.push_back(std::move(event));
    } else {
      slot = free_slots_.back();
      free_slots_.pop_back();
      slots_[slot] = std::move(event);
    }
    queue_.emplace(time, sequence_++, slot);
  }

  // Removes the earliest event and advances the clock to its time. Precondition: !empty().
  Event Pop() {
    SYNOD_ASSERT(!queue_.empty());
    auto [time, sequence, slot] = queue_.top();
    queue_.pop();
    now_ = time;
    Event event = std::move(slots_[slot]);
    free_slots_.push_back(slot);
    return event;
  }

 private:
  uint64_t now_ = 0;
  uint64_t sequence_ = 0;
  // (time, sequence, slot) keys in a min-heap; events live in slots so the heap moves only
  // small keys.
  using Key = std::tuple<uint64_t, uint64_t, size_t>;
  std::priority_queue<Key, std::vector<Key>, std::greater<Key>> queue_;
  std::vector<Event> slots_;
  std::vector<size_t> free_slots_;
};

}  // namespace synod::sim
