// Plain data exchanged between the single-decree Paxos core and its caller: proposal numbers,
// the acceptor's durable state, messages and the Ready batch. Nothing here does I/O; the caller
// decides how these are encoded on disk and on the wire.
//
// Names follow Lamport, "Paxos Made Simple" (2001), sections 2.2-2.4.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"

namespace synod::paxos {

// Paxos Made Simple 2.2 assumes "different proposals have different numbers"; 2.4 gets that
// by letting "different proposers choose their numbers from disjoint sets". A proposer's set is
// every (round, its own id); the order is by round first, so a proposer can always pick a number
// higher than any it has seen by taking a higher round.
struct ProposalNumber {
  // 0 only in ProposalNumber{}, which means "none" and is lower than every real number.
  Ballot round;
  NodeId proposer;

  bool IsNone() const { return round == Ballot(); }
  auto operator<=>(const ProposalNumber&) const = default;
};

std::string ToString(const ProposalNumber& number);

// A proposal: a number and a value (2.2). The value is opaque bytes to the core.
struct Proposal {
  ProposalNumber number;
  std::string value;

  bool operator==(const Proposal&) const = default;
};

// What an acceptor must remember across a crash (2.3: "an acceptor must remember this
// information even if it fails and then restarts"), plus the decided value so that Query()
// still answers after a restart.
// Invariant: accepted->number <= promised when accepted is set.
struct PersistentState {
  // The highest-numbered prepare request this acceptor has responded to: it has promised never
  // to accept a proposal numbered less than this (2.2, P1a).
  ProposalNumber promised;
  // The highest-numbered proposal this acceptor has accepted.
  std::optional<Proposal> accepted;
  // The chosen value, once this node has learned it (2.3). It never changes.
  std::optional<std::string> decided;

  bool operator==(const PersistentState&) const = default;
};

enum class MessageType : uint8_t {
  // Phase 1a (2.2): "a proposer selects a proposal number n and sends a prepare request with
  // number n to a majority of acceptors".
  kPrepare,
  // Phase 1b: the promise not to accept anything numbered below n, with the highest-numbered
  // proposal the acceptor has accepted, if any.
  kPromise,
  // Phase 2a: "an accept request to each of those acceptors for a proposal numbered n with a
  // value v".
  kAccept,
  // Phase 2b: the acceptor accepted the proposal; sent to every learner (2.3, "have each
  // acceptor, whenever it accepts a proposal, respond to all learners").
  kAccepted,
  // The refusal of a prepare or accept numbered below the acceptor's promise. Not in the
  // paper's algorithm; 2.3 suggests it as the optimisation that lets a proposer "abandon its
  // proposal" early, and it carries the promised number so the next try can skip past it.
  kNack,
  // The chosen value, told to a learner that may not have counted it itself (2.3's
  // "distinguished learner" informing the others, and the answer to kLearn).
  kDecided,
  // An undecided learner asks the others for the chosen value, because a learner that missed
  // the accepted messages "can find out... only by having a proposer issue a proposal" otherwise
  // (2.3), and a node need not be proposing anything.
  kLearn,
};

std::string_view ToString(MessageType type);

// One message of the protocol: a flat record whose fields are used according to `type`, like
// the Raft core's. Unused fields stay at their defaults.
struct Message {
  MessageType type = MessageType::kPrepare;
  NodeId from;
  NodeId to;
  // kPrepare, kPromise, kAccept, kAccepted, kNack: the proposal number the message is about.
  ProposalNumber number;
  // kNack: the number the acceptor has promised (higher than `number`).
  ProposalNumber promised;
  // kPromise: the highest-numbered proposal the acceptor has accepted, if any.
  std::optional<Proposal> accepted;
  // kAccept, kAccepted: the proposal's value. kDecided: the chosen value.
  std::string value;
};

std::string ToString(const Message& message);

// The core's output, handed out by Paxos::TakeReady. The caller must, in this order:
//   1. persist `state` if present (it replaces the previous one) and make it durable (fsync);
//   2. send `messages`: every promise and every accepted message in them depends on `state`,
//      which is why no message may leave before step 1 completes;
//   3. hand `decided` to the application if present (it is reported once);
//   4. call Paxos::Advance().
struct Ready {
  std::optional<PersistentState> state;
  std::vector<Message> messages;
  std::optional<std::string> decided;

  bool MustPersist() const { return state.has_value(); }
};

}  // namespace synod::paxos
