// `synod paxos` without processes: flags, member numbering, the wire codec and the data dir
// file (paxos_demo.h). The processes themselves are tested by tests/fault/paxos_demo_test.py.

#include "server/paxos_demo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sim/sim_disk.h"

namespace synod::server {
namespace {

using ::testing::HasSubstr;

Result<PaxosDemoOptions> Parse(std::vector<const char*> arguments) {
  return ParsePaxosDemoFlags(static_cast<int>(arguments.size()), arguments.data());
}

TEST(PaxosDemoFlagsTest, ParsesAMemberAndSortsItsPeersByName) {
  auto options = Parse({"--name", "n2", "--data-dir", "d", "--peers",
                        "n3=127.0.0.1:7003,n1=127.0.0.1:7001,n2=127.0.0.1:7002", "--propose", "red",
                        "--timeout", "5s", "--linger", "250ms"});
  ASSERT_TRUE(options.ok()) << options.status();
  ASSERT_EQ(options->peers.size(), 3u);
  EXPECT_EQ(options->peers[0].name, "n1");
  EXPECT_EQ(options->peers[2].address, "127.0.0.1:7003");
  EXPECT_EQ(options->propose, "red");
  EXPECT_EQ(options->timeout, std::chrono::seconds(5));
  EXPECT_EQ(options->linger, std::chrono::milliseconds(250));
  EXPECT_EQ(PaxosDemoNodeId(options->peers, "n2"), NodeId(2));
  EXPECT_EQ(PaxosDemoNodeId(options->peers, "n4"), kNoNode);
}

TEST(PaxosDemoFlagsTest, RefusesWhatCannotDescribeAGroup) {
  const char* peers = "n1=127.0.0.1:7001,n2=127.0.0.1:7002";
  struct Case {
    std::vector<const char*> arguments;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {{"--name", "n3", "--data-dir", "d", "--peers", peers}, "not one of the members"},
           {{"--data-dir", "d", "--peers", peers}, "--name is required"},
           {{"--name", "n1", "--data-dir", "d", "--peers", "n1=127.0.0.1:7001,n1=127.0.0.1:7002"},
            "given twice"},
           {{"--name", "n1", "--data-dir", "d", "--peers", "n1=127.0.0.1:7001,n2=127.0.0.1:7001"},
            "given twice"},
           {{"--name", "n1", "--data-dir", "d", "--peers", "n1=localhost"}, "not host:port"},
           {{"--name", "n1", "--data-dir", "d", "--peers", peers, "--timeout", "soon"},
            "--timeout"},
           {{"--name", "n1", "--data-dir", "d", "--peers", peers, "--query", "--propose", "red"},
            "excludes"},
       }) {
    auto options = Parse(c.arguments);
    ASSERT_FALSE(options.ok()) << c.reason;
    EXPECT_THAT(std::string(options.status().message()), HasSubstr(c.reason));
  }
}

TEST(PaxosDemoFlagsTest, QueryNeedsOnlyTheDataDir) {
  auto options = Parse({"--query", "--data-dir", "d"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->query);
}

TEST(PaxosDemoGroupIdTest, DependsOnTheMembersNotOnTheirOrder) {
  const std::vector<PaxosDemoPeer> group = {{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}};
  const std::vector<PaxosDemoPeer> reordered = {group[1], group[0]};
  const std::vector<PaxosDemoPeer> moved = {{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7009"}};
  EXPECT_EQ(PaxosDemoGroupId(group), PaxosDemoGroupId(reordered));
  EXPECT_NE(PaxosDemoGroupId(group), PaxosDemoGroupId(moved));
}

TEST(PaxosDemoCodecTest, EveryMessageFieldSurvivesTheWire) {
  paxos::Message message;
  message.type = paxos::MessageType::kPromise;
  message.from = NodeId(3);
  message.to = NodeId(1);
  message.number = {Ballot(7), NodeId(1)};
  message.promised = {Ballot(6), NodeId(2)};
  message.accepted = paxos::Proposal{{Ballot(5), NodeId(2)}, std::string("blue\0x", 6)};
  message.value = "red";
  const synodpb::PaxosMessage encoded = EncodePaxosMessage(message, 42);
  EXPECT_EQ(encoded.group_id(), 42u);
  auto decoded = DecodePaxosMessage(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type, message.type);
  EXPECT_EQ(decoded->from, message.from);
  EXPECT_EQ(decoded->to, message.to);
  EXPECT_EQ(decoded->number, message.number);
  EXPECT_EQ(decoded->promised, message.promised);
  EXPECT_EQ(decoded->accepted, message.accepted);
  EXPECT_EQ(decoded->value, message.value);

  message.accepted.reset();
  decoded = DecodePaxosMessage(EncodePaxosMessage(message, 42));
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE(decoded->accepted.has_value());
}

TEST(PaxosDemoCodecTest, RefusesAnUnknownMessageType) {
  synodpb::PaxosMessage encoded;
  encoded.set_type(static_cast<uint32_t>(paxos::MessageType::kLearn) + 1);
  EXPECT_FALSE(DecodePaxosMessage(encoded).ok());
}

TEST(PaxosDemoStateTest, TheFileHoldsEveryPartOfTheStateAcrossACrash) {
  sim::SimDisk disk;
  ASSERT_TRUE(disk.CreateDirectory("/d").ok());
  auto missing = LoadPaxosDemoState(disk, "/d");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  PaxosDemoStateFile file;
  file.group_id = 99;
  file.name = "n2";
  file.state.promised = {Ballot(4), NodeId(3)};
  file.state.accepted = paxos::Proposal{{Ballot(3), NodeId(1)}, "red"};
  file.state.decided = "red";
  ASSERT_TRUE(SavePaxosDemoState(disk, "/d", file).ok());
  base::Prng prng(1);
  disk.Crash(sim::SimDisk::CrashKind::kTornWrite, prng);
  auto loaded = LoadPaxosDemoState(disk, "/d");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->group_id, 99u);
  EXPECT_EQ((*loaded)->name, "n2");
  EXPECT_EQ((*loaded)->state, file.state);
}

TEST(PaxosDemoStateTest, ADamagedFileIsRefusedNotReadAsEmpty) {
  sim::SimDisk disk;
  ASSERT_TRUE(disk.CreateDirectory("/d").ok());
  PaxosDemoStateFile file;
  file.name = "n1";
  file.state.promised = {Ballot(9), NodeId(1)};
  ASSERT_TRUE(SavePaxosDemoState(disk, "/d", file).ok());
  disk.FlipBit("/d/paxos-state", disk.DurableSize("/d/paxos-state") - 1, 0);
  auto loaded = LoadPaxosDemoState(disk, "/d");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace synod::server
