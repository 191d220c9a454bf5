#include "server/raft_codec.h"

#include <fmt/format.h>

namespace synod::server {
namespace {

// The last enumerator of each type; decoding refuses anything beyond.
constexpr uint32_t kMessageTypeLast = static_cast<uint32_t>(raft::MessageType::kReadIndexResponse);
constexpr uint32_t kEntryTypeLast = static_cast<uint32_t>(raft::EntryType::kConfig);

void EncodeMembership(const raft::Membership& membership, synodpb::Membership* out) {
  for (NodeId id : membership.voters) out->add_voters(id.value());
  for (NodeId id : membership.learners) out->add_learners(id.value());
}

Result<raft::Membership> DecodeMembership(const synodpb::Membership& in) {
  raft::Membership membership;
  for (uint64_t id : in.voters()) membership.voters.push_back(NodeId(id));
  for (uint64_t id : in.learners()) membership.learners.push_back(NodeId(id));
  if (!membership.IsWellFormed()) {
    return absl::InvalidArgumentError(
        fmt::format("malformed membership {}", raft::ToString(membership)));
  }
  return membership;
}

}  // namespace

void EncodeRaftMessage(const raft::Message& message, synodpb::RaftMessage* out) {
  out->set_type(static_cast<uint32_t>(message.type));
  out->set_from(message.from.value());
  out->set_to(message.to.value());
  out->set_term(message.term.value());
  out->set_log_index(message.log_index.value());
  out->set_log_term(message.log_term.value());
  for (const raft::Entry& entry : message.entries) {
    synodpb::Entry* encoded = out->add_entries();
    encoded->set_term(entry.term.value());
    encoded->set_index(entry.index.value());
    encoded->set_type(static_cast<uint32_t>(entry.type));
    encoded->set_data(entry.data);
    if (entry.type == raft::EntryType::kConfig) {
      EncodeMembership(entry.membership, encoded->mutable_membership());
    }
  }
  out->set_commit(message.commit.value());
  out->set_index(message.index.value());
  out->set_reject(message.reject);
  out->set_reject_hint_index(message.reject_hint_index.value());
  out->set_reject_hint_term(message.reject_hint_term.value());
  out->set_leadership_transfer(message.leadership_transfer);
  out->set_read_round(message.read_round);
  out->set_read_context(message.read_context);
  if (message.snapshot) {
    out->set_has_snapshot(true);
    synodpb::SnapshotMeta* meta = out->mutable_snapshot_meta();
    meta->set_index(message.snapshot->meta.index.value());
    meta->set_term(message.snapshot->meta.term.value());
    EncodeMembership(message.snapshot->meta.membership, meta->mutable_membership());
    out->set_snapshot_data(message.snapshot->data);
  }
}

Result<raft::Message> DecodeRaftMessage(const synodpb::RaftMessage& in) {
  if (in.type() > kMessageTypeLast) {
    return absl::InvalidArgumentError(fmt::format("unknown Raft message type {}", in.type()));
  }
  raft::Message message;
  message.type = static_cast<raft::MessageType>(in.type());
  message.from = NodeId(in.from());
  message.to = NodeId(in.to());
  message.term = Term(in.term());
  message.log_index = Index(in.log_index());
  message.log_term = Term(in.log_term());
  message.entries.reserve(in.entries_size());
  for (const synodpb::Entry& encoded : in.entries()) {
    if (encoded.type() > kEntryTypeLast) {
      return absl::InvalidArgumentError(fmt::format("unknown entry type {}", encoded.type()));
    }
    raft::Entry& entry = message.entries.emplace_back();
    entry.term = Term(encoded.term());
    entry.index = Index(encoded.index());
    entry.type = static_cast<raft::EntryType>(encoded.type());
    entry.data = encoded.data();
    if (entry.type == raft::EntryType::kConfig) {
      auto membership = DecodeMembership(encoded.membership());
      if (!membership.ok()) return membership.status();
      entry.membership = std::move(*membership);
    }
  }
  message.commit = Index(in.commit());
  message.index = Index(in.index());
  message.reject = in.reject();
  message.reject_hint_index = Index(in.reject_hint_index());
  message.reject_hint_term = Term(in.reject_hint_term());
  message.leadership_transfer = in.leadership_transfer();
  message.read_round = in.read_round();
  message.read_context = in.read_context();
  if (in.has_snapshot()) {
    raft::Snapshot snapshot;
    snapshot.meta.index = Index(in.snapshot_meta().index());
    snapshot.meta.term = Term(in.snapshot_meta().term());
    auto membership = DecodeMembership(in.snapshot_meta().membership());
    if (!membership.ok()) return membership.status();
    snapshot.meta.membership = std::move(*membership);
    snapshot.data = in.snapshot_data();
    message.snapshot = std::move(snapshot);
  }
  return message;
}

}  // namespace synod::server
