// Single-decree Paxos (Lamport, "Paxos Made Simple", 2001, sections 2.2-2.4) as a pure state
// machine: the Synod protocol that agrees on one value.
//
// Every node plays all three roles of the paper: proposer, acceptor and learner. Like the Raft
// core it owns no sockets, files, threads or clocks: time is Tick(); randomness (the retry
// backoff) comes from a generator seeded by Config::seed; input arrives through Step and
// Propose; output leaves as a Ready batch (types.h: persist, send, report, Advance). One seed
// therefore replays one run. It is not thread-safe: one event loop owns it.
//
// Why the roles are not step/tick function pairs as in the Raft core: a Raft node is in exactly
// one role at a time, a Paxos node is in all three at once, so messages are dispatched by type
// to the role that handles them.
//
// Messages a node sends to itself (its proposer to its own acceptor, its acceptor to its own
// learner) never leave the core, but they are treated as the caller treats the others: they
// are delivered only at Advance, after the state they depend on is durable. So a proposer never
// counts its own promise or acceptance before its own disk has it.
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
#include "consensus/paxos/types.h"

namespace synod::paxos {

// The most nodes a group may have, and the most proposal numbers a learner keeps counts for
// (older ones are dropped: they can only matter if their accepted messages are still arriving,
// and a learner that misses a decision this way learns it from kDecided or kLearn).
inline constexpr size_t kMembersMax = 64;
inline constexpr size_t kLearnerProposalsMax = 64;

struct Config {
  NodeId id;
  // Every node of the group, this one included: each is a proposer, an acceptor and a learner.
  // Invariant: sorted, without duplicates, no kNoNode, at most kMembersMax.
  std::vector<NodeId> members;
  // A proposer that has not gathered a majority of promises or acceptances within this many
  // ticks abandons the proposal number and retries (2.4: "if it has not heard... a proposer
  // should abandon" and try a higher number). An undecided node that is not proposing asks the
  // others for the decision (kLearn) this often.
  uint32_t phase_timeout_ticks = 10;
  // 2.4: two proposers that keep issuing higher numbers can preempt each other forever (the
  // dueling proposers; FLP says no deterministic protocol avoids this). With this on, a
  // proposer preempted or timed out for the k-th time waits a random 1..min(2^k,
  // backoff_ticks_max) ticks before its next prepare, which breaks the symmetry with high
  // probability. Off, it retries at once; only the dueling-proposers test turns it off, to show
  // the livelock. Invariant: backoff_ticks_max >= 2 when on.
  bool randomized_backoff = true;
  uint32_t backoff_ticks_max = 32;
  uint64_t seed = 0;
  // Run CheckInvariants() after every input. Always on in the simulator.
  bool check_invariants = false;
};

// Invalid configuration is rejected at start-up, never silently adjusted.
Status Validate(const Config& config);

enum class ProposerPhase : uint8_t {
  kIdle,       // nothing to propose, or the value is decided
  kPreparing,  // phase 1: prepare sent, gathering promises
  kAccepting,  // phase 2: accept sent, waiting for the learner to see a majority
  kBackoff,    // preempted or timed out: waiting before the next prepare
};

std::string_view ToString(ProposerPhase phase);

class Paxos {
 public:
  // Builds a node from what it persisted (PersistentState{} for a new node). The node keeps
  // every promise in `state`, and its own proposal numbers start above `state.promised`, so a
  // restarted proposer never reuses a number it may have sent before the crash.
  // Fails with InvalidArgument on an invalid config or inconsistent state.
  static Result<std::unique_ptr<Paxos>> Create(const Config& config, PersistentState state);

  Paxos(const Paxos&) = delete;
  Paxos& operator=(const Paxos&) = delete;

  // ---- Inputs ----

  // Advances logical time by one tick: phase timeouts, backoff and learn queries.
  void Tick();

  // Delivers a message from a peer. Messages may arrive lost, duplicated, reordered or stale;
  // all of that is handled. Returns InvalidArgument for a malformed message (it is dropped).
  Status Step(Message message);

  // Asks this node to propose `value` and starts phase 1 now. The value that gets chosen may be
  // another proposer's (2.2, P2c: a proposer adopts the highest-numbered accepted value it is
  // told of). Proposing the same value again is a no-op. Fails with FailedPrecondition if a value
  // is already decided or this node is already proposing a different value.
  Status Propose(std::string value);

  // The chosen value, or nullopt while this node has not learned one ("not yet decided").
  const std::optional<std::string>& Query() const { return decided_; }

  // ---- Output ----

  // True when TakeReady would return something to do. False while a Ready awaits Advance.
  bool HasReady() const;
  // Hands out everything accumulated since the last Ready. Precondition: HasReady().
  Ready TakeReady();
  // The caller has done everything the last Ready asked (types.h). Messages this node sent to
  // itself in that Ready are delivered now.
  void Advance();

  // ---- Inspection ----

  NodeId id() const { return config_.id; }
  const PersistentState& persistent_state() const { return state_; }
  ProposerPhase phase() const { return phase_; }
  // The number of the current (or last) proposal this node issued; none before its first.
  ProposalNumber proposal_number() const { return proposal_number_; }
  size_t QuorumSize() const { return config_.members.size() / 2 + 1; }

  // Asserts every invariant of the state and the step-to-step ("delta") invariants against the
  // state at the previous call: the promise and the accepted number never decrease, the decided
  // value never changes, this node's proposal numbers only rise.
  void CheckInvariants();

 private:
  Paxos(const Config& config, PersistentState state);

  Status ValidateMessage(const Message& message) const;
  // Dispatches a message (from a peer, or from this node itself at Advance) to its role.
  void Dispatch(const Message& message);

  // Proposer (2.2, "an algorithm for issuing proposals").
  void StartPrepare();
  void HandlePromise(const Message& message);
  void HandleNack(const Message& message);
  void Retry();

  // Acceptor (2.2, "what an acceptor does").
  // Answers a prepare or accept request that the acceptor must not take: with kDecided once a
  // value is decided, with a kNack below the promise. Returns whether it answered.
  bool AnsweredWithoutAcceptor(const Message& message);
  void HandlePrepare(const Message& message);
  void HandleAccept(const Message& message);

  // Learner (2.3).
  void HandleAccepted(const Message& message);
  // Records the chosen value; `our_proposal_chosen` when it was this node's proposal number
  // that a majority accepted, which makes this node the one that tells the others.
  void Decide(const std::string& value, bool our_proposal_chosen);

  void Send(Message message);
  void Broadcast(Message message, bool include_self);
  void MarkStateChanged() { state_changed_ = true; }

  Config config_;
  base::Prng prng_;

  // Acceptor state and decided value, exactly what Ready::state carries.
  // Invariant: state_.accepted->number <= state_.promised.
  PersistentState state_;
  // Invariant: decided_ == state_.decided; kept apart so Query() can return a reference that
  // stays valid (state_ is copied into every Ready).
  std::optional<std::string> decided_;

  // Proposer.
  ProposerPhase phase_ = ProposerPhase::kIdle;
  // The value this node was asked to propose; it proposes it unless a promise reports an
  // accepted value (2.2, P2c).
  std::optional<std::string> own_value_;
  // Invariant: proposal_number_ <= state_.promised once set: a prepare is handed to this node's
  // own acceptor first, so the number is durable before anyone else can see it. This is what
  // keeps a restarted proposer from reusing a number.
  ProposalNumber proposal_number_;
  // The highest round seen in any message or in the persisted state; the next proposal number
  // is above it (2.4: a proposer "should abandon its proposal... and try again with a higher
  // number").
  Ballot round_seen_;
  // Phase 1: who has promised proposal_number_, and the highest-numbered proposal they reported
  // accepted. Invariant: keys are members.
  std::set<NodeId> promised_by_;
  std::optional<Proposal> highest_accepted_reported_;
  // Phase 2: the value sent in the accept requests of proposal_number_.
  std::string accept_value_;
  uint32_t phase_elapsed_ticks_ = 0;
  uint32_t backoff_remaining_ticks_ = 0;
  // Proposals abandoned so far; sets the backoff window.
  uint32_t retries_ = 0;

  // Learner: for each recent proposal number, the acceptors that accepted it and its value.
  // Invariant: at most kLearnerProposalsMax entries; each set holds members only.
  struct AcceptedCount {
    std::string value;
    std::set<NodeId> acceptors;
  };
  std::map<ProposalNumber, AcceptedCount> accepted_counts_;
  uint32_t learn_elapsed_ticks_ = 0;

  // Output accumulated for the next Ready.
  std::vector<Message> outbox_;
  bool state_changed_ = false;
  bool decided_unreported_ = false;
  // Messages to this node itself from the Ready awaiting Advance.
  std::vector<Message> to_self_after_advance_;
  bool awaiting_advance_ = false;

  // The state at the previous CheckInvariants call, for delta checks.
  struct Observed {
    ProposalNumber promised;
    ProposalNumber accepted;
    std::optional<std::string> decided;
    ProposalNumber proposal_number;
  };
  Observed observed_;
};

}  // namespace synod::paxos
