// Each invariant the checker enforces must be able to fail: every test here feeds it a
// hand-made history that breaks one rule and expects that rule's name in the failure.
#include "sim/checker.h"

#include <gtest/gtest.h>

#include <memory>

namespace synod::sim {
namespace {

using raft::Entry;
using raft::EntryType;

Entry Normal(uint64_t index, uint64_t term, uint64_t proposal) {
  return Entry{Term(term), Index(index), EntryType::kNormal, EncodeProposal(proposal), {}};
}

// A one-voter node whose durable log is `entries` with commit `commit`, at `term`.
std::unique_ptr<raft::Raft> MakeNode(uint64_t id, uint64_t term, std::vector<Entry> entries,
                                     uint64_t commit) {
  raft::Config config;
  config.id = NodeId(id);
  raft::PersistentState state;
  state.hard_state = raft::HardState{Term(term), kNoNode, Index(commit)};
  state.snapshot.meta.membership.voters = {NodeId(id)};
  state.entries = std::move(entries);
  auto node = raft::Raft::Create(config, std::move(state));
  EXPECT_TRUE(node.ok()) << node.status();
  return std::move(*node);
}

void ExpectFailure(const Checker& checker, const std::string& rule) {
  ASSERT_TRUE(checker.failed()) << "expected a " << rule << " violation";
  EXPECT_NE(checker.failure()->find(rule), std::string::npos) << *checker.failure();
}

TEST(Checker, ElectionSafetyCatchesTwoLeadersInOneTerm) {
  Checker checker;
  // Two one-voter "clusters" with distinct ids both elect themselves in term 1.
  auto first = MakeNode(1, 0, {}, 0);
  auto second = MakeNode(2, 0, {}, 0);
  ASSERT_TRUE(first->Campaign().ok());
  ASSERT_TRUE(second->Campaign().ok());
  ASSERT_EQ(first->term(), second->term());
  checker.ObserveNode(*first);
  EXPECT_FALSE(checker.failed());
  checker.ObserveNode(*second);
  ExpectFailure(checker, "Election Safety");
}

TEST(Checker, LeaderCompletenessCatchesALeaderMissingACommittedEntry) {
  Checker checker;
  checker.OnProposalIssued(1);
  // Node 1 holds entry 1 committed in term 1.
  auto holder = MakeNode(1, 1, {Normal(1, 1, 1)}, 1);
  checker.ObserveNode(*holder);
  ASSERT_FALSE(checker.failed());
  // Node 2 has an empty log and becomes leader of term 2.
  auto usurper = MakeNode(2, 1, {}, 0);
  ASSERT_TRUE(usurper->Campaign().ok());
  checker.ObserveNode(*usurper);
  ExpectFailure(checker, "Leader Completeness");
}

TEST(Checker, LogMatchingCatchesDifferentPrefixesUnderOneEntry) {
  Checker checker;
  auto first = MakeNode(1, 1, {}, 0);
  auto second = MakeNode(2, 1, {}, 0);
  raft::Ready ready;
  ready.entries = {Normal(1, 1, 1), Normal(2, 1, 2)};
  checker.OnPersist(*first, ready, Index(0));
  ASSERT_FALSE(checker.failed());
  // Same (index 2, term 1) but a different entry before it.
  ready.entries = {Normal(1, 1, 7), Normal(2, 1, 2)};
  checker.OnPersist(*second, ready, Index(0));
  ExpectFailure(checker, "Log Matching");
}

TEST(Checker, StateMachineSafetyCatchesADifferentEntryAppliedAtOneIndex) {
  Checker checker;
  checker.OnProposalIssued(1);
  checker.OnProposalIssued(2);
  auto node = MakeNode(1, 1, {Normal(1, 1, 1)}, 1);
  checker.ObserveNode(*node);
  checker.OnApply(NodeId(1), Normal(1, 1, 1), 11);
  ASSERT_FALSE(checker.failed());
  checker.OnApply(NodeId(2), Normal(1, 1, 2), 12);
  ExpectFailure(checker, "State Machine Safety");
}

TEST(Checker, ValidityCatchesAValueNobodyProposed) {
  Checker checker;
  auto node = MakeNode(1, 1, {Normal(1, 1, 5)}, 1);
  checker.ObserveNode(*node);
  checker.OnApply(NodeId(1), Normal(1, 1, 5), 11);
  ExpectFailure(checker, "Validity");
}

TEST(Checker, IntegrityCatchesAProposalAppliedTwice) {
  Checker checker;
  checker.OnProposalIssued(1);
  auto node = MakeNode(1, 1, {Normal(1, 1, 1), Normal(2, 1, 1)}, 2);
  checker.ObserveNode(*node);
  checker.OnApply(NodeId(1), Normal(1, 1, 1), 11);
  ASSERT_FALSE(checker.failed());
  checker.OnApply(NodeId(1), Normal(2, 1, 1), 12);
  ExpectFailure(checker, "Integrity");
}

TEST(Checker, StaleReadIsCaught) {
  Checker checker;
  checker.OnProposalIssued(1);
  auto node = MakeNode(1, 1, {Normal(1, 1, 1)}, 1);
  checker.ObserveNode(*node);
  // Index 1 is committed before the read starts, so a read index of 0 misses it.
  checker.OnReadRequested("r1");
  checker.OnReadReleased(NodeId(2), raft::ReadState{Index(0), "r1"});
  ExpectFailure(checker, "Stale read");
}

TEST(Checker, AFreshReadAndADuplicatedReleasePass) {
  Checker checker;
  checker.OnProposalIssued(1);
  auto node = MakeNode(1, 1, {Normal(1, 1, 1)}, 1);
  checker.ObserveNode(*node);
  checker.OnReadRequested("r1");
  checker.OnReadReleased(NodeId(2), raft::ReadState{Index(1), "r1"});
  checker.OnReadReleased(NodeId(2), raft::ReadState{Index(1), "r1"});
  EXPECT_FALSE(checker.failed()) << *checker.failure();
}

TEST(Checker, ProposalEncodingRoundTrips) {
  EXPECT_EQ(DecodeProposal(EncodeProposal(42)), 42u);
  EXPECT_FALSE(DecodeProposal("x42").has_value());
  EXPECT_FALSE(DecodeProposal("p").has_value());
  EXPECT_FALSE(DecodeProposal("p4x").has_value());
}

}  // namespace
}  // namespace synod::sim
