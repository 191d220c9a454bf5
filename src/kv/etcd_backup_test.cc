// The store -> etcd backend layout -> store round trip: everything a client can observe (keys at
// every revision, history, leases with their keys, counters, alarms) and every stored row
// (HashKV) survives. The layout itself is checked against etcd's by the real-process test
// (tests/fault/etcd_snapshot_test.py), where etcdctl and etcd read what this writes.

#include "kv/etcd_backup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <deque>
#include <filesystem>

#include "kv/store.h"

namespace synod::kv {
namespace {

namespace fs = std::filesystem;

class EtcdBackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "synod-etcd-backup-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto store = Store::Open(dir_ + "/source");
    ASSERT_TRUE(store.ok()) << store.status();
    source_ = std::move(*store);
  }
  void TearDown() override {
    source_.reset();
    fs::remove_all(dir_);
  }

  void Apply(synodpb::Request request) {
    data_.push_back(request.SerializeAsString());
    Entry entry{Index(next_index_++), Entry::Kind::kCommand, data_.back()};
    Result<std::vector<CommandResult>> results = source_->Apply(std::span(&entry, 1));
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_TRUE((*results)[0].status.ok()) << (*results)[0].status;
  }
  void Put(std::string key, std::string value, int64_t lease = 0) {
    synodpb::Request request;
    request.mutable_put()->set_key(std::move(key));
    request.mutable_put()->set_value(std::move(value));
    request.mutable_put()->set_lease(lease);
    Apply(request);
  }
  void Delete(std::string key, std::string range_end = "") {
    synodpb::Request request;
    request.mutable_delete_range()->set_key(std::move(key));
    request.mutable_delete_range()->set_range_end(std::move(range_end));
    Apply(request);
  }

  // Exports the source store, imports the file into a new store and opens it.
  std::unique_ptr<Store> RoundTrip(const synodpb::ClusterMembers& members,
                                   EtcdBackupSummary* exported, EtcdBackupSummary* imported) {
    const std::string path = dir_ + "/snapshot.db";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    {
      auto view = source_->ReadView();
      EXPECT_TRUE(view.ok());
      storage::BoltWriter writer(fd, path);
      auto written = WriteEtcdBackup(**view, members, writer);
      EXPECT_TRUE(written.ok()) << written.status();
      if (written.ok()) *exported = *written;
    }
    ::close(fd);
    auto reader = storage::BoltReader::Open(path);
    EXPECT_TRUE(reader.ok()) << reader.status();
    auto summary = ImportEtcdBackup(**reader, dir_ + "/imported", "the membership");
    EXPECT_TRUE(summary.ok()) << summary.status();
    if (summary.ok()) *imported = *summary;
    auto store = Store::Open(dir_ + "/imported");
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Store> source_;
  std::deque<std::string> data_;
  uint64_t next_index_ = 1;
};

etcdserverpb::RangeResponse RangeAll(const Store& store, int64_t revision) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(1, '\0'));
  request.set_range_end(std::string(1, '\0'));
  request.set_revision(revision);
  auto response = store.Range(request);
  EXPECT_TRUE(response.ok()) << response.status();
  return response.ok() ? *response : etcdserverpb::RangeResponse();
}

TEST_F(EtcdBackupTest, EverythingObservableSurvivesTheRoundTrip) {
  synodpb::Request grant;
  grant.mutable_lease_grant()->set_id(0x1234);
  grant.mutable_lease_grant()->set_ttl(300);
  Apply(grant);
  synodpb::Request checkpoint;
  auto* cp = checkpoint.mutable_lease_checkpoint()->add_checkpoints();
  cp->set_id(0x1234);
  cp->set_remaining_ttl(120);
  Apply(checkpoint);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 200; ++i) Put("key/" + std::to_string(i), std::string(i * 50, 'v'));
  }
  Put("leased", "1", 0x1234);
  Put("big", std::string(1 << 20, 'b'));
  Delete("key/1", "key/2");  // A range delete: several tombstones in one revision.
  Put("key/10", "again");    // A new generation after a delete.
  synodpb::Request txn;
  auto* success = txn.mutable_txn()->add_success();
  success->mutable_request_put()->set_key("txn/a");
  success = txn.mutable_txn()->add_success();
  success->mutable_request_put()->set_key("txn/b");
  Apply(txn);  // Two sub-revisions.
  synodpb::Request compact;
  compact.mutable_compaction()->set_revision(source_->current_revision().value() - 5);
  Apply(compact);
  Delete("key/3");
  synodpb::Request alarm;
  alarm.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  alarm.mutable_alarm()->set_memberid(7);
  alarm.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  Apply(alarm);

  synodpb::ClusterMembers members;
  auto* member = members.add_members();
  member->set_id(0xabc);
  member->set_name("n<1>");
  member->add_peer_urls("http://127.0.0.1:2380");
  members.add_removed_ids(0xdef);
  EtcdBackupSummary exported, imported;
  std::unique_ptr<Store> copy = RoundTrip(members, &exported, &imported);
  ASSERT_NE(copy, nullptr);

  EXPECT_EQ(exported.revision, source_->current_revision().value());
  EXPECT_EQ(imported.revision, exported.revision);
  EXPECT_EQ(imported.compact_revision, exported.compact_revision);
  EXPECT_EQ(imported.key_revisions, exported.key_revisions);
  EXPECT_EQ(imported.leases, 1u);
  EXPECT_EQ(copy->current_revision(), source_->current_revision());
  EXPECT_EQ(copy->compact_revision(), source_->compact_revision());
  EXPECT_EQ(copy->membership(), "the membership");
  EXPECT_EQ(copy->applied_index(), imported.applied_index);
  ASSERT_EQ(copy->alarms().size(), 1u);
  EXPECT_EQ(copy->alarms()[0].memberid(), 7u);

  // Every stored row is the same: HashKV covers kv.revs and the compacted revision.
  auto source_hash = source_->HashKV(Revision(0));
  auto copy_hash = copy->HashKV(Revision(0));
  ASSERT_TRUE(source_hash.ok() && copy_hash.ok());
  EXPECT_EQ(copy_hash->hash, source_hash->hash);
  // Reads at every revision since the compaction, and the history.
  for (int64_t rev = static_cast<int64_t>(source_->compact_revision().value());
       rev <= static_cast<int64_t>(source_->current_revision().value()); ++rev) {
    EXPECT_EQ(RangeAll(*copy, rev).SerializeAsString(), RangeAll(*source_, rev).SerializeAsString())
        << "at revision " << rev;
  }
  auto source_events = source_->EventsSince(std::string(1, '\0'), std::string(1, '\0'),
                                            source_->compact_revision(), 100000, true);
  auto copy_events = copy->EventsSince(std::string(1, '\0'), std::string(1, '\0'),
                                       copy->compact_revision(), 100000, true);
  ASSERT_TRUE(source_events.ok() && copy_events.ok());
  ASSERT_EQ(copy_events->events.size(), source_events->events.size());
  for (size_t i = 0; i < copy_events->events.size(); ++i) {
    EXPECT_EQ(copy_events->events[i].SerializeAsString(),
              source_events->events[i].SerializeAsString());
  }
  auto lease = copy->TimeToLive(0x1234, true);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->granted_ttl_s, 300);
  EXPECT_EQ(lease->remaining_ttl_s, 120);
  EXPECT_EQ(lease->keys, std::vector<std::string>{"leased"});
}

TEST_F(EtcdBackupTest, AnEmptyStoreRoundTrips) {
  EtcdBackupSummary exported, imported;
  std::unique_ptr<Store> copy = RoundTrip({}, &exported, &imported);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(exported.key_revisions, 0u);
  EXPECT_EQ(copy->current_revision(), Revision(1));
  EXPECT_EQ(copy->compact_revision(), Revision(0));
}

TEST_F(EtcdBackupTest, ImportRefusesAnExistingDirectoryAndANonEtcdFile) {
  const std::string path = dir_ + "/other.db";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  storage::BoltWriter writer(fd, path);
  ASSERT_TRUE(writer.BeginBucket("something").ok());
  ASSERT_TRUE(writer.EndBucket().ok());
  ASSERT_TRUE(writer.Finish().ok());
  ::close(fd);
  auto reader = storage::BoltReader::Open(path);
  ASSERT_TRUE(reader.ok());
  EXPECT_TRUE(
      absl::IsFailedPrecondition(ImportEtcdBackup(**reader, dir_ + "/source", "").status()));
  auto refused = ImportEtcdBackup(**reader, dir_ + "/new", "");
  EXPECT_TRUE(absl::IsDataLoss(refused.status())) << refused.status();
  EXPECT_FALSE(fs::exists(dir_ + "/new"));
}

}  // namespace
}  // namespace synod::kv
