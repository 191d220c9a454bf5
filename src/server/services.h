#pragma once

// The etcd v3 client API served by one member (gRPC, wire-compatible with etcd 3.4).
//
// Handlers run on gRPC's threads. They only validate, build the log entry's request, hand it to
// the Node and wait (ARCHITECTURE.md, "Threads"); reads of the applied state go through
// Node::ReadStore. Errors carry the gRPC code and message etcd gives for the same input.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/ids.h"
#include "base/prng.h"
#include "base/status.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "server/node.h"
#include "server/worker_pool.h"

namespace synod::server {

// The store's size as the quota counts it: its database and log files, plus what it holds in
// memory until the next flush (kv::Store::unflushed_bytes). Scanning the directory costs a
// readdir and a stat per file, too much for every write, so the size is rescanned at most every
// kRescanInterval: etcd's quota reads its backend's size, which changes only when its batch
// transaction commits, every 100 ms by default. Thread-safe.
class StoreSize {
 public:
  static constexpr std::chrono::milliseconds kRescanInterval{100};

  // `unflushed_bytes` is called on the thread that asks for Bytes().
  StoreSize(std::string kv_dir, std::function<int64_t()> unflushed_bytes);
  int64_t Bytes();
  // The next Bytes() scans again (after a defragmentation freed space).
  void Rescan();

 private:
  const std::string kv_dir_;
  const std::function<int64_t()> unflushed_bytes_;
  std::mutex mutex_;
  int64_t bytes_ = 0;                                               // Guarded by mutex_.
  std::optional<std::chrono::steady_clock::time_point> scanned_at_;  // Guarded by mutex_.
};

struct ServiceOptions {
  // etcd --max-request-bytes: a larger request is refused with "request is too large".
  uint32_t max_request_bytes = 1572864;
  std::string data_dir;
  // The store's size, which the quota bounds; null: no quota.
  StoreSize* store_size = nullptr;
  // etcd --quota-backend-bytes (etcd's default 2 GiB when the flag is 0): a put, a writing
  // transaction or a lease grant that would take the store beyond it raises the replicated
  // NOSPACE alarm and fails with "etcdserver: mvcc: database space exceeded". Negative: no quota,
  // as etcd's "disabled backend quota".
  int64_t quota_backend_bytes = int64_t{2} << 30;
  // Seeds the ids ClusterService draws for added members (etcd hashes the peer URLs with the
  // time; any source that differs between runs and members will do, the leader refuses a
  // duplicate).
  uint64_t member_id_seed = 0;
};

grpc::Status ToGrpc(const Status& status);

// Fills the header every etcd response carries: cluster id, member id, raft term, and the
// revision when the caller has not set it from the store already.
void FillHeader(const Node& node, etcdserverpb::ResponseHeader* header);
// etcd 3.4 lets a learner serve only Status and serializable Range (v3rpc/interceptor.go and
// isRPCSupportedForLearner): every other call, streams included, gets UNAVAILABLE "etcdserver:
// rpc not supported for learner" until it is promoted. OK when this member is not a learner.
grpc::Status RefuseOnLearner(const Node& node);

// The header of etcd's Cluster API responses: cluster id, member id and raft term only (etcd's
// clusterServer.header leaves the revision out, and etcdctl's JSON output shows that).
void FillMemberHeader(const Node& node, etcdserverpb::ResponseHeader* header);

// Served on gRPC's callback API: a handler hands its proposal or read to the node and returns,
// and the call is finished once the entry is applied here (by the node's loop) or the read
// index is (by the loop for a read of one key at the newest revision whose row is in memory,
// which is short; by the reader pool for the others, which may wait on disk). No thread waits
// per request in flight (issue 6: "gRPC's callback API rather than a thread per call").
class KvService final : public etcdserverpb::KV::CallbackService {
 public:
  KvService(Node* node, ServiceOptions options)
      : node_(node), options_(std::move(options)), readers_(kReaderThreads, "reader") {}

  // Linearizable reads confirmed at once (one heartbeat round serves them all) are read by
  // this many threads, one per core of the machine this was measured on.
  static constexpr size_t kReaderThreads = 2;

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context,
                                const etcdserverpb::PutRequest* request,
                                etcdserverpb::PutResponse* response) override;
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context,
                                const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response) override;
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response) override;

  // The same requests for callers in this process (the Lock and Election services), answered
  // on the calling thread.
  Result<etcdserverpb::RangeResponse> RangeAndWait(const etcdserverpb::RangeRequest& request);
  Result<etcdserverpb::TxnResponse> TxnAndWait(const etcdserverpb::TxnRequest& request);
  Result<etcdserverpb::DeleteRangeResponse> DeleteRangeAndWait(
      const etcdserverpb::DeleteRangeRequest& request);

 private:
  // Refuses a linearizable read on a learner; validates.
  Status CheckRange(const etcdserverpb::RangeRequest& request) const;
  enum class ReadFrom { kAnywhere, kMemoryOnly };
  // Reads the store as this member has applied it. kMemoryOnly fails with Unavailable rather
  // than wait for the disk (kv::Store::RangeInMemory).
  Result<etcdserverpb::RangeResponse> ReadRange(const etcdserverpb::RangeRequest& request,
                                                ReadFrom from = ReadFrom::kAnywhere) const;

  Node* const node_;
  const ServiceOptions options_;
  WorkerPool readers_;
};

class LeaseService final : public etcdserverpb::Lease::Service {
 public:
  LeaseService(Node* node, ServiceOptions options) : node_(node), options_(std::move(options)) {}

  grpc::Status LeaseGrant(grpc::ServerContext* context,
                          const etcdserverpb::LeaseGrantRequest* request,
                          etcdserverpb::LeaseGrantResponse* response) override;
  grpc::Status LeaseRevoke(grpc::ServerContext* context,
                           const etcdserverpb::LeaseRevokeRequest* request,
                           etcdserverpb::LeaseRevokeResponse* response) override;
  grpc::Status LeaseKeepAlive(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<etcdserverpb::LeaseKeepAliveResponse,
                               etcdserverpb::LeaseKeepAliveRequest>* stream) override;
  grpc::Status LeaseTimeToLive(grpc::ServerContext* context,
                               const etcdserverpb::LeaseTimeToLiveRequest* request,
                               etcdserverpb::LeaseTimeToLiveResponse* response) override;
  grpc::Status LeaseLeases(grpc::ServerContext* context,
                           const etcdserverpb::LeaseLeasesRequest* request,
                           etcdserverpb::LeaseLeasesResponse* response) override;

  // The leader's side of a keepalive and a time-to-live query, for this member's clients and
  // for the other members' (the peer transport's handlers).
  grpc::Status RenewOnLeader(const etcdserverpb::LeaseKeepAliveRequest& request,
                             etcdserverpb::LeaseKeepAliveResponse* response);
  grpc::Status TimeToLiveOnLeader(const etcdserverpb::LeaseTimeToLiveRequest& request,
                                  etcdserverpb::LeaseTimeToLiveResponse* response);

 private:
  Node* const node_;
  const ServiceOptions options_;
};

class MaintenanceService final : public etcdserverpb::Maintenance::Service {
 public:
  MaintenanceService(Node* node, ServiceOptions options)
      : node_(node), options_(std::move(options)) {}

  grpc::Status Status(grpc::ServerContext* context, const etcdserverpb::StatusRequest* request,
                      etcdserverpb::StatusResponse* response) override;
  grpc::Status HashKV(grpc::ServerContext* context, const etcdserverpb::HashKVRequest* request,
                      etcdserverpb::HashKVResponse* response) override;
  grpc::Status Alarm(grpc::ServerContext* context, const etcdserverpb::AlarmRequest* request,
                     etcdserverpb::AlarmResponse* response) override;
  grpc::Status Defragment(grpc::ServerContext* context,
                          const etcdserverpb::DefragmentRequest* request,
                          etcdserverpb::DefragmentResponse* response) override;
  grpc::Status Hash(grpc::ServerContext* context, const etcdserverpb::HashRequest* request,
                    etcdserverpb::HashResponse* response) override;
  // The member's whole store as of now, as etcd 3.4 sends its own: a bolt database in etcd's
  // backend layout (kv/etcd_backup.h) followed by its SHA-256 (server/etcd_snapshot_file.h), so
  // etcdctl snapshot status and restore, and etcd, read it.
  grpc::Status Snapshot(grpc::ServerContext* context,
                        const etcdserverpb::SnapshotRequest* request,
                        grpc::ServerWriter<etcdserverpb::SnapshotResponse>* writer) override;
  // cluster_service.cc.
  grpc::Status MoveLeader(grpc::ServerContext* context,
                          const etcdserverpb::MoveLeaderRequest* request,
                          etcdserverpb::MoveLeaderResponse* response) override;

 private:
  Node* const node_;
  const ServiceOptions options_;
};

// etcd's Cluster service over the replicated member records (server/members.h); everything but
// MemberList is in cluster_service.cc.
class ClusterService final : public etcdserverpb::Cluster::Service {
 public:
  ClusterService(Node* node, ServiceOptions options)
      : node_(node), options_(std::move(options)), id_prng_(options_.member_id_seed) {}

  grpc::Status MemberAdd(grpc::ServerContext* context,
                         const etcdserverpb::MemberAddRequest* request,
                         etcdserverpb::MemberAddResponse* response) override;
  grpc::Status MemberRemove(grpc::ServerContext* context,
                            const etcdserverpb::MemberRemoveRequest* request,
                            etcdserverpb::MemberRemoveResponse* response) override;
  grpc::Status MemberUpdate(grpc::ServerContext* context,
                            const etcdserverpb::MemberUpdateRequest* request,
                            etcdserverpb::MemberUpdateResponse* response) override;
  grpc::Status MemberList(grpc::ServerContext* context,
                          const etcdserverpb::MemberListRequest* request,
                          etcdserverpb::MemberListResponse* response) override;
  grpc::Status MemberPromote(grpc::ServerContext* context,
                             const etcdserverpb::MemberPromoteRequest* request,
                             etcdserverpb::MemberPromoteResponse* response) override;

 private:
  // A fresh id for an added member: non-zero, not a member's, never a removed member's.
  NodeId NewMemberId();

  Node* const node_;
  const ServiceOptions options_;
  std::mutex id_mutex_;
  base::Prng id_prng_;  // Guarded by id_mutex_.
};

}  // namespace synod::server
