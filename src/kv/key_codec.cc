#include "kv/key_codec.h"

#include "base/assert.h"

namespace synod::kv::codec {

namespace {

constexpr size_t kRevBytes = 16;
// RevValue: kind u8 (1 put, 2 tombstone) | create_revision | version | lease | key length
// (8 BE each) | key | value.
constexpr size_t kRevValueFixedBytes = 1 + 4 * 8;

}  // namespace

void PutU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

uint64_t GetU64(std::string_view in) {
  SYNOD_ASSERT(in.size() >= 8);
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

std::string EncodeRevRow(Rev rev) {
  SYNOD_ASSERT(rev.main >= 0);
  SYNOD_ASSERT(rev.sub >= 0);
  std::string out;
  out.reserve(kRevBytes);
  PutU64(out, static_cast<uint64_t>(rev.main));
  PutU64(out, static_cast<uint64_t>(rev.sub));
  return out;
}

std::optional<Rev> DecodeRevRow(std::string_view row) {
  if (row.size() != kRevBytes) return std::nullopt;
  const uint64_t main = GetU64(row);
  const uint64_t sub = GetU64(row.substr(8));
  if (main > INT64_MAX || sub > INT64_MAX) return std::nullopt;
  return Rev{static_cast<int64_t>(main), static_cast<int64_t>(sub)};
}

std::string EncodeRevValue(std::string_view user_key, const Record& record) {
  std::string out;
  out.reserve(kRevValueFixedBytes + user_key.size() + record.value.size());
  out.push_back(record.tombstone ? '\x02' : '\x01');
  PutU64(out, static_cast<uint64_t>(record.create_revision));
  PutU64(out, static_cast<uint64_t>(record.version));
  PutU64(out, static_cast<uint64_t>(record.lease));
  PutU64(out, user_key.size());
  out.append(user_key);
  out.append(record.value);
  return out;
}

std::optional<std::string_view> RevValueKey(std::string_view data) {
  if (data.size() < kRevValueFixedBytes || (data[0] != '\x01' && data[0] != '\x02')) {
    return std::nullopt;
  }
  const uint64_t key_bytes = GetU64(data.substr(25));
  if (key_bytes > data.size() - kRevValueFixedBytes) return std::nullopt;
  return data.substr(kRevValueFixedBytes, key_bytes);
}

std::optional<RevValue> DecodeRevValue(std::string_view data) {
  std::optional<std::string_view> key = RevValueKey(data);
  if (!key.has_value()) return std::nullopt;
  RevValue out;
  out.user_key = std::string(*key);
  out.record.tombstone = data[0] == '\x02';
  out.record.create_revision = static_cast<int64_t>(GetU64(data.substr(1)));
  out.record.version = static_cast<int64_t>(GetU64(data.substr(9)));
  out.record.lease = static_cast<int64_t>(GetU64(data.substr(17)));
  out.record.value = std::string(data.substr(kRevValueFixedBytes + key->size()));
  return out;
}

std::string EncodeLeaseId(int64_t id) {
  std::string out;
  PutU64(out, static_cast<uint64_t>(id) ^ (uint64_t{1} << 63));
  return out;
}

int64_t DecodeLeaseId(std::string_view data) {
  return static_cast<int64_t>(GetU64(data) ^ (uint64_t{1} << 63));
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

std::string EncodeLeaseRow(const LeaseRow& row) {
  std::string out;
  PutU64(out, static_cast<uint64_t>(row.ttl_s));
  PutU64(out, static_cast<uint64_t>(row.remaining_ttl_s));
  return out;
}

std::optional<LeaseRow> DecodeLeaseRow(std::string_view data) {
  if (data.size() != 16) return std::nullopt;
  return LeaseRow{static_cast<int64_t>(GetU64(data)), static_cast<int64_t>(GetU64(data.substr(8)))};
}

}  // namespace synod::kv::codec
