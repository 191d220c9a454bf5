#include "consensus/multipaxos/types.h"

#include <fmt/format.h>

#include <algorithm>

namespace synod::multipaxos {

std::string_view ToString(MessageType type) {
  switch (type) {
    case MessageType::kPrepare:
      return "Prepare";
    case MessageType::kPromise:
      return "Promise";
    case MessageType::kAccept:
      return "Accept";
    case MessageType::kAccepted:
      return "Accepted";
    case MessageType::kNack:
      return "Nack";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResponse";
    case MessageType::kChosen:
      return "Chosen";
    case MessageType::kInstallSnapshot:
      return "InstallSnapshot";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResponse";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
  }
  return "?";
}

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

std::string ToString(const Message& m) {
  std::string text = fmt::format("n{}->n{} {} b={} commit={}", m.from, m.to, ToString(m.type),
                                 paxos::ToString(m.ballot), m.commit);
  switch (m.type) {
    case MessageType::kPrepare:
      text += fmt::format(" from_slot={}{}", m.index, m.leadership_transfer ? " transfer" : "");
      break;
    case MessageType::kPromise:
      text += fmt::format(" slots={}{}", m.slots.size(),
                          m.snapshot ? fmt::format(" snapshot@{}", m.snapshot->meta.index) : "");
      break;
    case MessageType::kAccept:
    case MessageType::kChosen:
      if (!m.entries.empty()) {
        text += fmt::format(" slots={}..{}", m.entries.front().index, m.entries.back().index);
      }
      break;
    case MessageType::kAccepted:
      text += fmt::format(" acked={}", m.acked.size());
      break;
    case MessageType::kNack:
      text += fmt::format(" promised={}", paxos::ToString(m.promised));
      break;
    case MessageType::kHeartbeat:
    case MessageType::kHeartbeatResponse:
      text += fmt::format(" round={}", m.read_round);
      break;
    case MessageType::kInstallSnapshot:
      if (m.snapshot) text += fmt::format(" snapshot@{}", m.snapshot->meta.index);
      break;
    case MessageType::kReadIndex:
      text += fmt::format(" read={}", m.read_context);
      break;
    case MessageType::kReadIndexResponse:
      text += fmt::format(" read={} index={}", m.read_context, m.index);
      break;
    case MessageType::kTimeoutNow:
      break;
  }
  return text;
}

void PersistInMemory(const Ready& ready, PersistentState& state) {
  auto by_index = [](const Slot& slot, Index index) { return slot.value.index < index; };
  if (ready.snapshot.has_value()) {
    state.snapshot = *ready.snapshot;
    state.slots.erase(state.slots.begin(),
                      std::upper_bound(state.slots.begin(), state.slots.end(),
                                       ready.snapshot->meta.index,
                                       [](Index index, const Slot& slot) {
                                         return index < slot.value.index;
                                       }));
  }
  // Mostly appends at the end; the slots stay sorted by index.
  for (const Slot& slot : ready.slots) {
    auto at = std::lower_bound(state.slots.begin(), state.slots.end(), slot.value.index, by_index);
    if (at != state.slots.end() && at->value.index == slot.value.index) {
      *at = slot;
    } else {
      state.slots.insert(at, slot);
    }
  }
  if (ready.hard_state.has_value()) state.hard_state = *ready.hard_state;
}

}  // namespace synod::multipaxos
