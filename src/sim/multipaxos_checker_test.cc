// The checker must catch each violation it names; these feed it hand-made histories.
#include "sim/multipaxos_checker.h"

#include <gtest/gtest.h>

namespace synod::sim {
namespace {

using multipaxos::BallotNumber;
using multipaxos::Entry;
using multipaxos::EntryType;
using multipaxos::HardState;
using multipaxos::Message;
using multipaxos::MessageType;
using multipaxos::ReadState;
using multipaxos::Slot;

BallotNumber Ballot_(uint64_t round, uint64_t node) {
  return BallotNumber{Ballot(round), NodeId(node)};
}

Entry Command(uint64_t index, std::string data) {
  return Entry{Term(1), Index(index), EntryType::kNormal, std::move(data), {}};
}

void Accept(MultiPaxosChecker& checker, uint64_t node, BallotNumber ballot, Entry value) {
  checker.OnReadyDurable(NodeId(node), std::nullopt, {Slot{ballot, std::move(value)}}, {});
}

TEST(MultiPaxosChecker, AMajorityInOneBallotChoosesAValue) {
  MultiPaxosChecker checker(3);
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(1, "x"));
  EXPECT_EQ(checker.chosen_slots(), 0u);
  Accept(checker, 2, Ballot_(1, 1), Command(1, "x"));
  EXPECT_EQ(checker.chosen_slots(), 1u);
  checker.OnRestored(NodeId(3), Index(0), 0);
  checker.OnApplied(NodeId(3), Command(1, "x"));
  EXPECT_FALSE(checker.failure().has_value()) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesTwoValuesChosenForOneSlot) {
  MultiPaxosChecker checker(3);
  checker.OnProposed("x");
  checker.OnProposed("y");
  Accept(checker, 1, Ballot_(1, 1), Command(1, "x"));
  Accept(checker, 2, Ballot_(1, 1), Command(1, "x"));
  Accept(checker, 2, Ballot_(2, 3), Command(1, "y"));
  Accept(checker, 3, Ballot_(2, 3), Command(1, "y"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Agreement")) << *checker.failure();
}

// Within one Ready the acceptances made before a higher promise are fine; after it, not.
TEST(MultiPaxosChecker, OrdersPromisesWithinOneReady) {
  Message accepted;
  accepted.type = MessageType::kAccepted;
  accepted.from = NodeId(1);
  accepted.ballot = Ballot_(1, 2);
  accepted.acked = {Index(1)};
  Message promise;
  promise.type = MessageType::kPromise;
  promise.from = NodeId(1);
  promise.ballot = Ballot_(2, 3);
  MultiPaxosChecker in_order(3);
  in_order.OnReadyDurable(NodeId(1), HardState{Ballot_(2, 3), Index(0)}, {},
                          {accepted, promise});
  EXPECT_FALSE(in_order.failure().has_value()) << *in_order.failure();
  MultiPaxosChecker reversed(3);
  reversed.OnReadyDurable(NodeId(1), HardState{Ballot_(2, 3), Index(0)}, {},
                          {promise, accepted});
  ASSERT_TRUE(reversed.failure().has_value());
  EXPECT_TRUE(reversed.failure()->starts_with("Broken promise")) << *reversed.failure();
}

TEST(MultiPaxosChecker, CatchesAChosenValueNobodyProposed) {
  MultiPaxosChecker checker(3);
  Accept(checker, 1, Ballot_(1, 1), Command(1, "invented"));
  Accept(checker, 2, Ballot_(1, 1), Command(1, "invented"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Validity")) << *checker.failure();
}

TEST(MultiPaxosChecker, NoOpsNeedNoProposal) {
  MultiPaxosChecker checker(3);
  const Entry no_op{Term(1), Index(1), EntryType::kEmpty, {}, {}};
  Accept(checker, 1, Ballot_(1, 1), no_op);
  Accept(checker, 2, Ballot_(1, 1), no_op);
  EXPECT_FALSE(checker.failure().has_value());
}

TEST(MultiPaxosChecker, CatchesAcceptanceBelowAPromise) {
  MultiPaxosChecker checker(3);
  checker.OnReadyDurable(NodeId(1), HardState{Ballot_(5, 2), Index(0)}, {}, {});
  Accept(checker, 1, Ballot_(4, 3), Command(1, "x"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Broken promise")) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesAPromiseThatFellAcrossARestart) {
  MultiPaxosChecker checker(3);
  checker.OnReadyDurable(NodeId(1), HardState{Ballot_(5, 2), Index(0)}, {}, {});
  Message promise;
  promise.type = MessageType::kPromise;
  promise.from = NodeId(1);
  promise.ballot = Ballot_(3, 3);
  checker.OnReadyDurable(NodeId(1), std::nullopt, {}, {promise});
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Broken promise")) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesApplyingAnUnchosenValue) {
  MultiPaxosChecker checker(3);
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(1, "x"));
  checker.OnRestored(NodeId(1), Index(0), 0);
  checker.OnApplied(NodeId(1), Command(1, "x"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Learning")) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesASnapshotThatDiffersFromTheAppliedPrefix) {
  MultiPaxosChecker checker(3);
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(1, "x"));
  Accept(checker, 2, Ballot_(1, 1), Command(1, "x"));
  checker.OnRestored(NodeId(1), Index(0), 0);
  const uint64_t digest = checker.OnApplied(NodeId(1), Command(1, "x"));
  checker.OnRestored(NodeId(2), Index(1), digest);
  EXPECT_FALSE(checker.failure().has_value());
  checker.OnRestored(NodeId(3), Index(1), digest + 1);
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Applied prefixes")) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesAStaleRead) {
  MultiPaxosChecker checker(3);
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(1, "x"));
  Accept(checker, 2, Ballot_(1, 1), Command(1, "x"));
  checker.OnRestored(NodeId(1), Index(0), 0);
  checker.OnApplied(NodeId(1), Command(1, "x"));
  checker.OnReadAsked("fresh");
  checker.OnReadReleased(NodeId(1), ReadState{Index(1), "fresh"});
  EXPECT_FALSE(checker.failure().has_value());
  checker.OnReadAsked("stale");
  checker.OnReadReleased(NodeId(3), ReadState{Index(0), "stale"});
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Stale read")) << *checker.failure();
}

// The α rule: a configuration chosen in slot i decides the slots from i + α on, with a
// majority of its own voters.
TEST(MultiPaxosChecker, ASlotIsChosenByItsOwnConfiguration) {
  multipaxos::Membership three;
  three.voters = {NodeId(1), NodeId(2), NodeId(3)};
  MultiPaxosChecker checker(three, /*alpha_slots=*/2);
  multipaxos::Membership five = three;
  five.voters.push_back(NodeId(4));
  five.voters.push_back(NodeId(5));
  checker.OnProposed("add");
  const Entry change{Term(1), Index(1), EntryType::kConfig, "add", five};
  Accept(checker, 1, Ballot_(1, 1), change);
  Accept(checker, 2, Ballot_(1, 1), change);
  ASSERT_EQ(checker.chosen_slots(), 1u);
  EXPECT_EQ(checker.latest_membership(), five);
  // Slot 2 is still governed by the three voters, slot 3 by the five.
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(2, "x"));
  Accept(checker, 2, Ballot_(1, 1), Command(2, "x"));
  EXPECT_EQ(checker.chosen_slots(), 2u);
  checker.OnProposed("y");
  Accept(checker, 1, Ballot_(1, 1), Command(3, "y"));
  Accept(checker, 2, Ballot_(1, 1), Command(3, "y"));
  EXPECT_EQ(checker.chosen_slots(), 2u);
  Accept(checker, 4, Ballot_(1, 1), Command(3, "y"));
  EXPECT_EQ(checker.chosen_slots(), 3u);
  EXPECT_FALSE(checker.failure().has_value()) << *checker.failure();
}

TEST(MultiPaxosChecker, CatchesASlotAcceptedBeyondTheAlphaWindow) {
  multipaxos::Membership three;
  three.voters = {NodeId(1), NodeId(2), NodeId(3)};
  MultiPaxosChecker checker(three, /*alpha_slots=*/2);
  checker.OnProposed("x");
  Accept(checker, 1, Ballot_(1, 1), Command(2, "x"));
  EXPECT_FALSE(checker.failure().has_value()) << *checker.failure();
  Accept(checker, 1, Ballot_(1, 1), Command(3, "x"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Reconfiguration")) << *checker.failure();
}

}  // namespace
}  // namespace synod::sim
