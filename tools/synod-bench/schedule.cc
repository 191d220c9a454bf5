#include "schedule.h"

#include <cmath>

#include "base/assert.h"

namespace synod::bench {

RequestSchedule::RequestSchedule(const Clock* clock, Nanos start_ns, ScheduleLimits limits,
                                 uint32_t lane, uint32_t lanes)
    : clock_(clock), start_ns_(start_ns), limits_(limits), lanes_(lanes), next_sequence_(lane) {
  SYNOD_ASSERT(clock != nullptr);
  SYNOD_ASSERT(lanes > 0);
  SYNOD_ASSERT(lane < lanes);
  SYNOD_ASSERT_MSG(limits.requests_max > 0 || limits.duration_ns > 0,
                   "a run needs a request limit or a duration");
  SYNOD_ASSERT(limits.rate_per_s >= 0);
}

Nanos RequestSchedule::IntendedTime(uint64_t sequence) const {
  return start_ns_ +
         static_cast<Nanos>(std::llround(static_cast<double>(sequence) * 1e9 / limits_.rate_per_s));
}

bool RequestSchedule::done() const {
  if (limits_.requests_max > 0 && next_sequence_ >= limits_.requests_max) return true;
  if (limits_.duration_ns == 0) return false;
  // Open loop: the run ends with the last request intended inside the duration, however late
  // it is actually sent. Closed loop: nothing starts after the duration has passed.
  if (limits_.rate_per_s > 0) {
    return IntendedTime(next_sequence_) >= start_ns_ + limits_.duration_ns;
  }
  return time_is_up_;
}

Nanos RequestSchedule::wake_ns() const {
  return limits_.rate_per_s > 0 ? IntendedTime(next_sequence_) : clock_->Now();
}

std::optional<RequestSchedule::Ticket> RequestSchedule::Take() {
  const Nanos now = clock_->Now();
  if (limits_.rate_per_s == 0 && limits_.duration_ns > 0 &&
      now >= start_ns_ + limits_.duration_ns) {
    time_is_up_ = true;
  }
  if (done()) return std::nullopt;
  Ticket ticket{next_sequence_, now};
  if (limits_.rate_per_s > 0) {
    ticket.intended_ns = IntendedTime(next_sequence_);
    if (ticket.intended_ns > now) return std::nullopt;
  }
  next_sequence_ += lanes_;
  return ticket;
}

}  // namespace synod::bench
