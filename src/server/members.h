#pragma once

// The cluster's member records (etcd's membership.RaftCluster): for every member its id, name,
// peer URLs, client URLs and whether it is a learner, as etcd's Cluster API shows them.
//
// Where they live. The records are replicated state: every configuration entry's data is the
// complete set of records after its change (synodpb::ClusterMembers, never a delta), and the
// kv::Store keeps the latest applied set as its membership blob, in the same backend commit as
// the applied index. So every member, a restarted one and one that installed a snapshot agree on
// them, and a member that joins late learns them from the first configuration entry it applies
// (or from the snapshot it installs), even though the initial members of a new cluster are not
// in the log (each initial member builds them from --initial-cluster, identically).
//
// Every change to the records is a configuration entry, also those that leave the Raft
// configuration as it is (a member's new peer URLs, the name and client URLs a starting member
// publishes: raft::ConfChangeType::kUpdateNode). That orders them with the additions and
// removals, and because the core lets only one configuration entry be uncommitted at a time, the
// leader computes the next complete set from the applied set with no change in between (the
// node also waits until the latest configuration entry is applied, see Node::ChangeMembers).
//
// This file holds the pure part: the codec, and the checks etcd makes before a change
// (membership.ValidateConfigurationChange and --strict-reconfig-check's quorum checks), which
// turn a request into the Raft change and the next record set.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/types.h"
#include "synod/peer.pb.h"
#include "synod/request.pb.h"

namespace synod::server {

// Limits (invalid input is refused, never adjusted).
inline constexpr size_t kMembersMax = 64;
inline constexpr size_t kMemberUrlsMax = 16;
inline constexpr size_t kMemberUrlBytesMax = 1024;
inline constexpr size_t kMemberNameBytesMax = 1024;
// Removed ids are kept for good (etcd keeps them too); this bounds the blob, not the history:
// beyond it the oldest are forgotten, which only allows a very old id to be drawn again.
inline constexpr size_t kRemovedIdsMax = 1024;
// The encoded set must fit the store's membership blob (storage::Backend::kMembershipBytesMax;
// node.cc asserts that statically). A change that would exceed it is refused.
inline constexpr size_t kClusterMembersBytesMax = 64 << 10;
// etcd 3.4's membership.maxLearners.
inline constexpr size_t kLearnersMax = 1;

// synodpb::MemberChangeRequest::kind.
enum class MemberChangeKind : uint32_t {
  kAdd = 1,
  kRemove = 2,
  kPromote = 3,
  kUpdatePeerUrls = 4,
  kPublish = 5,
};
std::string_view ToString(MemberChangeKind kind);

// etcd's errors for the Cluster and Maintenance calls (v3rpc/rpctypes/error.go), code for code
// and word for word: etcdctl prints them as they are.
Status MemberNotFoundError();
Status MemberExistsError();
Status PeerUrlExistsError();
Status MemberBadUrlsError();
Status MemberNotLearnerError();
Status LearnerNotReadyError();
Status TooManyLearnersError();
Status NotEnoughStartedMembersError();
Status UnhealthyClusterError();
Status NotLeaderError();
Status BadLeaderTransfereeError();
Status LeaderTransferTimedOutError();
// What a removed member is told is transport.h's kRemovedMemberMessage: its peers refuse it with
// it, and it stops when it hears it or applies its own removal.

// The checks every decoded set passes: ids non-zero, sorted and unique, within the limits,
// removed ids sorted and disjoint from the members.
Status CheckWellFormed(const synodpb::ClusterMembers& members);
// Encodes a well-formed set (asserted).
std::string EncodeClusterMembers(const synodpb::ClusterMembers& members);
// DataLoss when the bytes are not a well-formed set.
Result<synodpb::ClusterMembers> DecodeClusterMembers(std::string_view bytes);

// The Raft configuration the records describe.
raft::Membership MembershipOf(const synodpb::ClusterMembers& members);
// nullptr when `id` is not a member.
const synodpb::MemberRecord* FindMember(const synodpb::ClusterMembers& members, NodeId id);
bool IsRemoved(const synodpb::ClusterMembers& members, NodeId id);

// The records of a new cluster, from --initial-cluster: every member a voter, named, without
// client URLs until it publishes them. Sorted here.
synodpb::ClusterMembers InitialClusterMembers(std::vector<synodpb::MemberRecord> members);

// "etcdserver: given member URLs are invalid" unless every URL is http://host:port, and there
// is at least one and at most kMemberUrlsMax.
Status ValidateMemberUrls(const std::vector<std::string>& urls);

// What the leader knows about the other members when it checks a change; etcd makes these
// checks only with --strict-reconfig-check, which is on by default in etcd 3.4.
struct ReconfigHealth {
  NodeId self;
  bool strict_reconfig_check = true;
  // Whether the leader has a working connection to the member (Transport::IsConnected).
  std::function<bool(NodeId)> connected;
};

struct MemberChangePlan {
  // What the core is asked to do; its context is the encoded `next`.
  raft::ConfChange conf_change;
  // The complete records after the change; its request_id is the one given.
  synodpb::ClusterMembers next;
};

// etcd's checks of a change against the current records, in etcd's order, with its errors:
//   add      member ID already exist (also for a removed id: member not found, as etcd), Peer
//            URLs already exists, too many learner members; strict: not enough started members
//            (a voter), unhealthy cluster (the leader is not connected to every voter);
//   remove   member not found; strict, for a voter: not enough started members, unhealthy
//            cluster (the removal would leave fewer connected voters than a quorum);
//   promote  member not found, can only promote a learner member; strict: not enough started
//            members. Whether the learner has caught up is the caller's check (it needs the
//            leader's progress): LearnerNotReadyError;
//   update   member not found, Peer URLs already exists (used by another member);
//   publish  member not found.
// Unlike etcd, a one-voter cluster may not add a second voter (not enough started members):
// see EnoughStartedVoters in members.cc.
// A member is "started" once it has a name (etcd's Member.IsStarted), which the initial
// members have from --initial-cluster and an added member gets when it publishes.
Result<MemberChangePlan> PlanMemberChange(const synodpb::ClusterMembers& current,
                                          const synodpb::MemberChangeRequest& request,
                                          uint64_t request_id, const ReconfigHealth& health);

// The record for etcd's Member message.
void ToEtcdMember(const synodpb::MemberRecord& record, etcdserverpb::Member* member);

// A member started with --initial-cluster-state existing learns its id from the running
// cluster, as etcd's ValidateClusterAndAssignIDs does: every member of the cluster must appear
// in --initial-cluster with the same peer URLs (etcdctl member add prints that list), and this
// member is the one whose peer URLs are its --initial-advertise-peer-urls. Errors
// (FailedPrecondition) say what does not match, and suggest etcdctl member add when this member
// is missing.
struct InitialClusterMember {
  std::string name;
  std::vector<std::string> peer_urls;
};
Result<NodeId> FindJoiningMember(const synodpb::ClusterMembers& cluster,
                                 const std::vector<InitialClusterMember>& initial_cluster,
                                 const std::vector<std::string>& advertise_peer_urls);

}  // namespace synod::server
