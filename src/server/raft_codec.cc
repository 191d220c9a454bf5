#include "server/raft_codec.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "base/assert.h"

namespace synod::server {
namespace {

// The last enumerator of each enum; decoding refuses anything beyond. Adding an enumerator after
// these means updating them, which the static_asserts below force by naming the current last.
constexpr uint32_t kMessageTypeLast = static_cast<uint32_t>(raft::MessageType::kReadIndexResponse);
constexpr uint32_t kEntryTypeLast = static_cast<uint32_t>(raft::EntryType::kConfig);
static_assert(kMessageTypeLast == 11, "a new raft::MessageType needs kMessageTypeLast updated");
static_assert(kEntryTypeLast == 2, "a new raft::EntryType needs kEntryTypeLast updated");

void EncodeMembership(const raft::Membership& membership, synodpb::Membership* out) {
  // The sender's own state: a malformed one is our bug, not the peer's.
  SYNOD_ASSERT(membership.IsWellFormed());
  out->mutable_voters()->Reserve(static_cast<int>(membership.voters.size()));
  for (NodeId id : membership.voters) out->add_voters(id.value());
  out->mutable_learners()->Reserve(static_cast<int>(membership.learners.size()));
  for (NodeId id : membership.learners) out->add_learners(id.value());
}

// Why `ids` may not be one of Membership's lists, or an empty string when it may.
std::string ListProblem(const google::protobuf::RepeatedField<uint64_t>& ids) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] == 0) return "names node 0";
    if (i > 0 && ids[i - 1] >= ids[i]) return "is not sorted or repeats a node";
  }
  return "";
}

Result<raft::Membership> DecodeMembership(const synodpb::Membership& in, std::string_view where) {
  const size_t members = static_cast<size_t>(in.voters_size()) + in.learners_size();
  if (members > kMembershipMembersMax) {
    return absl::InvalidArgumentError(fmt::format("{}: membership of {} members (at most {})",
                                                  where, members, kMembershipMembersMax));
  }
  if (std::string problem = ListProblem(in.voters()); !problem.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: voter list {}", where, problem));
  }
  if (std::string problem = ListProblem(in.learners()); !problem.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: learner list {}", where, problem));
  }
  raft::Membership membership;
  membership.voters.reserve(in.voters_size());
  for (uint64_t id : in.voters()) membership.voters.push_back(NodeId(id));
  membership.learners.reserve(in.learners_size());
  for (uint64_t id : in.learners()) membership.learners.push_back(NodeId(id));
  for (NodeId id : membership.learners) {
    if (membership.IsVoter(id)) {
      return absl::InvalidArgumentError(
          fmt::format("{}: node {:x} is both voter and learner", where, id.value()));
    }
  }
  // The checks above are IsWellFormed spelled out so the error can say which rule broke.
  SYNOD_ASSERT(membership.IsWellFormed());
  return membership;
}

// A varint of up to 64 bits takes at most 10 bytes, plus 1 for its field tag (every field number
// in peer.proto is below 16, so every tag is one byte).
constexpr size_t kFieldBytesMax = 11;
// RaftMessage has 15 scalar fields; PeerMessage, RaftMessage and SnapshotMeta each add a tag and a
// length prefix; read_context and snapshot_data add theirs.
constexpr size_t kMessageFixedBytesMax = 24 * kFieldBytesMax;
// Entry: four scalar-ish fields (term, index, type, data's length) plus its own tag and length
// and the membership's.
constexpr size_t kEntryFixedBytesMax = 8 * kFieldBytesMax;

// Both lists are packed: a tag and a length each, then one varint per id.
size_t MembershipBytesMax(const raft::Membership& membership) {
  return (2 + membership.voters.size() + membership.learners.size()) * kFieldBytesMax;
}

}  // namespace

size_t EntryEncodedBytesMax(const raft::Entry& entry) {
  return kEntryFixedBytesMax + entry.data.size() + MembershipBytesMax(entry.membership);
}

size_t SnapshotEncodedBytesMax(const raft::Snapshot& snapshot) {
  return snapshot.data.size() + MembershipBytesMax(snapshot.meta.membership);
}

size_t EncodedBytesMax(const raft::Message& message) {
  size_t bytes = kMessageFixedBytesMax + message.read_context.size();
  for (const raft::Entry& entry : message.entries) bytes += EntryEncodedBytesMax(entry);
  if (message.snapshot.has_value()) bytes += SnapshotEncodedBytesMax(*message.snapshot);
  return bytes;
}

void EncodeEntry(raft::Entry entry, synodpb::Entry* out) {
  out->set_term(entry.term.value());
  out->set_index(entry.index.value());
  out->set_type(static_cast<uint32_t>(entry.type));
  out->set_data(std::move(entry.data));
  // Only configuration entries carry a membership (types.h); the decoder reads no other.
  if (entry.type == raft::EntryType::kConfig) {
    EncodeMembership(entry.membership, out->mutable_membership());
  }
}

Result<raft::Entry> DecodeEntry(synodpb::Entry& in, std::string_view where) {
  if (in.type() > kEntryTypeLast) {
    return absl::InvalidArgumentError(
        fmt::format("{} (index {}): unknown entry type {}", where, in.index(), in.type()));
  }
  raft::Entry entry;
  entry.term = Term(in.term());
  entry.index = Index(in.index());
  entry.type = static_cast<raft::EntryType>(in.type());
  entry.data = std::move(*in.mutable_data());
  // A membership on any other entry type is ignored, as the core would ignore it.
  if (entry.type == raft::EntryType::kConfig) {
    auto membership =
        DecodeMembership(in.membership(), fmt::format("{} (index {})", where, in.index()));
    if (!membership.ok()) return membership.status();
    entry.membership = std::move(*membership);
  }
  return entry;
}

Status DecodeEntries(google::protobuf::RepeatedPtrField<synodpb::Entry>& in,
                     std::vector<raft::Entry>& out) {
  out.reserve(out.size() + in.size());
  for (int i = 0; i < in.size(); ++i) {
    auto entry = DecodeEntry(in[i], fmt::format("entry {}", i));
    if (!entry.ok()) return entry.status();
    out.push_back(std::move(*entry));
  }
  return absl::OkStatus();
}

void EncodeSnapshot(raft::Snapshot snapshot, synodpb::SnapshotMeta* meta_out,
                    std::string* data_out) {
  meta_out->set_index(snapshot.meta.index.value());
  meta_out->set_term(snapshot.meta.term.value());
  EncodeMembership(snapshot.meta.membership, meta_out->mutable_membership());
  *data_out = std::move(snapshot.data);
}

Result<raft::Snapshot> DecodeSnapshot(const synodpb::SnapshotMeta& meta, std::string* data) {
  raft::Snapshot snapshot;
  snapshot.meta.index = Index(meta.index());
  snapshot.meta.term = Term(meta.term());
  auto membership = DecodeMembership(meta.membership(), "snapshot");
  if (!membership.ok()) return membership.status();
  snapshot.meta.membership = std::move(*membership);
  snapshot.data = std::move(*data);
  return snapshot;
}

void EncodeRaftMessage(raft::Message message, synodpb::RaftMessage* out) {
  SYNOD_ASSERT(out != nullptr);
  out->set_type(static_cast<uint32_t>(message.type));
  out->set_from(message.from.value());
  out->set_to(message.to.value());
  out->set_term(message.term.value());
  out->set_log_index(message.log_index.value());
  out->set_log_term(message.log_term.value());
  out->mutable_entries()->Reserve(static_cast<int>(message.entries.size()));
  for (raft::Entry& entry : message.entries) EncodeEntry(std::move(entry), out->add_entries());
  out->set_commit(message.commit.value());
  out->set_index(message.index.value());
  out->set_reject(message.reject);
  out->set_reject_hint_index(message.reject_hint_index.value());
  out->set_reject_hint_term(message.reject_hint_term.value());
  out->set_leadership_transfer(message.leadership_transfer);
  out->set_read_round(message.read_round);
  out->set_read_context(std::move(message.read_context));
  if (message.snapshot.has_value()) {
    out->set_has_snapshot(true);
    EncodeSnapshot(std::move(*message.snapshot), out->mutable_snapshot_meta(),
                   out->mutable_snapshot_data());
  }
}

Result<raft::Message> DecodeRaftMessage(synodpb::RaftMessage in) {
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
  if (Status status = DecodeEntries(*in.mutable_entries(), message.entries); !status.ok()) {
    return status;
  }
  message.commit = Index(in.commit());
  message.index = Index(in.index());
  message.reject = in.reject();
  message.reject_hint_index = Index(in.reject_hint_index());
  message.reject_hint_term = Term(in.reject_hint_term());
  message.leadership_transfer = in.leadership_transfer();
  message.read_round = in.read_round();
  message.read_context = std::move(*in.mutable_read_context());
  if (in.has_snapshot()) {
    auto snapshot = DecodeSnapshot(in.snapshot_meta(), in.mutable_snapshot_data());
    if (!snapshot.ok()) return snapshot.status();
    message.snapshot = std::move(*snapshot);
  }
  SYNOD_ASSERT(message.entries.size() == static_cast<size_t>(in.entries_size()));
  return message;
}

}  // namespace synod::server
