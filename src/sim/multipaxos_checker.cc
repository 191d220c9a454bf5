#include "sim/multipaxos_checker.h"

#include <fmt/format.h>

#include <algorithm>

#include "consensus/multipaxos/multipaxos.h"

namespace synod::sim {

using multipaxos::BallotNumber;
using multipaxos::Entry;
using multipaxos::EntryType;
using multipaxos::Message;
using multipaxos::MessageType;

namespace {

std::string Describe(const Entry& entry) {
  if (entry.type == EntryType::kConfig) {
    return fmt::format("configuration {}", raft::ToString(entry.membership));
  }
  return entry.type == EntryType::kEmpty ? std::string("no-op")
                                         : fmt::format("\"{}\"", entry.data);
}

}  // namespace

uint64_t MultiPaxosChecker::Fold(uint64_t digest, const Entry& entry) {
  // FNV-1a over the slot, the kind and the bytes: any difference in an applied prefix changes
  // the digest of every longer prefix.
  constexpr uint64_t kPrime = 1099511628211ull;
  auto mix = [&digest](uint64_t byte) { digest = (digest ^ byte) * kPrime; };
  if (digest == 0) digest = 14695981039346656037ull;
  for (int shift = 0; shift < 64; shift += 8) mix((entry.index.value() >> shift) & 0xff);
  mix(static_cast<uint64_t>(entry.type));
  for (unsigned char byte : entry.data) mix(byte);
  for (const std::vector<NodeId>* ids : {&entry.membership.voters, &entry.membership.learners}) {
    for (NodeId id : *ids) mix(id.value());
    mix(0);
  }
  return digest;
}

MultiPaxosChecker::MultiPaxosChecker(multipaxos::Membership initial, uint64_t alpha_slots)
    : alpha_slots_(alpha_slots) {
  configs_.emplace(Index(1), std::move(initial));
}

MultiPaxosChecker::MultiPaxosChecker(size_t members)
    : MultiPaxosChecker(
          [members] {
            multipaxos::Membership group;
            for (size_t i = 1; i <= members; ++i) group.voters.push_back(NodeId(i));
            return group;
          }(),
          multipaxos::Config{}.alpha_slots) {}

void MultiPaxosChecker::Fail(std::string message) {
  if (!failure_.has_value()) failure_ = std::move(message);
}

void MultiPaxosChecker::OnProposed(const std::string& data) { proposed_.insert(data); }

void MultiPaxosChecker::OnReadyDurable(NodeId node,
                                       const std::optional<multipaxos::HardState>& hard_state,
                                       const std::vector<multipaxos::Slot>& slots,
                                       const std::vector<Message>& messages) {
  // PMS 2.2, P1a, and 2.3: an acceptor that promised n never accepts, nor promises, anything
  // numbered below n, also after it failed and restarted. Everything in one Ready is measured
  // against the promises of the Readies before it; within the Ready, its promises and
  // acceptances must not fall in the order the node made them (its messages' order).
  const BallotNumber level_before = promise_level_[node];
  BallotNumber level = level_before;
  auto check = [&](const BallotNumber& ballot, BallotNumber floor, const std::string& what) {
    if (ballot < floor) {
      Fail(fmt::format("Broken promise: node {} {} {} after it had promised {}", node, what,
                       paxos::ToString(ballot), paxos::ToString(floor)));
    }
    level = std::max(level, ballot);
  };
  BallotNumber running = level_before;
  for (const Message& message : messages) {
    if (message.type == MessageType::kPromise) {
      check(message.ballot, running, "promised");
    } else if (message.type == MessageType::kAccepted && !message.acked.empty()) {
      check(message.ballot, running, "sent acceptances in");
    } else if (message.type == MessageType::kNack) {
      check(message.promised, running, "reported its promise as");
    } else {
      continue;
    }
    running = std::max(running, level);
  }
  for (const multipaxos::Slot& slot : slots) {
    if (slot.accepted.IsNone()) continue;  // learned as chosen, not accepted
    check(slot.accepted, level_before, fmt::format("accepted slot {} in", slot.value.index));
    CountAcceptance(node, slot);
  }
  if (hard_state.has_value()) check(hard_state->promised, level_before, "persisted the promise");
  promise_level_[node] = level;
}

void MultiPaxosChecker::CountAcceptance(NodeId node, const multipaxos::Slot& slot) {
  const Index index = slot.value.index;
  auto [it, inserted] = acceptances_[index].try_emplace(slot.accepted, Acceptance{slot.value, {}});
  Acceptance& acceptance = it->second;
  if (acceptance.value != slot.value) {
    Fail(fmt::format("Unique ballots: ballot {} proposed {} and {} for slot {}",
                     paxos::ToString(slot.accepted), Describe(acceptance.value),
                     Describe(slot.value), index));
    return;
  }
  acceptance.acceptors.insert(node);
  // The α rule: the slot's configuration is the one chosen values up to index - α make; a
  // leader that proposed it earlier did not know which voters decide it.
  if (index > chosen_prefix_.plus(alpha_slots_)) {
    Fail(fmt::format("Reconfiguration: node {} accepted slot {} in ballot {} while slot {} "
                     "(<= slot - alpha {}) was not chosen, so its configuration was unknown",
                     node, index, paxos::ToString(slot.accepted), chosen_prefix_.next(),
                     alpha_slots_));
    return;
  }
  const multipaxos::Membership& config = std::prev(configs_.upper_bound(index))->second;
  const size_t votes =
      std::count_if(config.voters.begin(), config.voters.end(),
                    [&acceptance](NodeId voter) { return acceptance.acceptors.contains(voter); });
  if (votes < config.QuorumSize()) return;
  // PMS 2.1: "Only a value that has been proposed may be chosen" (or a leader's no-op, PMS 3).
  if (slot.value.type != EntryType::kEmpty && !proposed_.contains(slot.value.data)) {
    Fail(fmt::format("Validity: {} was chosen for slot {} but never proposed",
                     Describe(slot.value), index));
    return;
  }
  // PMS 2.1: "only a single value is chosen", here per slot.
  auto [chosen, first] = chosen_.try_emplace(index, slot.value);
  if (!first && chosen->second != slot.value) {
    Fail(fmt::format("Agreement: slot {} had {} chosen, then {} (ballot {})", index,
                     Describe(chosen->second), Describe(slot.value),
                     paxos::ToString(slot.accepted)));
  }
  // The configurations the newly contiguous chosen values make.
  for (auto next = chosen_.find(chosen_prefix_.next()); next != chosen_.end();
       next = chosen_.find(chosen_prefix_.next())) {
    chosen_prefix_ = next->first;
    if (next->second.type == EntryType::kConfig) {
      configs_[chosen_prefix_.plus(alpha_slots_)] = next->second.membership;
    }
  }
}

void MultiPaxosChecker::OnRestored(NodeId node, Index index, uint64_t digest) {
  if (index > Index()) {
    auto it = prefix_digests_.find(index);
    if (it == prefix_digests_.end()) {
      Fail(fmt::format("Applied prefixes: node {} restored a snapshot at {} that no node applied",
                       node, index));
    } else if (it->second != digest) {
      Fail(fmt::format("Applied prefixes: node {} restored a snapshot at {} that differs from the "
                       "applied prefix",
                       node, index));
    }
  }
  applied_[node] = {index, digest};
}

uint64_t MultiPaxosChecker::OnApplied(NodeId node, const Entry& entry) {
  Applied& applied = applied_[node];
  if (entry.index != applied.index.next()) {
    Fail(fmt::format("Applied prefixes: node {} applied slot {} after slot {}", node, entry.index,
                     applied.index));
  }
  // PMS 2.1: "a process never learns that a value has been chosen unless it actually has been".
  auto chosen = chosen_.find(entry.index);
  if (chosen == chosen_.end()) {
    Fail(fmt::format("Learning: node {} applied {} at slot {} before any value was chosen there",
                     node, Describe(entry), entry.index));
  } else if (chosen->second != entry) {
    Fail(fmt::format("Learning: node {} applied {} at slot {} but {} was chosen", node,
                     Describe(entry), entry.index, Describe(chosen->second)));
  }
  applied.index = entry.index;
  applied.digest = Fold(applied.digest, entry);
  auto [prefix, first] = prefix_digests_.try_emplace(entry.index, applied.digest);
  if (!first && prefix->second != applied.digest) {
    Fail(fmt::format("Applied prefixes: node {}'s applied prefix through slot {} differs from "
                     "another node's",
                     node, entry.index));
  }
  applied_max_ = std::max(applied_max_, entry.index);
  return applied.digest;
}

void MultiPaxosChecker::OnReadAsked(const std::string& context) {
  reads_asked_[context] = applied_max_;
}

void MultiPaxosChecker::OnReadReleased(NodeId node, const multipaxos::ReadState& read) {
  auto it = reads_asked_.find(read.context);
  if (it == reads_asked_.end()) {
    Fail(fmt::format("Read: node {} released read {} that was never asked for", node,
                     read.context));
    return;
  }
  // Linearizability: a read must see every write that completed (was applied, so its client
  // could have been answered) before the read began.
  if (read.index < it->second) {
    Fail(fmt::format("Stale read: node {} answered read {} at index {}, but slot {} was applied "
                     "before the read was asked for",
                     node, read.context, read.index, it->second));
  }
  // The read stays known: a follower's request or the leader's answer may be duplicated on the
  // network, and then the read is released again (its caller ignores the second answer), which
  // must be just as fresh.
}

}  // namespace synod::sim
