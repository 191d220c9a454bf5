#pragma once

// What members send each other through the transport's peer stream, on either engine
// (server/consensus_engine.h): a Raft message or a Multi-Paxos message. Forwarded proposals
// travel beside these (Transport::SendForward).

#include <variant>

#include "base/ids.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/types.h"

namespace synod::server {

using PeerMessage = std::variant<raft::Message, multipaxos::Message>;

inline NodeId SenderOf(const PeerMessage& message) {
  return std::visit([](const auto& m) { return m.from; }, message);
}
inline NodeId RecipientOf(const PeerMessage& message) {
  return std::visit([](const auto& m) { return m.to; }, message);
}

}  // namespace synod::server
