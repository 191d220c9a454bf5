// The member's event loop on one machine: writes go through the log, the store and back to the
// client; restarts recover from the log and the store; snapshots compact the log; leases expire
// by the leader's clock. Peer behaviour is covered by the real-process tests in tests/.

#include "server/node.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

namespace synod::server {
namespace {

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synod_node_test_" + std::to_string(::getpid()) + "_" +
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
    options.tick_ms = 10;
    options.election_timeout_ticks = 10;
    options.request_timeout = std::chrono::milliseconds(2000);
    return options;
  }

  void StartNode(NodeOptions options) {
    auto node = Node::Open(std::move(options), nullptr);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
  }

  Result<kv::CommandResult> Put(const std::string& key, const std::string& value,
                                int64_t lease = 0) {
    synodpb::Request request;
    request.mutable_put()->set_key(key);
    request.mutable_put()->set_value(value);
    request.mutable_put()->set_lease(lease);
    return node_->Propose(std::move(request));
  }

  etcdserverpb::RangeResponse ReadAll() {
    EXPECT_TRUE(node_->WaitLinearizableRead().ok());
    etcdserverpb::RangeRequest range;
    range.set_key(std::string(1, '\0'));
    range.set_range_end(std::string(1, '\0'));
    auto response = node_->ReadStore([&](const kv::Store& store) { return store.Range(range); });
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : etcdserverpb::RangeResponse{};
  }

  std::filesystem::path dir_;
  std::unique_ptr<Node> node_;
};

TEST_F(NodeTest, WritesAreAnsweredWithTheirRevisionAndSurviveARestart) {
  StartNode(Options());
  for (int i = 0; i < 50; ++i) {
    auto result = Put("key" + std::to_string(i), "value" + std::to_string(i));
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->status.ok()) << result->status;
    // The first write of a new store gets revision 2, as in etcd, then one per write.
    EXPECT_EQ(result->revision, Revision(2 + i));
  }
  EXPECT_EQ(ReadAll().kvs_size(), 50);
  const Index applied = node_->status().applied;
  node_.reset();

  StartNode(Options());
  const etcdserverpb::RangeResponse after = ReadAll();
  ASSERT_EQ(after.kvs_size(), 50);
  EXPECT_EQ(after.kvs(7).value(), "value15");  // Keys sort as strings: key0, key1, key10, ...
  EXPECT_EQ(after.header().revision(), 51);
  EXPECT_GE(node_->status().applied, applied);
  auto next = Put("after-restart", "x");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->revision, Revision(52));
}

TEST_F(NodeTest, SnapshotsCompactTheLogAndARestartReplaysOnlyTheSuffix) {
  NodeOptions options = Options();
  options.snapshot_count = 20;
  options.snapshot_catchup_entries = 5;
  options.wal_segment_bytes_max = 4096;
  StartNode(options);
  const std::string value(200, 'v');
  for (int i = 0; i < 300; ++i) {
    auto result = Put("k" + std::to_string(i), value);
    ASSERT_TRUE(result.ok() && result->status.ok());
  }
  node_.reset();
  // 300 entries of ~220 bytes need ~16 segments of 4 KiB; a snapshot every 20 entries lets all
  // but the last few go.
  size_t segments = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir_ / "wal")) {
    if (file.path().extension() == ".wal") ++segments;
  }
  EXPECT_LE(segments, 4u);
  StartNode(options);
  EXPECT_EQ(ReadAll().kvs_size(), 300);
}

TEST_F(NodeTest, WithoutAQuorumWritesAndReadsFailWithEtcdsErrors) {
  NodeOptions options = Options();
  // Three voters, but the other two never answer: no leader can be elected.
  options.initial_membership.voters = {NodeId(1), NodeId(2), NodeId(3)};
  StartNode(options);
  auto result = Put("k", "v");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status(), NoLeaderError());
  EXPECT_EQ(node_->WaitLinearizableRead(), NoLeaderError());
}

// A write and a read that come between two leaders wait for the election instead of failing
// at once with "no leader" (etcd waits the same way). The test plays voter 2: nothing that
// node 1 sends goes anywhere, and voter 2's answers are stepped in by hand.
TEST_F(NodeTest, RequestsThatComeWhileNoLeaderIsKnownWaitForTheElection) {
  NodeOptions options = Options();
  options.initial_membership.voters = {NodeId(1), NodeId(2)};
  StartNode(options);
  auto wait_for_role = [&](raft::Role role) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (node_->status().role != role && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(node_->status().role, role);
  };
  auto step_from_voter_2 = [&](raft::MessageType type, Term term, Index index = Index(0),
                               uint64_t read_round = 0) {
    raft::Message message;
    message.type = type;
    message.from = NodeId(2);
    message.to = NodeId(1);
    message.term = term;
    message.index = index;
    message.read_round = read_round;
    node_->OnPeerMessage(PeerMessage(std::move(message)));
  };
  ASSERT_NO_FATAL_FAILURE(wait_for_role(raft::Role::kPreCandidate));
  synodpb::Request request;
  request.mutable_put()->set_key("k");
  request.mutable_put()->set_value("v");
  std::promise<Result<kv::CommandResult>> put_answer;
  node_->ProposeAsync(std::move(request), ProposalDone([&](Result<kv::CommandResult> result) {
                        put_answer.set_value(std::move(result));
                      }));
  std::promise<Status> read_answer;
  node_->WaitLinearizableReadAsync(
      ReadDone([&](Status status) { read_answer.set_value(std::move(status)); }));
  auto put_future = put_answer.get_future();
  auto read_future = read_answer.get_future();
  // Still waiting a few ticks later (a member that does not wait has said "no leader").
  EXPECT_EQ(put_future.wait_for(std::chrono::milliseconds(30)), std::future_status::timeout);
  EXPECT_EQ(read_future.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);

  // Voter 2 grants the pre-vote (it echoes the term to come) and then the vote.
  const Term term = node_->status().term;
  step_from_voter_2(raft::MessageType::kRequestPreVoteResponse, Term(term.value() + 1));
  ASSERT_NO_FATAL_FAILURE(wait_for_role(raft::Role::kCandidate));
  step_from_voter_2(raft::MessageType::kRequestVoteResponse, Term(term.value() + 1));
  ASSERT_NO_FATAL_FAILURE(wait_for_role(raft::Role::kLeader));
  // The waiting write was proposed in the loop turn that made node 1 the leader, after the
  // leader's empty entry (1). Voter 2 accepts both, which commits them.
  step_from_voter_2(raft::MessageType::kAppendEntriesResponse, Term(term.value() + 1), Index(2));
  ASSERT_EQ(put_future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  Result<kv::CommandResult> put = put_future.get();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->revision, Revision(2));
  // The read was issued once the leader was known; its index is the commit index once the
  // leader has committed in its term (2), confirmed by voter 2's answer to heartbeat round 1.
  step_from_voter_2(raft::MessageType::kHeartbeatResponse, Term(term.value() + 1), Index(0), 1);
  ASSERT_EQ(read_future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(read_future.get().ok());
}

TEST_F(NodeTest, AnAsyncProposalIsAnsweredOnceWithTheAppliedResponse) {
  StartNode(Options());
  synodpb::Request request;
  request.mutable_put()->set_key("k");
  request.mutable_put()->set_value("v");
  int calls = 0;
  std::promise<Result<kv::CommandResult>> answered;
  node_->ProposeAsync(std::move(request),
                      ProposalDone([&](Result<kv::CommandResult> result) {
                        ++calls;
                        answered.set_value(std::move(result));
                      }));
  Result<kv::CommandResult> result = answered.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->revision, Revision(2));
  EXPECT_NE(std::get_if<etcdserverpb::PutResponse>(&result->response), nullptr);
  node_.reset();
  EXPECT_EQ(calls, 1);
}

TEST_F(NodeTest, RequestsStillQueuedWhenTheNodeStopsAreAnsweredServerStopped) {
  // Opened but never started: the requests stay in the loop's queue until the node goes.
  auto node = Node::Open(Options(), nullptr);
  ASSERT_TRUE(node.ok()) << node.status();
  auto [proposal_done, proposal_outcome] = CompletionWithFuture<Result<kv::CommandResult>>();
  synodpb::Request request;
  request.mutable_put()->set_key("k");
  (*node)->ProposeAsync(std::move(request), std::move(proposal_done));
  auto [read_done, read_outcome] = CompletionWithFuture<Status>();
  (*node)->WaitLinearizableReadAsync(std::move(read_done));
  node->reset();
  ASSERT_EQ(proposal_outcome.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(proposal_outcome.get().status(), ServerStoppedError());
  ASSERT_EQ(read_outcome.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(read_outcome.get(), ServerStoppedError());
}

TEST_F(NodeTest, AnExpiredLeaseDeletesItsKeysAtOneRevision) {
  StartNode(Options());
  synodpb::Request grant;
  grant.mutable_lease_grant()->set_id(77);
  grant.mutable_lease_grant()->set_ttl(1);  // Raised to the store's 2 s minimum.
  auto granted = node_->Propose(grant);
  ASSERT_TRUE(granted.ok() && granted->status.ok());
  ASSERT_TRUE(Put("a", "1", 77)->status.ok());
  ASSERT_TRUE(Put("b", "2", 77)->status.ok());
  ASSERT_TRUE(Put("c", "3")->status.ok());
  const int64_t revision_before = ReadAll().header().revision();
  for (int attempt = 0; attempt < 100 && ReadAll().kvs_size() != 1; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const etcdserverpb::RangeResponse after = ReadAll();
  ASSERT_EQ(after.kvs_size(), 1);
  EXPECT_EQ(after.kvs(0).key(), "c");
  EXPECT_EQ(after.header().revision(), revision_before + 1);
}

}  // namespace
}  // namespace synod::server
