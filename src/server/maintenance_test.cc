// Maintenance's Snapshot, Hash and Defragment on one member, through gRPC stubs: the snapshot
// is in the shape etcdctl accepts (a bolt file and its SHA-256) and holds exactly the member's
// data, and reads after a defragment are answered.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <filesystem>
#include <fstream>

#include "server/services.h"
#include "kv/etcd_backup.h"
#include "storage/bolt_reader.h"

namespace synod::server {
namespace {

using namespace std::chrono_literals;

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("synod_maintenance_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    NodeOptions options;
    options.id = NodeId(1);
    options.cluster_id = 7;
    options.wal_dir = dir_ / "wal";
    options.kv_dir = dir_ / "kv";
    options.initial_membership.voters = {NodeId(1)};
    options.tick_ms = 10;
    auto node = Node::Open(std::move(options), nullptr);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
    kv_ = std::make_unique<KvService>(node_.get(), ServiceOptions{});
    maintenance_ = std::make_unique<MaintenanceService>(node_.get(), ServiceOptions{});
    grpc::ServerBuilder builder;
    builder.RegisterService(kv_.get());
    builder.RegisterService(maintenance_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = server_->InProcessChannel(grpc::ChannelArguments());
    kv_stub_ = etcdserverpb::KV::NewStub(channel);
    maintenance_stub_ = etcdserverpb::Maintenance::NewStub(channel);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_.reset();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Put(const std::string& key, const std::string& value) {
    grpc::ClientContext context;
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    ASSERT_TRUE(kv_stub_->Put(&context, request, &response).ok());
  }
  uint32_t HashKV() {
    grpc::ClientContext context;
    etcdserverpb::HashKVResponse response;
    EXPECT_TRUE(
        maintenance_stub_->HashKV(&context, etcdserverpb::HashKVRequest(), &response).ok());
    return response.hash();
  }
  uint32_t Hash() {
    grpc::ClientContext context;
    etcdserverpb::HashResponse response;
    EXPECT_TRUE(maintenance_stub_->Hash(&context, etcdserverpb::HashRequest(), &response).ok());
    return response.hash();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<MaintenanceService> maintenance_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_stub_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance_stub_;
};

TEST_F(MaintenanceTest, SnapshotIsWholeWithItsChecksumAndRestoresTheSameData) {
  for (int i = 0; i < 300; ++i) Put("key" + std::to_string(i % 50), std::string(200, 'a' + i % 26));
  grpc::ClientContext context;
  auto reader = maintenance_stub_->Snapshot(&context, etcdserverpb::SnapshotRequest());
  std::string file;
  etcdserverpb::SnapshotResponse piece;
  uint64_t last_remaining = UINT64_MAX;
  while (reader->Read(&piece)) {
    file += piece.blob();
    EXPECT_LT(piece.remaining_bytes(), last_remaining);  // Counts down ...
    last_remaining = piece.remaining_bytes();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last_remaining, 0u);  // ... to zero.
  // etcdctl's test: whole 512-byte pages, then the SHA-256 of them.
  ASSERT_EQ(file.size() % 512, size_t{SHA256_DIGEST_LENGTH});
  const std::string body = file.substr(0, file.size() - SHA256_DIGEST_LENGTH);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  EXPECT_EQ(file.substr(body.size()), std::string(reinterpret_cast<char*>(digest), sizeof digest));

  // The body is a bolt database in etcd's layout (kv/etcd_backup.h): imported into a new store,
  // it gives the member's exact data.
  const std::string db_path = dir_ / "snapshot.db";
  {
    std::ofstream out(db_path, std::ios::binary);
    out << body;
  }
  auto bolt = storage::BoltReader::Open(db_path);
  ASSERT_TRUE(bolt.ok()) << bolt.status();
  auto imported = kv::ImportEtcdBackup(**bolt, dir_ / "restored", "");
  ASSERT_TRUE(imported.ok()) << imported.status();
  Result<std::unique_ptr<kv::Store>> restored = kv::Store::Open(dir_ / "restored");
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto restored_hash = (*restored)->HashKV(Revision(0));
  ASSERT_TRUE(restored_hash.ok());
  EXPECT_EQ(restored_hash->hash, HashKV());
  EXPECT_EQ(restored_hash->revision, Revision(301));
}

TEST_F(MaintenanceTest, HashCoversTheWholeStoreAndDefragmentKeepsTheData) {
  for (int i = 0; i < 200; ++i) Put("k" + std::to_string(i % 10), std::string(1000, 'x'));
  const uint32_t before = Hash();
  EXPECT_EQ(Hash(), before);  // Nothing changed.
  Put("another", "value");
  EXPECT_NE(Hash(), before);
  const uint32_t data_hash = HashKV();
  grpc::ClientContext context;
  etcdserverpb::DefragmentResponse response;
  grpc::Status status =
      maintenance_stub_->Defragment(&context, etcdserverpb::DefragmentRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.header().member_id(), 1u);
  EXPECT_EQ(HashKV(), data_hash);
}

// The loop reads one key from memory only, and leaves a row that is only on disk to the reader
// pool (KvService::Range): after a defragment, which rewrites every table file, the read must
// still be answered.
TEST_F(MaintenanceTest, ALinearizableReadOfARowOnlyOnDiskIsAnswered) {
  Put("k", "v");
  grpc::ClientContext defragment_context;
  etcdserverpb::DefragmentResponse defragmented;
  ASSERT_TRUE(
      maintenance_stub_
          ->Defragment(&defragment_context, etcdserverpb::DefragmentRequest(), &defragmented)
          .ok());
  etcdserverpb::RangeRequest request;
  request.set_key("k");
  Result<etcdserverpb::RangeResponse> in_memory =
      node_->ReadStore([&](const kv::Store& store) { return store.RangeInMemory(request); });
  ASSERT_EQ(in_memory.status().code(), absl::StatusCode::kUnavailable) << in_memory.status();
  grpc::ClientContext context;
  etcdserverpb::RangeResponse response;
  grpc::Status status = kv_stub_->Range(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.kvs_size(), 1);
  EXPECT_EQ(response.kvs(0).value(), "v");
}

}  // namespace
}  // namespace synod::server
