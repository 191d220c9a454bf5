// The Multi-Paxos codec: every message type and field survives the wire intact, the size
// estimate the transport relies on is an upper bound, and bytes that do not describe a valid
// message are refused, never a crash.

#include "server/multipaxos_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace synod::server {
namespace {

using ::testing::HasSubstr;
using multipaxos::BallotNumber;
using multipaxos::MessageType;

constexpr MessageType kEveryMessageType[] = {
    MessageType::kPrepare,   MessageType::kPromise,           MessageType::kAccept,
    MessageType::kAccepted,  MessageType::kNack,              MessageType::kHeartbeat,
    MessageType::kHeartbeatResponse, MessageType::kChosen,    MessageType::kInstallSnapshot,
    MessageType::kReadIndex, MessageType::kReadIndexResponse, MessageType::kTimeoutNow,
};
static_assert(std::size(kEveryMessageType) == static_cast<size_t>(MessageType::kTimeoutNow) + 1,
              "a new message type needs a round-trip test");

Result<multipaxos::Message> OverTheWire(const multipaxos::Message& message) {
  synodpb::MultiPaxosMessage encoded;
  EncodeMultiPaxosMessage(message, &encoded);
  const std::string bytes = encoded.SerializeAsString();
  EXPECT_LE(bytes.size(), EncodedBytesMax(message));
  synodpb::MultiPaxosMessage parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  return DecodeMultiPaxosMessage(std::move(parsed));
}

// Every field set to something other than its default, so a field the codec drops shows.
multipaxos::Message FullMessage(MessageType type) {
  multipaxos::Message message;
  message.type = type;
  message.from = NodeId(0x1111);
  message.to = NodeId(0x2222);
  message.ballot = BallotNumber{Ballot(7), NodeId(0x1111)};
  message.index = Index(40);
  message.commit = Index(39);
  message.entries = {
      raft::Entry{Term(7), Index(40), raft::EntryType::kNormal, std::string("put a=1"), {}},
      raft::Entry{Term(6), Index(41), raft::EntryType::kEmpty, "", {}}};
  message.slots = {
      multipaxos::Slot{BallotNumber{Ballot(5), NodeId(0x3333)},
                       raft::Entry{Term(5), Index(42), raft::EntryType::kNormal, "v", {}}},
      // A slot the acceptor learned as chosen has no ballot.
      multipaxos::Slot{BallotNumber{},
                       raft::Entry{Term(4), Index(44), raft::EntryType::kNormal, "w", {}}}};
  message.acked = {Index(40), Index(41)};
  message.promised = BallotNumber{Ballot(9), NodeId(0x2222)};
  message.read_round = 12;
  message.read_context = "read-17";
  message.leadership_transfer = true;
  message.snapshot = raft::Snapshot{
      raft::SnapshotMeta{Index(30), Term(3), raft::Membership{{NodeId(0x1111), NodeId(0x2222)}, {}}},
      std::string("")};
  return message;
}

TEST(MultiPaxosCodecTest, EveryMessageTypeRoundTrips) {
  for (MessageType type : kEveryMessageType) {
    const multipaxos::Message message = FullMessage(type);
    Result<multipaxos::Message> decoded = OverTheWire(message);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->type, message.type);
    EXPECT_EQ(decoded->from, message.from);
    EXPECT_EQ(decoded->to, message.to);
    EXPECT_EQ(decoded->ballot, message.ballot);
    EXPECT_EQ(decoded->index, message.index);
    EXPECT_EQ(decoded->commit, message.commit);
    EXPECT_EQ(decoded->entries, message.entries);
    EXPECT_EQ(decoded->slots, message.slots);
    EXPECT_EQ(decoded->acked, message.acked);
    EXPECT_EQ(decoded->promised, message.promised);
    EXPECT_EQ(decoded->read_round, message.read_round);
    EXPECT_EQ(decoded->read_context, message.read_context);
    EXPECT_EQ(decoded->snapshot, message.snapshot);
  }
}

TEST(MultiPaxosCodecTest, AbsentSnapshotStaysAbsent) {
  multipaxos::Message message = FullMessage(MessageType::kAccept);
  message.snapshot.reset();
  Result<multipaxos::Message> decoded = OverTheWire(message);
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE(decoded->snapshot.has_value());
}

TEST(MultiPaxosCodecTest, UnknownTypesAreRefused) {
  synodpb::MultiPaxosMessage encoded;
  EncodeMultiPaxosMessage(FullMessage(MessageType::kAccept), &encoded);
  synodpb::MultiPaxosMessage bad_type = encoded;
  bad_type.set_type(99);
  Result<multipaxos::Message> decoded = DecodeMultiPaxosMessage(bad_type);
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("message type 99"));

  synodpb::MultiPaxosMessage bad_slot = encoded;
  bad_slot.mutable_slots(1)->mutable_value()->set_type(3);
  decoded = DecodeMultiPaxosMessage(bad_slot);
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("slot 1"));

  synodpb::MultiPaxosMessage bad_membership = encoded;
  bad_membership.mutable_snapshot_meta()->mutable_membership()->add_voters(0);
  EXPECT_FALSE(DecodeMultiPaxosMessage(bad_membership).ok());
}

}  // namespace
}  // namespace synod::server
