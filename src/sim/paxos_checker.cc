#include "sim/paxos_checker.h"

#include <fmt/format.h>

namespace synod::sim {

using paxos::Message;
using paxos::MessageType;
using paxos::ProposalNumber;

void PaxosChecker::Fail(std::string message) {
  if (!failure_.has_value()) failure_ = std::move(message);
}

void PaxosChecker::OnProposed(NodeId /*node*/, const std::string& value) {
  proposed_.insert(value);
}

void PaxosChecker::CheckPromiseKept(NodeId acceptor, const ProposalNumber& number,
                                    std::string_view what) {
  ProposalNumber& level = promise_level_[acceptor];
  // 2.2, P1a, and 2.3: an acceptor that promised n never accepts, nor promises, anything
  // numbered below n, also after it failed and restarted.
  if (number < level) {
    Fail(fmt::format("Broken promise: node {} {} {} after it had promised {}", acceptor, what,
                     paxos::ToString(number), paxos::ToString(level)));
  }
  level = std::max(level, number);
}

void PaxosChecker::OnSent(const Message& message) {
  switch (message.type) {
    case MessageType::kPromise:
      CheckPromiseKept(message.from, message.number, "promised");
      return;
    case MessageType::kNack:
      CheckPromiseKept(message.from, message.promised, "reported its promise as");
      return;
    case MessageType::kDecided:
      OnDecided(message.from, message.value);
      return;
    case MessageType::kAccepted:
      break;
    case MessageType::kPrepare:
    case MessageType::kAccept:
    case MessageType::kLearn:
      return;
  }
  CheckPromiseKept(message.from, message.number, "accepted");
  auto [it, inserted] = accepted_.try_emplace(message.number, Acceptance{message.value, {}});
  // 2.2: "different proposals have different numbers".
  if (it->second.value != message.value) {
    Fail(fmt::format("Unique proposal numbers: proposal {} was accepted with \"{}\" and \"{}\"",
                     paxos::ToString(message.number), it->second.value, message.value));
    return;
  }
  it->second.acceptors.insert(message.from);
  if (it->second.acceptors.size() < quorum_) return;
  // 2.1: "Only a value that has been proposed may be chosen, only a single value is chosen".
  if (!proposed_.contains(message.value)) {
    Fail(fmt::format("Validity: \"{}\" was chosen (proposal {}) but never proposed", message.value,
                     paxos::ToString(message.number)));
    return;
  }
  if (!chosen_.has_value()) {
    chosen_ = message.value;
    chosen_number_ = message.number;
  } else if (*chosen_ != message.value) {
    Fail(fmt::format("Agreement: \"{}\" was chosen (proposal {}), then \"{}\" (proposal {})",
                     *chosen_, paxos::ToString(chosen_number_), message.value,
                     paxos::ToString(message.number)));
  }
}

void PaxosChecker::OnDecided(NodeId node, const std::string& value) {
  // 2.1: "a process never learns that a value has been chosen unless it actually has been".
  if (!chosen_.has_value()) {
    Fail(fmt::format("Learning: node {} learned \"{}\" before any value was chosen", node, value));
  } else if (*chosen_ != value) {
    Fail(fmt::format("Learning: node {} learned \"{}\" but \"{}\" was chosen", node, value,
                     *chosen_));
  }
}

}  // namespace synod::sim
