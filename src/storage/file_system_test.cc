// ReplaceFileDurably on the simulator's disk, which loses what was not made durable at a crash:
// after an OK the new contents survive any crash, and a failed replacement leaves the old ones.
// And preallocation on the real disk.

#include "storage/file_system.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/prng.h"
#include "sim/sim_disk.h"

namespace synod::storage {
namespace {

using sim::SimDisk;

class ReplaceFileDurablyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(disk_.CreateDirectory("/data").ok()); }

  std::string ReadAfterCrash(const std::string& path) {
    disk_.Crash(SimDisk::CrashKind::kTornWrite, prng_);
    auto contents = disk_.ReadFile(path);
    EXPECT_TRUE(contents.ok()) << contents.status();
    return contents.ok() ? *contents : std::string();
  }

  SimDisk disk_;
  base::Prng prng_{7};
};

TEST_F(ReplaceFileDurablyTest, NewContentsSurviveACrashOnceItReturnsOk) {
  ASSERT_TRUE(ReplaceFileDurably(disk_, "/data", "state", "old").ok());
  ASSERT_TRUE(ReplaceFileDurably(disk_, "/data", "state", "new contents").ok());
  EXPECT_EQ(ReadAfterCrash("/data/state"), "new contents");
  EXPECT_FALSE(disk_.Exists("/data/state.tmp"));
}

TEST_F(ReplaceFileDurablyTest, AFailedSyncLeavesTheOldContentsAfterACrash) {
  ASSERT_TRUE(ReplaceFileDurably(disk_, "/data", "state", "old").ok());
  disk_.FailSyncs(1);
  EXPECT_FALSE(ReplaceFileDurably(disk_, "/data", "state", "new").ok());
  EXPECT_EQ(ReadAfterCrash("/data/state"), "old");
}

TEST_F(ReplaceFileDurablyTest, ALeftoverTemporaryFileIsDiscarded) {
  {
    auto leftover = disk_.OpenForAppend("/data/state.tmp");
    ASSERT_TRUE(leftover.ok());
    ASSERT_TRUE((*leftover)->Append("torn garbage from an earlier crash").ok());
  }
  ASSERT_TRUE(ReplaceFileDurably(disk_, "/data", "state", "new").ok());
  EXPECT_EQ(ReadAfterCrash("/data/state"), "new");
}

// The real disk: a preallocated file reads as zeros past its data, and appends go after the
// data, not after the reserved length.
TEST(PosixFileSystemTest, AppendsToAPreallocatedFileGoAfterItsData) {
  char directory[] = "/tmp/synod-file-system-test-XXXXXX";
  ASSERT_NE(::mkdtemp(directory), nullptr);
  const std::string path = JoinPath(directory, "reserved");
  std::unique_ptr<FileSystem> fs = NewPosixFileSystem();
  {
    auto file = fs->OpenForAppend(path);
    ASSERT_TRUE(file.ok()) << file.status();
    ASSERT_TRUE((*file)->Append("abc").ok());
    (*file)->Preallocate(4096);
    ASSERT_TRUE((*file)->Append("def").ok());
    EXPECT_EQ((*file)->size(), 6u);
    ASSERT_TRUE((*file)->Sync().ok());
  }
  auto contents = fs->ReadFile(path);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->size(), 4096u) << "not reserved";
  EXPECT_EQ(contents->substr(0, 6), "abcdef");
  EXPECT_EQ(contents->find_first_not_of('\0', 6), std::string::npos);
  // Cut back to its data (as the log does on opening it), the file takes appends there.
  ASSERT_TRUE(fs->Truncate(path, 6).ok());
  {
    auto file = fs->OpenForAppend(path);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ((*file)->size(), 6u);
    ASSERT_TRUE((*file)->Append("ghi").ok());
    ASSERT_TRUE((*file)->Sync().ok());
  }
  EXPECT_EQ(*fs->ReadFile(path), "abcdefghi");
  ASSERT_TRUE(fs->Remove(path).ok());
  ASSERT_EQ(::rmdir(directory), 0);
}

}  // namespace
}  // namespace synod::storage
