#include "server/services.h"


#include <cstdio>
#include <filesystem>
#include <system_error>
#include <variant>

#include "kv/errors.h"
#include "server/etcd_snapshot_file.h"
#include "storage/bolt_format.h"
#include "storage/bolt_writer.h"
#include "storage/crc32c.h"
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

grpc::Status RefuseOnLearner(const Node& node) {
  const NodeStatus status = node.status();
  if (!status.membership.IsLearner(status.id)) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: rpc not supported for learner");
}

void FillMemberHeader(const Node& node, etcdserverpb::ResponseHeader* header) {
  header->set_cluster_id(node.cluster_id());
  header->set_member_id(node.id().value());
  header->set_raft_term(node.status().term.value());
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

// ---- StoreSize --------------------------------------------------------------------------------

StoreSize::StoreSize(std::string kv_dir, std::function<int64_t()> unflushed_bytes)
    : kv_dir_(std::move(kv_dir)), unflushed_bytes_(std::move(unflushed_bytes)) {}

int64_t StoreSize::Bytes() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (!scanned_at_ || now - *scanned_at_ >= kRescanInterval) {
    // Its database and log files, not RocksDB's info log or options files, which say nothing
    // about the data.
    std::error_code error;
    int64_t total = 0;
    for (auto it = std::filesystem::recursive_directory_iterator(kv_dir_, error);
         !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (name.starts_with("LOG") || name.starts_with("OPTIONS")) continue;
      if (it->is_regular_file(error)) total += static_cast<int64_t>(it->file_size(error));
    }
    bytes_ = total + unflushed_bytes_();
    scanned_at_ = now;
  }
  return bytes_;
}

void StoreSize::Rescan() {
  std::lock_guard lock(mutex_);
  scanned_at_.reset();
}

namespace {

// What a write costs against the quota (etcd's quotaKVServer and quotaLeaseServer): nothing
// for a request that cannot grow the store.
std::optional<int64_t> QuotaCost(const synodpb::Request& request) {
  // etcd's cost of a put: the key-value pair plus its index entry, roughly.
  if (request.has_put()) return static_cast<int64_t>(request.put().ByteSizeLong()) + 512;
  if (request.has_txn()) return static_cast<int64_t>(request.txn().ByteSizeLong());
  // etcd's lease cost is a small fixed size.
  if (request.has_lease_grant()) return 64;
  return std::nullopt;
}

// The response of type Response in an applied request's outcome, with etcd's header.
template <typename Response>
Result<Response> ResponseOf(const Node& node, Result<kv::CommandResult> result) {
  if (!result.ok()) return result.status();
  if (!result->status.ok()) return result->status;
  Response* answered = std::get_if<Response>(&result->response);
  if (answered == nullptr) return absl::InternalError("etcdserver: unexpected response type");
  Response response = std::move(*answered);
  FillHeader(node, response.mutable_header());
  return response;
}

// Validates `proposal`, applies etcd's quota (when the store plus the request's cost would pass
// it, raises the replicated NOSPACE alarm for this member through the log, so every member
// refuses writes from then on, and refuses), proposes it, and answers through `done` with the
// response of type Response once it is applied here. Runs `done` on the node's loop or here.
template <typename Response>
void ProposeForResponse(Node* node, const ServiceOptions& options,
                        synodpb::Request proposal, Completion<Result<Response>> done) {
  if (grpc::Status refused = RefuseOnLearner(*node); !refused.ok()) {
    done.Complete(Status(static_cast<absl::StatusCode>(refused.error_code()),
                         refused.error_message()));
    return;
  }
  // etcd checks the quota before the request itself (its quota servers wrap the others).
  const std::optional<int64_t> cost_bytes = QuotaCost(proposal);
  if (cost_bytes && options.store_size != nullptr && options.quota_backend_bytes >= 0 &&
      options.store_size->Bytes() + *cost_bytes >= options.quota_backend_bytes) {
    synodpb::Request raise;
    raise.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
    raise.mutable_alarm()->set_memberid(node->id().value());
    raise.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
    node->ProposeAsync(std::move(raise),
                       ProposalDone([done = std::move(done)](
                                        Result<kv::CommandResult> raised) mutable {
                         done.Complete(raised.ok() ? kv::NoSpaceError() : raised.status());
                       }));
    return;
  }
  if (Status status = kv::ValidateRequest(proposal); !status.ok()) {
    done.Complete(std::move(status));
    return;
  }
  if (proposal.ByteSizeLong() > options.max_request_bytes) {
    done.Complete(RequestTooLargeError());
    return;
  }
  node->ProposeAsync(std::move(proposal),
                     ProposalDone([node, done = std::move(done)](
                                      Result<kv::CommandResult> result) mutable {
                       done.Complete(ResponseOf<Response>(*node, std::move(result)));
                     }));
}

// ProposeForResponse for a caller that waits on its own thread.
template <typename Response>
Result<Response> ProposeAndWait(Node* node, const ServiceOptions& options,
                                synodpb::Request proposal) {
  auto [done, future] = CompletionWithFuture<Result<Response>>();
  ProposeForResponse(node, options, std::move(proposal), std::move(done));
  // The node answers within its request timeout; the margin only guards against a stuck loop.
  if (future.wait_for(node->request_timeout() + std::chrono::seconds(1)) !=
      std::future_status::ready) {
    return RequestTimedOutError();
  }
  return future.get();
}

// ProposeAndWait for a synchronous gRPC handler.
template <typename Response>
grpc::Status ProposeAndAnswer(Node* node, const ServiceOptions& options,
                              synodpb::Request proposal, Response* response) {
  Result<Response> result =
      ProposeAndWait<Response>(node, options, std::move(proposal));
  if (!result.ok()) return ToGrpc(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

// Finishes a call on gRPC's callback API with `response` or the error.
template <typename Response>
Completion<Result<Response>> FinishWith(grpc::ServerUnaryReactor* reactor, Response* response) {
  return Completion<Result<Response>>([reactor, response](Result<Response> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpc(result.status()));
      return;
    }
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  });
}

// ProposeForResponse for a handler on gRPC's callback API: the loop finishes the call.
template <typename Response>
grpc::ServerUnaryReactor* ProposeAndFinish(grpc::CallbackServerContext* context, Node* node,
                                           const ServiceOptions& options,
                                           synodpb::Request proposal, Response* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ProposeForResponse(node, options, std::move(proposal), FinishWith(reactor, response));
  return reactor;
}

synodpb::Request TxnProposal(const etcdserverpb::TxnRequest& request) {
  // Every transaction goes through the log, read-only ones included: simpler than etcd's
  // read-only fast path, and just as linearizable.
  synodpb::Request proposal;
  *proposal.mutable_txn() = request;
  return proposal;
}

synodpb::Request DeleteRangeProposal(const etcdserverpb::DeleteRangeRequest& request) {
  synodpb::Request proposal;
  *proposal.mutable_delete_range() = request;
  return proposal;
}

}  // namespace

Result<etcdserverpb::RangeResponse> KvService::ReadRange(const etcdserverpb::RangeRequest& request,
                                                         ReadFrom from) const {
  auto result = node_->ReadStore([&](const kv::Store& store) {
    return from == ReadFrom::kMemoryOnly ? store.RangeInMemory(request) : store.Range(request);
  });
  if (!result.ok()) return result.status();
  FillHeader(*node_, result->mutable_header());
  return result;
}

Status KvService::CheckRange(const etcdserverpb::RangeRequest& request) const {
  if (!request.serializable()) {
    if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) {
      return Status(static_cast<absl::StatusCode>(refused.error_code()), refused.error_message());
    }
  }
  return ValidateRange(request);
}

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* context,
                                           const etcdserverpb::RangeRequest* request,
                                           etcdserverpb::RangeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Completion<Result<etcdserverpb::RangeResponse>> done = FinishWith(reactor, response);
  if (Status status = CheckRange(*request); !status.ok()) {
    done.Complete(std::move(status));
    return reactor;
  }
  // A serializable read takes whatever this member has applied, here and now.
  if (request->serializable()) {
    done.Complete(ReadRange(*request));
    return reactor;
  }
  // Thesis 6.4: a linearizable read waits for a read index confirmed by a quorum and applied
  // here. The node's loop reports that, and the read runs there or on the reader pool.
  node_->WaitLinearizableReadAsync(
      ReadDone([this, request, done = std::move(done)](Status status) mutable {
        if (!status.ok()) {
          done.Complete(std::move(status));
          return;
        }
        // A read of one key at the newest revision is a lookup in the key index and one point
        // read (kv/key_index.h), shorter than the hand-off to the pool (a thread wake-up, tens
        // of microseconds on an idle vCPU). The loop must never wait on disk, so it reads from
        // memory only and leaves a row that is only on disk to the pool.
        if (request->range_end().empty() && request->revision() <= 0) {
          Result<etcdserverpb::RangeResponse> read = ReadRange(*request, ReadFrom::kMemoryOnly);
          if (read.ok()) {
            done.Complete(std::move(read));
            return;
          }
        }
        readers_.Post([this, request, done = std::move(done)]() mutable {
          done.Complete(ReadRange(*request));
        });
      }));
  return reactor;
}

Result<etcdserverpb::RangeResponse> KvService::RangeAndWait(
    const etcdserverpb::RangeRequest& request) {
  if (Status status = CheckRange(request); !status.ok()) return status;
  if (!request.serializable()) {
    if (Status status = node_->WaitLinearizableRead(); !status.ok()) return status;
  }
  return ReadRange(request);
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* context,
                                         const etcdserverpb::PutRequest* request,
                                         etcdserverpb::PutResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_put() = *request;
  return ProposeAndFinish(context, node_, options_, std::move(proposal), response);
}

grpc::ServerUnaryReactor* KvService::DeleteRange(grpc::CallbackServerContext* context,
                                                 const etcdserverpb::DeleteRangeRequest* request,
                                                 etcdserverpb::DeleteRangeResponse* response) {
  return ProposeAndFinish(context, node_, options_, DeleteRangeProposal(*request),
                          response);
}

grpc::ServerUnaryReactor* KvService::Txn(grpc::CallbackServerContext* context,
                                         const etcdserverpb::TxnRequest* request,
                                         etcdserverpb::TxnResponse* response) {
  return ProposeAndFinish(context, node_, options_, TxnProposal(*request),
                          response);
}

grpc::ServerUnaryReactor* KvService::Compact(grpc::CallbackServerContext* context,
                                             const etcdserverpb::CompactionRequest* request,
                                             etcdserverpb::CompactionResponse* response) {
  synodpb::Request proposal;
  *proposal.mutable_compaction() = *request;
  return ProposeAndFinish(context, node_, options_, std::move(proposal), response);
}

Result<etcdserverpb::TxnResponse> KvService::TxnAndWait(const etcdserverpb::TxnRequest& request) {
  return ProposeAndWait<etcdserverpb::TxnResponse>(node_, options_,
                                                   TxnProposal(request));
}

Result<etcdserverpb::DeleteRangeResponse> KvService::DeleteRangeAndWait(
    const etcdserverpb::DeleteRangeRequest& request) {
  return ProposeAndWait<etcdserverpb::DeleteRangeResponse>(node_, options_,
                                                           DeleteRangeProposal(request));
}

grpc::Status LeaseService::LeaseGrant(grpc::ServerContext*,
                                      const etcdserverpb::LeaseGrantRequest* request,
                                      etcdserverpb::LeaseGrantResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  synodpb::Request proposal;
  *proposal.mutable_lease_grant() = *request;
  // The id is chosen before proposing, so every replica grants the same lease.
  if (request->id() == 0) proposal.mutable_lease_grant()->set_id(node_->NewLeaseId());
  return ProposeAndAnswer(node_, options_, std::move(proposal), response);
}

grpc::Status LeaseService::LeaseRevoke(grpc::ServerContext*,
                                       const etcdserverpb::LeaseRevokeRequest* request,
                                       etcdserverpb::LeaseRevokeResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
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
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
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
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
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

// Beyond this many leases, LeaseLeases orders by stored TTLs rather than asking the loop for each
// deadline.
constexpr size_t kLeasesByLeaderClockMax = 10000;

grpc::Status LeaseService::LeaseLeases(grpc::ServerContext*,
                                       const etcdserverpb::LeaseLeasesRequest*,
                                       etcdserverpb::LeaseLeasesResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  auto leases = node_->ReadStore([](const kv::Store& store) { return store.Leases(); });
  if (!leases.ok()) return ToGrpc(leases.status());
  // etcd lists leases soonest expiry first (lessor.Leases sorts by expiry). The leader knows
  // each deadline; elsewhere the stored remaining TTL (granted or last checkpointed) stands in.
  std::vector<std::pair<int64_t, int64_t>> by_expiry;  // (remaining ms, id)
  bool leader_clock = leases->size() <= kLeasesByLeaderClockMax;
  for (const kv::LeaseInfo& lease : *leases) {
    int64_t remaining_ms = lease.remaining_ttl_s * 1000;
    if (leader_clock) {
      Result<int64_t> on_leader = node_->LeaseRemainingMs(lease.id);
      if (on_leader.ok()) {
        remaining_ms = *on_leader;
      } else if (absl::IsFailedPrecondition(on_leader.status())) {
        leader_clock = false;  // Not the leader.
      }
    }
    by_expiry.emplace_back(remaining_ms, lease.id);
  }
  std::sort(by_expiry.begin(), by_expiry.end());
  for (const auto& [remaining_ms, id] : by_expiry) response->add_leases()->set_id(id);
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
  // etcd lists every raised alarm, in the text form of its AlarmMember (trailing space included).
  const std::vector<etcdserverpb::AlarmMember> alarms =
      node_->ReadStore([](const kv::Store& store) { return store.alarms(); });
  for (const etcdserverpb::AlarmMember& alarm : alarms) {
    response->add_errors(fmt::format("memberID:{} alarm:{} ", alarm.memberid(),
                                     etcdserverpb::AlarmType_Name(alarm.alarm())));
  }
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::HashKV(grpc::ServerContext*,
                                        const etcdserverpb::HashKVRequest* request,
                                        etcdserverpb::HashKVResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
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

grpc::Status MaintenanceService::Alarm(grpc::ServerContext*,
                                       const etcdserverpb::AlarmRequest* request,
                                       etcdserverpb::AlarmResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  // Every action goes through the log, GET included, as in etcd (so a list is linearizable).
  synodpb::Request proposal;
  *proposal.mutable_alarm() = *request;
  grpc::Status status = ProposeAndAnswer(node_, options_, std::move(proposal), response);
  // etcd 3.4's applier answers alarms without a header (etcdctl alarm list -w json prints {}).
  response->clear_header();
  return status;
}

grpc::Status MaintenanceService::Defragment(grpc::ServerContext*,
                                            const etcdserverpb::DefragmentRequest*,
                                            etcdserverpb::DefragmentResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  synod::Status status = node_->ReadStore([](const kv::Store& store) { return store.Defragment(); });
  // The quota must see the space defragmentation freed at once, not a scan later.
  if (options_.store_size != nullptr) options_.store_size->Rescan();
  if (!status.ok()) return ToGrpc(status);
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::Hash(grpc::ServerContext*, const etcdserverpb::HashRequest*,
                                      etcdserverpb::HashResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  // etcd hashes its whole database file (CRC32C); ours covers every row of every table, as the
  // snapshot stream carries them. Like etcd's, it differs between members (the applied index
  // is in it); HashKV is the one to compare across members.
  auto source = node_->OpenSnapshotSource(Index(0));
  if (!source.ok()) return ToGrpc(source.status());
  storage::Crc32c crc;
  for (;;) {
    Result<std::optional<std::string>> chunk = (*source)();
    if (!chunk.ok()) return ToGrpc(chunk.status());
    if (!chunk->has_value()) break;
    crc.Update(**chunk);
  }
  response->set_hash(crc.Finish());
  FillHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status MaintenanceService::Snapshot(
    grpc::ServerContext* context, const etcdserverpb::SnapshotRequest*,
    grpc::ServerWriter<etcdserverpb::SnapshotResponse>* writer) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  // etcd tells the client how many bytes remain in every response, so the size must be known
  // before the first one: the snapshot goes to an anonymous temporary file first (removed by
  // the kernel when closed, even if this process dies).
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::tmpfile(), &std::fclose);
  if (file == nullptr) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "etcdserver: cannot create a snapshot file");
  }
  const int fd = fileno(file.get());
  const std::string path = "the snapshot file";
  storage::BoltWriter bolt(fd, path);
  Result<kv::EtcdBackupSummary> written = node_->WriteEtcdSnapshot(bolt);
  if (!written.ok()) return ToGrpc(written.status());
  // etcd's own snapshot is its bolt file followed by the SHA-256 of it, which etcdctl checks.
  const uint64_t db_bytes = bolt.pages() * storage::bolt::kPageBytes;
  if (synod::Status status = AppendSha256Trailer(fd, db_bytes, path); !status.ok()) {
    return ToGrpc(status);
  }
  const uint64_t total_bytes = db_bytes + kSnapshotSha256Bytes;
  std::rewind(file.get());
  // etcd's piece size (maintenance.go snapshotSendBufferSize).
  constexpr size_t kPieceBytes = 32 * 1024;
  std::string piece(kPieceBytes, '\0');
  uint64_t remaining = total_bytes;
  while (remaining > 0) {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    const size_t size = std::fread(piece.data(), 1, std::min<uint64_t>(kPieceBytes, remaining),
                                   file.get());
    if (size == 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "etcdserver: cannot read the snapshot file");
    }
    remaining -= size;
    etcdserverpb::SnapshotResponse response;
    response.set_remaining_bytes(remaining);
    response.set_blob(piece.data(), size);
    if (!writer->Write(response)) return grpc::Status::CANCELLED;
  }
  return grpc::Status::OK;
}

grpc::Status ClusterService::MemberList(grpc::ServerContext*,
                                        const etcdserverpb::MemberListRequest*,
                                        etcdserverpb::MemberListResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  // The applied records (server/members.h), as etcd serves its own applied cluster.
  // A named copy: a range over node_->members().members() would outlive its temporary.
  const synodpb::ClusterMembers members = node_->members();
  for (const synodpb::MemberRecord& record : members.members()) {
    ToEtcdMember(record, response->add_members());
  }
  FillMemberHeader(*node_, response->mutable_header());
  return grpc::Status::OK;
}

}  // namespace synod::server
