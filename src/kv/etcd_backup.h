#pragma once

// The store in etcd 3.4's backend layout: what `etcdctl snapshot save` gets from synod, and what
// `synod snapshot restore` reads from etcd's snapshots or synod's own. The file is a bbolt
// database (storage/bolt_writer.h) with etcd's buckets, learned from etcd 3.4's
// mvcc/kvstore.go, mvcc/revision.go, lease/lessor.go, etcdserver/api/membership/store.go,
// etcdserver/api/v3alarm and auth/store.go:
//
//   "key"      every stored revision of every key, in revision order: the row key is
//              main (8 BE) '_' sub (8 BE), plus 't' for a delete (a tombstone); the value is the
//              marshaled mvccpb.KeyValue (a tombstone's carries only the key). Exactly the rows
//              the store keeps after compaction, which are the rows etcd keeps.
//   "meta"     "consistent_index" (8 BE: the applied index), and once compacted
//              "finishedCompactRev" and "scheduledCompactRev" (17-byte revisions {rev, 0}).
//   "lease"    lease id (8 BE) -> marshaled leasepb.Lease (ID, TTL, RemainingTTL). A key's lease
//              is in its KeyValue; etcd re-attaches keys to leases from there at start.
//   "alarm"    marshaled etcdserverpb.AlarmMember -> "" for every raised alarm.
//   "members"  member id (hex) -> etcd's JSON member record; "members_removed" id -> "removed";
//   "cluster"  "clusterVersion" -> "3.4.0".
//   "auth", "authRoles", "authUsers": empty (synod has no authentication; etcd reads empty
//              buckets as "auth disabled").
//
// The store's current revision is not stored by etcd: it is the newest revision in "key", or the
// compacted revision if that is newer (kvstore.go restore). The store's rows already agree with
// that, since every revision the store counts leaves a row and compaction keeps everything above
// the compacted revision.

#include <cstdint>
#include <string>
#include <string_view>

#include "base/ids.h"
#include "base/status.h"
#include "storage/backend.h"
#include "storage/bolt_reader.h"
#include "storage/bolt_writer.h"
#include "synod/request.pb.h"

namespace synod::kv {

// The cluster version etcd 3.4 records; etcdctl and etcd compare only major.minor.
inline constexpr char kEtcdClusterVersion[] = "3.4.0";

// What an export or import carried.
struct EtcdBackupSummary {
  Index applied_index;
  int64_t revision = 0;
  int64_t compact_revision = 0;
  uint64_t key_revisions = 0;  // Rows of "key", tombstones included.
  uint64_t leases = 0;
};

// Writes `view` (Store::ReadView) in etcd's layout into `writer` and finishes the file.
// `members` are the cluster's member records (server/members.h) for "members",
// "members_removed". DataLoss for a damaged store row; the writer's errors otherwise.
Result<EtcdBackupSummary> WriteEtcdBackup(const storage::SnapshotView& view,
                                          const synodpb::ClusterMembers& members,
                                          storage::BoltWriter& writer);

// Builds a new store in `kv_dir` (which must not exist) holding what the etcd backend `reader`
// holds: every key revision with its create revision, version and lease, the leases, the alarms
// and the compacted revision. A compaction etcd had scheduled but not finished is applied.
// `membership` becomes the store's membership blob. The store's applied index is the number of
// backend commits the import took (it numbers nothing of a log: the restored member's log
// starts after it). DataLoss, naming the bucket, for anything that is not etcd's layout.
Result<EtcdBackupSummary> ImportEtcdBackup(const storage::BoltReader& reader,
                                           const std::string& kv_dir, std::string_view membership);

}  // namespace synod::kv
