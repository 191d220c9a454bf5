// Unit tests of the single-decree Paxos core, each checking sentences of "Paxos Made Simple"
// 2.2-2.4, on an in-memory cluster whose network the test drives message by message.
#include "consensus/paxos/paxos.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace synod::paxos {
namespace {

constexpr uint32_t kLongTimeoutTicks = 1000;

// Nodes 1..n with an explicit network: messages wait in `in_flight` until a test delivers them.
// Each node's Ready is handled as the contract says: persist to `disk`, then queue its messages,
// then Advance.
class Cluster {
 public:
  explicit Cluster(uint32_t size, bool randomized_backoff = true) {
    for (uint32_t i = 1; i <= size; ++i) members_.push_back(NodeId(i));
    randomized_backoff_ = randomized_backoff;
    for (NodeId id : members_) Start(id);
  }

  Paxos& node(uint32_t id) { return *nodes_.at(NodeId(id)); }
  const PersistentState& disk(uint32_t id) { return disk_[NodeId(id)]; }

  // Runs every node's Ready cycle until none has anything left.
  void Flush() {
    bool progress = true;
    while (progress) {
      progress = false;
      for (auto& [id, paxos] : nodes_) {
        if (!paxos->HasReady()) continue;
        progress = true;
        Ready ready = paxos->TakeReady();
        if (ready.state.has_value()) disk_[id] = *ready.state;
        for (Message& message : ready.messages) in_flight.push_back(std::move(message));
        paxos->Advance();
      }
    }
  }

  // Delivers, in order, every in-flight message that `match` selects (also those the
  // deliveries produce), and returns how many.
  size_t Deliver(const std::function<bool(const Message&)>& match) {
    size_t delivered = 0;
    for (;;) {
      Flush();
      auto it = std::find_if(in_flight.begin(), in_flight.end(), match);
      if (it == in_flight.end()) return delivered;
      Message message = std::move(*it);
      in_flight.erase(it);
      EXPECT_TRUE(nodes_.at(message.to)->Step(message).ok()) << ToString(message);
      ++delivered;
    }
  }
  size_t DeliverAll() {
    return Deliver([](const Message&) { return true; });
  }

  void TickAll() {
    for (auto& [id, paxos] : nodes_) paxos->Tick();
    Flush();
  }

  // Rebuilds the node from its disk: everything in memory, and its unsent messages, are lost.
  void Restart(uint32_t id) {
    std::erase_if(in_flight, [&](const Message& m) { return m.from == NodeId(id); });
    Start(NodeId(id));
  }

  Config ConfigFor(NodeId id) const {
    Config config;
    config.id = id;
    config.members = members_;
    config.phase_timeout_ticks = kLongTimeoutTicks;
    config.randomized_backoff = randomized_backoff_;
    config.backoff_ticks_max = 10;
    config.seed = id.value() * 7919;
    config.check_invariants = true;
    return config;
  }

  std::vector<Message> in_flight;

 private:
  void Start(NodeId id) {
    auto created = Paxos::Create(ConfigFor(id), disk_[id]);
    ASSERT_TRUE(created.ok()) << created.status();
    nodes_[id] = std::move(*created);
  }

  std::vector<NodeId> members_;
  bool randomized_backoff_ = true;
  std::map<NodeId, std::unique_ptr<Paxos>> nodes_;
  std::map<NodeId, PersistentState> disk_;
};

std::function<bool(const Message&)> OfType(MessageType type) {
  return [type](const Message& m) { return m.type == type; };
}
std::function<bool(const Message&)> OfTypeFrom(MessageType type, uint32_t from) {
  return [type, from](const Message& m) { return m.type == type && m.from == NodeId(from); };
}
std::function<bool(const Message&)> OfTypeTo(MessageType type, uint32_t to) {
  return [type, to](const Message& m) { return m.type == type && m.to == NodeId(to); };
}

ProposalNumber Number(uint64_t round, uint64_t proposer) {
  return ProposalNumber{Ballot(round), NodeId(proposer)};
}

Message MessageOf(MessageType type, uint32_t from, uint32_t to, ProposalNumber number = {}) {
  return Message{.type = type, .from = NodeId(from), .to = NodeId(to), .number = number};
}

// ---- 2.2: choosing a value ----

TEST(Paxos, OneProposerGetsItsValueChosenAndEveryLearnerLearnsIt) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
  cluster.DeliverAll();
  for (uint32_t id : {1, 2, 3}) {
    ASSERT_TRUE(cluster.node(id).Query().has_value()) << "node " << id;
    EXPECT_EQ(*cluster.node(id).Query(), "x");
    EXPECT_EQ(cluster.disk(id).decided, "x");
    EXPECT_EQ(cluster.disk(id).accepted, (Proposal{Number(1, 1), "x"}));
  }
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kIdle);
  // Once decided, nothing else can be proposed.
  EXPECT_EQ(cluster.node(2).Propose("y").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Paxos, NothingIsDecidedBeforeAMajorityAccepted) {
  Cluster cluster(5);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  cluster.Deliver(OfType(MessageType::kPrepare));
  cluster.Deliver(OfType(MessageType::kPromise));
  // Only node 2 (and node 1's own acceptor) accept: two of five.
  cluster.Deliver(OfTypeTo(MessageType::kAccept, 2));
  cluster.Deliver(OfType(MessageType::kAccepted));
  for (uint32_t id = 1; id <= 5; ++id) EXPECT_FALSE(cluster.node(id).Query().has_value());
  cluster.Deliver(OfTypeTo(MessageType::kAccept, 3));
  cluster.Deliver(OfType(MessageType::kAccepted));
  for (uint32_t id = 1; id <= 5; ++id) EXPECT_EQ(cluster.node(id).Query(), "x") << id;
}

// P2c: "a proposer that wants to issue a proposal numbered n must first learn the highest-
// numbered proposal... that has been or will be accepted by each acceptor in some majority".
TEST(Paxos, ProposerAdoptsTheHighestAcceptedValueReportedInPromises) {
  Cluster cluster(5);
  ASSERT_TRUE(cluster.node(1).Propose("first").ok());
  cluster.Deliver(OfTypeFrom(MessageType::kPrepare, 1));
  cluster.Deliver(OfTypeTo(MessageType::kPromise, 1));
  // Node 1's accept reaches only node 2: "first" is accepted by nodes 1 and 2, not chosen.
  cluster.Deliver(OfTypeTo(MessageType::kAccept, 2));
  cluster.in_flight.clear();
  ASSERT_EQ(cluster.disk(2).accepted, (Proposal{Number(1, 1), "first"}));

  // Node 5 proposes its own value; node 2's promise tells it what node 2 accepted.
  ASSERT_TRUE(cluster.node(5).Propose("second").ok());
  cluster.Deliver(OfTypeFrom(MessageType::kPrepare, 5));
  cluster.Deliver(OfTypeTo(MessageType::kPromise, 5));
  ASSERT_EQ(cluster.node(5).phase(), ProposerPhase::kAccepting);
  cluster.DeliverAll();
  for (uint32_t id = 1; id <= 5; ++id) EXPECT_EQ(cluster.node(id).Query(), "first") << id;
  EXPECT_EQ(cluster.disk(3).accepted->number, Number(2, 5));
}

// ---- 2.2 and 2.4: preemption ----

TEST(Paxos, HigherNumberPreemptsAndTheNackLetsTheProposerSkipPastIt) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.node(1).Propose("a").ok());
  cluster.in_flight.clear();  // Node 1's prepare is lost.
  // Node 2 runs its first round with a higher number; node 3 promises it.
  ASSERT_TRUE(cluster.node(2).Propose("b").ok());
  cluster.Deliver(OfTypeTo(MessageType::kPrepare, 3));
  // Node 1 tries again by hand with its next number: its accept is refused.
  Message accept = MessageOf(MessageType::kAccept, 1, 3, Number(1, 1));
  accept.value = "a";
  ASSERT_TRUE(cluster.node(3).Step(accept).ok());
  cluster.Flush();
  ASSERT_EQ(cluster.in_flight.back().type, MessageType::kNack);
  EXPECT_EQ(cluster.in_flight.back().promised, Number(1, 2));
  cluster.Deliver(OfTypeTo(MessageType::kNack, 1));
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kBackoff);
  // After the random backoff (the first retry waits 1 or 2 ticks), node 1's next number is
  // above the one that preempted it.
  for (int i = 0; i < 2 && cluster.node(1).phase() == ProposerPhase::kBackoff; ++i) {
    cluster.node(1).Tick();
  }
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
  EXPECT_GT(cluster.node(1).proposal_number(), Number(1, 2));
  EXPECT_EQ(cluster.node(1).proposal_number().round, Ballot(2));
}

TEST(Paxos, PhaseTimeoutRetriesWithAHigherNumber) {
  Cluster cluster(3, /*randomized_backoff=*/false);
  ASSERT_TRUE(cluster.node(1).Propose("a").ok());
  cluster.in_flight.clear();  // Every prepare is lost.
  for (uint32_t i = 0; i < kLongTimeoutTicks; ++i) cluster.node(1).Tick();
  EXPECT_EQ(cluster.node(1).proposal_number(), Number(2, 1));
  cluster.DeliverAll();
  EXPECT_EQ(cluster.node(3).Query(), "a");
}

// ---- Lost, duplicated, stale ----

TEST(Paxos, DuplicatePromisesAndAcceptancesCountOnce) {
  Cluster cluster(5);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  cluster.Deliver(OfTypeTo(MessageType::kPrepare, 2));
  Message promise = cluster.in_flight.back();
  ASSERT_EQ(promise.type, MessageType::kPromise);
  // Node 1 itself and node 2, three times: two distinct acceptors of five.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.node(1).Step(promise).ok());
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
  cluster.Deliver(OfTypeTo(MessageType::kPrepare, 3));
  cluster.Deliver(OfTypeTo(MessageType::kPromise, 1));
  ASSERT_EQ(cluster.node(1).phase(), ProposerPhase::kAccepting);
  cluster.in_flight.clear();

  // Node 4's learner hears node 1's acceptance three times: still one acceptor of three needed.
  Message accepted = MessageOf(MessageType::kAccepted, 1, 4, Number(1, 1));
  accepted.value = "x";
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.node(4).Step(accepted).ok());
  accepted.from = NodeId(2);
  ASSERT_TRUE(cluster.node(4).Step(accepted).ok());
  EXPECT_FALSE(cluster.node(4).Query().has_value());
  accepted.from = NodeId(3);
  ASSERT_TRUE(cluster.node(4).Step(accepted).ok());
  EXPECT_EQ(cluster.node(4).Query(), "x");
}

TEST(Paxos, StaleAnswersToAnAbandonedNumberAreIgnored) {
  Cluster cluster(3, /*randomized_backoff=*/false);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  cluster.Deliver(OfTypeTo(MessageType::kPrepare, 2));
  cluster.Flush();
  std::vector<Message> stale_promises;  // node 2's promise of 1.n1
  std::ranges::copy_if(cluster.in_flight, std::back_inserter(stale_promises),
                       OfType(MessageType::kPromise));
  ASSERT_EQ(stale_promises.size(), 1u);
  cluster.in_flight.clear();
  for (uint32_t i = 0; i < kLongTimeoutTicks; ++i) cluster.node(1).Tick();
  ASSERT_EQ(cluster.node(1).proposal_number(), Number(2, 1));
  for (const Message& m : stale_promises) ASSERT_TRUE(cluster.node(1).Step(m).ok());
  // Node 1's own promise of 2.n1 plus a stale one of 1.n1 is not a majority for 2.n1.
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
  // A stale nack does not abandon the current number either.
  Message nack = MessageOf(MessageType::kNack, 3, 1, Number(1, 1));
  nack.promised = Number(1, 3);
  ASSERT_TRUE(cluster.node(1).Step(nack).ok());
  EXPECT_EQ(cluster.node(1).proposal_number(), Number(2, 1));
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
}

TEST(Paxos, MalformedMessagesAreRefused) {
  Cluster cluster(3);
  Message from_stranger = MessageOf(MessageType::kPrepare, 9, 1, Number(1, 9));
  EXPECT_EQ(cluster.node(1).Step(from_stranger).code(), absl::StatusCode::kInvalidArgument);
  Message no_number = MessageOf(MessageType::kAccept, 2, 1);
  EXPECT_EQ(cluster.node(1).Step(no_number).code(), absl::StatusCode::kInvalidArgument);
  Message wrong_node = MessageOf(MessageType::kLearn, 2, 3);
  EXPECT_EQ(cluster.node(1).Step(wrong_node).code(), absl::StatusCode::kInvalidArgument);
  Message low_nack = MessageOf(MessageType::kNack, 2, 1, Number(2, 1));
  low_nack.promised = Number(1, 3);
  EXPECT_EQ(cluster.node(1).Step(low_nack).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(cluster.node(1).HasReady());
}

// ---- 2.3: "an acceptor must remember this information even if it fails and then restarts" ----

TEST(Paxos, APromiseIsDurableBeforeItIsSent) {
  Cluster cluster(3);
  Message prepare = MessageOf(MessageType::kPrepare, 2, 1, Number(4, 2));
  ASSERT_TRUE(cluster.node(1).Step(prepare).ok());
  ASSERT_TRUE(cluster.node(1).HasReady());
  Ready ready = cluster.node(1).TakeReady();
  ASSERT_TRUE(ready.state.has_value());
  EXPECT_EQ(ready.state->promised, Number(4, 2));
  ASSERT_EQ(ready.messages.size(), 1u);
  EXPECT_EQ(ready.messages[0].type, MessageType::kPromise);
  EXPECT_EQ(ready.messages[0].number, Number(4, 2));
  cluster.node(1).Advance();
  // A duplicate prepare is answered again but changes nothing that must be persisted.
  ASSERT_TRUE(cluster.node(1).Step(prepare).ok());
  ready = cluster.node(1).TakeReady();
  EXPECT_FALSE(ready.state.has_value());
  EXPECT_EQ(ready.messages.size(), 1u);
}

TEST(Paxos, AnAcceptanceIsDurableBeforeItIsSent) {
  Cluster cluster(3);
  Message accept = MessageOf(MessageType::kAccept, 2, 1, Number(1, 2));
  accept.value = "v";
  ASSERT_TRUE(cluster.node(1).Step(accept).ok());
  Ready ready = cluster.node(1).TakeReady();
  ASSERT_TRUE(ready.state.has_value());
  EXPECT_EQ(ready.state->accepted, (Proposal{Number(1, 2), "v"}));
  EXPECT_EQ(ready.state->promised, Number(1, 2));
  // The acceptance goes to both other learners; the copy to itself waits for Advance.
  ASSERT_EQ(ready.messages.size(), 2u);
  for (const Message& m : ready.messages) EXPECT_EQ(m.type, MessageType::kAccepted);
}

// The proposer's own acceptor is no exception: its promise counts only once it is durable.
TEST(Paxos, ProposerCountsItsOwnPromiseOnlyAfterAdvance) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  Ready ready = cluster.node(1).TakeReady();
  ASSERT_TRUE(ready.state.has_value());
  EXPECT_EQ(ready.state->promised, Number(1, 1));
  ASSERT_EQ(ready.messages.size(), 2u);  // prepares to nodes 2 and 3
  Message promise = MessageOf(MessageType::kPromise, 2, 1, Number(1, 1));
  ASSERT_TRUE(cluster.node(1).Step(promise).ok());
  // Node 2's promise alone is one of the two needed; node 1's own is not durable yet.
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kPreparing);
  cluster.node(1).Advance();
  EXPECT_EQ(cluster.node(1).phase(), ProposerPhase::kAccepting);
}

TEST(Paxos, ARestartedAcceptorKeepsItsPromises) {
  Cluster cluster(3);
  Message prepare = MessageOf(MessageType::kPrepare, 3, 2, Number(5, 3));
  ASSERT_TRUE(cluster.node(2).Step(prepare).ok());
  cluster.Flush();
  cluster.in_flight.clear();
  cluster.Restart(2);
  EXPECT_EQ(cluster.node(2).persistent_state().promised, Number(5, 3));
  // A lower prepare and a lower accept are refused, naming the promise.
  for (MessageType type : {MessageType::kPrepare, MessageType::kAccept}) {
    Message lower = MessageOf(type, 1, 2, Number(4, 1));
    lower.value = "late";
    ASSERT_TRUE(cluster.node(2).Step(lower).ok());
    cluster.Flush();
    ASSERT_EQ(cluster.in_flight.size(), 1u);
    EXPECT_EQ(cluster.in_flight[0].type, MessageType::kNack);
    EXPECT_EQ(cluster.in_flight[0].promised, Number(5, 3));
    cluster.in_flight.clear();
  }
  EXPECT_FALSE(cluster.node(2).persistent_state().accepted.has_value());
  // Its own proposals start above the promise, so it never reuses a number it may have sent.
  ASSERT_TRUE(cluster.node(2).Propose("mine").ok());
  EXPECT_EQ(cluster.node(2).proposal_number(), Number(6, 2));
}

TEST(Paxos, ARestartedNodeStillKnowsTheDecision) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  cluster.DeliverAll();
  cluster.Restart(3);
  EXPECT_EQ(cluster.node(3).Query(), "x");
}

// ---- Learning (2.3) ----

TEST(Paxos, ALearnerThatMissedTheDecisionAsksAndIsTold) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.node(1).Propose("x").ok());
  // Node 3 hears nothing of the whole round.
  cluster.Flush();
  for (;;) {
    std::erase_if(cluster.in_flight, [](const Message& m) { return m.to == NodeId(3); });
    if (cluster.in_flight.empty()) break;
    Message m = cluster.in_flight.front();
    cluster.in_flight.erase(cluster.in_flight.begin());
    ASSERT_TRUE(cluster.node(m.to.value()).Step(m).ok());
    cluster.Flush();
  }
  ASSERT_EQ(cluster.node(2).Query(), "x");
  ASSERT_FALSE(cluster.node(3).Query().has_value());
  for (uint32_t i = 0; i < kLongTimeoutTicks; ++i) cluster.node(3).Tick();
  cluster.Flush();
  EXPECT_EQ(cluster.Deliver(OfTypeFrom(MessageType::kLearn, 3)), 2u);
  cluster.DeliverAll();
  EXPECT_EQ(cluster.node(3).Query(), "x");
}

// ---- 2.4: progress, and the dueling proposers ----

// A fixed schedule, the textbook livelock: each round one proposer completes phase 1 with a
// number higher than the other's, just before the other's accept requests arrive, so those are
// refused and the refused proposer starts phase 1 again. Returns the round in which some node
// decided, or 0 if none did within `rounds`.
int RunDuelingProposers(Cluster& cluster, int rounds) {
  EXPECT_TRUE(cluster.node(1).Propose("one").ok());
  EXPECT_TRUE(cluster.node(2).Propose("two").ok());
  cluster.Flush();
  for (int round = 1; round <= rounds; ++round) {
    const uint32_t turn = round % 2 == 1 ? 1 : 2;
    const uint32_t other = turn == 1 ? 2 : 1;
    // The proposer whose turn it is gathers its promises and sends its accepts.
    cluster.Deliver(OfTypeFrom(MessageType::kPrepare, turn));
    cluster.Deliver(OfTypeTo(MessageType::kPromise, turn));
    // The other's accepts arrive after that higher prepare: refused.
    cluster.Deliver(OfTypeFrom(MessageType::kAccept, other));
    cluster.Deliver(OfTypeTo(MessageType::kNack, other));
    cluster.Deliver([](const Message& m) {
      return m.type == MessageType::kAccepted || m.type == MessageType::kDecided ||
             m.type == MessageType::kLearn;
    });
    cluster.TickAll();
    for (uint32_t id = 1; id <= 3; ++id) {
      if (cluster.node(id).Query().has_value()) return round;
    }
  }
  return 0;
}

TEST(Paxos, DuelingProposersWithoutBackoffNeverDecide) {
  Cluster cluster(3, /*randomized_backoff=*/false);
  constexpr int kRounds = 200;
  EXPECT_EQ(RunDuelingProposers(cluster, kRounds), 0);
  // They kept preempting each other: each ran about one proposal per two rounds.
  EXPECT_GE(cluster.node(1).proposal_number().round, Ballot(kRounds / 2));
  EXPECT_GE(cluster.node(2).proposal_number().round, Ballot(kRounds / 2));
  for (uint32_t id = 1; id <= 3; ++id) EXPECT_FALSE(cluster.node(id).Query().has_value());
}

TEST(Paxos, DuelingProposersWithRandomizedBackoffDecide) {
  Cluster cluster(3, /*randomized_backoff=*/true);
  const int decided_round = RunDuelingProposers(cluster, 200);
  EXPECT_GT(decided_round, 0);
  EXPECT_LT(decided_round, 20);
  // And the decision reaches every node, all with the same value.
  for (int i = 0; i < 20; ++i) {
    cluster.DeliverAll();
    cluster.TickAll();
  }
  cluster.DeliverAll();
  const std::optional<std::string> value = cluster.node(1).Query();
  ASSERT_TRUE(value.has_value());
  EXPECT_TRUE(*value == "one" || *value == "two") << *value;
  for (uint32_t id = 2; id <= 3; ++id) EXPECT_EQ(cluster.node(id).Query(), value) << id;
}

// ---- Configuration ----

TEST(Paxos, InvalidConfigurationIsRejected) {
  Config config;
  config.id = NodeId(1);
  config.members = {NodeId(1), NodeId(2), NodeId(3)};
  EXPECT_TRUE(Validate(config).ok());
  Config not_member = config;
  not_member.id = NodeId(4);
  EXPECT_FALSE(Validate(not_member).ok());
  Config unsorted = config;
  unsorted.members = {NodeId(2), NodeId(1)};
  EXPECT_FALSE(Validate(unsorted).ok());
  Config duplicate = config;
  duplicate.members = {NodeId(1), NodeId(1)};
  EXPECT_FALSE(Validate(duplicate).ok());
  Config no_timeout = config;
  no_timeout.phase_timeout_ticks = 0;
  EXPECT_FALSE(Validate(no_timeout).ok());
  Config no_backoff = config;
  no_backoff.backoff_ticks_max = 1;
  EXPECT_FALSE(Validate(no_backoff).ok());
  no_backoff.randomized_backoff = false;
  EXPECT_TRUE(Validate(no_backoff).ok());
  PersistentState inconsistent;
  inconsistent.promised = Number(1, 2);
  inconsistent.accepted = Proposal{Number(2, 2), "v"};
  EXPECT_EQ(Paxos::Create(config, inconsistent).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace synod::paxos
