// etcd's Cluster service (member add, remove, update, promote) and Maintenance.MoveLeader, over
// Node::ChangeMembers and Node::MoveLeader. The checks and the errors are etcd 3.4's
// (server/members.h lists them); etcdctl prints the errors as they come.

#include <algorithm>
#include <chrono>

#include "server/members.h"
#include "server/services.h"

namespace synod::server {
namespace {

using Clock = std::chrono::steady_clock;

// The longest MoveLeader waits when its client set no deadline (etcdctl's is 5 s).
constexpr std::chrono::seconds kMoveLeaderWaitMax{60};

// Proposes the change, then answers with the records this member has applied, which include it.
template <typename Response>
grpc::Status ChangeAndList(Node* node, const synodpb::MemberChangeRequest& change,
                           Response* response) {
  Result<Index> index = node->ChangeMembers(change);
  if (!index.ok()) return ToGrpc(index.status());
  // A named copy: a range over node->members().members() would outlive its temporary.
  const synodpb::ClusterMembers members = node->members();
  for (const synodpb::MemberRecord& record : members.members()) {
    ToEtcdMember(record, response->add_members());
  }
  FillMemberHeader(*node, response->mutable_header());
  return grpc::Status::OK;
}

synodpb::MemberChangeRequest Change(MemberChangeKind kind, uint64_t id) {
  synodpb::MemberChangeRequest change;
  change.set_kind(static_cast<uint32_t>(kind));
  change.mutable_member()->set_id(id);
  return change;
}

}  // namespace

NodeId ClusterService::NewMemberId() {
  const synodpb::ClusterMembers members = node_->members();
  std::lock_guard lock(id_mutex_);
  while (true) {
    const NodeId id(id_prng_.NextU64());
    if (id != kNoNode && FindMember(members, id) == nullptr && !IsRemoved(members, id)) return id;
  }
}

grpc::Status ClusterService::MemberAdd(grpc::ServerContext*,
                                       const etcdserverpb::MemberAddRequest* request,
                                       etcdserverpb::MemberAddResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  const std::vector<std::string> urls(request->peerurls().begin(), request->peerurls().end());
  if (Status status = ValidateMemberUrls(urls); !status.ok()) return ToGrpc(status);
  const NodeId id = NewMemberId();
  synodpb::MemberChangeRequest change = Change(MemberChangeKind::kAdd, id.value());
  *change.mutable_member()->mutable_peer_urls() = request->peerurls();
  change.mutable_member()->set_is_learner(request->islearner());
  grpc::Status status = ChangeAndList(node_, change, response);
  if (!status.ok()) return status;
  // etcd answers with the new member's id, peer URLs and learner flag (it has no name yet).
  etcdserverpb::Member* added = response->mutable_member();
  added->set_id(id.value());
  *added->mutable_peerurls() = request->peerurls();
  added->set_islearner(request->islearner());
  return grpc::Status::OK;
}

grpc::Status ClusterService::MemberRemove(grpc::ServerContext*,
                                          const etcdserverpb::MemberRemoveRequest* request,
                                          etcdserverpb::MemberRemoveResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  return ChangeAndList(node_, Change(MemberChangeKind::kRemove, request->id()), response);
}

grpc::Status ClusterService::MemberUpdate(grpc::ServerContext*,
                                          const etcdserverpb::MemberUpdateRequest* request,
                                          etcdserverpb::MemberUpdateResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  const std::vector<std::string> urls(request->peerurls().begin(), request->peerurls().end());
  if (Status status = ValidateMemberUrls(urls); !status.ok()) return ToGrpc(status);
  synodpb::MemberChangeRequest change = Change(MemberChangeKind::kUpdatePeerUrls, request->id());
  *change.mutable_member()->mutable_peer_urls() = request->peerurls();
  return ChangeAndList(node_, change, response);
}

grpc::Status ClusterService::MemberPromote(grpc::ServerContext*,
                                           const etcdserverpb::MemberPromoteRequest* request,
                                           etcdserverpb::MemberPromoteResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  return ChangeAndList(node_, Change(MemberChangeKind::kPromote, request->id()), response);
}

grpc::Status MaintenanceService::MoveLeader(grpc::ServerContext* context,
                                            const etcdserverpb::MoveLeaderRequest* request,
                                            etcdserverpb::MoveLeaderResponse*) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  // etcd waits for as long as its client does; so do we, up to a bound.
  const auto client_wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      context->deadline() - std::chrono::system_clock::now());
  const auto wait = std::clamp<std::chrono::milliseconds>(client_wait, std::chrono::milliseconds(0),
                                                          kMoveLeaderWaitMax);
  // etcd answers with an empty response, header included.
  return ToGrpc(node_->MoveLeader(NodeId(request->targetid()), Clock::now() + wait));
}

}  // namespace synod::server
