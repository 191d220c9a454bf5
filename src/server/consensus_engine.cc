#include "server/consensus_engine.h"

#include <utility>

#include "base/assert.h"
#include "consensus/multipaxos/multipaxos.h"

namespace synod::server {

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

// The promotion rule of ConsensusEngine::LearnerCaughtUp: `learner_progress` (Raft: its match
// index; Multi-Paxos: its commit index) at most `lag_max` behind the leader's `progress`, and at
// least 90% of it (etcd's isLearnerReady).
bool LearnerCloseEnough(Index learner_progress, Index progress, uint64_t lag_max) {
  return learner_progress.plus(lag_max) >= progress &&
         learner_progress.value() * 10 >= progress.value() * 9;
}

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
  // A Raft leader appends what clients propose and no more: the configured tail is enough.
  uint64_t log_tail_min() const override { return 0; }

  raft::Role role() const override { return core_->role(); }
  NodeId leader() const override { return core_->leader(); }
  Term term() const override { return core_->term(); }
  Index commit() const override { return core_->hard_state().commit; }
  const raft::Membership& membership() const override { return core_->membership(); }

  Result<raft::LogPosition> ProposeConfChange(raft::ConfChange change) override {
    return core_->ProposeConfChange(std::move(change));
  }
  Index membership_index() const override { return core_->log().membership_index(); }
  const raft::Entry* membership_entry() const override {
    const raft::RaftLog& log = core_->log();
    const Index index = log.membership_index();
    if (index < log.first_index() || index > log.last_index()) return nullptr;
    const raft::Entry& entry = log.At(index);
    return entry.type == raft::EntryType::kConfig ? &entry : nullptr;
  }
  bool LearnerCaughtUp(NodeId learner) const override {
    auto it = core_->progress().find(learner);
    if (it == core_->progress().end()) return false;
    return LearnerCloseEnough(it->second.match(), core_->log().last_index(),
                              raft::Config{}.learner_promotion_lag_max);
  }
  Status TransferLeadership(NodeId target) override {
    return core_->TransferLeadership(target);
  }
  NodeId transfer_target() const override { return core_->transfer_target(); }

 private:
  std::unique_ptr<raft::Raft> core_;
};

// ---------------------------------------------------------------------------------------------
// Multi-Paxos.

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
    auto* paxos_message = std::get_if<multipaxos::Message>(&message);
    if (paxos_message == nullptr) {
      return absl::InvalidArgumentError("a message of another engine on a multipaxos member");
    }
    return core_->Step(std::move(*paxos_message));
  }

  Result<raft::LogPosition> Propose(std::string data) override {
    return core_->Propose(std::move(data));
  }
  // A follower's read goes to its leader through the core (kReadIndex) and comes back as a
  // ReadState, as on Raft.
  Status ReadIndex(std::string context) override { return core_->ReadIndex(std::move(context)); }
  void Campaign() override { core_->Campaign(); }

  bool HasReady() const override { return core_->HasReady(); }
  EngineReady TakeReady() override {
    multipaxos::Ready ready = core_->TakeReady();
    EngineReady out;
    if (ready.soft_state) {
      out.soft_state = raft::SoftState{RoleOf(ready.soft_state->role), ready.soft_state->leader};
    }
    if (ready.snapshot) out.write.installed_snapshot = ready.snapshot->meta;
    out.write.slots = std::move(ready.slots);
    if (ready.hard_state) {
      // storage::WalContent::kSlots: the promise in the hard state record's term and vote.
      const multipaxos::BallotNumber& promised = ready.hard_state->promised;
      out.write.hard_state =
          raft::HardState{Term(promised.round.value()), promised.proposer, ready.hard_state->commit};
    }
    out.early_messages = ToPeerMessages(ready.early_messages);
    out.messages = ToPeerMessages(ready.messages);
    out.committed_entries = std::move(ready.committed_entries);
    out.read_states = std::move(ready.read_states);
    return out;
  }
  void Advance() override { core_->Advance(); }

  Index applied() const override { return core_->applied(); }
  const raft::SnapshotMeta& snapshot_meta() const override { return core_->snapshot().meta; }
  Status SetSnapshot(Index index) override { return core_->SetSnapshot(index, ""); }
  void CompactLog(Index index) override { core_->CompactLog(index).IgnoreError(); }
  // A chosen configuration change makes the leader fill the next α slots with no-ops at once
  // (multipaxos.h), so a live follower's reported commit index can be α slots behind the
  // leader's, plus what the leader chooses in its next window of α before that follower reports
  // again. With a shorter tail the leader's next snapshot leaves such followers below its log,
  // and each is sent a whole image of the store after every membership change.
  uint64_t log_tail_min() const override { return 2 * kServerAlphaSlots; }

  raft::Role role() const override { return RoleOf(core_->role()); }
  NodeId leader() const override { return core_->leader(); }
  Term term() const override { return Term(core_->promised().round.value()); }
  Index commit() const override { return core_->commit(); }
  const raft::Membership& membership() const override { return core_->membership(); }

  Result<raft::LogPosition> ProposeConfChange(raft::ConfChange change) override {
    return core_->ProposeConfChange(std::move(change));
  }
  Index membership_index() const override { return core_->membership_index(); }
  const raft::Entry* membership_entry() const override {
    const multipaxos::Slot* stored = core_->slot(core_->membership_index());
    if (stored == nullptr || stored->value.type != raft::EntryType::kConfig) return nullptr;
    return &stored->value;
  }
  bool LearnerCaughtUp(NodeId learner) const override {
    const std::optional<Index> learner_commit = core_->FollowerCommit(learner);
    return learner_commit.has_value() &&
           LearnerCloseEnough(*learner_commit, core_->commit(),
                              multipaxos::Config{}.learner_promotion_lag_max);
  }
  Status TransferLeadership(NodeId target) override {
    return core_->TransferLeadership(target);
  }
  NodeId transfer_target() const override { return core_->transfer_target(); }

 private:
  std::unique_ptr<multipaxos::MultiPaxos> core_;
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
    // The answer to an InstallSnapshot is lost when the follower restarts just after installing
    // it (kill -9 in fault_snapshot_catchup): until the leader probes again, that follower gets
    // no entries, so its linearizable reads wait. The core's default of 50 ticks (5 s at the
    // default heartbeat) outlasted a client's 3 s timeout; two election timeouts is what the
    // simulator runs every seed with. A fetch still running then is not restarted: the member
    // pulls one snapshot at a time, and a resent InstallSnapshot is only a message.
    config.snapshot_retry_ticks = 2 * start.election_timeout_ticks;
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
