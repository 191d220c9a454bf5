#include "consensus/multipaxos/multipaxos.h"

#include <algorithm>

#include "base/assert.h"
#include "base/quorum.h"

namespace synod::multipaxos {
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
  if (config.message_entries_max == 0 || config.catch_up_messages_max == 0 ||
      config.uncommitted_entries_max == 0 ||
      config.pending_reads_max == 0 || config.alpha_slots == 0) {
    return absl::InvalidArgumentError("every limit must be positive");
  }
  return absl::OkStatus();
}

Result<std::unique_ptr<MultiPaxos>> MultiPaxos::Create(const Config& config,
                                                       PersistentState state) {
  if (Status status = Validate(config); !status.ok()) return status;
  const Membership& membership = state.snapshot.meta.membership;
  if (!membership.IsWellFormed()) {
    return absl::InvalidArgumentError("the snapshot's membership is not well-formed");
  }
  const Index snapshot_index = state.snapshot.meta.index;
  if (state.applied.has_value() && *state.applied < snapshot_index) {
    return absl::InvalidArgumentError("applied index below the snapshot's index");
  }
  // The durable commit index lags (see Ready::hard_state), but the snapshot and whatever the
  // caller applied hold chosen slots only, and every slot handed out as committed was durable
  // before it was applied: the commit index is at least both.
  state.hard_state.commit =
      std::max({state.hard_state.commit, snapshot_index, state.applied.value_or(Index())});
  Index previous = snapshot_index;
  for (const Slot& slot : state.slots) {
    if (slot.value.index <= previous) {
      return absl::InvalidArgumentError(
          fmt::format("slots not ascending above the snapshot at slot {}", slot.value.index));
    }
    if (slot.accepted > state.hard_state.promised) {
      return absl::InvalidArgumentError(
          fmt::format("slot {} accepted above the promise", slot.value.index));
    }
    previous = slot.value.index;
  }
  // Every chosen slot must be stored: the commit index says the caller persisted it.
  Index expected = snapshot_index.next();
  for (const Slot& slot : state.slots) {
    if (slot.value.index != expected || expected > state.hard_state.commit) break;
    expected = expected.next();
  }
  if (expected <= state.hard_state.commit) {
    return absl::InvalidArgumentError(
        fmt::format("chosen slot {} (<= commit {}) is not stored", expected,
                    state.hard_state.commit));
  }
  return std::unique_ptr<MultiPaxos>(new MultiPaxos(config, std::move(state)));
}

MultiPaxos::MultiPaxos(const Config& config, PersistentState state)
    : config_(config),
      prng_(config.seed),
      promised_(state.hard_state.promised),
      commit_(state.hard_state.commit),
      snapshot_(std::move(state.snapshot)),
      compacted_(snapshot_.meta.index),
      applied_(state.applied.value_or(snapshot_.meta.index)) {
  for (Slot& slot : state.slots) {
    // A value learned as chosen but whose commit index did not reach the disk is not known
    // chosen after all; it was never accepted by this acceptor, so it is dropped.
    if (slot.accepted.IsNone() && slot.value.index > commit_) continue;
    const Index index = slot.value.index;
    slots_.emplace(index, std::move(slot));
  }
  configs_.emplace(compacted_.next(), snapshot_.meta.membership);
  configs_scanned_ = compacted_;
  membership_index_ = compacted_;
  RecordChosenConfigs();
#ifdef SYNOD_BROKEN_FORGET_PROMISE
  // Deliberately broken build: a restarted acceptor forgets its promise and keeps only what it
  // accepted (PMS 2.3: "an acceptor must remember this information even if it fails and then
  // restarts"), so it may accept or promise below a ballot it promised before the crash.
  promised_ = BallotNumber{};
  for (const auto& [index, stored] : slots_) promised_ = std::max(promised_, stored.accepted);
#endif
  round_seen_ = promised_.round;
  BecomeFollower(kNoNode);
  last_soft_state_ = {role_, leader_};
  last_hard_state_ = hard_state();
  durable_promise_ = promised_;
  observed_ = {promised_, commit_, std::nullopt};
  if (const Slot* at_commit = slot(commit_)) observed_.commit_value = at_commit->value;
}

const Slot* MultiPaxos::slot(Index index) const {
  auto it = slots_.find(index);
  return it == slots_.end() ? nullptr : &it->second;
}

std::vector<NodeId> MultiPaxos::Peers() const {
  std::set<NodeId> peers;
  for (auto it = std::prev(configs_.upper_bound(commit_.next())); it != configs_.end(); ++it) {
    for (const std::vector<NodeId>* ids : {&it->second.voters, &it->second.learners}) {
      peers.insert(ids->begin(), ids->end());
    }
  }
  peers.erase(config_.id);
  return {peers.begin(), peers.end()};
}

// ---------------------------------------------------------------------------------------------
// Membership: the α rule (PMS 3; Lamport, Malkhi, Zhou 2010, section 3).

const Membership& MultiPaxos::MembershipFor(Index slot) const {
  auto it = configs_.upper_bound(slot);
  SYNOD_ASSERT_MSG(it != configs_.begin(), "no configuration known for slot {}", slot);
  return std::prev(it)->second;
}

void MultiPaxos::RecordChosenConfigs() {
  while (configs_scanned_ < commit_) {
    configs_scanned_ = configs_scanned_.next();
    const Slot& chosen = slots_.at(configs_scanned_);
    if (chosen.value.type != EntryType::kConfig) continue;
    membership_index_ = configs_scanned_;
    const Membership& before = configs_.rbegin()->second;
    const Membership& after = chosen.value.membership;
    for (const std::vector<NodeId>* ids : {&before.voters, &before.learners}) {
      for (NodeId id : *ids) {
        if (!after.IsMember(id)) removed_.insert(id);
      }
    }
    for (const std::vector<NodeId>* ids : {&after.voters, &after.learners}) {
      for (NodeId id : *ids) removed_.erase(id);
    }
#ifdef SYNOD_BROKEN_SKIP_ALPHA
    // Deliberately broken build: a chosen configuration governs the very next slot, although
    // slots up to i + α may already be in flight, proposed and counted under the old one by
    // this leader or another, so two slots' quorums of different configurations need not meet.
    configs_[configs_scanned_.next()] = chosen.value.membership;
#else
    configs_[configs_scanned_.plus(config_.alpha_slots)] = chosen.value.membership;
#endif
  }
}

std::vector<const Membership*> MultiPaxos::WindowConfigs() const {
  std::vector<const Membership*> window;
  const Index last = commit_.plus(config_.alpha_slots);
  for (auto it = std::prev(configs_.upper_bound(commit_.next()));
       it != configs_.end() && it->first <= last; ++it) {
    window.push_back(&it->second);
  }
  return window;
}

bool MultiPaxos::MajorityOfEveryWindowConfig(const std::set<NodeId>& nodes) const {
  for (const Membership* config : WindowConfigs()) {
    const size_t votes = std::count_if(config->voters.begin(), config->voters.end(),
                                       [&nodes](NodeId voter) { return nodes.contains(voter); });
    if (votes < config->QuorumSize()) return false;
  }
  return true;
}

bool MultiPaxos::IsVoterOfNextSlot() const {
  return MembershipFor(commit_.next()).IsVoter(config_.id);
}

bool MultiPaxos::IsVoterAboveCommit(NodeId node) const {
  for (auto it = std::prev(configs_.upper_bound(commit_.next())); it != configs_.end(); ++it) {
    if (it->second.IsVoter(node)) return true;
  }
  return false;
}

bool MultiPaxos::WithinAlphaWindow(Index index) const {
  return index <= commit_.plus(config_.alpha_slots);
}

void MultiPaxos::AfterLeaderCommitAdvanced() {
  SYNOD_ASSERT(role_ == Role::kLeader);
  RecordChosenConfigs();
  // A change brought a configuration into the α window whose majority has not promised this
  // ballot: the slots it governs need a phase 1 among its voters first. (Slots already in
  // flight are not among them: a change chosen in slot i > the old commit index governs from
  // i + α, beyond every slot proposed so far.)
  if (!MajorityOfEveryWindowConfig(promised_by_)) {
    Campaign();
    return;
  }
  // The α window is full: nothing more to propose until more is chosen.
  if (!WithinAlphaWindow(next_slot_)) return;
  // Raft thesis 4.2.2, for Paxos: a leader removed by a change now in effect finishes the slots
  // it proposed (their configuration includes it) and then steps down.
  if (!MembershipFor(next_slot_).IsVoter(config_.id)) {
    if (proposals_.empty()) BecomeFollower(kNoNode);
    return;
  }
  std::vector<Entry> values;
  Index index = next_slot_;
  auto may_propose = [this, &index] {
    return WithinAlphaWindow(index) && MembershipFor(index).IsVoter(config_.id);
  };
  // The rest of phase 1's window, as the α window reaches it.
  while (!window_deferred_.empty() && may_propose()) {
    SYNOD_ASSERT(window_deferred_.begin()->first == index);
    values.push_back(std::move(window_deferred_.begin()->second));
    window_deferred_.erase(window_deferred_.begin());
    index = index.next();
  }
  // A chosen change takes effect α slots after its own; no-ops fill the slots up to there, so a
  // quiet group does not wait for α client commands (PMS 3 suggests the same for α).
  const Index effective = configs_.rbegin()->first;
  while (window_deferred_.empty() && index < effective && may_propose()) {
    values.push_back(Entry{Term(ballot_.round.value()), index, EntryType::kEmpty, {}, {}});
    index = index.next();
  }
  ProposeInBallot(std::move(values));
}

// ---------------------------------------------------------------------------------------------
// Roles.

uint32_t MultiPaxos::RandomizedElectionTimeout() {
  return config_.election_timeout_ticks +
         static_cast<uint32_t>(prng_.Below(config_.election_timeout_ticks));
}

void MultiPaxos::ResetElectionTimer() {
  election_elapsed_ = 0;
  randomized_election_timeout_ = RandomizedElectionTimeout();
}

void MultiPaxos::BecomeFollower(NodeId leader) {
  role_ = Role::kFollower;
  leader_ = leader;
  ResetElectionTimer();
  phase_one_ = {};
  heard_since_check_.clear();
  promised_by_.clear();
  window_deferred_.clear();
  proposals_.clear();
  followers_.clear();
  reads_unassigned_.clear();
  reads_waiting_.clear();
  transfer_target_ = kNoNode;
  transfer_elapsed_ticks_ = 0;
  timeout_now_sent_ = false;
}

void MultiPaxos::Campaign() { RunPhaseOne(/*leadership_transfer=*/false); }

void MultiPaxos::RunPhaseOne(bool leadership_transfer) {
  // Only a voter of the first slot it does not know chosen runs phase 1 (a learner, a node that
  // has not yet learned it joined, and a removed node do not).
  if (!IsVoterOfNextSlot()) {
    BecomeFollower(kNoNode);
    return;
  }
  // PMS 2.4: a proposer "can always choose a larger number than any it has seen", and the
  // (round, id) pair keeps it distinct from every other proposer's.
  round_seen_ = std::max(round_seen_, promised_.round).next();
  BecomeFollower(kNoNode);
  role_ = Role::kCandidate;
  ballot_ = BallotNumber{round_seen_, config_.id};
  // PMS 3: one phase 1 for every instance from the first one this node has not learned chosen.
  Message prepare;
  prepare.type = MessageType::kPrepare;
  prepare.ballot = ballot_;
  prepare.index = commit_.next();
  prepare.leadership_transfer = leadership_transfer;
  // Its own acceptor promises first: the promise is in this Ready, durable before any peer can
  // see the ballot, so a restarted node never reuses it (its rounds start above the promise).
  prepare.from = prepare.to = config_.id;
  HandlePrepare(prepare);
  SYNOD_ASSERT(promised_ == ballot_);
  for (NodeId peer : Peers()) {
    prepare.to = peer;
    Send(prepare);
  }
}

void MultiPaxos::BecomeLeader() {
  SYNOD_ASSERT(role_ == Role::kCandidate);
  SYNOD_ASSERT(MajorityOfEveryWindowConfig(phase_one_.promised_by));
  PhaseOne learned = std::move(phase_one_);
  role_ = Role::kLeader;
  leader_ = config_.id;
  heartbeat_elapsed_ = 0;
  election_elapsed_ = 0;
  heard_since_check_.clear();
  promised_by_ = learned.promised_by;
  for (NodeId follower : Peers()) {
    FollowerState& state = followers_[follower];
    if (auto it = learned.commits.find(follower); it != learned.commits.end()) {
      state.commit = it->second;
    }
  }
  Index window_end = commit_;
  if (!learned.highest_accepted.empty()) {
    window_end = std::max(window_end, learned.highest_accepted.rbegin()->first);
  }
  if (!learned.chosen.empty()) window_end = std::max(window_end, learned.chosen.rbegin()->first);
  phase_one_end_ = window_end;
  previous_heartbeat_commit_ = last_heartbeat_commit_ = commit_;
  announced_commit_.reset();
  next_slot_ = commit_.next();
  broadcast_from_ = next_slot_;
  // PMS 3: for every slot of the window, the value phase 1 requires (P2c: the highest ballot's
  // value; a value some acceptor already knows chosen is that value), else a no-op. Slots
  // beyond the α window wait until the commit index reaches them (AfterLeaderCommitAdvanced).
  std::vector<Entry> values;
  for (Index index = commit_.next(); index <= window_end; index = index.next()) {
    std::optional<Entry> value;
#ifndef SYNOD_BROKEN_IGNORE_ACCEPTED_VALUES
    if (auto chosen = learned.chosen.find(index); chosen != learned.chosen.end()) {
      value = chosen->second;
    } else if (auto accepted = learned.highest_accepted.find(index);
               accepted != learned.highest_accepted.end()) {
      value = accepted->second.value;
    }
#endif
    // In the deliberately broken build the new leader ignores what phase 1 reported (violating
    // PMS 2.2's P2c) and fills the whole window with no-ops, overwriting chosen commands.
    if (!value.has_value()) {
      value = Entry{Term(ballot_.round.value()), index, EntryType::kEmpty, {}, {}};
    }
    if (window_deferred_.empty() && WithinAlphaWindow(index) &&
        MembershipFor(index).IsVoter(config_.id)) {
      values.push_back(std::move(*value));
    } else {
      window_deferred_.emplace(index, std::move(*value));
    }
  }
  ProposeInBallot(std::move(values));
  AfterLeaderCommitAdvanced();
}

void MultiPaxos::Follow(const BallotNumber& ballot) {
  SYNOD_ASSERT(ballot >= promised_);
  if (ballot > promised_) promised_ = ballot;
  if ((role_ != Role::kFollower && ballot != ballot_) || leader_ != ballot.proposer) {
    BecomeFollower(ballot.proposer);
  }
  election_elapsed_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Time.

void MultiPaxos::Tick() {
  if (role_ == Role::kLeader) {
    if (++heartbeat_elapsed_ >= config_.heartbeat_interval_ticks) {
      heartbeat_elapsed_ = 0;
      SendHeartbeats();
    }
    // Raft thesis 6.2: "if an election timeout elapses without a successful round of
    // heartbeats to a majority of its cluster, the leader steps down".
    if (config_.check_quorum && ++election_elapsed_ >= config_.election_timeout_ticks) {
      election_elapsed_ = 0;
      std::set<NodeId> heard = std::move(heard_since_check_);
      heard_since_check_.clear();
      heard.insert(config_.id);
      if (!MajorityOfEveryWindowConfig(heard)) BecomeFollower(kNoNode);
    }
    // Raft thesis 3.10: "If the transfer does not complete after about one election timeout,
    // the prior leader aborts the transfer and resumes accepting client requests."
    if (role_ == Role::kLeader && transfer_target_ != kNoNode &&
        ++transfer_elapsed_ticks_ >= config_.election_timeout_ticks) {
      transfer_target_ = kNoNode;
      transfer_elapsed_ticks_ = 0;
      timeout_now_sent_ = false;
    }
  } else if (++election_elapsed_ >= randomized_election_timeout_) {
    // PML 3: a replica that has not heard from the master for a while tries to become master.
    Campaign();
  }
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------------------------------------
// Messages.

Status MultiPaxos::ValidateMessage(const Message& message) const {
  if (message.to != config_.id) {
    return absl::InvalidArgumentError(fmt::format("message for node {}", message.to));
  }
  // Membership is not checked here: configurations change, and a node may hear from members
  // it does not know of yet (it lags) or no longer counts (they were removed). Quorums count
  // only the voters of each slot's configuration.
  if (message.from == config_.id || message.from == kNoNode) {
    return absl::InvalidArgumentError(fmt::format("message from node {}", message.from));
  }
  if (message.ballot.IsNone() || message.ballot.proposer == kNoNode) {
    return absl::InvalidArgumentError("message without a valid ballot");
  }
  if (message.type == MessageType::kInstallSnapshot && !message.snapshot.has_value()) {
    return absl::InvalidArgumentError("InstallSnapshot without a snapshot");
  }
  for (size_t i = 1; i < message.entries.size(); ++i) {
    if (message.entries[i].index <= message.entries[i - 1].index) {
      return absl::InvalidArgumentError("entries not in ascending slot order");
    }
  }
  return absl::OkStatus();
}

Status MultiPaxos::Step(Message message) {
  if (Status status = ValidateMessage(message); !status.ok()) return status;
  Dispatch(message);
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

void MultiPaxos::Dispatch(const Message& message) {
  round_seen_ = std::max({round_seen_, message.ballot.round, message.promised.round});
  switch (message.type) {
    case MessageType::kPrepare:
      HandlePrepare(message);
      return;
    case MessageType::kAccept:
      HandleAccept(message);
      return;
    case MessageType::kHeartbeat:
      HandleHeartbeat(message);
      return;
    case MessageType::kChosen:
      HandleChosen(message);
      return;
    case MessageType::kInstallSnapshot:
      HandleInstallSnapshot(message);
      return;
    case MessageType::kPromise:
      HandlePromise(message);
      return;
    case MessageType::kAccepted:
      HandleAccepted(message);
      return;
    case MessageType::kHeartbeatResponse:
      HandleHeartbeatResponse(message);
      return;
    case MessageType::kNack:
      HandleNack(message);
      return;
    case MessageType::kReadIndex:
      HandleReadIndex(message);
      return;
    case MessageType::kReadIndexResponse:
      HandleReadIndexResponse(message);
      return;
    case MessageType::kTimeoutNow:
      HandleTimeoutNow(message);
      return;
  }
}

Message MultiPaxos::Reply(const Message& to, MessageType type) const {
  Message reply;
  reply.type = type;
  reply.from = config_.id;
  reply.to = to.from;
  reply.ballot = to.ballot;
  reply.commit = commit_;
  return reply;
}

void MultiPaxos::Send(Message message) {
  message.from = config_.id;
  outbox_.push_back(std::move(message));
}

// ---------------------------------------------------------------------------------------------
// Acceptor.

bool MultiPaxos::RefusedBelowPromise(const Message& message) {
  if (message.ballot >= promised_) return false;
  // PMS 2.2, P1a: "An acceptor can accept a proposal numbered n iff it has not responded to a
  // prepare request having a number greater than n."
  Message nack = Reply(message, MessageType::kNack);
  nack.promised = promised_;
  Send(std::move(nack));
  return true;
}

void MultiPaxos::HandlePrepare(const Message& message) {
  // A node this node saw removed, and that is a voter of no configuration governing a slot this
  // node has not learned chosen, cannot lead those slots: its prepare is ignored, which is
  // always safe for an acceptor, so a removed node that lags cannot keep preempting the group's
  // leaders. (A node merely unknown here is answered: it may have joined in slots this node
  // has not learned yet, and a joining node that knows no configuration answers everyone.)
  if (message.from != config_.id && removed_.contains(message.from) &&
      !IsVoterAboveCommit(message.from)) {
    return;
  }
  // Check-quorum's other half (Raft thesis 4.2.3, for Paxos): while its leader is alive this
  // node ignores another node's higher ballot (see Config::check_quorum for why that is safe).
  if (config_.check_quorum && !message.leadership_transfer && message.from != config_.id &&
      message.from != leader_ && message.ballot > promised_ && InLeaderLease()) {
    return;
  }
  if (RefusedBelowPromise(message)) return;
  // PMS 2.2: "it responds with a promise not to accept any more proposals numbered less than n
  // and with the highest-numbered proposal (if any) that it has accepted", here for every slot
  // from message.index on at once.
  const bool higher = message.ballot > promised_;
  if (higher) promised_ = message.ballot;
  // A higher ballot of another node preempts this node's own and its current leader's; the
  // candidate gets an election timeout to finish before this node competes. (A repeated
  // prepare of the ballot already promised changes nothing.)
  if (higher && message.from != config_.id) BecomeFollower(kNoNode);
  Message promise = Reply(message, MessageType::kPromise);
  const Index from = std::max(message.index, compacted_.next());
  for (auto it = slots_.lower_bound(from); it != slots_.end(); ++it) {
    promise.slots.push_back(it->second);
  }
  // The candidate asked about slots this node has compacted: they are chosen and in the
  // snapshot, which it must install to know them.
  if (message.index <= compacted_) promise.snapshot = snapshot_;
  Send(std::move(promise));
}

void MultiPaxos::StoreSlot(Index index, Slot slot) {
  SYNOD_ASSERT(index > compacted_);
  SYNOD_ASSERT(slot.value.index == index);
  SYNOD_ASSERT_MSG(slot.accepted <= promised_, "slot {} accepted {} above the promise {}", index,
                   paxos::ToString(slot.accepted), paxos::ToString(promised_));
  SYNOD_ASSERT(!slot.accepted.IsNone() || index <= commit_.next());
  slots_[index] = std::move(slot);
  dirty_slots_.insert(index);
}

void MultiPaxos::HandleAccept(const Message& message) {
  if (RefusedBelowPromise(message)) return;
  if (message.from != config_.id) Follow(message.ballot);
  Message accepted = Reply(message, MessageType::kAccepted);
  for (const Entry& value : message.entries) {
    const Index index = value.index;
    if (index <= commit_) {
      // Already known chosen. This node learned that from a leader of the choosing ballot or a
      // later one and so promised at least that ballot; the message's ballot is at least the
      // promise, so by P2c (PMS 2.2) the leader proposes the chosen value. Acknowledging it,
      // even where the slot is compacted away here, lets a new leader count the slot chosen.
      if (index > compacted_) {
        const Slot& stored = slots_.at(index);
        SYNOD_ASSERT_MSG(stored.value == value,
                         "Agreement: ballot {} proposes another value for slot {}, chosen here",
                         paxos::ToString(message.ballot), index);
      }
    } else {
      // PMS 2.2: "If an acceptor receives an accept request for a proposal numbered n, it
      // accepts the proposal unless it has already responded to a prepare request having a
      // number greater than n."
      StoreSlot(index, Slot{message.ballot, value});
    }
    accepted.acked.push_back(index);
  }
  if (message.from != config_.id) AdvanceFollowerCommit(message.ballot, message.commit);
  accepted.commit = commit_;
  Send(std::move(accepted));
}

void MultiPaxos::AdvanceFollowerCommit(const BallotNumber& ballot, Index leader_commit) {
  // A slot accepted in the leader's ballot holds the one value that ballot proposed there, so
  // once the leader says the slot is chosen, that value is the chosen one. A slot accepted in
  // another ballot may hold a value that lost; it waits for kChosen.
  while (commit_ < leader_commit) {
    auto it = slots_.find(commit_.next());
    if (it == slots_.end() || it->second.accepted != ballot) break;
    commit_ = commit_.next();
  }
  RecordChosenConfigs();
}

void MultiPaxos::HandleHeartbeat(const Message& message) {
  if (RefusedBelowPromise(message)) return;
  Follow(message.ballot);
  AdvanceFollowerCommit(message.ballot, message.commit);
  Message response = Reply(message, MessageType::kHeartbeatResponse);
  response.read_round = message.read_round;
  Send(std::move(response));
}

void MultiPaxos::HandleChosen(const Message& message) {
  if (RefusedBelowPromise(message)) return;
  Follow(message.ballot);
  // PMS 3: a server learns the commands it missed from the leader. These are chosen, so they
  // replace whatever this acceptor accepted there; the none ballot records that it learned them
  // rather than accepted them.
  for (const Entry& value : message.entries) {
    if (value.index <= commit_) continue;
    if (value.index != commit_.next()) break;
    auto it = slots_.find(value.index);
    if (it == slots_.end() || it->second.value != value) {
      StoreSlot(value.index, Slot{BallotNumber{}, value});
    }
    commit_ = value.index;
  }
  RecordChosenConfigs();
  AdvanceFollowerCommit(message.ballot, message.commit);
  Send(Reply(message, MessageType::kHeartbeatResponse));
}

void MultiPaxos::InstallSnapshot(const Snapshot& snapshot) {
  SYNOD_ASSERT(snapshot.meta.index > commit_);
  snapshot_ = snapshot;
  snapshot_to_persist_ = snapshot;
  compacted_ = snapshot.meta.index;
  commit_ = snapshot.meta.index;
  applied_ = snapshot.meta.index;
  // Slots above the snapshot stay: they are acceptor state that may be part of a choice.
  slots_.erase(slots_.begin(), slots_.upper_bound(compacted_));
  std::erase_if(dirty_slots_, [this](Index index) { return index <= compacted_; });
  // The snapshot's membership governs every slot above it (SetSnapshot's rule).
  configs_.clear();
  configs_.emplace(compacted_.next(), snapshot.meta.membership);
  configs_scanned_ = commit_;
  membership_index_ = compacted_;
}

void MultiPaxos::HandleInstallSnapshot(const Message& message) {
  if (RefusedBelowPromise(message)) return;
  Follow(message.ballot);
  if (message.snapshot->meta.index > commit_) InstallSnapshot(*message.snapshot);
  Send(Reply(message, MessageType::kHeartbeatResponse));
}

// ---------------------------------------------------------------------------------------------
// Proposer.

void MultiPaxos::HandlePromise(const Message& message) {
  if (role_ != Role::kCandidate || message.ballot != ballot_) return;
  if (message.snapshot.has_value() && message.snapshot->meta.index > commit_) {
    InstallSnapshot(*message.snapshot);
  }
  PhaseOne& phase = phase_one_;
  for (const Slot& reported : message.slots) {
    const Index index = reported.value.index;
    if (index <= commit_) continue;
    if (index <= message.commit) {
      phase.chosen[index] = reported.value;
      continue;
    }
    // PMS 2.2, P2c: the value of the highest-numbered proposal accepted by the majority.
    auto [it, inserted] = phase.highest_accepted.try_emplace(index, reported);
    if (!inserted && reported.accepted > it->second.accepted) it->second = reported;
  }
  phase.commits[message.from] = message.commit;
  phase.promised_by.insert(message.from);
  if (MajorityOfEveryWindowConfig(phase.promised_by)) BecomeLeader();
}

void MultiPaxos::ProposeInBallot(std::vector<Entry> values) {
  SYNOD_ASSERT(role_ == Role::kLeader);
  if (values.empty()) return;
  Message accept;
  accept.type = MessageType::kAccept;
  accept.from = accept.to = config_.id;
  accept.ballot = ballot_;
  accept.commit = commit_;
  for (Entry& value : values) {
    SYNOD_ASSERT(value.index == next_slot_);
    // The α rule: the leader knows the configuration of this slot, and is one of its voters.
    SYNOD_ASSERT(WithinAlphaWindow(value.index));
    SYNOD_ASSERT(MembershipFor(value.index).IsVoter(config_.id));
    proposals_.emplace(value.index, Proposal{});
    next_slot_ = next_slot_.next();
    accept.entries.push_back(std::move(value));
  }
  // The leader's own acceptor accepts now; its kAccepted reaches the leader at Advance, once the
  // slots are durable.
  HandleAccept(accept);
}

Status MultiPaxos::NotLeaderError() const {
  return absl::FailedPreconditionError(
      leader_ == kNoNode ? std::string("not the leader; no leader known")
                         : fmt::format("not the leader; the leader is {}", leader_));
}

Result<LogPosition> MultiPaxos::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return NotLeaderError();
  }
  if (Status status = CheckCanProposeNextSlot(); !status.ok()) return status;
  const Index index = next_slot_;
  const Term term(ballot_.round.value());
  ProposeInBallot({Entry{term, index, EntryType::kNormal, std::move(data), {}}});
  if (config_.check_invariants) CheckInvariants();
  return LogPosition{index, term};
}

Status MultiPaxos::CheckCanProposeNextSlot() const {
  // Raft thesis 3.10: the leader stops accepting new requests while it transfers leadership.
  if (transfer_target_ != kNoNode) {
    return absl::FailedPreconditionError(
        fmt::format("leadership is being transferred to {}", transfer_target_));
  }
  if (proposals_.size() >= config_.uncommitted_entries_max) {
    return absl::ResourceExhaustedError("too many proposals not yet chosen");
  }
  if (!window_deferred_.empty() || !WithinAlphaWindow(next_slot_)) {
    return absl::ResourceExhaustedError(
        fmt::format("slot {} is beyond the commit index {} + alpha {}", next_slot_, commit_,
                    config_.alpha_slots));
  }
  if (!MembershipFor(next_slot_).IsVoter(config_.id)) {
    return absl::FailedPreconditionError("this leader is removed from the configuration");
  }
  return absl::OkStatus();
}

Result<LogPosition> MultiPaxos::ProposeConfChange(raft::ConfChange change) {
  if (role_ != Role::kLeader) return NotLeaderError();
  if (Status status = CheckCanProposeNextSlot(); !status.ok()) return status;
  // One change at a time, computed from every change chosen before its slot: nothing is in
  // flight below it, and the previous change governs the next slot already.
  if (!proposals_.empty() || configs_.rbegin()->first > next_slot_) {
    return absl::FailedPreconditionError(
        "slots or a configuration change are still in flight; retry once they are chosen");
  }
  if (change.type == raft::ConfChangeType::kPromoteLearner && membership().IsLearner(change.node)) {
    // Raft thesis 4.2.1: a new server becomes a voter only once it has caught up.
    const std::optional<Index> known = followers_[change.node].commit;
    if (!known.has_value() || known->plus(config_.learner_promotion_lag_max) < commit_) {
      return absl::FailedPreconditionError(
          fmt::format("learner {} is not caught up (commit {} of {})", change.node,
                      known.value_or(Index()), commit_));
    }
  }
  Result<Membership> next = raft::MembershipAfter(membership(), change);
  if (!next.ok()) return next.status();
  const Index index = next_slot_;
  const Term term(ballot_.round.value());
  ProposeInBallot(
      {Entry{term, index, EntryType::kConfig, std::move(change.context), std::move(*next)}});
  if (config_.check_invariants) CheckInvariants();
  return LogPosition{index, term};
}

std::optional<Index> MultiPaxos::FollowerCommit(NodeId follower) const {
  auto it = followers_.find(follower);
  return it == followers_.end() ? std::nullopt : it->second.commit;
}

void MultiPaxos::NoteFollowerCommit(NodeId follower, Index commit) {
  FollowerState& state = followers_[follower];
  const bool first_report = !state.commit.has_value();
  if (!first_report && commit <= *state.commit) return;
  state.commit = commit;
  // A lagging follower that made progress gets the next batch of chosen values at once rather
  // than at the next heartbeat, so catching up takes round trips, not heartbeat intervals.
  if (!first_report) CatchUp(follower);
}

bool MultiPaxos::InLeaderLease() const {
  if (role_ == Role::kLeader) return true;
  return role_ == Role::kFollower && leader_ != kNoNode &&
         election_elapsed_ < config_.election_timeout_ticks;
}

void MultiPaxos::HandleAccepted(const Message& message) {
  if (role_ != Role::kLeader || message.ballot != ballot_) return;
  heard_since_check_.insert(message.from);
  if (message.from != config_.id) NoteFollowerCommit(message.from, message.commit);
  for (Index index : message.acked) {
    auto it = proposals_.find(index);
    if (it == proposals_.end()) continue;
    std::set<NodeId>& accepted_by = it->second.accepted_by;
    accepted_by.insert(message.from);
    // PMS 2.3: a value is chosen when a majority of acceptors have accepted it (in one ballot),
    // here a majority of the voters of the slot's configuration.
    const Membership& config = MembershipFor(index);
    const size_t votes = std::count_if(config.voters.begin(), config.voters.end(),
                                       [&](NodeId voter) { return accepted_by.contains(voter); });
    if (votes >= config.QuorumSize()) it->second.chosen = true;
  }
  MaybeAdvanceLeaderCommit();
  MaybeSendTimeoutNow();
}

void MultiPaxos::MaybeAdvanceLeaderCommit() {
  // Chosen slots are applied in slot order (PMS 3: a server executes command i only once it
  // has learned commands 1 through i-1).
  const Index before = commit_;
  while (!proposals_.empty() && proposals_.begin()->first == commit_.next() &&
         proposals_.begin()->second.chosen) {
    commit_ = commit_.next();
    proposals_.erase(proposals_.begin());
  }
  if (commit_ > before) AfterLeaderCommitAdvanced();
}

void MultiPaxos::HandleHeartbeatResponse(const Message& message) {
  if (role_ != Role::kLeader || message.ballot != ballot_) return;
  heard_since_check_.insert(message.from);
  NoteFollowerCommit(message.from, message.commit);
  FollowerState& state = followers_[message.from];
  state.read_round_acked = std::max(state.read_round_acked, message.read_round);
  ReleaseConfirmedReads();
  MaybeSendTimeoutNow();
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (Raft thesis 3.10, for Paxos).

Status MultiPaxos::TransferLeadership(NodeId target) {
  if (role_ != Role::kLeader) return NotLeaderError();
  if (target == config_.id || !membership().IsVoter(target) ||
      !MembershipFor(next_slot_).IsVoter(target)) {
    return absl::FailedPreconditionError(
        fmt::format("node {} is no other voter to transfer leadership to", target));
  }
  if (transfer_target_ != target) {
    transfer_target_ = target;
    transfer_elapsed_ticks_ = 0;
    timeout_now_sent_ = false;
  }
  MaybeSendTimeoutNow();
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

void MultiPaxos::MaybeSendTimeoutNow() {
  if (role_ != Role::kLeader || transfer_target_ == kNoNode || timeout_now_sent_) return;
  // The target must hold every chosen value, and nothing may be in flight: its phase 1 then
  // learns no slot it would have to re-propose, and it can serve from the first moment.
  if (!proposals_.empty() || !window_deferred_.empty()) return;
  const std::optional<Index> target_commit = FollowerCommit(transfer_target_);
  if (!target_commit.has_value() || *target_commit < commit_) return;
  Message timeout_now;
  timeout_now.type = MessageType::kTimeoutNow;
  timeout_now.to = transfer_target_;
  timeout_now.ballot = ballot_;
  timeout_now.commit = commit_;
  Send(std::move(timeout_now));
  timeout_now_sent_ = true;
}

void MultiPaxos::HandleTimeoutNow(const Message& message) {
  // Only from the leader this node follows, in the ballot it promised: a stale or forged one
  // would make it depose a working leader.
  if (role_ != Role::kFollower || message.ballot != promised_ ||
      message.from != message.ballot.proposer || leader_ != message.from) {
    return;
  }
  if (!IsVoterOfNextSlot()) return;
  RunPhaseOne(/*leadership_transfer=*/true);
}

void MultiPaxos::HandleNack(const Message& message) {
  if (role_ == Role::kFollower || message.ballot != ballot_ || message.promised <= ballot_) return;
  // The transfer target's ballot: it is taking over as asked, so this leader yields rather than
  // competing with it below.
  if (role_ == Role::kLeader && timeout_now_sent_ &&
      message.promised.proposer == transfer_target_) {
    BecomeFollower(kNoNode);
    return;
  }
  if (role_ == Role::kLeader && config_.check_quorum) {
    // The higher ballot is one the followers that still hear this leader ignored (or check-
    // quorum would have deposed it): phase 1 with a higher ballot keeps the group's leader and
    // brings the disruptive acceptor back.
    Campaign();
    return;
  }
  // Preempted (PMS 2.4: a proposer "should abandon its proposal" on learning of a higher
  // number). It waits a random election timeout before competing again: the randomized backoff.
  BecomeFollower(kNoNode);
}

void MultiPaxos::SendAccepts(NodeId to, Index from_slot) {
  // Pipelining: every slot in flight goes out now, in messages of at most message_entries_max
  // values; how many are in flight is bounded by uncommitted_entries_max.
  Message accept;
  accept.type = MessageType::kAccept;
  accept.to = to;
  accept.ballot = ballot_;
  accept.commit = commit_;
  for (auto it = proposals_.lower_bound(from_slot); it != proposals_.end(); ++it) {
    if (it->second.accepted_by.contains(to)) continue;
    accept.entries.push_back(slots_.at(it->first).value);
    if (accept.entries.size() == config_.message_entries_max) {
      Send(accept);
      accept.entries.clear();
    }
  }
  if (!accept.entries.empty()) Send(std::move(accept));
}

void MultiPaxos::CatchUp(NodeId to) {
  // A follower below the commit index of the previous heartbeat did not learn those slots from
  // the leader's ballot (it missed or refused their accepts); one that is merely a heartbeat
  // behind will learn them from the next heartbeat and needs nothing sent.
  FollowerState& state = followers_[to];
  const std::optional<Index> known = state.commit;
  if (!known.has_value() || *known >= previous_heartbeat_commit_) return;
  Message message;
  message.to = to;
  message.ballot = ballot_;
  message.commit = commit_;
  if (*known < compacted_) {
    message.type = MessageType::kInstallSnapshot;
    message.snapshot = snapshot_;
    Send(std::move(message));
    return;
  }
  // Pipelined: up to catch_up_messages_max messages of chosen values beyond what the follower
  // reported, continuing after those already sent, so a node that lags far catches up at the
  // network's pace rather than one message per round trip.
  message.type = MessageType::kChosen;
  const Index last = std::min(
      commit_, known->plus(uint64_t{config_.catch_up_messages_max} * config_.message_entries_max));
  Index index = std::max(*known, state.chosen_sent).next();
  while (index <= last) {
    message.entries.clear();
    for (; index <= last && message.entries.size() < config_.message_entries_max;
         index = index.next()) {
      message.entries.push_back(slots_.at(index).value);
    }
    state.chosen_sent = message.entries.back().index;
    Send(message);
  }
}

void MultiPaxos::SendHeartbeats() {
  previous_heartbeat_commit_ = last_heartbeat_commit_;
  last_heartbeat_commit_ = commit_;
  announced_commit_ = commit_;
  for (NodeId follower : Peers()) {
    SendHeartbeat(follower);
    // Accepts or their answers may have been lost: resend what this follower has not accepted.
    SendAccepts(follower, commit_.next());
    followers_[follower].chosen_sent = Index();
    CatchUp(follower);
  }
}

bool MultiPaxos::CommitUnannounced() const {
  SYNOD_ASSERT(role_ == Role::kLeader);
  // A follower marks a slot chosen only once the leader's commit index covers it (PMS 3: the
  // leader tells the others what was chosen), so a write forwarded by a follower, or a read
  // served there, waits for the next message carrying it. While slots are in flight their
  // accepts' answers lead to more commits and to the next batch of accepts, which carries the
  // commit index; once nothing is in flight no accept comes, and without an announcement the
  // followers would learn it only at the next periodic heartbeat.
  if (!announced_commit_.has_value()) return true;
  return commit_ > *announced_commit_ && proposals_.empty();
}

void MultiPaxos::AnnounceCommit() {
  announced_commit_ = commit_;
  for (NodeId follower : Peers()) SendHeartbeat(follower);
}

void MultiPaxos::SendHeartbeat(NodeId follower) {
  Message heartbeat;
  heartbeat.type = MessageType::kHeartbeat;
  heartbeat.to = follower;
  heartbeat.ballot = ballot_;
  heartbeat.commit = commit_;
  // The current read round: an answer in this ballot, sent after every read of that round
  // arrived (an announcement is sent after the round's own heartbeat), confirms the round.
  heartbeat.read_round = read_round_;
  Send(std::move(heartbeat));
}

// ---------------------------------------------------------------------------------------------
// Reads.

Status MultiPaxos::ReadIndex(std::string context) {
  if (role_ == Role::kLeader) return QueueRead(config_.id, std::move(context));
  if (leader_ == kNoNode) {
    return absl::UnavailableError("no leader known to ask for a read index");
  }
  // Raft thesis 6.4: "the follower issues a request to the leader to obtain the current commit
  // index"; the leader answers only after its own quorum round.
  Message request;
  request.type = MessageType::kReadIndex;
  request.to = leader_;
  request.ballot = promised_;
  request.read_context = std::move(context);
  Send(std::move(request));
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

Status MultiPaxos::QueueRead(NodeId requester, std::string context) {
  SYNOD_ASSERT(role_ == Role::kLeader);
  if (reads_unassigned_.size() + reads_waiting_.size() >= config_.pending_reads_max) {
    return absl::ResourceExhaustedError("too many reads waiting");
  }
  // Every slot chosen before this moment is at most the end of the phase 1 window (a slot
  // chosen in an earlier ballot was reported there) or was proposed by this leader and has been
  // counted into commit_.
  reads_unassigned_.push_back(
      {std::max(commit_, phase_one_end_), 0, requester, std::move(context)});
  return absl::OkStatus();
}

void MultiPaxos::HandleReadIndex(const Message& message) {
  // A node that is not (or no longer) the leader drops the request; the follower's caller times
  // out and asks again, as with a lost message. So does a full queue.
  if (role_ != Role::kLeader) return;
  (void)QueueRead(message.from, message.read_context);
}

void MultiPaxos::HandleReadIndexResponse(const Message& message) {
  // The index was confirmed by the leader's quorum round after the request arrived, which is
  // after the follower's client asked: it stays valid even if that leader has been deposed since.
  read_states_.push_back(ReadState{message.index, message.read_context});
}

void MultiPaxos::StartReadRound() {
  SYNOD_ASSERT(role_ == Role::kLeader);
  ++read_round_;
  for (PendingRead& read : reads_unassigned_) {
    read.round = read_round_;
    reads_waiting_.push_back(std::move(read));
  }
  reads_unassigned_.clear();
  heartbeat_elapsed_ = 0;
  SendHeartbeats();
  ReleaseConfirmedReads();
}

void MultiPaxos::ReleaseConfirmedReads() {
  // A leader that lags behind its phase 1 window does not yet know the configurations of every
  // slot that may have been chosen before its ballot: a slot s needs slot s - α chosen first, so
  // the lowest chosen slot above the window lies within α of it, possibly beyond commit + α,
  // governed by a change this leader has not learned and whose voters need not have promised
  // (they may have removed its promisers). Once its commit index reaches the window end, every
  // such slot lies within commit + α, among the window configurations whose majorities promised
  // (AfterLeaderCommitAdvanced), so phase 1 would have reported it. Until then reads wait.
  if (commit_ < phase_one_end_) return;
  // A higher ballot that could have chosen a slot the read must see needed a majority of that
  // slot's configuration, so the round is confirmed by a majority of every window configuration.
  uint64_t confirmed = read_round_;
  for (const Membership* config : WindowConfigs()) {
    std::vector<uint64_t> rounds;
    for (NodeId voter : config->voters) {
      auto it = followers_.find(voter);
      rounds.push_back(voter == config_.id ? read_round_
                       : it == followers_.end() ? 0
                                                : it->second.read_round_acked);
    }
    confirmed = std::min(confirmed, base::QuorumValue(std::move(rounds), config->QuorumSize()));
  }
#ifdef SYNOD_BROKEN_READ_WITHOUT_QUORUM
  // Deliberately broken build: the leader answers reads without confirming that a majority
  // still holds its ballot, so a deposed leader serves stale reads.
  confirmed = read_round_;
#endif
  while (!reads_waiting_.empty() && reads_waiting_.front().round <= confirmed) {
    PendingRead& read = reads_waiting_.front();
    if (read.requester == config_.id) {
      read_states_.push_back(ReadState{read.index, std::move(read.context)});
    } else {
      Message response;
      response.type = MessageType::kReadIndexResponse;
      response.to = read.requester;
      response.ballot = ballot_;
      response.index = read.index;
      response.read_context = std::move(read.context);
      Send(std::move(response));
    }
    reads_waiting_.erase(reads_waiting_.begin());
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots.

Status MultiPaxos::SetSnapshot(Index index, std::string data) {
  if (index > applied_) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot at {} is beyond the applied index {}", index, applied_));
  }
  if (index <= snapshot_.meta.index) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot at {} is not newer than the one at {}", index,
                    snapshot_.meta.index));
  }
  // The snapshot's membership must govern every slot above it, so it waits while a change
  // chosen at or below `index` is not yet in effect at index + 1 (the α rule).
  if (auto later = configs_.upper_bound(index.next());
      later != configs_.end() && later->first <= index.plus(config_.alpha_slots)) {
    return absl::FailedPreconditionError(fmt::format(
        "a configuration change takes effect at slot {}, above the snapshot at {}; snapshot "
        "from there on",
        later->first, index));
  }
  const Slot& at_index = slots_.at(index);
  snapshot_.meta.index = index;
  snapshot_.meta.term = at_index.value.term;
  snapshot_.meta.membership = MembershipFor(index.next());
  snapshot_.data = std::move(data);
  return absl::OkStatus();
}

Status MultiPaxos::CompactLog(Index index) {
  if (index > snapshot_.meta.index) {
    return absl::InvalidArgumentError(fmt::format(
        "cannot compact to {} beyond the snapshot at {}", index, snapshot_.meta.index));
  }
  if (index <= compacted_) return absl::OkStatus();
  compacted_ = index;
  slots_.erase(slots_.begin(), slots_.upper_bound(compacted_));
  std::erase_if(dirty_slots_, [this](Index slot) { return slot <= compacted_; });
  // Configurations of compacted slots only are forgotten.
  while (configs_.size() > 1 && std::next(configs_.begin())->first <= compacted_.next()) {
    configs_.erase(configs_.begin());
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Output.

bool MultiPaxos::HasReady() const {
  if (awaiting_advance_) return false;
  // A commit index that changed alone is no reason for a Ready (see TakeReady).
  return !outbox_.empty() || !dirty_slots_.empty() || snapshot_to_persist_.has_value() ||
         commit_ > applied_ || !read_states_.empty() || PromiseUnreported() ||
         SoftState{role_, leader_} != last_soft_state_ ||
         (role_ == Role::kLeader &&
          (broadcast_from_ < next_slot_ || !reads_unassigned_.empty() || CommitUnannounced()));
}

bool MultiPaxos::PromiseUnreported() const {
  return promised_ != last_hard_state_.promised;
}

Ready MultiPaxos::TakeReady() {
  SYNOD_ASSERT(HasReady());
  if (role_ == Role::kLeader) {
    // Proposal batching: every slot proposed since the last Ready goes to each follower in one
    // kAccept.
    if (broadcast_from_ < next_slot_) {
      for (NodeId follower : Peers()) SendAccepts(follower, broadcast_from_);
      broadcast_from_ = next_slot_;
      announced_commit_ = commit_;
    }
    if (!reads_unassigned_.empty()) StartReadRound();
    // A new leader makes itself known right after phase 1 even with nothing to re-propose, and
    // a commit index advance that nothing in this Ready carries goes out now (see
    // CommitUnannounced), rather than with the next heartbeat.
    if (CommitUnannounced()) AnnounceCommit();
  }
  Ready ready;
  const SoftState soft_state{role_, leader_};
  if (soft_state != last_soft_state_) {
    ready.soft_state = soft_state;
    last_soft_state_ = soft_state;
  }
  if (snapshot_to_persist_.has_value()) {
    ready.snapshot = std::move(*snapshot_to_persist_);
    snapshot_to_persist_.reset();
  }
  for (Index index : dirty_slots_) ready.slots.push_back(slots_.at(index));
  dirty_slots_.clear();
  // Only the promise and the accepted slots are acceptor state that must be durable before an
  // answer (PMS 2.3: "an acceptor must remember this information even if it fails and then
  // restarts"). The commit index is a learner's knowledge that a restarted node relearns from
  // the leader (Raft thesis 3.8 and Figure 2 list commitIndex as volatile; etcd raft's MustSync
  // draws the same line): a hard state that differs from the last one handed out only in its
  // commit index waits for the next Ready that must be made durable anyway, for a promise, slots
  // or a snapshot, so committing costs no fsync of its own. It always rides along with slots, so
  // a slot learned as chosen (none ballot) is never durable without a commit index covering it.
  const HardState hard = hard_state();
  if (hard != last_hard_state_ &&
      (PromiseUnreported() || ready.snapshot.has_value() || !ready.slots.empty())) {
    ready.hard_state = hard;
    last_hard_state_ = hard;
  }
  for (Index index = applied_.next(); index <= commit_; index = index.next()) {
    ready.committed_entries.push_back(slots_.at(index).value);
  }
  applied_ = commit_;
  for (Message& message : outbox_) {
    if (message.to == config_.id) {
      to_self_after_advance_.push_back(std::move(message));
    } else if (MaySendBeforePersisting(message)) {
      ready.early_messages.push_back(std::move(message));
    } else {
      ready.messages.push_back(std::move(message));
    }
  }
  outbox_.clear();
  ready.read_states = std::move(read_states_);
  read_states_.clear();
  awaiting_advance_ = true;
  return ready;
}

bool MultiPaxos::MaySendBeforePersisting(const Message& message) const {
  // The leader's proposal needs no durable copy of its own (PMS 2.2: only acceptors remember),
  // and it counts its own acceptance only at Advance; but its ballot must be durable, or a
  // restart could reuse the ballot for another value (Campaign starts above the promise).
  if (role_ != Role::kLeader || message.ballot != ballot_ || durable_promise_ != ballot_) {
    return false;
  }
  switch (message.type) {
    case MessageType::kAccept:
    case MessageType::kHeartbeat:
    case MessageType::kChosen:
    case MessageType::kInstallSnapshot:
      return true;
    default:
      return false;
  }
}

void MultiPaxos::Advance() {
  SYNOD_ASSERT(awaiting_advance_);
  awaiting_advance_ = false;
  durable_promise_ = last_hard_state_.promised;
  std::vector<Message> to_self = std::move(to_self_after_advance_);
  to_self_after_advance_.clear();
  for (const Message& message : to_self) {
    // Only its own acceptor's answers: its ballot is its promise, so it never refuses itself.
    SYNOD_ASSERT(message.type == MessageType::kPromise || message.type == MessageType::kAccepted);
    Dispatch(message);
  }
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------------------------------------
// Invariants.

void MultiPaxos::CheckInvariants() {
  SYNOD_ASSERT(!configs_.empty());
  SYNOD_ASSERT(configs_.begin()->first <= compacted_.next());
  SYNOD_ASSERT(configs_scanned_ == commit_);
  SYNOD_ASSERT(membership_index_ <= commit_);
  SYNOD_ASSERT(round_seen_ >= promised_.round);
  SYNOD_ASSERT(durable_promise_ <= promised_);
  SYNOD_ASSERT(compacted_ <= snapshot_.meta.index);
  SYNOD_ASSERT(snapshot_.meta.index <= applied_);
  SYNOD_ASSERT(applied_ <= commit_);
  // Slots at or below the commit index change only through StoreSlot, which checks them; the
  // ones above it are few (in flight), so checking them all keeps this O(in flight).
  if (!slots_.empty()) SYNOD_ASSERT(slots_.begin()->first > compacted_);
  for (auto it = slots_.upper_bound(commit_); it != slots_.end(); ++it) {
    const Slot& stored = it->second;
    SYNOD_ASSERT(stored.value.index == it->first);
    SYNOD_ASSERT_MSG(stored.accepted <= promised_, "slot {} accepted {} above the promise {}",
                     it->first, paxos::ToString(stored.accepted), paxos::ToString(promised_));
    SYNOD_ASSERT_MSG(!stored.accepted.IsNone(),
                     "slot {} learned as chosen but above the commit index {}", it->first,
                     commit_);
  }
  // Every chosen slot is stored (or compacted): checked for the slots chosen since the last
  // call, which keeps it contiguous by induction.
  for (Index index = std::max(observed_.commit, compacted_).next(); index <= commit_;
       index = index.next()) {
    SYNOD_ASSERT_MSG(slots_.contains(index), "chosen slot {} is not stored", index);
  }
  if (role_ != Role::kFollower) {
    SYNOD_ASSERT(ballot_.proposer == config_.id);
    SYNOD_ASSERT_MSG(ballot_ == promised_, "proposer ballot {} but promised {}",
                     paxos::ToString(ballot_), paxos::ToString(promised_));
  }
  if (role_ == Role::kLeader) {
    SYNOD_ASSERT(leader_ == config_.id);
    SYNOD_ASSERT(next_slot_ > commit_);
    SYNOD_ASSERT(!announced_commit_.has_value() || *announced_commit_ <= commit_);
    SYNOD_ASSERT_MSG(MajorityOfEveryWindowConfig(promised_by_),
                     "a configuration of the alpha window lacks a majority of promises");
    for (const auto& [index, proposal] : proposals_) {
      SYNOD_ASSERT(index > commit_ && index < next_slot_);
      SYNOD_ASSERT_MSG(WithinAlphaWindow(index), "slot {} proposed beyond commit {} + alpha",
                       index, commit_);
      SYNOD_ASSERT_MSG(slots_.at(index).accepted == ballot_,
                       "proposed slot {} is not accepted in the leader's own ballot", index);
    }
  } else {
    SYNOD_ASSERT(proposals_.empty());
    SYNOD_ASSERT(reads_waiting_.empty() && reads_unassigned_.empty());
    SYNOD_ASSERT(transfer_target_ == kNoNode);
  }
  // Delta checks against the previous call.
  SYNOD_ASSERT_MSG(promised_ >= observed_.promised, "promise fell from {} to {}",
                   paxos::ToString(observed_.promised), paxos::ToString(promised_));
  SYNOD_ASSERT_MSG(commit_ >= observed_.commit, "commit index fell from {} to {}",
                   observed_.commit, commit_);
  if (observed_.commit_value.has_value()) {
    if (const Slot* stored = slot(observed_.commit)) {
      SYNOD_ASSERT_MSG(stored->value == *observed_.commit_value,
                       "the chosen value of slot {} changed", observed_.commit);
    }
  }
  observed_ = {promised_, commit_, std::nullopt};
  if (const Slot* at_commit = slot(commit_)) observed_.commit_value = at_commit->value;
}

}  // namespace synod::multipaxos
