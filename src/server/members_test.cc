// The member records: their codec, and etcd's checks of a change with etcd's errors
// (membership.ValidateConfigurationChange and --strict-reconfig-check).

#include "server/members.h"

#include <gtest/gtest.h>

#include <set>

namespace synod::server {
namespace {

synodpb::MemberRecord Record(uint64_t id, std::string name, std::string peer_url,
                             bool learner = false) {
  synodpb::MemberRecord record;
  record.set_id(id);
  record.set_name(std::move(name));
  record.add_peer_urls(std::move(peer_url));
  record.set_is_learner(learner);
  return record;
}

synodpb::ClusterMembers ThreeMembers() {
  return InitialClusterMembers({Record(0x30, "m3", "http://127.0.0.1:3380"),
                                Record(0x10, "m1", "http://127.0.0.1:1380"),
                                Record(0x20, "m2", "http://127.0.0.1:2380")});
}

synodpb::MemberChangeRequest Change(MemberChangeKind kind, uint64_t id,
                                    std::vector<std::string> peer_urls = {}, bool learner = false) {
  synodpb::MemberChangeRequest request;
  request.set_kind(static_cast<uint32_t>(kind));
  request.mutable_member()->set_id(id);
  for (std::string& url : peer_urls) request.mutable_member()->add_peer_urls(std::move(url));
  request.mutable_member()->set_is_learner(learner);
  return request;
}

// The leader is member 0x10 and reaches everyone in `connected`.
ReconfigHealth Health(std::set<uint64_t> connected = {0x10, 0x20, 0x30, 0x40}) {
  ReconfigHealth health;
  health.self = NodeId(0x10);
  health.connected = [connected](NodeId id) { return connected.contains(id.value()); };
  return health;
}

Status PlanError(const synodpb::ClusterMembers& current,
                 const synodpb::MemberChangeRequest& request,
                 const ReconfigHealth& health = Health()) {
  return PlanMemberChange(current, request, 1, health).status();
}

TEST(MemberRecords, RoundTripAndMembership) {
  synodpb::ClusterMembers members = ThreeMembers();
  members.mutable_members(1)->set_is_learner(true);
  members.add_removed_ids(0x5);
  auto decoded = DecodeClusterMembers(EncodeClusterMembers(members));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->SerializeAsString(), members.SerializeAsString());
  const raft::Membership membership = MembershipOf(*decoded);
  EXPECT_EQ(membership.voters, (std::vector<NodeId>{NodeId(0x10), NodeId(0x30)}));
  EXPECT_EQ(membership.learners, (std::vector<NodeId>{NodeId(0x20)}));
  EXPECT_TRUE(IsRemoved(*decoded, NodeId(0x5)));
  EXPECT_FALSE(IsRemoved(*decoded, NodeId(0x10)));
  ASSERT_NE(FindMember(*decoded, NodeId(0x20)), nullptr);
  EXPECT_EQ(FindMember(*decoded, NodeId(0x20))->name(), "m2");
}

TEST(MemberRecords, DecodeRefusesWhatCannotBe) {
  EXPECT_EQ(DecodeClusterMembers("\xff\xff").status().code(), absl::StatusCode::kDataLoss);
  synodpb::ClusterMembers unsorted;
  *unsorted.add_members() = Record(2, "b", "http://b:1");
  *unsorted.add_members() = Record(1, "a", "http://a:1");
  EXPECT_EQ(DecodeClusterMembers(unsorted.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
  synodpb::ClusterMembers both = ThreeMembers();
  both.add_removed_ids(0x20);
  EXPECT_EQ(DecodeClusterMembers(both.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
  synodpb::ClusterMembers zero;
  *zero.add_members() = Record(0, "z", "http://z:1");
  EXPECT_EQ(DecodeClusterMembers(zero.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
  // An empty set (a member that joined and has applied nothing yet) is fine.
  EXPECT_TRUE(DecodeClusterMembers("").ok());
}

TEST(MemberChange, AddLearnerThenPromote) {
  const synodpb::ClusterMembers three = ThreeMembers();
  auto added = PlanMemberChange(
      three, Change(MemberChangeKind::kAdd, 0x25, {"http://127.0.0.1:4380"}, true), 77, Health());
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->conf_change.type, raft::ConfChangeType::kAddLearner);
  EXPECT_EQ(added->conf_change.node, NodeId(0x25));
  EXPECT_EQ(added->next.request_id(), 77u);
  // Sorted in by id, without a name until it publishes one.
  ASSERT_EQ(added->next.members_size(), 4);
  EXPECT_EQ(added->next.members(2).id(), 0x25u);
  EXPECT_TRUE(added->next.members(2).is_learner());
  EXPECT_EQ(added->next.members(2).name(), "");
  // The context is the complete next set.
  auto context = DecodeClusterMembers(added->conf_change.context);
  ASSERT_TRUE(context.ok());
  EXPECT_EQ(context->SerializeAsString(), added->next.SerializeAsString());

  // etcd 3.4 allows one learner.
  EXPECT_EQ(
      PlanError(added->next, Change(MemberChangeKind::kAdd, 0x26, {"http://127.0.0.1:5380"}, true)),
      TooManyLearnersError());

  auto promoted =
      PlanMemberChange(added->next, Change(MemberChangeKind::kPromote, 0x25), 78, Health());
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->conf_change.type, raft::ConfChangeType::kPromoteLearner);
  EXPECT_FALSE(FindMember(promoted->next, NodeId(0x25))->is_learner());
  EXPECT_EQ(PlanError(promoted->next, Change(MemberChangeKind::kPromote, 0x25)),
            MemberNotLearnerError());
}

TEST(MemberChange, EtcdErrorsForBadAdds) {
  const synodpb::ClusterMembers three = ThreeMembers();
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kAdd, 0x20, {"http://127.0.0.1:9380"})),
            MemberExistsError());
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kAdd, 0x40, {"http://127.0.0.1:2380"})),
            PeerUrlExistsError());
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kAdd, 0x40, {"ftp://x:1"})),
            MemberBadUrlsError());
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kAdd, 0x40, {})), MemberBadUrlsError());
  EXPECT_EQ(MemberExistsError().message(), "etcdserver: member ID already exist");
  EXPECT_EQ(PeerUrlExistsError().message(), "etcdserver: Peer URLs already exists");
}

TEST(MemberChange, RemovedIdsAreGoneForGood) {
  auto removed =
      PlanMemberChange(ThreeMembers(), Change(MemberChangeKind::kRemove, 0x30), 1, Health());
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->conf_change.type, raft::ConfChangeType::kRemoveNode);
  EXPECT_EQ(removed->next.members_size(), 2);
  EXPECT_TRUE(IsRemoved(removed->next, NodeId(0x30)));
  // etcd answers ErrIDRemoved as "member not found", for any change naming the id.
  EXPECT_EQ(PlanError(removed->next, Change(MemberChangeKind::kRemove, 0x30)),
            MemberNotFoundError());
  EXPECT_EQ(
      PlanError(removed->next, Change(MemberChangeKind::kAdd, 0x30, {"http://127.0.0.1:7380"})),
      MemberNotFoundError());
  // Its peer URL is free again.
  EXPECT_TRUE(PlanMemberChange(removed->next,
                               Change(MemberChangeKind::kAdd, 0x31, {"http://127.0.0.1:3380"}), 1,
                               Health())
                  .ok());
  EXPECT_EQ(PlanError(ThreeMembers(), Change(MemberChangeKind::kRemove, 0x99)),
            MemberNotFoundError());
}

TEST(MemberChange, StrictReconfigCheckProtectsTheQuorum) {
  const synodpb::ClusterMembers three = ThreeMembers();
  // The leader does not reach member 0x30: adding a voter (or a learner) could stall the larger
  // quorum, so etcd refuses with "unhealthy cluster".
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kAdd, 0x40, {"http://127.0.0.1:4380"}),
                      Health({0x10, 0x20})),
            UnhealthyClusterError());
  // Removing the unreachable member is fine; removing a reachable one would leave one of two.
  EXPECT_TRUE(
      PlanMemberChange(three, Change(MemberChangeKind::kRemove, 0x30), 1, Health({0x10, 0x20}))
          .ok());
  EXPECT_EQ(PlanError(three, Change(MemberChangeKind::kRemove, 0x20), Health({0x10, 0x20})),
            UnhealthyClusterError());
  // Without the check etcd allows both.
  ReconfigHealth lax = Health({0x10, 0x20});
  lax.strict_reconfig_check = false;
  EXPECT_TRUE(PlanMemberChange(three, Change(MemberChangeKind::kRemove, 0x20), 1, lax).ok());

  // Two of three voters never started (no name): a fourth voter would leave too few started.
  synodpb::ClusterMembers unstarted = three;
  unstarted.mutable_members(1)->clear_name();
  unstarted.mutable_members(2)->clear_name();
  EXPECT_EQ(PlanError(unstarted, Change(MemberChangeKind::kAdd, 0x40, {"http://127.0.0.1:4380"})),
            NotEnoughStartedMembersError());
  // A learner does not count toward the quorum, so it may still be added.
  EXPECT_TRUE(PlanMemberChange(
                  unstarted, Change(MemberChangeKind::kAdd, 0x40, {"http://127.0.0.1:4380"}, true),
                  1, Health())
                  .ok());
  // The last voter cannot be removed.
  const synodpb::ClusterMembers one = InitialClusterMembers({Record(0x10, "m1", "http://a:1")});
  EXPECT_EQ(PlanError(one, Change(MemberChangeKind::kRemove, 0x10)),
            NotEnoughStartedMembersError());
  // etcd lets a one-member cluster grow to two voters; ours would stop until the second runs
  // (a configuration counts when appended), so it must be added as a learner.
  EXPECT_EQ(PlanError(one, Change(MemberChangeKind::kAdd, 0x20, {"http://b:1"})),
            NotEnoughStartedMembersError());
  EXPECT_TRUE(
      PlanMemberChange(one, Change(MemberChangeKind::kAdd, 0x20, {"http://b:1"}, true), 1, Health())
          .ok());
}

TEST(MemberChange, UpdateAndPublishKeepTheConfiguration) {
  const synodpb::ClusterMembers three = ThreeMembers();
  auto updated = PlanMemberChange(
      three, Change(MemberChangeKind::kUpdatePeerUrls, 0x20, {"http://127.0.0.1:2390"}), 1,
      Health());
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->conf_change.type, raft::ConfChangeType::kUpdateNode);
  EXPECT_EQ(FindMember(updated->next, NodeId(0x20))->peer_urls(0), "http://127.0.0.1:2390");
  // Its own URL again is fine; another member's is not.
  EXPECT_TRUE(PlanMemberChange(
                  three, Change(MemberChangeKind::kUpdatePeerUrls, 0x20, {"http://127.0.0.1:2380"}),
                  1, Health())
                  .ok());
  EXPECT_EQ(
      PlanError(three, Change(MemberChangeKind::kUpdatePeerUrls, 0x20, {"http://127.0.0.1:3380"})),
      PeerUrlExistsError());
  EXPECT_EQ(
      PlanError(three, Change(MemberChangeKind::kUpdatePeerUrls, 0x99, {"http://127.0.0.1:9380"})),
      MemberNotFoundError());

  synodpb::MemberChangeRequest publish = Change(MemberChangeKind::kPublish, 0x30);
  publish.mutable_member()->set_name("m3");
  publish.mutable_member()->add_client_urls("http://127.0.0.1:3379");
  auto published = PlanMemberChange(three, publish, 1, Health());
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ(published->conf_change.type, raft::ConfChangeType::kUpdateNode);
  const synodpb::MemberRecord* record = FindMember(published->next, NodeId(0x30));
  EXPECT_EQ(record->client_urls(0), "http://127.0.0.1:3379");
  EXPECT_EQ(record->peer_urls(0), "http://127.0.0.1:3380");
  EXPECT_EQ(MembershipOf(published->next), MembershipOf(three));
}

TEST(JoiningMember, LearnsItsIdByPeerUrls) {
  synodpb::ClusterMembers cluster = ThreeMembers();
  *cluster.add_members() = Record(0x99, "", "http://127.0.0.1:4380", true);
  const std::vector<InitialClusterMember> flags = {{"m1", {"http://127.0.0.1:1380"}},
                                                   {"m2", {"http://127.0.0.1:2380"}},
                                                   {"m3", {"http://127.0.0.1:3380"}},
                                                   {"m4", {"http://127.0.0.1:4380"}}};
  auto id = FindJoiningMember(cluster, flags, {"http://127.0.0.1:4380"});
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, NodeId(0x99));
  // Not added yet.
  auto missing =
      FindJoiningMember(ThreeMembers(), {flags[0], flags[1], flags[2]}, {"http://127.0.0.1:4380"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("etcdctl member add"), std::string_view::npos);
  // --initial-cluster that does not list every member.
  EXPECT_EQ(
      FindJoiningMember(cluster, {flags[0], flags[3]}, {"http://127.0.0.1:4380"}).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace synod::server
