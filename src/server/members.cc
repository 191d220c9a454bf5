#include "server/members.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_join.h"
#include "base/assert.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "server/transport.h"

namespace synod::server {

std::string_view ToString(MemberChangeKind kind) {
  switch (kind) {
    case MemberChangeKind::kAdd:
      return "add";
    case MemberChangeKind::kRemove:
      return "remove";
    case MemberChangeKind::kPromote:
      return "promote";
    case MemberChangeKind::kUpdatePeerUrls:
      return "update";
    case MemberChangeKind::kPublish:
      return "publish";
  }
  return "?";
}

Status MemberNotFoundError() {
  return absl::NotFoundError("etcdserver: member not found");
}
Status MemberExistsError() {
  return absl::FailedPreconditionError("etcdserver: member ID already exist");
}
Status PeerUrlExistsError() {
  return absl::FailedPreconditionError("etcdserver: Peer URLs already exists");
}
Status MemberBadUrlsError() {
  return absl::InvalidArgumentError("etcdserver: given member URLs are invalid");
}
Status MemberNotLearnerError() {
  return absl::FailedPreconditionError("etcdserver: can only promote a learner member");
}
Status LearnerNotReadyError() {
  return absl::FailedPreconditionError(
      "etcdserver: can only promote a learner member which is in sync with leader");
}
Status TooManyLearnersError() {
  return absl::FailedPreconditionError("etcdserver: too many learner members in cluster");
}
Status NotEnoughStartedMembersError() {
  return absl::FailedPreconditionError(
      "etcdserver: re-configuration failed due to not enough started members");
}
Status UnhealthyClusterError() {
  return absl::UnavailableError("etcdserver: unhealthy cluster");
}
Status NotLeaderError() {
  return absl::FailedPreconditionError("etcdserver: not leader");
}
Status BadLeaderTransfereeError() {
  return absl::FailedPreconditionError("etcdserver: bad leader transferee");
}
Status LeaderTransferTimedOutError() {
  // etcd has no gRPC mapping for it, so its clients see code Unknown with this text.
  return absl::UnknownError("etcdserver: request timed out, leader transfer took too long");
}

namespace {

Status Malformed(std::string_view why) {
  return absl::DataLossError(fmt::format("member records are malformed: {}", why));
}

size_t LearnerCount(const synodpb::ClusterMembers& members) {
  return static_cast<size_t>(
      std::count_if(members.members().begin(), members.members().end(),
                    [](const synodpb::MemberRecord& m) { return m.is_learner(); }));
}

std::vector<std::string> Sorted(const google::protobuf::RepeatedPtrField<std::string>& urls) {
  std::vector<std::string> sorted(urls.begin(), urls.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

std::vector<std::string> Sorted(std::vector<std::string> urls) {
  std::sort(urls.begin(), urls.end());
  return urls;
}

// Whether any member other than `except` has one of `urls` among its peer URLs.
bool PeerUrlTaken(const synodpb::ClusterMembers& members,
                  const google::protobuf::RepeatedPtrField<std::string>& urls, NodeId except) {
  std::set<std::string> taken;
  for (const synodpb::MemberRecord& member : members.members()) {
    if (NodeId(member.id()) == except) continue;
    taken.insert(member.peer_urls().begin(), member.peer_urls().end());
  }
  return std::any_of(urls.begin(), urls.end(),
                     [&](const std::string& url) { return taken.contains(url); });
}

void InsertSorted(synodpb::ClusterMembers& members, synodpb::MemberRecord record) {
  auto* list = members.mutable_members();
  auto position = std::upper_bound(
      list->begin(), list->end(), record.id(),
      [](uint64_t id, const synodpb::MemberRecord& member) { return id < member.id(); });
  const int at = static_cast<int>(position - list->begin());
  *list->Add() = std::move(record);
  for (int i = list->size() - 1; i > at; --i) list->SwapElements(i, i - 1);
}

synodpb::MemberRecord* FindMutable(synodpb::ClusterMembers& members, NodeId id) {
  for (synodpb::MemberRecord& member : *members.mutable_members()) {
    if (NodeId(member.id()) == id) return &member;
  }
  return nullptr;
}

// etcd's IsReadyToAddVotingMember, IsReadyToRemoveVotingMember and IsReadyToPromoteMember: after
// the change, the started voters must still form a quorum of the voters.
bool EnoughStartedVoters(const synodpb::ClusterMembers& members, MemberChangeKind kind,
                         NodeId target) {
  size_t voters = 0;
  size_t started = 0;
  for (const synodpb::MemberRecord& member : members.members()) {
    if (member.is_learner()) continue;
    if (kind == MemberChangeKind::kRemove && NodeId(member.id()) == target) continue;
    ++voters;
    if (!member.name().empty()) ++started;
  }
  if (kind == MemberChangeKind::kAdd) {
    // The new voter counts toward the quorum but has not started. etcd lets a one-member
    // cluster grow to two regardless (its documented way of restoring a cluster from a backup),
    // because etcd's configuration takes effect when the entry applies. Ours takes effect when
    // it is appended (thesis 4.1), so that entry itself would need the new member to commit,
    // and the cluster would stop until the new member runs: add it as a learner and promote it.
    ++voters;
  } else if (kind == MemberChangeKind::kPromote) {
    // The learner counts as started: it is running, or it could not have caught up.
    ++voters;
    ++started;
  }
  return started >= voters / 2 + 1;
}

}  // namespace

Status CheckWellFormed(const synodpb::ClusterMembers& members) {
  if (static_cast<size_t>(members.members_size()) > kMembersMax) {
    return Malformed(fmt::format("{} members, at most {}", members.members_size(), kMembersMax));
  }
  uint64_t previous = 0;
  for (const synodpb::MemberRecord& member : members.members()) {
    if (member.id() == 0) return Malformed("a member with id 0");
    if (member.id() <= previous) return Malformed("ids not sorted or repeated");
    previous = member.id();
    if (member.peer_urls_size() == 0 ||
        static_cast<size_t>(member.peer_urls_size()) > kMemberUrlsMax ||
        static_cast<size_t>(member.client_urls_size()) > kMemberUrlsMax) {
      return Malformed(fmt::format("member {:x} has {} peer and {} client URLs", member.id(),
                                   member.peer_urls_size(), member.client_urls_size()));
    }
    if (member.name().size() > kMemberNameBytesMax) return Malformed("a name too long");
  }
  if (static_cast<size_t>(members.removed_ids_size()) > kRemovedIdsMax) {
    return Malformed("too many removed ids");
  }
  if (members.ByteSizeLong() > kClusterMembersBytesMax) {
    return Malformed(
        fmt::format("{} bytes, at most {}", members.ByteSizeLong(), kClusterMembersBytesMax));
  }
  previous = 0;
  for (uint64_t id : members.removed_ids()) {
    if (id == 0 || id <= previous) return Malformed("removed ids not sorted or repeated");
    previous = id;
    if (FindMember(members, NodeId(id)) != nullptr) {
      return Malformed(fmt::format("member {:x} is both a member and removed", id));
    }
  }
  return absl::OkStatus();
}

std::string EncodeClusterMembers(const synodpb::ClusterMembers& members) {
  const Status status = CheckWellFormed(members);
  SYNOD_ASSERT_MSG(status.ok(), "encoding malformed member records: {}", status.ToString());
  std::string bytes;
  SYNOD_ASSERT(members.SerializeToString(&bytes));
  return bytes;
}

Result<synodpb::ClusterMembers> DecodeClusterMembers(std::string_view bytes) {
  synodpb::ClusterMembers members;
  if (!members.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Malformed("not a ClusterMembers message");
  }
  if (Status status = CheckWellFormed(members); !status.ok()) return status;
  return members;
}

raft::Membership MembershipOf(const synodpb::ClusterMembers& members) {
  raft::Membership membership;
  for (const synodpb::MemberRecord& member : members.members()) {
    (member.is_learner() ? membership.learners : membership.voters).push_back(NodeId(member.id()));
  }
  // Sorted because the records are.
  SYNOD_ASSERT(membership.IsWellFormed());
  return membership;
}

const synodpb::MemberRecord* FindMember(const synodpb::ClusterMembers& members, NodeId id) {
  for (const synodpb::MemberRecord& member : members.members()) {
    if (NodeId(member.id()) == id) return &member;
  }
  return nullptr;
}

bool IsRemoved(const synodpb::ClusterMembers& members, NodeId id) {
  return std::binary_search(members.removed_ids().begin(), members.removed_ids().end(), id.value());
}

synodpb::ClusterMembers InitialClusterMembers(std::vector<synodpb::MemberRecord> members) {
  std::sort(members.begin(), members.end(),
            [](const auto& a, const auto& b) { return a.id() < b.id(); });
  synodpb::ClusterMembers cluster;
  for (synodpb::MemberRecord& member : members) {
    member.set_is_learner(false);
    *cluster.add_members() = std::move(member);
  }
  const Status status = CheckWellFormed(cluster);
  SYNOD_ASSERT_MSG(status.ok(), "initial cluster: {}", status.ToString());
  return cluster;
}

Status ValidateMemberUrls(const std::vector<std::string>& urls) {
  if (urls.empty() || urls.size() > kMemberUrlsMax) return MemberBadUrlsError();
  for (const std::string& url : urls) {
    if (url.size() > kMemberUrlBytesMax || !PeerUrlToTarget(url).ok()) {
      return MemberBadUrlsError();
    }
  }
  return absl::OkStatus();
}

Result<MemberChangePlan> PlanMemberChange(const synodpb::ClusterMembers& current,
                                          const synodpb::MemberChangeRequest& request,
                                          uint64_t request_id, const ReconfigHealth& health) {
  SYNOD_ASSERT(CheckWellFormed(current).ok());
  const NodeId id(request.member().id());
  const auto kind = static_cast<MemberChangeKind>(request.kind());
  if (id == kNoNode) return MemberNotFoundError();
  // etcd: ErrIDRemoved, answered as "member not found", whatever the change.
  if (IsRemoved(current, id)) return MemberNotFoundError();
  const synodpb::MemberRecord* existing = FindMember(current, id);
  const std::vector<std::string> urls(request.member().peer_urls().begin(),
                                      request.member().peer_urls().end());

  MemberChangePlan plan;
  plan.next = current;
  plan.next.set_request_id(request_id);
  plan.conf_change.node = id;
  switch (kind) {
    case MemberChangeKind::kAdd: {
      if (existing != nullptr) return MemberExistsError();
      if (Status status = ValidateMemberUrls(urls); !status.ok()) return status;
      if (PeerUrlTaken(current, request.member().peer_urls(), kNoNode)) {
        return PeerUrlExistsError();
      }
      const bool learner = request.member().is_learner();
      if (learner && LearnerCount(current) + 1 > kLearnersMax) return TooManyLearnersError();
      if (static_cast<size_t>(current.members_size()) >= kMembersMax) {
        return absl::ResourceExhaustedError(
            fmt::format("etcdserver: a cluster has at most {} members", kMembersMax));
      }
      if (health.strict_reconfig_check) {
        if (!learner && !EnoughStartedVoters(current, kind, id)) {
          return NotEnoughStartedMembersError();
        }
        // etcd's mayAddMember: the member taking the request must reach every voter, or the
        // larger quorum may be out of reach.
        for (const synodpb::MemberRecord& member : current.members()) {
          const NodeId voter(member.id());
          if (member.is_learner() || voter == health.self) continue;
          if (!health.connected(voter)) return UnhealthyClusterError();
        }
      }
      synodpb::MemberRecord record;
      record.set_id(id.value());
      for (const std::string& url : urls) record.add_peer_urls(url);
      record.set_is_learner(learner);
      InsertSorted(plan.next, std::move(record));
      plan.conf_change.type =
          learner ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter;
      break;
    }
    case MemberChangeKind::kRemove: {
      if (existing == nullptr) return MemberNotFoundError();
      if (health.strict_reconfig_check && !existing->is_learner()) {
        if (!EnoughStartedVoters(current, kind, id)) return NotEnoughStartedMembersError();
        // etcd's mayRemoveMember: a member that is down is not part of the active quorum and
        // may go; otherwise the connected voters left must still be a quorum.
        if (id == health.self || health.connected(id)) {
          size_t voters = 0;
          size_t active = 0;
          for (const synodpb::MemberRecord& member : current.members()) {
            if (member.is_learner()) continue;
            ++voters;
            const NodeId voter(member.id());
            if (voter == health.self || health.connected(voter)) ++active;
          }
          if (active - 1 < 1 + (voters - 1) / 2) return UnhealthyClusterError();
        }
      }
      auto* list = plan.next.mutable_members();
      list->erase(
          std::remove_if(list->begin(), list->end(),
                         [&](const synodpb::MemberRecord& m) { return m.id() == id.value(); }),
          list->end());
      auto* removed = plan.next.mutable_removed_ids();
      removed->Add(id.value());
      std::sort(removed->begin(), removed->end());
      if (static_cast<size_t>(removed->size()) > kRemovedIdsMax) {
        // Bounded by dropping the smallest id, which is as good as the oldest for this purpose.
        removed->erase(removed->begin());
      }
      plan.conf_change.type = raft::ConfChangeType::kRemoveNode;
      break;
    }
    case MemberChangeKind::kPromote: {
      if (existing == nullptr) return MemberNotFoundError();
      if (!existing->is_learner()) return MemberNotLearnerError();
      if (health.strict_reconfig_check && !EnoughStartedVoters(current, kind, id)) {
        return NotEnoughStartedMembersError();
      }
      FindMutable(plan.next, id)->set_is_learner(false);
      plan.conf_change.type = raft::ConfChangeType::kPromoteLearner;
      break;
    }
    case MemberChangeKind::kUpdatePeerUrls: {
      if (existing == nullptr) return MemberNotFoundError();
      if (Status status = ValidateMemberUrls(urls); !status.ok()) return status;
      if (PeerUrlTaken(current, request.member().peer_urls(), id)) return PeerUrlExistsError();
      auto* peer_urls = FindMutable(plan.next, id)->mutable_peer_urls();
      peer_urls->Clear();
      for (const std::string& url : urls) peer_urls->Add(std::string(url));
      plan.conf_change.type = raft::ConfChangeType::kUpdateNode;
      break;
    }
    case MemberChangeKind::kPublish: {
      if (existing == nullptr) return MemberNotFoundError();
      const synodpb::MemberRecord& published = request.member();
      if (published.name().size() > kMemberNameBytesMax ||
          static_cast<size_t>(published.client_urls_size()) > kMemberUrlsMax) {
        return absl::InvalidArgumentError("etcdserver: member attributes are too large");
      }
      synodpb::MemberRecord* record = FindMutable(plan.next, id);
      record->set_name(published.name());
      *record->mutable_client_urls() = published.client_urls();
      plan.conf_change.type = raft::ConfChangeType::kUpdateNode;
      break;
    }
    default:
      return absl::InvalidArgumentError(
          fmt::format("unknown member change kind {}", request.kind()));
  }
  if (plan.next.ByteSizeLong() > kClusterMembersBytesMax) {
    return absl::ResourceExhaustedError(fmt::format(
        "etcdserver: the member records would exceed {} bytes", kClusterMembersBytesMax));
  }
  plan.conf_change.context = EncodeClusterMembers(plan.next);
  return plan;
}

void ToEtcdMember(const synodpb::MemberRecord& record, etcdserverpb::Member* member) {
  member->set_id(record.id());
  member->set_name(record.name());
  *member->mutable_peerurls() = record.peer_urls();
  *member->mutable_clienturls() = record.client_urls();
  member->set_islearner(record.is_learner());
}

Result<NodeId> FindJoiningMember(const synodpb::ClusterMembers& cluster,
                                 const std::vector<InitialClusterMember>& initial_cluster,
                                 const std::vector<std::string>& advertise_peer_urls) {
  const std::vector<std::string> own = Sorted(advertise_peer_urls);
  NodeId found;
  for (const synodpb::MemberRecord& member : cluster.members()) {
    const std::vector<std::string> urls = Sorted(member.peer_urls());
    auto listed =
        std::find_if(initial_cluster.begin(), initial_cluster.end(),
                     [&](const InitialClusterMember& m) { return Sorted(m.peer_urls) == urls; });
    if (listed == initial_cluster.end()) {
      return absl::FailedPreconditionError(fmt::format(
          "member {:x} of the cluster (peer URLs {}) is not in --initial-cluster; start with the "
          "--initial-cluster that etcdctl member add printed",
          member.id(), absl::StrJoin(urls, ",")));
    }
    if (urls == own) found = NodeId(member.id());
  }
  if (static_cast<size_t>(cluster.members_size()) != initial_cluster.size()) {
    return absl::FailedPreconditionError(fmt::format(
        "--initial-cluster lists {} members but the cluster has {} (member count is unequal)",
        initial_cluster.size(), cluster.members_size()));
  }
  if (found == kNoNode) {
    return absl::FailedPreconditionError(fmt::format(
        "no member of the cluster has this member's peer URLs {}; add it first with etcdctl "
        "member add --peer-urls={}",
        absl::StrJoin(own, ","), absl::StrJoin(own, ",")));
  }
  return found;
}

}  // namespace synod::server
