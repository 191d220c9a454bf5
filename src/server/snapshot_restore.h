#pragma once

// `synod snapshot restore FILE --name N --data-dir D --initial-cluster ...
//  --initial-cluster-token T --initial-advertise-peer-urls U [--skip-hash-check]`
//
// etcdctl 3.4's `snapshot restore`, for synod: it takes an etcd snapshot file (from
// `etcdctl snapshot save` against etcd or synod) and creates the data dir of one member of a
// new cluster that serves the snapshot's data at its revision. Run it once per member with that
// member's --name and --initial-advertise-peer-urls, then start each member with the same
// cluster flags (`synod --name N --data-dir D --initial-cluster ...`), as with etcd.
//
// What it builds is what a new member would have after applying the snapshot:
//   - the identity of the member and cluster the flags describe (server/data_dir.h; the ids are
//     etcd's, hashed from the peer URLs and the cluster token);
//   - the kv store imported from the file (kv/etcd_backup.h), with the initial cluster's member
//     records as its membership;
//   - a Raft log that starts after a snapshot at the store's applied index, term 1, whose
//     configuration is the initial cluster (every member a voter), and a hard state of term 1
//     that commits it. So every member starts at the same log position with the same data, and
//     the first leader is elected in term 2, as a new cluster's would be. etcd's restore does the
//     same with its WAL (a snapshot at term 1 after one entry per member).
// The data dir is built under a temporary name beside the target (<data-dir>.restoring-XXXXXX)
// and renamed into place only when complete, so a failed restore leaves nothing that a member
// could start from (a crash may leave the temporary directory, which nothing reads).
//
// Checks, as etcdctl's: the SHA-256 trailer must match (unless --skip-hash-check), and the data
// dir must not exist (nothing is touched then).

#include <string>

#include "base/status.h"
#include "kv/etcd_backup.h"
#include "server/config.h"

namespace synod::server {

struct SnapshotRestoreOptions {
  std::string snapshot_path;
  bool skip_hash_check = false;
  // From the cluster flags, parsed and validated as the server's (ParseFlags); its ids are the
  // ones the member will compute when started with the same flags.
  ServerConfig config;
};

// Parses the arguments after `synod snapshot restore`. Only etcdctl's restore flags are taken:
// --name, --data-dir, --initial-cluster, --initial-cluster-token,
// --initial-advertise-peer-urls and --skip-hash-check. InvalidArgument names what is wrong.
Result<SnapshotRestoreOptions> ParseSnapshotRestoreFlags(int argc, const char* const* argv);

// Creates the data dir. FailedPrecondition when it exists; the trailer and file errors of
// CheckSha256Trailer, BoltReader and ImportEtcdBackup otherwise.
Result<kv::EtcdBackupSummary> RestoreSnapshot(const SnapshotRestoreOptions& options);

// The command: parses, restores, prints what it did or the error (--help: the usage). Returns
// the exit status.
int RunSnapshotRestore(int argc, const char* const* argv);

}  // namespace synod::server
