#pragma once

// Multi-Paxos messages and relayed reads on the wire: multipaxos::Message <->
// synodpb::MultiPaxosMessage and server::ReadIndexRelay <-> synodpb::ReadIndexRelay
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

void EncodeReadIndexRelay(ReadIndexRelay relay, synodpb::ReadIndexRelay* out);
ReadIndexRelay DecodeReadIndexRelay(synodpb::ReadIndexRelay in);
size_t EncodedBytesMax(const ReadIndexRelay& relay);

}  // namespace synod::server
