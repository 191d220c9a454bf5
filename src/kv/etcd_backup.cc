#include "kv/etcd_backup.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "etcd/leasepb/lease.pb.h"
#include "etcd/mvccpb/kv.pb.h"
#include "kv/key_codec.h"
#include "kv/store.h"

namespace synod::kv {

namespace {

using codec::Rev;

// etcd's bucket and key names (see the header for where each comes from).
constexpr char kKeyBucket[] = "key";
constexpr char kMetaBucket[] = "meta";
constexpr char kLeaseBucket[] = "lease";
constexpr char kAlarmBucket[] = "alarm";
constexpr char kMembersBucket[] = "members";
constexpr char kMembersRemovedBucket[] = "members_removed";
constexpr char kClusterBucket[] = "cluster";
constexpr char kConsistentIndexKey[] = "consistent_index";
constexpr char kFinishedCompactKey[] = "finishedCompactRev";
constexpr char kScheduledCompactKey[] = "scheduledCompactRev";
constexpr char kClusterVersionKey[] = "clusterVersion";

// mvcc/revision.go: main (8 BE) '_' sub (8 BE); kvstore.go appends 't' to a tombstone's.
constexpr size_t kRevBytes = 17;
constexpr char kRevSeparator = '_';
constexpr char kTombstoneMark = 't';

// Import commits in batches of about this size, so memory stays bounded for any backend size.
constexpr size_t kImportBatchBytesMax = 4 << 20;

std::string EtcdRevKey(Rev rev, bool tombstone) {
  std::string out;
  codec::PutU64(out, static_cast<uint64_t>(rev.main));
  out.push_back(kRevSeparator);
  codec::PutU64(out, static_cast<uint64_t>(rev.sub));
  if (tombstone) out.push_back(kTombstoneMark);
  return out;
}

// nullopt unless `bytes` is a revision key (with or without the tombstone mark).
std::optional<std::pair<Rev, bool>> ParseEtcdRevKey(std::string_view bytes) {
  if (bytes.size() != kRevBytes && bytes.size() != kRevBytes + 1) return std::nullopt;
  if (bytes[8] != kRevSeparator) return std::nullopt;
  const bool tombstone = bytes.size() == kRevBytes + 1;
  if (tombstone && bytes[kRevBytes] != kTombstoneMark) return std::nullopt;
  const Rev rev{static_cast<int64_t>(codec::GetU64(bytes)),
                static_cast<int64_t>(codec::GetU64(bytes.substr(9)))};
  if (rev.main < 1 || rev.sub < 0) return std::nullopt;
  return std::pair{rev, tombstone};
}

std::string BigEndian64(uint64_t value) {
  std::string out;
  codec::PutU64(out, value);
  return out;
}

// A JSON string as Go's encoding/json writes it (etcd marshals member records with it): HTML
// characters and U+2028/U+2029 escaped too.
std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      out += fmt::format("\\u{:04x}", c);
    } else if (c == 0xe2 && i + 2 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) & 0xfe) == 0xa8) {
      out += fmt::format("\\u{:04x}", 0x2028 + (static_cast<unsigned char>(text[i + 2]) & 1));
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string JsonStrings(const google::protobuf::RepeatedPtrField<std::string>& strings) {
  // Go marshals a nil slice as null; a member always has peer URLs, so this is the rare case.
  if (strings.empty()) return "null";
  std::string out = "[";
  for (const std::string& s : strings) out += (out.size() > 1 ? "," : "") + JsonString(s);
  return out + "]";
}

// etcd's membership.Member as json.Marshal writes it: id (a number), peerURLs, then the
// omitempty fields isLearner, name, clientURLs.
std::string MemberJson(const synodpb::MemberRecord& member) {
  std::string out =
      fmt::format("{{\"id\":{},\"peerURLs\":{}", member.id(), JsonStrings(member.peer_urls()));
  if (member.is_learner()) out += ",\"isLearner\":true";
  if (!member.name().empty()) out += ",\"name\":" + JsonString(member.name());
  if (!member.client_urls().empty()) out += ",\"clientURLs\":" + JsonStrings(member.client_urls());
  return out + "}";
}

Status CorruptStore(std::string_view what) {
  return absl::DataLossError(fmt::format("kv store: corrupt row: {}", what));
}

Result<int64_t> ReadCounter(const storage::Reader& reader, const char* key, int64_t absent) {
  Result<std::optional<std::string>> row = reader.Get(codec::kMeta, key);
  if (!row.ok()) return row.status();
  if (!row->has_value()) return absent;
  if ((*row)->size() != 8) return CorruptStore(key);
  return static_cast<int64_t>(codec::GetU64(**row));
}

using Rows = std::vector<std::pair<std::string, std::string>>;

Status WriteBucket(storage::BoltWriter& writer, std::string_view name, Rows rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end(),
                         [](const auto& a, const auto& b) { return a.first == b.first; }),
             rows.end());
  if (Status status = writer.BeginBucket(name); !status.ok()) return status;
  for (const auto& [key, value] : rows) {
    if (Status status = writer.Put(key, value); !status.ok()) return status;
  }
  return writer.EndBucket();
}

// The "key" bucket: the history in revision order (kv.revs), which has etcd's layout already.
Status WriteKeyBucket(const storage::SnapshotView& view, storage::BoltWriter& writer,
                      EtcdBackupSummary& summary) {
  if (Status status = writer.BeginBucket(kKeyBucket); !status.ok()) return status;
  std::unique_ptr<storage::Iterator> it = view.NewIterator(codec::kRevs);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<Rev> rev = codec::DecodeRevRow(it->key());
    if (!rev.has_value()) return CorruptStore("kv.revs row key");
    std::optional<codec::RevValue> row = codec::DecodeRevValue(it->value());
    if (!row.has_value()) return CorruptStore("kv.revs row value");
    const codec::Record& record = row->record;
    mvccpb::KeyValue kv;
    kv.set_key(row->user_key);
    if (!record.tombstone) {
      kv.set_create_revision(record.create_revision);
      kv.set_mod_revision(rev->main);
      kv.set_version(record.version);
      kv.set_value(record.value);
      kv.set_lease(record.lease);
    }
    if (Status status = writer.Put(EtcdRevKey(*rev, record.tombstone), kv.SerializeAsString());
        !status.ok()) {
      return status;
    }
    ++summary.key_revisions;
  }
  if (Status status = it->status(); !status.ok()) return status;
  return writer.EndBucket();
}

}  // namespace

Result<EtcdBackupSummary> WriteEtcdBackup(const storage::SnapshotView& view,
                                          const synodpb::ClusterMembers& members,
                                          storage::BoltWriter& writer) {
  EtcdBackupSummary summary;
  summary.applied_index = view.applied_index();
  Result<int64_t> revision = ReadCounter(view, codec::kCurrentRevKey, 1);
  if (!revision.ok()) return revision.status();
  Result<int64_t> compact = ReadCounter(view, codec::kCompactRevKey, 0);
  if (!compact.ok()) return compact.status();
  summary.revision = *revision;
  summary.compact_revision = *compact;

  Rows alarms;
  Result<std::optional<std::string>> alarms_row = view.Get(codec::kMeta, codec::kAlarmsKey);
  if (!alarms_row.ok()) return alarms_row.status();
  if (alarms_row->has_value()) {
    etcdserverpb::AlarmResponse stored;
    if (!stored.ParseFromString(**alarms_row)) return CorruptStore("kv.meta alarms");
    for (const etcdserverpb::AlarmMember& alarm : stored.alarms()) {
      alarms.emplace_back(alarm.SerializeAsString(), "");
    }
  }

  Rows leases;
  std::unique_ptr<storage::Iterator> it = view.NewIterator(codec::kLeases);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::optional<codec::LeaseRow> row = codec::DecodeLeaseRow(it->value());
    if (it->key().size() != 8 || !row.has_value()) return CorruptStore("kv.leases row");
    leasepb::Lease lease;
    lease.set_id(codec::DecodeLeaseId(it->key()));
    lease.set_ttl(row->ttl_s);
    lease.set_remainingttl(row->remaining_ttl_s);
    leases.emplace_back(BigEndian64(static_cast<uint64_t>(lease.id())), lease.SerializeAsString());
  }
  if (Status status = it->status(); !status.ok()) return status;
  it.reset();
  summary.leases = leases.size();

  Rows member_rows;
  for (const synodpb::MemberRecord& member : members.members()) {
    member_rows.emplace_back(fmt::format("{:x}", member.id()), MemberJson(member));
  }
  Rows removed_rows;
  for (uint64_t id : members.removed_ids())
    removed_rows.emplace_back(fmt::format("{:x}", id), "removed");

  Rows meta = {{kConsistentIndexKey, BigEndian64(view.applied_index().value())}};
  if (*compact > 0) {
    const std::string compacted = EtcdRevKey(Rev{*compact, 0}, false);
    meta.emplace_back(kFinishedCompactKey, compacted);
    meta.emplace_back(kScheduledCompactKey, compacted);
  }

  // Buckets in bytewise order of their names, as the root bucket needs them.
  Status status = WriteBucket(writer, kAlarmBucket, std::move(alarms));
  for (const char* auth : {"auth", "authRoles", "authUsers"}) {
    if (status.ok()) status = WriteBucket(writer, auth, {});
  }
  if (status.ok())
    status = WriteBucket(writer, kClusterBucket, {{kClusterVersionKey, kEtcdClusterVersion}});
  if (status.ok()) status = WriteKeyBucket(view, writer, summary);
  if (status.ok()) status = WriteBucket(writer, kLeaseBucket, std::move(leases));
  if (status.ok()) status = WriteBucket(writer, kMembersBucket, std::move(member_rows));
  if (status.ok()) status = WriteBucket(writer, kMembersRemovedBucket, std::move(removed_rows));
  if (status.ok()) status = WriteBucket(writer, kMetaBucket, std::move(meta));
  if (status.ok()) status = writer.Finish();
  if (!status.ok()) return status;
  return summary;
}

// --- Import ----------------------------------------------------------------------------------

namespace {

Status NotEtcd(std::string_view bucket, std::string_view what) {
  return absl::DataLossError(
      fmt::format("not an etcd 3.4 backend: bucket {:?}: {}", std::string(bucket), what));
}

// Loads the rows into a new backend in batches; commit n gets applied index n.
class Loader {
 public:
  explicit Loader(std::unique_ptr<storage::Backend> backend)
      : backend_(std::move(backend)), batch_(backend_->NewBatch()) {}

  storage::WriteBatch& batch() { return *batch_; }
  storage::Backend& backend() { return *backend_; }
  uint64_t commits() const { return commits_; }

  Status MaybeCommit() {
    return batch_->bytes() >= kImportBatchBytesMax ? Commit(std::nullopt) : Status();
  }
  Status Commit(std::optional<std::string_view> membership) {
    if (batch_->count() == 0 && !membership.has_value()) return Status();
    ++commits_;
    Status status = backend_->Commit(*batch_, Index(commits_), membership);
    batch_ = backend_->NewBatch();
    return status;
  }

 private:
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<storage::WriteBatch> batch_;
  uint64_t commits_ = 0;
};

// Everything but a scheduled compaction: fills `summary` and the scheduled compaction revision.
Status LoadBackend(const storage::BoltReader& reader, const std::string& kv_dir,
                   std::string_view membership, EtcdBackupSummary& summary,
                   int64_t& scheduled_compaction) {
  auto backend = storage::Backend::Open(kv_dir, codec::Tables());
  if (!backend.ok()) return backend.status();
  Loader loader(std::move(*backend));
  int64_t last_main = 0;

  Status status = reader.ForEach({kKeyBucket}, [&](const storage::BoltReader::Entry& entry) {
    std::optional<std::pair<Rev, bool>> rev = ParseEtcdRevKey(entry.key);
    mvccpb::KeyValue kv;
    if (entry.is_bucket || !rev.has_value()) return NotEtcd(kKeyBucket, "not a revision key");
    if (!kv.ParseFromArray(entry.value.data(), static_cast<int>(entry.value.size())) ||
        kv.key().empty()) {
      return NotEtcd(kKeyBucket, "not a KeyValue");
    }
    codec::Record record;
    record.tombstone = rev->second;
    if (!record.tombstone) {
      record.create_revision = kv.create_revision();
      record.version = kv.version();
      record.lease = kv.lease();
      record.value = kv.value();
    }
    loader.batch().Put(codec::kRevs, codec::EncodeRevRow(rev->first),
                       codec::EncodeRevValue(kv.key(), record));
    last_main = rev->first.main;
    ++summary.key_revisions;
    return loader.MaybeCommit();
  });
  if (!status.ok()) return status;

  std::set<int64_t> lease_ids;
  Result<bool> has_leases = reader.HasBucket({kLeaseBucket});
  if (!has_leases.ok()) return has_leases.status();
  if (*has_leases) {
    status = reader.ForEach({kLeaseBucket}, [&](const storage::BoltReader::Entry& entry) {
      leasepb::Lease lease;
      if (entry.is_bucket || entry.key.size() != 8 ||
          !lease.ParseFromArray(entry.value.data(), static_cast<int>(entry.value.size()))) {
        return NotEtcd(kLeaseBucket, "not a lease");
      }
      loader.batch().Put(codec::kLeases, codec::EncodeLeaseId(lease.id()),
                         codec::EncodeLeaseRow({lease.ttl(), lease.remainingttl()}));
      lease_ids.insert(lease.id());
      return loader.MaybeCommit();
    });
    if (!status.ok()) return status;
  }
  summary.leases = lease_ids.size();

  std::vector<etcdserverpb::AlarmMember> alarms;
  Result<bool> has_alarms = reader.HasBucket({kAlarmBucket});
  if (!has_alarms.ok()) return has_alarms.status();
  if (*has_alarms) {
    status = reader.ForEach({kAlarmBucket}, [&](const storage::BoltReader::Entry& entry) {
      if (entry.is_bucket || !alarms.emplace_back().ParseFromArray(
                                 entry.key.data(), static_cast<int>(entry.key.size()))) {
        return NotEtcd(kAlarmBucket, "not an alarm");
      }
      return Status();
    });
    if (!status.ok()) return status;
  }
  // The store keeps alarms ordered by member, then type (Store::alarms).
  std::sort(alarms.begin(), alarms.end(), [](const auto& a, const auto& b) {
    return std::pair(a.memberid(), static_cast<int>(a.alarm())) <
           std::pair(b.memberid(), static_cast<int>(b.alarm()));
  });

  std::map<std::string, int64_t> compaction;  // finished/scheduled -> revision
  status = reader.ForEach({kMetaBucket}, [&](const storage::BoltReader::Entry& entry) {
    if (entry.key != kFinishedCompactKey && entry.key != kScheduledCompactKey) return Status();
    std::optional<std::pair<Rev, bool>> rev = ParseEtcdRevKey(entry.value);
    if (!rev.has_value() || rev->second) return NotEtcd(kMetaBucket, "bad compaction revision");
    compaction[std::string(entry.key)] = rev->first.main;
    return Status();
  });
  if (!status.ok()) return status;
  if (status = loader.Commit(std::nullopt); !status.ok()) return status;

  // Which key each lease holds: the keys whose newest change is a put naming an existing lease
  // (etcd attaches the same at start, kvstore.go restore; a missing lease it only logs).
  {
    std::map<std::string, int64_t> newest_lease;  // Key -> lease of its newest change (0: none).
    std::unique_ptr<storage::Iterator> it = loader.backend().NewIterator(codec::kRevs);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::optional<codec::RevValue> row = codec::DecodeRevValue(it->value());
      if (!row.has_value()) return CorruptStore("kv.revs row value");
      newest_lease[row->user_key] = row->record.tombstone ? 0 : row->record.lease;
    }
    if (status = it->status(); !status.ok()) return status;
    for (const auto& [key, lease] : newest_lease) {
      if (lease == 0 || !lease_ids.contains(lease)) continue;
      loader.batch().Put(codec::kLeaseKeys, codec::EncodeLeaseId(lease) + key, "");
      if (status = loader.MaybeCommit(); !status.ok()) return status;
    }
  }

  // kvstore.go restore: the current revision is the newest stored one, or the compacted one.
  summary.compact_revision = compaction[kFinishedCompactKey];
  summary.revision = std::max<int64_t>({last_main, summary.compact_revision, 1});
  loader.batch().Put(codec::kMeta, codec::kCurrentRevKey,
                     BigEndian64(static_cast<uint64_t>(summary.revision)));
  loader.batch().Put(codec::kMeta, codec::kCompactRevKey,
                     BigEndian64(static_cast<uint64_t>(summary.compact_revision)));
  if (!alarms.empty()) {
    etcdserverpb::AlarmResponse stored;
    for (const etcdserverpb::AlarmMember& alarm : alarms) *stored.add_alarms() = alarm;
    loader.batch().Put(codec::kMeta, codec::kAlarmsKey, stored.SerializeAsString());
  }
  if (status = loader.Commit(membership); !status.ok()) return status;
  summary.applied_index = Index(loader.commits());
  scheduled_compaction = compaction[kScheduledCompactKey];
  return loader.backend().Sync();
}

}  // namespace

Result<EtcdBackupSummary> ImportEtcdBackup(const storage::BoltReader& reader,
                                           const std::string& kv_dir, std::string_view membership) {
  std::error_code error;
  if (std::filesystem::exists(kv_dir, error)) {
    return absl::FailedPreconditionError(fmt::format("{} exists already", kv_dir));
  }
  for (const char* bucket : {kKeyBucket, kMetaBucket}) {
    Result<bool> has = reader.HasBucket({bucket});
    if (!has.ok()) return has.status();
    if (!*has) return NotEtcd(bucket, "missing");
  }
  EtcdBackupSummary summary;
  int64_t scheduled = 0;
  if (Status status = LoadBackend(reader, kv_dir, membership, summary, scheduled); !status.ok()) {
    return status;
  }

  // A compaction etcd had scheduled but not finished; etcd resumes it at start. Opening the
  // store also checks what was loaded (Store::Load).
  auto store = Store::Open(kv_dir);
  if (!store.ok()) return store.status();
  if (scheduled > summary.compact_revision) {
    synodpb::Request request;
    request.mutable_compaction()->set_revision(scheduled);
    const std::string data = request.SerializeAsString();
    const Entry entry{summary.applied_index.next(), Entry::Kind::kCommand, data};
    Result<std::vector<CommandResult>> applied = (*store)->Apply({&entry, 1});
    if (!applied.ok()) return applied.status();
    if (!applied->front().status.ok()) return applied->front().status;
    if (Status status = (*store)->Sync(); !status.ok()) return status;
    summary.applied_index = entry.index;
    summary.compact_revision = scheduled;
  }
  return summary;
}

}  // namespace synod::kv
