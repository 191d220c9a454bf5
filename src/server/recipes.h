#pragma once

// etcd's Lock and Election services (etcdserver/api/v3lock and v3election, 3.4). etcd builds
// them as a client of its own KV, Lease and Watch APIs (clientv3/concurrency); so does synod,
// in process, so that each step is exactly the request a remote client would make and the
// results (keys, revisions, headers, errors) are etcd's:
//
// - Lock(name, lease): create key "<name>/<lease in hex>" with that lease unless it exists
//   (one Txn comparing its create_revision to 0), then wait until every key under "<name>/"
//   created before it is deleted. The owner is the oldest key: a queue in creation order, so
//   waiters are served first come, first served, and a crashed holder's key goes with its
//   lease. Unlock(key) deletes the key.
// - Election: the same queue; the leader is the oldest key and its value is the proclaimed
//   value. Campaign waits to lead; Proclaim changes the value while still the leader (a Txn on
//   the key's create_revision, so a former leader cannot overwrite a successor); Resign deletes
//   the key; Leader reads the oldest key; Observe streams the leader's value as it changes.
//
// A request whose lease is 0 gets a fresh 60 s lease, as etcd's sessions do. Waiting uses the
// node's watch hub; a waiting call ends when the client cancels it (and then removes the key it
// created, as etcd does).

#include "etcd/v3electionpb/v3election.grpc.pb.h"
#include "etcd/v3lockpb/v3lock.grpc.pb.h"
#include "server/node.h"
#include "server/services.h"

namespace synod::server {

// The in-process client both services use: the KV and Lease services' own handlers, and waits
// on the watch hub.
class LocalClient {
 public:
  LocalClient(Node* node, KvService* kv, LeaseService* lease)
      : node_(node), kv_(kv), lease_(lease) {}

  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);
  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request);
  Result<etcdserverpb::DeleteRangeResponse> Delete(const std::string& key);
  // A new lease with etcd's session TTL (60 s).
  Result<int64_t> GrantSessionLease();
  Node* node() const { return node_; }

  // Follows the changes of [key, range_end) from `start_revision` on, handing each event and
  // the revision its response reported to `on_event`, until it returns true. Errors: the
  // client canceled `context` (CANCELLED "context canceled"), the history was compacted, or
  // the server stops.
  Status Follow(grpc::ServerContext* context, const std::string& key,
                const std::string& range_end, Revision start_revision,
                const std::function<bool(const mvccpb::Event&, int64_t revision)>& on_event);

  // clientv3/concurrency's waitDeletes: until no key under `prefix` created at or below
  // `max_create_revision` is left. Returns the header of the last (empty) read.
  Result<etcdserverpb::ResponseHeader> WaitDeletes(grpc::ServerContext* context,
                                                   const std::string& prefix,
                                                   int64_t max_create_revision);

 private:
  Node* const node_;
  KvService* const kv_;
  LeaseService* const lease_;
};

class LockService final : public v3lockpb::Lock::Service {
 public:
  explicit LockService(LocalClient* client) : client_(client) {}

  grpc::Status Lock(grpc::ServerContext* context, const v3lockpb::LockRequest* request,
                    v3lockpb::LockResponse* response) override;
  grpc::Status Unlock(grpc::ServerContext* context, const v3lockpb::UnlockRequest* request,
                      v3lockpb::UnlockResponse* response) override;

 private:
  LocalClient* const client_;
};

class ElectionService final : public v3electionpb::Election::Service {
 public:
  explicit ElectionService(LocalClient* client) : client_(client) {}

  grpc::Status Campaign(grpc::ServerContext* context, const v3electionpb::CampaignRequest* request,
                        v3electionpb::CampaignResponse* response) override;
  grpc::Status Proclaim(grpc::ServerContext* context, const v3electionpb::ProclaimRequest* request,
                        v3electionpb::ProclaimResponse* response) override;
  grpc::Status Leader(grpc::ServerContext* context, const v3electionpb::LeaderRequest* request,
                      v3electionpb::LeaderResponse* response) override;
  grpc::Status Observe(grpc::ServerContext* context, const v3electionpb::LeaderRequest* request,
                       grpc::ServerWriter<v3electionpb::LeaderResponse>* writer) override;
  grpc::Status Resign(grpc::ServerContext* context, const v3electionpb::ResignRequest* request,
                      v3electionpb::ResignResponse* response) override;

 private:
  LocalClient* const client_;
};

}  // namespace synod::server
