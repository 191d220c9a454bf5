// Plain data exchanged between the Multi-Paxos core and its caller: ballots, the acceptor's
// durable state per slot, messages and the Ready batch. Nothing here does I/O.
//
// The shapes follow the Raft core's (consensus/raft/types.h) and reuse its Entry, Snapshot,
// Membership and ReadState, so that the server can drive either engine through one thin
// adapter: a slot's value is a raft::Entry whose `index` is the slot, whose `type` is kNormal
// for a client command or kEmpty for the no-op a new leader fills a gap with, and whose `term`
// is the round of the leader that first proposed it (the value never changes when a later leader
// re-proposes it, so every node holds the same Entry for a chosen slot).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "consensus/paxos/types.h"
#include "consensus/raft/types.h"

namespace synod::multipaxos {

// "Paxos Made Simple" 2.4: proposal numbers from disjoint sets, one per proposer: (round, node
// id), ordered by round first. The single-decree core's type is exactly that.
using BallotNumber = paxos::ProposalNumber;

using raft::Entry;
using raft::EntryType;
using raft::Membership;
using raft::ReadState;
using raft::Snapshot;

// An acceptor's state for one slot: the value it accepted and the ballot it accepted it in
// ("Paxos Made Simple" 3: one instance of the Synod algorithm per slot). A slot whose value the
// node only learned as chosen (from a leader's catch-up) has a none ballot: the node did not
// accept it as an acceptor, and it is below the commit index.
struct Slot {
  BallotNumber accepted;
  Entry value;

  bool operator==(const Slot&) const = default;
};

// What the acceptor must remember across a crash ("Paxos Made Simple" 2.3) beyond its slots:
// the one promise that covers every slot (3: a leader's phase 1 is "for infinitely many
// instances" at once), and the commit index, below which every slot is chosen and stored.
struct HardState {
  BallotNumber promised;
  // Invariant: every slot <= commit is chosen and its chosen value is stored (or compacted).
  // The durable commit index may lag the node's (see Ready::hard_state).
  Index commit;

  bool operator==(const HardState&) const = default;
};

// What a node restarts from: everything the caller made durable through Ready batches.
struct PersistentState {
  HardState hard_state;
  // The latest snapshot; a new group member starts from one at index 0 whose membership's
  // voters are the group. Slots above its index stay in `slots` (an unchosen slot's accepted
  // value is acceptor state and must never be dropped).
  Snapshot snapshot;
  // The stored slots above snapshot.meta.index, ascending, not necessarily contiguous.
  std::vector<Slot> slots;
  // How far the application has applied, if it is durable beyond the snapshot. It may be ahead
  // of the lagging durable commit index, which Create raises to it (only chosen slots, durable
  // before they were handed out, are applied).
  std::optional<Index> applied;
};

enum class MessageType : uint8_t {
  // Phase 1a for every slot >= `index` at once ("Paxos Made Simple" 3: "phase 1 for infinitely
  // many instances").
  kPrepare,
  // Phase 1b: the promise, with every slot the acceptor holds at or above `index`.
  kPromise,
  // Phase 2a for a batch of slots.
  kAccept,
  // Phase 2b: the slots of `acked` were accepted in `ballot`.
  kAccepted,
  // A prepare or accept below the acceptor's promise ("Paxos Made Simple" 2.3's suggested
  // optimisation); it tells the proposer the promised ballot so it can step down.
  kNack,
  // The leader's liveness beat and ReadIndex round; carries its commit index.
  kHeartbeat,
  kHeartbeatResponse,
  // Chosen values a lagging node is missing ("Paxos Made Simple" 3: a server that missed
  // commands learns them from the leader).
  kChosen,
  // The leader's snapshot for a node whose missing slots are compacted away.
  kInstallSnapshot,
  // Raft thesis 6.4, for Paxos: a follower asks the leader for a read index on behalf of its
  // client; the leader answers after its heartbeat round confirmed its ballot.
  kReadIndex,
  kReadIndexResponse,
  // Leadership transfer (Raft thesis 3.10's TimeoutNow, for Paxos): the leader tells the
  // target, which it brought up to date, to start phase 1 at once.
  kTimeoutNow,
};

std::string_view ToString(MessageType type);

// One message: a flat record whose fields are used according to `type`, like the Raft core's.
struct Message {
  MessageType type = MessageType::kPrepare;
  NodeId from;
  NodeId to;
  // Every type: the ballot the message is about (for kNack, the refused one).
  BallotNumber ballot;
  // kPrepare: the first slot the new leader asks about (its commit index + 1).
  // kReadIndexResponse: the read index.
  Index index;
  // kAccept, kHeartbeat, kChosen: the leader's commit index. kPromise, kAccepted,
  // kHeartbeatResponse: the sender's, so the leader knows what it must catch up.
  Index commit;
  // kAccept: the proposed values. kChosen: chosen values, ascending and contiguous.
  std::vector<Entry> entries;
  // kPromise: the acceptor's slots at or above `index` (and above its snapshot).
  std::vector<Slot> slots;
  // kAccepted: the slots accepted in `ballot`.
  std::vector<Index> acked;
  // kNack: the acceptor's promise.
  BallotNumber promised;
  // kHeartbeat, kHeartbeatResponse: the ReadIndex round this heartbeat confirms.
  uint64_t read_round = 0;
  // kReadIndex, kReadIndexResponse: the requester's opaque id for the read.
  std::string read_context;
  // kInstallSnapshot; kPromise when the acceptor compacted slots the leader asked about.
  std::optional<Snapshot> snapshot;
  // kPrepare: sent by a transfer target on its leader's kTimeoutNow. Acceptors answer it even
  // while they hear a leader (check-quorum ignores other prepares then; Raft's "force" vote).
  bool leadership_transfer = false;
};

std::string ToString(const Message& message);

enum class Role : uint8_t {
  kFollower,
  // Phase 1 in progress with its own ballot.
  kCandidate,
  kLeader,
};
std::string_view ToString(Role role);

struct SoftState {
  Role role = Role::kFollower;
  NodeId leader;

  bool operator==(const SoftState&) const = default;
};

// The core's output, handed out by MultiPaxos::TakeReady. The caller must, in this order:
//   1. persist `snapshot` (discard stored slots at or below its index, keep those above), then
//      `slots` (each replaces the stored slot of the same index), then `hard_state`, and make
//      them durable (fsync);
//   2. send `messages`: promises and acceptances in them depend on step 1; `early_messages` may
//      be sent before step 1 finishes;
//   3. restore the state machine from `snapshot` if present, apply `committed_entries` in
//      order, and serve `read_states` once their index is applied;
//   4. call MultiPaxos::Advance().
struct Ready {
  std::optional<SoftState> soft_state;
  // Present when the promise changed, or with slots or a snapshot. A change of the commit index
  // alone rides along with the next of those: it is no acceptor state (the commit index is
  // relearned from the leader after a crash, as Raft's is), so a Ready that only commits
  // persists nothing and needs no fsync. Invariant: a stored slot learned as chosen (none
  // ballot) is persisted with a commit index covering it.
  std::optional<HardState> hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Slot> slots;
  // Raft thesis 10.2.1, for Paxos: the leader's accepts (and its heartbeats, chosen values and
  // snapshots) may leave before its own acceptor's slots are durable, because it counts its own
  // acceptance only at Advance, after they are. Only messages of a leader whose ballot is
  // already durable land here (a ballot must never be reused after a crash); every promise,
  // acceptance or refusal is in `messages`.
  std::vector<Message> early_messages;
  std::vector<Message> messages;
  std::vector<Entry> committed_entries;
  std::vector<ReadState> read_states;

  bool MustPersist() const { return hard_state || snapshot || !slots.empty(); }
};

// Step 1 of the Ready contract for a caller that keeps its durable state in memory (the tests
// and the simulator): folds what `ready` asks to persist into `state`.
void PersistInMemory(const Ready& ready, PersistentState& state);

}  // namespace synod::multipaxos
