#include "server/auto_compactor.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "kv/errors.h"

namespace synod::server {
namespace {

constexpr int64_t kMinute_ms = 60 * 1000;
constexpr int64_t kHour_ms = 60 * kMinute_ms;

AutoCompactionPolicy Periodic(int64_t ms) {
  return AutoCompactionPolicy{AutoCompactionPolicy::Mode::kPeriodic, ms, 0};
}
AutoCompactionPolicy Revisions(int64_t n) {
  return AutoCompactionPolicy{AutoCompactionPolicy::Mode::kRevision, 0, n};
}

TEST(ParseAutoCompaction, FollowsEtcdsFlags) {
  EXPECT_FALSE(ParseAutoCompaction("periodic", "0")->has_value());  // etcd's default: off.
  EXPECT_FALSE(ParseAutoCompaction("", "")->has_value());
  EXPECT_FALSE(ParseAutoCompaction("revision", "0")->has_value());
  EXPECT_EQ(ParseAutoCompaction("periodic", "1")->value().retention_ms, kHour_ms);  // Hours.
  EXPECT_EQ(ParseAutoCompaction("", "30m")->value().retention_ms, 30 * kMinute_ms);
  EXPECT_EQ(ParseAutoCompaction("periodic", "1.5s")->value().retention_ms, 1500);
  auto revisions = ParseAutoCompaction("revision", "1000");
  ASSERT_TRUE(revisions.ok() && revisions->has_value());
  EXPECT_EQ((*revisions)->mode, AutoCompactionPolicy::Mode::kRevision);
  EXPECT_EQ((*revisions)->retention_revisions, 1000);

  auto unknown = ParseAutoCompaction("daily", "1");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(), "unknown auto-compaction-mode \"daily\"");
  EXPECT_FALSE(ParseAutoCompaction("periodic", "soon").ok());
  EXPECT_FALSE(ParseAutoCompaction("periodic", "-1").ok());
  EXPECT_FALSE(ParseAutoCompaction("revision", "5m").ok());
  EXPECT_FALSE(ParseAutoCompaction("revision", "-3").ok());
}

// etcd's periodic compactor with a 1-hour retention: a sample every 6 minutes, the first
// compaction an hour after start at the revision of an hour ago, then one every hour.
TEST(AutoCompactor, PeriodicCompactsAtTheRevisionOfOnePeriodAgo) {
  AutoCompactor compactor(Periodic(kHour_ms), 0, 1);
  const int64_t check = 6 * kMinute_ms;
  // The revision grows by 100 every 6 minutes: at check k it is 1 + 100k.
  std::vector<std::pair<int64_t, int64_t>> due;  // (time, revision)
  for (int64_t k = 1; k <= 25; ++k) {
    const int64_t now = k * check;
    // Ticks between checks decide nothing.
    EXPECT_EQ(compactor.Due(now - 1, 1 + 100 * k, 0, true), std::nullopt);
    if (std::optional<int64_t> revision = compactor.Due(now, 1 + 100 * k, 0, true)) {
      due.emplace_back(now, *revision);
      compactor.Finished(*revision, Status(), now);
    }
  }
  // At 60 minutes the front sample is the one taken at start (revision 1). Later the front is
  // the sample of 11 checks before, as in etcd (its window holds 11 samples, the newest taken
  // one check before the decision): at 120 minutes, the revision of 54 minutes.
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0], std::make_pair(10 * check, int64_t{1}));
  EXPECT_EQ(due[1], std::make_pair(20 * check, int64_t{1 + 100 * 9}));
}

TEST(AutoCompactor, OnlyTheLeaderProposesButEveryMemberSamples) {
  AutoCompactor compactor(Periodic(10'000), 0, 5);  // Checks every second.
  for (int64_t s = 1; s <= 12; ++s) {
    EXPECT_EQ(compactor.Due(s * 1000, 5 + s, 0, /*leader=*/false), std::nullopt) << s;
  }
  // Leader from 13 s on: due at once, at the revision of about a period ago.
  EXPECT_EQ(compactor.Due(13'000, 18, 0, true), std::optional<int64_t>(5 + 2));
}

TEST(AutoCompactor, OneCompactionAtATimeAndAFailureIsTriedAgainAtTheNextCheck) {
  AutoCompactor compactor(Periodic(10'000), 0, 1);
  for (int64_t s = 1; s <= 9; ++s)
    EXPECT_EQ(compactor.Due(s * 1000, 10 * s, 0, true), std::nullopt);
  ASSERT_EQ(compactor.Due(10'000, 100, 0, true), std::optional<int64_t>(1));
  // Still out: nothing more is proposed.
  EXPECT_EQ(compactor.Due(11'000, 110, 0, true), std::nullopt);
  compactor.Finished(1, absl::UnavailableError("etcdserver: leader changed"), 11'500);
  // Failed: the next check tries again, at the newer front sample.
  EXPECT_EQ(compactor.Due(12'000, 120, 0, true), std::optional<int64_t>(10));
  // "Already compacted" counts as done: the next one waits a whole interval.
  compactor.Finished(10, kv::CompactedError(), 12'000);
  for (int64_t s = 13; s <= 21; ++s)
    EXPECT_EQ(compactor.Due(s * 1000, 10 * s, 0, true), std::nullopt);
  EXPECT_TRUE(compactor.Due(22'000, 220, 0, true).has_value());
}

TEST(AutoCompactor, PeriodicSkipsARevisionAlreadyCompacted) {
  AutoCompactor compactor(Periodic(10'000), 0, 1);
  for (int64_t s = 1; s <= 9; ++s) EXPECT_EQ(compactor.Due(s * 1000, 50, 0, true), std::nullopt);
  // A client compacted at 40 meanwhile; the front sample (1) is below it: nothing to propose,
  // and it counts as done.
  EXPECT_EQ(compactor.Due(10'000, 50, 40, true), std::nullopt);
  EXPECT_EQ(compactor.Due(11'000, 50, 40, true), std::nullopt);
}

// etcd's revision compactor: every 5 minutes, at current - retention, never twice at the same
// revision.
TEST(AutoCompactor, RevisionModeKeepsTheLastNRevisions) {
  AutoCompactor compactor(Revisions(1000), 0, 1);
  const int64_t every = AutoCompactor::kRevisionModeInterval_ms;
  EXPECT_EQ(compactor.Due(every - 1, 5000, 0, true), std::nullopt);   // Not yet.
  EXPECT_EQ(compactor.Due(every, 800, 0, true), std::nullopt);        // 800 - 1000 <= 0.
  EXPECT_EQ(compactor.Due(2 * every, 5000, 0, false), std::nullopt);  // Not the leader.
  ASSERT_EQ(compactor.Due(3 * every, 5000, 0, true), std::optional<int64_t>(4000));
  compactor.Finished(4000, Status(), 3 * every);
  EXPECT_EQ(compactor.Due(4 * every, 5000, 4000, true), std::nullopt);  // No writes since.
  EXPECT_EQ(compactor.Due(5 * every, 7500, 4000, true), std::optional<int64_t>(6500));
}

}  // namespace
}  // namespace synod::server
