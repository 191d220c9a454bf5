#pragma once

// etcd 3.4's snapshot file (what Maintenance.Snapshot streams and etcdctl saves): a bolt
// database (kv/etcd_backup.h) followed by the SHA-256 of it. etcdctl tells the two apart by size:
// bolt files are whole pages, so a size that is 32 more than a multiple of 512 carries the hash
// (clientv3/snapshot/v3_snapshot.go hasChecksum). Both ends live here: the server appends the
// hash, `synod snapshot restore` checks it as `etcdctl snapshot restore` does.

#include <cstdint>
#include <string>

#include "base/status.h"

namespace synod::server {

inline constexpr size_t kSnapshotSha256Bytes = 32;

// Appends the SHA-256 of the file's first `bytes` bytes at offset `bytes`.
Status AppendSha256Trailer(int fd, uint64_t bytes, const std::string& path);

// Checks the file at `path` as etcdctl does before a restore: with a trailer, the SHA-256 of the
// rest must match it (DataLoss "expected sha256 ..., got ..." otherwise) unless
// `skip_hash_check`; without one, FailedPrecondition unless `skip_hash_check`.
Status CheckSha256Trailer(const std::string& path, bool skip_hash_check);

}  // namespace synod::server
