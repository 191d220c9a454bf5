// Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm", and
// Ongaro's thesis "Consensus: Bridging Theory and Practice") as a pure state machine.
//
// The core owns no sockets, files, threads or clocks. Time is Tick(); randomness comes from a
// generator seeded by Config::seed; input arrives through Step, Propose, ProposeConfChange,
// ReadIndex and TransferLeadership; output leaves as a Ready batch (see types.h for the order in
// which the caller must persist, send, apply and Advance). One seed therefore replays one run.
//
// It is not thread-safe: one event loop owns it.
//
// Covered: elections with randomized timeouts (5.2), pre-vote (thesis 9.6), check-quorum
// (thesis 6.2), log replication with fast backtracking (5.3), commitment only of current-term
// entries by counting (5.4.2), pipelined AppendEntries with bounded windows, snapshots and log
// compaction (7), leadership transfer (thesis 3.10), ReadIndex (thesis 6.4), and single-server
// membership changes with learners (thesis 4), including removing the leader itself.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/ids.h"
#include "base/prng.h"
#include "base/status.h"
#include "consensus/raft/log.h"
#include "consensus/raft/progress.h"
#include "consensus/raft/types.h"

namespace synod::raft {

struct Config {
  NodeId id;
  // Raft 5.2: a follower that hears nothing for an election timeout starts an election. The
  // actual timeout is drawn uniformly from [election_timeout_ticks, 2 * election_timeout_ticks)
  // each time it is reset, so split votes resolve quickly.
  uint32_t election_timeout_ticks = 10;
  // Invariant: heartbeat_interval_ticks < election_timeout_ticks.
  uint32_t heartbeat_interval_ticks = 1;
  // Thesis 9.6.
  bool pre_vote = true;
  // Thesis 6.2: a leader steps down when it has not heard from a majority for an election
  // timeout, and followers that hear from a leader ignore vote requests for that long.
  bool check_quorum = true;
  // Limits (TigerBeetle: put a limit on everything).
  uint32_t inflight_messages_max = 64;
  uint64_t append_entries_bytes_max = 1 << 20;
  uint64_t committed_entries_bytes_max = 16 << 20;
  // Proposals are refused while this many entries are appended but not committed.
  uint64_t uncommitted_entries_max = 8192;
  uint32_t pending_reads_max = 8192;
  // A learner is promoted only when its log is at most this many entries behind the leader's.
  uint64_t learner_promotion_lag_max = 64;
  // A snapshot not acknowledged after this long is sent again (it or its answer was lost).
  uint32_t snapshot_retry_ticks = 50;
  uint64_t seed = 0;
  // Run CheckInvariants() after every input. Always on in the simulator; costs O(members).
  bool check_invariants = false;
};

// Invalid configuration is rejected at start-up, never silently adjusted.
Status Validate(const Config& config);

// Where a proposal landed. It is committed if an entry with the same index and term is later
// applied; a different term at that index means it was lost in a leader change.
struct LogPosition {
  Index index;
  Term term;

  bool operator==(const LogPosition&) const = default;
};

class Raft {
 public:
  // Builds a node from what it persisted. A node of a new cluster passes a snapshot at index 0
  // holding the initial membership; a node joining an existing cluster passes an empty one.
  // Fails with InvalidArgument on an invalid config or inconsistent state.
  static Result<std::unique_ptr<Raft>> Create(const Config& config, PersistentState state);

  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // ---- Inputs ----

  // Advances logical time by one tick: election timeouts for followers and candidates,
  // heartbeats, check-quorum and transfer timeouts for the leader.
  void Tick();

  // Delivers a message from a peer. Messages may arrive lost, duplicated, reordered or stale;
  // all of that is handled. Returns InvalidArgument for a malformed message (it is dropped).
  Status Step(Message message);

  // Appends a client command to the leader's log. Refused with FailedPrecondition when this node
  // is not the leader (the message names the leader if known) or a leadership transfer is in
  // progress, ResourceExhausted when too many entries are uncommitted.
  Result<LogPosition> Propose(std::string data);

  // Appends a configuration change (one server at a time, thesis 4.1). Following the thesis
  // errata, the leader accepts one only after it has committed an entry of its current term and
  // only when no earlier configuration entry is uncommitted. A learner is promoted only once it
  // has caught up.
  Result<LogPosition> ProposeConfChange(ConfChange change);

  // Thesis 6.4: asks for a read index for `context`. A ReadState with this context appears in a
  // later Ready once leadership is confirmed by a quorum; a follower forwards the request to the
  // leader. Reads waiting at the same moment share one heartbeat round. If leadership is lost
  // first no ReadState appears, and the caller times out. Fails with Unavailable if no leader is
  // known.
  Status ReadIndex(std::string context);

  // Thesis 3.10: hands leadership to `target` once its log is up to date. Proposals are refused
  // until the transfer completes or times out (one election timeout).
  Status TransferLeadership(NodeId target);

  // Starts an election now, as if the election timeout fired (thesis 3.10 uses this for the
  // transfer target; tests and a one-node bootstrap use it to avoid waiting).
  Status Campaign();

  // Records the caller's snapshot of its state machine at `index` (<= applied), used to catch up
  // followers that need compacted entries. The caller has already made it durable.
  Status SetSnapshot(Index index, std::string data);
  // Discards log entries up to `index` (<= the snapshot's index). The caller compacts its own
  // durable log likewise.
  Status CompactLog(Index index);

  // ---- Output ----

  // True when TakeReady would return something to do. False while a Ready is awaiting Advance.
  bool HasReady() const;
  // Hands out everything accumulated since the last Ready. Precondition: HasReady().
  Ready TakeReady();
  // The caller has done everything the last Ready asked (types.h). The leader now counts its own
  // newly durable entries toward commitment.
  void Advance();

  // ---- Inspection ----

  NodeId id() const { return config_.id; }
  Term term() const { return term_; }
  NodeId voted_for() const { return voted_for_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  const RaftLog& log() const { return log_; }
  const Membership& membership() const { return log_.membership(); }
  HardState hard_state() const { return {term_, voted_for_, log_.committed()}; }
  // Leader only: the progress of every other member.
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  NodeId transfer_target() const { return transfer_target_; }

  // Asserts every invariant of the state and the step-to-step ("delta") invariants against the
  // state at the previous call: the term never decreases, the vote is cast at most once per
  // term, the commit index never decreases.
  void CheckInvariants();

 private:
  using StepFunction = void (Raft::*)(Message&);
  using TickFunction = void (Raft::*)();

  Raft(const Config& config, PersistentState state);

  // Role changes (etcd raft's pattern: a role is a pair of step and tick functions).
  void Reset(Term term);
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();

  void StepLeader(Message& message);
  void StepCandidate(Message& message);
  void StepFollower(Message& message);
  void TickElection();
  void TickHeartbeat();

  Status ValidateMessage(const Message& message) const;
  // Whether the term or vote differs from the last hard state handed out in a Ready.
  bool TermOrVoteUnreported() const;
  void StepStaleTerm(const Message& message);
  void HandleVoteRequest(const Message& message);
  void HandleAppendEntries(Message& message);
  void HandleHeartbeat(const Message& message);
  void HandleInstallSnapshot(Message& message);
  void HandleAppendEntriesResponse(const Message& message);
  void HandleHeartbeatResponse(const Message& message);
  Status HandleReadIndexRequest(NodeId requester, std::string context);

  enum class ElectionKind : uint8_t { kPreVote, kElection, kTransfer };
  void StartElection(ElectionKind kind);
  // Counts a vote and acts once the election is decided: a won pre-vote starts the real
  // election, a won election makes this node leader, a lost one makes it a follower.
  void RecordVote(NodeId voter, bool granted);

  // Leader replication. SendAppend returns whether it sent anything.
  bool SendAppend(NodeId to, bool send_if_empty);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  void SendHeartbeat(NodeId to);
  bool MaybeSendSnapshot(NodeId to, Progress& progress);
  bool MaybeCommit();
  Index SelfMatch() const;
  void OnCommitAdvanced();
  void SendTimeoutNow(NodeId to);
  void AbortTransfer();

  // ReadIndex bookkeeping (thesis 6.4).
  void StartReadRound();
  void ReleaseConfirmedReads();
  void ReleaseRead(NodeId requester, Index index, std::string context);

  // Membership: adopts the latest configuration in the log (after an append, a truncation or a
  // snapshot) and, on the leader, adds and removes progress trackers to match.
  void OnMembershipMaybeChanged();
  bool IsVoter() const { return log_.membership().IsVoter(config_.id); }
  // Thesis 4.2.2: "a server that is not part of its own latest configuration should still start
  // new elections, as it might still be needed until the Cnew entry is committed". So a voter of
  // the committed configuration campaigns even if a newer entry removed it (RecordVote does not
  // count its own vote then); a learner, or a node whose removal is committed, never does.
  bool MayCampaign() const;
  bool CommittedInCurrentTerm() const;
  // FailedPrecondition naming the leader, if one is known.
  Status NotLeaderError() const;
  // Whether this node may append a proposal now: it leads and no transfer is under way.
  Status CheckAcceptsProposals() const;

  void Send(Message message);
  uint32_t RandomizedElectionTimeout();

  Config config_;
  base::Prng prng_;
  RaftLog log_;

  // Persistent (Raft figure 2). Invariant: voted_for_ is cast at most once per term.
  Term term_;
  NodeId voted_for_;

  Role role_ = Role::kFollower;
  NodeId leader_;
  StepFunction step_ = &Raft::StepFollower;
  TickFunction tick_ = &Raft::TickElection;

  // Ticks since the last reset; the meaning depends on the role (time since hearing the leader,
  // since starting the election, or since the last check-quorum round on the leader).
  uint32_t election_elapsed_ = 0;
  uint32_t heartbeat_elapsed_ = 0;
  uint32_t randomized_election_timeout_ = 0;

  // Candidate and pre-candidate: votes received in this election (granted or not).
  std::map<NodeId, bool> votes_;

  // Leader: every other member's progress. Invariant: keys are membership() minus this node.
  std::map<NodeId, Progress> progress_;
  NodeId transfer_target_;
  // Leader: entries were proposed since the last Ready; they are sent to every follower in one
  // AppendEntries each when the Ready is taken (proposal batching).
  bool broadcast_pending_ = false;

  // Leader: ReadIndex requests (thesis 6.4). A request waits in `reads_unassigned_` until the
  // leader has committed an entry of its term, then joins the next heartbeat round, which is
  // started at the next TakeReady so that every read waiting at that moment shares it.
  struct PendingRead {
    NodeId requester;
    Index index;
    uint64_t round = 0;
    std::string context;
  };
  std::vector<PendingRead> reads_unassigned_;
  std::vector<PendingRead> reads_waiting_;  // Invariant: rounds ascending.
  uint64_t read_round_ = 0;

  // Output accumulated for the next Ready.
  std::vector<Message> outbox_;
  std::vector<ReadState> read_states_;
  SoftState last_soft_state_;
  HardState last_hard_state_;
  // The term whose vote the caller has made durable; leader messages of this term may be sent
  // before the rest of a Ready is persisted.
  Term durable_term_;

  // What the Ready awaiting Advance carried.
  struct InFlightReady {
    std::optional<LogPosition> last_entry;
    Index last_committed;
    Index snapshot_index;
    HardState hard_state;
  };
  std::optional<InFlightReady> in_flight_;

  // The state at the previous CheckInvariants call, for delta checks.
  struct Observed {
    Term term;
    NodeId voted_for;
    Index commit;
  };
  Observed observed_;
};

}  // namespace synod::raft
