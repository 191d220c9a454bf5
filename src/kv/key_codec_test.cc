#include "kv/key_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "base/prng.h"

namespace synod::kv::codec {
namespace {

TEST(KeyCodec, RowsSortByKeyThenNewestRevisionFirst) {
  base::Prng prng(7);
  struct Row {
    std::string key;
    Rev rev;
    std::string encoded;
  };
  std::vector<Row> rows;
  // Keys over a tiny alphabet with the awkward bytes, so prefixes and zeros are common.
  const std::string alphabet(
      "\x00\x01\x02\xff"
      "a",
      5);
  for (int i = 0; i < 2000; ++i) {
    std::string key;
    const uint64_t length = prng.Below(4);
    for (uint64_t j = 0; j < length; ++j) key.push_back(alphabet[prng.Below(alphabet.size())]);
    const Rev rev{static_cast<int64_t>(prng.Below(5)), static_cast<int64_t>(prng.Below(3))};
    rows.push_back({key, rev, EncodeKeyRow(key, rev)});
  }
  std::vector<Row> by_encoding = rows;
  std::sort(by_encoding.begin(), by_encoding.end(),
            [](const Row& a, const Row& b) { return a.encoded < b.encoded; });
  std::vector<Row> by_meaning = rows;
  std::sort(by_meaning.begin(), by_meaning.end(), [](const Row& a, const Row& b) {
    return std::tie(a.key, b.rev) < std::tie(b.key, a.rev);  // Key ascending, rev descending.
  });
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(by_encoding[i].key, by_meaning[i].key) << i;
    EXPECT_EQ(by_encoding[i].rev, by_meaning[i].rev) << i;
  }
  for (const Row& row : rows) {
    std::optional<KeyRow> decoded = DecodeKeyRow(row.encoded);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->user_key, row.key);
    EXPECT_EQ(decoded->rev, row.rev);
    // Every row of the key lies in [KeyPrefix, KeyPrefixEnd), and no row of another key does.
    for (const Row& other : rows) {
      const bool inside =
          other.encoded >= KeyPrefix(row.key) && other.encoded < KeyPrefixEnd(row.key);
      EXPECT_EQ(inside, other.key == row.key);
    }
    if (&row - rows.data() > 200) break;  // The quadratic check on a prefix is enough.
  }
}

TEST(KeyCodec, SeekAtOrBelowLandsOnTheNewestRowAtOrBelow) {
  const std::string a = EncodeKeyRow("k", {5, 1});
  const std::string b = EncodeKeyRow("k", {5, 0});
  const std::string c = EncodeKeyRow("k", {3, 0});
  EXPECT_LE(SeekAtOrBelow("k", 5), a);
  EXPECT_GT(SeekAtOrBelow("k", 6), std::string(KeyPrefix("k")));
  EXPECT_LT(SeekAtOrBelow("k", 6), a);
  EXPECT_GT(SeekAtOrBelow("k", 4), b);
  EXPECT_LE(SeekAtOrBelow("k", 4), c);
}

TEST(KeyCodec, RecordsLeaseIdsAndRevRowsRoundTrip) {
  Record record{false, 7, 3, -42, std::string("v\0v", 3)};
  std::optional<Record> decoded = DecodeRecord(EncodeRecord(record));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->create_revision, 7);
  EXPECT_EQ(decoded->version, 3);
  EXPECT_EQ(decoded->lease, -42);
  EXPECT_EQ(decoded->value, record.value);
  EXPECT_FALSE(*RecordIsTombstone(EncodeRecord(record)));
  EXPECT_TRUE(*RecordIsTombstone(EncodeRecord(Record{true})));
  EXPECT_FALSE(DecodeRecord("short").has_value());

  EXPECT_LT(EncodeLeaseId(-5), EncodeLeaseId(-1));
  EXPECT_LT(EncodeLeaseId(-1), EncodeLeaseId(0));
  EXPECT_LT(EncodeLeaseId(0), EncodeLeaseId(INT64_MAX));
  EXPECT_EQ(DecodeLeaseId(EncodeLeaseId(-12345)), -12345);

  EXPECT_LT(EncodeRevRow({2, 9}), EncodeRevRow({3, 0}));
  EXPECT_EQ(DecodeRevRow(EncodeRevRow({3, 4})), (Rev{3, 4}));

  EXPECT_EQ(PrefixEnd("ab"), "ac");
  EXPECT_EQ(PrefixEnd("a\xff"), "b");
  EXPECT_EQ(PrefixEnd("\xff\xff"), "");
}

}  // namespace
}  // namespace synod::kv::codec
