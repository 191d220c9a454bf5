// `synod snapshot restore`: its flags, its refusals, and the data dir it builds (identity, store
// and log agree). Starting members on restored dirs is the real-process test's
// (tests/fault/etcd_snapshot_test.py).

#include "server/snapshot_restore.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "kv/store.h"
#include "server/data_dir.h"
#include "server/etcd_snapshot_file.h"
#include "storage/bolt_writer.h"
#include "storage/file_system.h"
#include "storage/wal.h"

namespace synod::server {
namespace {

namespace fs = std::filesystem;

class SnapshotRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("synod_snapshot_restore_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    snapshot_ = (dir_ / "snap.db").string();
    // A store with one key, exported as etcd's snapshot file (bolt database and SHA-256).
    auto store = kv::Store::Open((dir_ / "source").string());
    ASSERT_TRUE(store.ok());
    synodpb::Request put;
    put.mutable_put()->set_key("k");
    put.mutable_put()->set_value("v");
    const std::string data = put.SerializeAsString();
    const kv::Entry entry{Index(1), kv::Entry::Kind::kCommand, data};
    ASSERT_TRUE((*store)->Apply({&entry, 1}).ok());
    const int fd = ::open(snapshot_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    storage::BoltWriter writer(fd, snapshot_);
    auto view = (*store)->ReadView();
    ASSERT_TRUE(view.ok());
    ASSERT_TRUE(kv::WriteEtcdBackup(**view, {}, writer).ok());
    ASSERT_TRUE(AppendSha256Trailer(fd, writer.pages() * 4096, snapshot_).ok());
    ::close(fd);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<SnapshotRestoreOptions> Parse(std::vector<std::string> arguments) {
    std::vector<const char*> argv;
    for (const std::string& argument : arguments) argv.push_back(argument.c_str());
    return ParseSnapshotRestoreFlags(static_cast<int>(argv.size()), argv.data());
  }
  std::vector<std::string> Flags(const std::string& data_dir) {
    return {snapshot_,
            "--name",
            "n1",
            "--data-dir",
            data_dir,
            "--initial-cluster",
            "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381",
            "--initial-cluster-token=tok",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380"};
  }

  fs::path dir_;
  std::string snapshot_;
};

TEST_F(SnapshotRestoreTest, TakesEtcdctlsRestoreFlagsOnly) {
  auto options = Parse(Flags((dir_ / "d").string()));
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->snapshot_path, snapshot_);
  EXPECT_FALSE(options->skip_hash_check);
  EXPECT_EQ(options->config.initial_cluster_token, "tok");
  EXPECT_EQ(options->config.initial_member_ids.size(), 2u);
  std::vector<std::string> flags = Flags((dir_ / "d").string());
  flags.push_back("--skip-hash-check");
  EXPECT_TRUE(Parse(flags)->skip_hash_check);
  flags.push_back("--listen-client-urls=http://127.0.0.1:2379");
  EXPECT_TRUE(absl::IsInvalidArgument(Parse(flags).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Parse({"--name", "n1"}).status()));  // No file.
  EXPECT_TRUE(absl::IsInvalidArgument(Parse({"a.db", "b.db"}).status()));
}

TEST_F(SnapshotRestoreTest, BuildsADataDirWhoseIdentityStoreAndLogAgree) {
  auto options = Parse(Flags((dir_ / "d").string()));
  ASSERT_TRUE(options.ok());
  auto summary = RestoreSnapshot(*options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->revision, 2);

  // The identity the same flags give at start.
  auto opened = OpenDataDir(options->config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->existed);
  auto store = kv::Store::Open(opened->kv_dir);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->applied_index(), summary->applied_index);
  EXPECT_EQ((*store)->current_revision(), Revision(2));
  // The log starts after the store's applied index, in term 1, with both members voting.
  auto file_system = storage::NewPosixFileSystem();
  storage::RecoveredLog recovered;
  auto wal = storage::Wal::Open(file_system.get(), {opened->wal_dir}, &recovered);
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_EQ(recovered.snapshot.index, summary->applied_index);
  EXPECT_EQ(recovered.snapshot.term, Term(1));
  EXPECT_EQ(recovered.snapshot.membership.voters.size(), 2u);
  EXPECT_EQ(recovered.hard_state.term, Term(1));
  EXPECT_EQ(recovered.hard_state.commit, summary->applied_index);
  // Nothing else was left beside it.
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) entries += entry.path() != dir_ / "d";
  EXPECT_EQ(entries, 2u);  // snap.db, source.

  // A second restore into the same dir is refused, and changes nothing.
  const auto identity_time = fs::last_write_time(dir_ / "d" / "member" / "identity");
  auto again = RestoreSnapshot(*options);
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
  EXPECT_NE(again.status().message().find("exists"), std::string_view::npos);
  EXPECT_EQ(fs::last_write_time(dir_ / "d" / "member" / "identity"), identity_time);
}

// --engine multipaxos: the engine record and a log of slots, which a member started with
// --engine raft refuses (data_dir.h) and the Multi-Paxos engine opens at the store's index.
TEST_F(SnapshotRestoreTest, BuildsAMultiPaxosDataDirWhenAsked) {
  std::vector<std::string> flags = Flags((dir_ / "d").string());
  flags.push_back("--engine=multipaxos");
  auto options = Parse(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->config.engine, EngineKind::kMultiPaxos);
  auto summary = RestoreSnapshot(*options);
  ASSERT_TRUE(summary.ok()) << summary.status();

  ServerConfig as_raft = options->config;
  as_raft.engine = EngineKind::kRaft;
  EXPECT_TRUE(absl::IsFailedPrecondition(OpenDataDir(as_raft).status()));
  auto opened = OpenDataDir(options->config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto file_system = storage::NewPosixFileSystem();
  storage::RecoveredLog recovered;
  EXPECT_TRUE(absl::IsFailedPrecondition(
      storage::Wal::Open(file_system.get(), {opened->wal_dir}, &recovered).status()));
  storage::WalOptions slots{opened->wal_dir};
  slots.content = storage::WalContent::kSlots;
  auto wal = storage::Wal::Open(file_system.get(), slots, &recovered);
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_EQ(recovered.snapshot.index, summary->applied_index);
  EXPECT_EQ(recovered.snapshot.membership.voters.size(), 2u);
  EXPECT_EQ(recovered.hard_state.term, Term(0));  // No promise made yet.
  EXPECT_EQ(recovered.hard_state.commit, summary->applied_index);
}

TEST_F(SnapshotRestoreTest, RefusesAFileWithoutItsHashUnlessTold) {
  fs::resize_file(snapshot_, fs::file_size(snapshot_) - kSnapshotSha256Bytes);
  auto options = Parse(Flags((dir_ / "d").string()));
  ASSERT_TRUE(options.ok());
  auto refused = RestoreSnapshot(*options);
  EXPECT_EQ(refused.status().message(), "snapshot missing hash but --skip-hash-check=false");
  EXPECT_FALSE(fs::exists(dir_ / "d"));
  options->skip_hash_check = true;
  EXPECT_TRUE(RestoreSnapshot(*options).ok());
}

}  // namespace
}  // namespace synod::server
