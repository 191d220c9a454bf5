#include "storage/backend.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

namespace synod::storage {
namespace {

namespace fs = std::filesystem;

constexpr TableId kA{0};
constexpr TableId kB{1};

std::vector<std::string> Tables() {
  return {"a", "b"};
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "synod-backend-XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

std::unique_ptr<Backend> OpenOrDie(const std::string& dir,
                                   std::vector<std::string> tables = Tables()) {
  Result<std::unique_ptr<Backend>> backend = Backend::Open(dir, std::move(tables));
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

std::map<std::string, std::string> Dump(const Reader& reader, TableId table) {
  std::map<std::string, std::string> out;
  std::unique_ptr<Iterator> it = reader.NewIterator(table);
  for (it->SeekToFirst(); it->Valid(); it->Next()) out.emplace(it->key(), it->value());
  EXPECT_TRUE(it->status().ok());
  return out;
}

void Commit(Backend& backend, uint64_t index,
            const std::vector<std::pair<std::string, std::string>>& puts,
            std::optional<std::string> membership = std::nullopt) {
  std::unique_ptr<WriteBatch> batch = backend.NewBatch();
  for (const auto& [k, v] : puts) batch->Put(kA, k, v);
  ASSERT_TRUE(backend.Commit(*batch, Index(index), membership).ok());
}

TEST(Backend, NewDatabaseIsEmptyAtIndexZero) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("node"));
  EXPECT_EQ(backend->applied_index(), Index(0));
  EXPECT_EQ(backend->membership(), "");
  EXPECT_TRUE(Dump(*backend, kA).empty());
  EXPECT_TRUE(fs::exists(tmp.sub("node/CURRENT")));
}

TEST(Backend, CommitStoresDataWithAppliedIndexAndMembershipAcrossReopen) {
  TempDir tmp;
  {
    auto backend = OpenOrDie(tmp.sub("node"));
    Commit(*backend, 3, {{"k1", "v1"}, {"k2", "v2"}}, "members-1");
    std::unique_ptr<WriteBatch> batch = backend->NewBatch();
    batch->Delete(kA, "k1");
    batch->Put(kB, "x", "y");
    ASSERT_TRUE(backend->Commit(*batch, Index(7)).ok());
    EXPECT_EQ(backend->applied_index(), Index(7));
    EXPECT_EQ(backend->membership(), "members-1");  // Unchanged when not given.
    ASSERT_TRUE(backend->Sync().ok());
  }
  auto backend = OpenOrDie(tmp.sub("node"));
  EXPECT_EQ(backend->applied_index(), Index(7));
  EXPECT_EQ(backend->membership(), "members-1");
  EXPECT_EQ(Dump(*backend, kA), (std::map<std::string, std::string>{{"k2", "v2"}}));
  EXPECT_EQ(Dump(*backend, kB), (std::map<std::string, std::string>{{"x", "y"}}));
  Result<std::optional<std::string>> got = backend->Get(kA, "k2");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->value_or("?"), "v2");
  got = backend->Get(kA, "k1");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

// What a crash leaves: a copy of the directory taken while the backend is open holds the files
// but not the memtables, as a killed process would.
std::unique_ptr<Backend> OpenCrashCopy(const TempDir& tmp, const std::string& name) {
  fs::remove_all(tmp.sub(name));
  fs::copy(tmp.sub("node"), tmp.sub(name), fs::copy_options::recursive);
  return OpenOrDie(tmp.sub(name));
}

TEST(Backend, CrashKeepsWhatTheLastSyncFlushedWithItsAppliedIndex) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("node"));
  Commit(*backend, 3, {{"k1", "v1"}}, "members-1");
  ASSERT_TRUE(backend->Sync().ok());
  std::unique_ptr<WriteBatch> batch = backend->NewBatch();
  batch->Delete(kA, "k1");
  batch->Put(kA, "k2", "v2");
  batch->Put(kB, "x", std::string(100000, 'y'));
  ASSERT_TRUE(backend->Commit(*batch, Index(7), "members-2").ok());
  {
    // The commit at 7 was not synced: the Raft log replays it after a crash, so the store
    // must come back at 3 with the data and membership of 3, in every table.
    auto crashed = OpenCrashCopy(tmp, "crash-1");
    EXPECT_EQ(crashed->applied_index(), Index(3));
    EXPECT_EQ(crashed->membership(), "members-1");
    EXPECT_EQ(Dump(*crashed, kA), (std::map<std::string, std::string>{{"k1", "v1"}}));
    EXPECT_TRUE(Dump(*crashed, kB).empty());
  }
  // The quota counts the unflushed commits through memtable_bytes(); a flush moves them to files.
  const int64_t unflushed = backend->memtable_bytes();
  EXPECT_GT(unflushed, 100000);
  ASSERT_TRUE(backend->Sync().ok());
  EXPECT_LT(backend->memtable_bytes(), unflushed - 100000);
  auto crashed = OpenCrashCopy(tmp, "crash-2");
  EXPECT_EQ(crashed->applied_index(), Index(7));
  EXPECT_EQ(crashed->membership(), "members-2");
  EXPECT_EQ(Dump(*crashed, kA), (std::map<std::string, std::string>{{"k2", "v2"}}));
  EXPECT_EQ(Dump(*crashed, kB),
            (std::map<std::string, std::string>{{"x", std::string(100000, 'y')}}));
}

TEST(Backend, StartSyncMakesCommitsDurableInTheBackground) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("node"));
  Commit(*backend, 3, {{"k1", "v1"}});
  Result<Index> durable = backend->durable_applied_index();
  ASSERT_TRUE(durable.ok()) << durable.status();
  EXPECT_EQ(*durable, Index(0));
  ASSERT_TRUE(backend->StartSync().ok());
  // The flush finishes on RocksDB's thread; wait for it, boundedly.
  for (int i = 0; i < 1000 && durable.ok() && *durable != Index(3); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    durable = backend->durable_applied_index();
  }
  ASSERT_TRUE(durable.ok()) << durable.status();
  EXPECT_EQ(*durable, Index(3));
  Commit(*backend, 7, {{"k2", "v2"}});
  durable = backend->durable_applied_index();
  ASSERT_TRUE(durable.ok()) << durable.status();
  EXPECT_EQ(*durable, Index(3));  // The commit at 7 is in memory only.
  auto crashed = OpenCrashCopy(tmp, "crash");
  EXPECT_EQ(crashed->applied_index(), Index(3));
  EXPECT_EQ(Dump(*crashed, kA), (std::map<std::string, std::string>{{"k1", "v1"}}));
}

TEST(Backend, MemoryReaderAnswersFromMemoryAndRefusesWhatIsOnlyOnDisk) {
  TempDir tmp;
  {
    auto backend = OpenOrDie(tmp.sub("node"));
    Commit(*backend, 1, {{"k1", "v1"}, {"k3", "v3"}});
    ASSERT_TRUE(backend->Sync().ok());
  }
  // Sync flushed k1 to a table file, and a reopened backend's block cache starts empty: k1 is
  // on disk only.
  auto backend = OpenOrDie(tmp.sub("node"));
  const MemoryReader& memory = backend->memory_reader();
  Result<std::optional<std::string>> got = memory.Get(kA, "k1");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  {
    std::unique_ptr<Iterator> it = memory.NewIterator(kA);
    it->Seek("k");
    EXPECT_FALSE(it->Valid());
    EXPECT_EQ(it->status().code(), absl::StatusCode::kUnavailable) << it->status();
  }
  // A read that may use the disk brings the block into the cache; then memory has it.
  got = backend->Get(kA, "k1");
  ASSERT_TRUE(got.ok());
  got = memory.Get(kA, "k1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value_or("?"), "v1");
  got = memory.Get(kA, "k2");  // Absent, and its block is cached.
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
  // A fresh commit is in the memtable.
  Commit(*backend, 2, {{"k4", "v4"}});
  got = memory.Get(kA, "k4");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value_or("?"), "v4");
}

TEST(Backend, BatchReadsItsOwnWritesAndRollsBackToSavePoint) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("node"));
  Commit(*backend, 1, {{"a", "1"}, {"b", "2"}, {"c", "3"}});

  std::unique_ptr<WriteBatch> batch = backend->NewBatch();
  batch->Put(kA, "b", "22");
  batch->Delete(kA, "c");
  batch->Put(kA, "d", "4");
  EXPECT_EQ(Dump(*batch, kA),
            (std::map<std::string, std::string>{{"a", "1"}, {"b", "22"}, {"d", "4"}}));
  // The committed state does not see the batch.
  EXPECT_EQ(Dump(*backend, kA).at("b"), "2");

  batch->SetSavePoint();
  batch->Put(kA, "a", "11");
  batch->Delete(kA, "d");
  EXPECT_EQ(batch->Get(kA, "a")->value_or(""), "11");
  EXPECT_FALSE(batch->Get(kA, "d")->has_value());
  batch->RollbackToSavePoint();
  EXPECT_EQ(batch->Get(kA, "a")->value_or(""), "1");
  EXPECT_EQ(batch->Get(kA, "d")->value_or(""), "4");

  ASSERT_TRUE(backend->Commit(*batch, Index(2)).ok());
  EXPECT_EQ(Dump(*backend, kA),
            (std::map<std::string, std::string>{{"a", "1"}, {"b", "22"}, {"d", "4"}}));
  EXPECT_EQ(batch->count(), 0u);  // Spent by the commit.
}

TEST(Backend, IteratorSeeksInBytewiseOrder) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("node"));
  Commit(*backend, 1, {{"a", ""}, {std::string("a\0", 2), ""}, {"b", ""}, {"\xff", ""}});
  std::unique_ptr<Iterator> it = backend->NewIterator(kA);
  it->Seek(std::string("a\0", 2));
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), std::string_view("a\0", 2));
  it->Next();
  EXPECT_EQ(it->key(), "b");
  it->Next();
  EXPECT_EQ(it->key(), "\xff");
  it->Next();
  EXPECT_FALSE(it->Valid());
  EXPECT_TRUE(it->status().ok());
}

TEST(Backend, FailedWriteStopsAllLaterWrites) {
  TempDir tmp;
  {
    auto backend = OpenOrDie(tmp.sub("node"));
    Commit(*backend, 1, {{"a", "1"}});
    backend->InjectWriteErrorForTest(absl::ResourceExhaustedError("No space left on device"));
    std::unique_ptr<WriteBatch> batch = backend->NewBatch();
    batch->Put(kA, "b", "2");
    Status s = backend->Commit(*batch, Index(2));
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(std::string(s.message()).find(tmp.sub("node")), std::string::npos) << s;
    EXPECT_NE(std::string(s.message()).find("No space left"), std::string::npos) << s;
    EXPECT_EQ(backend->applied_index(), Index(1));

    // The disk recovers, but the backend does not pretend: it stays stopped.
    backend->InjectWriteErrorForTest(Status());
    batch->Put(kA, "c", "3");
    EXPECT_EQ(backend->Commit(*batch, Index(3)).code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(backend->Sync().code(), absl::StatusCode::kResourceExhausted);
  }
  auto backend = OpenOrDie(tmp.sub("node"));
  EXPECT_EQ(backend->applied_index(), Index(1));
  EXPECT_EQ(Dump(*backend, kA), (std::map<std::string, std::string>{{"a", "1"}}));
}

TEST(Backend, RejectsUnknownTablesAndCorruptCurrent) {
  TempDir tmp;
  { OpenOrDie(tmp.sub("node"), {"a", "b", "c"}); }
  Result<std::unique_ptr<Backend>> opened = Backend::Open(tmp.sub("node"), {"a", "b"});
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(opened.status().message()).find("unknown table \"c\""), std::string::npos)
      << opened.status();

  EXPECT_EQ(Backend::Open(tmp.sub("x"), {"a", "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);

  std::ofstream(tmp.sub("node/CURRENT"), std::ios::trunc) << "db-000002 00000000\n";
  opened = Backend::Open(tmp.sub("node"), {"a", "b", "c"});
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << opened.status();
}

// --- Snapshots ------------------------------------------------------------------------------

std::vector<std::string> ReadAll(SnapshotReader& reader) {
  std::vector<std::string> chunks;
  while (true) {
    Result<std::optional<std::string>> chunk = reader.Next();
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (!chunk.ok() || !chunk->has_value()) break;
    chunks.push_back(std::move(**chunk));
  }
  return chunks;
}

// A source database with enough data for many small chunks, including values larger than a
// chunk.
void Fill(Backend& backend) {
  std::unique_ptr<WriteBatch> batch = backend.NewBatch();
  for (int i = 0; i < 200; ++i) {
    batch->Put(kA, fmt::format("key{:04}", i), std::string(static_cast<size_t>(i * 7), 'v'));
  }
  batch->Put(kB, "big", std::string(3000, 'B'));
  batch->Put(kB, std::string("\0\xff", 2), std::string("\0", 1));
  ASSERT_TRUE(backend.Commit(*batch, Index(42), "members-A").ok());
}

struct Source {
  TempDir tmp;
  std::unique_ptr<Backend> backend;
  std::vector<std::string> chunks;
  Source() {
    backend = OpenOrDie(tmp.sub("leader"));
    Fill(*backend);
    auto reader = backend->ReadSnapshot(/*chunk_bytes_max=*/256);
    EXPECT_TRUE(reader.ok());
    chunks = ReadAll(**reader);
  }
};

// Feeds chunks into a fresh installer for `dir`; returns the first error (Add or Finish).
Status Feed(const std::string& dir, const std::vector<std::string>& chunks,
            std::unique_ptr<SnapshotInstaller>* out = nullptr) {
  Result<std::unique_ptr<SnapshotInstaller>> installer = SnapshotInstaller::Start(dir);
  if (!installer.ok()) return installer.status();
  for (const std::string& chunk : chunks) {
    if (Status s = (*installer)->Add(chunk); !s.ok()) return s;
  }
  Status s = (*installer)->Finish();
  if (out != nullptr) *out = std::move(*installer);
  return s;
}

TEST(BackendSnapshot, RoundTripInstallsAnEqualDatabase) {
  Source source;
  ASSERT_GT(source.chunks.size(), 20u);
  for (const std::string& chunk : source.chunks) EXPECT_LE(chunk.size(), 256u);

  TempDir tmp;
  auto follower = OpenOrDie(tmp.sub("follower"));
  Commit(*follower, 5, {{"stale", "x"}}, "members-old");
  std::unique_ptr<SnapshotInstaller> installer;
  ASSERT_TRUE(Feed(tmp.sub("follower"), source.chunks, &installer).ok());
  EXPECT_EQ(installer->applied_index(), Index(42));
  // The follower keeps its old state until the swap.
  EXPECT_EQ(Dump(*follower, kA).count("stale"), 1u);

  Result<std::unique_ptr<Backend>> installed =
      Backend::InstallSnapshot(std::move(follower), std::move(installer));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ((*installed)->applied_index(), Index(42));
  EXPECT_EQ((*installed)->membership(), "members-A");
  EXPECT_EQ(Dump(**installed, kA), Dump(*source.backend, kA));
  EXPECT_EQ(Dump(**installed, kB), Dump(*source.backend, kB));
  // Only the new database remains.
  int databases = 0;
  for (const auto& entry : fs::directory_iterator(tmp.sub("follower"))) {
    databases += entry.path().filename().string().starts_with("db-");
  }
  EXPECT_EQ(databases, 1);
  installed->reset();
  auto reopened = OpenOrDie(tmp.sub("follower"));
  EXPECT_EQ(reopened->applied_index(), Index(42));
  EXPECT_EQ(Dump(*reopened, kA), Dump(*source.backend, kA));
}

TEST(BackendSnapshot, IsPointInTimeWhileCommitsGoOn) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("leader"));
  Commit(*backend, 1, {{"a", "1"}});
  auto reader = backend->ReadSnapshot(256);
  ASSERT_TRUE(reader.ok());
  Commit(*backend, 2, {{"a", "2"}, {"b", "2"}}, "later");  // After the snapshot was taken.
  std::vector<std::string> chunks = ReadAll(**reader);
  reader->reset();

  auto follower = OpenOrDie(tmp.sub("follower"));
  std::unique_ptr<SnapshotInstaller> installer;
  ASSERT_TRUE(Feed(tmp.sub("follower"), chunks, &installer).ok());
  auto installed = Backend::InstallSnapshot(std::move(follower), std::move(installer));
  ASSERT_TRUE(installed.ok());
  EXPECT_EQ((*installed)->applied_index(), Index(1));
  EXPECT_EQ((*installed)->membership(), "");
  EXPECT_EQ(Dump(**installed, kA), (std::map<std::string, std::string>{{"a", "1"}}));
}

TEST(BackendSnapshotView, SeesOnePointInTimeWhileCommitsGoOn) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("db"));
  Commit(*backend, 1, {{"a", "1"}, {"c", "1"}}, "first");
  auto view = backend->NewSnapshotView();
  ASSERT_TRUE(view.ok()) << view.status();
  Commit(*backend, 2, {{"a", "2"}, {"b", "2"}}, "later");
  EXPECT_EQ((*view)->applied_index(), Index(1));
  EXPECT_EQ((*view)->membership(), "first");
  EXPECT_EQ(Dump(**view, kA), (std::map<std::string, std::string>{{"a", "1"}, {"c", "1"}}));
  EXPECT_EQ(*(*view)->Get(kA, "a"), std::optional<std::string>("1"));
  EXPECT_EQ(*(*view)->Get(kA, "b"), std::nullopt);
  EXPECT_EQ(*backend->Get(kA, "a"), std::optional<std::string>("2"));
}

TEST(BackendSnapshot, EmptyDatabaseRoundTrips) {
  TempDir tmp;
  auto leader = OpenOrDie(tmp.sub("leader"));
  auto reader = leader->ReadSnapshot();
  ASSERT_TRUE(reader.ok());
  std::vector<std::string> chunks = ReadAll(**reader);
  EXPECT_EQ(chunks.size(), 2u);  // Header and end.
  auto follower = OpenOrDie(tmp.sub("follower"));
  ASSERT_TRUE(Feed(tmp.sub("follower"), chunks).ok());
}

TEST(BackendSnapshot, RejectsInvalidChunkSize) {
  TempDir tmp;
  auto backend = OpenOrDie(tmp.sub("leader"));
  EXPECT_EQ(backend->ReadSnapshot(10).status().code(), absl::StatusCode::kInvalidArgument);
}

// Every kind of damage is detected, named in the error, and leaves the receiver's live
// database and directory as they were.
void ExpectRejected(const std::vector<std::string>& chunks, std::string_view expected_message) {
  TempDir tmp;
  auto follower = OpenOrDie(tmp.sub("follower"));
  Commit(*follower, 5, {{"live", "x"}});
  Status s = Feed(tmp.sub("follower"), chunks);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(std::string(s.message()).find(expected_message), std::string::npos) << s;
  EXPECT_EQ(follower->applied_index(), Index(5));
  EXPECT_EQ(Dump(*follower, kA), (std::map<std::string, std::string>{{"live", "x"}}));
  for (const auto& entry : fs::directory_iterator(tmp.sub("follower"))) {
    EXPECT_FALSE(entry.path().string().ends_with(".tmp")) << entry.path();
  }
}

TEST(BackendSnapshot, RejectsCorruptChunk) {
  Source source;
  for (size_t victim : {size_t{0}, size_t{5}, source.chunks.size() - 1}) {
    std::vector<std::string> chunks = source.chunks;
    chunks[victim][chunks[victim].size() / 2] ^= 0x10;
    ExpectRejected(chunks, "CRC32C");
  }
}

TEST(BackendSnapshot, RejectsMissingChunk) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  chunks.erase(chunks.begin() + 3);
  ExpectRejected(chunks, "expected chunk 3 but got chunk 4");
}

TEST(BackendSnapshot, RejectsMissingHeader) {
  Source source;
  std::vector<std::string> chunks(source.chunks.begin() + 1, source.chunks.end());
  ExpectRejected(chunks, "expected chunk 0 but got chunk 1");
}

TEST(BackendSnapshot, RejectsReorderedChunks) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  std::swap(chunks[4], chunks[5]);
  ExpectRejected(chunks, "expected chunk 4 but got chunk 5");
}

TEST(BackendSnapshot, RejectsRepeatedChunk) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  chunks.insert(chunks.begin() + 6, chunks[5]);
  ExpectRejected(chunks, "expected chunk 6 but got chunk 5");
}

TEST(BackendSnapshot, RejectsTruncatedStream) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  chunks.pop_back();  // No end chunk.
  ExpectRejected(chunks, "stream truncated");
}

TEST(BackendSnapshot, RejectsTruncatedChunk) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  chunks[2].resize(chunks[2].size() - 10);
  ExpectRejected(chunks, "CRC32C");
  chunks[2].resize(8);
  ExpectRejected(chunks, "truncated chunk");
}

TEST(BackendSnapshot, RejectsChunkOfAnotherSnapshot) {
  Source source;
  // A second snapshot of the same leader at a later index.
  Commit(*source.backend, 43, {{"more", "x"}});
  auto reader = source.backend->ReadSnapshot(256);
  ASSERT_TRUE(reader.ok());
  std::vector<std::string> other = ReadAll(**reader);
  std::vector<std::string> chunks = source.chunks;
  chunks[3] = other[3];
  ExpectRejected(chunks, "belongs to the snapshot at index 43");
}

TEST(BackendSnapshot, RejectsChunksAfterTheEnd) {
  Source source;
  std::vector<std::string> chunks = source.chunks;
  chunks.push_back(chunks[1]);
  ExpectRejected(chunks, "after the end of the stream");
}

TEST(BackendSnapshot, RejectsDifferentTables) {
  Source source;
  TempDir tmp;
  auto follower = OpenOrDie(tmp.sub("follower"), {"a", "b", "c"});
  std::unique_ptr<SnapshotInstaller> installer;
  ASSERT_TRUE(Feed(tmp.sub("follower"), source.chunks, &installer).ok());
  Result<std::unique_ptr<Backend>> installed =
      Backend::InstallSnapshot(std::move(follower), std::move(installer));
  EXPECT_EQ(installed.status().code(), absl::StatusCode::kFailedPrecondition);
}

// A crash at any instant of the swap leaves the old or the new database, never a mix: stop
// before each step (as a crash would), reopen, and look.
TEST(BackendSnapshot, CrashAtEveryStepOfTheSwapLeavesOldOrNew) {
  Source source;
  using Step = Backend::InstallStep;
  for (Step step :
       {Step::kRenameDatabase, Step::kWriteCurrentTemp, Step::kRenameCurrent, Step::kRemoveOld}) {
    SCOPED_TRACE(static_cast<int>(step));
    TempDir tmp;
    auto follower = OpenOrDie(tmp.sub("follower"));
    Commit(*follower, 5, {{"old", "x"}}, "members-old");
    std::unique_ptr<SnapshotInstaller> installer;
    ASSERT_TRUE(Feed(tmp.sub("follower"), source.chunks, &installer).ok());
    Result<std::unique_ptr<Backend>> installed =
        Backend::InstallSnapshot(std::move(follower), std::move(installer), step);
    EXPECT_EQ(installed.status().code(), absl::StatusCode::kAborted);

    auto reopened = OpenOrDie(tmp.sub("follower"));
    const bool expect_new = step == Step::kRemoveOld;  // The rename of CURRENT is the commit.
    if (expect_new) {
      EXPECT_EQ(reopened->applied_index(), Index(42));
      EXPECT_EQ(reopened->membership(), "members-A");
      EXPECT_EQ(Dump(*reopened, kA), Dump(*source.backend, kA));
    } else {
      EXPECT_EQ(reopened->applied_index(), Index(5));
      EXPECT_EQ(reopened->membership(), "members-old");
      EXPECT_EQ(Dump(*reopened, kA), (std::map<std::string, std::string>{{"old", "x"}}));
    }
    // Open removed every leftover: one database, no temporaries.
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(tmp.sub("follower"))) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    ASSERT_EQ(names.size(), 2u) << fmt::format("{}", fmt::join(names, " "));
    EXPECT_EQ(names[0], "CURRENT");
    EXPECT_EQ(names[1], expect_new ? "db-000002" : "db-000001");
  }
}

TEST(BackendSnapshot, CrashWhileReceivingLeavesTheOldDatabase) {
  Source source;
  TempDir tmp;
  {
    auto follower = OpenOrDie(tmp.sub("follower"));
    Commit(*follower, 5, {{"old", "x"}});
  }
  // A half-received stream as a crash would leave it: a temporary database beside the live one.
  {
    auto installer = SnapshotInstaller::Start(tmp.sub("follower"));
    ASSERT_TRUE(installer.ok());
    for (size_t i = 0; i < source.chunks.size() / 2; ++i) {
      ASSERT_TRUE((*installer)->Add(source.chunks[i]).ok());
    }
    fs::copy(tmp.sub("follower/db-000002.tmp"), tmp.sub("crash-copy"), fs::copy_options::recursive);
  }
  fs::copy(tmp.sub("crash-copy"), tmp.sub("follower/db-000002.tmp"), fs::copy_options::recursive);
  auto reopened = OpenOrDie(tmp.sub("follower"));
  EXPECT_EQ(reopened->applied_index(), Index(5));
  EXPECT_FALSE(fs::exists(tmp.sub("follower/db-000002.tmp")));
  // And a later install still works.
  std::unique_ptr<SnapshotInstaller> installer;
  ASSERT_TRUE(Feed(tmp.sub("follower"), source.chunks, &installer).ok());
  auto installed = Backend::InstallSnapshot(std::move(reopened), std::move(installer));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ((*installed)->applied_index(), Index(42));
}

}  // namespace
}  // namespace synod::storage
