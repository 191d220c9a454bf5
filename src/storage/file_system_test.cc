// ReplaceFileDurably on the simulator's disk, which loses what was not made durable at a crash:
// after an OK the new contents survive any crash, and a failed replacement leaves the old ones.

#include "storage/file_system.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace synod::storage
