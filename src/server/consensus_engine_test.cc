// The engine adapters (consensus_engine.h), driven as the member's loop drives them, with the
// network in memory: a follower's linearizable read goes to the leader through the core and
// comes back as a ReadState; a write commits on the followers without waiting for a tick and
// without an fsync of its own; each engine refuses the other's messages; the Ready carries what
// each engine must persist; a member joins as a learner, catches up and is promoted, and
// leadership moves, alike on both engines.

#include "server/consensus_engine.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>
#include <vector>

namespace synod::server {
namespace {

const raft::Membership kVoters{{NodeId(1), NodeId(2), NodeId(3)}, {}};

class Group {
 public:
  explicit Group(EngineKind kind) {
    for (NodeId id : kVoters.voters) {
      EngineStart start;
      start.id = id;
      start.seed = id.value();
      start.recovered.snapshot = raft::SnapshotMeta{Index(0), Term(0), kVoters};
      auto engine = ConsensusEngine::Create(kind, std::move(start));
      EXPECT_TRUE(engine.ok()) << engine.status();
      nodes_[id] = std::move(*engine);
    }
  }

  ConsensusEngine& at(uint64_t id) { return *nodes_.at(NodeId(id)); }

  // A member about to join: it starts from an empty configuration, as Node::Recover makes it.
  void AddJoining(EngineKind kind, uint64_t id) {
    EngineStart start;
    start.id = NodeId(id);
    start.seed = id;
    start.recovered.snapshot = raft::SnapshotMeta{Index(0), Term(0), {}};
    auto engine = ConsensusEngine::Create(kind, std::move(start));
    ASSERT_TRUE(engine.ok()) << engine.status();
    nodes_[NodeId(id)] = std::move(*engine);
  }

  // One tick on every node (heartbeats, catch-up), then Settle.
  void TickAndSettle(int ticks) {
    for (int tick = 0; tick < ticks; ++tick) {
      for (auto& [id, node] : nodes_) node->Tick();
      Settle();
    }
  }

  // Carries out every Ready and delivers every message until nothing moves; no ticks.
  void Settle() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto& [id, node] : nodes_) {
        while (node->HasReady()) {
          moved = true;
          EngineReady ready = node->TakeReady();
          if (ready.write.hard_state || !ready.write.slots.empty()) persisted_[id] = true;
          if (!ready.committed_entries.empty() && !ready.MustPersist()) {
            committed_without_write_[id] = true;
          }
          for (PeerMessage& message : ready.early_messages) in_flight_.push_back(message);
          for (PeerMessage& message : ready.messages) in_flight_.push_back(message);
          for (raft::Entry& entry : ready.committed_entries) committed_[id].push_back(entry);
          for (raft::ReadState& read : ready.read_states) read_states_[id].push_back(read);
          node->Advance();
        }
      }
      while (!in_flight_.empty()) {
        moved = true;
        PeerMessage message = std::move(in_flight_.front());
        in_flight_.pop_front();
        const NodeId to = RecipientOf(message);
        if (cut_off_.contains(to) || cut_off_.contains(SenderOf(message))) continue;
        delivered_[to].push_back(message);
        EXPECT_TRUE(nodes_.at(to)->Step(std::move(message)).ok());
      }
      if (!moved) return;
    }
    FAIL() << "the group never settled";
  }

  bool Committed(uint64_t id, const std::string& data) {
    for (const raft::Entry& entry : committed_[NodeId(id)]) {
      if (entry.data == data) return true;
    }
    return false;
  }

  std::map<NodeId, std::unique_ptr<ConsensusEngine>> nodes_;
  std::deque<PeerMessage> in_flight_;
  // Messages to or from these nodes are lost.
  std::set<NodeId> cut_off_;
  std::map<NodeId, std::vector<PeerMessage>> delivered_;
  std::map<NodeId, std::vector<raft::Entry>> committed_;
  std::map<NodeId, std::vector<raft::ReadState>> read_states_;
  std::map<NodeId, bool> persisted_;
  // Whether a Ready handed out committed entries with nothing to make durable (no fsync).
  std::map<NodeId, bool> committed_without_write_;
};

class EngineTest : public ::testing::TestWithParam<EngineKind> {};

TEST_P(EngineTest, WriteCommitsEverywhereWithoutATick) {
  Group group(GetParam());
  group.at(1).Campaign();
  group.Settle();
  ASSERT_TRUE(group.at(1).is_leader());
  ASSERT_TRUE(group.at(1).Propose("put a=1").ok());
  group.Settle();
  EXPECT_EQ(group.at(2).leader(), NodeId(1));
  // A follower answers a write it forwarded once it applies it: it must learn the choice now,
  // not at the next heartbeat.
  for (uint64_t id : {1, 2, 3}) EXPECT_TRUE(group.Committed(id, "put a=1")) << "node " << id;
  for (uint64_t id : {1, 2, 3}) EXPECT_TRUE(group.persisted_[NodeId(id)]) << "node " << id;
  // The commit index is not acceptor state (nor Raft's durable state): learning that the write
  // is chosen costs no fsync of its own on any node.
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_TRUE(group.committed_without_write_[NodeId(id)]) << "node " << id;
  }
}

TEST_P(EngineTest, FollowerReadIndexComesBackAsAReadState) {
  Group group(GetParam());
  group.at(1).Campaign();
  group.Settle();
  ASSERT_TRUE(group.at(1).Propose("put a=1").ok());
  group.Settle();
  ASSERT_TRUE(group.at(2).ReadIndex("42").ok());
  group.Settle();
  const std::vector<raft::ReadState>& reads = group.read_states_[NodeId(2)];
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].context, "42");
  // At least the write that was chosen before the read began.
  EXPECT_GE(reads[0].index, group.at(1).commit());
}

TEST_P(EngineTest, RefusesTheOtherEnginesMessages) {
  Group group(GetParam());
  PeerMessage other = GetParam() == EngineKind::kRaft
                          ? PeerMessage(multipaxos::Message{})
                          : PeerMessage(raft::Message{});
  EXPECT_TRUE(absl::IsInvalidArgument(group.at(1).Step(std::move(other))));
}

// No leader to ask: the engine refuses the read at once, and the node holds it unissued until a
// leader is known (Node::LeaderWait).
TEST(EngineKindTest, MultiPaxosFollowerReadWithoutALeaderIsUnavailable) {
  Group group(EngineKind::kMultiPaxos);
  EXPECT_TRUE(absl::IsUnavailable(group.at(2).ReadIndex("1")));
}

TEST_P(EngineTest, LearnerJoinsCatchesUpAndIsPromoted) {
  Group group(GetParam());
  group.at(1).Campaign();
  group.Settle();
  ASSERT_TRUE(group.at(1).Propose("put a=1").ok());
  group.Settle();
  group.AddJoining(GetParam(), 4);
  // Not a member yet: nothing to promote, and it has reported nothing.
  EXPECT_FALSE(group.at(1).LearnerCaughtUp(NodeId(4)));

  raft::ConfChange add{raft::ConfChangeType::kAddLearner, NodeId(4), "records with 4"};
  Result<raft::LogPosition> added = group.at(1).ProposeConfChange(add);
  ASSERT_TRUE(added.ok()) << added.status();
  // One change at a time: a second one waits until the first is in effect.
  raft::ConfChange another{raft::ConfChangeType::kAddLearner, NodeId(5), "records with 5"};
  EXPECT_TRUE(absl::IsFailedPrecondition(group.at(1).ProposeConfChange(another).status()));
  group.TickAndSettle(3);
  for (uint64_t id : {1, 2, 3, 4}) {
    ConsensusEngine& node = group.at(id);
    EXPECT_TRUE(node.membership().IsLearner(NodeId(4))) << "node " << id;
    EXPECT_EQ(node.membership_index(), added->index) << "node " << id;
    ASSERT_NE(node.membership_entry(), nullptr) << "node " << id;
    EXPECT_EQ(node.membership_entry()->data, "records with 4") << "node " << id;
    EXPECT_TRUE(group.Committed(id, "put a=1")) << "node " << id;
  }
  EXPECT_TRUE(group.at(1).LearnerCaughtUp(NodeId(4)));

  raft::ConfChange promote{raft::ConfChangeType::kPromoteLearner, NodeId(4), "records, 4 voter"};
  Result<raft::LogPosition> promoted = group.at(1).ProposeConfChange(promote);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  group.TickAndSettle(3);
  for (uint64_t id : {1, 2, 3, 4}) {
    EXPECT_TRUE(group.at(id).membership().IsVoter(NodeId(4))) << "node " << id;
  }
  ASSERT_TRUE(group.at(1).Propose("put b=2").ok());
  group.Settle();
  EXPECT_TRUE(group.Committed(4, "put b=2"));
}

TEST_P(EngineTest, LeadershipMovesToTheTarget) {
  Group group(GetParam());
  group.at(1).Campaign();
  group.Settle();
  ASSERT_TRUE(group.at(1).Propose("put a=1").ok());
  group.Settle();
  EXPECT_TRUE(absl::IsFailedPrecondition(group.at(2).TransferLeadership(NodeId(3))));
  ASSERT_TRUE(group.at(1).TransferLeadership(NodeId(3)).ok());
  group.TickAndSettle(2);
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(group.at(id).leader(), NodeId(3)) << "node " << id;
  EXPECT_EQ(group.at(1).transfer_target(), kNoNode);
  ASSERT_TRUE(group.at(3).Propose("put b=2").ok());
  group.Settle();
  for (uint64_t id : {1, 2, 3}) EXPECT_TRUE(group.Committed(id, "put b=2")) << "node " << id;
}

// The α rule's padding puts a follower that missed it α slots behind at once; the tail the
// engine asks the member to keep behind a snapshot must let it catch up from the log, however
// short a tail the member was configured with (the leader compacts as Node::MaybeSnapshot does).
TEST(EngineKindTest, MultiPaxosFollowerThatMissedAChangesPaddingCatchesUpFromTheLog) {
  constexpr uint64_t kConfiguredTail = 10;
  Group group(EngineKind::kMultiPaxos);
  group.at(1).Campaign();
  group.Settle();
  ASSERT_TRUE(group.at(1).Propose("put a=1").ok());
  group.Settle();
  ASSERT_TRUE(group.Committed(3, "put a=1"));

  group.cut_off_.insert(NodeId(3));
  group.AddJoining(EngineKind::kMultiPaxos, 4);
  raft::ConfChange add{raft::ConfChangeType::kAddLearner, NodeId(4), "records with 4"};
  ASSERT_TRUE(group.at(1).ProposeConfChange(add).ok());
  group.TickAndSettle(3);
  ASSERT_TRUE(group.at(1).membership().IsLearner(NodeId(4)));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(group.at(1).Propose("put b=" + std::to_string(i)).ok());
  group.Settle();
  ConsensusEngine& leader = group.at(1);
  const Index applied = leader.applied();
  ASSERT_GT(applied.value(), 4096u) << "the padding was not chosen";
  ASSERT_TRUE(leader.SetSnapshot(applied).ok());
  leader.CompactLog(applied.minus(std::max(kConfiguredTail, leader.log_tail_min())));

  group.cut_off_.clear();
  group.TickAndSettle(5);
  EXPECT_TRUE(group.Committed(3, "put b=19"));
  for (const PeerMessage& message : group.delivered_[NodeId(3)]) {
    EXPECT_NE(std::get<multipaxos::Message>(message).type,
              multipaxos::MessageType::kInstallSnapshot);
  }
}

INSTANTIATE_TEST_SUITE_P(BothEngines, EngineTest,
                         ::testing::Values(EngineKind::kRaft, EngineKind::kMultiPaxos),
                         [](const auto& info) { return std::string(ToString(info.param)); });

}  // namespace
}  // namespace synod::server
