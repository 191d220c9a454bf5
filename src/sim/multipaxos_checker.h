// Global safety checks for Multi-Paxos, computed from what the nodes make durable, send and
// apply ("Paxos Made Simple" 2.1's safety requirements, per slot, and 2.3's rule that acceptors
// remember their promises; section 3's state machine on top):
//   - Agreement: at most one value is chosen per slot, so a chosen value never changes;
//   - Validity: every chosen value was proposed by a client, or is a leader's no-op;
//   - Broken promise: no acceptor promises or accepts below a ballot it promised or accepted
//     before, across restarts too;
//   - Unique ballots: one ballot proposes one value per slot;
//   - Learning / applied prefixes: a node applies slots in order, only chosen values, so every
//     node's applied prefix is a prefix of one sequence (checked by a digest per prefix, which
//     also covers state restored from snapshots);
//   - Stale read: a linearizable read's index covers every slot applied anywhere before the read
//     was asked for;
//   - Reconfiguration (the α rule, PMS 3): a slot is chosen by a majority of the voters of its
//     own configuration, the one chosen values below slot - α make, and no acceptor accepts a
//     slot before every slot up to slot - α is chosen (before that its configuration is not
//     determined, so no leader may propose it).
// An acceptance counts once it is durable (the message that announces it leaves only then).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "base/ids.h"
#include "consensus/multipaxos/types.h"

namespace synod::sim {

class MultiPaxosChecker {
 public:
  // A group whose initial configuration is `initial`, with Config::alpha_slots `alpha_slots`.
  MultiPaxosChecker(multipaxos::Membership initial, uint64_t alpha_slots);
  // A group of voters 1..members with the default α.
  explicit MultiPaxosChecker(size_t members);

  // The application's state machine in the simulator: a digest of the applied sequence.
  static uint64_t Fold(uint64_t digest, const multipaxos::Entry& entry);

  // A client asked a leader to propose `data`.
  void OnProposed(const std::string& data);
  // `node` made one Ready durable (its hard state, if the Ready had one, and its slots) and is
  // about to send the Ready's messages.
  void OnReadyDurable(NodeId node, const std::optional<multipaxos::HardState>& hard_state,
                      const std::vector<multipaxos::Slot>& slots,
                      const std::vector<multipaxos::Message>& messages);
  // `node`'s state machine was restored to a snapshot at `index` with `digest` (at start, at a
  // restart, or from an installed snapshot).
  void OnRestored(NodeId node, Index index, uint64_t digest);
  // `node` applied `entry`; returns the node's new digest.
  uint64_t OnApplied(NodeId node, const multipaxos::Entry& entry);
  // A read was asked for under `context`; the index it gets must cover what is applied now.
  void OnReadAsked(const std::string& context);
  void OnReadReleased(NodeId node, const multipaxos::ReadState& read);

  const std::optional<std::string>& failure() const { return failure_; }
  size_t chosen_slots() const { return chosen_.size(); }
  // The highest slot any node has applied.
  Index applied_max() const { return applied_max_; }
  // The configuration of the latest change chosen (it may take effect only α slots later).
  const multipaxos::Membership& latest_membership() const { return configs_.rbegin()->second; }

 private:
  void CountAcceptance(NodeId node, const multipaxos::Slot& slot);
  void Fail(std::string message);

  // configs_[s] governs the slots from s on (up to the next key); a kConfig value chosen in
  // slot i adds the key i + α once every slot up to i is chosen.
  uint64_t alpha_slots_;
  std::map<Index, multipaxos::Membership> configs_;
  // Every slot up to here is chosen.
  Index chosen_prefix_;
  std::set<std::string> proposed_;
  // Per acceptor, the highest ballot it has promised or accepted, durably or in a message.
  std::map<NodeId, multipaxos::BallotNumber> promise_level_;
  struct Acceptance {
    multipaxos::Entry value;
    std::set<NodeId> acceptors;
  };
  std::map<Index, std::map<multipaxos::BallotNumber, Acceptance>> acceptances_;
  std::map<Index, multipaxos::Entry> chosen_;
  // Per node, what its state machine has applied.
  struct Applied {
    Index index;
    uint64_t digest = 0;
  };
  std::map<NodeId, Applied> applied_;
  // The digest of the applied prefix ending at each index, as the first node to get there had it.
  std::map<Index, uint64_t> prefix_digests_;
  Index applied_max_;
  std::map<std::string, Index> reads_asked_;
  std::optional<std::string> failure_;
};

}  // namespace synod::sim
