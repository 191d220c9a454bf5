#include "base/ids.h"

#include <gtest/gtest.h>

#include <type_traits>

namespace synod {
namespace {

TEST(StrongId, DistinctTypesDoNotConvert) {
  static_assert(!std::is_convertible_v<Term, Index>);
  static_assert(!std::is_convertible_v<uint64_t, Term>);
  static_assert(!std::is_convertible_v<NodeId, uint64_t>);
}

TEST(StrongId, OrderingAndSteps) {
  Index five(5);
  EXPECT_EQ(five.next(), Index(6));
  EXPECT_EQ(five.prev(), Index(4));
  EXPECT_EQ(five.plus(3), Index(8));
  EXPECT_EQ(Index(8).distance_from(five), 3u);
  EXPECT_LT(Index(4), five);
  EXPECT_EQ(kNoNode, NodeId(0));
}

TEST(StrongId, Formats) {
  EXPECT_EQ(fmt::format("t{}", Term(3)), "t3");
}

}  // namespace
}  // namespace synod
