#pragma once

// What members send each other through the transport's peer stream, on either engine
// (server/consensus_engine.h): a Raft message, a Multi-Paxos message, or a relayed ReadIndex.
// Forwarded proposals travel beside these (Transport::SendForward).

#include <optional>
#include <string>
#include <variant>

#include "base/ids.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/types.h"

namespace synod::server {

// A linearizable read asked of the leader by a follower, on an engine whose core answers
// ReadIndex only on the leader (Multi-Paxos; Raft relays it inside its core, thesis 6.4). The
// request has no index; the leader answers, once its core released the read, with the read
// index, which the follower then serves once it has applied that far.
struct ReadIndexRelay {
  NodeId from;
  NodeId to;
  // The asking member's read context, returned unchanged.
  std::string context;
  // Absent in the request; the confirmed read index in the answer.
  std::optional<Index> index;

  bool operator==(const ReadIndexRelay&) const = default;
};

using PeerMessage = std::variant<raft::Message, multipaxos::Message, ReadIndexRelay>;

inline NodeId SenderOf(const PeerMessage& message) {
  return std::visit([](const auto& m) { return m.from; }, message);
}
inline NodeId RecipientOf(const PeerMessage& message) {
  return std::visit([](const auto& m) { return m.to; }, message);
}

}  // namespace synod::server
