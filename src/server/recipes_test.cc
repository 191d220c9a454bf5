// The Lock and Election services on one member, through real gRPC stubs (an in-process
// channel): queue order, waiting and waking, cancellation, leases, and etcd's errors.

#include "server/recipes.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>


namespace synod::server {
namespace {

using namespace std::chrono_literals;

class RecipesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synod_recipes_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    NodeOptions options;
    options.id = NodeId(1);
    options.cluster_id = 99;
    options.wal_dir = dir_ / "wal";
    options.kv_dir = dir_ / "kv";
    options.initial_membership.voters = {NodeId(1)};
    options.tick_ms = 10;
    options.election_timeout_ticks = 10;
    auto node = Node::Open(std::move(options), nullptr);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
    kv_ = std::make_unique<KvService>(node_.get(), ServiceOptions{});
    lease_ = std::make_unique<LeaseService>(node_.get(), ServiceOptions{});
    client_ = std::make_unique<LocalClient>(node_.get(), kv_.get(), lease_.get());
    lock_ = std::make_unique<LockService>(client_.get());
    election_ = std::make_unique<ElectionService>(client_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(kv_.get());
    builder.RegisterService(lease_.get());
    builder.RegisterService(lock_.get());
    builder.RegisterService(election_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    lock_stub_ = v3lockpb::Lock::NewStub(channel_);
    election_stub_ = v3electionpb::Election::NewStub(channel_);
    kv_stub_ = etcdserverpb::KV::NewStub(channel_);
    lease_stub_ = etcdserverpb::Lease::NewStub(channel_);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_.reset();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }

  int64_t Grant(int64_t ttl_s = 60) {
    grpc::ClientContext context;
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(ttl_s);
    etcdserverpb::LeaseGrantResponse response;
    EXPECT_TRUE(lease_stub_->LeaseGrant(&context, request, &response).ok());
    return response.id();
  }
  void Revoke(int64_t lease) {
    grpc::ClientContext context;
    etcdserverpb::LeaseRevokeRequest request;
    request.set_id(lease);
    etcdserverpb::LeaseRevokeResponse response;
    EXPECT_TRUE(lease_stub_->LeaseRevoke(&context, request, &response).ok());
  }
  std::vector<std::string> KeysUnder(const std::string& prefix) {
    grpc::ClientContext context;
    etcdserverpb::RangeRequest request;
    request.set_key(prefix);
    request.set_range_end(prefix.substr(0, prefix.size() - 1) + char(prefix.back() + 1));
    etcdserverpb::RangeResponse response;
    EXPECT_TRUE(kv_stub_->Range(&context, request, &response).ok());
    std::vector<std::string> keys;
    for (const auto& kv : response.kvs()) keys.push_back(kv.key());
    return keys;
  }

  // Lock in the background; the future holds the status and the key.
  std::future<std::pair<grpc::Status, std::string>> LockAsync(
      const std::string& name, int64_t lease,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    return std::async(std::launch::async, [this, name, lease, timeout] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + timeout);
      v3lockpb::LockRequest request;
      request.set_name(name);
      request.set_lease(lease);
      v3lockpb::LockResponse response;
      grpc::Status status = lock_stub_->Lock(&context, request, &response);
      return std::make_pair(status, response.key());
    });
  }
  grpc::Status Unlock(const std::string& key) {
    grpc::ClientContext context;
    v3lockpb::UnlockRequest request;
    request.set_key(key);
    v3lockpb::UnlockResponse response;
    return lock_stub_->Unlock(&context, request, &response);
  }

  std::filesystem::path dir_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<LeaseService> lease_;
  std::unique_ptr<LocalClient> client_;
  std::unique_ptr<LockService> lock_;
  std::unique_ptr<ElectionService> election_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_stub_;
  std::unique_ptr<v3electionpb::Election::Stub> election_stub_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_stub_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_stub_;
};

std::string Hex(int64_t value) {
  char text[32];
  std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(value));
  return text;
}

TEST_F(RecipesTest, LockIsGrantedInArrivalOrderAndPassesOnUnlock) {
  const int64_t a = Grant(), b = Grant(), c = Grant();
  auto first = LockAsync("job", a).get();
  ASSERT_TRUE(first.first.ok()) << first.first.error_message();
  EXPECT_EQ(first.second, "job/" + Hex(a));
  auto second = LockAsync("job", b);
  // Let b join the queue before c, so the order is known.
  while (KeysUnder("job/").size() < 2) std::this_thread::sleep_for(10ms);
  auto third = LockAsync("job", c);
  while (KeysUnder("job/").size() < 3) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(second.wait_for(200ms), std::future_status::timeout);
  EXPECT_EQ(third.wait_for(0ms), std::future_status::timeout);
  ASSERT_TRUE(Unlock(first.second).ok());
  auto second_result = second.get();
  ASSERT_TRUE(second_result.first.ok()) << second_result.first.error_message();
  EXPECT_EQ(second_result.second, "job/" + Hex(b));
  EXPECT_EQ(third.wait_for(200ms), std::future_status::timeout);
  ASSERT_TRUE(Unlock(second_result.second).ok());
  EXPECT_EQ(third.get().second, "job/" + Hex(c));
}

TEST_F(RecipesTest, HolderWhoseLeaseEndsReleasesTheLock) {
  const int64_t holder = Grant(), waiter = Grant();
  ASSERT_TRUE(LockAsync("res", holder).get().first.ok());
  auto waiting = LockAsync("res", waiter);
  EXPECT_EQ(waiting.wait_for(200ms), std::future_status::timeout);
  Revoke(holder);  // As when a crashed client's lease expires.
  EXPECT_EQ(waiting.get().second, "res/" + Hex(waiter));
}

TEST_F(RecipesTest, AbandonedWaiterLeavesTheQueue) {
  const int64_t holder = Grant(), waiter = Grant();
  ASSERT_TRUE(LockAsync("q", holder).get().first.ok());
  auto gave_up = LockAsync("q", waiter, 300ms).get();
  EXPECT_EQ(gave_up.first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Its key is removed, so it can never become the owner later.
  for (int i = 0; i < 100 && KeysUnder("q/").size() > 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(KeysUnder("q/"), std::vector<std::string>{"q/" + Hex(holder)});
}

TEST_F(RecipesTest, LockWithAnUnknownLeaseFailsAsEtcdDoes) {
  auto result = LockAsync("x", 12345).get();
  EXPECT_EQ(result.first.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(result.first.error_message(), "etcdserver: requested lease not found");
  // Lease 0: the service makes a session lease of its own, as etcd does.
  auto own = LockAsync("x", 0).get();
  ASSERT_TRUE(own.first.ok()) << own.first.error_message();
  EXPECT_TRUE(own.second.starts_with("x/"));
}

TEST_F(RecipesTest, ElectionCampaignProclaimObserveResignAndLeader) {
  {
    grpc::ClientContext context;
    v3electionpb::LeaderRequest request;
    request.set_name("svc");
    v3electionpb::LeaderResponse response;
    grpc::Status status = election_stub_->Leader(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
    EXPECT_EQ(status.error_message(), "election: no leader");
  }
  // An observer from before the first campaign.
  grpc::ClientContext observe_context;
  v3electionpb::LeaderRequest observe_request;
  observe_request.set_name("svc");
  auto observer = election_stub_->Observe(&observe_context, observe_request);

  auto campaign = [&](int64_t lease, const std::string& value) {
    return std::async(std::launch::async, [this, lease, value] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 10s);
      v3electionpb::CampaignRequest request;
      request.set_name("svc");
      request.set_lease(lease);
      request.set_value(value);
      v3electionpb::CampaignResponse response;
      grpc::Status status = election_stub_->Campaign(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      return response.leader();
    });
  };
  const int64_t a = Grant(), b = Grant();
  v3electionpb::LeaderKey leader_a = campaign(a, "alpha").get();
  EXPECT_EQ(leader_a.key(), "svc/" + Hex(a));
  auto b_campaign = campaign(b, "beta");
  EXPECT_EQ(b_campaign.wait_for(200ms), std::future_status::timeout);

  {
    grpc::ClientContext context;
    v3electionpb::ProclaimRequest request;
    *request.mutable_leader() = leader_a;
    request.set_value("alpha-2");
    v3electionpb::ProclaimResponse response;
    ASSERT_TRUE(election_stub_->Proclaim(&context, request, &response).ok());
  }
  {
    grpc::ClientContext context;
    v3electionpb::ResignRequest request;
    *request.mutable_leader() = leader_a;
    v3electionpb::ResignResponse response;
    ASSERT_TRUE(election_stub_->Resign(&context, request, &response).ok());
  }
  v3electionpb::LeaderKey leader_b = b_campaign.get();
  EXPECT_EQ(leader_b.key(), "svc/" + Hex(b));
  {
    // The former leader can no longer proclaim.
    grpc::ClientContext context;
    v3electionpb::ProclaimRequest request;
    *request.mutable_leader() = leader_a;
    request.set_value("stale");
    v3electionpb::ProclaimResponse response;
    grpc::Status status = election_stub_->Proclaim(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
    EXPECT_EQ(status.error_message(), "election: not leader");
  }
  {
    grpc::ClientContext context;
    v3electionpb::LeaderRequest request;
    request.set_name("svc");
    v3electionpb::LeaderResponse response;
    ASSERT_TRUE(election_stub_->Leader(&context, request, &response).ok());
    EXPECT_EQ(response.kv().value(), "beta");
  }
  // The observer saw every leader value in order.
  std::vector<std::string> seen;
  v3electionpb::LeaderResponse observed;
  while (seen.size() < 3 && observer->Read(&observed)) seen.push_back(observed.kv().value());
  EXPECT_EQ(seen, (std::vector<std::string>{"alpha", "alpha-2", "beta"}));
  observe_context.TryCancel();
  observer->Finish().IgnoreError();
}

}  // namespace
}  // namespace synod::server
