// Plain data exchanged between the Raft core and its caller: log entries, messages, the
// persistent state and the Ready batch. Nothing here does I/O; the caller decides how these are
// encoded on disk and on the wire.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/status.h"

namespace synod::raft {

// A cluster configuration (Raft thesis 4.1). Voters elect leaders and form quorums; learners
// receive the log but never vote and never count toward a quorum (thesis 4.2.1: new servers
// catch up as non-voting members before they are given a vote).
// Invariant: both lists are sorted, without duplicates, and disjoint.
struct Membership {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  bool IsMember(NodeId id) const { return IsVoter(id) || IsLearner(id); }
  // The smallest number of voters that forms a majority; 0 voters need a quorum of 1, which no
  // one can reach, so an empty configuration never elects or commits.
  size_t QuorumSize() const { return voters.size() / 2 + 1; }
  // True when the invariant above holds.
  bool IsWellFormed() const;

  bool operator==(const Membership&) const = default;
};

std::string ToString(const Membership& membership);

enum class EntryType : uint8_t {
  // A client command; the core never looks inside `data`.
  kNormal,
  // The entry a new leader appends at the start of its term (Raft 5.4.2 and 8): committing it
  // commits every earlier entry and tells the leader which entries are committed.
  kEmpty,
  // A configuration change; `membership` is the complete configuration that takes effect as
  // soon as the entry is appended to a log, committed or not (thesis 4.1).
  kConfig,
};

enum class ConfChangeType : uint8_t {
  kAddVoter,
  kAddLearner,
  kPromoteLearner,
  kRemoveNode,
  // Leaves the configuration as it is: the entry exists for its `context` only (etcd raft's
  // ConfChangeUpdateNode). The server uses it for changes to its member records that must be
  // ordered with the configuration changes (a member's URLs or published name).
  kUpdateNode,
};

std::string_view ToString(ConfChangeType type);

// One server added or removed at a time (thesis 4.1): any majority of the old configuration
// then overlaps any majority of the new one.
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node;
  // Opaque to the core: it becomes the configuration entry's `data` (etcd raft's
  // ConfChange.Context), so the caller can carry what the change means to it, such as the new
  // member's addresses.
  std::string context;
};

// The configuration `change` makes of `current` (a learner is promoted as it is: the caller
// checks that it has caught up). Fails with AlreadyExists, NotFound or FailedPrecondition when
// the change does not fit `current`, and InvalidArgument for node 0. Both cores use it.
Result<Membership> MembershipAfter(const Membership& current, const ConfChange& change);

struct Entry {
  Term term;
  Index index;
  EntryType type = EntryType::kNormal;
  std::string data;
  // Only for kConfig: the complete configuration this entry installs (not a delta, so a server
  // that joins late and never saw the initial configuration still learns the whole group).
  Membership membership;

  bool operator==(const Entry&) const = default;
};

// The durable vote and term (Raft figure 2, "persistent state on all servers") plus the commit
// index, which is not required for safety but lets a restarted node apply without waiting.
struct HardState {
  Term term;
  NodeId voted_for;
  Index commit;

  bool operator==(const HardState&) const = default;
};

// Raft 7: a snapshot replaces the log prefix up to `index`. It records the configuration in
// force at that index, because the configuration entries it replaces are gone.
struct SnapshotMeta {
  Index index;
  Term term;
  Membership membership;

  bool operator==(const SnapshotMeta&) const = default;
};

struct Snapshot {
  SnapshotMeta meta;
  // The application's state machine image at meta.index; opaque to the core.
  std::string data;

  bool operator==(const Snapshot&) const = default;
};

enum class MessageType : uint8_t {
  // Raft 5.3; an empty one is the heartbeat's consistency probe.
  kAppendEntries,
  kAppendEntriesResponse,
  // Raft 5.2.
  kRequestVote,
  kRequestVoteResponse,
  // Thesis 9.6: a trial election that changes no term, so a node that cannot win (it was
  // partitioned away, its log is behind) does not disturb the cluster.
  kRequestPreVote,
  kRequestPreVoteResponse,
  // Leader liveness and ReadIndex confirmation (thesis 6.4); carries no entries.
  kHeartbeat,
  kHeartbeatResponse,
  // Raft 7; the follower answers with kAppendEntriesResponse at the snapshot's index.
  kInstallSnapshot,
  // Thesis 3.10: the leader tells an up-to-date follower to start an election now.
  kTimeoutNow,
  // Thesis 6.4: a follower asks the leader for a read index on behalf of its client.
  kReadIndex,
  kReadIndexResponse,
};

std::string_view ToString(MessageType type);

// One message of the protocol. Like etcd's raftpb.Message it is a flat record whose fields are
// used according to `type`; unused fields stay at their defaults.
struct Message {
  MessageType type = MessageType::kAppendEntries;
  NodeId from;
  NodeId to;
  Term term;

  // kAppendEntries: the index and term of the entry preceding `entries`.
  // kRequestVote / kRequestPreVote: the candidate's last log index and term.
  Index log_index;
  Term log_term;
  std::vector<Entry> entries;
  // kAppendEntries / kHeartbeat: the leader's commit index (for a heartbeat, capped at the
  // follower's known match so the follower never commits an entry it may not have).
  Index commit;

  // kAppendEntriesResponse: the last index known to match (accepted) or the rejected
  // log_index (rejected). kReadIndexResponse: the read index.
  Index index;
  bool reject = false;
  // kAppendEntriesResponse when rejected: the follower's best guess of the last index where
  // the logs may agree and its term there, so the leader can skip a whole term of conflicting
  // entries in one round trip (Raft 5.3, "the follower can include the term of the conflicting
  // entry and the first index it stores for that term").
  Index reject_hint_index;
  Term reject_hint_term;

  // kRequestVote from a candidate started by kTimeoutNow: voters disregard their leader lease.
  bool leadership_transfer = false;

  // kHeartbeat / kHeartbeatResponse: the ReadIndex round this heartbeat confirms.
  uint64_t read_round = 0;
  // kReadIndex / kReadIndexResponse: the requester's opaque id for the read.
  std::string read_context;

  // kInstallSnapshot.
  std::optional<Snapshot> snapshot;
};

// A linearizable read is safe to serve once the state machine has applied `index`.
struct ReadState {
  Index index;
  std::string context;

  bool operator==(const ReadState&) const = default;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view ToString(Role role);

// State the caller may want to show but never needs to persist.
struct SoftState {
  Role role = Role::kFollower;
  NodeId leader;

  bool operator==(const SoftState&) const = default;
};

// What a node restarts from: everything the caller made durable through Ready batches, and
// the initial configuration for a brand-new member.
struct PersistentState {
  HardState hard_state;
  // The latest snapshot. A new cluster member starts from a snapshot at index 0 whose
  // membership is the initial cluster (a node joining an existing cluster: empty membership).
  Snapshot snapshot;
  // The durable log after snapshot.meta.index, contiguous.
  std::vector<Entry> entries;
  // How far the caller's state machine has applied, if it is durable beyond the snapshot
  // (snapshot.meta.index <= applied <= the last log index; an applied index beyond the durable
  // commit index, which lags, raises it, since only committed entries were applied); nullopt
  // means the snapshot's index.
  std::optional<Index> applied;
};

// The core's output, handed out by Raft::TakeReady. The caller must, in this order:
//   1. persist `snapshot` (it replaces the whole durable log: Raft 7, the follower "discards its
//      entire log"), then `entries` (an entry at an index already stored replaces it and
//      everything after it), then `hard_state`, and make them durable (fsync);
//   2. send `messages`; `early_messages` may be sent before step 1 finishes;
//   3. restore the state machine from `snapshot` if present, then apply `committed_entries` in
//      order, and serve `read_states` once their index is applied;
//   4. call Raft::Advance().
struct Ready {
  std::optional<SoftState> soft_state;
  // Present when the term or vote changed, or with entries or a snapshot. A change of the
  // commit index alone rides along with the next of those: it needs no fsync (Raft Figure 2
  // lists commitIndex as volatile), so a Ready that only commits persists nothing.
  std::optional<HardState> hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;
  // Thesis 10.2.1: a leader may send AppendEntries for entries it has not yet made durable,
  // because it counts itself toward a commit quorum only after its own fsync. Only replication
  // messages of a leader whose term is already durable land here; everything else (a vote, an
  // acknowledgement, anything in a term not yet on disk) promises something about durable state
  // and is in `messages`.
  std::vector<Message> early_messages;
  std::vector<Message> messages;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> read_states;

  bool MustPersist() const { return hard_state || snapshot || !entries.empty(); }
};

}  // namespace synod::raft
