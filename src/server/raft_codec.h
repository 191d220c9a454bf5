#pragma once

// Raft messages on the wire (synodpb.RaftMessage in proto/synod/peer.proto). Decoding checks
// what the core would otherwise assert on: known message and entry types and well-formed
// memberships; a peer's bytes are never trusted.

#include "base/status.h"
#include "consensus/raft/types.h"
#include "synod/peer.pb.h"

namespace synod::server {

void EncodeRaftMessage(const raft::Message& message, synodpb::RaftMessage* out);
Result<raft::Message> DecodeRaftMessage(const synodpb::RaftMessage& in);

}  // namespace synod::server
