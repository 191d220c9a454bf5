#include "consensus/raft/test_cluster.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace synod::raft {
namespace {

// A livelock in a test (two nodes answering each other forever) fails instead of hanging.
constexpr int kDeliveriesMax = 100000;

// The harness's state machine image: the applied commands, one a line (test commands never
// contain a newline or are empty).
std::string EncodeStateMachine(const std::vector<std::string>& applied) {
  return absl::StrJoin(applied, "\n");
}

std::vector<std::string> DecodeStateMachine(const std::string& data) {
  return absl::StrSplit(data, '\n', absl::SkipEmpty());
}

}  // namespace

Config PaperConfig() {
  Config config;
  config.pre_vote = false;
  config.check_quorum = false;
  return config;
}

std::vector<Entry> EntriesWithTerms(Index first_index, const std::vector<uint64_t>& terms) {
  std::vector<Entry> entries;
  for (uint64_t term : terms) {
    const Index index = first_index.plus(entries.size());
    entries.push_back(
        Entry{Term(term), index, EntryType::kNormal, fmt::format("{}/{}", term, index), {}});
  }
  return entries;
}

std::vector<uint64_t> LogTerms(const RaftLog& log) {
  std::vector<uint64_t> terms;
  for (Index index = log.first_index(); index <= log.last_index(); index = index.next()) {
    terms.push_back(log.At(index).term.value());
  }
  return terms;
}

PersistentState StateWithLog(std::vector<NodeId> voters, const std::vector<uint64_t>& log_terms,
                             Term term, Index commit) {
  PersistentState state;
  state.hard_state = HardState{term, kNoNode, commit};
  state.snapshot.meta.membership.voters = std::move(voters);
  state.entries = EntriesWithTerms(Index(1), log_terms);
  return state;
}

std::unique_ptr<Raft> NewRaft(NodeId id, const PersistentState& state, Config config) {
  config.id = id;
  config.seed += id.value();
  config.check_invariants = true;
  Result<std::unique_ptr<Raft>> raft = Raft::Create(config, state);
  EXPECT_TRUE(raft.ok()) << raft.status();
  return raft.ok() ? std::move(*raft) : nullptr;
}

std::vector<Message> TakeMessages(Raft& raft) {
  if (!raft.HasReady()) return {};
  Ready ready = raft.TakeReady();
  raft.Advance();
  std::vector<Message> messages = std::move(ready.early_messages);
  for (Message& message : ready.messages) messages.push_back(std::move(message));
  return messages;
}

void ElectByHand(Raft& raft, const std::vector<NodeId>& voters) {
  const Status status = raft.Campaign();
  EXPECT_TRUE(status.ok()) << status;
  TakeMessages(raft);
  for (NodeId voter : voters) {
    EXPECT_TRUE(raft.Step(Message{.type = MessageType::kRequestVoteResponse,
                                  .from = voter,
                                  .to = raft.id(),
                                  .term = raft.term()})
                    .ok());
  }
  EXPECT_EQ(raft.role(), Role::kLeader);
  TakeMessages(raft);
}

std::vector<Message> OfType(const std::vector<Message>& messages, MessageType type) {
  std::vector<Message> found;
  for (const Message& message : messages) {
    if (message.type == type) found.push_back(message);
  }
  return found;
}

TestCluster::TestCluster(size_t voter_count, Config config) : config_(config) {
  std::vector<NodeId> voters;
  for (uint64_t id = 1; id <= voter_count; ++id) voters.push_back(NodeId(id));
  PersistentState state;
  state.snapshot.meta.membership.voters = voters;
  for (NodeId id : voters) Start(id, state);
}

TestCluster::TestCluster(std::map<NodeId, PersistentState> states, Config config)
    : config_(config) {
  for (auto& [id, state] : states) Start(id, std::move(state));
}

void TestCluster::Start(NodeId id, PersistentState state) {
  Node& node = nodes_[id];
  node.disk = std::move(state);
  node.raft = NewRaft(id, node.disk, config_);
}

Raft& TestCluster::node(NodeId id) {
  Node& node = nodes_.at(id);
  SYNOD_ASSERT_MSG(node.raft != nullptr, "node {} is down", id);
  return *node.raft;
}

NodeId TestCluster::leader() const {
  NodeId leader;
  Term leader_term;
  for (const auto& [id, node] : nodes_) {
    if (node.raft && node.raft->role() == Role::kLeader && node.raft->term() >= leader_term) {
      leader = id;
      leader_term = node.raft->term();
    }
  }
  return leader;
}

void TestCluster::Stabilize() {
  for (int deliveries = 0; deliveries < kDeliveriesMax; ++deliveries) {
    for (auto& [id, node] : nodes_) {
      while (node.raft && node.raft->HasReady()) HandleReady(node);
    }
    if (network_.empty()) return;
    Message message = std::move(network_.front());
    network_.pop_front();
    Deliver(std::move(message));
  }
  ADD_FAILURE() << "the cluster did not stabilize after " << kDeliveriesMax << " messages";
}

void TestCluster::HandleReady(Node& node) {
  Ready ready = node.raft->TakeReady();

  // 1. Persist the snapshot, then the entries, then the hard state.
  if (ready.snapshot.has_value()) {
    // The core installs a snapshot only when it discards its whole log (Raft 7), so the durable
    // log goes too; entries that followed it may conflict with the snapshot.
    node.disk.snapshot = *ready.snapshot;
    node.disk.entries.clear();
  }
  if (!ready.entries.empty()) {
    // An entry at an index already stored replaces it and everything after it.
    const Index first = ready.entries.front().index;
    std::erase_if(node.disk.entries, [&](const Entry& entry) { return entry.index >= first; });
    node.disk.entries.insert(node.disk.entries.end(), ready.entries.begin(), ready.entries.end());
  }
  if (ready.hard_state.has_value()) node.disk.hard_state = *ready.hard_state;

  // 2. Send.
  for (Message& message : ready.early_messages) network_.push_back(std::move(message));
  for (Message& message : ready.messages) network_.push_back(std::move(message));

  // 3. Apply.
  if (ready.snapshot.has_value()) {
    node.applied = DecodeStateMachine(ready.snapshot->data);
    node.disk.applied = ready.snapshot->meta.index;
  }
  for (const Entry& entry : ready.committed_entries) {
    if (entry.type == EntryType::kNormal) node.applied.push_back(entry.data);
    node.disk.applied = entry.index;
  }
  node.read_states.insert(node.read_states.end(), ready.read_states.begin(),
                          ready.read_states.end());

  // 4.
  node.raft->Advance();
}

void TestCluster::Deliver(Message message) {
  auto it = nodes_.find(message.to);
  if (it == nodes_.end() || it->second.raft == nullptr) return;
  if (cut_links_.contains({message.from, message.to})) return;
  if (filter_ && !filter_(message)) return;
  const Status status = it->second.raft->Step(std::move(message));
  EXPECT_TRUE(status.ok()) << status;
}

void TestCluster::Tick(NodeId id, uint32_t ticks) {
  for (uint32_t i = 0; i < ticks; ++i) {
    node(id).Tick();
    Stabilize();
  }
}

void TestCluster::TickAll(uint32_t ticks) {
  for (uint32_t i = 0; i < ticks; ++i) {
    for (auto& [id, node] : nodes_) {
      if (node.raft) node.raft->Tick();
    }
    Stabilize();
  }
}

void TestCluster::Campaign(NodeId id) {
  const Status status = node(id).Campaign();
  EXPECT_TRUE(status.ok()) << status;
  Stabilize();
}

void TestCluster::Cut(NodeId a, NodeId b) {
  cut_links_.insert({a, b});
  cut_links_.insert({b, a});
}

void TestCluster::Isolate(NodeId id) {
  for (const auto& [other, node] : nodes_) {
    if (other != id) Cut(id, other);
  }
}

void TestCluster::Heal() {
  cut_links_.clear();
  filter_ = nullptr;
}

void TestCluster::Crash(NodeId id) {
  nodes_.at(id).raft.reset();
  std::erase_if(network_, [&](const Message& message) { return message.to == id; });
}

void TestCluster::Restart(NodeId id) {
  Node& node = nodes_.at(id);
  SYNOD_ASSERT_MSG(node.raft == nullptr, "node {} is already up", id);
  node.raft = NewRaft(id, node.disk, config_);
}

void TestCluster::AddNode(NodeId id) {
  SYNOD_ASSERT_MSG(!nodes_.contains(id), "node {} already exists", id);
  Start(id, PersistentState{});
}

void TestCluster::SnapshotAndCompact(NodeId id) {
  Node& node = nodes_.at(id);
  const Index index = node.disk.applied.value_or(node.disk.snapshot.meta.index);
  Status status = node.raft->SetSnapshot(index, EncodeStateMachine(node.applied));
  EXPECT_TRUE(status.ok()) << status;
  status = node.raft->CompactLog(index);
  EXPECT_TRUE(status.ok()) << status;
  node.disk.snapshot = node.raft->log().snapshot();
  std::erase_if(node.disk.entries, [&](const Entry& entry) { return entry.index <= index; });
}

}  // namespace synod::raft
