#include "server/consensus_engine.h"

#include <fmt/format.h>

#include <map>
#include <utility>

#include "base/assert.h"
#include "consensus/multipaxos/multipaxos.h"

namespace synod::server {

storage::WalContent WalContentOf(EngineKind kind) {
  return kind == EngineKind::kRaft ? storage::WalContent::kEntries : storage::WalContent::kSlots;
}

Status MembershipUnsupportedError() {
  return absl::FailedPreconditionError(
      "etcdserver: membership changes are not supported on the multipaxos engine yet");
}

std::optional<Index> AnnouncedSnapshotIndex(const PeerMessage& message) {
  if (const auto* raft_message = std::get_if<raft::Message>(&message)) {
    if (raft_message->type == raft::MessageType::kInstallSnapshot && raft_message->snapshot) {
      return raft_message->snapshot->meta.index;
    }
  } else if (const auto* paxos_message = std::get_if<multipaxos::Message>(&message)) {
    if (paxos_message->snapshot) return paxos_message->snapshot->meta.index;
  }
  return std::nullopt;
}

namespace {

template <typename Message>
std::vector<PeerMessage> ToPeerMessages(std::vector<Message>& messages) {
  std::vector<PeerMessage> converted;
  converted.reserve(messages.size());
  for (Message& message : messages) converted.emplace_back(std::move(message));
  return converted;
}

// ---------------------------------------------------------------------------------------------
// Raft: the core already has the loop's shape; the adapter only renames.

class RaftEngine final : public ConsensusEngine {
 public:
  explicit RaftEngine(std::unique_ptr<raft::Raft> core) : core_(std::move(core)) {}

  EngineKind kind() const override { return EngineKind::kRaft; }
  void Tick() override { core_->Tick(); }
  Status Step(PeerMessage message) override {
    auto* raft_message = std::get_if<raft::Message>(&message);
    if (raft_message == nullptr) {
      return absl::InvalidArgumentError("a message of another engine on a raft member");
    }
    return core_->Step(std::move(*raft_message));
  }
  Result<raft::LogPosition> Propose(std::string data) override {
    return core_->Propose(std::move(data));
  }
  Status ReadIndex(std::string context) override { return core_->ReadIndex(std::move(context)); }
  void Campaign() override { core_->Campaign().IgnoreError(); }

  bool HasReady() const override { return core_->HasReady(); }
  EngineReady TakeReady() override {
    raft::Ready ready = core_->TakeReady();
    EngineReady out;
    out.soft_state = ready.soft_state;
    out.early_messages = ToPeerMessages(ready.early_messages);
    if (ready.snapshot) out.write.installed_snapshot = ready.snapshot->meta;
    out.write.entries = std::move(ready.entries);
    out.write.hard_state = ready.hard_state;
    out.messages = ToPeerMessages(ready.messages);
    out.committed_entries = std::move(ready.committed_entries);
    out.read_states = std::move(ready.read_states);
    return out;
  }
  void Advance() override { core_->Advance(); }

  Index applied() const override { return core_->log().applied(); }
  const raft::SnapshotMeta& snapshot_meta() const override {
    return core_->log().snapshot().meta;
  }
  Status SetSnapshot(Index index) override { return core_->SetSnapshot(index, ""); }
  void CompactLog(Index index) override {
    if (index > core_->log().prev_index()) core_->CompactLog(index).IgnoreError();
  }

  raft::Role role() const override { return core_->role(); }
  NodeId leader() const override { return core_->leader(); }
  Term term() const override { return core_->term(); }
  Index commit() const override { return core_->hard_state().commit; }
  const raft::Membership& membership() const override { return core_->membership(); }
  raft::Raft* raft() override { return core_.get(); }

 private:
  std::unique_ptr<raft::Raft> core_;
};

// ---------------------------------------------------------------------------------------------
// Multi-Paxos.

// Read contexts of reads relayed from followers start with this; the member's own contexts are
// decimal numbers (Node::IssueReadIndex), so the two never collide.
constexpr std::string_view kRelayedReadPrefix = "relay/";
// Relayed reads the leader keeps waiting at once; more are dropped (the follower's client
// times out and retries), as a full core refuses them.
constexpr size_t kRelayedReadsMax = 8192;
constexpr uint64_t kServerAlphaSlots = 4096;

raft::Role RoleOf(multipaxos::Role role) {
  switch (role) {
    case multipaxos::Role::kFollower:
      return raft::Role::kFollower;
    case multipaxos::Role::kCandidate:
      return raft::Role::kCandidate;
    case multipaxos::Role::kLeader:
      return raft::Role::kLeader;
  }
  SYNOD_ASSERT_MSG(false, "unknown Multi-Paxos role {}", static_cast<int>(role));
  return raft::Role::kFollower;
}

class MultiPaxosEngine final : public ConsensusEngine {
 public:
  explicit MultiPaxosEngine(std::unique_ptr<multipaxos::MultiPaxos> core)
      : core_(std::move(core)) {}

  EngineKind kind() const override { return EngineKind::kMultiPaxos; }
  void Tick() override { core_->Tick(); }

  Status Step(PeerMessage message) override {
    if (auto* paxos_message = std::get_if<multipaxos::Message>(&message)) {
      return core_->Step(std::move(*paxos_message));
    }
    if (auto* relay = std::get_if<ReadIndexRelay>(&message)) {
      StepRelay(std::move(*relay));
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError("a message of another engine on a multipaxos member");
  }

  Result<raft::LogPosition> Propose(std::string data) override {
    return core_->Propose(std::move(data));
  }

  Status ReadIndex(std::string context) override {
    if (core_->role() == multipaxos::Role::kLeader) {
      Status status = core_->ReadIndex(std::move(context));
      // A leader between ballots refuses; the loop answers "no leader" and the client retries.
      if (absl::IsFailedPrecondition(status)) return absl::UnavailableError(status.message());
      return status;
    }
    const NodeId leader = core_->leader();
    if (leader == kNoNode || leader == core_->id()) {
      return absl::UnavailableError("no leader to relay the read to");
    }
    relay_outbox_.push_back(ReadIndexRelay{core_->id(), leader, std::move(context), {}});
    return absl::OkStatus();
  }

  void Campaign() override { core_->Campaign(); }

  bool HasReady() const override {
    if (awaiting_advance_) return false;
    return core_->HasReady() || !relay_outbox_.empty() || !relayed_read_states_.empty();
  }

  EngineReady TakeReady() override {
    SYNOD_ASSERT(HasReady());
    awaiting_advance_ = true;
    EngineReady out;
    // Relayed reads leave only after what this Ready persists, like every message.
    for (ReadIndexRelay& relay : relay_outbox_) out.messages.emplace_back(std::move(relay));
    relay_outbox_.clear();
    out.read_states = std::move(relayed_read_states_);
    relayed_read_states_.clear();
    core_ready_taken_ = core_->HasReady();
    if (!core_ready_taken_) return out;

    multipaxos::Ready ready = core_->TakeReady();
    if (ready.soft_state) {
      out.soft_state = raft::SoftState{RoleOf(ready.soft_state->role), ready.soft_state->leader};
      // A deposed leader's core has dropped its waiting reads; so are the relayed ones (the
      // followers' clients time out and retry).
      if (ready.soft_state->role != multipaxos::Role::kLeader) relayed_reads_.clear();
    }
    if (ready.snapshot) out.write.installed_snapshot = ready.snapshot->meta;
    out.write.slots = std::move(ready.slots);
    if (ready.hard_state) {
      // storage::WalContent::kSlots: the promise in the hard state record's term and vote.
      const multipaxos::BallotNumber& promised = ready.hard_state->promised;
      out.write.hard_state =
          raft::HardState{Term(promised.round.value()), promised.proposer, ready.hard_state->commit};
    }
    for (multipaxos::Message& message : ready.messages) {
      out.messages.emplace_back(std::move(message));
    }
    out.committed_entries = std::move(ready.committed_entries);
    for (raft::ReadState& read_state : ready.read_states) {
      if (!read_state.context.starts_with(kRelayedReadPrefix)) {
        out.read_states.push_back(std::move(read_state));
        continue;
      }
      auto it = relayed_reads_.find(read_state.context);
      if (it == relayed_reads_.end()) continue;
      out.messages.emplace_back(ReadIndexRelay{core_->id(), it->second.from,
                                               std::move(it->second.context), read_state.index});
      relayed_reads_.erase(it);
    }
    return out;
  }

  void Advance() override {
    SYNOD_ASSERT(awaiting_advance_);
    awaiting_advance_ = false;
    if (std::exchange(core_ready_taken_, false)) core_->Advance();
  }

  Index applied() const override { return core_->applied(); }
  const raft::SnapshotMeta& snapshot_meta() const override { return core_->snapshot().meta; }
  Status SetSnapshot(Index index) override { return core_->SetSnapshot(index, ""); }
  void CompactLog(Index index) override { core_->CompactLog(index).IgnoreError(); }

  raft::Role role() const override { return RoleOf(core_->role()); }
  NodeId leader() const override { return core_->leader(); }
  Term term() const override { return Term(core_->promised().round.value()); }
  Index commit() const override { return core_->commit(); }
  const raft::Membership& membership() const override { return core_->membership(); }

 private:
  void StepRelay(ReadIndexRelay relay) {
    if (relay.index) {
      // The leader's answer: serve once applied up to it, like a ReadState of our own.
      relayed_read_states_.push_back(raft::ReadState{*relay.index, std::move(relay.context)});
      return;
    }
    // A follower's read. Not the leader (any more): dropped, the follower's client retries.
    if (core_->role() != multipaxos::Role::kLeader || relayed_reads_.size() >= kRelayedReadsMax) {
      return;
    }
    const std::string context = fmt::format("{}{}", kRelayedReadPrefix, next_relayed_read_++);
    if (!core_->ReadIndex(context).ok()) return;
    relayed_reads_.emplace(context, std::move(relay));
  }

  std::unique_ptr<multipaxos::MultiPaxos> core_;
  // A Ready was handed out and awaits Advance; whether it included the core's.
  bool awaiting_advance_ = false;
  bool core_ready_taken_ = false;
  // This follower's reads to relay to the leader, and the leader's answers to them.
  std::vector<ReadIndexRelay> relay_outbox_;
  std::vector<raft::ReadState> relayed_read_states_;
  // Leader: followers' reads waiting for the core, by the core's read context.
  std::map<std::string, ReadIndexRelay> relayed_reads_;
  uint64_t next_relayed_read_ = 1;
};

}  // namespace

Result<std::unique_ptr<ConsensusEngine>> ConsensusEngine::Create(EngineKind kind,
                                                                  EngineStart start) {
  storage::RecoveredLog& recovered = start.recovered;
  if (kind == EngineKind::kRaft) {
    SYNOD_ASSERT(recovered.slots.empty());
    raft::PersistentState state;
    state.hard_state = recovered.hard_state;
    state.snapshot.meta = recovered.snapshot;
    state.entries = std::move(recovered.entries);
    state.applied = start.applied;
    raft::Config config;
    config.id = start.id;
    config.election_timeout_ticks = start.election_timeout_ticks;
    config.heartbeat_interval_ticks = 1;
    config.pre_vote = true;
    config.check_quorum = true;
    config.seed = start.seed;
    auto core = raft::Raft::Create(config, std::move(state));
    if (!core.ok()) return core.status();
    return std::unique_ptr<ConsensusEngine>(new RaftEngine(std::move(*core)));
  }
  SYNOD_ASSERT(recovered.entries.empty());
  multipaxos::PersistentState state;
  state.hard_state.promised = multipaxos::BallotNumber{
      Ballot(recovered.hard_state.term.value()), recovered.hard_state.voted_for};
  state.hard_state.commit = recovered.hard_state.commit;
  state.snapshot.meta = recovered.snapshot;
  state.slots = std::move(recovered.slots);
  state.applied = start.applied;
  multipaxos::Config config;
  config.id = start.id;
  config.election_timeout_ticks = start.election_timeout_ticks;
  config.heartbeat_interval_ticks = 1;
  // α also bounds the slots in flight (multipaxos.h): the core's 256 would refuse writes at
  // 1,000 clients. A configuration change then takes effect α slots later, which the leader
  // fills with no-ops at once; every member runs this binary, so they agree on α.
  config.alpha_slots = kServerAlphaSlots;
  config.seed = start.seed;
  auto core = multipaxos::MultiPaxos::Create(config, std::move(state));
  if (!core.ok()) return core.status();
  return std::unique_ptr<ConsensusEngine>(new MultiPaxosEngine(std::move(*core)));
}

}  // namespace synod::server
