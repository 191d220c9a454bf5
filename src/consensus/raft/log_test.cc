#include "consensus/raft/log.h"

#include <gtest/gtest.h>

#include "consensus/raft/test_cluster.h"

namespace synod::raft {
namespace {

RaftLog LogWithTerms(const std::vector<uint64_t>& terms, Index commit = Index(0)) {
  return RaftLog(StateWithLog({kNode1, kNode2, kNode3}, terms, Term(9), commit));
}

Entry ConfigEntry(Term term, Index index, std::vector<NodeId> voters) {
  return Entry{term, index, EntryType::kConfig, {}, Membership{std::move(voters), {}}};
}

// Raft 5.3: "If an existing entry conflicts with a new one (same index but different terms),
// delete the existing entry and all that follow it; append any new entries not already in the
// log."
TEST(RaftLog, AppendAfterTruncatesConflictingEntryAndAllThatFollow) {
  RaftLog log = LogWithTerms({1, 1, 1, 1, 1});
  EXPECT_EQ(log.AppendAfter(Index(2), EntriesWithTerms(Index(3), {2})), Index(3));
  EXPECT_EQ(LogTerms(log), (std::vector<uint64_t>{1, 1, 2}));
}

TEST(RaftLog, AppendAfterAppendsOnlyEntriesNotAlreadyPresent) {
  RaftLog log = LogWithTerms({1, 1, 1});
  EXPECT_EQ(log.AppendAfter(Index(1), EntriesWithTerms(Index(2), {1, 1, 2})), Index(4));
  EXPECT_EQ(LogTerms(log), (std::vector<uint64_t>{1, 1, 1, 2}));
}

// A duplicated or reordered AppendEntries carries entries the log already has: keeping them (and
// what follows) is what makes AppendEntries idempotent (Raft 5.5).
TEST(RaftLog, AppendAfterKeepsTheLogWhenEntriesAreDuplicates) {
  RaftLog log = LogWithTerms({1, 1, 1, 1, 1});
  EXPECT_EQ(log.AppendAfter(Index(1), EntriesWithTerms(Index(2), {1, 1})), Index(3));
  EXPECT_EQ(log.last_index(), Index(5));
}

// Log Matching: a committed entry is on a quorum and every later leader has it, so a conflict
// at or below the commit index means a broken invariant; the log crashes rather than lose it.
TEST(RaftLogDeathTest, AppendAfterNeverOverwritesCommittedEntry) {
  RaftLog log = LogWithTerms({1, 1, 1}, Index(2));
  EXPECT_DEATH(log.AppendAfter(Index(1), EntriesWithTerms(Index(2), {2})), "committed");
}

TEST(RaftLog, FindConflictByTermReturnsLastIndexWithTermAtMost) {
  // The leader's log of Raft figure 7.
  const RaftLog log = LogWithTerms({1, 1, 1, 4, 4, 5, 5, 6, 6, 6});
  using Position = std::pair<Index, Term>;
  EXPECT_EQ(log.FindConflictByTerm(Index(10), Term(6)), Position(Index(10), Term(6)));
  EXPECT_EQ(log.FindConflictByTerm(Index(10), Term(5)), Position(Index(7), Term(5)));
  EXPECT_EQ(log.FindConflictByTerm(Index(10), Term(3)), Position(Index(3), Term(1)));
  EXPECT_EQ(log.FindConflictByTerm(Index(5), Term(0)), Position(Index(0), Term(0)));
  // An index past the end is searched from the last entry.
  EXPECT_EQ(log.FindConflictByTerm(Index(100), Term(6)), Position(Index(10), Term(6)));
}

TEST(RaftLog, FindConflictByTermStopsAtCompactionPoint) {
  PersistentState state = StateWithLog({kNode1}, {}, Term(5));
  state.snapshot.meta.index = Index(3);
  state.snapshot.meta.term = Term(2);
  state.entries = EntriesWithTerms(Index(4), {4, 4, 5});
  const RaftLog log(state);
  EXPECT_EQ(log.FindConflictByTerm(Index(6), Term(3)), std::make_pair(Index(3), Term(2)));
}

// Raft 5.4.1: "If the logs have last entries with different terms, then the log with the later
// term is more up-to-date. If the logs end with the same term, then whichever log is longer is
// more up-to-date."
TEST(RaftLog, IsUpToDateComparesLastTermThenLength) {
  const RaftLog log = LogWithTerms({1, 2, 2});
  EXPECT_TRUE(log.IsUpToDate(Index(3), Term(2)));
  EXPECT_TRUE(log.IsUpToDate(Index(4), Term(2)));
  EXPECT_FALSE(log.IsUpToDate(Index(2), Term(2)));
  EXPECT_TRUE(log.IsUpToDate(Index(1), Term(3)));
  EXPECT_FALSE(log.IsUpToDate(Index(10), Term(1)));
}

TEST(RaftLog, StableToIgnoresEntriesThatWereReplaced) {
  RaftLog log = LogWithTerms({1});
  log.Append(EntriesWithTerms(Index(2), {1})[0]);
  log.Append(EntriesWithTerms(Index(3), {1})[0]);
  EXPECT_EQ(log.stable(), Index(1));
  // A new leader replaces entries 2 and 3 while the write of the old ones is in flight.
  log.AppendAfter(Index(1), EntriesWithTerms(Index(2), {2}));
  log.StableTo(Index(3), Term(1));
  EXPECT_EQ(log.stable(), Index(1)) << "entry 3 no longer exists";
  log.StableTo(Index(2), Term(1));
  EXPECT_EQ(log.stable(), Index(1)) << "entry 2 was replaced by one of term 2";
  log.StableTo(Index(2), Term(2));
  EXPECT_EQ(log.stable(), Index(2));
  EXPECT_EQ(log.unstable_entry_count(), 0u);
}

TEST(RaftLog, TruncationMakesTheReplacementUnstable) {
  RaftLog log = LogWithTerms({1, 1, 1});
  EXPECT_EQ(log.stable(), Index(3));
  log.AppendAfter(Index(1), EntriesWithTerms(Index(2), {2}));
  EXPECT_EQ(log.stable(), Index(1));
  EXPECT_EQ(log.unstable_entry_count(), 1u);
}

// Raft 7: the follower "discards its entire log; it is all superseded by the snapshot".
TEST(RaftLog, RestoreReplacesTheWholeLogBySnapshot) {
  RaftLog log = LogWithTerms({1, 1, 1, 2, 2}, Index(2));
  const Snapshot snapshot{SnapshotMeta{Index(7), Term(3), Membership{{kNode1, kNode2}, {}}}, "d"};
  log.Restore(snapshot);
  EXPECT_EQ(log.prev_index(), Index(7));
  EXPECT_EQ(log.last_index(), Index(7));
  EXPECT_EQ(log.last_term(), Term(3));
  EXPECT_EQ(log.TermAt(Index(5)), std::nullopt);
  EXPECT_EQ(log.committed(), Index(7));
  EXPECT_EQ(log.applied(), Index(7));
  EXPECT_EQ(log.stable(), Index(7));
  EXPECT_EQ(log.membership(), snapshot.meta.membership);
  EXPECT_EQ(log.snapshot(), snapshot);
  EXPECT_EQ(log.pending_snapshot(), snapshot);
}

TEST(RaftLog, CompactDiscardsEntriesUpToSnapshotIndex) {
  PersistentState state = StateWithLog({kNode1}, {1, 1, 2, 2, 3}, Term(3), Index(5));
  state.applied = Index(5);
  RaftLog log(state);
  log.SetSnapshot(Index(3), "image");
  EXPECT_EQ(log.snapshot().meta, (SnapshotMeta{Index(3), Term(2), Membership{{kNode1}, {}}}));
  log.Compact(Index(3));
  EXPECT_EQ(log.first_index(), Index(4));
  EXPECT_EQ(log.TermAt(Index(3)), Term(2)) << "the compaction point is known by its term";
  EXPECT_EQ(log.TermAt(Index(2)), std::nullopt);
  EXPECT_EQ(log.last_index(), Index(5));
  EXPECT_EQ(log.Slice(Index(4), 1 << 20).size(), 2u);
  // Compacting to an older point is a no-op.
  log.Compact(Index(2));
  EXPECT_EQ(log.first_index(), Index(4));
}

TEST(RaftLog, SliceStopsAtByteLimitButReturnsAtLeastOneEntry) {
  const RaftLog log = LogWithTerms({1, 1, 1});  // Each entry's data is "1/i", 3 bytes.
  EXPECT_EQ(log.Slice(Index(1), 1).size(), 1u);
  EXPECT_EQ(log.Slice(Index(1), 6).size(), 2u);
  EXPECT_EQ(log.Slice(Index(2), 1 << 20).size(), 2u);
}

// Thesis 4.1: "a server always uses the latest configuration in its log, regardless of whether
// the entry is committed".
TEST(RaftLog, MembershipAtFollowsConfigurationEntries) {
  PersistentState state = StateWithLog({kNode1, kNode2, kNode3}, {}, Term(1));
  state.entries = EntriesWithTerms(Index(1), {1});
  state.entries.push_back(ConfigEntry(Term(1), Index(2), {kNode1, kNode2, kNode3, kNode4}));
  state.entries.push_back(EntriesWithTerms(Index(3), {1})[0]);
  state.entries.push_back(ConfigEntry(Term(1), Index(4), {kNode1, kNode2, kNode4}));
  state.hard_state.commit = Index(3);
  state.applied = Index(3);
  RaftLog log(state);
  const Membership initial{{kNode1, kNode2, kNode3}, {}};
  const Membership added{{kNode1, kNode2, kNode3, kNode4}, {}};
  const Membership removed{{kNode1, kNode2, kNode4}, {}};
  EXPECT_EQ(log.MembershipAt(Index(0)), initial);
  EXPECT_EQ(log.MembershipAt(Index(1)), initial);
  EXPECT_EQ(log.MembershipAt(Index(2)), added);
  EXPECT_EQ(log.MembershipAt(Index(3)), added);
  EXPECT_EQ(log.MembershipAt(Index(4)), removed);
  EXPECT_EQ(log.membership(), removed);
  EXPECT_EQ(log.membership_index(), Index(4));

  // A truncated configuration entry no longer counts.
  log.AppendAfter(Index(3), EntriesWithTerms(Index(4), {2}));
  EXPECT_EQ(log.membership(), added);
  EXPECT_EQ(log.membership_index(), Index(2));

  // Compaction keeps the configuration in force at the compaction point.
  log.SetSnapshot(Index(3), "image");
  EXPECT_EQ(log.snapshot().meta.membership, added);
  log.Compact(Index(3));
  EXPECT_EQ(log.MembershipAt(Index(3)), added);
  EXPECT_EQ(log.membership(), added);
}

TEST(RaftLog, RestartFromSnapshotRaisesStaleCommitToSnapshotIndex) {
  PersistentState state = StateWithLog({kNode1}, {}, Term(2), Index(1));
  state.snapshot.meta.index = Index(4);
  state.snapshot.meta.term = Term(2);
  state.entries = EntriesWithTerms(Index(5), {2});
  const RaftLog log(state);
  EXPECT_EQ(log.committed(), Index(4));
  EXPECT_EQ(log.applied(), Index(4));
  EXPECT_EQ(log.stable(), Index(5));
}

TEST(RaftLog, CommitToNeverMovesBack) {
  RaftLog log = LogWithTerms({1, 1, 1});
  log.CommitTo(Index(3));
  log.CommitTo(Index(2));
  EXPECT_EQ(log.committed(), Index(3));
}

}  // namespace
}  // namespace synod::raft
