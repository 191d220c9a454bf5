#pragma once

// How the MVCC keyspace is laid out in the backend's tables (docs/kv.md has the picture).
//
// Table "kv.revs": the history, one row per change (a put or a delete) of a user key, keyed by
// its revision, as etcd's "key" bucket (mvcc/kvstore.go):
//   row key   = main (8 bytes BE) | sub (8 bytes BE)
//   row value = RevValue (below): the user key and its Record
// Rows are written in revision order, so every put appends at the end of the table, and watch
// replay (EventsSince) reads the history in order. Which revision of a key a read wants comes
// from the in-memory key index (kv/key_index.h), which Store::Open rebuilds from this table.
//
// Table "kv.leases": lease id -> granted TTL | checkpointed remaining TTL (LeaseRow).
// Table "kv.lease_keys": lease id | user key -> "": the keys attached to a lease.
// Table "kv.meta": the store's counters (current and compacted revision) and raised alarms.
//
// Stores written by earlier builds (up to 3ddedaf) kept a second table, "kv.keys" (a row per user
// key and revision, ordered by key). The backend refuses to open a database with that table
// ("unknown table"); docs/kv.md says how to carry such data over.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/backend.h"

namespace synod::kv::codec {

// The store's tables, in the TableId order given to storage::Backend::Open.
inline constexpr storage::TableId kRevs{0};
inline constexpr storage::TableId kLeases{1};
inline constexpr storage::TableId kLeaseKeys{2};
inline constexpr storage::TableId kMeta{3};
inline std::vector<std::string> Tables() {
  return {"kv.revs", "kv.leases", "kv.lease_keys", "kv.meta"};
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

std::string EncodeRevRow(Rev rev);
std::optional<Rev> DecodeRevRow(std::string_view row);

// One change of a key: a put, or a delete (tombstone; the other fields are then zero).
struct Record {
  bool tombstone = false;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string value;
};
// The value of a kv.revs row: the changed user key and its record.
struct RevValue {
  std::string user_key;
  Record record;
};
std::string EncodeRevValue(std::string_view user_key, const Record& record);
// nullopt when `data` is not a well-formed row value (corruption).
std::optional<RevValue> DecodeRevValue(std::string_view data);
// Only the user key, without copying the value (watch replay filters by key first).
std::optional<std::string_view> RevValueKey(std::string_view data);

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
