// Safety invariants of Raft (paper figure 3) plus validity, integrity and read freshness,
// checked incrementally after every simulator step against a global history that no single node
// could know. Each check costs O(what changed in the step), except Leader Completeness, which
// scans the committed log once per new leader.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/ids.h"
#include "consensus/raft/raft.h"

namespace synod::sim {

// What the checker remembers of an entry: enough to tell two entries apart.
struct EntryDigest {
  Term term;
  raft::EntryType type = raft::EntryType::kNormal;
  uint64_t content_hash = 0;

  bool operator==(const EntryDigest&) const = default;
};

EntryDigest DigestOf(const raft::Entry& entry);

// The simulated state machine: a hash chain over every applied entry, so equal hashes at an
// index mean equal histories up to it.
uint64_t NextStateHash(uint64_t state_hash, const raft::Entry& entry);

class Checker {
 public:
  // Proposal ids are what the simulated clients put in entries; the checker is told each one as
  // it is issued so it can recognise entries nobody proposed.
  void OnProposalIssued(uint64_t proposal_id);

  // After every step, for every node whose state may have changed: Election Safety, Leader
  // Append-Only (in memory), commit tracking, Leader Completeness for a new leader.
  void ObserveNode(const raft::Raft& node);
  // A node is gone (crashed): forget what was only in its memory.
  void ForgetVolatile(NodeId node);

  // The node made a Ready durable. `durable_last_before` is its last durable index before the
  // write. Log Matching on durable logs; Leader Append-Only on durable logs.
  void OnPersist(const raft::Raft& node, const raft::Ready& ready, Index durable_last_before);
  // The same for a write that became durable while the node was down (a crash mid-write whose
  // pages all reached the disk): `was_leader` and `term` are as they were when it was written.
  void OnPersist(NodeId node, bool was_leader, Term term, const raft::Ready& ready,
                 Index durable_last_before);

  // The node restored its state machine from a snapshot with this state hash.
  void OnRestore(NodeId node, const raft::SnapshotMeta& meta, uint64_t state_hash);
  // The node applied `entry`, reaching `state_hash`. State Machine Safety, validity, integrity.
  void OnApply(NodeId node, const raft::Entry& entry, uint64_t state_hash);

  // A client asked `node` for a linearizable read; every write committed before this moment
  // must be visible to it.
  void OnReadRequested(const std::string& context);
  // The node released a read index for a request.
  void OnReadReleased(NodeId node, const raft::ReadState& read);

  bool failed() const { return failure_.has_value(); }
  const std::optional<std::string>& failure() const { return failure_; }

  // Every proposal id applied so far, with the index it was applied at.
  const std::unordered_map<uint64_t, Index>& applied_proposals() const {
    return applied_proposals_;
  }
  Index committed_max() const { return Index(committed_.size()); }
  uint64_t leaders_elected() const { return leader_of_term_.size(); }

 private:
  struct CommittedEntry {
    EntryDigest digest;
    // The term of the first node seen to hold the entry committed: at least the term of the
    // leader that committed it.
    Term commit_term;
  };
  struct NodeView {
    // Volatile: what the node looked like at the previous observation.
    bool was_leader = false;
    Term leader_term;
    Index leader_last_index;
    EntryDigest leader_last_digest;
    Index commit;
    // Durable: chain hashes of the durable log, by index; valid from chain_base.
    Index chain_base;
    std::vector<uint64_t> chain;
    std::vector<Term> terms;
    // The state machine.
    Index applied;
  };

  void Fail(std::string message);
  void CheckLeaderCompleteness(const raft::Raft& node);
  void RecordCommitted(const raft::Raft& node, NodeView& view);
  uint64_t ChainAt(const NodeView& view, Index index) const;

  std::optional<std::string> failure_;
  std::map<NodeId, NodeView> nodes_;
  // Election Safety: the one leader of each term.
  std::map<Term, NodeId> leader_of_term_;
  // committed_[i - 1] is the entry committed at index i.
  std::vector<CommittedEntry> committed_;
  // state_hashes_[i - 1] is the state after applying index i (known once some node applied it).
  std::vector<std::optional<uint64_t>> state_hashes_;
  // Log Matching: the chain hash every durable log must have at (index, term).
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> chain_at_;
  uint64_t proposals_issued_ = 0;
  std::unordered_map<uint64_t, Index> applied_proposals_;
  // Reads in flight: the highest committed index when each was requested.
  std::unordered_map<std::string, Index> reads_;
  std::unordered_set<std::string> released_reads_;
};

// Proposal payloads are "p" followed by the decimal id.
std::string EncodeProposal(uint64_t proposal_id);
std::optional<uint64_t> DecodeProposal(const std::string& data);

}  // namespace synod::sim
