#include "server/services.h"

#include <filesystem>
#include <system_error>
#include <variant>

#include "kv/errors.h"
#include "server/config.h"
#include "server/members.h"
#include "server/transport.h"

namespace synod::server {

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl's status codes are gRPC's, number for number.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void FillHeader(const Node& node, etcdserverpb::ResponseHeader* header) {
  header->set_cluster_id(node.cluster_id());
  header->set_member_id(node.id().value());
  header->set_raft_term(node.status().term.value());
  if (header->revision() == 0) {
    header->set_revision(static_cast<int64_t>(
        node.ReadStore([](const kv::Store& store) { return store.current_revision(); }).value()));
  }
}

namespace {

Status RequestTooLargeError() {
  return absl::InvalidArgumentError("etcdserver: request is too large");
}

// etcd's v3rpc checks a range request before anything else (key.go checkRangeRequest).
Status ValidateRange(const etcdserverpb::RangeRequest& request) {
  if (request.key().empty()) return kv::EmptyKeyError();
  if (!etcdserverpb::RangeRequest_SortOrder_IsValid(request.sort_order())) {
    return absl::InvalidArgumentError("etcdserver: invalid sort option");
  }
  if (!etcdserverpb::RangeRequest_SortTarget_IsValid(request.sort_target())) {
    return absl::InvalidArgumentError("etcdserver: invalid sort option");
  }
  return absl::OkStatus();
}

int64_t DirectoryBytes(const std::string& dir) {
  std::error_code error;
  int64_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file(error)) total += static_cast<int64_t>(it->file_size(error));
  }
  return total;
}

}  // namespace

namespace {

// Validates, proposes, waits until applied here, and answers with the entry's response, which
// must be a `Response`.
template <typename Response>
grpc::Status ProposeAndAnswer(Node* node, const ServiceOptions& options,
                              synodpb::Request request, Response* response) {
  if (Status status = kv::ValidateRequest(request); !status.ok()) return ToGrpc(status);
  if (request.ByteSizeLong() > options.max_request_bytes) return ToGrpc(RequestTooLargeError());
  Result<kv::CommandResult> result = node->Propose(std::move(request));
  if (!result.ok()) return ToGrpc(result.status());
  if (!result->status.ok()) return ToGrpc(result->status);
  Response* answered = std::get_if<Response>(&result->response);
  if (answered == nullptr) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "etcdserver: unexpected response type");
  }
  *response = std::move(*answered);
  FillHeader(*node, response->mutable_header());
  return grpc::Status::OK;
}

}  // namespace

grpc::Status KvService::Range(grpc::ServerContext*, const etcdserverpb::RangeRequest* request,
                              etcdserverpb::RangeResponse* response) {
  if (Status status = ValidateRange(*request); !status.ok()) return ToGrpc(status);
  // Thesis 6.4: a linearizable read waits for a read index confirmed by a quorum; a
  // serializable one reads whatever this member has applied.
  if (!request->serializable()) {
    if (Status status = node_->WaitLinearizableRead(); !status.ok()) return ToGrpc(status);
  }
  auto result = node_->ReadStore([&](const kv::Store& store) { return store.Range(*request); });
  if (!result.ok()) return ToGrpc(result.status());
  *response = std::move(*result);
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status KvService::Put(grpc::ServerContext*, const etcdserverpb::PutRequest* request,
                            etcdserverpb::PutResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_put() = *request;
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status KvService::DeleteRange(grpc::ServerContext*,
                                    const etcdserverpb::DeleteRangeRequest* request,
                                    etcdserverpb::DeleteRangeResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_delete_range() = *request;
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status KvService::Txn(grpc::ServerContext*, const etcdserverpb::TxnRequest* request,
                            etcdserverpb::TxnResponse* response) {
  // Every transaction goes through the log, read-only ones included: simpler than etcd's
  // read-only fast path, and just as linearizable.
  synodpb::Request proposal;
  *proposal.mutable_txn() = *request;
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status KvService::Compact(grpc::ServerContext*,
                                const etcdserverpb::CompactionRequest* request,
                                etcdserverpb::CompactionResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_compaction() = *request;
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status LeaseService::LeaseGrant(grpc::ServerContext*,
                                      const etcdserverpb::LeaseGrantRequest* request,
                                      etcdserverpb::LeaseGrantResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_lease_grant() = *request;
  // The id is chosen before proposing, so every replica grants the same lease.
  if (request->id() == 0) proposal.mutable_lease_grant()->set_id(node_->NewLeaseId());
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status LeaseService::LeaseRevoke(grpc::ServerContext*,
                                       const etcdserverpb::LeaseRevokeRequest* request,
                                       etcdserverpb::LeaseRevokeResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_lease_revoke() = *request;
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status LeaseService::RenewOnLeader(const etcdserverpb::LeaseKeepAliveRequest& request,
                                         etcdserverpb::LeaseKeepAliveResponse* response) {
  Result<int64_t> ttl_s = node_->RenewLease(request.id());
  response->set_id(request.id());
  if (ttl_s.ok()) {
    response->set_ttl(*ttl_s);
  } else if (absl::IsNotFound(ttl_s.status())) {
    response->set_ttl(0);  // etcd answers a keepalive of an unknown lease with TTL 0.
  } else {
    return ToGrpc(ttl_s.status());
  }
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status LeaseService::LeaseKeepAlive(
    grpc::ServerContext*,
    grpc::ServerReaderWriter<etcdserverpb::LeaseKeepAliveResponse,
                             etcdserverpb::LeaseKeepAliveRequest>* stream) {
  etcdserverpb::LeaseKeepAliveRequest request;
  while (stream->Read(&request)) {
    etcdserverpb::LeaseKeepAliveResponse response;
    grpc::Status status = RenewOnLeader(request, &response);
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      // Not the leader: the leader's clock decides, so ask it (etcd forwards the same way).
      const NodeId leader = node_->status().leader;
      if (leader == kNoNode || node_->transport() == nullptr) return ToGrpc(NoLeaderError());
      response.Clear();
      status = node_->transport()->LeaseRenew(leader, request, &response,
                                              std::chrono::milliseconds(5000));
      if (status.ok()) FillHeader(*node_, response.mutable_header());
    }
    if (!status.ok()) return status;
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status LeaseService::TimeToLiveOnLeader(const etcdserverpb::LeaseTimeToLiveRequest& request,
                                              etcdserverpb::LeaseTimeToLiveResponse* response) {
  Result<int64_t> remaining_ms = node_->LeaseRemainingMs(request.id());
  response->set_id(request.id());
  if (absl::IsNotFound(remaining_ms.status())) {
    response->set_ttl(-1);  // etcd's answer for an unknown lease, not an error.
    FillHeader(*node_, response->mutable_header());
    return grpc::Status::OK;
  }
  if (!remaining_ms.ok()) return ToGrpc(remaining_ms.status());
  auto info = node_->ReadStore(
      [&](const kv::Store& store) { return store.TimeToLive(request.id(), request.keys()); });
  if (absl::IsNotFound(info.status())) {
    response->set_ttl(-1);
    FillHeader(*node_, response->mutable_header());
    return grpc::Status::OK;
  }
  if (!info.ok()) return ToGrpc(info.status());
  // Rounded up, as etcd does, so a lease with time left never shows 0.
  response->set_ttl((*remaining_ms + 999) / 1000);
  response->set_grantedttl(info->granted_ttl_s);
  for (const std::string& key : info->keys) response->add_keys(key);
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status LeaseService::LeaseTimeToLive(grpc::ServerContext*,
                                           const etcdserverpb::LeaseTimeToLiveRequest* request,
                                           etcdserverpb::LeaseTimeToLiveResponse* response) {
  grpc::Status status = TimeToLiveOnLeader(*request, response);
  if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) return status;
  const NodeId leader = node_->status().leader;
  if (leader == kNoNode || node_->transport() == nullptr) return ToGrpc(NoLeaderError());
  response->Clear();
  status = node_->transport()->LeaseTimeToLive(leader, *request, response,
                                               std::chrono::milliseconds(5000));
  if (status.ok()) FillHeader(*node_, response->mutable_header());
  return status;
}

grpc::Status LeaseService::LeaseLeases(grpc::ServerContext*,
                                       const etcdserverpb::LeaseLeasesRequest*,
                                       etcdserverpb::LeaseLeasesResponse* response) {
  auto leases = node_->ReadStore([](const kv::Store& store) { return store.Leases(); });
  if (!leases.ok()) return ToGrpc(leases.status());
  for (const kv::LeaseInfo& lease : *leases) response->add_leases()->set_id(lease.id);
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::Status(grpc::ServerContext*, const etcdserverpb::StatusRequest*,
                                        etcdserverpb::StatusResponse* response) {
  const NodeStatus status = node_->status();
  response->set_version(kEtcdCompatibleVersion);
  const int64_t db_bytes = DirectoryBytes(options_.data_dir);
  response->set_dbsize(db_bytes);
  response->set_dbsizeinuse(db_bytes);
  response->set_leader(status.leader.value());
  response->set_raftindex(status.commit.value());
  response->set_raftterm(status.term.value());
  response->set_raftappliedindex(status.applied.value());
  response->set_islearner(status.membership.IsLearner(status.id));
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::HashKV(grpc::ServerContext*,
                                        const etcdserverpb::HashKVRequest* request,
                                        etcdserverpb::HashKVResponse* response) {
  auto hash = node_->ReadStore([&](const kv::Store& store) {
    return store.HashKV(Revision(static_cast<uint64_t>(request->revision())));
  });
  if (!hash.ok()) return ToGrpc(hash.status());
  response->set_hash(hash->hash);
  response->set_compact_revision(static_cast<int64_t>(hash->compact_revision.value()));
  response->mutable_header()->set_revision(static_cast<int64_t>(hash->revision.value()));
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::Alarm(grpc::ServerContext*, const etcdserverpb::AlarmRequest*,
                                       etcdserverpb::AlarmResponse* response) {
  // No alarm is ever raised yet (NOSPACE and CORRUPT come with the quota and corruption checks),
  // so every action answers with the empty list, as etcd does when none is active.
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status ClusterService::MemberList(grpc::ServerContext*,
                                        const etcdserverpb::MemberListRequest*,
                                        etcdserverpb::MemberListResponse* response) {
  // The applied records (server/members.h), as etcd serves its own applied cluster.
  // A named copy: a range over node_->members().members() would outlive its temporary.
  const synodpb::ClusterMembers members = node_->members();
  for (const synodpb::MemberRecord& record : members.members()) {
    ToEtcdMember(record, response->add_members());
  }
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

}  // namespace synod::server
