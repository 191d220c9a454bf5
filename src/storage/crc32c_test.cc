#include "storage/crc32c.h"

#include <gtest/gtest.h>

namespace synod::storage {
namespace {

// Check values from RFC 3720 (iSCSI), appendix B.4, which defines CRC32C.
TEST(Crc32cTest, MatchesPublishedCheckValues) {
  EXPECT_EQ(ComputeCrc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(ComputeCrc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(ComputeCrc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(ComputeCrc32c(""), 0u);
}

TEST(Crc32cTest, PiecesEqualTheWhole) {
  Crc32c crc;
  crc.Update("1234");
  crc.Update("");
  crc.Update("56789");
  EXPECT_EQ(crc.Finish(), 0xE3069283u);
}

TEST(Crc32cTest, OneFlippedBitChangesTheChecksum) {
  std::string data(4096, 'x');
  const uint32_t original = ComputeCrc32c(data);
  data[1234] ^= 0x10;
  EXPECT_NE(ComputeCrc32c(data), original);
}

}  // namespace
}  // namespace synod::storage
