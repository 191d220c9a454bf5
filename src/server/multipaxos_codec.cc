#include "server/multipaxos_codec.h"

#include <fmt/format.h>

#include <utility>

#include "base/assert.h"
#include "server/raft_codec.h"

namespace synod::server {
namespace {

// The last enumerator; decoding refuses anything beyond (raft_codec.cc does the same).
constexpr uint32_t kMessageTypeLast =
    static_cast<uint32_t>(multipaxos::MessageType::kTimeoutNow);
static_assert(kMessageTypeLast == 11,
              "a new multipaxos::MessageType needs kMessageTypeLast updated");

// A varint field with its one-byte tag (every field number here is below 16, but
// MultiPaxosMessage's bool leadership_transfer = 16, whose two-byte tag and one byte fit too).
constexpr size_t kFieldBytesMax = 11;
// MultiPaxosMessage's scalar fields, its two ballots and the snapshot meta, each with a tag and
// a length prefix, and the PeerMessage wrapper.
constexpr size_t kMessageFixedBytesMax = 25 * kFieldBytesMax;
// A slot: its ballot and the framing of the slot and its entry (the entry is counted apart).
constexpr size_t kSlotFixedBytesMax = 6 * kFieldBytesMax;

void EncodeBallot(const multipaxos::BallotNumber& ballot, synodpb::Ballot* out) {
  out->set_round(ballot.round.value());
  out->set_proposer(ballot.proposer.value());
}

multipaxos::BallotNumber DecodeBallot(const synodpb::Ballot& in) {
  return multipaxos::BallotNumber{Ballot(in.round()), NodeId(in.proposer())};
}

}  // namespace

size_t EncodedBytesMax(const multipaxos::Message& message) {
  size_t bytes = kMessageFixedBytesMax + message.acked.size() * kFieldBytesMax +
                 message.read_context.size();
  for (const raft::Entry& entry : message.entries) bytes += EntryEncodedBytesMax(entry);
  for (const multipaxos::Slot& slot : message.slots) {
    bytes += kSlotFixedBytesMax + EntryEncodedBytesMax(slot.value);
  }
  if (message.snapshot.has_value()) bytes += SnapshotEncodedBytesMax(*message.snapshot);
  return bytes;
}

void EncodeMultiPaxosMessage(multipaxos::Message message, synodpb::MultiPaxosMessage* out) {
  SYNOD_ASSERT(out != nullptr);
  out->set_type(static_cast<uint32_t>(message.type));
  out->set_from(message.from.value());
  out->set_to(message.to.value());
  EncodeBallot(message.ballot, out->mutable_ballot());
  out->set_index(message.index.value());
  out->set_commit(message.commit.value());
  out->mutable_entries()->Reserve(static_cast<int>(message.entries.size()));
  for (raft::Entry& entry : message.entries) EncodeEntry(std::move(entry), out->add_entries());
  out->mutable_slots()->Reserve(static_cast<int>(message.slots.size()));
  for (multipaxos::Slot& slot : message.slots) {
    synodpb::Slot* encoded = out->add_slots();
    EncodeBallot(slot.accepted, encoded->mutable_accepted());
    EncodeEntry(std::move(slot.value), encoded->mutable_value());
  }
  out->mutable_acked()->Reserve(static_cast<int>(message.acked.size()));
  for (Index index : message.acked) out->add_acked(index.value());
  EncodeBallot(message.promised, out->mutable_promised());
  out->set_read_round(message.read_round);
  out->set_read_context(std::move(message.read_context));
  out->set_leadership_transfer(message.leadership_transfer);
  if (message.snapshot.has_value()) {
    out->set_has_snapshot(true);
    EncodeSnapshot(std::move(*message.snapshot), out->mutable_snapshot_meta(),
                   out->mutable_snapshot_data());
  }
}

Result<multipaxos::Message> DecodeMultiPaxosMessage(synodpb::MultiPaxosMessage in) {
  if (in.type() > kMessageTypeLast) {
    return absl::InvalidArgumentError(
        fmt::format("unknown Multi-Paxos message type {}", in.type()));
  }
  multipaxos::Message message;
  message.type = static_cast<multipaxos::MessageType>(in.type());
  message.from = NodeId(in.from());
  message.to = NodeId(in.to());
  message.ballot = DecodeBallot(in.ballot());
  message.index = Index(in.index());
  message.commit = Index(in.commit());
  if (Status status = DecodeEntries(*in.mutable_entries(), message.entries); !status.ok()) {
    return status;
  }
  message.slots.reserve(in.slots_size());
  for (int i = 0; i < in.slots_size(); ++i) {
    synodpb::Slot& encoded = *in.mutable_slots(i);
    auto value = DecodeEntry(*encoded.mutable_value(), fmt::format("slot {}", i));
    if (!value.ok()) return value.status();
    message.slots.push_back(multipaxos::Slot{DecodeBallot(encoded.accepted()), std::move(*value)});
  }
  message.acked.reserve(in.acked_size());
  for (uint64_t index : in.acked()) message.acked.push_back(Index(index));
  message.promised = DecodeBallot(in.promised());
  message.read_round = in.read_round();
  message.read_context = std::move(*in.mutable_read_context());
  message.leadership_transfer = in.leadership_transfer();
  if (in.has_snapshot()) {
    auto snapshot = DecodeSnapshot(in.snapshot_meta(), in.mutable_snapshot_data());
    if (!snapshot.ok()) return snapshot.status();
    message.snapshot = std::move(*snapshot);
  }
  return message;
}

}  // namespace synod::server
