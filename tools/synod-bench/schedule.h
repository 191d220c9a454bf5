// When each request of a load thread may start, and from when its latency counts.
//
// Closed loop (rate 0): a request starts as soon as a client slot is free and its latency runs
// from that moment. Open loop (rate > 0): request number n is intended to be sent at
// start + n / rate, whatever happened to earlier requests, and its latency runs from that
// intended time. A server that stalls therefore shows its stall in the latency of every request
// that should have been sent meanwhile, instead of the load generator politely waiting and
// recording one slow request (Gil Tene's "coordinated omission"; wrk2 measures the same way).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace synod::bench {

// Nanoseconds on a monotonic clock.
using Nanos = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos Now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  Nanos Now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

struct ScheduleLimits {
  uint64_t requests_max = 0;  // 0: no limit (then duration_ns must be set)
  Nanos duration_ns = 0;      // 0: no limit (then requests_max must be set)
  double rate_per_s = 0;      // 0: closed loop
};

// One load thread's share of the run. The run's requests are numbered 0, 1, 2, ...; a thread
// that is `lane` of `lanes` takes the numbers n with n % lanes == lane, so open-loop intended
// times of all threads interleave evenly and no shared counter is needed.
class RequestSchedule {
 public:
  struct Ticket {
    uint64_t sequence = 0;  // the request's number in the whole run
    Nanos intended_ns = 0;  // when it was meant to start: latency counts from here
  };

  RequestSchedule(const Clock* clock, Nanos start_ns, ScheduleLimits limits, uint32_t lane,
                  uint32_t lanes);

  // For a free client slot: the next request if it is due now. Otherwise nothing, and
  // wake_ns() says when to ask again (or done() says there is nothing more to send).
  std::optional<Ticket> Take();
  bool done() const;
  // When the next request falls due; only meaningful while !done().
  Nanos wake_ns() const;

  // Latency of a request completed at `completed_ns` (clamped to 0: a fake or coarse clock may
  // report a completion at its intended time).
  static Nanos Latency(const Ticket& ticket, Nanos completed_ns) {
    return completed_ns > ticket.intended_ns ? completed_ns - ticket.intended_ns : 0;
  }

 private:
  Nanos IntendedTime(uint64_t sequence) const;

  const Clock* clock_;
  const Nanos start_ns_;
  const ScheduleLimits limits_;
  const uint32_t lanes_;
  uint64_t next_sequence_;  // Invariant: next_sequence_ % lanes_ == lane.
  bool time_is_up_ = false;
};

}  // namespace synod::bench
