// Multi-Paxos (Lamport, "Paxos Made Simple" 2001, section 3, "Implementing a State Machine") as
// a pure state machine behind the same contract as the Raft core (consensus/raft/raft.h), so
// that the server can run on either engine.
//
// The structure is the one of "Paxos Made Live" (Chandra, Griesemer, Redstone 2007) and "Paxos
// Made Moderately Complex" (van Renesse and Altinbuken 2015): a sequence of single-decree
// instances, one per log slot, driven by a stable distinguished proposer (the leader).
//   - A node that suspects the leader is gone picks a ballot (round, its id) above every ballot
//     it has seen and runs phase 1 once for every slot from its first unchosen one on (PMS 3:
//     "phase 1 for infinitely many instances"; PMMC's scout).
//   - With promises from a majority it is leader. For each slot in the window the promises
//     report it re-proposes the value of the highest ballot reported, and fills the gaps with
//     no-ops (PMS 3: "fill the gaps ... by proposing a special no-op command"). Slots above the
//     window were accepted by no one in the majority, so it proposes client commands there.
//   - Phase 2 then runs per slot, pipelined and batched (PMMC's commander; PML 3's "the master
//     ... can skip phase 1 for subsequent instances").
//   - A slot is chosen when a majority accepted it in one ballot. The leader learns that by
//     counting acceptances and tells the others its commit index; a follower marks a slot chosen
//     only when it accepted that slot in the leader's own ballot (one ballot proposes one value
//     per slot, so that value is the chosen one), and otherwise receives the chosen value from
//     the leader (kChosen), or a snapshot when the leader has compacted it away.
//
// Like the Raft core it owns no sockets, files, threads or clocks: time is Tick(); randomness
// (the election timeout, which is also the backoff of a preempted proposer) comes from a
// generator seeded by Config::seed; output leaves as a Ready batch (types.h). One seed replays
// one run. It is not thread-safe: one event loop owns it.
//
// The leader's own acceptor is treated as the caller treats the others: what it promises and
// accepts is in the Ready to persist, and the leader counts its own promise or acceptance only
// at Advance, after that state is durable (the rule the Paxos core follows too). The commit
// index is not acceptor state: a change of it alone is not persisted (types.h, Ready), and the
// leader announces it to the followers at once when no accept will carry it soon.
//
// Membership changes follow Lamport's α rule ("Paxos Made Simple" 3, last paragraphs; Lamport,
// Malkhi and Zhou, "Reconfiguring a State Machine", 2010, section 3): a configuration chosen in
// slot i governs the slots from i + α on. Every slot therefore has exactly one configuration, a
// function of the chosen values below it, and each slot is plain single-decree Paxos among the
// voters of its configuration: phase 1 and phase 2 quorums of a slot are majorities of the same
// voters. A leader proposes only slots up to its commit index + α, whose configurations it knows
// from chosen values; its phase 1 is complete once a majority of every configuration governing
// those slots has promised; when a newly chosen change brings a configuration into that range
// whose majority has not promised, it runs phase 1 again. A change is proposed only with
// nothing in flight and only when the previous one is in effect, so each change is computed from
// every change chosen before it; once chosen the leader pads the α slots with no-ops so that it
// takes effect at once. A leader that is no voter of the next slot's configuration steps down.
//
// Reads: ReadIndex on the leader, or on a follower, which asks its leader (Raft thesis 6.4);
// the server routes every follower read through it.
// Check-quorum (Raft thesis 6.2 and 4.2.3): a leader that hears no majority for an election
// timeout steps down, and followers of a live leader ignore other nodes' higher ballots.
//
// Leadership transfer (Raft thesis 3.10, for Paxos): the leader stops taking proposals, lets what
// is in flight be chosen and catches the target up to its commit index, then tells it to start
// phase 1 at once (kTimeoutNow) with a prepare that acceptors answer even while they hear a
// leader. The target's higher ballot deposes the old leader. If the target has not taken over
// within an election timeout, the old leader resumes.
//
// A leader's accepts leave before its own fsync (Ready::early_messages, Raft thesis 10.2.1), so
// its own write and its followers' overlap.
//
// Not yet covered: a pre-prepare round (Raft's pre-vote) so that a node returning from a
// partition does not cost the leader one phase 1.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/ids.h"
#include "base/prng.h"
#include "base/status.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/raft.h"

namespace synod::multipaxos {

struct Config {
  NodeId id;
  // A follower that hears nothing from a leader, or a candidate whose phase 1 has not gathered a
  // majority, for a timeout drawn from [election_timeout_ticks, 2 * election_timeout_ticks)
  // starts phase 1 with a higher ballot. A proposer preempted by a higher ballot waits such a
  // random timeout too: this is the randomized backoff that breaks dueling proposers (PMS 2.4).
  uint32_t election_timeout_ticks = 10;
  // The leader's heartbeat, which also resends unacknowledged accepts and catches up lagging
  // nodes. Invariant: heartbeat_interval_ticks < election_timeout_ticks.
  uint32_t heartbeat_interval_ticks = 1;
  // Raft thesis 6.2 for Paxos. A leader that has not heard from a majority of every window
  // configuration within an election timeout steps down, so a leader cut off in a minority
  // stops taking proposals. A node that heard its leader within an election timeout (or is the
  // leader) ignores a prepare of another node's higher ballot: an acceptor may ignore any
  // request without harming safety (PMS 2.3), only liveness, and a working leader needs no
  // successor. A leader refused (kNack) by such a higher ballot runs phase 1 again with a
  // higher one instead of stepping down, since the followers that still hear it promise it.
  bool check_quorum = true;
  // Limits (TigerBeetle: put a limit on everything).
  // Values in one kAccept or kChosen message.
  uint32_t message_entries_max = 256;
  // kChosen messages in flight to one lagging node: catching up is pipelined like the accepts.
  uint32_t catch_up_messages_max = 8;
  // Proposals are refused while this many slots are proposed but not chosen.
  uint64_t uncommitted_entries_max = 8192;
  uint32_t pending_reads_max = 8192;
  // α (see the file comment): a configuration chosen in slot i governs the slots from i + α on,
  // and a leader proposes nothing beyond its commit index + α, so α also bounds the pipeline.
  // Every node of a group must use the same α, as it uses the same initial membership.
  uint64_t alpha_slots = 256;
  // A learner is promoted only when its commit index is at most this many slots behind the
  // leader's (Raft thesis 4.2.1: it must not stall commitment while it catches up).
  uint64_t learner_promotion_lag_max = 64;
  uint64_t seed = 0;
  // Run CheckInvariants() after every input. Always on in the simulator.
  bool check_invariants = false;
};

// Invalid configuration is rejected at start-up, never silently adjusted.
Status Validate(const Config& config);

// Where a proposal landed, as in the Raft core: `term` is the proposing leader's round, kept in
// the Entry. Ballots of one round from two nodes share that round, so the caller tells its own
// command from another by the Entry's data, not by the position alone.
using raft::LogPosition;

class MultiPaxos {
 public:
  // Builds a node from what it persisted. A node of a new group passes a snapshot at index 0
  // whose membership's voters are the group; a node that will join a running group passes an
  // empty one (it learns the configuration from the chosen values or a snapshot, and neither
  // campaigns nor promises until it is a voter). Fails with InvalidArgument on an invalid config
  // or inconsistent state.
  static Result<std::unique_ptr<MultiPaxos>> Create(const Config& config, PersistentState state);

  MultiPaxos(const MultiPaxos&) = delete;
  MultiPaxos& operator=(const MultiPaxos&) = delete;

  // ---- Inputs ----

  // Advances logical time by one tick: election timeouts, the leader's heartbeat.
  void Tick();

  // Delivers a message from a peer. Messages may arrive lost, duplicated, reordered or stale;
  // all of that is handled. Returns InvalidArgument for a malformed message (it is dropped).
  Status Step(Message message);

  // Assigns a client command the next free slot and starts phase 2 for it (sent in one batch
  // with the other proposals of this Ready). Refused with FailedPrecondition when this node is
  // not the leader (naming the leader if known), ResourceExhausted when too many slots are
  // proposed and not chosen.
  Result<LogPosition> Propose(std::string data);

  // A configuration change (one server at a time, raft::ConfChange, reusing the Raft core's
  // shapes): the leader proposes a kConfig entry carrying the complete new configuration (and
  // `context` as its data) in the next slot i; the configuration governs the slots from i + α
  // on. Refused with FailedPrecondition on a non-leader, while slots are in flight or the
  // previous change is not yet in effect, or for a learner not yet caught up; with the errors of
  // raft::MembershipAfter when the change does not fit the configuration.
  Result<LogPosition> ProposeConfChange(raft::ConfChange change);

  // A linearizable read (the Raft thesis 6.4's ReadIndex, for Paxos): the read index is the
  // highest slot that may have been chosen when the read arrived at the leader (its commit
  // index, or the end of the window its phase 1 learned, whichever is higher). A ReadState with
  // `context` appears in a later Ready once a majority of every window configuration has
  // answered a heartbeat sent after the read arrived, proving that no higher ballot had taken
  // over then. A leader releases no read until its commit index reaches the end of its phase 1
  // window (multipaxos.cc, ReleaseConfirmedReads, says why). Reads waiting at the same moment
  // share one heartbeat round. A follower forwards
  // the read to its leader (kReadIndex) and releases the ReadState when the answer comes back;
  // the caller serves it once it has applied up to the index. If the leader is deposed first no
  // ReadState appears, and the caller times out. Fails with Unavailable when no leader is known,
  // ResourceExhausted on a leader with too many reads waiting.
  Status ReadIndex(std::string context);

  // Starts phase 1 now, as if the election timeout fired.
  void Campaign();

  // Leader: hands leadership to `target` (see the file comment). Proposals are refused with
  // FailedPrecondition until the transfer ends: `target` leads (this node then follows), or an
  // election timeout passed (this node leads on). A transfer to another target replaces the
  // one in progress. FailedPrecondition off the leader, or when `target` is this node or no
  // voter of the next slot's and the latest configuration.
  Status TransferLeadership(NodeId target);

  // Records the caller's snapshot of its state machine at `index` (<= the applied index),
  // used to catch up nodes that need compacted slots. The caller has made it durable.
  Status SetSnapshot(Index index, std::string data);
  // Discards stored slots up to `index` (<= the snapshot's index). The caller does likewise.
  Status CompactLog(Index index);

  // ---- Output ----

  // True when TakeReady would return something to do. False while a Ready awaits Advance.
  bool HasReady() const;
  // Hands out everything accumulated since the last Ready. Precondition: HasReady().
  Ready TakeReady();
  // The caller has done everything the last Ready asked (types.h). Promises and acceptances of
  // this node's own acceptor in that Ready count toward its own quorums now.
  void Advance();

  // ---- Inspection ----

  NodeId id() const { return config_.id; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  // Leader: the target of the leadership transfer in progress, or kNoNode.
  NodeId transfer_target() const { return transfer_target_; }
  // The ballot of this node's current or last phase 1.
  BallotNumber ballot() const { return ballot_; }
  BallotNumber promised() const { return promised_; }
  Index commit() const { return commit_; }
  Index applied() const { return applied_; }
  // The configuration of the latest change this node knows chosen; it may govern only slots
  // above the next one (it takes effect α slots after its own).
  const Membership& membership() const { return configs_.rbegin()->second; }
  // The slot of the change membership() comes from, or the index of the snapshot it came with.
  // Invariant: <= commit().
  Index membership_index() const { return membership_index_; }
  // The configuration governing `slot`. Precondition: slot > the compaction point; exact for
  // slots up to commit() + α (beyond, later changes may still be chosen).
  const Membership& MembershipFor(Index slot) const;
  const Snapshot& snapshot() const { return snapshot_; }
  // The stored slot, if any (nullptr below the compaction point or where nothing was accepted).
  const Slot* slot(Index index) const;
  HardState hard_state() const { return {promised_, commit_}; }
  // Leader: the commit index `follower` last reported in this ballot, if it did (how far a
  // learner has caught up before its promotion).
  std::optional<Index> FollowerCommit(NodeId follower) const;
  // The quorum of the next unchosen slot's configuration.
  size_t QuorumSize() const { return MembershipFor(commit_.next()).QuorumSize(); }

  // Asserts every invariant of the state and the step-to-step ("delta") invariants against the
  // state at the previous call: the promise never decreases, the commit index never decreases,
  // the value of a chosen slot never changes.
  void CheckInvariants();

 private:
  MultiPaxos(const Config& config, PersistentState state);

  Status ValidateMessage(const Message& message) const;
  void Dispatch(const Message& message);

  // Roles.
  void BecomeFollower(NodeId leader);
  void BecomeLeader();
  void ResetElectionTimer();
  // Phase 1 with a new ballot; `leadership_transfer` marks its prepares (Message).
  void RunPhaseOne(bool leadership_transfer);
  // Acts on a message of a leader or candidate in `ballot` >= the promise: raises the promise
  // to it and follows its sender, stepping down from a lower ballot of its own.
  void Follow(const BallotNumber& ballot);

  // Acceptor (PMS 2.2, once per slot; the promise is shared by all slots).
  void HandlePrepare(const Message& message);
  void HandleAccept(const Message& message);
  void HandleHeartbeat(const Message& message);
  void HandleChosen(const Message& message);
  void HandleInstallSnapshot(const Message& message);
  // Answers `message` with a kNack if its ballot is below the promise; returns whether it did.
  bool RefusedBelowPromise(const Message& message);
  // A follower's learner: marks chosen the slots up to `leader_commit` it accepted in `ballot`.
  void AdvanceFollowerCommit(const BallotNumber& ballot, Index leader_commit);
  void InstallSnapshot(const Snapshot& snapshot);
  void StoreSlot(Index index, Slot slot);

  // Proposer: candidate and leader.
  void HandlePromise(const Message& message);
  void HandleAccepted(const Message& message);
  void HandleHeartbeatResponse(const Message& message);
  void HandleNack(const Message& message);
  // Proposes `values` (ascending slots) in the leader's ballot: its own acceptor accepts them
  // now, the followers get them in the next Ready's batch.
  void ProposeInBallot(std::vector<Entry> values);
  void MaybeAdvanceLeaderCommit();
  void NoteFollowerCommit(NodeId follower, Index commit);
  // The heartbeat: liveness, ReadIndex round, resent accepts, catch-up.
  void SendHeartbeats();
  void SendHeartbeat(NodeId follower);
  void SendAccepts(NodeId to, Index from_slot);
  void CatchUp(NodeId to);
  // Leader: queues a read for `requester` (this node or a follower that forwarded it).
  Status QueueRead(NodeId requester, std::string context);
  void HandleReadIndex(const Message& message);
  void HandleReadIndexResponse(const Message& message);
  // Leadership transfer.
  void HandleTimeoutNow(const Message& message);
  // Leader: sends kTimeoutNow once nothing is in flight and the target has caught up.
  void MaybeSendTimeoutNow();
  void StartReadRound();
  void ReleaseConfirmedReads();

  // FailedPrecondition naming the leader, if one is known.
  Status NotLeaderError() const;
  void Send(Message message);
  Message Reply(const Message& to, MessageType type) const;
  uint32_t RandomizedElectionTimeout();
  // Every member (voter or learner) of a configuration governing a slot above the commit
  // index, other than this node: who gets prepares, accepts, heartbeats and chosen values.
  std::vector<NodeId> Peers() const;

  // Membership (the α rule, see the file comment).
  // Records the configurations of the kConfig values chosen since the last call.
  void RecordChosenConfigs();
  // The distinct configurations governing the slots (commit, commit + α]: the ones a leader's
  // phase 1, and a read's confirmation, need a majority of.
  std::vector<const Membership*> WindowConfigs() const;
  // Whether `nodes` holds a majority of the voters of every window configuration.
  bool MajorityOfEveryWindowConfig(const std::set<NodeId>& nodes) const;
  // Whether this node may run phase 1: it is a voter of the next unchosen slot's configuration.
  bool IsVoterOfNextSlot() const;
  // Leader, after its commit index advanced: steps down when no longer a voter, runs phase 1
  // again for a configuration that came into the window, proposes the rest of its phase 1
  // window and the no-ops that bring a chosen change into effect.
  void AfterLeaderCommitAdvanced();
  // Leader: whether slot `index` is within the α window of the commit index.
  bool WithinAlphaWindow(Index index) const;
  // Whether `node` is a voter of a configuration governing a slot above the commit index.
  bool IsVoterAboveCommit(NodeId node) const;
  // Leader: the limits a proposal in the next slot must respect (the in-flight maximum, the α
  // window, this leader's own membership).
  Status CheckCanProposeNextSlot() const;

  Config config_;
  base::Prng prng_;

  // Acceptor and learner state (persistent: HardState, the snapshot and the slots).
  // Invariant: every slot's accepted ballot <= promised_.
  BallotNumber promised_;
  // Invariant: compacted_ < every key; every index in (compacted_, commit_] is a key.
  Index commit_;
  std::map<Index, Slot> slots_;
  // Invariant: compacted_ <= snapshot_.meta.index <= applied_ <= commit_.
  Snapshot snapshot_;
  Index compacted_;
  // The last slot handed out in committed_entries (or restored from the snapshot).
  Index applied_;
  // The configurations: configs_[s] governs the slots from s up to the next key (the α rule).
  // The first key is at most compacted_ + 1 (from the snapshot's membership); a kConfig value
  // chosen in slot i adds the key i + α. Invariant: configs_scanned_ == commit_ between inputs.
  std::map<Index, Membership> configs_;
  Index configs_scanned_;
  // See membership_index().
  Index membership_index_;
  // The members that a change this node recorded removed (and none re-added), whose prepares it
  // ignores once they are voters of no configuration above its commit index. Rebuilt from the
  // slots above the snapshot at a restart, so it may forget some; that costs liveness only.
  std::set<NodeId> removed_;
  // The highest round in any ballot seen; a new ballot takes the next one (PMS 2.4).
  // Invariant: round_seen_ >= promised_.round.
  Ballot round_seen_;

  Role role_ = Role::kFollower;
  NodeId leader_;
  // Candidate and leader: the ballot of this node's phase 1. Invariant there: == promised_.
  BallotNumber ballot_;
  uint32_t election_elapsed_ = 0;
  uint32_t randomized_election_timeout_ = 0;
  uint32_t heartbeat_elapsed_ = 0;

  // Candidate: what phase 1 learned so far. For each slot above the commit index, the value of
  // the highest ballot reported (PMS 2.2, P2c), or the chosen value if a promiser knew it.
  struct PhaseOne {
    std::set<NodeId> promised_by;
    std::map<Index, Slot> highest_accepted;
    std::map<Index, Entry> chosen;
    std::map<NodeId, Index> commits;
  };
  PhaseOne phase_one_;

  // Leader: the leadership transfer in progress (kNoNode when none), the ticks since it began,
  // and whether kTimeoutNow went out (once: if it is lost, the transfer times out).
  // Invariant: transfer_target_ == kNoNode unless leader.
  NodeId transfer_target_;
  uint32_t transfer_elapsed_ticks_ = 0;
  bool timeout_now_sent_ = false;

  // Leader, check-quorum: the peers that answered in this ballot since the last check, made
  // every election timeout (counted by election_elapsed_).
  std::set<NodeId> heard_since_check_;
  // Whether this node heard its leader within an election timeout, or leads (check_quorum).
  bool InLeaderLease() const;

  // Leader: who promised in its phase 1 (a majority of every window configuration then), and
  // the values phase 1 requires in slots beyond the α window then, proposed as the window moves.
  std::set<NodeId> promised_by_;
  std::map<Index, Entry> window_deferred_;
  // Leader: the slots proposed in ballot_ and not yet chosen in order.
  // Invariant: keys in (commit_, next_slot_); each value is slots_[key].value accepted in ballot_.
  struct Proposal {
    std::set<NodeId> accepted_by;
    bool chosen = false;
  };
  std::map<Index, Proposal> proposals_;
  Index next_slot_;
  // The last slot of the window the leader's phase 1 re-proposed.
  Index phase_one_end_;
  // Slots from here on were proposed since the last Ready and go out in one batch then.
  Index broadcast_from_;
  struct FollowerState {
    // What the follower last reported as its commit index, if it did in this ballot.
    std::optional<Index> commit;
    // Catch-up: the last slot sent in kChosen; reset at every heartbeat, so that values lost on
    // the way are sent again from the follower's reported commit index.
    Index chosen_sent;
    uint64_t read_round_acked = 0;
  };
  std::map<NodeId, FollowerState> followers_;
  // The commit index the last two heartbeat rounds announced. Invariant: previous <= last.
  Index last_heartbeat_commit_;
  Index previous_heartbeat_commit_;
  // Leader: the commit index last sent to every peer (in a batch of accepts or heartbeats);
  // nullopt from phase 1's end until the leader has announced itself. Invariant: <= commit_.
  std::optional<Index> announced_commit_;
  // Whether the leader owes its peers its ballot or a commit index that no accept will carry
  // soon (see AnnounceCommit).
  bool CommitUnannounced() const;
  // Leader: a heartbeat to every peer, without the resent accepts and catch-up of a periodic
  // one, that makes a new leader known and carries a commit index advance to the followers at
  // once. Sent in TakeReady when nothing else carries it (see there).
  void AnnounceCommit();

  // Leader: ReadIndex (see ReadIndex()). A read waits unassigned until the next TakeReady starts
  // a heartbeat round that every read waiting then shares.
  struct PendingRead {
    Index index;
    uint64_t round = 0;
    NodeId requester;
    std::string context;
  };
  std::vector<PendingRead> reads_unassigned_;
  std::vector<PendingRead> reads_waiting_;  // Invariant: rounds ascending.
  uint64_t read_round_ = 0;

  // Output accumulated for the next Ready.
  std::vector<Message> outbox_;
  std::set<Index> dirty_slots_;
  std::optional<Snapshot> snapshot_to_persist_;
  std::vector<ReadState> read_states_;
  SoftState last_soft_state_;
  // The hard state last handed out in a Ready: durable once that Ready is. Its commit index
  // lags commit_ between Readies that persist something (see TakeReady).
  HardState last_hard_state_;
  // Whether the promise changed since the last hard state handed out.
  bool PromiseUnreported() const;
  // Whether `message` may go in Ready::early_messages.
  bool MaySendBeforePersisting(const Message& message) const;
  // The promise of the last Ready that was Advanced, so durable (Ready::early_messages).
  // Invariant: durable_promise_ <= promised_.
  BallotNumber durable_promise_;
  // Messages to this node itself from the Ready awaiting Advance.
  std::vector<Message> to_self_after_advance_;
  bool awaiting_advance_ = false;

  // The state at the previous CheckInvariants call, for delta checks.
  struct Observed {
    BallotNumber promised;
    Index commit;
    std::optional<Entry> commit_value;
  };
  Observed observed_;
};

}  // namespace synod::multipaxos
