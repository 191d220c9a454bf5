// The Node's part in membership (server/members.h has the design): the applied member records,
// the transport following them, changes checked and proposed by the leader, leadership transfer,
// and a starting member publishing its name and client URLs. Kept apart from node.cc, which is
// about the Ready cycle.

#include <spdlog/spdlog.h>

#include <thread>

#include "absl/strings/match.h"
#include "base/assert.h"
#include "base/thread_name.h"
#include "server/members.h"
#include "server/node.h"
#include "server/transport.h"
#include "storage/backend.h"

namespace synod::server {

using Clock = std::chrono::steady_clock;

static_assert(kClusterMembersBytesMax <= storage::Backend::kMembershipBytesMax,
              "every set of member records must fit the store's membership blob");

namespace {

// The loop's answer when a change cannot be proposed yet but can soon: a configuration entry is
// uncommitted or not yet applied, or the new leader has not committed an entry of its term. The
// asking thread retries; clients never see it.
Status RetrySoon() {
  return absl::AbortedError("member change: retry");
}
bool IsRetrySoon(const Status& status) {
  return absl::IsAborted(status) && status.message() == "member change: retry";
}

constexpr std::chrono::milliseconds kRetryInterval{20};
// How often a starting member checks whether it can publish (it needs a leader and, when it
// joined, its own record to have arrived).
constexpr std::chrono::milliseconds kPublishInterval{100};

Status FromGrpc(const grpc::Status& status) {
  return Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace

synodpb::ClusterMembers Node::members() const {
  std::lock_guard lock(members_mutex_);
  return members_;
}

synodpb::ClusterMembers Node::NewestMembers() {
  auto promise = std::make_shared<std::promise<std::optional<synodpb::ClusterMembers>>>();
  auto future = promise->get_future();
  const bool posted = Post([this, promise] {
    std::optional<synodpb::ClusterMembers> newest;
    const raft::Entry* entry = engine_->membership_entry();
    if (entry != nullptr && entry->index > store_->applied_index()) {
      Result<synodpb::ClusterMembers> decoded = DecodeClusterMembers(entry->data);
      if (decoded.ok()) newest = std::move(*decoded);
    }
    promise->set_value(std::move(newest));
  });
  if (posted && future.wait_for(options_.request_timeout) == std::future_status::ready) {
    if (std::optional<synodpb::ClusterMembers> newest = future.get()) {
      newest->clear_request_id();
      return std::move(*newest);
    }
  }
  return members();
}

bool Node::IsRemovedMember(NodeId id) const {
  std::lock_guard lock(members_mutex_);
  return IsRemoved(members_, id);
}

void Node::LoadMembers() {
  const std::string& blob = store_->membership();
  if (!blob.empty()) {
    Result<synodpb::ClusterMembers> decoded = DecodeClusterMembers(blob);
    if (decoded.ok()) {
      SetMembers(std::move(*decoded));
      return;
    }
    // A store written before member records existed holds the configuration only.
    spdlog::warn(
        "the store's membership is not a set of member records ({}); starting from "
        "the initial cluster",
        decoded.status().ToString());
  }
  if (options_.joining) {
    // Nothing applied yet: reach the members the cluster told us about, and wait for our first
    // configuration entry or snapshot to learn the records.
    for (const synodpb::MemberRecord& member : options_.initial_members.members()) {
      const NodeId id(member.id());
      if (transport_ == nullptr || id == options_.id) continue;
      transport_->SetPeer(id, {member.peer_urls().begin(), member.peer_urls().end()});
      transport_peers_.insert(id);
    }
    return;
  }
  SetMembers(options_.initial_members);
}

void Node::SetMembers(synodpb::ClusterMembers members) {
  SYNOD_ASSERT(CheckWellFormed(members).ok());
  members.clear_request_id();
  if (transport_ != nullptr && members.members_size() > 0) {
    std::set<NodeId> peers;
    for (const synodpb::MemberRecord& member : members.members()) {
      const NodeId id(member.id());
      if (id == options_.id) continue;
      transport_->SetPeer(id, {member.peer_urls().begin(), member.peer_urls().end()});
      peers.insert(id);
    }
    for (NodeId gone : transport_peers_) {
      if (!peers.contains(gone)) {
        spdlog::info("member {:x} is no longer a member; dropping its connection", gone.value());
        transport_->RemovePeer(gone);
      }
    }
    transport_peers_ = std::move(peers);
  }
  const bool removed = IsRemoved(members, options_.id);
  {
    std::lock_guard lock(members_mutex_);
    members_ = std::move(members);
  }
  if (removed && !removed_.exchange(true)) {
    spdlog::error("{}", kRemovedMemberMessage);
    if (options_.on_removed) options_.on_removed();
  }
}

void Node::NoteAppendedConfigs(const storage::LogWrite& write) {
  if (transport_ == nullptr) return;
  std::vector<const raft::Entry*> entries;
  for (const raft::Entry& entry : write.entries) entries.push_back(&entry);
  for (const multipaxos::Slot& slot : write.slots) entries.push_back(&slot.value);
  for (const raft::Entry* entry_pointer : entries) {
    const raft::Entry& entry = *entry_pointer;
    if (entry.type != raft::EntryType::kConfig || entry.data.empty()) continue;
    Result<synodpb::ClusterMembers> next = DecodeClusterMembers(entry.data);
    if (!next.ok()) continue;  // MembersBlobOf reports it when the entry is applied.
    for (const synodpb::MemberRecord& member : next->members()) {
      const NodeId id(member.id());
      if (id == options_.id) continue;
      transport_->SetPeer(id, {member.peer_urls().begin(), member.peer_urls().end()});
      transport_peers_.insert(id);
    }
  }
}

std::string Node::MembersBlobOf(const raft::Entry& entry) const {
  SYNOD_ASSERT(entry.type == raft::EntryType::kConfig);
  Result<synodpb::ClusterMembers> next = DecodeClusterMembers(entry.data);
  if (next.ok() && MembershipOf(*next) == entry.membership) return entry.data;
  // Every configuration entry the server proposes carries its records. One that does not (or
  // whose records disagree with its configuration) cannot come from this code; keep the records
  // of the members the entry names rather than stop, and say so.
  spdlog::error(
      "configuration entry {} carries no usable member records ({}); keeping the "
      "records of its members",
      entry.index, next.ok() ? "they disagree with its configuration" : next.status().ToString());
  synodpb::ClusterMembers kept = members();
  kept.clear_request_id();
  auto* list = kept.mutable_members();
  list->erase(std::remove_if(list->begin(), list->end(),
                             [&](const synodpb::MemberRecord& m) {
                               return !entry.membership.IsMember(NodeId(m.id()));
                             }),
              list->end());
  for (synodpb::MemberRecord& member : *list) {
    member.set_is_learner(entry.membership.IsLearner(NodeId(member.id())));
  }
  return EncodeClusterMembers(kept);
}

void Node::OnConfigEntriesApplied(const std::vector<raft::Entry>& entries) {
  bool any = false;
  for (const raft::Entry& entry : entries) {
    if (entry.type != raft::EntryType::kConfig) continue;
    any = true;
    synodpb::ClusterMembers next;
    if (!next.ParseFromString(entry.data) || next.request_id() == 0) continue;
    auto it = proposals_.find(next.request_id());
    if (it == proposals_.end()) continue;
    kv::CommandResult result;
    result.index = entry.index;
    result.request_id = next.request_id();
    it->second.done.Complete(std::move(result));
    proposals_.erase(it);
  }
  // The store holds the latest applied records (it skips entries it already has, after a
  // snapshot), so read them from there rather than from the entries.
  if (any) LoadMembers();
}

Result<Index> Node::ChangeMembersAsLeader(const synodpb::MemberChangeRequest& request) {
  const auto deadline = Clock::now() + options_.request_timeout;
  while (true) {
    const uint64_t request_id = NextRequestId();
    auto [done, future] = CompletionWithFuture<Result<kv::CommandResult>>();
    auto shared_done = std::make_shared<ProposalDone>(std::move(done));
    if (!Post([this, request, request_id, shared_done, deadline] {
          ProposeMemberChangeOnLoop(request, request_id, std::move(*shared_done), deadline);
        })) {
      return TooManyRequestsError();
    }
    if (future.wait_until(deadline) != std::future_status::ready) return RequestTimedOutError();
    Result<kv::CommandResult> result = future.get();
    if (result.ok()) return result->index;
    if (!IsRetrySoon(result.status())) return result.status();
    if (Clock::now() + kRetryInterval >= deadline) return RequestTimedOutError();
    std::this_thread::sleep_for(kRetryInterval);
  }
}

void Node::ProposeMemberChangeOnLoop(const synodpb::MemberChangeRequest& request,
                                     uint64_t request_id, ProposalDone done,
                                     Clock::time_point deadline) {
  if (!engine_->is_leader()) {
    done.Complete(NotLeaderError());
    return;
  }
  // The next records are computed from the applied ones, so every earlier change must be
  // applied here first (members.h).
  if (store_->applied_index() < engine_->membership_index()) {
    done.Complete(RetrySoon());
    return;
  }
  const synodpb::ClusterMembers current = members();
  if (MembershipOf(current) != engine_->membership()) {
    done.Complete(absl::InternalError(fmt::format(
        "etcdserver: the member records ({}) disagree with the {} configuration ({})",
        raft::ToString(MembershipOf(current)), ToString(engine_->kind()),
        raft::ToString(engine_->membership()))));
    return;
  }
  const NodeId id(request.member().id());
  if (static_cast<MemberChangeKind>(request.kind()) == MemberChangeKind::kPromote &&
      engine_->membership().IsLearner(id) && !engine_->LearnerCaughtUp(id)) {
    done.Complete(LearnerNotReadyError());
    return;
  }
  ReconfigHealth health;
  health.self = options_.id;
  health.strict_reconfig_check = options_.strict_reconfig_check;
  health.connected = [this](NodeId peer) {
    return transport_ != nullptr && transport_->IsConnected(peer);
  };
  Result<MemberChangePlan> plan = PlanMemberChange(current, request, request_id, health);
  if (!plan.ok()) {
    done.Complete(plan.status());
    return;
  }
  Result<raft::LogPosition> position = engine_->ProposeConfChange(std::move(plan->conf_change));
  if (!position.ok()) {
    // A change in progress (on Multi-Paxos also: slots in flight, or the previous change not
    // yet in effect), a transfer in progress, or a new leader's first entry not yet committed:
    // all pass soon.
    const Status& status = position.status();
    done.Complete(
        absl::IsFailedPrecondition(status) || absl::IsUnavailable(status)
            ? RetrySoon()
            : absl::InternalError(fmt::format("etcdserver: {}", std::string(status.message()))));
    return;
  }
  spdlog::info("proposed member change {} of member {:x} at index {}",
               ToString(static_cast<MemberChangeKind>(request.kind())), id.value(),
               position->index);
  proposals_.emplace(request_id, PendingProposal{std::move(done), deadline});
}

Result<Index> Node::ChangeMembers(const synodpb::MemberChangeRequest& request) {
  const auto deadline = Clock::now() + options_.request_timeout;
  while (true) {
    const NodeId leader = status().leader;
    Result<Index> index = NoLeaderError();
    if (leader == options_.id) {
      index = ChangeMembersAsLeader(request);
    } else if (leader != kNoNode && transport_ != nullptr) {
      synodpb::MemberChangeResponse response;
      const auto remaining =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      const grpc::Status status = transport_->ChangeMembers(
          leader, request, &response, std::max(remaining, std::chrono::milliseconds(1)));
      index = status.ok() ? Result<Index>(Index(response.index())) : FromGrpc(status);
    }
    if (index.ok()) {
      if (Status applied = WaitApplied(*index, deadline); !applied.ok()) return applied;
      return *index;
    }
    // The leader moved, or is not known yet, or could not be reached: ask again.
    const Status& status = index.status();
    if (absl::IsDeadlineExceeded(status)) return RequestTimedOutError();
    if (shutting_down_) return ServerStoppedError();
    // Not after "leader changed": the change may have been proposed, and may still commit.
    const bool retry =
        status == NoLeaderError() || status == NotLeaderError() ||
        (absl::IsUnavailable(status) && !absl::StartsWith(status.message(), "etcdserver:"));
    if (!retry) return status;
    if (Clock::now() + kRetryInterval >= deadline) {
      return status == NoLeaderError() ? status : RequestTimedOutError();
    }
    std::this_thread::sleep_for(kRetryInterval);
  }
}

Status Node::WaitApplied(Index index, Clock::time_point deadline) const {
  // A member change is rare; polling the published status keeps the loop free of waiters.
  while (status().applied < index) {
    if (shutting_down_) return ServerStoppedError();
    if (Clock::now() >= deadline) return RequestTimedOutError();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return absl::OkStatus();
}

Status Node::MoveLeader(NodeId target, Clock::time_point deadline) {
  // Starts (or restarts, when the core gave up after an election timeout) the transfer; 1 once
  // `target` leads.
  // The engine is used on the loop only (CallOnLoop); it lives as long as the node.
  ConsensusEngine* const engine = engine_.get();
  auto step = [this, engine, target]() -> Result<int64_t> {
    if (engine->leader() == target) return 1;
    if (!engine->is_leader()) return 0;  // Between leaders; wait.
    if (!engine->membership().IsVoter(target)) return BadLeaderTransfereeError();
    if (engine->transfer_target() == target) return 0;
    if (Status status = engine->TransferLeadership(target); !status.ok()) {
      return BadLeaderTransfereeError();
    }
    spdlog::info("leadership transfer from {:x} to {:x} starting", options_.id.value(),
                 target.value());
    return 0;
  };
  Result<int64_t> first = CallOnLoop([engine, step]() -> Result<int64_t> {
    if (!engine->is_leader()) return NotLeaderError();
    return step();
  });
  if (!first.ok()) return first.status();
  const auto started = Clock::now();
  Result<int64_t> done = first;
  while (done.ok() && *done == 0) {
    if (Clock::now() >= deadline) return LeaderTransferTimedOutError();
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.tick_ms));
    done = CallOnLoop(step);
  }
  if (!done.ok()) return done.status();
  spdlog::info(
      "leadership transfer to {:x} finished in {} ms", target.value(),
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  return absl::OkStatus();
}

void Node::Publish() {
  NameThisThread("publish");
  synodpb::MemberChangeRequest request;
  request.set_kind(static_cast<uint32_t>(MemberChangeKind::kPublish));
  request.mutable_member()->set_id(options_.id.value());
  request.mutable_member()->set_name(options_.name);
  for (const std::string& url : options_.client_urls) {
    request.mutable_member()->add_client_urls(url);
  }
  while (!shutting_down_) {
    const synodpb::ClusterMembers current = members();
    const synodpb::MemberRecord* own = FindMember(current, options_.id);
    if (own != nullptr && own->name() == options_.name &&
        std::equal(own->client_urls().begin(), own->client_urls().end(),
                   options_.client_urls.begin(), options_.client_urls.end())) {
      return;  // Already published (an earlier start, or the try that timed out did land).
    }
    if (own != nullptr && status().leader != kNoNode) {
      Result<Index> index = ChangeMembers(request);
      if (index.ok()) {
        spdlog::info("published this member (name {}, client URLs {}) at index {}", options_.name,
                     fmt::join(options_.client_urls, ","), *index);
        return;
      }
      spdlog::debug("publishing this member failed, retrying: {}", index.status().ToString());
    }
    // Not inbox_changed_: a notify_one meant for the loop must never wake this thread instead.
    for (auto waited = std::chrono::milliseconds(0); waited < kPublishInterval && !shutting_down_;
         waited += kRetryInterval) {
      std::this_thread::sleep_for(kRetryInterval);
    }
  }
}

}  // namespace synod::server
