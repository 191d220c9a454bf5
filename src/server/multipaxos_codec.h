#pragma once

// Multi-Paxos messages on the wire: multipaxos::Message <-> synodpb::MultiPaxosMessage
// (proto/synod/peer.proto), under raft_codec.h's rules: encoding cannot fail and moves the
// payloads; decoding trusts nothing the core would assert on or misread (unknown message and
// entry types, malformed memberships) and leaves what is well formed but inconsistent to
// multipaxos::MultiPaxos::Step.

#include <cstddef>

#include "base/status.h"
#include "consensus/multipaxos/types.h"
#include "server/peer_message.h"
#include "synod/peer.pb.h"

namespace synod::server {

// Threading: pure functions of their arguments.
void EncodeMultiPaxosMessage(multipaxos::Message message, synodpb::MultiPaxosMessage* out);
// Errors: kInvalidArgument naming the offending field.
Result<multipaxos::Message> DecodeMultiPaxosMessage(synodpb::MultiPaxosMessage in);
// An upper bound of the bytes `message` adds to a synodpb::PeerBatch, as raft_codec.h's.
size_t EncodedBytesMax(const multipaxos::Message& message);

}  // namespace synod::server
