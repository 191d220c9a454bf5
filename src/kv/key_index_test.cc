#include "kv/key_index.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace synod::kv {
namespace {

using codec::Rev;

KeyIndex::Newest At(int64_t main, int64_t version) {
  return KeyIndex::Newest{Rev{main, 0}, 2, version, 0};
}

codec::Record PutRecord(int64_t version) {
  return codec::Record{false, 2, version, 0, "v"};
}

std::vector<std::pair<std::string, Rev>> LiveAt(const KeyIndex& index, const KeyRange& range,
                                                int64_t at_rev) {
  std::vector<std::pair<std::string, Rev>> live;
  index.VisitLive(range, at_rev, [&](const std::string& key, Rev rev) {
    live.emplace_back(key, rev);
    return true;
  });
  return live;
}

TEST(KeyIndex, RollbackUndoesPutsAndDeletesInReverseOrder) {
  KeyIndex index;
  index.Load("a", Rev{2, 0}, PutRecord(1));
  index.Load("b", Rev{3, 0}, PutRecord(1));
  KeyIndex before = index;
  const size_t mark = index.UndoMark();
  index.Put("a", At(4, 2));
  index.Put("a", KeyIndex::Newest{Rev{4, 1}, 2, 3, 0});  // The same key twice in one command.
  index.Delete("b", Rev{4, 2});
  index.Put("c", At(4, 3));
  EXPECT_EQ(index.Find("a")->version, 3);
  EXPECT_EQ(index.Find("b"), nullptr);
  EXPECT_EQ(index.size(), 2u);

  index.RollbackTo(mark);
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  EXPECT_EQ(*index.Find("b"), At(3, 1));
  EXPECT_EQ(index.Find("c"), nullptr);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_TRUE(index == before);
}

TEST(KeyIndex, ForgetUndoKeepsTheChanges) {
  KeyIndex index;
  index.Put("a", At(2, 1));
  index.ForgetUndo();
  const size_t mark = index.UndoMark();
  EXPECT_EQ(mark, 0u);
  index.Delete("a", Rev{3, 0});
  index.RollbackTo(mark);
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  index.ForgetUndo();
  index.RollbackTo(index.UndoMark());
  EXPECT_EQ(*index.Find("a"), At(2, 1));
  index.Clear();
  EXPECT_EQ(index.Find("a"), nullptr);
  EXPECT_EQ(index.size(), 0u);
}

// a: put 2, put 4, delete 6, put 8.  b: put 3, delete 5.  c: put 7.
KeyIndex History() {
  KeyIndex index;
  index.Put("a", At(2, 1));
  index.Put("b", At(3, 1));
  index.Put("a", At(4, 2));
  index.Delete("b", Rev{5, 0});
  index.Delete("a", Rev{6, 0});
  index.Put("c", At(7, 1));
  index.Put("a", KeyIndex::Newest{Rev{8, 0}, 8, 1, 0});
  index.ForgetUndo();
  return index;
}

TEST(KeyIndex, ReadsSeeEachKeyAsItWasAtTheRevision) {
  const KeyIndex index = History();
  const KeyRange all("a", std::string_view("\0", 1));
  using Live = std::vector<std::pair<std::string, Rev>>;
  EXPECT_EQ(LiveAt(index, all, 1), Live{});
  EXPECT_EQ(LiveAt(index, all, 3), (Live{{"a", {2, 0}}, {"b", {3, 0}}}));
  EXPECT_EQ(LiveAt(index, all, 5), (Live{{"a", {4, 0}}}));
  EXPECT_EQ(LiveAt(index, all, 6), Live{});
  EXPECT_EQ(LiveAt(index, all, 8), (Live{{"a", {8, 0}}, {"c", {7, 0}}}));
  EXPECT_EQ(LiveAt(index, KeyRange("b", "c"), 4), (Live{{"b", {3, 0}}}));
  EXPECT_EQ(LiveAt(index, KeyRange("c", ""), 8), (Live{{"c", {7, 0}}}));
  EXPECT_EQ(index.LiveAt("a", 7), std::nullopt);
  EXPECT_EQ(index.LiveAt("a", 100), (Rev{8, 0}));
  EXPECT_EQ(index.Find("a")->create_revision, 8);
  EXPECT_EQ(index.Find("b"), nullptr);
  EXPECT_EQ(index.size(), 2u);
  // The change before a put, as watch replay's prev_kv wants it.
  EXPECT_EQ(index.PutBefore("a", Rev{4, 0}), (Rev{2, 0}));
  EXPECT_EQ(index.PutBefore("a", Rev{6, 0}), (Rev{4, 0}));
  EXPECT_EQ(index.PutBefore("a", Rev{8, 0}), std::nullopt);  // After a delete.
  EXPECT_EQ(index.PutBefore("a", Rev{2, 0}), std::nullopt);  // The first.
}

TEST(KeyIndex, CompactionKeepsTheNewestLiveChangeAtOrBelowAndEverythingAbove) {
  KeyIndex index = History();
  // At 5: a keeps 4 (newest at or below 5, a put) and 6, 8; b's newest at or below 5 is its
  // delete, so b goes entirely; c is above 5.
  std::vector<Rev> dropped = index.Compact(5);
  EXPECT_EQ(dropped, (std::vector<Rev>{{2, 0}, {3, 0}, {5, 0}}));
  EXPECT_EQ(index.LiveAt("a", 5), (Rev{4, 0}));
  EXPECT_EQ(index.PutBefore("a", Rev{6, 0}), (Rev{4, 0}));
  // At 6: a's delete at 6 ends a generation, so 4 and 6 go and 8 stays.
  dropped = index.Compact(6);
  EXPECT_EQ(dropped, (std::vector<Rev>{{4, 0}, {6, 0}}));
  EXPECT_EQ(index.LiveAt("a", 8), (Rev{8, 0}));
  EXPECT_EQ(index.LiveAt("a", 7), std::nullopt);
  // Compacting again drops nothing: every key's newest change at or below is a live put.
  EXPECT_EQ(index.Compact(8), std::vector<Rev>{});
  EXPECT_EQ(index.size(), 2u);
}

TEST(KeyIndex, LoadingTheHistoryGivesTheSameIndexAsApplyingIt) {
  KeyIndex loaded;
  loaded.Load("a", Rev{2, 0}, PutRecord(1));
  loaded.Load("b", Rev{3, 0}, PutRecord(1));
  loaded.Load("a", Rev{4, 0}, PutRecord(2));
  loaded.Load("b", Rev{5, 0}, codec::Record{true});
  loaded.Load("a", Rev{6, 0}, codec::Record{true});
  loaded.Load("c", Rev{7, 0}, PutRecord(1));
  loaded.Load("a", Rev{8, 0}, codec::Record{false, 8, 1, 0, "v"});
  EXPECT_TRUE(loaded == History());
  loaded.Load("c", Rev{9, 0}, PutRecord(2));
  EXPECT_FALSE(loaded == History());
}

}  // namespace
}  // namespace synod::kv
