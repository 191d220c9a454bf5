#include "kv/lessor.h"

#include <gtest/gtest.h>

namespace synod::kv {
namespace {

LessorConfig SmallConfig() {
  LessorConfig config;
  config.checkpoint_interval_ms = 10'000;
  config.expired_retry_ms = 3'000;
  config.expired_per_call_max = 2;
  config.checkpoints_per_call_max = 10;
  return config;
}

TEST(Lessor, FollowerDecidesNothing) {
  Lessor lessor(SmallConfig());
  lessor.Granted(1, 5);
  EXPECT_TRUE(lessor.Expired(1'000'000).empty());
  EXPECT_TRUE(lessor.CheckpointsDue(1'000'000).empty());
  EXPECT_EQ(lessor.Renew(1, 1'000'000).status().code(), absl::StatusCode::kFailedPrecondition);
  lessor.CheckInvariants();
}

TEST(Lessor, PromoteResumesFromTheCheckpointedRemainingTtl) {
  Lessor lessor(SmallConfig());
  lessor.Reset({{1, 60, 0}, {2, 60, 20}});
  lessor.Promote(1000);
  EXPECT_EQ(lessor.RemainingMs(1, 1000), 60'000);  // Never checkpointed: the full TTL.
  EXPECT_EQ(lessor.RemainingMs(2, 1000), 20'000);  // Checkpointed: what was left.
  EXPECT_TRUE(lessor.Expired(20'999).empty());
  EXPECT_EQ(lessor.Expired(21'000), std::vector<int64_t>{2});
  lessor.CheckInvariants();
}

TEST(Lessor, ExpiredIsOrderedBoundedAndRetried) {
  Lessor lessor(SmallConfig());
  lessor.Promote(0);
  for (int64_t id : {5, 3, 4}) lessor.Granted(id, 2);
  lessor.Granted(9, 1);
  // Grants applied while leader start at the next call that knows the time.
  EXPECT_TRUE(lessor.Expired(100).empty());
  // Deadlines: 9 at 1100; 3, 4, 5 at 2100. At most two per call, by deadline then id.
  EXPECT_EQ(lessor.Expired(5000), (std::vector<int64_t>{9, 3}));
  EXPECT_EQ(lessor.Expired(5000), (std::vector<int64_t>{4, 5}));
  EXPECT_TRUE(lessor.Expired(5000).empty());
  lessor.Revoked(9);
  lessor.Revoked(3);
  // The LeaseExpire proposals for 4 and 5 were lost: reported again after the retry interval.
  EXPECT_TRUE(lessor.Expired(7999).empty());
  EXPECT_EQ(lessor.Expired(8000), (std::vector<int64_t>{4, 5}));
  lessor.CheckInvariants();
}

TEST(Lessor, RenewExtendsAndClearsAStaleCheckpoint) {
  Lessor lessor(SmallConfig());
  lessor.Reset({{1, 5, 2}});
  lessor.Promote(0);
  EXPECT_EQ(lessor.RemainingMs(1, 0), 2000);
  Result<int64_t> ttl = lessor.Renew(1, 1000);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 5);
  EXPECT_EQ(lessor.RemainingMs(1, 1000), 5000);
  // The checkpointed 2 s is stale: a checkpoint of 0 clears it.
  std::vector<LeaseCheckpointDue> due = lessor.CheckpointsDue(1000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, 1);
  EXPECT_EQ(due[0].remaining_ttl_s, 0);
  lessor.Checkpointed(1, 0);
  ASSERT_TRUE(lessor.Renew(1, 2000).ok());
  EXPECT_TRUE(lessor.CheckpointsDue(2000).empty());  // Nothing stale any more.
  // An expired lease cannot be renewed.
  EXPECT_EQ(lessor.Renew(1, 7000).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(lessor.Renew(99, 7000).status().code(), absl::StatusCode::kNotFound);
  lessor.CheckInvariants();
}

TEST(Lessor, LongLeasesAreCheckpointedEveryInterval) {
  Lessor lessor(SmallConfig());
  lessor.Reset({{1, 100, 0}, {2, 5, 0}});
  lessor.Promote(0);
  EXPECT_TRUE(lessor.CheckpointsDue(9'999).empty());
  std::vector<LeaseCheckpointDue> due = lessor.CheckpointsDue(10'000);
  ASSERT_EQ(due.size(), 1u);  // The 5 s lease never needs one.
  EXPECT_EQ(due[0].id, 1);
  EXPECT_EQ(due[0].remaining_ttl_s, 90);
  due = lessor.CheckpointsDue(20'500);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].remaining_ttl_s, 80);  // 79.5 s rounded up: never shorter.
  lessor.CheckInvariants();
}

TEST(Lessor, DemoteForgetsDeadlinesAndALaterLeaderResumes) {
  Lessor lessor(SmallConfig());
  lessor.Reset({{1, 30, 0}});
  lessor.Promote(0);
  lessor.Demote();
  EXPECT_FALSE(lessor.RemainingMs(1, 0).has_value());
  EXPECT_TRUE(lessor.Expired(1'000'000).empty());
  lessor.Checkpointed(1, 12);  // A checkpoint from the new leader, applied here.
  lessor.Promote(2'000'000);
  EXPECT_EQ(lessor.RemainingMs(1, 2'000'000), 12'000);
  lessor.CheckInvariants();
}

}  // namespace
}  // namespace synod::kv
