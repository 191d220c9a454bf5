#include "kv/store.h"

#include <algorithm>
#include <set>

#include "absl/strings/cord.h"
#include "base/assert.h"
#include "kv/errors.h"
#include "kv/key_codec.h"
#include "kv/key_index.h"
#include "kv/key_range.h"
#include "storage/crc32c.h"

namespace synod::kv {

namespace {

using codec::Record;
using codec::Rev;
using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using mvccpb::KeyValue;
using storage::Reader;
using storage::TableId;

using codec::DecodeLeaseRow;
using codec::EncodeLeaseRow;
using codec::kAlarmsKey;
using codec::kCompactRevKey;
using codec::kCurrentRevKey;
using codec::kLeaseKeys;
using codec::kLeases;
using codec::kMeta;
using codec::kRevs;
using codec::LeaseRow;
using codec::Tables;

// A storage failure while applying is not a command's error: it fails the whole Apply. The
// payload marks such errors on their way up through the command code.
constexpr char kStorageErrorPayload[] = "synod.kv.storage-error";
Status StorageError(Status status) {
  SYNOD_ASSERT(!status.ok());
  status.SetPayload(kStorageErrorPayload, absl::Cord("1"));
  return status;
}
bool IsStorageError(const Status& status) {
  return status.GetPayload(kStorageErrorPayload).has_value();
}
Status CorruptRow(std::string_view table, std::string_view what) {
  return StorageError(
      absl::DataLossError(fmt::format("kv store: corrupt row in {}: {}", table, what)));
}

#define KV_RETURN_IF_ERROR(expr)       \
  do {                                 \
    Status status_ = (expr);           \
    if (!status_.ok()) return status_; \
  } while (false)

#define KV_CONCAT_INNER(a, b) a##b
#define KV_CONCAT(a, b) KV_CONCAT_INNER(a, b)
#define KV_ASSIGN_OR_RETURN(lhs, expr)            \
  auto KV_CONCAT(result_, __LINE__) = (expr);     \
  if (!KV_CONCAT(result_, __LINE__).ok()) {       \
    return KV_CONCAT(result_, __LINE__).status(); \
  }                                               \
  lhs = std::move(*KV_CONCAT(result_, __LINE__))

Result<std::optional<std::string>> Get(const Reader& reader, TableId table, std::string_view key) {
  Result<std::optional<std::string>> value = reader.Get(table, key);
  if (!value.ok()) return StorageError(value.status());
  return value;
}

Status IteratorStatus(const storage::Iterator& it) {
  Status status = it.status();
  return status.ok() ? status : StorageError(status);
}

KeyValue MakeKeyValue(std::string_view key, Rev rev, const Record& record) {
  KeyValue kv;
  kv.set_key(std::string(key));
  kv.set_create_revision(record.create_revision);
  kv.set_mod_revision(rev.main);
  kv.set_version(record.version);
  kv.set_value(record.value);
  kv.set_lease(record.lease);
  return kv;
}

// The stored change of `key` at `rev`, which the key index says is there.
Result<Record> ReadChange(const Reader& reader, std::string_view key, Rev rev) {
  KV_ASSIGN_OR_RETURN(std::optional<std::string> data,
                      Get(reader, kRevs, codec::EncodeRevRow(rev)));
  if (!data.has_value()) return CorruptRow("kv.revs", "no row at the indexed revision");
  std::optional<codec::RevValue> row = codec::DecodeRevValue(*data);
  if (!row.has_value()) return CorruptRow("kv.revs", "row value");
  if (row->user_key != key) {
    return CorruptRow("kv.revs", fmt::format("row {}/{} holds {:?}, the key index says {:?}",
                                             rev.main, rev.sub, row->user_key, key));
  }
  return std::move(row->record);
}

// Calls visit(kv) for every key of `range` alive at at_rev, in key order, as stored; stops when
// visit returns false.
template <typename Visit>
Status VisitLiveKeys(const Reader& reader, const KeyIndex& index, const KeyRange& range,
                     int64_t at_rev, Visit visit) {
  Status status;
  index.VisitLive(range, at_rev, [&](const std::string& key, Rev rev) {
    Result<Record> record = ReadChange(reader, key, rev);
    if (!record.ok()) {
      status = record.status();
      return false;
    }
    return visit(MakeKeyValue(key, rev, *record));
  });
  return status;
}

// Visits every stored change in revision order: visit(rev, key, record).
template <typename Visit>
Status VisitHistory(const Reader& reader, Visit visit) {
  std::unique_ptr<storage::Iterator> it = reader.NewIterator(kRevs);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<Rev> rev = codec::DecodeRevRow(it->key());
    if (!rev.has_value()) return CorruptRow("kv.revs", "row key");
    std::optional<codec::RevValue> row = codec::DecodeRevValue(it->value());
    if (!row.has_value()) return CorruptRow("kv.revs", "row value");
    visit(*rev, row->user_key, row->record);
  }
  return IteratorStatus(*it);
}

// etcd's Range (etcdserver/apply.go applierV3backend.Range over mvcc rangeKeys), reading at
// `cur_rev` as the current revision; `index` is the key index of that revision's state.
Result<etcdserverpb::RangeResponse> RangeAt(const Reader& reader, const KeyIndex& index,
                                            const RangeRequest& request, int64_t cur_rev,
                                            int64_t compact_rev) {
  int64_t rev = request.revision();
  if (rev > cur_rev) return FutureRevisionError();
  if (rev <= 0) rev = cur_rev;
  if (rev < compact_rev) return CompactedError();

  // Sorting and the revision filters need every key; otherwise one more than the limit tells
  // whether there are more.
  const bool fetch_all = request.sort_order() != RangeRequest::NONE ||
                         request.min_mod_revision() != 0 || request.max_mod_revision() != 0 ||
                         request.min_create_revision() != 0 || request.max_create_revision() != 0;
  const size_t fetch_max =
      request.limit() > 0 && !fetch_all ? static_cast<size_t>(request.limit()) + 1 : SIZE_MAX;
  int64_t count = 0;
  std::vector<KeyValue> kvs;
  Status read_status;
  // `count` is every key in the range, before the limit and before the revision filters, as in
  // etcd; only the keys returned are read from the store.
  index.VisitLive(KeyRange(request.key(), request.range_end()), rev,
                  [&](const std::string& key, Rev at) {
                    ++count;
                    if (request.count_only() || kvs.size() >= fetch_max) return true;
                    Result<Record> record = ReadChange(reader, key, at);
                    if (!record.ok()) {
                      read_status = record.status();
                      return false;
                    }
                    kvs.push_back(MakeKeyValue(key, at, *record));
                    return true;
                  });
  KV_RETURN_IF_ERROR(read_status);

  const auto prune = [&](auto drop) {
    kvs.erase(std::remove_if(kvs.begin(), kvs.end(), drop), kvs.end());
  };
  if (request.max_mod_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.mod_revision() > request.max_mod_revision(); });
  }
  if (request.min_mod_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.mod_revision() < request.min_mod_revision(); });
  }
  if (request.max_create_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.create_revision() > request.max_create_revision(); });
  }
  if (request.min_create_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.create_revision() < request.min_create_revision(); });
  }

  RangeRequest::SortOrder order = request.sort_order();
  // etcd: results come in ascending key order anyway, so a target other than KEY without an
  // order means ascending.
  if (request.sort_target() != RangeRequest::KEY && order == RangeRequest::NONE) {
    order = RangeRequest::ASCEND;
  }
  if (order != RangeRequest::NONE) {
    const auto less = [&](const KeyValue& a, const KeyValue& b) {
      switch (request.sort_target()) {
        case RangeRequest::KEY:
          return a.key() < b.key();
        case RangeRequest::VERSION:
          return a.version() < b.version();
        case RangeRequest::CREATE:
          return a.create_revision() < b.create_revision();
        case RangeRequest::MOD:
          return a.mod_revision() < b.mod_revision();
        case RangeRequest::VALUE:
          return a.value() < b.value();
        default:
          return a.key() < b.key();
      }
    };
    // etcd uses an unstable sort; a stable one keeps ties in key order, so the answer is the
    // same on every replica and every run.
    if (order == RangeRequest::DESCEND) {
      std::stable_sort(kvs.begin(), kvs.end(),
                       [&](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    } else {
      std::stable_sort(kvs.begin(), kvs.end(), less);
    }
  }

  etcdserverpb::RangeResponse response;
  if (request.limit() > 0 && kvs.size() > static_cast<size_t>(request.limit())) {
    kvs.resize(static_cast<size_t>(request.limit()));
    response.set_more(true);
  }
  response.mutable_header()->set_revision(cur_rev);
  response.set_count(count);
  for (KeyValue& kv : kvs) {
    if (request.keys_only()) kv.clear_value();
    *response.add_kvs() = std::move(kv);
  }
  return response;
}

// --- Validation (etcd's v3rpc/key.go) ---------------------------------------------------------

Status CheckPutRequest(const etcdserverpb::PutRequest& r) {
  if (r.key().empty()) return EmptyKeyError();
  if (r.ignore_value() && !r.value().empty()) return ValueProvidedError();
  if (r.ignore_lease() && r.lease() != 0) return LeaseProvidedError();
  return Status();
}

Status CheckTxnRequest(const TxnRequest& r, int64_t ops_max);

Status CheckRequestOp(const RequestOp& op, int64_t ops_max) {
  switch (op.request_case()) {
    case RequestOp::kRequestRange:
      return op.request_range().key().empty() ? EmptyKeyError() : Status();
    case RequestOp::kRequestPut:
      return CheckPutRequest(op.request_put());
    case RequestOp::kRequestDeleteRange:
      return op.request_delete_range().key().empty() ? EmptyKeyError() : Status();
    case RequestOp::kRequestTxn:
      return CheckTxnRequest(op.request_txn(), ops_max);
    default:
      return KeyNotFoundError();  // etcd's answer to an empty operation.
  }
}

// A delete interval, as etcd's interval tree sees it: a point for an empty range_end, else
// [key, range_end) with range_end taken literally. (etcd's checkIntervals does not give "\0" its
// "to the end" meaning, so a Txn that deletes "from k to the end" and puts k passes its check;
// we accept the same Txns. Applying them is well defined: operations run in order.)
struct Interval {
  std::string begin;
  std::string end;
  bool point = false;
  bool Contains(const std::string& k) const { return point ? k == begin : (begin <= k && k < end); }
};

struct Intervals {
  std::set<std::string> puts;
  std::vector<Interval> dels;
  bool DelsContain(const std::string& k) const {
    return std::any_of(dels.begin(), dels.end(), [&](const Interval& i) { return i.Contains(k); });
  }
};

// etcd's checkIntervals: no key may be put twice, or put and deleted, within one branch of a
// Txn (including its nested Txns), except that the two branches of one nested Txn may put the
// same key since only one of them runs.
Status CheckIntervals(const google::protobuf::RepeatedPtrField<RequestOp>& ops, Intervals& out) {
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestDeleteRange) continue;
    const auto& d = op.request_delete_range();
    out.dels.push_back(Interval{d.key(), d.range_end(), d.range_end().empty()});
  }
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestTxn) continue;
    Intervals then_branch, else_branch;
    KV_RETURN_IF_ERROR(CheckIntervals(op.request_txn().success(), then_branch));
    KV_RETURN_IF_ERROR(CheckIntervals(op.request_txn().failure(), else_branch));
    for (const std::string& k : then_branch.puts) {
      if (out.puts.contains(k) || out.DelsContain(k)) return DuplicateKeyError();
      out.puts.insert(k);
    }
    for (const std::string& k : else_branch.puts) {
      if (out.puts.contains(k) && !then_branch.puts.contains(k)) return DuplicateKeyError();
      if (out.DelsContain(k)) return DuplicateKeyError();
      out.puts.insert(k);
    }
    out.dels.insert(out.dels.end(), then_branch.dels.begin(), then_branch.dels.end());
    out.dels.insert(out.dels.end(), else_branch.dels.begin(), else_branch.dels.end());
  }
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestPut) continue;
    const std::string& k = op.request_put().key();
    if (out.puts.contains(k) || out.DelsContain(k)) return DuplicateKeyError();
    out.puts.insert(k);
  }
  return Status();
}

// etcd's checkTxnRequest: the widest of compare/success/failure is at most ops_max, and a nested
// Txn gets what is left of the budget (so nesting depth is bounded by kTxnOpsMax too).
Status CheckTxnRequest(const TxnRequest& r, int64_t ops_max) {
  const int64_t opc = std::max({r.compare_size(), r.success_size(), r.failure_size()});
  if (opc > ops_max) return TooManyOpsError();
  for (const Compare& c : r.compare()) {
    if (c.key().empty()) return EmptyKeyError();
  }
  for (const RequestOp& op : r.success()) KV_RETURN_IF_ERROR(CheckRequestOp(op, ops_max - opc));
  for (const RequestOp& op : r.failure()) KV_RETURN_IF_ERROR(CheckRequestOp(op, ops_max - opc));
  Intervals success, failure;
  KV_RETURN_IF_ERROR(CheckIntervals(r.success(), success));
  KV_RETURN_IF_ERROR(CheckIntervals(r.failure(), failure));
  return Status();
}

// --- Txn compares (etcd's applyCompare / compareKV) --------------------------------------------

bool CompareKeyValue(const Compare& c, const KeyValue& kv) {
  int result = 0;
  const auto cmp = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
  // A target whose union field is not set compares against zero / the empty value.
  switch (c.target()) {
    case Compare::VALUE: {
      const std::string empty;
      const std::string& v = c.target_union_case() == Compare::kValue ? c.value() : empty;
      result = kv.value().compare(v);
      result = result < 0 ? -1 : (result > 0 ? 1 : 0);
      break;
    }
    case Compare::CREATE:
      result = cmp(kv.create_revision(),
                   c.target_union_case() == Compare::kCreateRevision ? c.create_revision() : 0);
      break;
    case Compare::MOD:
      result = cmp(kv.mod_revision(),
                   c.target_union_case() == Compare::kModRevision ? c.mod_revision() : 0);
      break;
    case Compare::VERSION:
      result = cmp(kv.version(), c.target_union_case() == Compare::kVersion ? c.version() : 0);
      break;
    case Compare::LEASE:
      result = cmp(kv.lease(), c.target_union_case() == Compare::kLease ? c.lease() : 0);
      break;
    default:
      break;
  }
  switch (c.result()) {
    case Compare::EQUAL:
      return result == 0;
    case Compare::NOT_EQUAL:
      return result != 0;
    case Compare::GREATER:
      return result > 0;
    case Compare::LESS:
      return result < 0;
    default:
      return true;  // etcd: an unknown result compares true.
  }
}

// Every key of the compare's range must satisfy it. An empty range compares as one absent key
// (all zero), except for VALUE, which then fails: "nil == empty string in grpc; no way to
// represent missing value" (etcd).
// `newest` is the index of the reader's state, whose revision is `rev`.
Result<bool> ApplyCompare(const Reader& reader, const KeyIndex& newest, int64_t rev,
                          const Compare& c) {
  bool any = false;
  bool all = true;
  KV_RETURN_IF_ERROR(
      VisitLiveKeys(reader, newest, KeyRange(c.key(), c.range_end()), rev, [&](const KeyValue& kv) {
        any = true;
        all = CompareKeyValue(c, kv);
        return all;
      }));
  if (!any) return c.target() == Compare::VALUE ? false : CompareKeyValue(c, KeyValue());
  return all;
}

// etcd's compareToPath: the outcome of this Txn's compares and of every nested Txn on the chosen
// branches, in pre-order, all evaluated against the state before the Txn writes anything.
Status CompareToPath(const Reader& reader, const KeyIndex& newest, int64_t rev,
                     const TxnRequest& txn, std::vector<bool>& path) {
  bool succeeded = true;
  for (const Compare& c : txn.compare()) {
    KV_ASSIGN_OR_RETURN(bool ok, ApplyCompare(reader, newest, rev, c));
    if (!ok) {
      succeeded = false;
      break;
    }
  }
  path.push_back(succeeded);
  for (const RequestOp& op : succeeded ? txn.success() : txn.failure()) {
    if (op.request_case() == RequestOp::kRequestTxn) {
      KV_RETURN_IF_ERROR(CompareToPath(reader, newest, rev, op.request_txn(), path));
    }
  }
  return Status();
}

bool IsTxnReadOnly(const TxnRequest& txn) {
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const RequestOp& op : *ops) {
      if (op.request_case() == RequestOp::kRequestPut ||
          op.request_case() == RequestOp::kRequestDeleteRange) {
        return false;
      }
      if (op.request_case() == RequestOp::kRequestTxn && !IsTxnReadOnly(op.request_txn())) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

Status ValidateRequest(const synodpb::Request& request) {
  switch (request.command_case()) {
    case synodpb::Request::kPut:
      return CheckPutRequest(request.put());
    case synodpb::Request::kDeleteRange:
      return request.delete_range().key().empty() ? EmptyKeyError() : Status();
    case synodpb::Request::kTxn:
      return CheckTxnRequest(request.txn(), static_cast<int64_t>(Store::kTxnOpsMax));
    case synodpb::Request::kLeaseCheckpoint:
      if (static_cast<size_t>(request.lease_checkpoint().checkpoints_size()) >
          Store::kLeaseCheckpointsMax) {
        return absl::InvalidArgumentError(fmt::format(
            "synod: {} lease checkpoints in one request, at most {}",
            request.lease_checkpoint().checkpoints_size(), Store::kLeaseCheckpointsMax));
      }
      return Status();
    case synodpb::Request::kCompaction:
    case synodpb::Request::kLeaseGrant:
    case synodpb::Request::kLeaseRevoke:
    case synodpb::Request::kLeaseExpire:
      return Status();
    case synodpb::Request::kAlarm:
      if (!etcdserverpb::AlarmRequest_AlarmAction_IsValid(request.alarm().action()) ||
          !etcdserverpb::AlarmType_IsValid(request.alarm().alarm())) {
        return absl::InvalidArgumentError("etcdserver: invalid alarm request");
      }
      return Status();
    case synodpb::Request::COMMAND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("synod: request without a command");
}

// --- Apply ----------------------------------------------------------------------------------

namespace internal {

// A change to the lessor, delivered once the batch that made it is committed.
struct LessorOp {
  enum class Kind { kGranted, kRevoked, kCheckpointed } kind;
  int64_t id = 0;
  int64_t value = 0;  // TTL for kGranted, remaining TTL for kCheckpointed.
};

// What one Apply call changes before its commit.
struct ApplyState {
  bool events_with_prev_kv = true;  // Apply's argument.
  int64_t current_rev = 0;
  int64_t compact_rev = 0;
  std::vector<LessorOp> lessor_ops;
  std::vector<etcdserverpb::AlarmMember> alarms;
  bool alarms_changed = false;

  bool NoSpace() const {
    return std::any_of(alarms.begin(), alarms.end(), [](const etcdserverpb::AlarmMember& a) {
      return a.alarm() == etcdserverpb::NOSPACE;
    });
  }
};

// One etcd write transaction (mvcc storeTxnWrite): every change gets main revision begin+1 and
// the next sub-revision; the store revision moves to begin+1 when it ends, if anything changed.
struct WriteTxn {
  storage::WriteBatch& batch;
  KeyIndex& index;  // Changed with the batch.
  const bool events_with_prev_kv;
  const int64_t begin_rev;
  int64_t sub = 0;  // Changes so far.
  std::vector<mvccpb::Event> events;

  int64_t main() const { return begin_rev + 1; }
  // What reads inside the transaction see: its own changes once there are any (etcd's
  // storeTxnWrite.Range).
  int64_t read_rev() const { return sub > 0 ? begin_rev + 1 : begin_rev; }
  int64_t end_rev() const { return read_rev(); }

  void Put(const std::string& key, const std::string& value, int64_t lease,
           const std::optional<KeyValue>& prev) {
    const Rev rev{main(), sub++};
    Record record;
    record.create_revision = prev.has_value() ? prev->create_revision() : rev.main;
    record.version = prev.has_value() ? prev->version() + 1 : 1;
    record.lease = lease;
    record.value = value;
    SYNOD_ASSERT(record.version >= 1);
    batch.Put(kRevs, codec::EncodeRevRow(rev), codec::EncodeRevValue(key, record));
    index.Put(key, {rev, record.create_revision, record.version, lease});
    if (prev.has_value() && prev->lease() != 0) {
      batch.Delete(kLeaseKeys, codec::EncodeLeaseId(prev->lease()) + key);
    }
    if (lease != 0) batch.Put(kLeaseKeys, codec::EncodeLeaseId(lease) + key, "");
    mvccpb::Event& event = events.emplace_back();
    event.set_type(mvccpb::Event::PUT);
    *event.mutable_kv() = MakeKeyValue(key, rev, record);
    if (prev.has_value() && events_with_prev_kv) *event.mutable_prev_kv() = *prev;
  }

  void Delete(const KeyValue& prev) {
    const Rev rev{main(), sub++};
    Record tombstone;
    tombstone.tombstone = true;
    batch.Put(kRevs, codec::EncodeRevRow(rev), codec::EncodeRevValue(prev.key(), tombstone));
    index.Delete(prev.key(), rev);
    if (prev.lease() != 0)
      batch.Delete(kLeaseKeys, codec::EncodeLeaseId(prev.lease()) + prev.key());
    // etcd's delete event: the key and the deleting revision only.
    mvccpb::Event& event = events.emplace_back();
    event.set_type(mvccpb::Event::DELETE);
    event.mutable_kv()->set_key(prev.key());
    event.mutable_kv()->set_mod_revision(rev.main);
    if (events_with_prev_kv) *event.mutable_prev_kv() = prev;
  }
};

}  // namespace internal

namespace {

using internal::ApplyState;
using internal::LessorOp;
using internal::WriteTxn;

// The key in the reader's newest state, whose index is `newest`. Its value is read (one point
// read) only `with_value`; without, the index alone answers.
Result<std::optional<KeyValue>> NewestKeyValue(const Reader& reader, const KeyIndex& newest,
                                               std::string_view key, bool with_value) {
  const KeyIndex::Newest* row = newest.Find(key);
  if (row == nullptr) return std::optional<KeyValue>();
  Record record{false, row->create_revision, row->version, row->lease, ""};
  if (with_value) {
    KV_ASSIGN_OR_RETURN(record, ReadChange(reader, key, row->rev));
  }
  return std::optional<KeyValue>(MakeKeyValue(key, row->rev, record));
}

Result<bool> LeaseExists(const Reader& reader, int64_t id) {
  KV_ASSIGN_OR_RETURN(std::optional<std::string> row,
                      Get(reader, kLeases, codec::EncodeLeaseId(id)));
  return row.has_value();
}

// The keys attached to a lease, in key order.
Result<std::vector<std::string>> LeaseKeys(const Reader& reader, int64_t id) {
  const std::string prefix = codec::EncodeLeaseId(id);
  std::vector<std::string> keys;
  std::unique_ptr<storage::Iterator> it = reader.NewIterator(kLeaseKeys);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    keys.emplace_back(it->key().substr(prefix.size()));
  }
  KV_RETURN_IF_ERROR(IteratorStatus(*it));
  return keys;
}

// etcd's checkRequests: runs `check` on every non-Txn operation of the chosen branches.
template <typename Check>
Status CheckPath(const TxnRequest& txn, const std::vector<bool>& path, size_t& pos, Check check) {
  SYNOD_ASSERT(pos < path.size());
  const bool succeeded = path[pos++];
  for (const RequestOp& op : succeeded ? txn.success() : txn.failure()) {
    if (op.request_case() == RequestOp::kRequestTxn) {
      KV_RETURN_IF_ERROR(CheckPath(op.request_txn(), path, pos, check));
    } else {
      KV_RETURN_IF_ERROR(check(op));
    }
  }
  return Status();
}

}  // namespace

namespace {

// The operations, shared by top-level requests and Txn branches. Each reads through the batch,
// so it sees earlier changes of the same Apply call and of the same transaction.

// Put without the lease check (done before, by the caller): etcd's applierV3backend.Put.
Result<etcdserverpb::PutResponse> ExecPutImpl(storage::WriteBatch& batch, WriteTxn& txn,
                                              const etcdserverpb::PutRequest& r) {
  etcdserverpb::PutResponse response;
  // The previous revision decides the new version and create revision, and serves
  // ignore_value, ignore_lease and prev_kv. Only those and watchers need its value.
  const bool value_needed = r.ignore_value() || r.prev_kv() || txn.events_with_prev_kv;
  KV_ASSIGN_OR_RETURN(std::optional<KeyValue> prev,
                      NewestKeyValue(batch, txn.index, r.key(), value_needed));
  if ((r.ignore_value() || r.ignore_lease()) && !prev.has_value()) return KeyNotFoundError();
  const std::string value = r.ignore_value() ? prev->value() : r.value();
  const int64_t lease = r.ignore_lease() ? prev->lease() : r.lease();
  if (r.prev_kv() && prev.has_value()) *response.mutable_prev_kv() = *prev;
  txn.Put(r.key(), value, lease, prev);
  response.mutable_header()->set_revision(txn.main());
  return response;
}

Result<etcdserverpb::DeleteRangeResponse> ExecDeleteRange(
    storage::WriteBatch& batch, WriteTxn& txn, const etcdserverpb::DeleteRangeRequest& r) {
  etcdserverpb::DeleteRangeResponse response;
  // The deleted keys are collected before they are deleted; their values only when the
  // response or a watcher wants them, since a delete of a large range would otherwise hold all
  // of its values at once (etcdctl check perf deletes its 270,000 1 KiB values so).
  const bool values_needed = r.prev_kv() || txn.events_with_prev_kv;
  std::vector<std::string> keys;
  txn.index.VisitLive(KeyRange(r.key(), r.range_end()), txn.read_rev(),
                      [&](const std::string& key, Rev) {
                        keys.push_back(key);
                        return true;
                      });
  std::vector<KeyValue> doomed;
  doomed.reserve(keys.size());
  for (const std::string& key : keys) {
    KV_ASSIGN_OR_RETURN(std::optional<KeyValue> kv,
                        NewestKeyValue(batch, txn.index, key, values_needed));
    SYNOD_ASSERT(kv.has_value());
    doomed.push_back(std::move(*kv));
  }
  for (const KeyValue& kv : doomed) {
    if (r.prev_kv()) *response.add_prev_kvs() = kv;
    txn.Delete(kv);
  }
  response.set_deleted(static_cast<int64_t>(doomed.size()));
  // etcd: the revision of the transaction if it changed anything so far, else the current one.
  response.mutable_header()->set_revision(txn.end_rev());
  return response;
}

// etcd's applyTxn: the chosen branch's operations in order; nested Txns follow `path`.
Status ExecTxnOps(storage::WriteBatch& batch, WriteTxn& txn, int64_t compact_rev,
                  const TxnRequest& r, const std::vector<bool>& path, size_t& pos,
                  etcdserverpb::TxnResponse& response) {
  SYNOD_ASSERT(pos < path.size());
  const bool succeeded = path[pos++];
  response.set_succeeded(succeeded);
  for (const RequestOp& op : succeeded ? r.success() : r.failure()) {
    etcdserverpb::ResponseOp* out = response.add_responses();
    switch (op.request_case()) {
      case RequestOp::kRequestRange: {
        Result<etcdserverpb::RangeResponse> range =
            RangeAt(batch, txn.index, op.request_range(), txn.read_rev(), compact_rev);
        if (!range.ok() && !IsStorageError(range.status())) {
          // The revision checks before execution rule this out (etcd panics here).
          SYNOD_ASSERT_MSG(false, "txn range failed after its checks: {}",
                           range.status().ToString());
        }
        if (!range.ok()) return range.status();
        *out->mutable_response_range() = std::move(*range);
        break;
      }
      case RequestOp::kRequestPut: {
        Result<etcdserverpb::PutResponse> put = ExecPutImpl(batch, txn, op.request_put());
        if (!put.ok()) return put.status();
        *out->mutable_response_put() = std::move(*put);
        break;
      }
      case RequestOp::kRequestDeleteRange: {
        Result<etcdserverpb::DeleteRangeResponse> del =
            ExecDeleteRange(batch, txn, op.request_delete_range());
        if (!del.ok()) return del.status();
        *out->mutable_response_delete_range() = std::move(*del);
        break;
      }
      case RequestOp::kRequestTxn: {
        etcdserverpb::TxnResponse* nested = out->mutable_response_txn();
        // etcd gives a nested response an empty header.
        nested->mutable_header();
        KV_RETURN_IF_ERROR(
            ExecTxnOps(batch, txn, compact_rev, op.request_txn(), path, pos, *nested));
        break;
      }
      default:
        SYNOD_ASSERT_MSG(false, "empty txn operation passed validation");
        break;
    }
  }
  return Status();
}

// Revokes a lease: deletes its keys at one revision (in key order, so every replica makes the
// same sub-revisions; etcd sorts them for the same reason) and the lease itself.
Status RevokeLease(storage::WriteBatch& batch, KeyIndex& index, ApplyState& state, int64_t id,
                   std::vector<mvccpb::Event>& events) {
  KV_ASSIGN_OR_RETURN(std::vector<std::string> keys, LeaseKeys(batch, id));
  WriteTxn txn{batch, index, state.events_with_prev_kv, state.current_rev};
  for (const std::string& key : keys) {
    KV_ASSIGN_OR_RETURN(std::optional<KeyValue> kv,
                        NewestKeyValue(batch, index, key, txn.events_with_prev_kv));
    SYNOD_ASSERT_MSG(kv.has_value(), "lease {} lists key {:?} which does not exist", id, key);
    SYNOD_ASSERT_MSG(kv->lease() == id, "lease {} lists key {:?} attached to {}", id, key,
                     kv->lease());
    txn.Delete(*kv);
  }
  state.current_rev = txn.end_rev();
  batch.Delete(kLeases, codec::EncodeLeaseId(id));
  events = std::move(txn.events);
  return Status();
}

// Compaction at `rev`: for every key, keep its newest row at or below rev unless it is a
// tombstone, and every row above rev (etcd's keyIndex.compact and scheduleCompaction). The key
// index knows which rows those are.
void Compact(storage::WriteBatch& batch, KeyIndex& index, int64_t rev) {
  for (Rev dropped : index.Compact(rev)) batch.Delete(kRevs, codec::EncodeRevRow(dropped));
}

}  // namespace

Status Store::ApplyRequest(storage::WriteBatch& batch, internal::ApplyState& state,
                           const synodpb::Request& request, CommandResult& result) {
  switch (request.command_case()) {
    case synodpb::Request::kPut: {
      const etcdserverpb::PutRequest& r = request.put();
      if (state.NoSpace()) return NoSpaceError();  // etcd's applierV3Capped.
      // etcd checks the lease before anything else (applierV3backend.Put).
      if (r.lease() != 0) {
        KV_ASSIGN_OR_RETURN(bool exists, LeaseExists(batch, r.lease()));
        if (!exists) return LeaseNotFoundError();
      }
      WriteTxn txn{batch, index_, state.events_with_prev_kv, state.current_rev};
      KV_ASSIGN_OR_RETURN(etcdserverpb::PutResponse response, ExecPutImpl(batch, txn, r));
      state.current_rev = txn.end_rev();
      result.events = std::move(txn.events);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kDeleteRange: {
      WriteTxn txn{batch, index_, state.events_with_prev_kv, state.current_rev};
      KV_ASSIGN_OR_RETURN(etcdserverpb::DeleteRangeResponse response,
                          ExecDeleteRange(batch, txn, request.delete_range()));
      state.current_rev = txn.end_rev();
      result.events = std::move(txn.events);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kTxn: {
      const TxnRequest& r = request.txn();
      // etcd's capped applier lets only read-only transactions through.
      if (state.NoSpace() && !IsTxnReadOnly(r)) return NoSpaceError();
      // 1. Every compare on the chosen path, against the state before the Txn.
      std::vector<bool> path;
      KV_RETURN_IF_ERROR(CompareToPath(batch, index_, state.current_rev, r, path));
      // 2. etcd's checks of the chosen operations, also before any write, so that a Txn fails
      // as a whole or not at all.
      size_t pos = 0;
      if (!IsTxnReadOnly(r)) {
        KV_RETURN_IF_ERROR(CheckPath(r, path, pos, [&](const RequestOp& op) -> Status {
          if (op.request_case() != RequestOp::kRequestPut) return Status();
          const etcdserverpb::PutRequest& put = op.request_put();
          if ((put.ignore_value() || put.ignore_lease()) && index_.Find(put.key()) == nullptr) {
            return KeyNotFoundError();
          }
          if (put.lease() != 0) {
            KV_ASSIGN_OR_RETURN(bool exists, LeaseExists(batch, put.lease()));
            if (!exists) return LeaseNotFoundError();
          }
          return Status();
        }));
        SYNOD_ASSERT(pos == path.size());
      }
      pos = 0;
      KV_RETURN_IF_ERROR(CheckPath(r, path, pos, [&](const RequestOp& op) -> Status {
        if (op.request_case() != RequestOp::kRequestRange) return Status();
        const int64_t rev = op.request_range().revision();
        if (rev == 0) return Status();
        if (rev > state.current_rev) return FutureRevisionError();
        if (rev < state.compact_rev) return CompactedError();
        return Status();
      }));
      SYNOD_ASSERT(pos == path.size());
      // 3. The operations.
      WriteTxn txn{batch, index_, state.events_with_prev_kv, state.current_rev};
      etcdserverpb::TxnResponse response;
      pos = 0;
      KV_RETURN_IF_ERROR(ExecTxnOps(batch, txn, state.compact_rev, r, path, pos, response));
      SYNOD_ASSERT(pos == path.size());
      state.current_rev = txn.end_rev();
      response.mutable_header()->set_revision(state.current_rev);
      result.events = std::move(txn.events);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kCompaction: {
      const int64_t rev = request.compaction().revision();
      // etcd's store.updateCompactRev.
      if (rev <= state.compact_rev) return CompactedError();
      if (rev > state.current_rev) return FutureRevisionError();
      Compact(batch, index_, rev);
      state.compact_rev = rev;
      etcdserverpb::CompactionResponse response;
      response.mutable_header()->set_revision(state.current_rev);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kLeaseGrant: {
      const etcdserverpb::LeaseGrantRequest& r = request.lease_grant();
      // The proposer chose the id before the entry was logged (apply draws no random numbers).
      // etcd's lessor.Grant answers "not found" for the no-lease id 0.
      if (state.NoSpace()) return NoSpaceError();
      if (r.id() == 0) return LeaseNotFoundError();
      if (r.ttl() > kLeaseTtlMax_s) return LeaseTtlTooLargeError();
      KV_ASSIGN_OR_RETURN(bool exists, LeaseExists(batch, r.id()));
      if (exists) return LeaseExistsError();
      const int64_t ttl_s = std::max(r.ttl(), options_.lease_ttl_min_s);
      SYNOD_ASSERT(ttl_s > 0);
      batch.Put(kLeases, codec::EncodeLeaseId(r.id()), EncodeLeaseRow({ttl_s, 0}));
      state.lessor_ops.push_back({LessorOp::Kind::kGranted, r.id(), ttl_s});
      etcdserverpb::LeaseGrantResponse response;
      response.mutable_header()->set_revision(state.current_rev);
      response.set_id(r.id());
      response.set_ttl(ttl_s);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kLeaseRevoke:
    case synodpb::Request::kLeaseExpire: {
      const bool expire = request.command_case() == synodpb::Request::kLeaseExpire;
      const int64_t id = expire ? request.lease_expire().id() : request.lease_revoke().id();
      KV_ASSIGN_OR_RETURN(bool exists, LeaseExists(batch, id));
      etcdserverpb::LeaseRevokeResponse response;
      if (exists) {
        KV_RETURN_IF_ERROR(RevokeLease(batch, index_, state, id, result.events));
        state.lessor_ops.push_back({LessorOp::Kind::kRevoked, id, 0});
      } else if (!expire) {
        return LeaseNotFoundError();
      }
      // An expiry of a lease already gone (revoked meanwhile, or expired twice because the
      // leader retried) changes nothing.
      response.mutable_header()->set_revision(state.current_rev);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kLeaseCheckpoint: {
      for (const synodpb::LeaseCheckpoint& cp : request.lease_checkpoint().checkpoints()) {
        KV_ASSIGN_OR_RETURN(std::optional<std::string> row,
                            Get(batch, kLeases, codec::EncodeLeaseId(cp.id())));
        // etcd ignores checkpoints of leases that are gone.
        if (!row.has_value()) continue;
        std::optional<LeaseRow> lease = DecodeLeaseRow(*row);
        if (!lease.has_value()) return CorruptRow("kv.leases", "lease row");
        lease->remaining_ttl_s = std::clamp<int64_t>(cp.remaining_ttl(), 0, lease->ttl_s);
        batch.Put(kLeases, codec::EncodeLeaseId(cp.id()), EncodeLeaseRow(*lease));
        state.lessor_ops.push_back(
            {LessorOp::Kind::kCheckpointed, cp.id(), lease->remaining_ttl_s});
      }
      etcdserverpb::LeaseCheckpointResponse response;
      response.mutable_header()->set_revision(state.current_rev);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::kAlarm: {
      // etcd's applierV3backend.Alarm with its alarmStore: GET lists (all for NONE), ACTIVATE
      // and DEACTIVATE answer with the alarm only when they changed something.
      const etcdserverpb::AlarmRequest& r = request.alarm();
      etcdserverpb::AlarmResponse response;
      auto same = [&](const etcdserverpb::AlarmMember& a) {
        return a.memberid() == r.memberid() && a.alarm() == r.alarm();
      };
      auto found = std::find_if(state.alarms.begin(), state.alarms.end(), same);
      switch (r.action()) {
        case etcdserverpb::AlarmRequest::GET:
          for (const etcdserverpb::AlarmMember& a : state.alarms) {
            if (r.alarm() == etcdserverpb::NONE || a.alarm() == r.alarm()) {
              *response.add_alarms() = a;
            }
          }
          break;
        case etcdserverpb::AlarmRequest::ACTIVATE: {
          if (found != state.alarms.end() || r.alarm() == etcdserverpb::NONE) break;
          etcdserverpb::AlarmMember raised;
          raised.set_memberid(r.memberid());
          raised.set_alarm(r.alarm());
          *response.add_alarms() = raised;
          state.alarms.push_back(raised);
          std::sort(state.alarms.begin(), state.alarms.end(), [](const auto& a, const auto& b) {
            return std::pair(a.memberid(), static_cast<int>(a.alarm())) <
                   std::pair(b.memberid(), static_cast<int>(b.alarm()));
          });
          state.alarms_changed = true;
          break;
        }
        case etcdserverpb::AlarmRequest::DEACTIVATE:
          if (found == state.alarms.end()) break;
          *response.add_alarms() = *found;
          state.alarms.erase(found);
          state.alarms_changed = true;
          break;
        default:
          break;
      }
      response.mutable_header()->set_revision(state.current_rev);
      result.response = std::move(response);
      return Status();
    }
    case synodpb::Request::COMMAND_NOT_SET:
      break;
  }
  SYNOD_ASSERT_MSG(false, "request without a command passed validation");
  return Status();
}

Status Store::ApplyCommand(storage::WriteBatch& batch, internal::ApplyState& state,
                           const Entry& entry, CommandResult& result) {
  result.index = entry.index;
  synodpb::Request request;
  Status status;
  if (!request.ParseFromArray(entry.data.data(), static_cast<int>(entry.data.size()))) {
    // Every replica sees the same bytes and answers the same; the proposer had a bug.
    status = absl::InvalidArgumentError(
        fmt::format("synod: entry {} does not hold a valid request", entry.index));
  } else {
    result.request_id = request.id();
    status = ValidateRequest(request);
  }
  if (status.ok()) {
    // A failing command leaves nothing behind: its writes are rolled back to here and the
    // counters restored.
    batch.SetSavePoint();
    const size_t index_mark = index_.UndoMark();
    const int64_t saved_current_rev = state.current_rev;
    const int64_t saved_compact_rev = state.compact_rev;
    const size_t saved_lessor_ops = state.lessor_ops.size();
    // Alarm commands never fail, so alarms need no restoring on the error path below.
    status = ApplyRequest(batch, state, request, result);
    if (status.ok()) {
      batch.PopSavePoint();
      index_.ForgetUndo();
    } else {
      batch.RollbackToSavePoint();
      index_.RollbackTo(index_mark);
      state.current_rev = saved_current_rev;
      state.compact_rev = saved_compact_rev;
      state.lessor_ops.resize(saved_lessor_ops);
      if (IsStorageError(status)) return status;
    }
  }
  if (!status.ok()) {
    result.status = status;
    result.response = std::monostate();
    result.events.clear();
  }
  SYNOD_ASSERT(state.current_rev >= 1);
  SYNOD_ASSERT(state.compact_rev <= state.current_rev);
  result.revision = Revision(static_cast<uint64_t>(state.current_rev));
  return Status();
}

Result<std::vector<CommandResult>> Store::Apply(std::span<const Entry> entries,
                                                bool events_with_prev_kv) {
  SYNOD_ASSERT_MSG(entries.size() <= kApplyEntriesMax, "{} entries in one Apply, at most {}",
                   entries.size(), kApplyEntriesMax);
  KV_RETURN_IF_ERROR(CheckUsable());
  std::vector<CommandResult> results;
  std::unique_ptr<storage::WriteBatch> batch = backend_->NewBatch();
  ApplyState state{events_with_prev_kv, current_rev_, compact_rev_, {}, alarms_, false};
  std::optional<std::string_view> membership;
  Index last;
  for (const Entry& entry : entries) {
    SYNOD_ASSERT_MSG(entry.index > last, "entry {} after {}", entry.index, last);
    last = entry.index;
    // Replay after a crash: these are already in the stored state.
    if (entry.index <= backend_->applied_index()) continue;
    switch (entry.kind) {
      case Entry::Kind::kNoOp:
        break;
      case Entry::Kind::kMembership:
        SYNOD_ASSERT(entry.data.size() <= storage::Backend::kMembershipBytesMax);
        membership = entry.data;
        break;
      case Entry::Kind::kCommand: {
        CommandResult& result = results.emplace_back();
        if (Status s = ApplyCommand(*batch, state, entry, result); !s.ok()) {
          failed_ = s;
          return s;
        }
        break;
      }
    }
  }
  if (last <= backend_->applied_index()) return results;  // Everything was a replay.

  std::string value;
  codec::PutU64(value, static_cast<uint64_t>(state.current_rev));
  batch->Put(kMeta, kCurrentRevKey, value);
  value.clear();
  codec::PutU64(value, static_cast<uint64_t>(state.compact_rev));
  batch->Put(kMeta, kCompactRevKey, value);
  if (state.alarms_changed) {
    etcdserverpb::AlarmResponse stored;
    for (const etcdserverpb::AlarmMember& alarm : state.alarms) *stored.add_alarms() = alarm;
    batch->Put(kMeta, kAlarmsKey, stored.SerializeAsString());
  }
  if (Status s = backend_->Commit(*batch, last, membership); !s.ok()) {
    failed_ = s;
    return s;
  }
  SYNOD_ASSERT(state.current_rev >= current_rev_);
  SYNOD_ASSERT(state.compact_rev >= compact_rev_);
  current_rev_ = state.current_rev;
  compact_rev_ = state.compact_rev;
  alarms_ = std::move(state.alarms);
  if (lessor_ != nullptr) {
    for (const LessorOp& op : state.lessor_ops) {
      switch (op.kind) {
        case LessorOp::Kind::kGranted:
          lessor_->Granted(op.id, op.value);
          break;
        case LessorOp::Kind::kRevoked:
          lessor_->Revoked(op.id);
          break;
        case LessorOp::Kind::kCheckpointed:
          lessor_->Checkpointed(op.id, op.value);
          break;
      }
    }
  }
  return results;
}

// --- Open, reads, snapshots ------------------------------------------------------------------

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, StoreOptions options) {
  SYNOD_ASSERT(options.lease_ttl_min_s > 0);
  std::unique_ptr<Store> store(new Store());
  store->dir_ = dir;
  store->options_ = options;
  KV_ASSIGN_OR_RETURN(store->backend_, storage::Backend::Open(dir, Tables()));
  KV_RETURN_IF_ERROR(store->Load());
  return store;
}

Store::~Store() = default;

Status Store::Load() {
  current_rev_ = 1;  // etcd: a new store is at revision 1.
  compact_rev_ = 0;
  for (auto [key, target] :
       {std::pair{kCurrentRevKey, &current_rev_}, std::pair{kCompactRevKey, &compact_rev_}}) {
    KV_ASSIGN_OR_RETURN(std::optional<std::string> row, Get(*backend_, kMeta, key));
    if (!row.has_value()) continue;
    if (row->size() != 8) return CorruptRow("kv.meta", key);
    *target = static_cast<int64_t>(codec::GetU64(*row));
  }
  alarms_.clear();
  KV_ASSIGN_OR_RETURN(std::optional<std::string> alarms_row, Get(*backend_, kMeta, kAlarmsKey));
  if (alarms_row.has_value()) {
    etcdserverpb::AlarmResponse stored;
    if (!stored.ParseFromString(*alarms_row)) return CorruptRow("kv.meta", kAlarmsKey);
    alarms_.assign(stored.alarms().begin(), stored.alarms().end());
  }
  if (current_rev_ < 1 || compact_rev_ < 0 || compact_rev_ > current_rev_) {
    return CorruptRow("kv.meta",
                      fmt::format("revision {} compacted {}", current_rev_, compact_rev_));
  }
  index_.Clear();
  KV_RETURN_IF_ERROR(
      VisitHistory(*backend_, [&](Rev rev, const std::string& key, const Record& record) {
        index_.Load(key, rev, record);
      }));
  if (lessor_ != nullptr) KV_RETURN_IF_ERROR(AttachLessor(lessor_));
  return Status();
}

Status Store::CheckKeyIndex() const {
  KV_RETURN_IF_ERROR(CheckUsable());
  KeyIndex rebuilt;
  KV_RETURN_IF_ERROR(
      VisitHistory(*backend_, [&](Rev rev, const std::string& key, const Record& record) {
        rebuilt.Load(key, rev, record);
      }));
  if (!(rebuilt == index_) || rebuilt.size() != index_.size()) {
    return absl::InternalError(fmt::format(
        "kv store: the key index ({} live keys) disagrees with the one the stored history gives "
        "({} live keys)",
        index_.size(), rebuilt.size()));
  }
  return Status();
}

Status Store::CheckUsable() const {
  if (!failed_.ok()) return failed_;
  SYNOD_ASSERT(backend_ != nullptr);
  return Status();
}

Status Store::Sync() {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->Sync();
}

Status Store::StartSync() {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->StartSync();
}

Result<Index> Store::durable_applied_index() const {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->durable_applied_index();
}

int64_t Store::unflushed_bytes() const {
  return backend_ == nullptr ? 0 : backend_->memtable_bytes();
}

Status Store::Defragment() const {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->Defragment();
}

Index Store::applied_index() const {
  SYNOD_ASSERT(backend_ != nullptr);
  return backend_->applied_index();
}

const std::string& Store::membership() const {
  SYNOD_ASSERT(backend_ != nullptr);
  return backend_->membership();
}

Result<etcdserverpb::RangeResponse> Store::Range(const RangeRequest& request) const {
  return RangeThrough(*backend_, request);
}

Result<etcdserverpb::RangeResponse> Store::RangeInMemory(const RangeRequest& request) const {
  return RangeThrough(backend_->memory_reader(), request);
}

Result<etcdserverpb::RangeResponse> Store::RangeThrough(const storage::Reader& reader,
                                                        const RangeRequest& request) const {
  KV_RETURN_IF_ERROR(CheckUsable());
  if (request.key().empty()) return EmptyKeyError();
  return RangeAt(reader, index_, request, current_rev_, compact_rev_);
}

Result<Store::EventsPage> Store::EventsSince(std::string_view key, std::string_view range_end,
                                             Revision start_revision, size_t events_max,
                                             bool prev_kv) const {
  KV_RETURN_IF_ERROR(CheckUsable());
  SYNOD_ASSERT(events_max > 0 && events_max <= kEventsPerCallMax);
  const int64_t start = static_cast<int64_t>(start_revision.value());
  SYNOD_ASSERT(start >= 1);
  // etcd's watchable store cancels a watcher with minRev < compactRev.
  if (start < compact_rev_) return CompactedError();
  const KeyRange range(key, range_end);
  EventsPage page;
  page.next_revision = Revision(static_cast<uint64_t>(current_rev_ + 1));
  int64_t last_main = 0;  // Of the last event.
  std::unique_ptr<storage::Iterator> it = backend_->NewIterator(kRevs);
  for (it->Seek(codec::EncodeRevRow(Rev{start, 0})); it->Valid(); it->Next()) {
    std::optional<Rev> rev = codec::DecodeRevRow(it->key());
    if (!rev.has_value()) return CorruptRow("kv.revs", "row key");
    // A page ends at a revision boundary: a transaction's events are never split.
    if (page.events.size() >= events_max && rev->main != last_main) {
      page.next_revision = Revision(static_cast<uint64_t>(rev->main));
      break;
    }
    std::optional<std::string_view> user_key = codec::RevValueKey(it->value());
    if (!user_key.has_value()) return CorruptRow("kv.revs", "row value");
    if (!range.Contains(*user_key)) continue;
    std::optional<codec::RevValue> row = codec::DecodeRevValue(it->value());
    if (!row.has_value()) return CorruptRow("kv.revs", "row value");
    const Record& record = row->record;
    mvccpb::Event& event = page.events.emplace_back();
    last_main = rev->main;
    if (record.tombstone) {
      event.set_type(mvccpb::Event::DELETE);
      event.mutable_kv()->set_key(row->user_key);
      event.mutable_kv()->set_mod_revision(rev->main);
    } else {
      event.set_type(mvccpb::Event::PUT);
      *event.mutable_kv() = MakeKeyValue(row->user_key, *rev, record);
    }
    if (prev_kv) {
      // The previous revision of the key, if it is still stored (compaction may have removed
      // it). Within one transaction, an earlier change of the same key counts.
      if (std::optional<Rev> prev = index_.PutBefore(row->user_key, *rev); prev.has_value()) {
        KV_ASSIGN_OR_RETURN(Record prev_record, ReadChange(*backend_, row->user_key, *prev));
        *event.mutable_prev_kv() = MakeKeyValue(row->user_key, *prev, prev_record);
      }
    }
  }
  KV_RETURN_IF_ERROR(IteratorStatus(*it));
  return page;
}

Result<Store::Hash> Store::HashKV(Revision revision) const {
  KV_RETURN_IF_ERROR(CheckUsable());
  int64_t rev = static_cast<int64_t>(revision.value());
  if (rev > current_rev_) return FutureRevisionError();
  if (rev == 0) rev = current_rev_;
  if (rev < compact_rev_) return CompactedError();
  storage::Crc32c crc;
  std::unique_ptr<storage::Iterator> it = backend_->NewIterator(kRevs);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<Rev> row = codec::DecodeRevRow(it->key());
    if (!row.has_value()) return CorruptRow("kv.revs", "row key");
    if (row->main > rev) break;
    // Length-prefixed, so that no two different row sequences hash the same bytes.
    std::string lengths;
    codec::PutU64(lengths, it->key().size());
    codec::PutU64(lengths, it->value().size());
    crc.Update(lengths);
    crc.Update(it->key());
    crc.Update(it->value());
  }
  KV_RETURN_IF_ERROR(IteratorStatus(*it));
  std::string counters;
  codec::PutU64(counters, static_cast<uint64_t>(compact_rev_));
  crc.Update(counters);
  return Hash{crc.Finish(), current_revision(), compact_revision()};
}

Result<LeaseInfo> Store::TimeToLive(int64_t id, bool keys) const {
  KV_RETURN_IF_ERROR(CheckUsable());
  KV_ASSIGN_OR_RETURN(std::optional<std::string> row,
                      Get(*backend_, kLeases, codec::EncodeLeaseId(id)));
  if (!row.has_value()) return LeaseNotFoundError();
  std::optional<LeaseRow> lease = DecodeLeaseRow(*row);
  if (!lease.has_value()) return CorruptRow("kv.leases", "lease row");
  LeaseInfo info{
      id, lease->ttl_s, lease->remaining_ttl_s > 0 ? lease->remaining_ttl_s : lease->ttl_s, {}};
  if (keys) {
    KV_ASSIGN_OR_RETURN(info.keys, LeaseKeys(*backend_, id));
  }
  return info;
}

Result<std::vector<LeaseInfo>> Store::Leases() const {
  KV_RETURN_IF_ERROR(CheckUsable());
  std::vector<LeaseInfo> leases;
  std::unique_ptr<storage::Iterator> it = backend_->NewIterator(kLeases);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<LeaseRow> lease = DecodeLeaseRow(it->value());
    if (it->key().size() != 8 || !lease.has_value()) return CorruptRow("kv.leases", "lease row");
    leases.push_back(LeaseInfo{codec::DecodeLeaseId(it->key()),
                               lease->ttl_s,
                               lease->remaining_ttl_s > 0 ? lease->remaining_ttl_s : lease->ttl_s,
                               {}});
  }
  KV_RETURN_IF_ERROR(IteratorStatus(*it));
  return leases;
}

Status Store::AttachLessor(Lessor* lessor) {
  lessor_ = lessor;
  if (lessor_ == nullptr) return Status();
  KV_RETURN_IF_ERROR(CheckUsable());
  std::vector<LeaseState> states;
  std::unique_ptr<storage::Iterator> it = backend_->NewIterator(kLeases);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<LeaseRow> lease = DecodeLeaseRow(it->value());
    if (it->key().size() != 8 || !lease.has_value()) return CorruptRow("kv.leases", "lease row");
    states.push_back(
        LeaseState{codec::DecodeLeaseId(it->key()), lease->ttl_s, lease->remaining_ttl_s});
  }
  KV_RETURN_IF_ERROR(IteratorStatus(*it));
  lessor_->Reset(states);
  return Status();
}

Result<std::unique_ptr<storage::SnapshotReader>> Store::ReadSnapshot(size_t chunk_bytes_max) const {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->ReadSnapshot(chunk_bytes_max);
}

Result<std::unique_ptr<storage::SnapshotView>> Store::ReadView() const {
  KV_RETURN_IF_ERROR(CheckUsable());
  return backend_->NewSnapshotView();
}

Status Store::InstallSnapshot(std::unique_ptr<storage::SnapshotInstaller> installer) {
  KV_RETURN_IF_ERROR(CheckUsable());
  Result<std::unique_ptr<storage::Backend>> installed =
      storage::Backend::InstallSnapshot(std::move(backend_), std::move(installer));
  if (!installed.ok()) {
    failed_ = installed.status();
    return failed_;
  }
  backend_ = std::move(*installed);
  if (Status s = Load(); !s.ok()) {
    failed_ = s;
    return s;
  }
  return Status();
}

}  // namespace synod::kv
