// A deterministic in-memory harness for the Raft core's unit tests, after etcd raft's `network`
// in raft_test.go: a few cores wired by a FIFO message queue, links that can be cut, a filter
// that can drop, change or count messages, and crash-restart from exactly what each node
// persisted. Every Ready is handled as types.h asks: persist snapshot, entries and hard state,
// send, apply, Advance. Nothing here ticks by itself; time only moves when a test says so.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/ids.h"
#include "consensus/raft/raft.h"
#include "consensus/raft/types.h"

namespace synod {

// Readable test failure messages for strong ids (GoogleTest finds PrintTo by ADL).
template <typename Tag>
void PrintTo(const StrongId<Tag>& id, std::ostream* os) {
  *os << id.value();
}

}  // namespace synod

namespace synod::raft {

inline void PrintTo(Role role, std::ostream* os) {
  *os << ToString(role);
}
inline void PrintTo(MessageType type, std::ostream* os) {
  *os << ToString(type);
}
inline void PrintTo(Progress::State state, std::ostream* os) {
  *os << ToString(state);
}

inline constexpr NodeId kNode1{1};
inline constexpr NodeId kNode2{2};
inline constexpr NodeId kNode3{3};
inline constexpr NodeId kNode4{4};
inline constexpr NodeId kNode5{5};

// Raft as the paper describes it (sections 5 and 7): no pre-vote, no check-quorum. The thesis
// extensions are tested on their own, with Config's defaults.
Config PaperConfig();

// Entries at first_index, first_index + 1, ... with the given terms. Each one's data is
// "term/index", so that what a state machine applied shows which entry it was.
std::vector<Entry> EntriesWithTerms(Index first_index, const std::vector<uint64_t>& terms);
// The term of every entry the log holds, from first_index() to last_index().
std::vector<uint64_t> LogTerms(const RaftLog& log);

// What a member of a new cluster with `voters` persisted, given its log (one term per entry,
// from index 1), its current term and its commit index.
PersistentState StateWithLog(std::vector<NodeId> voters, const std::vector<uint64_t>& log_terms,
                             Term term, Index commit = Index(0));

// Builds a core and fails the test if Create refuses.
std::unique_ptr<Raft> NewRaft(NodeId id, const PersistentState& state, Config config);

// For tests that drive one core by hand: takes its Ready if it has one, calls Advance without
// persisting anything (no test of this kind restarts the node), and returns the messages it
// asked to send, early ones first.
std::vector<Message> TakeMessages(Raft& raft);
// Makes a hand-driven core (pre-vote off) leader: it campaigns, and each of `voters` grants its
// vote; its Ready batches are taken on the way.
void ElectByHand(Raft& raft, const std::vector<NodeId>& voters);
std::vector<Message> OfType(const std::vector<Message>& messages, MessageType type);

class TestCluster {
 public:
  // Nodes 1..voter_count, the voters of a new cluster.
  TestCluster(size_t voter_count, Config config);
  // Nodes restarted from the given states (to set up the logs of a figure of the paper).
  TestCluster(std::map<NodeId, PersistentState> states, Config config);

  Raft& node(NodeId id);
  // The live node that leads in the highest term, or kNoNode. (A deposed leader partitioned
  // away may still lead in an older term.)
  NodeId leader() const;

  // Handles every Ready and delivers every queued message, in the order sent, until nothing is
  // left to do. Fails the test if that never happens.
  void Stabilize();
  // `ticks` times: one tick of `id` (or of every live node), then Stabilize.
  void Tick(NodeId id, uint32_t ticks = 1);
  void TickAll(uint32_t ticks = 1);
  // Campaign() on `id`, then Stabilize.
  void Campaign(NodeId id);

  // Links: a cut link drops every message in both directions when it is delivered.
  void Cut(NodeId a, NodeId b);
  void Isolate(NodeId id);
  // Restores every link and removes the filter.
  void Heal();
  // Called for every message about to be delivered over a working link; it may change or
  // record the message, and returns false to drop it.
  void SetFilter(std::function<bool(Message&)> filter) { filter_ = std::move(filter); }

  // Crash loses everything the node did not persist through a Ready, and the messages queued
  // for it; Restart builds it again from what it persisted.
  void Crash(NodeId id);
  void Restart(NodeId id);
  // A new process that joins an existing cluster: empty log, empty membership, not yet a member.
  void AddNode(NodeId id);

  // Raft 7: the node snapshots its state machine at its applied index and compacts its log
  // (the core's and the durable one) up to there.
  void SnapshotAndCompact(NodeId id);

  // The data of every kNormal entry the node's state machine applied, in order.
  const std::vector<std::string>& applied(NodeId id) const { return nodes_.at(id).applied; }
  const std::vector<ReadState>& read_states(NodeId id) const { return nodes_.at(id).read_states; }

 private:
  struct Node {
    // Null while crashed.
    std::unique_ptr<Raft> raft;
    // Exactly what the node persisted from its Ready batches; it restarts from this. The state
    // machine (`applied`) is durable too, and disk.applied says how far it got.
    PersistentState disk;
    std::vector<std::string> applied;
    std::vector<ReadState> read_states;
  };

  void Start(NodeId id, PersistentState state);
  void HandleReady(Node& node);
  void Deliver(Message message);

  std::map<NodeId, Node> nodes_;
  std::deque<Message> network_;
  std::set<std::pair<NodeId, NodeId>> cut_links_;
  std::function<bool(Message&)> filter_;
  Config config_;
};

}  // namespace synod::raft
