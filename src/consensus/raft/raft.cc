#include "consensus/raft/raft.h"

#include <algorithm>
#include <functional>

#include "base/assert.h"
#include "base/quorum.h"

namespace synod::raft {
namespace {

bool IsVoteRequest(MessageType type) {
  return type == MessageType::kRequestVote || type == MessageType::kRequestPreVote;
}

bool IsFromLeader(MessageType type) {
  return type == MessageType::kAppendEntries || type == MessageType::kHeartbeat ||
         type == MessageType::kInstallSnapshot;
}

}  // namespace

Status Validate(const Config& config) {
  if (config.id == kNoNode) return absl::InvalidArgumentError("node id must not be 0");
  if (config.election_timeout_ticks < 2) {
    return absl::InvalidArgumentError("election timeout must be at least 2 ticks");
  }
  if (config.heartbeat_interval_ticks == 0 ||
      config.heartbeat_interval_ticks >= config.election_timeout_ticks) {
    return absl::InvalidArgumentError(
        "heartbeat interval must be at least 1 tick and shorter than the election timeout");
  }
  if (config.inflight_messages_max == 0 || config.append_entries_bytes_max == 0 ||
      config.committed_entries_bytes_max == 0 || config.uncommitted_entries_max == 0 ||
      config.pending_reads_max == 0 || config.snapshot_retry_ticks == 0) {
    return absl::InvalidArgumentError("every limit must be positive");
  }
  return absl::OkStatus();
}

Result<std::unique_ptr<Raft>> Raft::Create(const Config& config, PersistentState state) {
  if (Status status = Validate(config); !status.ok()) return status;
  const SnapshotMeta& meta = state.snapshot.meta;
  if (!meta.membership.IsWellFormed()) {
    return absl::InvalidArgumentError("snapshot membership has duplicate or overlapping members");
  }
  if (meta.term > state.hard_state.term) {
    return absl::InvalidArgumentError("snapshot term is newer than the persisted term");
  }
  Index expected = meta.index.next();
  Term previous_term = meta.term;
  for (const Entry& entry : state.entries) {
    if (entry.index != expected) {
      return absl::InvalidArgumentError(
          fmt::format("log is not contiguous: expected index {}, found {}", expected, entry.index));
    }
    if (entry.term < previous_term || entry.term > state.hard_state.term) {
      return absl::InvalidArgumentError(
          fmt::format("entry {} has term {} out of order", entry.index, entry.term));
    }
    if (entry.type == EntryType::kConfig && !entry.membership.IsWellFormed()) {
      return absl::InvalidArgumentError(
          fmt::format("configuration entry {} is malformed", entry.index));
    }
    expected = expected.next();
    previous_term = entry.term;
  }
  const Index last_index = expected.prev();
  if (state.hard_state.commit > last_index) {
    return absl::InvalidArgumentError(fmt::format("commit index {} is beyond the last log index {}",
                                                  state.hard_state.commit, last_index));
  }
  if (state.applied.has_value() &&
      (*state.applied < meta.index || *state.applied > std::max(last_index, meta.index))) {
    return absl::InvalidArgumentError("applied index outside [snapshot index, last log index]");
  }
  // The durable commit index lags (see Ready::hard_state), but whatever the caller applied was
  // committed, and it is in the durable log: a committed entry is never overwritten.
  if (state.applied.has_value() && *state.applied > state.hard_state.commit) {
    state.hard_state.commit = *state.applied;
  }
  return std::unique_ptr<Raft>(new Raft(config, std::move(state)));
}

Raft::Raft(const Config& config, PersistentState state)
    : config_(config),
      prng_(config.seed),
      log_(state),
      term_(state.hard_state.term),
      voted_for_(state.hard_state.voted_for) {
#ifdef SYNOD_BROKEN_FORGET_VOTE_ON_RESTART
  // Deliberately broken build: a restarted node forgets whom it voted for, so it can vote twice
  // in one term (violates Raft figure 2, "persistent state on all servers: votedFor").
  voted_for_ = kNoNode;
#endif
  BecomeFollower(term_, kNoNode);
  last_hard_state_ = hard_state();
  durable_term_ = term_;
  observed_ = {term_, voted_for_, log_.committed()};
}

// ---------------------------------------------------------------------------------------------
// Role changes.

uint32_t Raft::RandomizedElectionTimeout() {
  return config_.election_timeout_ticks +
         static_cast<uint32_t>(prng_.Below(config_.election_timeout_ticks));
}

void Raft::Reset(Term term) {
  if (term != term_) {
    SYNOD_ASSERT(term > term_);
    term_ = term;
    voted_for_ = kNoNode;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  randomized_election_timeout_ = RandomizedElectionTimeout();
  transfer_target_ = kNoNode;
  votes_.clear();
  progress_.clear();
  reads_unassigned_.clear();
  reads_waiting_.clear();
  read_round_ = 0;
  broadcast_pending_ = false;
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  Reset(term);
  step_ = &Raft::StepFollower;
  tick_ = &Raft::TickElection;
  leader_ = leader;
  role_ = Role::kFollower;
}

void Raft::BecomePreCandidate() {
  SYNOD_ASSERT_MSG(role_ != Role::kLeader, "a leader cannot become a pre-candidate");
  // Thesis 9.6: the pre-vote changes neither the term nor the vote, so a node that cannot win
  // leaves no trace on the others.
  step_ = &Raft::StepCandidate;
  tick_ = &Raft::TickElection;
  votes_.clear();
  leader_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  SYNOD_ASSERT_MSG(role_ != Role::kLeader, "a leader cannot become a candidate");
  // Raft 5.2: "To begin an election, a follower increments its current term ... votes for
  // itself". The Ready that carries the vote requests carries this hard state, and the caller
  // persists it before sending them.
  Reset(term_.next());
  step_ = &Raft::StepCandidate;
  tick_ = &Raft::TickElection;
  voted_for_ = config_.id;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  SYNOD_ASSERT_MSG(role_ == Role::kCandidate, "only a candidate becomes leader");
  SYNOD_ASSERT(voted_for_ == config_.id);
  Reset(term_);
  step_ = &Raft::StepLeader;
  tick_ = &Raft::TickHeartbeat;
  leader_ = config_.id;
  role_ = Role::kLeader;
  const Membership& membership = log_.membership();
  for (const std::vector<NodeId>* members : {&membership.voters, &membership.learners}) {
    for (NodeId member : *members) {
      if (member == config_.id) continue;
      progress_.emplace(member, Progress(log_.last_index().next(), config_.inflight_messages_max,
                                         membership.IsLearner(member)));
    }
  }
  // Raft 8: "each leader commit a blank no-op entry into the log at the start of its term",
  // which also lets it commit the entries of earlier terms (5.4.2) and serve ReadIndex (6.4).
  log_.Append(Entry{term_, log_.last_index().next(), EntryType::kEmpty, {}, {}});
  BroadcastAppend();
}

// ---------------------------------------------------------------------------------------------
// Time.

void Raft::Tick() {
  (this->*tick_)();
  if (config_.check_invariants) CheckInvariants();
}

void Raft::TickElection() {
  ++election_elapsed_;
  // Raft 5.2: "If a follower receives no communication over a period of time called the
  // election timeout, then it assumes there is no viable leader and begins an election." Only
  // voters stand: a learner, or a node whose removal is committed, never campaigns.
  if (MayCampaign() && election_elapsed_ >= randomized_election_timeout_) {
    StartElection(config_.pre_vote ? ElectionKind::kPreVote : ElectionKind::kElection);
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  for (auto& [id, progress] : progress_) {
    progress.silent_ticks = std::min(progress.silent_ticks + 1, config_.election_timeout_ticks);
  }
  if (config_.check_quorum) {
    // Thesis 6.2: "a leader steps down if an election timeout elapses without a successful
    // round of heartbeats to a majority of its cluster", so an isolated leader stops believing
    // it leads and clients can find the real one. Checked on every tick, so the leader steps
    // down one election timeout after it last heard from a majority, never later.
    size_t heard = IsVoter() ? 1 : 0;
    for (const auto& [id, progress] : progress_) {
      if (!progress.is_learner() && progress.silent_ticks < config_.election_timeout_ticks) {
        ++heard;
      }
    }
    if (heard < log_.membership().QuorumSize()) {
      BecomeFollower(term_, kNoNode);
      return;
    }
  }
  if (election_elapsed_ >= config_.election_timeout_ticks) {
    election_elapsed_ = 0;
    // Thesis 3.10: a transfer that has not completed within an election timeout is aborted
    // and the leader accepts proposals again.
    if (transfer_target_ != kNoNode) AbortTransfer();
  }
  for (auto& [id, progress] : progress_) {
    if (progress.state() == Progress::State::kSnapshot &&
        progress.SnapshotTimedOut(config_.snapshot_retry_ticks)) {
      progress.BecomeProbe();
    }
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_interval_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

// ---------------------------------------------------------------------------------------------
// Messages.

Status Raft::ValidateMessage(const Message& message) const {
  if (message.to != config_.id) {
    return absl::InvalidArgumentError(
        fmt::format("message for node {} delivered to node {}", message.to, config_.id));
  }
  if (message.from == kNoNode || message.from == config_.id) {
    return absl::InvalidArgumentError(fmt::format("message from invalid node {}", message.from));
  }
  if (message.type == MessageType::kAppendEntries) {
    Index expected = message.log_index.next();
    Term previous_term = message.log_term;
    for (const Entry& entry : message.entries) {
      if (entry.index != expected || entry.term < previous_term || entry.term > message.term) {
        return absl::InvalidArgumentError("AppendEntries carries an inconsistent entry sequence");
      }
      if (entry.type == EntryType::kConfig && !entry.membership.IsWellFormed()) {
        return absl::InvalidArgumentError("AppendEntries carries a malformed configuration");
      }
      expected = expected.next();
      previous_term = entry.term;
    }
  }
  if (message.type == MessageType::kInstallSnapshot) {
    if (!message.snapshot.has_value() || !message.snapshot->meta.membership.IsWellFormed() ||
        message.snapshot->meta.term > message.term) {
      return absl::InvalidArgumentError("InstallSnapshot carries an invalid snapshot");
    }
  }
  return absl::OkStatus();
}

Status Raft::Step(Message message) {
  if (Status status = ValidateMessage(message); !status.ok()) return status;

  if (message.term > term_) {
    if (IsVoteRequest(message.type)) {
      // Thesis 4.2.3 and 6.2: a server that has heard from a leader within the minimum election
      // timeout ignores vote requests, so a removed or partitioned server cannot depose a
      // working leader. A transfer's election is deliberate and is exempt. Thesis 9.6 makes
      // the same condition part of the pre-vote itself ("the voters have not received
      // heartbeats from a valid leader for at least a baseline election timeout"), so pre-votes
      // are ignored while a leader is heard even without check-quorum.
      const bool heard_leader =
          leader_ != kNoNode && election_elapsed_ < config_.election_timeout_ticks;
      const bool in_lease =
          heard_leader && (config_.check_quorum || message.type == MessageType::kRequestPreVote);
      if (in_lease && !message.leadership_transfer) return absl::OkStatus();
    }
    if (message.type == MessageType::kRequestPreVote) {
      // A pre-vote carries the term the candidate would use; it changes nobody's term.
    } else if (message.type == MessageType::kRequestPreVoteResponse && !message.reject) {
      // A granted pre-vote echoes our future term; the real election will adopt it.
    } else {
      // Raft 5.1: "If a server receives a request with a stale term number ... if one server's
      // current term is smaller than the other's, then it updates its current term".
      BecomeFollower(message.term, IsFromLeader(message.type) ? message.from : kNoNode);
    }
  } else if (message.term < term_) {
    StepStaleTerm(message);
    if (config_.check_invariants) CheckInvariants();
    return absl::OkStatus();
  }

  if (IsVoteRequest(message.type)) {
    HandleVoteRequest(message);
  } else {
    (this->*step_)(message);
  }
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

void Raft::StepStaleTerm(const Message& message) {
  if (message.type == MessageType::kAppendEntries || message.type == MessageType::kHeartbeat) {
    // A deposed leader keeps sending until it learns the new term; telling it lets it step
    // down instead of waiting for check-quorum (and a leader from before a partition heal would
    // otherwise never hear of the term that pre-vote kept it from seeing).
    Message reply;
    reply.type = MessageType::kAppendEntriesResponse;
    reply.to = message.from;
    reply.reject = true;
    Send(std::move(reply));
  } else if (IsVoteRequest(message.type)) {
    // Raft figure 2: "Reply false if term < currentTerm", with the current term "for candidate
    // to update itself", so a candidate that fell behind does not climb one term per timeout.
    Message reply;
    reply.type = message.type == MessageType::kRequestVote ? MessageType::kRequestVoteResponse
                                                           : MessageType::kRequestPreVoteResponse;
    reply.to = message.from;
    reply.term = term_;
    reply.reject = true;
    Send(std::move(reply));
  }
  // Anything else from an old term is stale and safely ignored (Raft 5.1).
}

void Raft::HandleVoteRequest(const Message& message) {
  const bool pre_vote = message.type == MessageType::kRequestPreVote;
  // Raft 5.2: "each server will vote for at most one candidate in a given term, on a
  // first-come-first-served basis". Repeating a vote already given is harmless (the reply may
  // have been lost). A pre-vote for a future term promises nothing and may always be given.
  const bool can_vote = voted_for_ == message.from ||
                        (voted_for_ == kNoNode && leader_ == kNoNode) ||
                        (pre_vote && message.term > term_);
  Message reply;
  reply.type = pre_vote ? MessageType::kRequestPreVoteResponse : MessageType::kRequestVoteResponse;
  reply.to = message.from;
  // Raft 5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
  // candidate".
  if (can_vote && log_.IsUpToDate(message.log_index, message.log_term)) {
    // The reply carries the request's term: for a pre-vote that is the future term, which the
    // pre-candidate counts without adopting.
    reply.term = message.term;
    if (!pre_vote) {
      election_elapsed_ = 0;
      voted_for_ = message.from;
    }
  } else {
    reply.term = term_;
    reply.reject = true;
  }
  Send(std::move(reply));
}

void Raft::StepFollower(Message& message) {
  switch (message.type) {
    case MessageType::kAppendEntries:
    case MessageType::kHeartbeat:
    case MessageType::kInstallSnapshot:
      // Election Safety: in one term only one node can be leader, so every leader message of
      // this term comes from the same node.
      SYNOD_ASSERT_MSG(leader_ == kNoNode || leader_ == message.from,
                       "node {} heard from leaders {} and {} in term {}", config_.id, leader_,
                       message.from, term_);
      election_elapsed_ = 0;
      leader_ = message.from;
      if (message.type == MessageType::kAppendEntries) {
        HandleAppendEntries(message);
      } else if (message.type == MessageType::kHeartbeat) {
        HandleHeartbeat(message);
      } else {
        HandleInstallSnapshot(message);
      }
      break;
    case MessageType::kTimeoutNow:
      // Thesis 3.10: the target starts an election at once, without a pre-vote (the leader
      // vouches for it) and with voters told to disregard their lease.
      if (MayCampaign()) StartElection(ElectionKind::kTransfer);
      break;
    case MessageType::kReadIndexResponse:
      read_states_.push_back(ReadState{message.index, std::move(message.read_context)});
      break;
    default:
      // Responses to requests this node made in another role, or a read forwarded by a node
      // that thought we lead: stale, and the requester times out.
      break;
  }
}

void Raft::StepCandidate(Message& message) {
  switch (message.type) {
    case MessageType::kAppendEntries:
    case MessageType::kHeartbeat:
    case MessageType::kInstallSnapshot:
      // Raft 5.2: "If the leader's term ... is at least as large as the candidate's current
      // term, then the candidate recognizes the leader as legitimate and returns to follower
      // state."
      BecomeFollower(term_, message.from);
      StepFollower(message);
      break;
    case MessageType::kRequestPreVoteResponse:
      if (role_ == Role::kPreCandidate) RecordVote(message.from, !message.reject);
      break;
    case MessageType::kRequestVoteResponse:
      if (role_ == Role::kCandidate) RecordVote(message.from, !message.reject);
      break;
    default:
      break;
  }
}

void Raft::StepLeader(Message& message) {
  switch (message.type) {
    case MessageType::kAppendEntriesResponse:
      HandleAppendEntriesResponse(message);
      break;
    case MessageType::kHeartbeatResponse:
      HandleHeartbeatResponse(message);
      break;
    case MessageType::kReadIndex:
      if (progress_.contains(message.from)) {
        // A forwarded read that cannot be queued is dropped; the follower's client times out.
        (void)HandleReadIndexRequest(message.from, std::move(message.read_context));
      }
      break;
    case MessageType::kAppendEntries:
    case MessageType::kHeartbeat:
    case MessageType::kInstallSnapshot:
      SYNOD_ASSERT_MSG(false, "leader {} received a leader message from {} in its term {}",
                       config_.id, message.from, term_);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Follower side of replication.

void Raft::HandleAppendEntries(Message& message) {
  Message reply;
  reply.type = MessageType::kAppendEntriesResponse;
  reply.to = message.from;
  if (message.log_index < log_.committed()) {
    // Everything up to the commit index already matches the leader (Log Matching); say so, and
    // the leader continues from there.
    reply.index = log_.committed();
    Send(std::move(reply));
    return;
  }
  if (!log_.MatchesTerm(message.log_index, message.log_term)) {
    // Raft 5.3: "If a follower's log ... does not contain an entry at prevLogIndex whose term
    // matches prevLogTerm", reject, with a hint that lets the leader skip the conflicting term.
    auto [hint_index, hint_term] =
        log_.FindConflictByTerm(std::min(message.log_index, log_.last_index()), message.log_term);
    reply.index = message.log_index;
    reply.reject = true;
    reply.reject_hint_index = hint_index;
    reply.reject_hint_term = hint_term;
    Send(std::move(reply));
    return;
  }
  const Index last_new = log_.AppendAfter(message.log_index, std::move(message.entries));
  OnMembershipMaybeChanged();
  // Raft figure 2: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
  // last new entry)"; entries past last_new are not yet known to match the leader's.
  log_.CommitTo(std::min(message.commit, last_new));
  reply.index = last_new;
  Send(std::move(reply));
}

void Raft::HandleHeartbeat(const Message& message) {
  // The leader caps a heartbeat's commit at what it knows this follower holds, and within one
  // term an acknowledged entry is never removed, so it is always in the log.
  SYNOD_ASSERT_MSG(message.commit <= log_.last_index(), "heartbeat commit {} beyond last {}",
                   message.commit, log_.last_index());
  log_.CommitTo(message.commit);
  Message reply;
  reply.type = MessageType::kHeartbeatResponse;
  reply.to = message.from;
  reply.read_round = message.read_round;
  Send(std::move(reply));
}

void Raft::HandleInstallSnapshot(Message& message) {
  Snapshot& snapshot = *message.snapshot;
  Message reply;
  reply.type = MessageType::kAppendEntriesResponse;
  reply.to = message.from;
  if (snapshot.meta.index <= log_.committed()) {
    reply.index = log_.committed();
  } else if (log_.MatchesTerm(snapshot.meta.index, snapshot.meta.term)) {
    // Raft 7: "If the follower receives a snapshot that describes a prefix of its log, then
    // log entries covered by the snapshot are deleted but entries following the snapshot are
    // still valid and must be retained." They are known committed, nothing more.
    log_.CommitTo(snapshot.meta.index);
    reply.index = log_.committed();
  } else {
    // Raft 7: "the follower discards its entire log; it is all superseded by the snapshot".
    log_.Restore(std::move(snapshot));
    OnMembershipMaybeChanged();
    reply.index = log_.last_index();
  }
  Send(std::move(reply));
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication.

void Raft::HandleAppendEntriesResponse(const Message& message) {
  auto it = progress_.find(message.from);
  if (it == progress_.end()) return;
  Progress& progress = it->second;
  progress.silent_ticks = 0;

  if (message.reject) {
    // Fast backtracking (Raft 5.3): with the follower's hint, find in our own log the last
    // index whose term is at most the follower's term there; everything after it differs.
    Index retry_after = message.reject_hint_index;
    if (message.reject_hint_term > Term(0)) {
      retry_after =
          log_.FindConflictByTerm(message.reject_hint_index, message.reject_hint_term).first;
    }
    if (progress.MaybeDecrease(message.index, retry_after)) SendAppend(message.from, true);
    return;
  }

  const bool was_paused = progress.IsPaused();
  if (!progress.MaybeUpdate(message.index)) return;
  switch (progress.state()) {
    case Progress::State::kProbe:
      progress.BecomeReplicate();
      break;
    case Progress::State::kSnapshot:
      if (progress.match() >= progress.pending_snapshot()) {
        progress.BecomeProbe();
        progress.BecomeReplicate();
      }
      break;
    case Progress::State::kReplicate:
      break;
  }
  if (MaybeCommit()) {
    OnCommitAdvanced();
  } else if (was_paused) {
    // The follower may have missed a commit index while paused; tell it even with no entries.
    SendAppend(message.from, true);
  }
  if (role_ != Role::kLeader) return;
  // The window may have room for several messages now (after probing, or an acknowledgement
  // that covers several in-flight ones).
  while (SendAppend(message.from, false)) {
  }
  if (message.from == transfer_target_ && progress.match() == log_.last_index()) {
    SendTimeoutNow(message.from);
  }
}

void Raft::HandleHeartbeatResponse(const Message& message) {
  auto it = progress_.find(message.from);
  if (it == progress_.end()) return;
  Progress& progress = it->second;
  progress.silent_ticks = 0;
  progress.OnHeartbeatResponse();
  if (message.read_round > progress.read_round_acked) {
    progress.read_round_acked = message.read_round;
    ReleaseConfirmedReads();
  }
  if (progress.match() < log_.last_index()) SendAppend(message.from, true);
}

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  Progress& progress = progress_.at(to);
  if (progress.IsPaused()) return false;
  const Index prev_index = progress.next().prev();
  const std::optional<Term> prev_term = log_.TermAt(prev_index);
  if (!prev_term.has_value()) return MaybeSendSnapshot(to, progress);

  std::vector<Entry> entries;
  if (progress.next() <= log_.last_index()) {
    entries = log_.Slice(progress.next(), config_.append_entries_bytes_max);
  }
  if (entries.empty() && !send_if_empty) return false;
  if (entries.empty()) {
    progress.SentProbe();
  } else {
    progress.SentEntries(entries.back().index);
  }
  Message message;
  message.type = MessageType::kAppendEntries;
  message.to = to;
  message.log_index = prev_index;
  message.log_term = *prev_term;
  message.entries = std::move(entries);
  message.commit = log_.committed();
  Send(std::move(message));
  return true;
}

bool Raft::MaybeSendSnapshot(NodeId to, Progress& progress) {
  // A follower that has not answered lately may be down; a snapshot can be large, so wait until
  // it shows signs of life (any answer resets silent_ticks).
  if (progress.silent_ticks >= config_.election_timeout_ticks) return false;
  const Snapshot& snapshot = log_.snapshot();
  SYNOD_ASSERT(snapshot.meta.index >= log_.prev_index());
  Message message;
  message.type = MessageType::kInstallSnapshot;
  message.to = to;
  message.snapshot = snapshot;
  Send(std::move(message));
  progress.BecomeSnapshot(snapshot.meta.index);
  return true;
}

void Raft::BroadcastAppend() {
  for (auto& [id, progress] : progress_) SendAppend(id, true);
}

void Raft::BroadcastHeartbeat() {
  for (auto& [id, progress] : progress_) SendHeartbeat(id);
}

void Raft::SendHeartbeat(NodeId to) {
  const Progress& progress = progress_.at(to);
  Message message;
  message.type = MessageType::kHeartbeat;
  message.to = to;
  message.commit = std::min(progress.match(), log_.committed());
  message.read_round = read_round_;
  Send(std::move(message));
}

Index Raft::SelfMatch() const {
  // The leader counts only what it has made durable (thesis 10.2.1).
  return log_.stable();
}

bool Raft::MaybeCommit() {
  SYNOD_ASSERT(role_ == Role::kLeader);
  const Membership& membership = log_.membership();
  std::vector<Index> matches;
  matches.reserve(membership.voters.size());
  for (NodeId voter : membership.voters) {
    matches.push_back(voter == config_.id ? SelfMatch() : progress_.at(voter).match());
  }
  const Index quorum_match = base::QuorumValue(std::move(matches), membership.QuorumSize());
  if (quorum_match <= log_.committed()) return false;
#ifdef SYNOD_BROKEN_COMMIT_PREVIOUS_TERM
    // Deliberately broken build: commits entries of earlier terms by counting replicas, the
    // mistake Raft 5.4.2 and figure 8 warn about.
#else
  // Raft 5.4.2: "Only log entries from the leader's current term are committed by counting
  // replicas"; earlier entries are committed indirectly by the Log Matching Property.
  if (*log_.TermAt(quorum_match) != term_) return false;
#endif
  log_.CommitTo(quorum_match);
  return true;
}

void Raft::OnCommitAdvanced() {
  SYNOD_ASSERT(role_ == Role::kLeader);
  if (!IsVoter() && log_.membership_index() <= log_.committed()) {
    // Thesis 4.2.2: a leader removed from the configuration "steps down ... once the Cnew entry
    // is committed". It hands over to the most up-to-date voter so the cluster need not wait
    // for an election timeout.
    NodeId successor;
    Index best;
    for (const auto& [id, progress] : progress_) {
      if (!progress.is_learner() && (successor == kNoNode || progress.match() > best)) {
        successor = id;
        best = progress.match();
      }
    }
    if (successor != kNoNode) SendTimeoutNow(successor);
    BecomeFollower(term_, kNoNode);
    return;
  }
  // Followers learn the new commit index from the next AppendEntries.
  BroadcastAppend();
}

void Raft::SendTimeoutNow(NodeId to) {
  Message message;
  message.type = MessageType::kTimeoutNow;
  message.to = to;
  Send(std::move(message));
}

void Raft::AbortTransfer() {
  transfer_target_ = kNoNode;
}

// ---------------------------------------------------------------------------------------------
// Elections.

bool Raft::MayCampaign() const {
  return IsVoter() || log_.MembershipAt(log_.committed()).IsVoter(config_.id);
}

void Raft::StartElection(ElectionKind kind) {
  SYNOD_ASSERT(MayCampaign());
  SYNOD_ASSERT(role_ != Role::kLeader);
  MessageType request_type;
  Term election_term;
  Role expected_role;
  if (kind == ElectionKind::kPreVote) {
    BecomePreCandidate();
    request_type = MessageType::kRequestPreVote;
    election_term = term_.next();
    expected_role = Role::kPreCandidate;
  } else {
    BecomeCandidate();
    request_type = MessageType::kRequestVote;
    election_term = term_;
    expected_role = Role::kCandidate;
  }
  election_elapsed_ = 0;
  randomized_election_timeout_ = RandomizedElectionTimeout();
  RecordVote(config_.id, true);
  // A one-voter cluster has already won.
  if (role_ != expected_role) return;
  for (NodeId voter : log_.membership().voters) {
    if (voter == config_.id) continue;
    Message request;
    request.type = request_type;
    request.to = voter;
    request.term = election_term;
    request.log_index = log_.last_index();
    request.log_term = log_.last_term();
    request.leadership_transfer = kind == ElectionKind::kTransfer;
    Send(std::move(request));
  }
}

void Raft::RecordVote(NodeId voter, bool granted) {
  const Membership& membership = log_.membership();
  if (!membership.IsVoter(voter)) return;
  votes_.emplace(voter, granted);
  size_t granted_count = 0;
  size_t rejected_count = 0;
  for (const auto& [id, vote] : votes_) {
    if (!membership.IsVoter(id)) continue;
    (vote ? granted_count : rejected_count) += 1;
  }
  const size_t quorum = membership.QuorumSize();
  if (granted_count >= quorum) {
    // Raft 5.2: "A candidate wins an election if it receives votes from a majority of the
    // servers in the full cluster for the same term."
    if (role_ == Role::kPreCandidate) {
      StartElection(ElectionKind::kElection);
    } else {
      BecomeLeader();
    }
  } else if (membership.voters.size() - rejected_count < quorum) {
    BecomeFollower(term_, kNoNode);
  }
}

// ---------------------------------------------------------------------------------------------
// Client requests.

bool Raft::CommittedInCurrentTerm() const {
  return log_.TermAt(log_.committed()) == term_;
}

Status Raft::NotLeaderError() const {
  return absl::FailedPreconditionError(
      leader_ == kNoNode ? std::string("no leader")
                         : fmt::format("not the leader; the leader is node {}", leader_));
}

Status Raft::CheckAcceptsProposals() const {
  if (role_ != Role::kLeader) return NotLeaderError();
  // Thesis 3.10: during a transfer the leader stops accepting client requests, which would
  // otherwise keep the target from catching up.
  if (transfer_target_ != kNoNode) {
    return absl::FailedPreconditionError(
        fmt::format("leadership transfer to node {} in progress", transfer_target_));
  }
  return absl::OkStatus();
}

Result<LogPosition> Raft::Propose(std::string data) {
  if (Status status = CheckAcceptsProposals(); !status.ok()) return status;
  if (log_.last_index().distance_from(log_.committed()) >= config_.uncommitted_entries_max) {
    return absl::ResourceExhaustedError("too many uncommitted entries");
  }
  const LogPosition position{log_.last_index().next(), term_};
  log_.Append(Entry{term_, position.index, EntryType::kNormal, std::move(data), {}});
  // Entries proposed before the next Ready go out together in one AppendEntries per follower.
  broadcast_pending_ = true;
  if (config_.check_invariants) CheckInvariants();
  return position;
}

Result<LogPosition> Raft::ProposeConfChange(ConfChange change) {
  if (Status status = CheckAcceptsProposals(); !status.ok()) return status;
  // Thesis errata (single-server changes): "a leader may not append a new configuration entry
  // until it has committed an entry from its current term", or two changes decided by disjoint
  // majorities of different terms could both take effect.
  if (!CommittedInCurrentTerm()) {
    return absl::UnavailableError("the leader has not yet committed an entry of its term");
  }
  // Thesis 4.1: one change at a time; the next waits until the previous one is committed.
  if (log_.membership_index() > log_.committed()) {
    return absl::FailedPreconditionError("a configuration change is already in progress");
  }
  if (change.type == ConfChangeType::kPromoteLearner && log_.membership().IsLearner(change.node)) {
    // Thesis 4.2.1: a new server joins as a non-voting member until it has caught up, so that
    // it does not stall commitment while it copies the log.
    const Index match = progress_.at(change.node).match();
    if (match.plus(config_.learner_promotion_lag_max) < log_.last_index()) {
      return absl::FailedPreconditionError(
          fmt::format("learner {} is not caught up (matched {} of {})", change.node, match,
                      log_.last_index()));
    }
  }
  Result<Membership> after = MembershipAfter(log_.membership(), change);
  if (!after.ok()) return after.status();
  Membership next = std::move(*after);
  SYNOD_ASSERT(next.IsWellFormed());
  const LogPosition position{log_.last_index().next(), term_};
  log_.Append(
      Entry{term_, position.index, EntryType::kConfig, std::move(change.context), std::move(next)});
  // Thesis 4.1: the new configuration takes effect on append, before it commits.
  OnMembershipMaybeChanged();
  broadcast_pending_ = role_ == Role::kLeader;
  if (config_.check_invariants) CheckInvariants();
  return position;
}

Status Raft::ReadIndex(std::string context) {
  Status status = absl::OkStatus();
  if (role_ == Role::kLeader) {
    status = HandleReadIndexRequest(config_.id, std::move(context));
  } else if (leader_ == kNoNode) {
    status = absl::UnavailableError("no leader");
  } else {
    Message message;
    message.type = MessageType::kReadIndex;
    message.to = leader_;
    message.read_context = std::move(context);
    Send(std::move(message));
  }
  if (config_.check_invariants) CheckInvariants();
  return status;
}

Status Raft::HandleReadIndexRequest(NodeId requester, std::string context) {
  SYNOD_ASSERT(role_ == Role::kLeader);
  if (reads_unassigned_.size() + reads_waiting_.size() >= config_.pending_reads_max) {
    return absl::ResourceExhaustedError("too many pending reads");
  }
#ifdef SYNOD_BROKEN_READ_WITHOUT_QUORUM
  // Deliberately broken build: the leader answers reads from its commit index without
  // confirming it is still the leader, so a deposed leader serves stale reads (thesis 6.4).
  ReleaseRead(requester, log_.committed(), std::move(context));
  return absl::OkStatus();
#endif
  const Membership& membership = log_.membership();
  if (membership.voters.size() == 1 && membership.voters[0] == config_.id &&
      CommittedInCurrentTerm()) {
    // A one-voter cluster is its own quorum.
    ReleaseRead(requester, log_.committed(), std::move(context));
    return absl::OkStatus();
  }
  reads_unassigned_.push_back(PendingRead{requester, Index(0), 0, std::move(context)});
  return absl::OkStatus();
}

void Raft::StartReadRound() {
  // Thesis 6.4: "If the leader has not yet marked an entry from its current term committed, it
  // waits until it has done so" (its commit index may be behind until then). Then the read
  // index is the current commit index, and leadership is confirmed by a heartbeat round.
  if (role_ != Role::kLeader || reads_unassigned_.empty() || !CommittedInCurrentTerm()) return;
  ++read_round_;
  for (PendingRead& read : reads_unassigned_) {
    read.index = log_.committed();
    read.round = read_round_;
    reads_waiting_.push_back(std::move(read));
  }
  reads_unassigned_.clear();
  BroadcastHeartbeat();
  ReleaseConfirmedReads();
}

void Raft::ReleaseConfirmedReads() {
  if (reads_waiting_.empty()) return;
  const Membership& membership = log_.membership();
  std::vector<uint64_t> acked;
  acked.reserve(membership.voters.size());
  for (NodeId voter : membership.voters) {
    acked.push_back(voter == config_.id ? read_round_ : progress_.at(voter).read_round_acked);
  }
  const uint64_t confirmed = base::QuorumValue(std::move(acked), membership.QuorumSize());
  size_t released = 0;
  while (released < reads_waiting_.size() && reads_waiting_[released].round <= confirmed) {
    PendingRead& read = reads_waiting_[released];
    ReleaseRead(read.requester, read.index, std::move(read.context));
    ++released;
  }
  reads_waiting_.erase(reads_waiting_.begin(),
                       reads_waiting_.begin() + static_cast<std::ptrdiff_t>(released));
}

void Raft::ReleaseRead(NodeId requester, Index index, std::string context) {
  if (requester == config_.id) {
    read_states_.push_back(ReadState{index, std::move(context)});
    return;
  }
  Message message;
  message.type = MessageType::kReadIndexResponse;
  message.to = requester;
  message.index = index;
  message.read_context = std::move(context);
  Send(std::move(message));
}

Status Raft::TransferLeadership(NodeId target) {
  if (role_ != Role::kLeader) return NotLeaderError();
  if (target == config_.id) return absl::OkStatus();
  if (!log_.membership().IsVoter(target)) {
    return absl::InvalidArgumentError(fmt::format("node {} is not a voter", target));
  }
  if (transfer_target_ == target) return absl::OkStatus();
  transfer_target_ = target;
  // The transfer must finish within an election timeout (TickHeartbeat aborts it).
  election_elapsed_ = 0;
  if (progress_.at(target).match() == log_.last_index()) {
    SendTimeoutNow(target);
  } else {
    SendAppend(target, true);
  }
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

Status Raft::Campaign() {
  if (role_ == Role::kLeader) return absl::FailedPreconditionError("already the leader");
  if (!MayCampaign()) return absl::FailedPreconditionError("not a voter");
  StartElection(config_.pre_vote ? ElectionKind::kPreVote : ElectionKind::kElection);
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

Status Raft::SetSnapshot(Index index, std::string data) {
  if (index > log_.applied()) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot index {} is beyond the applied index {}", index, log_.applied()));
  }
  if (index < log_.snapshot().meta.index || index < log_.prev_index()) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot index {} is older than the current snapshot", index));
  }
  log_.SetSnapshot(index, std::move(data));
  return absl::OkStatus();
}

Status Raft::CompactLog(Index index) {
  if (index > log_.snapshot().meta.index) {
    return absl::InvalidArgumentError(fmt::format("cannot compact to {} beyond the snapshot at {}",
                                                  index, log_.snapshot().meta.index));
  }
  log_.Compact(index);
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Membership.

void Raft::OnMembershipMaybeChanged() {
  if (role_ != Role::kLeader) return;
  const Membership& membership = log_.membership();
  std::erase_if(progress_, [&](const auto& item) { return !membership.IsMember(item.first); });
  for (const std::vector<NodeId>* members : {&membership.voters, &membership.learners}) {
    for (NodeId member : *members) {
      if (member == config_.id) continue;
      auto [it, inserted] = progress_.try_emplace(member, log_.last_index().next(),
                                                  config_.inflight_messages_max, false);
      it->second.set_learner(membership.IsLearner(member));
      // Probe a new member at once rather than at the next heartbeat answer, so it starts
      // catching up now (thesis 4.2.1).
      if (inserted) SendAppend(member, true);
    }
  }
  if (transfer_target_ != kNoNode && !membership.IsVoter(transfer_target_)) AbortTransfer();
  // A smaller or different quorum may already agree on more.
  ReleaseConfirmedReads();
  if (MaybeCommit()) OnCommitAdvanced();
}

// ---------------------------------------------------------------------------------------------
// Ready.

void Raft::Send(Message message) {
  message.from = config_.id;
  // Votes and their answers carry an explicit term (a pre-vote's is the future one).
  const bool explicit_term = message.type == MessageType::kRequestVote ||
                             message.type == MessageType::kRequestPreVote ||
                             message.type == MessageType::kRequestVoteResponse ||
                             message.type == MessageType::kRequestPreVoteResponse;
  if (!explicit_term) message.term = term_;
  outbox_.push_back(std::move(message));
}

bool Raft::TermOrVoteUnreported() const {
  return term_ != last_hard_state_.term || voted_for_ != last_hard_state_.voted_for;
}

bool Raft::HasReady() const {
  if (in_flight_.has_value()) return false;
  if (SoftState{role_, leader_} != last_soft_state_) return true;
  if (TermOrVoteUnreported()) return true;
  if (log_.pending_snapshot().has_value()) return true;
  if (log_.stable() < log_.last_index()) return true;
  if (log_.committed() > log_.applied()) return true;
  if (!outbox_.empty() || !read_states_.empty() || broadcast_pending_) return true;
  return role_ == Role::kLeader && !reads_unassigned_.empty() && CommittedInCurrentTerm();
}

Ready Raft::TakeReady() {
  SYNOD_ASSERT_MSG(!in_flight_.has_value(), "TakeReady before Advance of the previous Ready");
  if (role_ == Role::kLeader) {
    StartReadRound();
    if (broadcast_pending_) {
      for (auto& [id, progress] : progress_) SendAppend(id, false);
    }
  }
  broadcast_pending_ = false;

  Ready ready;
  const SoftState soft_state{role_, leader_};
  if (soft_state != last_soft_state_) {
    ready.soft_state = soft_state;
    last_soft_state_ = soft_state;
  }
  InFlightReady in_flight;
  if (log_.pending_snapshot().has_value()) {
    ready.snapshot = *log_.pending_snapshot();
    in_flight.snapshot_index = ready.snapshot->meta.index;
    log_.ClearPendingSnapshot();
  }
  for (Index index = log_.stable().next(); index <= log_.last_index(); index = index.next()) {
    ready.entries.push_back(log_.At(index));
  }
  if (!ready.entries.empty()) {
    in_flight.last_entry = LogPosition{ready.entries.back().index, ready.entries.back().term};
  }
  // The commit index is volatile state (Raft Figure 2): a hard state that differs from the
  // last one handed out only in its commit index waits for the next Ready that must be made
  // durable anyway, for entries, a snapshot, or a new term or vote. Committing then costs no
  // fsync of its own (etcd raft's MustSync draws the same line). After a crash the commit index
  // is relearned from the leader, and PersistentState::applied may run ahead of the durable one.
  const HardState hard = hard_state();
  if (hard != last_hard_state_ &&
      (TermOrVoteUnreported() || ready.snapshot.has_value() || !ready.entries.empty())) {
    ready.hard_state = hard;
    last_hard_state_ = hard;
  }
  // Every committed entry handed out here is durable once this Ready is persisted: it is
  // either stable already or among ready.entries.
  uint64_t bytes = 0;
  for (Index index = log_.applied().next(); index <= log_.committed(); index = index.next()) {
    const Entry& entry = log_.At(index);
    bytes += entry.data.size();
    if (!ready.committed_entries.empty() && bytes > config_.committed_entries_bytes_max) break;
    ready.committed_entries.push_back(entry);
    in_flight.last_committed = index;
  }
  for (Message& message : outbox_) {
    // Thesis 10.2.1: replication traffic of a leader whose term is durable may overtake the
    // leader's own fsync.
    const bool early =
        role_ == Role::kLeader && message.term == durable_term_ &&
        (message.type == MessageType::kAppendEntries || message.type == MessageType::kHeartbeat ||
         message.type == MessageType::kInstallSnapshot);
    (early ? ready.early_messages : ready.messages).push_back(std::move(message));
  }
  outbox_.clear();
  ready.read_states = std::move(read_states_);
  read_states_.clear();
  in_flight.hard_state = last_hard_state_;
  in_flight_ = std::move(in_flight);
  if (config_.check_invariants) CheckInvariants();
  return ready;
}

void Raft::Advance() {
  SYNOD_ASSERT_MSG(in_flight_.has_value(), "Advance without a Ready");
  const InFlightReady done = std::move(*in_flight_);
  in_flight_.reset();
  if (done.last_entry.has_value()) log_.StableTo(done.last_entry->index, done.last_entry->term);
  if (done.last_committed > Index(0)) log_.AppliedTo(done.last_committed);
  durable_term_ = done.hard_state.term;
  if (role_ == Role::kLeader && MaybeCommit()) OnCommitAdvanced();
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------------------------------------
// Invariants.

void Raft::CheckInvariants() {
  SYNOD_ASSERT(log_.prev_index() <= log_.applied());
  SYNOD_ASSERT(log_.applied() <= log_.committed());
  SYNOD_ASSERT(log_.committed() <= log_.last_index());
  SYNOD_ASSERT(log_.stable() <= log_.last_index());
  SYNOD_ASSERT_MSG(log_.last_term() <= term_, "last log term {} beyond current term {}",
                   log_.last_term(), term_);
  SYNOD_ASSERT(log_.membership().IsWellFormed());
  SYNOD_ASSERT(durable_term_ <= term_);
  switch (role_) {
    case Role::kLeader: {
      SYNOD_ASSERT(leader_ == config_.id);
      SYNOD_ASSERT(voted_for_ == config_.id);
      SYNOD_ASSERT(step_ == &Raft::StepLeader);
      size_t members = 0;
      const Membership& membership = log_.membership();
      for (const std::vector<NodeId>* ids : {&membership.voters, &membership.learners}) {
        for (NodeId member : *ids) {
          if (member == config_.id) continue;
          ++members;
          auto it = progress_.find(member);
          SYNOD_ASSERT_MSG(it != progress_.end(), "leader has no progress for member {}", member);
          SYNOD_ASSERT(it->second.is_learner() == membership.IsLearner(member));
          SYNOD_ASSERT(it->second.match() < it->second.next());
          SYNOD_ASSERT(it->second.match() <= log_.last_index());
        }
      }
      SYNOD_ASSERT(progress_.size() == members);
      for (const PendingRead& read : reads_waiting_) SYNOD_ASSERT(read.round <= read_round_);
      break;
    }
    case Role::kCandidate:
      SYNOD_ASSERT(voted_for_ == config_.id);
      SYNOD_ASSERT(leader_ == kNoNode);
      break;
    case Role::kPreCandidate:
      SYNOD_ASSERT(leader_ == kNoNode);
      break;
    case Role::kFollower:
      SYNOD_ASSERT(leader_ != config_.id);
      break;
  }
  if (role_ != Role::kLeader) {
    SYNOD_ASSERT(progress_.empty());
    SYNOD_ASSERT(transfer_target_ == kNoNode);
    SYNOD_ASSERT(reads_unassigned_.empty() && reads_waiting_.empty());
  }
  // Delta checks against the previous call.
  SYNOD_ASSERT_MSG(term_ >= observed_.term, "term went back from {} to {}", observed_.term, term_);
  if (term_ == observed_.term && observed_.voted_for != kNoNode) {
    SYNOD_ASSERT_MSG(voted_for_ == observed_.voted_for, "vote changed from {} to {} in term {}",
                     observed_.voted_for, voted_for_, term_);
  }
  SYNOD_ASSERT_MSG(log_.committed() >= observed_.commit, "commit went back from {} to {}",
                   observed_.commit, log_.committed());
  observed_ = {term_, voted_for_, log_.committed()};
}

}  // namespace synod::raft
