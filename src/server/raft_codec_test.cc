// The Raft codec: every message type and field survives the wire intact, payloads are moved
// rather than lost, the size estimate the transport relies on is an upper bound, and bytes from
// a peer that do not describe a valid message are refused with an error, never a crash.

#include "server/raft_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/prng.h"

namespace synod::server {
namespace {

using ::testing::HasSubstr;

constexpr raft::MessageType kEveryMessageType[] = {
    raft::MessageType::kAppendEntries,   raft::MessageType::kAppendEntriesResponse,
    raft::MessageType::kRequestVote,     raft::MessageType::kRequestVoteResponse,
    raft::MessageType::kRequestPreVote,  raft::MessageType::kRequestPreVoteResponse,
    raft::MessageType::kHeartbeat,       raft::MessageType::kHeartbeatResponse,
    raft::MessageType::kInstallSnapshot, raft::MessageType::kTimeoutNow,
    raft::MessageType::kReadIndex,       raft::MessageType::kReadIndexResponse,
};
static_assert(std::size(kEveryMessageType) ==
                  static_cast<size_t>(raft::MessageType::kReadIndexResponse) + 1,
              "a new message type needs a round-trip test");

// Encodes, serializes to bytes, parses and decodes, as two members do.
Result<raft::Message> OverTheWire(const raft::Message& message) {
  synodpb::RaftMessage encoded;
  EncodeRaftMessage(message, &encoded);
  const std::string bytes = encoded.SerializeAsString();
  EXPECT_LE(bytes.size(), EncodedBytesMax(message));
  synodpb::RaftMessage parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  return DecodeRaftMessage(std::move(parsed));
}

void ExpectSame(const raft::Message& actual, const raft::Message& expected) {
  EXPECT_EQ(actual.type, expected.type);
  EXPECT_EQ(actual.from, expected.from);
  EXPECT_EQ(actual.to, expected.to);
  EXPECT_EQ(actual.term, expected.term);
  EXPECT_EQ(actual.log_index, expected.log_index);
  EXPECT_EQ(actual.log_term, expected.log_term);
  EXPECT_EQ(actual.entries, expected.entries);
  EXPECT_EQ(actual.commit, expected.commit);
  EXPECT_EQ(actual.index, expected.index);
  EXPECT_EQ(actual.reject, expected.reject);
  EXPECT_EQ(actual.reject_hint_index, expected.reject_hint_index);
  EXPECT_EQ(actual.reject_hint_term, expected.reject_hint_term);
  EXPECT_EQ(actual.leadership_transfer, expected.leadership_transfer);
  EXPECT_EQ(actual.read_round, expected.read_round);
  EXPECT_EQ(actual.read_context, expected.read_context);
  EXPECT_EQ(actual.snapshot, expected.snapshot);
}

// Every field set to a value distinct from its default and from the other fields, with the
// largest ids and terms a uint64 holds so that no varint is truncated.
raft::Message EveryFieldSet(raft::MessageType type) {
  raft::Message message;
  message.type = type;
  message.from = NodeId(0x8e9e05c52164694dULL);
  message.to = NodeId(UINT64_MAX);
  message.term = Term(UINT64_MAX - 1);
  message.log_index = Index(41);
  message.log_term = Term(40);
  message.entries.push_back({Term(40), Index(42), raft::EntryType::kNormal, "put x=1", {}});
  message.entries.push_back({Term(40), Index(43), raft::EntryType::kEmpty, "", {}});
  message.entries.push_back(
      {Term(41), Index(44), raft::EntryType::kConfig, "config change",
       raft::Membership{{NodeId(1), NodeId(2), NodeId(UINT64_MAX)}, {NodeId(7)}}});
  message.entries.push_back(
      {Term(41), Index(45), raft::EntryType::kNormal, std::string("binary\0\xff\x80", 9), {}});
  message.commit = Index(39);
  message.index = Index(UINT64_MAX);
  message.reject = true;
  message.reject_hint_index = Index(30);
  message.reject_hint_term = Term(29);
  message.leadership_transfer = true;
  message.read_round = UINT64_MAX - 2;
  message.read_context = std::string("ctx\0bytes", 9);
  message.snapshot = raft::Snapshot{
      raft::SnapshotMeta{Index(1000), Term(12), {{NodeId(1), NodeId(3)}, {NodeId(2)}}},
      std::string("image\0data", 10)};
  return message;
}

TEST(RaftCodecTest, EveryMessageTypeWithEveryFieldSurvivesTheWire) {
  for (raft::MessageType type : kEveryMessageType) {
    SCOPED_TRACE(std::string(raft::ToString(type)));
    const raft::Message message = EveryFieldSet(type);
    Result<raft::Message> decoded = OverTheWire(message);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSame(*decoded, message);
  }
}

TEST(RaftCodecTest, DefaultsStayDefaults) {
  // Proto3 does not send zero values; the decoder must still produce the core's defaults, and in
  // particular no snapshot where there was none.
  for (raft::MessageType type : kEveryMessageType) {
    raft::Message message;
    message.type = type;
    Result<raft::Message> decoded = OverTheWire(message);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSame(*decoded, message);
    EXPECT_FALSE(decoded->snapshot.has_value());
  }
}

TEST(RaftCodecTest, AnEmptySnapshotIsStillASnapshot) {
  // The core's snapshot carries no data (the store's image is pulled separately), and a
  // bootstrap snapshot is at index 0; neither may vanish on the wire.
  raft::Message message;
  message.type = raft::MessageType::kInstallSnapshot;
  message.snapshot = raft::Snapshot{};
  Result<raft::Message> decoded = OverTheWire(message);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_TRUE(decoded->snapshot.has_value());
  EXPECT_EQ(*decoded->snapshot, raft::Snapshot{});
}

TEST(RaftCodecTest, AConfigEntryKeepsAnEmptyMembershipAndOthersCarryNone) {
  raft::Message message;
  message.type = raft::MessageType::kAppendEntries;
  message.entries.push_back({Term(1), Index(1), raft::EntryType::kConfig, "", {}});
  message.entries.push_back({Term(1), Index(2), raft::EntryType::kNormal, "x", {}});
  synodpb::RaftMessage encoded;
  EncodeRaftMessage(message, &encoded);
  EXPECT_TRUE(encoded.entries(0).has_membership());
  EXPECT_FALSE(encoded.entries(1).has_membership());
  Result<raft::Message> decoded = DecodeRaftMessage(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->entries, message.entries);
}

TEST(RaftCodecTest, PayloadsAreMovedNotCopied) {
  // The transport encodes a message it owns; a megabyte AppendEntries must not be copied.
  raft::Message message;
  message.type = raft::MessageType::kAppendEntries;
  message.entries.push_back(
      {Term(1), Index(1), raft::EntryType::kNormal, std::string(4096, 'x'), {}});
  const char* const payload = message.entries[0].data.data();
  synodpb::RaftMessage encoded;
  EncodeRaftMessage(std::move(message), &encoded);
  EXPECT_EQ(encoded.entries(0).data().data(), payload);
  const char* const encoded_payload = encoded.entries(0).data().data();
  Result<raft::Message> decoded = DecodeRaftMessage(std::move(encoded));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->entries[0].data.data(), encoded_payload);
}

TEST(RaftCodecTest, TheSizeEstimateBoundsBigMessages) {
  raft::Message message = EveryFieldSet(raft::MessageType::kAppendEntries);
  for (uint64_t i = 0; i < 1000; ++i) {
    message.entries.push_back({Term(UINT64_MAX),
                               Index(UINT64_MAX - i),
                               raft::EntryType::kNormal,
                               std::string(i, 'e'),
                               {}});
  }
  synodpb::PeerBatch batch;
  EncodeRaftMessage(message, batch.add_messages()->mutable_raft());
  const size_t actual = batch.ByteSizeLong();
  EXPECT_LE(actual, EncodedBytesMax(message));
  // Tight enough to be useful for the queue's byte bound: a few hundred bytes per message and
  // entry at most, as raft_codec.h promises.
  EXPECT_LE(EncodedBytesMax(message), actual + 300 * (message.entries.size() + 1));
}

TEST(RaftCodecTest, UnknownTypesAreRefused) {
  synodpb::RaftMessage bad_type;
  bad_type.set_type(static_cast<uint32_t>(raft::MessageType::kReadIndexResponse) + 1);
  Result<raft::Message> decoded = DecodeRaftMessage(bad_type);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("unknown Raft message type 12"));

  // 256 + kHeartbeat would become a heartbeat if the decoder cast before checking.
  bad_type.set_type(256 + static_cast<uint32_t>(raft::MessageType::kHeartbeat));
  EXPECT_EQ(DecodeRaftMessage(bad_type).status().code(), absl::StatusCode::kInvalidArgument);

  synodpb::RaftMessage bad_entry;
  bad_entry.add_entries()->set_type(0);
  bad_entry.add_entries()->set_type(3);
  decoded = DecodeRaftMessage(bad_entry);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("entry 1"));
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("unknown entry type 3"));
}

// A message whose first entry is a configuration entry with `voters` and `learners`.
synodpb::RaftMessage WithConfig(std::vector<uint64_t> voters, std::vector<uint64_t> learners) {
  synodpb::RaftMessage message;
  synodpb::Entry* entry = message.add_entries();
  entry->set_type(static_cast<uint32_t>(raft::EntryType::kConfig));
  for (uint64_t id : voters) entry->mutable_membership()->add_voters(id);
  for (uint64_t id : learners) entry->mutable_membership()->add_learners(id);
  return message;
}

TEST(RaftCodecTest, MalformedMembershipsAreRefused) {
  struct Case {
    const char* name;
    synodpb::RaftMessage message;
    const char* reason;
  };
  synodpb::RaftMessage bad_snapshot;
  bad_snapshot.set_type(static_cast<uint32_t>(raft::MessageType::kInstallSnapshot));
  bad_snapshot.set_has_snapshot(true);
  bad_snapshot.mutable_snapshot_meta()->mutable_membership()->add_voters(2);
  bad_snapshot.mutable_snapshot_meta()->mutable_membership()->add_voters(1);
  std::vector<uint64_t> too_many(kMembershipMembersMax + 1);
  for (size_t i = 0; i < too_many.size(); ++i) too_many[i] = i + 1;
  const Case cases[] = {
      {"voter and learner", WithConfig({1, 2}, {2}), "node 2 is both voter and learner"},
      {"unsorted voters", WithConfig({2, 1}, {}), "voter list is not sorted"},
      {"repeated voter", WithConfig({1, 1}, {}), "voter list is not sorted or repeats"},
      {"repeated learner", WithConfig({1}, {3, 3}), "learner list is not sorted or repeats"},
      {"node 0 voter", WithConfig({0, 1}, {}), "voter list names node 0"},
      {"node 0 learner", WithConfig({1}, {0}), "learner list names node 0"},
      {"too many", WithConfig(too_many, {}), "at most 1024"},
      {"snapshot", bad_snapshot, "snapshot: voter list is not sorted"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<raft::Message> decoded = DecodeRaftMessage(c.message);
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(decoded.status().message()), HasSubstr(c.reason));
  }
  // The same lists on a normal entry are not a membership at all, and are ignored.
  synodpb::RaftMessage normal = WithConfig({2, 1}, {});
  normal.mutable_entries(0)->set_type(static_cast<uint32_t>(raft::EntryType::kNormal));
  Result<raft::Message> decoded = DecodeRaftMessage(normal);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->entries[0].membership, raft::Membership{});
}

TEST(RaftCodecTest, GarbageNeverCrashesAndWhatDecodesIsWellFormed) {
  // Random bytes, and valid encodings with random bytes flipped, truncated or appended: parsing
  // may fail, decoding may fail, but nothing crashes, and whatever decodes has only known types
  // and well-formed memberships (what the core would otherwise assert on) and survives a second
  // round trip unchanged.
  const uint64_t seed = 20240601;
  base::Prng prng(seed);
  const std::string valid = [] {
    synodpb::RaftMessage encoded;
    EncodeRaftMessage(EveryFieldSet(raft::MessageType::kAppendEntries), &encoded);
    return encoded.SerializeAsString();
  }();
  int parsed_count = 0;
  int decoded_count = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    switch (prng.Below(3)) {
      case 0:
        bytes.resize(prng.Below(64));
        for (char& byte : bytes) byte = static_cast<char>(prng.Below(256));
        break;
      case 1:
        bytes = valid;
        for (uint64_t flips = prng.Between(1, 4); flips > 0; --flips) {
          bytes[prng.Below(bytes.size())] = static_cast<char>(prng.Below(256));
        }
        break;
      case 2:
        bytes = valid.substr(0, prng.Below(valid.size()));
        for (uint64_t extra = prng.Below(8); extra > 0; --extra) {
          bytes.push_back(static_cast<char>(prng.Below(256)));
        }
        break;
    }
    synodpb::RaftMessage parsed;
    if (!parsed.ParseFromString(bytes)) continue;
    ++parsed_count;
    Result<raft::Message> decoded = DecodeRaftMessage(parsed);
    if (!decoded.ok()) {
      ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << "seed " << seed;
      continue;
    }
    ++decoded_count;
    ASSERT_LE(static_cast<uint32_t>(decoded->type),
              static_cast<uint32_t>(raft::MessageType::kReadIndexResponse));
    for (const raft::Entry& entry : decoded->entries) {
      ASSERT_LE(static_cast<uint32_t>(entry.type), static_cast<uint32_t>(raft::EntryType::kConfig));
      ASSERT_TRUE(entry.membership.IsWellFormed()) << "seed " << seed << " round " << round;
    }
    if (decoded->snapshot) {
      ASSERT_TRUE(decoded->snapshot->meta.membership.IsWellFormed());
    }
    Result<raft::Message> again = OverTheWire(*decoded);
    ASSERT_TRUE(again.ok()) << again.status();
    ExpectSame(*again, *decoded);
  }
  // The mix exercised both outcomes, or the test proves nothing.
  EXPECT_GT(parsed_count, 1000);
  EXPECT_GT(decoded_count, 100);
  EXPECT_LT(decoded_count, parsed_count);
}

}  // namespace
}  // namespace synod::server
