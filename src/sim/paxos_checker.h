// Global safety checks for single-decree Paxos, computed from what the nodes send (Paxos Made
// Simple 2.1, the safety requirements, and 2.3's rule that acceptors remember their promises).
// Each message is observed as it leaves its node, that is after the node persisted the state it
// depends on, whether or not the network then delivers it.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "base/ids.h"
#include "consensus/paxos/types.h"

namespace synod::sim {

class PaxosChecker {
 public:
  explicit PaxosChecker(size_t members) : quorum_(members / 2 + 1) {}

  // A client asked `node` to propose `value`.
  void OnProposed(NodeId node, const std::string& value);
  // A message left its node.
  void OnSent(const paxos::Message& message);
  // A node reported `value` as decided (Ready::decided, or restarted knowing it).
  void OnDecided(NodeId node, const std::string& value);

  const std::optional<std::string>& failure() const { return failure_; }
  // The value a majority of acceptors accepted under one proposal number, once there is one.
  const std::optional<std::string>& chosen() const { return chosen_; }

 private:
  // Checks that `acceptor` now acts at `number`, at or above every number it promised or
  // accepted before (across restarts too), and raises its level to it.
  void CheckPromiseKept(NodeId acceptor, const paxos::ProposalNumber& number,
                        std::string_view what);
  void Fail(std::string message);

  size_t quorum_;
  std::set<std::string> proposed_;
  // Per acceptor, the highest number it has promised or accepted in any message it sent.
  std::map<NodeId, paxos::ProposalNumber> promise_level_;
  struct Acceptance {
    std::string value;
    std::set<NodeId> acceptors;
  };
  std::map<paxos::ProposalNumber, Acceptance> accepted_;
  std::optional<std::string> chosen_;
  paxos::ProposalNumber chosen_number_;
  std::optional<std::string> failure_;
};

}  // namespace synod::sim
