#pragma once

// The engine boundary of a member (issue 7 part 3): `synod --engine raft|multipaxos` runs the
// same event loop (server/node.h) on either consensus core. The boundary sits where it costs
// least and stays honest: both cores already share the contract of consensus/raft/raft.h
// (Tick, Step, Propose, ReadIndex, Ready/Advance, SetSnapshot/CompactLog) and Raft's Entry,
// Snapshot, Membership and ReadState types, so the loop's group commit (LogWriter), apply,
// proposal tracking (by the request id inside each entry, never by (index, term): two
// Multi-Paxos ballots share a round), ReadIndex and snapshot handling stay one code path. An
// adapter translates only what differs:
//
//   - the Ready: Raft persists a suffix of entries and {term, vote, commit}; Multi-Paxos
//     persists slots (each replaces its own index, gaps allowed) and {promise, commit}. Both
//     become one storage::LogWrite for the same write-ahead log, whose content
//     (storage::WalContent) is fixed when the member's data dir is created (server/data_dir.h);
//   - peer messages (server/peer_message.h), carried by one transport stream. A follower's
//     ReadIndex goes to its leader inside either core (Raft thesis 6.4) and comes back as a
//     ReadState, so the loop sees the same thing on both engines;
//   - membership changes and leadership transfer: both cores take raft::ConfChange, and the
//     adapter gives the loop what it checks before a change (the latest configuration entry,
//     whether a learner has caught up) in one shape. A configuration entry takes effect on
//     Raft once appended, on Multi-Paxos α slots after the slot it is chosen in (the α rule,
//     consensus/multipaxos/multipaxos.h); the member records follow the entry as it is applied
//     on both (server/members.h).
//
// Threading: an engine is owned by the member's loop thread, like the cores it wraps.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/raft.h"
#include "server/engine_kind.h"
#include "server/peer_message.h"
#include "storage/log_writer.h"
#include "storage/wal.h"

namespace synod::server {

// One Ready of either core, in the loop's terms. The caller carries it out in the order of
// raft::Ready: send `early_messages`; make `write` durable; then send `messages`, apply
// `committed_entries`, serve `read_states` once applied, and call Advance().
struct EngineReady {
  // The role of a Multi-Paxos node maps onto Raft's (a proposer in phase 1 is kCandidate).
  std::optional<raft::SoftState> soft_state;
  std::vector<PeerMessage> early_messages;
  // What to make durable before `messages` leave. Empty when nothing must be.
  storage::LogWrite write;
  std::vector<PeerMessage> messages;
  std::vector<raft::Entry> committed_entries;
  std::vector<raft::ReadState> read_states;

  bool MustPersist() const {
    return write.installed_snapshot || !write.entries.empty() || !write.slots.empty() ||
           write.hard_state;
  }
};

// What a member restarts from: the recovered log (or a new one) and how far its store applied.
struct EngineStart {
  NodeId id;
  uint32_t election_timeout_ticks = 10;
  uint64_t seed = 0;
  storage::RecoveredLog recovered;
  // Already clamped by the caller into [snapshot, max(commit, snapshot)].
  Index applied;
};

class ConsensusEngine {
 public:
  // Errors: InvalidArgument from the core for inconsistent state.
  static Result<std::unique_ptr<ConsensusEngine>> Create(EngineKind kind, EngineStart start);
  virtual ~ConsensusEngine() = default;

  virtual EngineKind kind() const = 0;

  // ---- Inputs, as the cores' ----
  virtual void Tick() = 0;
  // InvalidArgument for a malformed message or one of the other engine (it is dropped).
  virtual Status Step(PeerMessage message) = 0;
  // FailedPrecondition off the leader, ResourceExhausted when too much is in flight.
  virtual Result<raft::LogPosition> Propose(std::string data) = 0;
  // A ReadState with `context` appears in a later Ready. Multi-Paxos: Unavailable when no
  // leader is known (Raft's core keeps such a read until it knows one); ResourceExhausted when
  // too many reads wait.
  virtual Status ReadIndex(std::string context) = 0;
  virtual void Campaign() = 0;

  // ---- Output ----
  virtual bool HasReady() const = 0;
  virtual EngineReady TakeReady() = 0;
  virtual void Advance() = 0;

  // ---- Local snapshots (Raft 7): the store is the snapshot, so the core's carries no data ----
  virtual Index applied() const = 0;
  virtual const raft::SnapshotMeta& snapshot_meta() const = 0;
  // Precondition: snapshot_meta().index < index <= applied().
  virtual Status SetSnapshot(Index index) = 0;
  // Drops what the core keeps in memory up to `index` (<= the snapshot); idempotent.
  virtual void CompactLog(Index index) = 0;
  // The fewest entries to keep behind a snapshot whatever the member was configured with, so
  // that a follower the engine itself puts behind in one step catches up from the log instead
  // of by a whole snapshot of the store.
  virtual uint64_t log_tail_min() const = 0;

  // ---- Inspection ----
  virtual raft::Role role() const = 0;
  bool is_leader() const { return role() == raft::Role::kLeader; }
  virtual NodeId leader() const = 0;
  // Raft's term; Multi-Paxos's promised round (what the status endpoint shows as the term).
  virtual Term term() const = 0;
  virtual Index commit() const = 0;
  virtual const raft::Membership& membership() const = 0;

  // ---- Membership changes (server/members.h) and leadership transfer (Raft thesis 3.10) ----
  // Proposes one configuration change, whose `context` (the member records after it) becomes
  // the entry's data. FailedPrecondition off the leader, while an earlier change is not yet in
  // effect or entries are in flight that it must follow (Multi-Paxos), during a leadership
  // transfer, or for a learner not yet caught up; Unavailable while a new Raft leader has not
  // committed an entry of its term; the errors of raft::MembershipAfter for a change that does
  // not fit the configuration.
  virtual Result<raft::LogPosition> ProposeConfChange(raft::ConfChange change) = 0;
  // The index of the configuration entry membership() comes from (Raft: the latest appended,
  // perhaps uncommitted; Multi-Paxos: the latest chosen), or the snapshot's index.
  virtual Index membership_index() const = 0;
  // That entry while the core still holds it (nullptr once compacted, or for a snapshot's).
  virtual const raft::Entry* membership_entry() const = 0;
  // Leader: whether `learner` is close enough behind to be promoted: the core's own rule (at
  // most learner_promotion_lag_max behind) and etcd's isLearnerReady (90% of the leader's log),
  // so that the core never refuses what passed here. etcd's rule alone would let a learner that
  // never started be promoted in a young cluster whose log is short.
  virtual bool LearnerCaughtUp(NodeId learner) const = 0;
  // Leader: hands leadership to the voter `target` once it is up to date; the leader proposes
  // nothing meanwhile, and resumes if `target` has not taken over within an election timeout.
  // FailedPrecondition off the leader or for a target that is not another voter.
  virtual Status TransferLeadership(NodeId target) = 0;
  // The transfer in progress on this leader, or kNoNode.
  virtual NodeId transfer_target() const = 0;
};

// The snapshot a peer message announces, whose state the store must hold before the core sees
// the message (server/node.h, "Snapshots"): a Raft InstallSnapshot, a Multi-Paxos
// InstallSnapshot, or a Multi-Paxos Promise from an acceptor that compacted the asked slots.
std::optional<Index> AnnouncedSnapshotIndex(const PeerMessage& message);

}  // namespace synod::server
