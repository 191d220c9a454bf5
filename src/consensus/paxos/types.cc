#include "consensus/paxos/types.h"

#include <fmt/format.h>

namespace synod::paxos {

std::string ToString(const ProposalNumber& number) {
  if (number.IsNone()) return "none";
  return fmt::format("{}.n{}", number.round, number.proposer);
}

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
    case MessageType::kDecided:
      return "Decided";
    case MessageType::kLearn:
      return "Learn";
  }
  return "?";
}

std::string ToString(const Message& m) {
  std::string text = fmt::format("n{}->n{} {}", m.from, m.to, ToString(m.type));
  switch (m.type) {
    case MessageType::kPrepare:
      text += fmt::format(" {}", ToString(m.number));
      break;
    case MessageType::kPromise:
      text += fmt::format(
          " {} accepted={}", ToString(m.number),
          m.accepted ? fmt::format("{}:\"{}\"", ToString(m.accepted->number), m.accepted->value)
                     : "none");
      break;
    case MessageType::kAccept:
    case MessageType::kAccepted:
      text += fmt::format(" {} \"{}\"", ToString(m.number), m.value);
      break;
    case MessageType::kNack:
      text += fmt::format(" {} promised={}", ToString(m.number), ToString(m.promised));
      break;
    case MessageType::kDecided:
      text += fmt::format(" \"{}\"", m.value);
      break;
    case MessageType::kLearn:
      break;
  }
  return text;
}

}  // namespace synod::paxos
