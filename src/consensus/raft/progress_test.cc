#include "consensus/raft/progress.h"

#include <gtest/gtest.h>

#include "consensus/raft/test_cluster.h"

namespace synod::raft {
namespace {

constexpr uint32_t kInflightMax = 3;

// A follower in replicate state that matches up to `match`.
Progress Replicating(Index match) {
  Progress progress(match.next(), kInflightMax, false);
  progress.MaybeUpdate(match);
  progress.BecomeReplicate();
  return progress;
}

// Raft 5.3: "When a leader first comes to power, it initializes all nextIndex values to the
// index just after the last one in its log."
TEST(Progress, StartsProbingAtNextWithNothingMatched) {
  const Progress progress(Index(5), kInflightMax, false);
  EXPECT_EQ(progress.state(), Progress::State::kProbe);
  EXPECT_EQ(progress.next(), Index(5));
  EXPECT_EQ(progress.match(), Index(0));
  EXPECT_FALSE(progress.IsPaused());
}

TEST(Progress, ProbeSendsOneAppendEntriesAtATime) {
  Progress progress(Index(5), kInflightMax, false);
  progress.SentEntries(Index(7));
  EXPECT_TRUE(progress.IsPaused());
  EXPECT_EQ(progress.next(), Index(5)) << "a probe does not advance next optimistically";
  EXPECT_TRUE(progress.MaybeUpdate(Index(7)));
  EXPECT_FALSE(progress.IsPaused());
  EXPECT_EQ(progress.match(), Index(7));
  EXPECT_EQ(progress.next(), Index(8));
}

TEST(Progress, EmptyProbePausesAndHeartbeatResponseResumes) {
  Progress progress(Index(5), kInflightMax, false);
  progress.SentProbe();
  EXPECT_TRUE(progress.IsPaused());
  progress.OnHeartbeatResponse();
  EXPECT_FALSE(progress.IsPaused());
}

TEST(Progress, ReplicatePipelinesUpToInflightMax) {
  Progress progress = Replicating(Index(5));
  EXPECT_EQ(progress.next(), Index(6));
  progress.SentEntries(Index(6));
  progress.SentEntries(Index(8));
  EXPECT_FALSE(progress.IsPaused());
  EXPECT_EQ(progress.next(), Index(9)) << "replicate advances next as it sends";
  progress.SentEntries(Index(9));
  EXPECT_TRUE(progress.IsPaused()) << "window of " << kInflightMax << " is full";
  // An acknowledgement frees every message it covers.
  EXPECT_TRUE(progress.MaybeUpdate(Index(8)));
  EXPECT_FALSE(progress.IsPaused());
  progress.SentEntries(Index(10));
  progress.SentEntries(Index(11));
  EXPECT_TRUE(progress.IsPaused());
}

TEST(Progress, HeartbeatResponseFreesOneSlotOnlyOfAFullWindow) {
  Progress progress = Replicating(Index(5));
  progress.SentEntries(Index(6));
  progress.SentEntries(Index(7));
  progress.OnHeartbeatResponse();
  progress.SentEntries(Index(8));
  EXPECT_TRUE(progress.IsPaused()) << "a window that was not full is left alone";
  progress.OnHeartbeatResponse();
  EXPECT_FALSE(progress.IsPaused());
  progress.SentEntries(Index(9));
  EXPECT_TRUE(progress.IsPaused());
}

TEST(Progress, StaleAcknowledgementIsIgnored) {
  Progress progress = Replicating(Index(5));
  EXPECT_FALSE(progress.MaybeUpdate(Index(5)));
  EXPECT_FALSE(progress.MaybeUpdate(Index(3)));
  EXPECT_EQ(progress.match(), Index(5));
}

TEST(Progress, ReplicateFallsBackToProbeOnFreshRejection) {
  Progress progress = Replicating(Index(5));
  progress.SentEntries(Index(8));
  // A rejection at or below match answers a message sent before the follower caught up.
  EXPECT_FALSE(progress.MaybeDecrease(Index(5), Index(4)));
  EXPECT_EQ(progress.state(), Progress::State::kReplicate);
  EXPECT_TRUE(progress.MaybeDecrease(Index(6), Index(4)));
  EXPECT_EQ(progress.state(), Progress::State::kProbe);
  EXPECT_EQ(progress.next(), Index(6)) << "probing resumes right after match";
  EXPECT_FALSE(progress.IsPaused());
}

TEST(Progress, ProbeMovesNextOnlyOnAnswerToOutstandingProbe) {
  Progress progress(Index(10), kInflightMax, false);
  progress.MaybeUpdate(Index(2));
  progress.SentEntries(Index(12));
  EXPECT_FALSE(progress.MaybeDecrease(Index(8), Index(3))) << "answers an older probe";
  EXPECT_EQ(progress.next(), Index(10));
  EXPECT_TRUE(progress.MaybeDecrease(Index(9), Index(4)));
  EXPECT_EQ(progress.next(), Index(5)) << "jumps to just after the follower's hint";
  EXPECT_FALSE(progress.IsPaused());
}

TEST(Progress, ProbeNextStaysBetweenMatchAndRejectedIndex) {
  Progress progress(Index(10), kInflightMax, false);
  progress.MaybeUpdate(Index(6));
  // A hint below match cannot move next below match + 1.
  EXPECT_TRUE(progress.MaybeDecrease(Index(9), Index(2)));
  EXPECT_EQ(progress.next(), Index(7));

  // A hint at or above the rejected index still moves next down to the rejected index.
  Progress unmatched(Index(10), kInflightMax, false);
  EXPECT_TRUE(unmatched.MaybeDecrease(Index(9), Index(20)));
  EXPECT_EQ(unmatched.next(), Index(9));
}

TEST(Progress, SnapshotStatePausesUntilSnapshotIsAcknowledged) {
  Progress progress = Replicating(Index(2));
  progress.BecomeSnapshot(Index(10));
  EXPECT_TRUE(progress.IsPaused());
  EXPECT_EQ(progress.pending_snapshot(), Index(10));
  EXPECT_FALSE(progress.MaybeDecrease(Index(5), Index(1)));
  EXPECT_TRUE(progress.MaybeUpdate(Index(10)));
  EXPECT_EQ(progress.match(), Index(10));
}

TEST(Progress, ProbeAfterSnapshotStartsAboveSnapshotIndex) {
  Progress progress = Replicating(Index(2));
  progress.BecomeSnapshot(Index(10));
  progress.BecomeProbe();
  EXPECT_EQ(progress.state(), Progress::State::kProbe);
  EXPECT_EQ(progress.next(), Index(11));
  EXPECT_EQ(progress.pending_snapshot(), Index(0));
}

TEST(Progress, SnapshotTimesOutAfterRetryTicks) {
  Progress progress = Replicating(Index(2));
  progress.BecomeSnapshot(Index(10));
  EXPECT_FALSE(progress.SnapshotTimedOut(3));
  EXPECT_FALSE(progress.SnapshotTimedOut(3));
  EXPECT_TRUE(progress.SnapshotTimedOut(3));
}

}  // namespace
}  // namespace synod::raft
