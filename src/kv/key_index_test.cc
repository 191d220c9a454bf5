#include "kv/key_index.h"

#include <gtest/gtest.h>

namespace synod::kv {
namespace {

KeyIndex::Newest At(int64_t main, int64_t version) {
  return KeyIndex::Newest{codec::Rev{main, 0}, 2, version, 0};
}

TEST(KeyIndex, RollbackUndoesSetsAndErasesInReverseOrder) {
  KeyIndex index;
  index.Load("a", At(2, 1));
  index.Load("b", At(3, 1));
  const size_t mark = index.UndoMark();
  index.Set("a", At(4, 2));
  index.Set("a", At(4, 3));  // The same key twice in one command.
  index.Erase("b");
  index.Set("c", At(4, 1));
  index.Erase("missing");  // Nothing to erase: nothing to undo.
  EXPECT_EQ(index.Find("a")->version, 3);
  EXPECT_EQ(index.Find("b"), nullptr);
  EXPECT_EQ(index.size(), 2u);

  index.RollbackTo(mark);
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  EXPECT_EQ(*index.Find("b"), At(3, 1));
  EXPECT_EQ(index.Find("c"), nullptr);
  EXPECT_EQ(index.size(), 2u);
}

TEST(KeyIndex, ForgetUndoKeepsTheChanges) {
  KeyIndex index;
  index.Set("a", At(2, 1));
  index.ForgetUndo();
  const size_t mark = index.UndoMark();
  EXPECT_EQ(mark, 0u);
  index.Erase("a");
  index.RollbackTo(mark);
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  index.ForgetUndo();
  index.RollbackTo(index.UndoMark());
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  index.Clear();
  EXPECT_EQ(index.Find("a"), nullptr);
  EXPECT_EQ(index.size(), 0u);
}

}  // namespace
}  // namespace synod::kv
