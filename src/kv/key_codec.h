#pragma once

// How the MVCC keyspace is laid out in the backend's tables (docs/kv.md has the picture).
//
// Table "kv.keys": one row per revision of a user key,
//   row key   = escape(user_key) 0x00 0x01 | ~main (8 bytes BE) | ~sub (8 bytes BE)
//   row value = Record (below)
// escape() writes 0x00 as 0x00 0xFF and every other byte as itself, and 0x00 0x01 terminates,
// so rows sort by user key in bytewise order (a key sorts before its extensions: "a" < "a\0"),
// and within one key by revision, newest first (the inverted revision). Hence "the value of k at
// revision R" is one Seek to (k, R) and "the next key" is one Seek past (k, 0x00 0x02).
//
// Table "kv.revs": main (8 BE) | sub (8 BE) -> user key: the history in revision order, for
// watch replay (EventsSince) and compaction.
//
// Table "kv.leases": lease id -> granted TTL | checkpointed remaining TTL (LeaseRow).
// Table "kv.lease_keys": lease id | user key -> "": the keys attached to a lease.
// Table "kv.meta": the store's counters (current and compacted revision) and raised alarms.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/backend.h"

namespace synod::kv::codec {

// The store's tables, in the TableId order given to storage::Backend::Open.
inline constexpr storage::TableId kKeys{0};
inline constexpr storage::TableId kRevs{1};
inline constexpr storage::TableId kLeases{2};
inline constexpr storage::TableId kLeaseKeys{3};
inline constexpr storage::TableId kMeta{4};
inline std::vector<std::string> Tables() {
  return {"kv.keys", "kv.revs", "kv.leases", "kv.lease_keys", "kv.meta"};
}
// Rows of kv.meta: revisions are 8 bytes BE; the alarms an etcdserverpb::AlarmResponse.
inline constexpr char kCurrentRevKey[] = "current_revision";
inline constexpr char kCompactRevKey[] = "compact_revision";
inline constexpr char kAlarmsKey[] = "alarms";

// A revision of one change: `main` is the store revision of the write transaction, `sub` the
// change's position inside it (etcd's revision{main, sub}).
struct Rev {
  int64_t main = 0;
  int64_t sub = 0;
  auto operator<=>(const Rev&) const = default;
};

void PutU64(std::string& out, uint64_t v);
uint64_t GetU64(std::string_view in);  // Precondition: in.size() >= 8.

// All rows of `user_key` begin with this.
std::string KeyPrefix(std::string_view user_key);
// The smallest row key greater than every row of `user_key`: Seek there to skip to the next key.
std::string KeyPrefixEnd(std::string_view user_key);
// The row of `user_key` at `rev`. EncodeKeyRow(k, {R, INT64_MAX})... see SeekAtOrBelow.
std::string EncodeKeyRow(std::string_view user_key, Rev rev);
// Seek to this to land on the newest row of `user_key` with main <= `main` (if any).
std::string SeekAtOrBelow(std::string_view user_key, int64_t main);
struct KeyRow {
  std::string user_key;
  Rev rev;
};
// nullopt when `row` is not a well-formed row key (corruption).
std::optional<KeyRow> DecodeKeyRow(std::string_view row);

std::string EncodeRevRow(Rev rev);
std::optional<Rev> DecodeRevRow(std::string_view row);

// The value of a kv.keys row.
struct Record {
  bool tombstone = false;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string value;
};
std::string EncodeRecord(const Record& record);
std::optional<Record> DecodeRecord(std::string_view data);
// Only the tombstone flag, without copying the value.
std::optional<bool> RecordIsTombstone(std::string_view data);

// Lease ids are int64; flipping the sign bit makes their big-endian bytes sort like the numbers.
std::string EncodeLeaseId(int64_t id);
int64_t DecodeLeaseId(std::string_view data);  // Precondition: data.size() >= 8.

// The value of a kv.leases row.
struct LeaseRow {
  int64_t ttl_s = 0;
  int64_t remaining_ttl_s = 0;
};
std::string EncodeLeaseRow(const LeaseRow& row);
std::optional<LeaseRow> DecodeLeaseRow(std::string_view data);

// The smallest byte string greater than every string that has `prefix` as a prefix; "" when
// there is none (prefix is all 0xFF), meaning "no upper bound".
std::string PrefixEnd(std::string_view prefix);

}  // namespace synod::kv::codec
