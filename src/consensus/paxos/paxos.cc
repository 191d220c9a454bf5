#include "consensus/paxos/paxos.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::paxos {
namespace {

bool CarriesNumber(MessageType type) {
  return type == MessageType::kPrepare || type == MessageType::kPromise ||
         type == MessageType::kAccept || type == MessageType::kAccepted ||
         type == MessageType::kNack;
}

bool IsMember(const std::vector<NodeId>& members, NodeId id) {
  return std::binary_search(members.begin(), members.end(), id);
}

}  // namespace

Status Validate(const Config& config) {
  if (config.id == kNoNode) return absl::InvalidArgumentError("node id must not be 0");
  if (config.members.empty() || config.members.size() > kMembersMax) {
    return absl::InvalidArgumentError(
        fmt::format("a group needs 1 to {} members, not {}", kMembersMax, config.members.size()));
  }
  if (!std::is_sorted(config.members.begin(), config.members.end()) ||
      std::adjacent_find(config.members.begin(), config.members.end()) != config.members.end() ||
      config.members.front() == kNoNode) {
    return absl::InvalidArgumentError("members must be sorted, distinct and not 0");
  }
  if (!IsMember(config.members, config.id)) {
    return absl::InvalidArgumentError(fmt::format("node {} is not a member", config.id));
  }
  if (config.phase_timeout_ticks == 0) {
    return absl::InvalidArgumentError("phase timeout must be at least 1 tick");
  }
  if (config.randomized_backoff && config.backoff_ticks_max < 2) {
    // A window of one tick is no randomization at all.
    return absl::InvalidArgumentError("randomized backoff needs backoff_ticks_max >= 2");
  }
  return absl::OkStatus();
}

std::string_view ToString(ProposerPhase phase) {
  switch (phase) {
    case ProposerPhase::kIdle:
      return "idle";
    case ProposerPhase::kPreparing:
      return "preparing";
    case ProposerPhase::kAccepting:
      return "accepting";
    case ProposerPhase::kBackoff:
      return "backoff";
  }
  return "?";
}

Result<std::unique_ptr<Paxos>> Paxos::Create(const Config& config, PersistentState state) {
  if (Status status = Validate(config); !status.ok()) return status;
  if (state.accepted.has_value()) {
    if (state.accepted->number.IsNone()) {
      return absl::InvalidArgumentError("an accepted proposal must have a number");
    }
    if (state.accepted->number > state.promised) {
      return absl::InvalidArgumentError(fmt::format("accepted proposal {} is above the promise {}",
                                                    ToString(state.accepted->number),
                                                    ToString(state.promised)));
    }
  }
  if (!state.promised.IsNone() && !IsMember(config.members, state.promised.proposer)) {
    return absl::InvalidArgumentError(
        fmt::format("promised proposal {} is from a non-member", ToString(state.promised)));
  }
  return std::unique_ptr<Paxos>(new Paxos(config, std::move(state)));
}

Paxos::Paxos(const Config& config, PersistentState state)
    : config_(config), prng_(config.seed), state_(std::move(state)), decided_(state_.decided) {
  // Every number this node ever sent was first promised by its own acceptor (see
  // proposal_number_), so starting above the durable promise never reuses one.
  round_seen_ = state_.promised.round;
  observed_ = {state_.promised, state_.accepted ? state_.accepted->number : ProposalNumber{},
               decided_, proposal_number_};
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------------------------------------
// Inputs.

void Paxos::Tick() {
  switch (phase_) {
    case ProposerPhase::kPreparing:
    case ProposerPhase::kAccepting:
      // 2.4: a proposal that gathers no majority (lost messages, crashed acceptors, a higher
      // number that sent no nack) is abandoned after a while and retried with a higher number.
      if (++phase_elapsed_ticks_ >= config_.phase_timeout_ticks) Retry();
      break;
    case ProposerPhase::kBackoff:
      SYNOD_ASSERT(backoff_remaining_ticks_ > 0);
      if (--backoff_remaining_ticks_ == 0) StartPrepare();
      break;
    case ProposerPhase::kIdle:
      if (!decided_.has_value() && ++learn_elapsed_ticks_ >= config_.phase_timeout_ticks) {
        learn_elapsed_ticks_ = 0;
        Broadcast(Message{.type = MessageType::kLearn}, /*include_self=*/false);
      }
      break;
  }
  if (config_.check_invariants) CheckInvariants();
}

Status Paxos::Step(Message message) {
  if (Status status = ValidateMessage(message); !status.ok()) return status;
  Dispatch(message);
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

Status Paxos::ValidateMessage(const Message& message) const {
  if (message.to != config_.id) {
    return absl::InvalidArgumentError(
        fmt::format("message for node {} delivered to node {}", message.to, config_.id));
  }
  if (message.from == config_.id || !IsMember(config_.members, message.from)) {
    return absl::InvalidArgumentError(
        fmt::format("message from node {}, which is not another member", message.from));
  }
  if (CarriesNumber(message.type)) {
    if (message.number.IsNone() || !IsMember(config_.members, message.number.proposer)) {
      return absl::InvalidArgumentError(
          fmt::format("{} has an invalid proposal number", ToString(message)));
    }
  }
  if ((message.type == MessageType::kPromise || message.type == MessageType::kNack) &&
      message.number.proposer != config_.id) {
    return absl::InvalidArgumentError(
        fmt::format("{} answers a proposal this node did not make", ToString(message)));
  }
  if (message.type == MessageType::kPromise && message.accepted.has_value() &&
      (message.accepted->number.IsNone() || message.accepted->number > message.number)) {
    return absl::InvalidArgumentError(
        fmt::format("{} reports an accepted proposal above the promise", ToString(message)));
  }
  if (message.type == MessageType::kNack && message.promised <= message.number) {
    return absl::InvalidArgumentError(
        fmt::format("{} refuses with a promise that is not higher", ToString(message)));
  }
  return absl::OkStatus();
}

void Paxos::Dispatch(const Message& message) {
  switch (message.type) {
    case MessageType::kPrepare:
      HandlePrepare(message);
      return;
    case MessageType::kPromise:
      HandlePromise(message);
      return;
    case MessageType::kAccept:
      HandleAccept(message);
      return;
    case MessageType::kAccepted:
      HandleAccepted(message);
      return;
    case MessageType::kNack:
      HandleNack(message);
      return;
    case MessageType::kDecided:
      Decide(message.value, /*our_proposal_chosen=*/false);
      return;
    case MessageType::kLearn:
      if (decided_.has_value()) {
        Send(Message{.type = MessageType::kDecided, .to = message.from, .value = *decided_});
      }
      return;
  }
  SYNOD_ASSERT_MSG(false, "unknown message type {}", static_cast<int>(message.type));
}

Status Paxos::Propose(std::string value) {
  if (decided_.has_value()) {
    return absl::FailedPreconditionError(
        fmt::format("a value is already decided: \"{}\"", *decided_));
  }
  if (own_value_.has_value()) {
    if (*own_value_ == value) return absl::OkStatus();
    return absl::FailedPreconditionError(
        fmt::format("node {} is already proposing \"{}\"", config_.id, *own_value_));
  }
  own_value_ = std::move(value);
  StartPrepare();
  if (config_.check_invariants) CheckInvariants();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Proposer.

void Paxos::StartPrepare() {
  SYNOD_ASSERT(own_value_.has_value());
  SYNOD_ASSERT(!decided_.has_value());
  // 2.2: "A proposer chooses a new proposal number n"; 2.4: higher than any it has seen, so a
  // preempted proposer skips straight past the number that preempted it.
  round_seen_ = std::max(round_seen_, proposal_number_.round).next();
  proposal_number_ = ProposalNumber{round_seen_, config_.id};
  promised_by_.clear();
  highest_accepted_reported_.reset();
  accept_value_.clear();
  phase_ = ProposerPhase::kPreparing;
  phase_elapsed_ticks_ = 0;
  Broadcast(Message{.type = MessageType::kPrepare, .number = proposal_number_},
            /*include_self=*/true);
}

void Paxos::HandlePromise(const Message& message) {
  // A promise for an earlier number, or one arriving after the majority was reached (a
  // duplicate or a straggler), changes nothing.
  if (phase_ != ProposerPhase::kPreparing || message.number != proposal_number_) return;
  if (message.accepted.has_value()) {
    round_seen_ = std::max(round_seen_, message.accepted->number.round);
#ifndef SYNOD_BROKEN_IGNORE_ACCEPTED_VALUES
    if (!highest_accepted_reported_.has_value() ||
        message.accepted->number > highest_accepted_reported_->number) {
      highest_accepted_reported_ = message.accepted;
    }
#endif
    // The deliberately broken build (SYNOD_BROKEN_IGNORE_ACCEPTED_VALUES) skips the above and
    // always proposes its own value, breaking P2c: a value chosen under a lower number can be
    // overwritten by a different one.
  }
  promised_by_.insert(message.from);
  if (promised_by_.size() < QuorumSize()) return;
  // 2.2, phase 2a: the value is "the value of the highest-numbered proposal among the
  // responses, or is any value if the responses reported no proposals" (P2c).
  accept_value_ =
      highest_accepted_reported_.has_value() ? highest_accepted_reported_->value : *own_value_;
  phase_ = ProposerPhase::kAccepting;
  phase_elapsed_ticks_ = 0;
  Broadcast(
      Message{.type = MessageType::kAccept, .number = proposal_number_, .value = accept_value_},
      /*include_self=*/true);
}

void Paxos::HandleNack(const Message& message) {
  round_seen_ = std::max(round_seen_, message.promised.round);
  const bool current =
      (phase_ == ProposerPhase::kPreparing || phase_ == ProposerPhase::kAccepting) &&
      message.number == proposal_number_;
  // 2.3: "the proposer should abandon its proposal" once some acceptor has promised a higher
  // number. A nack for an earlier number was already acted on.
  if (current) Retry();
}

void Paxos::Retry() {
  SYNOD_ASSERT(phase_ == ProposerPhase::kPreparing || phase_ == ProposerPhase::kAccepting);
  if (!config_.randomized_backoff) {
    StartPrepare();
    return;
  }
  // Binary exponential backoff, as on a shared Ethernet: the k-th retry waits 1..2^k ticks
  // (at most backoff_ticks_max), so however many proposers collide, their windows soon grow
  // wide enough for one of them to finish both phases alone.
  ++retries_;
  const uint64_t window_ticks =
      std::min<uint64_t>(config_.backoff_ticks_max, uint64_t{1} << std::min(retries_, 32u));
  phase_ = ProposerPhase::kBackoff;
  backoff_remaining_ticks_ = static_cast<uint32_t>(prng_.Between(1, window_ticks));
}

// ---------------------------------------------------------------------------------------------
// Acceptor.

bool Paxos::AnsweredWithoutAcceptor(const Message& message) {
  round_seen_ = std::max(round_seen_, message.number.round);
  if (decided_.has_value()) {
    // The proposer can only end up with the decided value; telling it saves both phases.
    Send(Message{.type = MessageType::kDecided, .to = message.from, .value = *decided_});
    return true;
  }
  // 2.2, P1a: "An acceptor can accept a proposal numbered n iff it has not responded to a
  // prepare request having a number greater than n", and it ignores such prepare requests.
  if (message.number < state_.promised) {
    Send(Message{.type = MessageType::kNack,
                 .to = message.from,
                 .number = message.number,
                 .promised = state_.promised});
    return true;
  }
  return false;
}

void Paxos::HandlePrepare(const Message& message) {
  if (AnsweredWithoutAcceptor(message)) return;
  // 2.2, phase 1b: "If an acceptor receives a prepare request with number n greater than that
  // of any prepare request to which it has already responded, then it responds... with a
  // promise". A repeat of the prepare it has promised (a duplicate) gets the same promise again,
  // which promises nothing new.
  if (message.number > state_.promised) {
    state_.promised = message.number;
    MarkStateChanged();
  }
  Send(Message{.type = MessageType::kPromise,
               .to = message.from,
               .number = message.number,
               .accepted = state_.accepted});
}

void Paxos::HandleAccept(const Message& message) {
  if (AnsweredWithoutAcceptor(message)) return;
  if (state_.accepted.has_value() && state_.accepted->number == message.number) {
    // Numbers are unique to one proposal, so a repeat carries the same value.
    SYNOD_ASSERT_MSG(state_.accepted->value == message.value, "proposal {} arrived with two values",
                     ToString(message.number));
  } else {
    // Accepting n also promises n: nothing below it will be accepted any more, which keeps
    // "accepted <= promised" and makes a later nack name the right number.
    state_.promised = message.number;
    state_.accepted = Proposal{message.number, message.value};
    MarkStateChanged();
  }
  // 2.3: "have each acceptor, whenever it accepts a proposal, respond to all learners". A
  // repeated accept is answered again, in case the first answers were lost.
  Broadcast(
      Message{.type = MessageType::kAccepted, .number = message.number, .value = message.value},
      /*include_self=*/true);
}

// ---------------------------------------------------------------------------------------------
// Learner.

void Paxos::HandleAccepted(const Message& message) {
  round_seen_ = std::max(round_seen_, message.number.round);
  if (decided_.has_value()) return;
  auto it = accepted_counts_.find(message.number);
  if (it == accepted_counts_.end()) {
    if (accepted_counts_.size() >= kLearnerProposalsMax) {
      // Keep the highest numbers: a straggler older than all of them is dropped.
      if (message.number < accepted_counts_.begin()->first) return;
      accepted_counts_.erase(accepted_counts_.begin());
    }
    it = accepted_counts_.emplace(message.number, AcceptedCount{message.value, {}}).first;
  }
  SYNOD_ASSERT_MSG(it->second.value == message.value, "proposal {} was accepted with two values",
                   ToString(message.number));
  it->second.acceptors.insert(message.from);
  // 2.3: "a learner must find out that a proposal has been accepted by a majority of
  // acceptors"; a value is chosen when a single proposal with that value has been.
  if (it->second.acceptors.size() >= QuorumSize()) {
    Decide(it->second.value, /*our_proposal_chosen=*/message.number == proposal_number_);
  }
}

void Paxos::Decide(const std::string& value, bool our_proposal_chosen) {
  if (decided_.has_value()) {
    SYNOD_ASSERT_MSG(*decided_ == value, "decided \"{}\", then told \"{}\" was chosen", *decided_,
                     value);
    return;
  }
  decided_ = value;
  state_.decided = value;
  MarkStateChanged();
  decided_unreported_ = true;
  // 2.3's distinguished learner: the proposer whose proposal was chosen tells every other
  // learner, which covers learners that lost some of the accepted messages. The rest ask
  // (kLearn) or are told when they next send a prepare or accept.
  if (our_proposal_chosen) {
    Broadcast(Message{.type = MessageType::kDecided, .value = value}, /*include_self=*/false);
  }
  phase_ = ProposerPhase::kIdle;
  promised_by_.clear();
  highest_accepted_reported_.reset();
  accepted_counts_.clear();
}

// ---------------------------------------------------------------------------------------------
// Output.

void Paxos::Send(Message message) {
  message.from = config_.id;
  SYNOD_ASSERT(message.to != kNoNode);
  if (message.to == config_.id &&
      (message.type == MessageType::kPrepare || message.type == MessageType::kAccept)) {
    // This node's own acceptor takes the request now, so what it promises or accepts is in the
    // same Ready as the request to the others and is durable before any of them can see the
    // number. Its answer waits for Advance like any other message.
    Dispatch(message);
    return;
  }
  outbox_.push_back(std::move(message));
}

void Paxos::Broadcast(Message message, bool include_self) {
  for (NodeId member : config_.members) {
    if (member == config_.id && !include_self) continue;
    Message copy = message;
    copy.to = member;
    Send(std::move(copy));
  }
}

bool Paxos::HasReady() const {
  return !awaiting_advance_ && (state_changed_ || !outbox_.empty() || decided_unreported_);
}

Ready Paxos::TakeReady() {
  SYNOD_ASSERT(HasReady());
  Ready ready;
  if (state_changed_) {
    ready.state = state_;
#ifdef SYNOD_BROKEN_FORGET_PROMISE
    // Deliberately broken build: the acceptor does not persist its promise (2.3: "an acceptor
    // must remember this information even if it fails"), only what it accepted; after a crash
    // it may accept a proposal below a number it promised.
    ready.state->promised =
        state_.accepted.has_value() ? state_.accepted->number : ProposalNumber{};
#endif
  }
  for (Message& message : outbox_) {
    if (message.to == config_.id) {
      to_self_after_advance_.push_back(std::move(message));
    } else {
      ready.messages.push_back(std::move(message));
    }
  }
  outbox_.clear();
  if (decided_unreported_) ready.decided = decided_;
  state_changed_ = false;
  decided_unreported_ = false;
  awaiting_advance_ = true;
  return ready;
}

void Paxos::Advance() {
  SYNOD_ASSERT(awaiting_advance_);
  awaiting_advance_ = false;
  std::vector<Message> to_self = std::move(to_self_after_advance_);
  to_self_after_advance_.clear();
  for (const Message& message : to_self) Dispatch(message);
  if (config_.check_invariants) CheckInvariants();
}

// ---------------------------------------------------------------------------------------------
// Invariants.

void Paxos::CheckInvariants() {
  const size_t quorum = QuorumSize();
  // Acceptor.
  if (state_.accepted.has_value()) {
    SYNOD_ASSERT(!state_.accepted->number.IsNone());
    SYNOD_ASSERT_MSG(state_.accepted->number <= state_.promised, "accepted {} above promise {}",
                     ToString(state_.accepted->number), ToString(state_.promised));
  }
  SYNOD_ASSERT(decided_ == state_.decided);
  SYNOD_ASSERT(round_seen_ >= state_.promised.round);

  // Proposer.
  if (phase_ == ProposerPhase::kIdle) {
    SYNOD_ASSERT(promised_by_.empty());
  } else {
    SYNOD_ASSERT(own_value_.has_value());
    SYNOD_ASSERT(!decided_.has_value());
    SYNOD_ASSERT(proposal_number_.proposer == config_.id);
    SYNOD_ASSERT(!proposal_number_.IsNone());
    SYNOD_ASSERT_MSG(proposal_number_ <= state_.promised, "own proposal {} not promised ({})",
                     ToString(proposal_number_), ToString(state_.promised));
    SYNOD_ASSERT(round_seen_ >= proposal_number_.round);
  }
  if (phase_ == ProposerPhase::kPreparing) SYNOD_ASSERT(promised_by_.size() < quorum);
  if (phase_ == ProposerPhase::kBackoff) {
    SYNOD_ASSERT(config_.randomized_backoff);
    SYNOD_ASSERT(backoff_remaining_ticks_ >= 1);
    SYNOD_ASSERT(backoff_remaining_ticks_ <= config_.backoff_ticks_max);
  }
  for (NodeId id : promised_by_) SYNOD_ASSERT(IsMember(config_.members, id));

  // Learner: a proposal counted by a majority is decided at once, and counting stops then.
  SYNOD_ASSERT(accepted_counts_.size() <= kLearnerProposalsMax);
  if (decided_.has_value()) SYNOD_ASSERT(accepted_counts_.empty());
  for (const auto& [number, count] : accepted_counts_) {
    SYNOD_ASSERT(count.acceptors.size() < quorum);
    for (NodeId id : count.acceptors) SYNOD_ASSERT(IsMember(config_.members, id));
  }

  // Delta checks against the previous call.
  const ProposalNumber accepted_number =
      state_.accepted.has_value() ? state_.accepted->number : ProposalNumber{};
  SYNOD_ASSERT_MSG(state_.promised >= observed_.promised, "promise fell from {} to {}",
                   ToString(observed_.promised), ToString(state_.promised));
  SYNOD_ASSERT_MSG(accepted_number >= observed_.accepted, "accepted fell from {} to {}",
                   ToString(observed_.accepted), ToString(accepted_number));
  if (observed_.decided.has_value()) {
    SYNOD_ASSERT_MSG(decided_ == observed_.decided, "decided value changed from \"{}\"",
                     *observed_.decided);
  }
  SYNOD_ASSERT(proposal_number_ >= observed_.proposal_number);
  observed_ = {state_.promised, accepted_number, decided_, proposal_number_};
}

}  // namespace synod::paxos
