#include "schedule.h"

#include <gtest/gtest.h>

namespace synod::bench {
namespace {

class FakeClock final : public Clock {
 public:
  Nanos Now() const override { return now_ns; }
  Nanos now_ns = 0;
};

constexpr Nanos kMs = 1'000'000;

TEST(RequestSchedule, OpenLoopIntendsRequestNAtStartPlusNOverRate) {
  FakeClock clock;
  clock.now_ns = 5 * kMs;
  RequestSchedule schedule(&clock, 5 * kMs, ScheduleLimits{4, 0, 1000.0}, 0, 1);
  for (uint64_t n = 0; n < 4; ++n) {
    clock.now_ns = 5 * kMs + static_cast<Nanos>(n) * kMs;
    const auto ticket = schedule.Take();
    ASSERT_TRUE(ticket.has_value()) << n;
    EXPECT_EQ(ticket->sequence, n);
    EXPECT_EQ(ticket->intended_ns, 5 * kMs + static_cast<Nanos>(n) * kMs);
  }
  EXPECT_TRUE(schedule.done());
  EXPECT_FALSE(schedule.Take().has_value());
}

TEST(RequestSchedule, OpenLoopWaitsForTheIntendedTime) {
  FakeClock clock;
  RequestSchedule schedule(&clock, 0, ScheduleLimits{10, 0, 100.0}, 0, 1);  // every 10 ms
  ASSERT_TRUE(schedule.Take().has_value());
  clock.now_ns = 9 * kMs;
  EXPECT_FALSE(schedule.Take().has_value());
  EXPECT_FALSE(schedule.done());
  EXPECT_EQ(schedule.wake_ns(), 10 * kMs);
  clock.now_ns = 10 * kMs;
  const auto ticket = schedule.Take();
  ASSERT_TRUE(ticket.has_value());
  EXPECT_EQ(ticket->intended_ns, 10 * kMs);
}

// The point of the open loop: a server that stalls for 50 ms delays the requests that should
// have been sent meanwhile, and their latencies show it, although each was answered 0.1 ms
// after it was actually sent.
TEST(RequestSchedule, OpenLoopLatencyCountsFromTheIntendedTimeNotTheSendTime) {
  FakeClock clock;
  RequestSchedule schedule(&clock, 0, ScheduleLimits{6, 0, 100.0}, 0, 1);
  std::vector<Nanos> latencies;
  // One client slot. The first request is stuck for 50 ms.
  auto first = schedule.Take();
  ASSERT_TRUE(first.has_value());
  clock.now_ns = 50 * kMs;
  latencies.push_back(RequestSchedule::Latency(*first, clock.now_ns));
  // Then the server answers in 0.1 ms. Requests 1..5 were due at 10, 20, ..., 50 ms.
  while (auto ticket = schedule.Take()) {
    const Nanos sent_ns = clock.now_ns;
    clock.now_ns = sent_ns + kMs / 10;
    latencies.push_back(RequestSchedule::Latency(*ticket, clock.now_ns));
  }
  ASSERT_EQ(latencies.size(), 6u);
  EXPECT_EQ(latencies[0], 50 * kMs);
  EXPECT_EQ(latencies[1], 50 * kMs + kMs / 10 - 10 * kMs);  // due at 10, sent at 50
  EXPECT_EQ(latencies[2], 50 * kMs + 2 * kMs / 10 - 20 * kMs);
  EXPECT_EQ(latencies[5], 50 * kMs + 5 * kMs / 10 - 50 * kMs);
}

TEST(RequestSchedule, ClosedLoopLatencyCountsFromTheSendTime) {
  FakeClock clock;
  RequestSchedule schedule(&clock, 0, ScheduleLimits{3, 0, 0.0}, 0, 1);
  clock.now_ns = 7 * kMs;
  const auto ticket = schedule.Take();
  ASSERT_TRUE(ticket.has_value());
  EXPECT_EQ(ticket->intended_ns, 7 * kMs);
  EXPECT_EQ(RequestSchedule::Latency(*ticket, 9 * kMs), 2 * kMs);
  EXPECT_TRUE(schedule.Take().has_value());
  EXPECT_TRUE(schedule.Take().has_value());
  EXPECT_TRUE(schedule.done());
}

TEST(RequestSchedule, LanesInterleaveTheRunsSequenceAndIntendedTimes) {
  FakeClock clock;
  clock.now_ns = 1000 * kMs;  // everything is due
  RequestSchedule lane0(&clock, 0, ScheduleLimits{5, 0, 1000.0}, 0, 2);
  RequestSchedule lane1(&clock, 0, ScheduleLimits{5, 0, 1000.0}, 1, 2);
  std::vector<uint64_t> sequences;
  std::vector<Nanos> intended;
  for (RequestSchedule* lane : {&lane0, &lane1}) {
    while (auto ticket = lane->Take()) {
      sequences.push_back(ticket->sequence);
      intended.push_back(ticket->intended_ns);
    }
  }
  EXPECT_EQ(sequences, (std::vector<uint64_t>{0, 2, 4, 1, 3}));
  EXPECT_EQ(intended, (std::vector<Nanos>{0, 2 * kMs, 4 * kMs, 1 * kMs, 3 * kMs}));
}

TEST(RequestSchedule, DurationEndsTheRun) {
  FakeClock clock;
  // Open loop: the requests intended before the end, however late they go out.
  RequestSchedule open(&clock, 0, ScheduleLimits{0, 30 * kMs, 100.0}, 0, 1);
  clock.now_ns = 100 * kMs;
  int sent = 0;
  while (open.Take().has_value()) ++sent;
  EXPECT_EQ(sent, 3);  // intended at 0, 10 and 20 ms
  EXPECT_TRUE(open.done());
  // Closed loop: whatever is started before the end.
  RequestSchedule closed(&clock, 100 * kMs, ScheduleLimits{0, 30 * kMs, 0.0}, 0, 1);
  EXPECT_TRUE(closed.Take().has_value());
  clock.now_ns = 129 * kMs;
  EXPECT_TRUE(closed.Take().has_value());
  EXPECT_FALSE(closed.done());
  clock.now_ns = 130 * kMs;
  EXPECT_FALSE(closed.Take().has_value());
  EXPECT_TRUE(closed.done());
}

}  // namespace
}  // namespace synod::bench
