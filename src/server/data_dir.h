#pragma once

// A member's data directory:
//   <data-dir>/member/identity   which cluster and member the data belongs to
//   <data-dir>/member/engine     which consensus engine made it ("raft" or "multipaxos")
//   <data-dir>/member/wal        the engine's log (storage/wal.h)
//   <data-dir>/member/kv         the state machine (kv/store.h)
// The identity is checked at every start, so a member started with another cluster's data (a
// copied directory, a wrong --data-dir) refuses to run instead of mixing two histories. So is
// the engine: a Raft log replayed as Multi-Paxos slots (or the reverse) would be garbage. A data
// dir made before the engine was recorded has no engine file and is a Raft one.

#include <optional>
#include <string>

#include "base/status.h"
#include "server/config.h"

namespace synod::server {

struct MemberIdentity {
  uint64_t cluster_id = 0;
  NodeId member_id;
  std::string name;
};

struct OpenedDataDir {
  MemberIdentity identity;
  EngineKind engine = EngineKind::kRaft;
  bool existed = false;  // False: the directory was new and has just been set up.
  std::string wal_dir;
  std::string kv_dir;
};

// Opens the data directory of `config`. An existing identity must match the flags' cluster id,
// member id and name, and the recorded engine `config.engine`, else FailedPrecondition naming
// both and nothing is touched; a damaged identity or engine file is DataLoss naming the file. A
// new directory gets the engine record, then the identity (whose presence marks the directory
// complete), each written atomically (temporary file, fsync, rename, fsync of the directory).
Result<OpenedDataDir> OpenDataDir(const ServerConfig& config);

// The identity stored in `data_dir`, or nullopt when it has none yet. A member that joined a
// running cluster learned its ids from the cluster, not from its flags, so at a restart it takes
// them from here. DataLoss for a damaged identity file.
Result<std::optional<MemberIdentity>> ReadDataDirIdentity(const std::string& data_dir);

}  // namespace synod::server
