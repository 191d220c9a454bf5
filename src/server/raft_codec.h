#pragma once

// Raft messages on the wire: raft::Message <-> synodpb::RaftMessage (proto/synod/peer.proto).
//
// Encoding cannot fail. Decoding takes bytes from another process and so trusts nothing: it
// refuses what the core would otherwise assert on or misread, namely message and entry types it
// does not know (the enums are uint8_t; a cast of 300 would silently become 44) and malformed
// memberships (unsorted, duplicated, overlapping, or naming node 0). What is well formed but
// inconsistent (entries that do not follow log_index, a snapshot newer than the message's term)
// is left to raft::Raft::Step, which refuses it with its own error; checking it twice would let
// the two checks drift apart.
//
// Both directions move the payloads (entry data, snapshot data, read context) instead of copying
// them: an AppendEntries may carry a megabyte.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "consensus/raft/types.h"
#include "synod/peer.pb.h"

namespace synod::server {

// A membership with more members than this is refused on decode: no real cluster comes close,
// and the bound keeps a hostile message from making the receiver sort and print a huge list.
inline constexpr size_t kMembershipMembersMax = 1024;

// Threading: all three are pure functions of their arguments.
void EncodeRaftMessage(raft::Message message, synodpb::RaftMessage* out);
// Errors: kInvalidArgument naming the offending field.
Result<raft::Message> DecodeRaftMessage(synodpb::RaftMessage in);

// An upper bound of the bytes `message` adds to a synodpb::PeerBatch (its RaftMessage, wrapped in
// a PeerMessage, with tags and length prefixes), computed without encoding: the transport bounds
// its queues and batches with it on the caller's thread, where encoding would cost the event loop
// a copy of every payload. Exceeds the real size by at most a few hundred bytes per message and
// entry.
size_t EncodedBytesMax(const raft::Message& message);

// The parts Raft's and Multi-Paxos's messages share (server/multipaxos_codec.h), with the same
// rules: the payload is moved, unknown entry types and malformed memberships are refused with an
// error naming `where`.
void EncodeEntry(raft::Entry entry, synodpb::Entry* out);
Result<raft::Entry> DecodeEntry(synodpb::Entry& in, std::string_view where);
// Every entry of `in`, in order, appended to `out`; the first malformed one is the error.
Status DecodeEntries(google::protobuf::RepeatedPtrField<synodpb::Entry>& in,
                     std::vector<raft::Entry>& out);
void EncodeSnapshot(raft::Snapshot snapshot, synodpb::SnapshotMeta* meta_out,
                    std::string* data_out);
Result<raft::Snapshot> DecodeSnapshot(const synodpb::SnapshotMeta& meta, std::string* data);
// Bounds of what an entry and a snapshot add to an encoded message (EncodedBytesMax).
size_t EntryEncodedBytesMax(const raft::Entry& entry);
size_t SnapshotEncodedBytesMax(const raft::Snapshot& snapshot);

}  // namespace synod::server
