#include "storage/codec.h"

#include <cstring>

#include "base/assert.h"

namespace synod::storage {
namespace {

void EncodeMembership(const raft::Membership& membership, Encoder* encoder) {
  encoder->PutU32(static_cast<uint32_t>(membership.voters.size()));
  for (NodeId voter : membership.voters) encoder->PutU64(voter.value());
  encoder->PutU32(static_cast<uint32_t>(membership.learners.size()));
  for (NodeId learner : membership.learners) encoder->PutU64(learner.value());
}

// A membership lists at most a handful of nodes; a count beyond this is corruption, and
// refusing it keeps a damaged record from asking for gigabytes.
constexpr uint32_t kMembershipNodesMax = 1024;

bool DecodeNodeIds(Decoder* decoder, std::vector<NodeId>* ids) {
  uint32_t count = 0;
  if (!decoder->GetU32(&count) || count > kMembershipNodesMax) return false;
  ids->clear();
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t id = 0;
    if (!decoder->GetU64(&id)) return false;
    ids->push_back(NodeId(id));
  }
  return true;
}

bool DecodeMembership(Decoder* decoder, raft::Membership* membership) {
  return DecodeNodeIds(decoder, &membership->voters) &&
         DecodeNodeIds(decoder, &membership->learners) && membership->IsWellFormed();
}

}  // namespace

void Encoder::PutU8(uint8_t value) { out_->push_back(static_cast<char>(value)); }

void Encoder::PutU16(uint16_t value) {
  for (int shift = 0; shift < 16; shift += 8) PutU8(static_cast<uint8_t>(value >> shift));
}

void Encoder::PutU32(uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) PutU8(static_cast<uint8_t>(value >> shift));
}

void Encoder::PutU64(uint64_t value) {
  for (int shift = 0; shift < 64; shift += 8) PutU8(static_cast<uint8_t>(value >> shift));
}

void Encoder::PutBytes(std::string_view bytes) {
  SYNOD_ASSERT(bytes.size() <= UINT32_MAX);
  PutU32(static_cast<uint32_t>(bytes.size()));
  out_->append(bytes);
}

uint32_t LoadU32(const char* bytes) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

uint64_t LoadU64(const char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

bool Decoder::Take(size_t count, std::string_view* bytes) {
  if (in_.size() < count) {
    in_ = {};
    return false;
  }
  *bytes = in_.substr(0, count);
  in_.remove_prefix(count);
  return true;
}

bool Decoder::GetU8(uint8_t* value) {
  std::string_view bytes;
  if (!Take(1, &bytes)) return false;
  *value = static_cast<uint8_t>(bytes[0]);
  return true;
}

bool Decoder::GetU16(uint16_t* value) {
  std::string_view bytes;
  if (!Take(2, &bytes)) return false;
  *value = static_cast<uint16_t>(static_cast<uint8_t>(bytes[0]) |
                                 (static_cast<uint8_t>(bytes[1]) << 8));
  return true;
}

bool Decoder::GetU32(uint32_t* value) {
  std::string_view bytes;
  if (!Take(4, &bytes)) return false;
  *value = LoadU32(bytes.data());
  return true;
}

bool Decoder::GetU64(uint64_t* value) {
  std::string_view bytes;
  if (!Take(8, &bytes)) return false;
  *value = LoadU64(bytes.data());
  return true;
}

bool Decoder::GetBytes(std::string* bytes) {
  uint32_t size = 0;
  std::string_view view;
  if (!GetU32(&size) || !Take(size, &view)) return false;
  bytes->assign(view);
  return true;
}

void EncodeEntry(const raft::Entry& entry, std::string* out) {
  Encoder encoder(out);
  encoder.PutU64(entry.term.value());
  encoder.PutU64(entry.index.value());
  encoder.PutU8(static_cast<uint8_t>(entry.type));
  encoder.PutBytes(entry.data);
  if (entry.type == raft::EntryType::kConfig) EncodeMembership(entry.membership, &encoder);
}

bool DecodeEntry(std::string_view in, raft::Entry* entry) {
  Decoder decoder(in);
  uint64_t term = 0, index = 0;
  uint8_t type = 0;
  if (!decoder.GetU64(&term) || !decoder.GetU64(&index) || !decoder.GetU8(&type) ||
      type > static_cast<uint8_t>(raft::EntryType::kConfig) || !decoder.GetBytes(&entry->data)) {
    return false;
  }
  entry->term = Term(term);
  entry->index = Index(index);
  entry->type = static_cast<raft::EntryType>(type);
  entry->membership = {};
  if (entry->type == raft::EntryType::kConfig && !DecodeMembership(&decoder, &entry->membership)) {
    return false;
  }
  return decoder.empty();
}

void EncodeHardState(const raft::HardState& hard_state, std::string* out) {
  Encoder encoder(out);
  encoder.PutU64(hard_state.term.value());
  encoder.PutU64(hard_state.voted_for.value());
  encoder.PutU64(hard_state.commit.value());
}

bool DecodeHardState(std::string_view in, raft::HardState* hard_state) {
  Decoder decoder(in);
  uint64_t term = 0, voted_for = 0, commit = 0;
  if (!decoder.GetU64(&term) || !decoder.GetU64(&voted_for) || !decoder.GetU64(&commit)) {
    return false;
  }
  *hard_state = {Term(term), NodeId(voted_for), Index(commit)};
  return decoder.empty();
}

void EncodeSnapshotMeta(const raft::SnapshotMeta& meta, std::string* out) {
  Encoder encoder(out);
  encoder.PutU64(meta.index.value());
  encoder.PutU64(meta.term.value());
  EncodeMembership(meta.membership, &encoder);
}

bool DecodeSnapshotMeta(std::string_view in, raft::SnapshotMeta* meta) {
  Decoder decoder(in);
  uint64_t index = 0, term = 0;
  if (!decoder.GetU64(&index) || !decoder.GetU64(&term) ||
      !DecodeMembership(&decoder, &meta->membership)) {
    return false;
  }
  meta->index = Index(index);
  meta->term = Term(term);
  return decoder.empty();
}

void EncodeSlot(const multipaxos::Slot& slot, std::string* out) {
  Encoder encoder(out);
  encoder.PutU64(slot.accepted.round.value());
  encoder.PutU64(slot.accepted.proposer.value());
  EncodeEntry(slot.value, out);
}

bool DecodeSlot(std::string_view in, multipaxos::Slot* slot) {
  Decoder decoder(in.substr(0, 16));
  uint64_t round = 0, proposer = 0;
  if (in.size() < 16 || !decoder.GetU64(&round) || !decoder.GetU64(&proposer)) return false;
  slot->accepted = multipaxos::BallotNumber{Ballot(round), NodeId(proposer)};
  return DecodeEntry(in.substr(16), &slot->value);
}

}  // namespace synod::storage
