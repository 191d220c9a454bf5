#include "base/prng.h"

#include <gtest/gtest.h>

#include <array>

namespace synod::base {
namespace {

TEST(Prng, SameSeedReplaysTheSameSequence) {
  Prng first(42);
  Prng second(42);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(first.NextU64(), second.NextU64());
}

TEST(Prng, DifferentSeedsDiverge) {
  Prng first(1);
  Prng second(2);
  int equal = 0;
  for (int i = 0; i < 100; ++i) equal += first.NextU64() == second.NextU64();
  EXPECT_LT(equal, 2);
}

TEST(Prng, BelowStaysInRangeAndCoversIt) {
  Prng prng(7);
  std::array<int, 10> counts{};
  for (int i = 0; i < 10000; ++i) {
    uint64_t value = prng.Below(10);
    ASSERT_LT(value, 10u);
    ++counts[value];
  }
  // Each bucket expects 1000; 800 is more than six standard deviations below.
  for (int count : counts) EXPECT_GT(count, 800);
}

TEST(Prng, BetweenIsInclusive) {
  Prng prng(9);
  bool saw_low = false;
  bool saw_high = false;
  for (int i = 0; i < 1000; ++i) {
    uint64_t value = prng.Between(5, 7);
    ASSERT_GE(value, 5u);
    ASSERT_LE(value, 7u);
    saw_low |= value == 5;
    saw_high |= value == 7;
  }
  EXPECT_TRUE(saw_low);
  EXPECT_TRUE(saw_high);
}

TEST(Prng, ChanceExtremes) {
  Prng prng(3);
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(prng.Chance(0, 10));
    EXPECT_TRUE(prng.Chance(10, 10));
  }
}

}  // namespace
}  // namespace synod::base
