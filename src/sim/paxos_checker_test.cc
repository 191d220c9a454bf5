// Each check of the Paxos checker, fed a hand-made history that violates it (and the same
// history without the violation, which must pass).
#include "sim/paxos_checker.h"

#include <gtest/gtest.h>

#include <string>

namespace synod::sim {
namespace {

using paxos::Message;
using paxos::MessageType;
using paxos::ProposalNumber;

ProposalNumber Number(uint64_t round, uint64_t proposer) {
  return ProposalNumber{Ballot(round), NodeId(proposer)};
}

Message Promise(uint64_t from, ProposalNumber number) {
  return Message{
      .type = MessageType::kPromise, .from = NodeId(from), .to = number.proposer, .number = number};
}

Message Accepted(uint64_t from, ProposalNumber number, std::string value) {
  return Message{.type = MessageType::kAccepted,
                 .from = NodeId(from),
                 .to = NodeId(1),
                 .number = number,
                 .value = std::move(value)};
}

// A 3-node history in which "a" is chosen under 1.n1: nodes 1 and 2 accept it.
PaxosChecker ChosenA() {
  PaxosChecker checker(3);
  checker.OnProposed(NodeId(1), "a");
  checker.OnProposed(NodeId(3), "b");
  checker.OnSent(Promise(1, Number(1, 1)));
  checker.OnSent(Promise(2, Number(1, 1)));
  checker.OnSent(Accepted(1, Number(1, 1), "a"));
  checker.OnSent(Accepted(2, Number(1, 1), "a"));
  return checker;
}

TEST(PaxosChecker, AValidHistoryPasses) {
  PaxosChecker checker = ChosenA();
  ASSERT_FALSE(checker.failure().has_value()) << *checker.failure();
  EXPECT_EQ(checker.chosen(), "a");
  // A higher proposal that carries the chosen value on (P2c) is fine, and so are learners.
  checker.OnSent(Promise(3, Number(2, 3)));
  checker.OnSent(Accepted(3, Number(2, 3), "a"));
  checker.OnSent(Accepted(2, Number(2, 3), "a"));
  checker.OnDecided(NodeId(3), "a");
  checker.OnSent(Message{.type = MessageType::kDecided, .from = NodeId(2), .value = "a"});
  EXPECT_FALSE(checker.failure().has_value()) << *checker.failure();
}

TEST(PaxosChecker, CatchesTwoValuesChosen) {
  PaxosChecker checker = ChosenA();
  checker.OnSent(Accepted(3, Number(2, 3), "b"));
  checker.OnSent(Accepted(2, Number(2, 3), "b"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Agreement:")) << *checker.failure();
}

TEST(PaxosChecker, CatchesAChosenValueNobodyProposed) {
  PaxosChecker checker(3);
  checker.OnSent(Accepted(1, Number(1, 1), "ghost"));
  EXPECT_FALSE(checker.failure().has_value());
  checker.OnSent(Accepted(2, Number(1, 1), "ghost"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Validity:")) << *checker.failure();
}

TEST(PaxosChecker, CatchesAcceptingBelowAPromise) {
  PaxosChecker checker(3);
  checker.OnProposed(NodeId(1), "a");
  checker.OnSent(Promise(2, Number(3, 3)));
  checker.OnSent(Accepted(2, Number(2, 1), "a"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Broken promise: node 2 accepted 2.n1"))
      << *checker.failure();
}

TEST(PaxosChecker, CatchesPromisingBelowAnEarlierPromise) {
  PaxosChecker checker(3);
  checker.OnSent(Promise(2, Number(3, 3)));
  checker.OnSent(Promise(2, Number(3, 3)));  // the same promise again is fine
  EXPECT_FALSE(checker.failure().has_value());
  checker.OnSent(Promise(2, Number(2, 1)));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Broken promise: node 2 promised 2.n1"))
      << *checker.failure();
}

TEST(PaxosChecker, CatchesANackThatShowsAForgottenPromise) {
  PaxosChecker checker(3);
  checker.OnSent(Promise(2, Number(3, 3)));
  checker.OnSent(Message{.type = MessageType::kNack,
                         .from = NodeId(2),
                         .to = NodeId(1),
                         .number = Number(1, 1),
                         .promised = Number(2, 3)});
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Broken promise:")) << *checker.failure();
}

TEST(PaxosChecker, CatchesOneNumberWithTwoValues) {
  PaxosChecker checker(5);
  checker.OnProposed(NodeId(1), "a");
  checker.OnProposed(NodeId(1), "b");
  checker.OnSent(Accepted(1, Number(1, 1), "a"));
  checker.OnSent(Accepted(2, Number(1, 1), "b"));
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Unique proposal numbers:")) << *checker.failure();
}

TEST(PaxosChecker, CatchesALearnerAheadOfTheChoice) {
  PaxosChecker checker(3);
  checker.OnProposed(NodeId(1), "a");
  checker.OnSent(Accepted(1, Number(1, 1), "a"));
  checker.OnDecided(NodeId(1), "a");
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Learning:")) << *checker.failure();
}

TEST(PaxosChecker, CatchesALearnerWithTheWrongValue) {
  PaxosChecker checker = ChosenA();
  checker.OnSent(Message{.type = MessageType::kDecided, .from = NodeId(3), .value = "b"});
  ASSERT_TRUE(checker.failure().has_value());
  EXPECT_TRUE(checker.failure()->starts_with("Learning: node 3 learned \"b\""))
      << *checker.failure();
}

}  // namespace
}  // namespace synod::sim
