#include "kv/key_codec.h"

#include "base/assert.h"

namespace synod::kv::codec {

namespace {

constexpr char kEscape = '\x00';
constexpr char kEscapedZero = '\xff';
constexpr char kTerminator = '\x01';
constexpr char kPastTerminator = '\x02';
constexpr size_t kRevBytes = 16;

void AppendEscaped(std::string& out, std::string_view user_key) {
  for (char c : user_key) {
    out.push_back(c);
    if (c == kEscape) out.push_back(kEscapedZero);
  }
}

void PutRev(std::string& out, Rev rev, bool inverted) {
  SYNOD_ASSERT(rev.main >= 0);
  SYNOD_ASSERT(rev.sub >= 0);
  const uint64_t main = static_cast<uint64_t>(rev.main);
  const uint64_t sub = static_cast<uint64_t>(rev.sub);
  PutU64(out, inverted ? ~main : main);
  PutU64(out, inverted ? ~sub : sub);
}

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

std::string KeyPrefix(std::string_view user_key) {
  std::string out;
  out.reserve(user_key.size() + 2 + kRevBytes);
  AppendEscaped(out, user_key);
  out.push_back(kEscape);
  out.push_back(kTerminator);
  return out;
}

std::string KeyPrefixEnd(std::string_view user_key) {
  std::string out = KeyPrefix(user_key);
  out.back() = kPastTerminator;
  return out;
}

std::string EncodeKeyRow(std::string_view user_key, Rev rev) {
  std::string out = KeyPrefix(user_key);
  PutRev(out, rev, /*inverted=*/true);
  return out;
}

std::string SeekAtOrBelow(std::string_view user_key, int64_t main) {
  // The row (main, INT64_MAX) is the first of `main` in inverted order, so everything at or
  // after it has a main revision <= `main`.
  return EncodeKeyRow(user_key, Rev{main, INT64_MAX});
}

std::optional<KeyRow> DecodeKeyRow(std::string_view row) {
  if (row.size() < 2 + kRevBytes) return std::nullopt;
  KeyRow out;
  const std::string_view body = row.substr(0, row.size() - kRevBytes);
  size_t i = 0;
  while (true) {
    if (i >= body.size()) return std::nullopt;
    const char c = body[i];
    if (c != kEscape) {
      out.user_key.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= body.size()) return std::nullopt;
    if (body[i + 1] == kEscapedZero) {
      out.user_key.push_back(kEscape);
      i += 2;
      continue;
    }
    if (body[i + 1] == kTerminator && i + 2 == body.size()) break;
    return std::nullopt;
  }
  const std::string_view rev = row.substr(row.size() - kRevBytes);
  const uint64_t main = ~GetU64(rev);
  const uint64_t sub = ~GetU64(rev.substr(8));
  if (main > INT64_MAX || sub > INT64_MAX) return std::nullopt;
  out.rev = Rev{static_cast<int64_t>(main), static_cast<int64_t>(sub)};
  return out;
}

std::string EncodeRevRow(Rev rev) {
  std::string out;
  PutRev(out, rev, /*inverted=*/false);
  return out;
}

std::optional<Rev> DecodeRevRow(std::string_view row) {
  if (row.size() != kRevBytes) return std::nullopt;
  const uint64_t main = GetU64(row);
  const uint64_t sub = GetU64(row.substr(8));
  if (main > INT64_MAX || sub > INT64_MAX) return std::nullopt;
  return Rev{static_cast<int64_t>(main), static_cast<int64_t>(sub)};
}

// Record: kind u8 (1 put, 2 tombstone) | create_revision | version | lease (8 BE each) | value.
std::string EncodeRecord(const Record& record) {
  std::string out;
  out.reserve(25 + record.value.size());
  out.push_back(record.tombstone ? '\x02' : '\x01');
  PutU64(out, static_cast<uint64_t>(record.create_revision));
  PutU64(out, static_cast<uint64_t>(record.version));
  PutU64(out, static_cast<uint64_t>(record.lease));
  out.append(record.value);
  return out;
}

std::optional<Record> DecodeRecord(std::string_view data) {
  if (data.size() < 25 || (data[0] != '\x01' && data[0] != '\x02')) return std::nullopt;
  Record record;
  record.tombstone = data[0] == '\x02';
  record.create_revision = static_cast<int64_t>(GetU64(data.substr(1)));
  record.version = static_cast<int64_t>(GetU64(data.substr(9)));
  record.lease = static_cast<int64_t>(GetU64(data.substr(17)));
  record.value = std::string(data.substr(25));
  return record;
}

std::optional<bool> RecordIsTombstone(std::string_view data) {
  if (data.size() < 25 || (data[0] != '\x01' && data[0] != '\x02')) return std::nullopt;
  return data[0] == '\x02';
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
