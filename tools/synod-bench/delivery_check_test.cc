#include "delivery_check.h"

#include <gtest/gtest.h>

#include <map>

namespace synod::bench {
namespace {

constexpr Nanos kMs = 1'000'000;

// Puts at revisions 2..6, each answered at revision x 10 ms.
struct Acks {
  std::map<int64_t, Nanos> acked_ns{
      {2, 20 * kMs}, {3, 30 * kMs}, {4, 40 * kMs}, {5, 50 * kMs}, {6, 60 * kMs}};
  DeliveryCheck::AckLookup Lookup() {
    return [this](int64_t revision) -> std::optional<Nanos> {
      const auto found = acked_ns.find(revision);
      if (found == acked_ns.end()) return std::nullopt;
      return found->second;
    };
  }
};

// Two watchers that each receive `revisions` (1 ms after the put's answer).
DeliveryCounts Deliver(const std::vector<int64_t>& revisions, bool is_put = true) {
  Acks acks;
  DeliveryCheck check(acks.Lookup());
  for (int64_t watch_id : {0, 1}) {
    for (int64_t revision : revisions) {
      check.OnEvent(watch_id, is_put, revision, revision * 10 * kMs + kMs);
    }
  }
  check.Settle();
  return check.counts();
}

TEST(DeliveryCheck, EveryPutSeenOnceInOrderByEveryWatcherIsComplete) {
  const DeliveryCounts counts = Deliver({2, 3, 4, 5, 6});
  EXPECT_EQ(counts.delivered, 10u);
  EXPECT_TRUE(counts.Complete(10));
}

TEST(DeliveryCheck, CatchesAMissingEvent) {
  const DeliveryCounts counts = Deliver({2, 3, 5, 6});
  EXPECT_EQ(counts.delivered, 8u);
  EXPECT_FALSE(counts.Complete(10));
}

TEST(DeliveryCheck, CatchesARepeatedEvent) {
  const DeliveryCounts counts = Deliver({2, 3, 3, 4, 5, 6});
  EXPECT_EQ(counts.unexpected, 2u);
  EXPECT_FALSE(counts.Complete(10));
}

TEST(DeliveryCheck, CatchesEventsOutOfOrder) {
  const DeliveryCounts counts = Deliver({2, 4, 3, 5, 6});
  EXPECT_FALSE(counts.Complete(10));
}

TEST(DeliveryCheck, CatchesAnEventNoAcknowledgedPutMade) {
  const DeliveryCounts counts = Deliver({2, 3, 4, 5, 6, 7});
  EXPECT_EQ(counts.unexpected, 2u);
  EXPECT_FALSE(counts.Complete(10));
}

TEST(DeliveryCheck, CatchesADeleteEvent) {
  EXPECT_FALSE(Deliver({2, 3, 4, 5, 6}, /*is_put=*/false).Complete(10));
}

TEST(DeliveryCheck, AnEventBeforeItsPutsAnswerIsDeliveredWithLatencyZero) {
  Acks acks;
  const Nanos acked_ns = acks.acked_ns.at(6);
  acks.acked_ns.erase(6);
  DeliveryCheck check(acks.Lookup());
  EXPECT_TRUE(check.OnEvent(0, true, 6, acked_ns - kMs));
  EXPECT_EQ(check.counts().delivered, 0u);
  acks.acked_ns[6] = acked_ns;
  check.Settle();
  EXPECT_EQ(check.counts().delivered, 1u);
  EXPECT_EQ(check.counts().before_ack, 1u);
  EXPECT_EQ(check.latency_ns().max(), 0u);
}

TEST(DeliveryCheck, LatencyRunsFromThePutsAnswer) {
  Acks acks;
  DeliveryCheck check(acks.Lookup());
  check.OnEvent(0, true, 2, 20 * kMs + 3 * kMs);
  EXPECT_EQ(check.latency_ns().max(), static_cast<uint64_t>(3 * kMs));
}

}  // namespace
}  // namespace synod::bench
