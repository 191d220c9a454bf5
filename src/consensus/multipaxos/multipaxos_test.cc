// Tests of the Multi-Paxos core, each naming the rule of "Paxos Made Simple" (PMS) it checks.
// A small harness plays the caller: it persists each Ready, delivers the messages (except on
// cut links), applies committed entries and calls Advance.
#include "consensus/multipaxos/multipaxos.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace synod::multipaxos {
namespace {

Membership Voters(size_t count) {
  Membership membership;
  for (size_t i = 1; i <= count; ++i) membership.voters.push_back(NodeId(i));
  return membership;
}

PersistentState NewMember(size_t group_size) {
  PersistentState state;
  state.snapshot.meta.membership = Voters(group_size);
  return state;
}

Config TestConfig(NodeId id) {
  Config config;
  config.id = id;
  config.election_timeout_ticks = 10;
  config.heartbeat_interval_ticks = 1;
  config.seed = id.value();
  config.check_invariants = true;
  return config;
}

std::unique_ptr<MultiPaxos> MustCreate(const Config& config, PersistentState state) {
  auto created = MultiPaxos::Create(config, std::move(state));
  EXPECT_TRUE(created.ok()) << created.status();
  return std::move(*created);
}

class Cluster {
 public:
  // Without check-quorum, followers promise a higher ballot even while their leader is alive,
  // which tests of phase 1 use to hand leadership to a chosen node at once.
  enum class CheckQuorum { kOn, kOff };

  explicit Cluster(size_t size, CheckQuorum check_quorum = CheckQuorum::kOn)
      : size_(size), check_quorum_(check_quorum == CheckQuorum::kOn) {
    for (size_t i = 1; i <= size; ++i) {
      Node& node = nodes_[NodeId(i)];
      node.durable = NewMember(size);
      node.core = MustCreate(NodeConfig(i), node.durable);
    }
  }

  Config NodeConfig(uint64_t id) const {
    Config config = TestConfig(NodeId(id));
    config.check_quorum = check_quorum_;
    return config;
  }

  MultiPaxos& core(uint64_t id) { return *nodes_.at(NodeId(id)).core; }
  const PersistentState& durable(uint64_t id) { return nodes_.at(NodeId(id)).durable; }
  // The data of the client commands node `id` applied, in order (no-ops left out).
  std::vector<std::string> AppliedCommands(uint64_t id) {
    std::vector<std::string> commands;
    for (const Entry& entry : nodes_.at(NodeId(id)).applied) {
      if (entry.type == EntryType::kNormal) commands.push_back(entry.data);
    }
    return commands;
  }
  const std::vector<ReadState>& reads(uint64_t id) { return nodes_.at(NodeId(id)).reads; }

  // Starts node `id` as a node that will join the group: an empty membership, learned later.
  void StartJoiner(uint64_t id) {
    Node& node = nodes_[NodeId(id)];
    node.core = MustCreate(NodeConfig(id), node.durable);
  }

  void Isolate(uint64_t id) { isolated_.insert(NodeId(id)); }
  void Heal() { isolated_.clear(); }

  void Crash(uint64_t id) {
    Node& node = nodes_.at(NodeId(id));
    node.core.reset();
    node.applied.clear();
  }
  void Restart(uint64_t id) {
    Node& node = nodes_.at(NodeId(id));
    node.core = MustCreate(NodeConfig(id), node.durable);
  }

  // Processes every Ready and delivers every message until nothing is left to do.
  void Settle() {
    for (int round = 0; round < 1000; ++round) {
      bool progress = false;
      for (auto& [id, node] : nodes_) {
        if (node.core == nullptr) continue;
        while (node.core->HasReady()) {
          progress = true;
          Handle(node, node.core->TakeReady());
        }
      }
      while (!network_.empty()) {
        progress = true;
        Message message = std::move(network_.front());
        network_.pop_front();
        Node& to = nodes_.at(message.to);
        if (to.core == nullptr || isolated_.contains(message.to) ||
            isolated_.contains(message.from)) {
          continue;
        }
        EXPECT_TRUE(to.core->Step(std::move(message)).ok());
      }
      if (!progress) return;
    }
    ADD_FAILURE() << "the cluster did not settle";
  }

  // Ticks every running node `ticks` times, settling after each tick.
  void Tick(int ticks) {
    for (int i = 0; i < ticks; ++i) {
      for (auto& [id, node] : nodes_) {
        if (node.core != nullptr) node.core->Tick();
      }
      Settle();
    }
  }

  void ElectLeader(uint64_t id) {
    core(id).Campaign();
    Settle();
    ASSERT_EQ(core(id).role(), Role::kLeader);
  }

 private:
  struct Node {
    std::unique_ptr<MultiPaxos> core;
    PersistentState durable;
    std::vector<Entry> applied;
    std::vector<ReadState> reads;
  };

  void Handle(Node& node, Ready ready) {
    // types.h: persist, send, apply, Advance.
    for (Message& message : ready.early_messages) network_.push_back(std::move(message));
    PersistInMemory(ready, node.durable);
    for (Message& message : ready.messages) network_.push_back(std::move(message));
    if (ready.snapshot.has_value()) node.applied.clear();
    for (Entry& entry : ready.committed_entries) node.applied.push_back(std::move(entry));
    for (ReadState& read : ready.read_states) node.reads.push_back(std::move(read));
    node.core->Advance();
  }

  size_t size_;
  bool check_quorum_;
  std::map<NodeId, Node> nodes_;
  std::deque<Message> network_;
  std::set<NodeId> isolated_;
};

// Takes every Ready of `core` without delivering anything, returning the messages.
std::vector<Message> Drain(MultiPaxos& core) {
  std::vector<Message> messages;
  while (core.HasReady()) {
    Ready ready = core.TakeReady();
    for (Message& message : ready.early_messages) messages.push_back(std::move(message));
    for (Message& message : ready.messages) messages.push_back(std::move(message));
    core.Advance();
  }
  return messages;
}

Message PromiseFrom(uint64_t from, const MultiPaxos& candidate, std::vector<Slot> slots) {
  Message promise;
  promise.type = MessageType::kPromise;
  promise.from = NodeId(from);
  promise.to = candidate.id();
  promise.ballot = candidate.ballot();
  promise.slots = std::move(slots);
  return promise;
}

Slot Accepted(uint64_t round, uint64_t proposer, uint64_t index, std::string data) {
  return Slot{BallotNumber{Ballot(round), NodeId(proposer)},
              Entry{Term(round), Index(index), EntryType::kNormal, std::move(data), {}}};
}

TEST(MultiPaxosTest, OneNodeElectsItselfAndCommits) {
  Cluster cluster(1);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Settle();
  EXPECT_EQ(cluster.AppliedCommands(1), std::vector<std::string>{"a"});
}

TEST(MultiPaxosTest, LeaderReplicatesABatchToEveryNode) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  for (const char* command : {"a", "b", "c"}) ASSERT_TRUE(cluster.core(1).Propose(command).ok());
  cluster.Settle();
  EXPECT_EQ(cluster.core(1).commit(), Index(3));
  // With nothing left in flight the leader announces its commit index at once, not with the
  // next heartbeat (no tick passed).
  const std::vector<std::string> expected{"a", "b", "c"};
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(cluster.AppliedCommands(id), expected) << id;
}

// PMS 2.3: the acceptor's promise must survive a crash, so it is in the Ready that carries the
// Promise message, which the caller sends only after persisting.
TEST(MultiPaxosTest, PromiseIsPersistedInTheReadyThatSendsIt) {
  auto candidate = MustCreate(TestConfig(NodeId(1)), NewMember(3));
  candidate->Campaign();
  std::vector<Message> prepares = Drain(*candidate);
  ASSERT_EQ(prepares.size(), 2u);
  auto acceptor = MustCreate(TestConfig(NodeId(2)), NewMember(3));
  ASSERT_TRUE(acceptor->Step(prepares[0]).ok());
  Ready ready = acceptor->TakeReady();
  ASSERT_TRUE(ready.hard_state.has_value());
  EXPECT_EQ(ready.hard_state->promised, candidate->ballot());
  ASSERT_EQ(ready.messages.size(), 1u);
  EXPECT_EQ(ready.messages[0].type, MessageType::kPromise);
}

// Only the promise and the accepted slots must survive a crash (PMS 2.3); the commit index is
// relearned from the leader (Raft thesis 3.8, Figure 2: commitIndex is volatile). So a Ready
// whose only change is the commit index persists nothing, and costs the caller no fsync.
TEST(MultiPaxosTest, CommitIndexAloneIsNotPersistedAndIsRelearnedAfterARestart) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Settle();
  ASSERT_EQ(cluster.core(2).commit(), cluster.core(1).commit());
  // The follower persisted the slot with the commit index of its accept; the commit index the
  // leader announced after that was not written.
  EXPECT_LT(cluster.durable(2).hard_state.commit, cluster.core(2).commit());
  EXPECT_EQ(cluster.durable(2).hard_state.promised, cluster.core(2).promised());
  cluster.Crash(2);
  cluster.Restart(2);
  EXPECT_LT(cluster.core(2).commit(), cluster.core(1).commit());
  cluster.Tick(1);
  EXPECT_EQ(cluster.core(2).commit(), cluster.core(1).commit());
  EXPECT_EQ(cluster.AppliedCommands(2), std::vector<std::string>{"a"});
}

// What the caller applied, and its snapshot, hold chosen slots only: a restart raises the
// lagging durable commit index to them.
TEST(MultiPaxosTest, RestartRaisesTheCommitIndexToTheAppliedIndex) {
  PersistentState state = NewMember(3);
  state.hard_state = HardState{BallotNumber{Ballot(1), NodeId(1)}, Index(1)};
  for (uint64_t index : {1, 2, 3}) state.slots.push_back(Accepted(1, 1, index, "x"));
  state.applied = Index(2);
  auto node = MustCreate(TestConfig(NodeId(2)), state);
  EXPECT_EQ(node->commit(), Index(2));
  EXPECT_EQ(node->applied(), Index(2));
  // A slot applied but not stored is inconsistent state, refused.
  state.slots.erase(state.slots.begin() + 1);
  EXPECT_FALSE(MultiPaxos::Create(TestConfig(NodeId(2)), state).ok());
}

// Raft thesis 10.2.1, for Paxos: the leader's accepts leave before its own copy of the slot is
// durable (it counts its own acceptance only at Advance); an acceptor's answer waits for its
// fsync, and so does a candidate's prepare, whose ballot is not durable yet.
TEST(MultiPaxosTest, LeaderAcceptsLeaveBeforeItsOwnWriteAcceptancesAfter) {
  auto candidate = MustCreate(TestConfig(NodeId(1)), NewMember(3));
  candidate->Campaign();
  Ready prepare_ready = candidate->TakeReady();
  EXPECT_TRUE(prepare_ready.early_messages.empty());
  EXPECT_EQ(prepare_ready.messages.size(), 2u);
  candidate->Advance();

  Cluster cluster(3);
  cluster.ElectLeader(1);
  MultiPaxos& leader = cluster.core(1);
  ASSERT_TRUE(leader.Propose("a").ok());
  Ready ready = leader.TakeReady();
  ASSERT_EQ(ready.slots.size(), 1u);
  ASSERT_EQ(ready.early_messages.size(), 2u);
  for (const Message& message : ready.early_messages) {
    EXPECT_EQ(message.type, MessageType::kAccept);
  }
  EXPECT_TRUE(ready.messages.empty());
  // Before the leader's Advance, a follower accepts; its answer waits for its own write.
  MultiPaxos& follower = cluster.core(2);
  ASSERT_TRUE(follower.Step(ready.early_messages[0]).ok());
  Ready follower_ready = follower.TakeReady();
  ASSERT_EQ(follower_ready.slots.size(), 1u);
  EXPECT_TRUE(follower_ready.early_messages.empty());
  ASSERT_EQ(follower_ready.messages.size(), 1u);
  EXPECT_EQ(follower_ready.messages[0].type, MessageType::kAccepted);
  follower.Advance();
  leader.Advance();
}

// A new leader with nothing to re-propose makes itself known right after phase 1, not at its
// first periodic heartbeat.
TEST(MultiPaxosTest, NewLeaderAnnouncesItselfRightAfterPhaseOne) {
  Cluster cluster(3);
  cluster.ElectLeader(1);  // no tick
  for (uint64_t id : {2, 3}) EXPECT_EQ(cluster.core(id).leader(), NodeId(1)) << id;
}

// PMS 3: a new leader fills the slots that phase 1 reports nothing for with no-ops, and
// re-proposes what was reported.
TEST(MultiPaxosTest, NewLeaderReproposesReportedValuesAndFillsGapsWithNoOps) {
  auto candidate = MustCreate(TestConfig(NodeId(3)), NewMember(3));
  candidate->Campaign();
  Drain(*candidate);  // its own promise is counted at Advance
  ASSERT_EQ(candidate->role(), Role::kCandidate);
  ASSERT_TRUE(candidate->Step(PromiseFrom(2, *candidate, {Accepted(1, 1, 3, "c")})).ok());
  ASSERT_EQ(candidate->role(), Role::kLeader);
  for (uint64_t index : {1, 2}) {
    ASSERT_NE(candidate->slot(Index(index)), nullptr);
    EXPECT_EQ(candidate->slot(Index(index))->value.type, EntryType::kEmpty);
  }
  ASSERT_NE(candidate->slot(Index(3)), nullptr);
  EXPECT_EQ(candidate->slot(Index(3))->value.data, "c");
  EXPECT_EQ(candidate->slot(Index(3))->accepted, candidate->ballot());
  // New commands go after the window.
  Result<LogPosition> position = candidate->Propose("d");
  ASSERT_TRUE(position.ok());
  EXPECT_EQ(position->index, Index(4));
}

// PMS 2.2, P2c: of the values reported for a slot, the one of the highest ballot.
TEST(MultiPaxosTest, NewLeaderTakesTheHighestBallotValuePerSlot) {
  PersistentState state = NewMember(3);
  state.hard_state.promised = BallotNumber{Ballot(1), NodeId(1)};
  state.slots.push_back(Accepted(1, 1, 1, "older"));
  auto candidate = MustCreate(TestConfig(NodeId(3)), state);
  candidate->Campaign();
  Drain(*candidate);
  ASSERT_TRUE(candidate->Step(PromiseFrom(2, *candidate, {Accepted(1, 2, 1, "newer")})).ok());
  ASSERT_EQ(candidate->role(), Role::kLeader);
  EXPECT_EQ(candidate->slot(Index(1))->value.data, "newer");
}

// The scenario P2c exists for: a value chosen by a majority that the old leader never announced
// survives the leader's crash.
TEST(MultiPaxosTest, ValueChosenBeforeTheLeaderCrashedSurvives) {
  Cluster cluster(3, Cluster::CheckQuorum::kOff);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  ASSERT_TRUE(cluster.core(1).Propose("x").ok());
  cluster.Settle();
  ASSERT_EQ(cluster.core(1).commit(), Index(1));
  cluster.Crash(1);
  // n2 accepted and heard that the slot is chosen, but a commit index is not persisted on its
  // own: after a restart n2 knows only that it accepted "x".
  cluster.Crash(2);
  cluster.Restart(2);
  EXPECT_EQ(cluster.core(2).commit(), Index(0));
  cluster.Heal();
  cluster.ElectLeader(3);
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(3), std::vector<std::string>{"x"});
  EXPECT_EQ(cluster.AppliedCommands(2), std::vector<std::string>{"x"});
}

// PMS 2.4: a proposer that learns of a higher ballot abandons its own.
TEST(MultiPaxosTest, HigherBallotPreemptsTheLeader) {
  Cluster cluster(3, Cluster::CheckQuorum::kOff);
  cluster.ElectLeader(1);
  cluster.ElectLeader(2);
  cluster.Tick(1);
  EXPECT_EQ(cluster.core(1).role(), Role::kFollower);
  EXPECT_EQ(cluster.core(1).leader(), NodeId(2));
  EXPECT_GT(cluster.core(2).ballot(), cluster.core(1).ballot());
  EXPECT_FALSE(cluster.core(1).Propose("late").ok());
}

// PMS 2.3: a restarted acceptor keeps its promise and refuses lower ballots.
TEST(MultiPaxosTest, RestartedAcceptorKeepsItsPromise) {
  Cluster cluster(3, Cluster::CheckQuorum::kOff);
  cluster.ElectLeader(1);
  const BallotNumber old_ballot = cluster.core(1).ballot();
  cluster.ElectLeader(2);
  cluster.Crash(3);
  cluster.Restart(3);
  EXPECT_EQ(cluster.core(3).promised(), cluster.core(2).ballot());
  Message accept;
  accept.type = MessageType::kAccept;
  accept.from = NodeId(1);
  accept.to = NodeId(3);
  accept.ballot = old_ballot;
  accept.entries.push_back(Entry{Term(1), Index(1), EntryType::kNormal, "stale", {}});
  ASSERT_TRUE(cluster.core(3).Step(accept).ok());
  std::vector<Message> replies = Drain(cluster.core(3));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, MessageType::kNack);
  EXPECT_EQ(cluster.core(3).slot(Index(1)), nullptr);
}

// PMS 3: a node that missed chosen commands learns them from the leader.
TEST(MultiPaxosTest, LaggingNodeCatchesUpWithChosenValues) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  for (const char* command : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(cluster.core(1).Propose(command).ok());
  }
  cluster.Tick(2);
  EXPECT_EQ(cluster.core(3).commit(), Index(0));
  cluster.Heal();
  cluster.Tick(3);
  EXPECT_EQ(cluster.AppliedCommands(3), (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(MultiPaxosTest, LaggingNodeBehindTheCompactionPointGetsTheSnapshot) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  for (const char* command : {"a", "b", "c"}) ASSERT_TRUE(cluster.core(1).Propose(command).ok());
  cluster.Tick(2);
  MultiPaxos& leader = cluster.core(1);
  ASSERT_EQ(leader.applied(), Index(3));
  ASSERT_TRUE(leader.SetSnapshot(Index(3), "image@3").ok());
  ASSERT_TRUE(leader.CompactLog(Index(3)).ok());
  EXPECT_EQ(leader.slot(Index(2)), nullptr);
  cluster.Heal();
  cluster.Tick(3);
  EXPECT_EQ(cluster.durable(3).snapshot.data, "image@3");
  EXPECT_EQ(cluster.core(3).commit(), Index(3));
  ASSERT_TRUE(leader.Propose("d").ok());
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(3), std::vector<std::string>{"d"});
}

// An acceptor that knows a slot chosen acknowledges a later ballot's accept for it even after
// compacting it away: its promise is at least the choosing ballot, so by P2c the accept carries
// the chosen value, and without the acknowledgement a new leader could not count the slot.
TEST(MultiPaxosTest, AcceptorAcknowledgesAChosenSlotItCompacted) {
  PersistentState state = NewMember(3);
  state.snapshot.meta.index = Index(3);
  state.hard_state = HardState{BallotNumber{Ballot(1), NodeId(1)}, Index(3)};
  auto acceptor = MustCreate(TestConfig(NodeId(2)), state);
  Message accept;
  accept.type = MessageType::kAccept;
  accept.from = NodeId(3);
  accept.to = NodeId(2);
  accept.ballot = BallotNumber{Ballot(2), NodeId(3)};
  accept.entries.push_back(Entry{Term(1), Index(2), EntryType::kNormal, "chosen earlier", {}});
  accept.entries.push_back(Entry{Term(2), Index(4), EntryType::kNormal, "new", {}});
  ASSERT_TRUE(acceptor->Step(accept).ok());
  std::vector<Message> replies = Drain(*acceptor);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, MessageType::kAccepted);
  EXPECT_EQ(replies[0].acked, (std::vector<Index>{Index(2), Index(4)}));
  EXPECT_EQ(acceptor->slot(Index(2)), nullptr);
  EXPECT_EQ(acceptor->slot(Index(4))->accepted, accept.ballot);
}

TEST(MultiPaxosTest, SnapshotsAreLimitedToTheAppliedPrefix) {
  Cluster cluster(1);
  cluster.ElectLeader(1);
  EXPECT_FALSE(cluster.core(1).SetSnapshot(Index(5), "too far").ok());
  EXPECT_FALSE(cluster.core(1).CompactLog(Index(1)).ok());
}

// Raft thesis 6.4 for Paxos: a read is answered only after a majority confirms the ballot.
TEST(MultiPaxosTest, ReadIndexWaitsForAMajority) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Settle();
  cluster.Isolate(1);
  ASSERT_TRUE(cluster.core(1).ReadIndex("r1").ok());
  cluster.Settle();
  EXPECT_TRUE(cluster.reads(1).empty());
  cluster.Heal();
  cluster.Tick(1);
  ASSERT_EQ(cluster.reads(1).size(), 1u);
  EXPECT_EQ(cluster.reads(1)[0].context, "r1");
  EXPECT_EQ(cluster.reads(1)[0].index, Index(1));
}

// Raft thesis 6.4 for Paxos: a follower asks the leader, which answers with its read index only
// after its own majority round; the follower releases the ReadState (served once applied).
TEST(MultiPaxosTest, FollowerReadIndexAsksTheLeader) {
  Cluster cluster(3);
  EXPECT_EQ(cluster.core(2).ReadIndex("no leader yet").code(), absl::StatusCode::kUnavailable);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  ASSERT_TRUE(cluster.core(1).Propose("b").ok());
  cluster.Settle();
  // The leader's round needs one follower's answer beside its own: node 2's heartbeat reply.
  cluster.Isolate(3);
  ASSERT_TRUE(cluster.core(2).ReadIndex("f1").ok());
  cluster.Settle();
  ASSERT_EQ(cluster.reads(2).size(), 1u);
  EXPECT_EQ(cluster.reads(2)[0].context, "f1");
  EXPECT_EQ(cluster.reads(2)[0].index, Index(2));
  EXPECT_TRUE(cluster.reads(1).empty());
  // A leader cut off from every follower never confirms the round: no ReadState.
  cluster.Heal();
  cluster.Isolate(1);
  ASSERT_TRUE(cluster.core(3).ReadIndex("f2").ok());
  cluster.Settle();
  EXPECT_TRUE(cluster.reads(3).empty());
}

TEST(MultiPaxosTest, FollowerStartsPhaseOneWhenTheLeaderFallsSilent) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Crash(1);
  cluster.Tick(25);
  const bool two_leads = cluster.core(2).role() == Role::kLeader;
  const bool three_leads = cluster.core(3).role() == Role::kLeader;
  EXPECT_NE(two_leads, three_leads);
}

TEST(MultiPaxosTest, RejectsInvalidConfigurationAndState) {
  Config config = TestConfig(NodeId(1));
  config.heartbeat_interval_ticks = config.election_timeout_ticks;
  EXPECT_FALSE(MultiPaxos::Create(config, NewMember(3)).ok());
  PersistentState ill_formed = NewMember(3);
  ill_formed.snapshot.meta.membership.learners.push_back(NodeId(2));
  EXPECT_FALSE(MultiPaxos::Create(TestConfig(NodeId(1)), ill_formed).ok());
  Config no_alpha = TestConfig(NodeId(1));
  no_alpha.alpha_slots = 0;
  EXPECT_FALSE(MultiPaxos::Create(no_alpha, NewMember(3)).ok());
  PersistentState chosen_but_missing = NewMember(3);
  chosen_but_missing.hard_state.commit = Index(2);
  EXPECT_FALSE(MultiPaxos::Create(TestConfig(NodeId(1)), chosen_but_missing).ok());
  PersistentState above_promise = NewMember(3);
  above_promise.slots.push_back(Accepted(1, 1, 1, "a"));
  EXPECT_FALSE(MultiPaxos::Create(TestConfig(NodeId(1)), above_promise).ok());
}

// ---- Membership changes: the α rule (PMS 3; Lamport, Malkhi, Zhou 2010) ----

// A configuration chosen in slot i governs the slots from i + α on; the leader pads the slots
// below with no-ops, so the change is in effect at once, and the new member catches up.
TEST(MultiPaxosTest, AddedVoterGovernsFromAlphaSlotsOnAndCatchesUp) {
  Cluster cluster(3);
  cluster.StartJoiner(4);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Settle();
  MultiPaxos& leader = cluster.core(1);
  auto position = leader.ProposeConfChange({raft::ConfChangeType::kAddVoter, NodeId(4), "n4"});
  ASSERT_TRUE(position.ok()) << position.status();
  cluster.Tick(3);
  const Index effective = position->index.plus(TestConfig(NodeId(1)).alpha_slots);
  EXPECT_FALSE(leader.MembershipFor(effective.prev()).IsVoter(NodeId(4)));
  EXPECT_TRUE(leader.MembershipFor(effective).IsVoter(NodeId(4)));
  // The padding brought the change into effect without client commands.
  EXPECT_GE(leader.commit(), effective.prev());
  for (uint64_t id = 1; id <= 4; ++id) {
    EXPECT_EQ(cluster.core(id).membership().voters.size(), 4u) << "node " << id;
    EXPECT_EQ(cluster.AppliedCommands(id), std::vector<std::string>{"a"}) << "node " << id;
  }
  // Four voters: the leader and one other no longer choose anything.
  cluster.Isolate(2);
  cluster.Isolate(3);
  ASSERT_TRUE(leader.Propose("b").ok());
  cluster.Tick(3);
  EXPECT_EQ(cluster.AppliedCommands(4), std::vector<std::string>{"a"});
  cluster.Heal();
  cluster.Tick(3);
  EXPECT_EQ(cluster.AppliedCommands(4), (std::vector<std::string>{"a", "b"}));
}

// A change that brings a configuration into the α window whose majority has not promised the
// leader's ballot makes the leader run phase 1 again, among the new voters too.
TEST(MultiPaxosTest, LeaderRunsPhaseOneAgainForANewConfiguration) {
  Cluster cluster(3);
  cluster.StartJoiner(4);
  cluster.Isolate(3);
  cluster.ElectLeader(1);  // promised by nodes 1 and 2 only
  cluster.Heal();
  MultiPaxos& leader = cluster.core(1);
  const BallotNumber first = leader.ballot();
  ASSERT_TRUE(leader.ProposeConfChange({raft::ConfChangeType::kAddVoter, NodeId(4), ""}).ok());
  cluster.Tick(3);
  // Two of the four voters promised the first ballot, so the leader needed a new one.
  EXPECT_EQ(leader.role(), Role::kLeader);
  EXPECT_GT(leader.ballot(), first);
  EXPECT_EQ(cluster.core(4).promised(), leader.ballot());
  ASSERT_TRUE(leader.Propose("after").ok());
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(4), std::vector<std::string>{"after"});
}

// Raft thesis 4.2.1 for Paxos: a learner gets every value but does not count; once caught up
// it is promoted and counts.
TEST(MultiPaxosTest, LearnerCatchesUpAndIsPromoted) {
  Cluster cluster(3);
  cluster.StartJoiner(4);
  cluster.ElectLeader(1);
  MultiPaxos& leader = cluster.core(1);
  ASSERT_TRUE(leader.ProposeConfChange({raft::ConfChangeType::kAddLearner, NodeId(4), ""}).ok());
  cluster.Tick(3);
  ASSERT_TRUE(leader.membership().IsLearner(NodeId(4)));
  // Learners do not count: with nodes 2 and 3 cut off, nothing is chosen.
  cluster.Isolate(2);
  cluster.Isolate(3);
  ASSERT_TRUE(leader.Propose("a").ok());
  cluster.Tick(2);
  EXPECT_TRUE(cluster.AppliedCommands(4).empty());
  EXPECT_NE(cluster.core(4).role(), Role::kLeader);
  cluster.Heal();
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(4), std::vector<std::string>{"a"});
  ASSERT_TRUE(
      leader.ProposeConfChange({raft::ConfChangeType::kPromoteLearner, NodeId(4), ""}).ok());
  cluster.Tick(3);
  EXPECT_TRUE(leader.membership().IsVoter(NodeId(4)));
  EXPECT_TRUE(cluster.core(4).membership().IsVoter(NodeId(4)));
}

// One change at a time, each computed from every change chosen before its slot.
TEST(MultiPaxosTest, OneConfigurationChangeAtATime) {
  Cluster cluster(3);
  cluster.StartJoiner(4);
  cluster.Isolate(4);
  cluster.ElectLeader(1);
  MultiPaxos& leader = cluster.core(1);
  ASSERT_TRUE(leader.ProposeConfChange({raft::ConfChangeType::kAddLearner, NodeId(4), ""}).ok());
  EXPECT_EQ(
      leader.ProposeConfChange({raft::ConfChangeType::kAddLearner, NodeId(5), ""}).status().code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      leader.ProposeConfChange({raft::ConfChangeType::kRemoveNode, NodeId(9), ""}).status().code(),
      absl::StatusCode::kFailedPrecondition);
  cluster.Tick(2);
  EXPECT_EQ(
      leader.ProposeConfChange({raft::ConfChangeType::kRemoveNode, NodeId(9), ""}).status().code(),
      absl::StatusCode::kNotFound);
  // Node 4 never answered, so it has not caught up and is not promoted.
  EXPECT_EQ(leader.ProposeConfChange({raft::ConfChangeType::kPromoteLearner, NodeId(4), ""})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(cluster.core(2).ProposeConfChange({raft::ConfChangeType::kAddVoter, NodeId(5), ""})
                   .ok());
}

// Raft thesis 4.2.2 for Paxos: a leader removes itself, finishes the slots its configuration
// governs, steps down and never runs phase 1 again; the others elect a leader among themselves.
TEST(MultiPaxosTest, RemovedLeaderStepsDownAndStaysQuiet) {
  Cluster cluster(4);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).ProposeConfChange({raft::ConfChangeType::kRemoveNode, NodeId(1), ""})
                  .ok());
  cluster.Tick(2);
  EXPECT_NE(cluster.core(1).role(), Role::kLeader);
  EXPECT_FALSE(cluster.core(1).membership().IsMember(NodeId(1)));
  cluster.Tick(40);
  EXPECT_NE(cluster.core(1).role(), Role::kLeader);
  uint64_t leader = 0;
  for (uint64_t id = 2; id <= 4; ++id) {
    if (cluster.core(id).role() == Role::kLeader) leader = id;
  }
  ASSERT_NE(leader, 0u);
  // Three voters now: two of them choose.
  cluster.Isolate(leader == 2 ? 3 : 2);
  ASSERT_TRUE(cluster.core(leader).Propose("without n1").ok());
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(leader), std::vector<std::string>{"without n1"});
}

// A snapshot records the membership that governs every slot above it, so it waits while a
// chosen change is not yet in effect; a node restored from it knows the configuration.
TEST(MultiPaxosTest, SnapshotCarriesTheMembership) {
  Cluster cluster(3);
  cluster.StartJoiner(4);
  cluster.ElectLeader(1);
  MultiPaxos& leader = cluster.core(1);
  auto position = leader.ProposeConfChange({raft::ConfChangeType::kAddLearner, NodeId(4), ""});
  ASSERT_TRUE(position.ok());
  cluster.Settle();
  ASSERT_GE(leader.applied(), position->index);
  EXPECT_EQ(leader.SetSnapshot(position->index, "image").code(),
            absl::StatusCode::kFailedPrecondition);
  cluster.Tick(2);
  const Index applied = leader.applied();
  ASSERT_TRUE(leader.SetSnapshot(applied, "image").ok());
  EXPECT_TRUE(leader.snapshot().meta.membership.IsLearner(NodeId(4)));
  PersistentState restored;
  restored.snapshot = leader.snapshot();
  restored.hard_state.commit = applied;
  auto node = MustCreate(TestConfig(NodeId(2)), restored);
  EXPECT_TRUE(node->MembershipFor(applied.next()).IsLearner(NodeId(4)));
}

// A removed node that lags does not know it was removed and runs phase 1; the members ignore
// its prepares, so it cannot preempt their leader.
TEST(MultiPaxosTest, PrepareFromARemovedNodeIsIgnored) {
  Cluster cluster(4);
  cluster.ElectLeader(1);
  cluster.Isolate(4);
  ASSERT_TRUE(cluster.core(1).ProposeConfChange({raft::ConfChangeType::kRemoveNode, NodeId(4), ""})
                  .ok());
  cluster.Tick(2);
  const BallotNumber ballot = cluster.core(1).ballot();
  cluster.Heal();
  cluster.core(4).Campaign();
  cluster.Settle();
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
  EXPECT_EQ(cluster.core(1).ballot(), ballot);
  EXPECT_EQ(cluster.core(2).promised(), ballot);
  EXPECT_NE(cluster.core(4).role(), Role::kLeader);
}

// ---- Check-quorum (Raft thesis 6.2, for Paxos) ----

TEST(MultiPaxosTest, LeaderThatHearsNoMajorityStepsDown) {
  for (const auto check_quorum : {Cluster::CheckQuorum::kOn, Cluster::CheckQuorum::kOff}) {
    Cluster cluster(3, check_quorum);
    cluster.ElectLeader(1);
    cluster.Isolate(1);
    // Two election timeouts of ticks (only the leader ticks, so the others do not campaign):
    // the first check still counts the answers to the announcement the leader sent right after
    // phase 1, before it was cut off; the second finds no one.
    for (int tick = 0; tick < 20; ++tick) {
      cluster.core(1).Tick();
      cluster.Settle();
    }
    if (check_quorum == Cluster::CheckQuorum::kOn) {
      EXPECT_EQ(cluster.core(1).role(), Role::kFollower);
      EXPECT_EQ(cluster.core(1).Propose("in a minority").status().code(),
                absl::StatusCode::kFailedPrecondition);
    } else {
      EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
    }
  }
}

TEST(MultiPaxosTest, LeaderThatHearsAMajorityStaysLeader) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  cluster.Tick(50);
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
  EXPECT_TRUE(cluster.core(1).Propose("still leading").ok());
}

// Followers that hear their leader ignore a higher ballot of another node, and the leader that
// the disruptive node's acceptor then refuses runs phase 1 again with a higher ballot.
TEST(MultiPaxosTest, FollowersOfALiveLeaderIgnoreAHigherBallot) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Tick(1);
  const BallotNumber ballot = cluster.core(1).ballot();
  cluster.core(3).Campaign();
  cluster.Settle();
  EXPECT_EQ(cluster.core(2).promised(), ballot);
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
  EXPECT_NE(cluster.core(3).role(), Role::kLeader);
  cluster.Tick(2);
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
  EXPECT_GT(cluster.core(1).ballot(), ballot);
  EXPECT_EQ(cluster.core(3).leader(), NodeId(1));
  ASSERT_TRUE(cluster.core(1).Propose("b").ok());
  cluster.Tick(2);
  EXPECT_EQ(cluster.AppliedCommands(3), (std::vector<std::string>{"a", "b"}));
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (Raft thesis 3.10, for Paxos): "the prior leader stops accepting new
// client requests", brings the target up to date, and "sends it a TimeoutNow request"; the
// target starts phase 1 at once. "If the transfer does not complete after about one election
// timeout, the prior leader aborts the transfer and resumes accepting client requests."

TEST(MultiPaxosTest, TransferCatchesTheTargetUpAndHandsLeadershipOver) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  ASSERT_TRUE(cluster.core(1).Propose("b").ok());
  cluster.Tick(1);
  const BallotNumber before = cluster.core(1).ballot();
  ASSERT_TRUE(cluster.core(1).TransferLeadership(NodeId(3)).ok());
  EXPECT_EQ(cluster.core(1).transfer_target(), NodeId(3));
  // No new proposals while the transfer is under way.
  EXPECT_EQ(cluster.core(1).Propose("refused").status().code(),
            absl::StatusCode::kFailedPrecondition);
  cluster.Heal();
  cluster.Tick(3);
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(cluster.core(id).leader(), NodeId(3)) << "node " << id;
  }
  EXPECT_EQ(cluster.core(3).role(), Role::kLeader);
  EXPECT_GT(cluster.core(3).ballot(), before);
  EXPECT_EQ(cluster.core(1).transfer_target(), kNoNode);
  ASSERT_TRUE(cluster.core(3).Propose("c").ok());
  cluster.Tick(2);
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(cluster.AppliedCommands(id), (std::vector<std::string>{"a", "b", "c"}))
        << "node " << id;
  }
}

TEST(MultiPaxosTest, TransferToAnUnreachableTargetIsAbandonedAfterAnElectionTimeout) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Isolate(3);
  ASSERT_TRUE(cluster.core(1).Propose("a").ok());
  cluster.Tick(1);
  ASSERT_TRUE(cluster.core(1).TransferLeadership(NodeId(3)).ok());
  cluster.Tick(9);
  EXPECT_EQ(cluster.core(1).transfer_target(), NodeId(3));
  cluster.Tick(1);
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
  EXPECT_EQ(cluster.core(1).transfer_target(), kNoNode);
  EXPECT_TRUE(cluster.core(1).Propose("resumed").ok());
}

TEST(MultiPaxosTest, TransferIsRefusedOffTheLeaderAndToNonVoters) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  EXPECT_EQ(cluster.core(2).TransferLeadership(NodeId(3)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cluster.core(1).TransferLeadership(NodeId(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cluster.core(1).TransferLeadership(NodeId(9)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cluster.core(1).transfer_target(), kNoNode);
}

// Only the leader a node follows, in the ballot it promised, can make it start phase 1: a stale
// TimeoutNow must not depose a working leader.
TEST(MultiPaxosTest, TimeoutNowFromANodeThatDoesNotLeadIsIgnored) {
  Cluster cluster(3);
  cluster.ElectLeader(1);
  cluster.Tick(1);
  Message timeout_now;
  timeout_now.type = MessageType::kTimeoutNow;
  timeout_now.from = NodeId(2);
  timeout_now.to = NodeId(3);
  timeout_now.ballot = BallotNumber{cluster.core(1).ballot().round, NodeId(2)};
  ASSERT_TRUE(cluster.core(3).Step(timeout_now).ok());
  cluster.Settle();
  EXPECT_EQ(cluster.core(3).role(), Role::kFollower);
  EXPECT_EQ(cluster.core(1).role(), Role::kLeader);
}

}  // namespace
}  // namespace synod::multipaxos
