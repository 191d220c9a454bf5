// The node's membership on one machine (a one-voter cluster, no transport): the records it starts
// from, changes through the log with etcd's errors, a member publishing itself, records that
// survive a restart, and MoveLeader's refusals. Several members and joining are covered by
// tests/fault/membership_test.py.

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "server/members.h"
#include "server/node.h"

namespace synod::server {
namespace {

using Clock = std::chrono::steady_clock;

class NodeMembersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synod_node_members_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    node_.reset();
    std::filesystem::remove_all(dir_);
  }

  NodeOptions Options() {
    NodeOptions options;
    options.id = NodeId(1);
    options.cluster_id = 99;
    options.wal_dir = dir_ / "wal";
    options.kv_dir = dir_ / "kv";
    options.initial_membership.voters = {NodeId(1)};
    synodpb::MemberRecord self;
    self.set_id(1);
    self.set_name("m1");
    self.add_peer_urls("http://127.0.0.1:2380");
    options.initial_members = InitialClusterMembers({self});
    options.name = "m1";
    options.client_urls = {"http://127.0.0.1:2379"};
    options.on_removed = [this] { ++removed_calls_; };
    options.tick_ms = 10;
    options.election_timeout_ticks = 10;
    options.request_timeout = std::chrono::milliseconds(2000);
    return options;
  }

  void StartNode(NodeOptions options = {}) {
    if (options.id == kNoNode) options = Options();
    auto node = Node::Open(std::move(options), nullptr);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
  }

  // Waits for the node to have published its client URLs (its own change through the log).
  void WaitPublished() {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline) {
      const synodpb::ClusterMembers members = node_->members();
      const synodpb::MemberRecord* own = FindMember(members, NodeId(1));
      if (own != nullptr && own->client_urls_size() == 1) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "the member did not publish itself";
  }

  static synodpb::MemberChangeRequest Change(MemberChangeKind kind, uint64_t id,
                                             std::vector<std::string> peer_urls = {},
                                             bool learner = false) {
    synodpb::MemberChangeRequest request;
    request.set_kind(static_cast<uint32_t>(kind));
    request.mutable_member()->set_id(id);
    for (std::string& url : peer_urls) request.mutable_member()->add_peer_urls(std::move(url));
    request.mutable_member()->set_is_learner(learner);
    return request;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Node> node_;
  std::atomic<int> removed_calls_ = 0;
};

TEST_F(NodeMembersTest, StartsFromTheInitialClusterAndPublishesItself) {
  StartNode();
  WaitPublished();
  const synodpb::ClusterMembers members = node_->members();
  ASSERT_EQ(members.members_size(), 1);
  EXPECT_EQ(members.members(0).name(), "m1");
  EXPECT_EQ(members.members(0).peer_urls(0), "http://127.0.0.1:2380");
  EXPECT_EQ(members.members(0).client_urls(0), "http://127.0.0.1:2379");
}

TEST_F(NodeMembersTest, ChangesGoThroughTheLogAndSurviveARestart) {
  StartNode();
  WaitPublished();
  auto added = node_->ChangeMembers(
      Change(MemberChangeKind::kAdd, 0x42, {"http://127.0.0.1:4380"}, /*learner=*/true));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_GE(node_->status().applied, *added);
  EXPECT_EQ(node_->status().membership.learners, std::vector<NodeId>{NodeId(0x42)});
  // etcd's errors.
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kAdd, 0x43, {"http://127.0.0.1:4380"}))
                .status(),
            PeerUrlExistsError());
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kPromote, 1)).status(),
            MemberNotLearnerError());
  // The learner never started, so it has matched nothing.
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kPromote, 0x42)).status(),
            LearnerNotReadyError());
  auto updated = node_->ChangeMembers(
      Change(MemberChangeKind::kUpdatePeerUrls, 0x42, {"http://127.0.0.1:4390"}));
  ASSERT_TRUE(updated.ok()) << updated.status();
  // A learner is no leader transferee; neither is a stranger.
  const auto soon = Clock::now() + std::chrono::seconds(2);
  EXPECT_EQ(node_->MoveLeader(NodeId(0x42), soon), BadLeaderTransfereeError());
  EXPECT_EQ(node_->MoveLeader(NodeId(0x77), soon), BadLeaderTransfereeError());
  EXPECT_TRUE(node_->MoveLeader(NodeId(1), soon).ok());  // Already there.

  node_.reset();
  StartNode();
  const synodpb::ClusterMembers members = node_->members();
  ASSERT_EQ(members.members_size(), 2);
  const synodpb::MemberRecord* learner = FindMember(members, NodeId(0x42));
  ASSERT_NE(learner, nullptr);
  EXPECT_TRUE(learner->is_learner());
  EXPECT_EQ(learner->peer_urls(0), "http://127.0.0.1:4390");
  EXPECT_EQ(FindMember(members, NodeId(1))->client_urls(0), "http://127.0.0.1:2379");

  auto removed = node_->ChangeMembers(Change(MemberChangeKind::kRemove, 0x42));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(node_->IsRemovedMember(NodeId(0x42)));
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kRemove, 0x42)).status(),
            MemberNotFoundError());
  // The last voter stays (etcd: not enough started members).
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kRemove, 1)).status(),
            NotEnoughStartedMembersError());
  EXPECT_EQ(removed_calls_, 0);
}

TEST_F(NodeMembersTest, WithoutALeaderAChangeFailsWithEtcdsError) {
  NodeOptions options = Options();
  // Three voters, the other two never answer: no leader.
  options.initial_membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
  std::vector<synodpb::MemberRecord> records;
  for (uint64_t id : {1, 2, 3}) {
    synodpb::MemberRecord& record = records.emplace_back();
    record.set_id(id);
    record.set_name("m" + std::to_string(id));
    record.add_peer_urls("http://127.0.0.1:" + std::to_string(2380 + id));
  }
  options.initial_members = InitialClusterMembers(records);
  StartNode(options);
  EXPECT_EQ(node_->members().members_size(), 3);
  EXPECT_EQ(node_->ChangeMembers(Change(MemberChangeKind::kRemove, 2)).status(), NoLeaderError());
  EXPECT_EQ(node_->MoveLeader(NodeId(2), Clock::now() + std::chrono::seconds(1)), NotLeaderError());
}

}  // namespace
}  // namespace synod::server
