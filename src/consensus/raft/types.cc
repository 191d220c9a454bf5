#include "consensus/raft/types.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"

namespace synod::raft {
namespace {

bool Contains(const std::vector<NodeId>& sorted_ids, NodeId id) {
  return std::binary_search(sorted_ids.begin(), sorted_ids.end(), id);
}

bool IsStrictlySorted(const std::vector<NodeId>& ids) {
  return std::adjacent_find(ids.begin(), ids.end(), [](NodeId a, NodeId b) { return a >= b; }) ==
         ids.end();
}

}  // namespace

bool Membership::IsVoter(NodeId id) const {
  return Contains(voters, id);
}
bool Membership::IsLearner(NodeId id) const {
  return Contains(learners, id);
}

bool Membership::IsWellFormed() const {
  if (!IsStrictlySorted(voters) || !IsStrictlySorted(learners)) return false;
  for (NodeId id : voters) {
    if (id == kNoNode || IsLearner(id)) return false;
  }
  return std::none_of(learners.begin(), learners.end(), [](NodeId id) { return id == kNoNode; });
}

Result<Membership> MembershipAfter(const Membership& current, const ConfChange& change) {
  if (change.node == kNoNode) return absl::InvalidArgumentError("node id must not be 0");
  Membership next = current;
  auto insert_sorted = [](std::vector<NodeId>& ids, NodeId id) {
    ids.insert(std::upper_bound(ids.begin(), ids.end(), id), id);
  };
  auto erase = [](std::vector<NodeId>& ids, NodeId id) {
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  };
  switch (change.type) {
    case ConfChangeType::kAddVoter:
      if (next.IsVoter(change.node)) {
        return absl::AlreadyExistsError(fmt::format("node {} is already a voter", change.node));
      }
      if (next.IsLearner(change.node)) {
        return absl::FailedPreconditionError(
            fmt::format("node {} is a learner; promote it instead", change.node));
      }
      insert_sorted(next.voters, change.node);
      break;
    case ConfChangeType::kAddLearner:
      if (next.IsMember(change.node)) {
        return absl::AlreadyExistsError(fmt::format("node {} is already a member", change.node));
      }
      insert_sorted(next.learners, change.node);
      break;
    case ConfChangeType::kPromoteLearner:
      if (!next.IsLearner(change.node)) {
        return absl::FailedPreconditionError(fmt::format("node {} is not a learner", change.node));
      }
      erase(next.learners, change.node);
      insert_sorted(next.voters, change.node);
      break;
    case ConfChangeType::kRemoveNode:
      if (!next.IsMember(change.node)) {
        return absl::NotFoundError(fmt::format("node {} is not a member", change.node));
      }
      if (next.voters.size() == 1 && next.IsVoter(change.node)) {
        return absl::FailedPreconditionError("cannot remove the last voter");
      }
      erase(next.voters, change.node);
      erase(next.learners, change.node);
      break;
    case ConfChangeType::kUpdateNode:
      if (!next.IsMember(change.node)) {
        return absl::NotFoundError(fmt::format("node {} is not a member", change.node));
      }
      break;
  }
  SYNOD_ASSERT(next.IsWellFormed());
  return next;
}

std::string ToString(const Membership& membership) {
  return fmt::format("voters={{{}}} learners={{{}}}", fmt::join(membership.voters, ","),
                     fmt::join(membership.learners, ","));
}

std::string_view ToString(ConfChangeType type) {
  switch (type) {
    case ConfChangeType::kAddVoter:
      return "add-voter";
    case ConfChangeType::kAddLearner:
      return "add-learner";
    case ConfChangeType::kPromoteLearner:
      return "promote-learner";
    case ConfChangeType::kRemoveNode:
      return "remove-node";
    case ConfChangeType::kUpdateNode:
      return "update-node";
  }
  return "?";
}

std::string_view ToString(MessageType type) {
  switch (type) {
    case MessageType::kAppendEntries:
      return "AppendEntries";
    case MessageType::kAppendEntriesResponse:
      return "AppendEntriesResponse";
    case MessageType::kRequestVote:
      return "RequestVote";
    case MessageType::kRequestVoteResponse:
      return "RequestVoteResponse";
    case MessageType::kRequestPreVote:
      return "RequestPreVote";
    case MessageType::kRequestPreVoteResponse:
      return "RequestPreVoteResponse";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResponse";
    case MessageType::kInstallSnapshot:
      return "InstallSnapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResponse";
  }
  return "?";
}

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

}  // namespace synod::raft
