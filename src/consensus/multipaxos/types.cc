#include "consensus/multipaxos/types.h"

#include <fmt/format.h>

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
      text += fmt::format(" from_slot={}", m.index);
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
  }
  return text;
}

}  // namespace synod::multipaxos
