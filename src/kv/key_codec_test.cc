#include "kv/key_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace synod::kv::codec {
namespace {

TEST(KeyCodec, RevValuesLeaseIdsAndRevRowsRoundTrip) {
  Record record{false, 7, 3, -42, std::string("v\0v", 3)};
  const std::string key("k\0\xff", 3);
  const std::string encoded = EncodeRevValue(key, record);
  std::optional<RevValue> decoded = DecodeRevValue(encoded);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->user_key, key);
  EXPECT_FALSE(decoded->record.tombstone);
  EXPECT_EQ(decoded->record.create_revision, 7);
  EXPECT_EQ(decoded->record.version, 3);
  EXPECT_EQ(decoded->record.lease, -42);
  EXPECT_EQ(decoded->record.value, record.value);
  EXPECT_EQ(RevValueKey(encoded), std::string_view(key));
  std::optional<RevValue> tombstone = DecodeRevValue(EncodeRevValue("gone", Record{true}));
  ASSERT_TRUE(tombstone.has_value());
  EXPECT_TRUE(tombstone->record.tombstone);
  EXPECT_EQ(tombstone->user_key, "gone");
  EXPECT_EQ(tombstone->record.value, "");
  // Corrupt rows: too short, an unknown kind, a key length past the end.
  EXPECT_FALSE(DecodeRevValue("short").has_value());
  std::string bad_kind = encoded;
  bad_kind[0] = '\x03';
  EXPECT_FALSE(DecodeRevValue(bad_kind).has_value());
  std::string bad_length = encoded.substr(0, 33 + 1);  // The header and one byte of the key.
  EXPECT_FALSE(RevValueKey(bad_length).has_value());

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
