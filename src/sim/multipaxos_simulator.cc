#include "sim/multipaxos_simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "base/assert.h"
#include "base/prng.h"
#include "consensus/multipaxos/multipaxos.h"
#include "sim/assertion_failure.h"
#include "sim/multipaxos_checker.h"
#include "sim/node_simulation.h"

namespace synod::sim {
namespace {

using multipaxos::Message;
using multipaxos::MessageType;
using multipaxos::MultiPaxos;
using multipaxos::Ready;
using multipaxos::Role;

constexpr uint64_t kTickUnits = kNodeSimTickUnits;
// Spare node ids that membership changes may add (they run from the start with an empty
// membership, as a joining node does); ids are never reused once removed.
constexpr uint32_t kSpareNodes = 3;
constexpr size_t kVotersMin = 3;
constexpr size_t kVotersMax = 7;

// Every random choice a seed makes about the run, printed with a failure.
struct Parameters {
  uint32_t nodes = 3;
  uint32_t election_timeout_ticks = 10;
  uint32_t heartbeat_interval_ticks = 1;
  uint32_t message_entries_max = 64;
  // Client load: the chance per tick of a proposal and of a read.
  uint32_t propose_percent = 50;
  uint32_t read_percent = 20;
  // A node snapshots its state machine after applying this many slots, and compacts its log.
  uint32_t snapshot_interval = 0;
  FaultRates rates;
  // Config::alpha_slots: a change chosen in slot i governs slots from i + alpha on.
  uint64_t alpha_slots = 256;

  std::string ToString() const {
    return fmt::format(
        "nodes={} election_timeout={} heartbeat={} message_entries_max={} propose={}% read={}% "
        "snapshot_interval={} alpha={} {}",
        nodes, election_timeout_ticks, heartbeat_interval_ticks, message_entries_max,
        propose_percent, read_percent, snapshot_interval, alpha_slots, rates.ToString());
  }
};

Parameters ChooseParameters(const SimOptions& options, base::Prng& prng) {
  Parameters p;
  static constexpr std::array<uint32_t, 3> kSizes = {3, 5, 7};
  p.nodes = options.nodes != 0 ? options.nodes : kSizes[prng.Below(kSizes.size())];
  p.election_timeout_ticks = static_cast<uint32_t>(prng.Between(4, 15));
  p.heartbeat_interval_ticks =
      static_cast<uint32_t>(prng.Between(1, std::min<uint64_t>(3, p.election_timeout_ticks - 1)));
  p.message_entries_max = static_cast<uint32_t>(prng.Chance(1, 2) ? prng.Between(1, 4) : 64);
  p.propose_percent = static_cast<uint32_t>(prng.Between(10, 100));
  p.read_percent = static_cast<uint32_t>(prng.Between(0, 50));
  p.snapshot_interval = prng.Chance(1, 2) ? static_cast<uint32_t>(prng.Between(3, 30)) : 0;
  p.rates = ChooseFaultRates(options.faults, kTickUnits, prng);
  // Small windows make the α rule bind often (alpha 1 allows no pipelining at all).
  p.alpha_slots = prng.Chance(1, 2) ? prng.Between(1, 8) : prng.Between(9, 64);
  return p;
}

struct SimNode : SimProcess<MultiPaxos, Ready, Message> {
  // What the disk holds: everything of the Readies whose write completed. A Ready's write is
  // one record, so a crash loses it whole or not at all.
  multipaxos::PersistentState durable;
  // The state machine: its digest (sim/multipaxos_checker.h) and how far it has applied.
  Index applied;
  uint64_t digest = 0;
};

std::string SnapshotData(uint64_t digest) { return fmt::format("{}", digest); }
uint64_t SnapshotDigest(const std::string& data) { return data.empty() ? 0 : std::stoull(data); }

class MultiPaxosSimulation
    : public NodeSimulation<MultiPaxosSimulation, SimNode, Message, MultiPaxosSimStats> {
 public:
  explicit MultiPaxosSimulation(const SimOptions& options);
  MultiPaxosSimResult Run();
  const std::string& parameters_description() const { return parameters_description_; }

 private:
  friend class NodeSimulation<MultiPaxosSimulation, SimNode, Message, MultiPaxosSimStats>;

  // NodeSimulation's hooks.
  void Start(SimNode& node);
  // The Ready contract (consensus/multipaxos/types.h), with a disk that takes time.
  void AfterInput(SimNode& node);
  void CompleteWrite(SimNode& node);
  void OnClient(Event event);
  void Nemesis();
  void OnLivenessPhase() {}
  std::optional<std::string> CheckerFailure() const { return checker_.failure(); }
  bool Live() const;
  uint64_t FaultWindowUnits() const { return parameters_.election_timeout_ticks * kTickUnits; }

  void ChangeMembership();
  void TransferLeadership();
  void Apply(SimNode& node, const Ready& ready);
  void MaybeSnapshot(SimNode& node);
  SimNode* RandomLeader();
  std::string DescribeNodes() const;

  Parameters parameters_;
  std::string parameters_description_;
  MultiPaxosChecker checker_;
  uint64_t next_command_ = 1;
  uint64_t next_read_ = 1;
  uint64_t next_conf_change_ = 1;
  // The target of the last transfer a leader accepted, until some node leads after it.
  NodeId transfer_target_;
  std::vector<NodeId> spare_ids_;
  // Liveness phase: the commands proposed since the faults stopped, and the nodes that applied
  // each of them.
  std::map<std::string, std::set<NodeId>> probes_;
};

MultiPaxosSimulation::MultiPaxosSimulation(const SimOptions& options)
    : NodeSimulation(options),
      parameters_(ChooseParameters(options, prng_)),
      parameters_description_(parameters_.ToString()),
      checker_(
          [this] {
            multipaxos::Membership group;
            for (uint32_t i = 1; i <= parameters_.nodes; ++i) group.voters.push_back(NodeId(i));
            return group;
          }(),
          parameters_.alpha_slots) {
  for (uint32_t i = 1; i <= parameters_.nodes + kSpareNodes; ++i) members_.push_back(NodeId(i));
  for (NodeId id : members_) {
    SimNode& node = nodes_[id];
    node.id = id;
    // Spare nodes start with an empty membership and learn the configuration when added.
    if (id.value() <= parameters_.nodes) {
      node.durable.snapshot.meta.membership = checker_.latest_membership();
    } else {
      spare_ids_.push_back(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The run.

MultiPaxosSimResult MultiPaxosSimulation::Run() {
  Tracef("seed {} faults {} {}", options_.seed, ToString(options_.faults), parameters_description_);
  Schedule(kTickUnits, Event{NodeEventKind::kClient, {}, 0, 0, {}});
  RunEvents(parameters_.rates, [this] {
    return fmt::format(
        "Liveness: {} ticks after faults stopped, no command proposed since is applied by every "
        "node [{}]",
        now_ / kTickUnits - options_.safety_ticks, DescribeNodes());
  });
  stats_.chosen = checker_.chosen_slots();

  MultiPaxosSimResult result;
  result.passed = !failure_.has_value();
  result.failure = failure_.value_or("");
  result.parameters = parameters_description_;
  result.stats = stats_;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Clients.

SimNode* MultiPaxosSimulation::RandomLeader() {
  std::vector<SimNode*> leaders;
  for (auto& [id, node] : nodes_) {
    if (node.running && !node.paused && node.core->role() == Role::kLeader) {
      leaders.push_back(&node);
    }
  }
  if (leaders.empty()) return nullptr;
  return leaders[prng_.Below(leaders.size())];
}

void MultiPaxosSimulation::OnClient(Event /*event*/) {
  Schedule(now_ + kTickUnits, Event{NodeEventKind::kClient, {}, 0, 0, {}});
  // In the liveness phase one command at a time, each a probe that every node must apply.
  const bool probe = liveness_phase_;
  if (probe ? (now_ / kTickUnits) % 5 != 0 : !prng_.Chance(parameters_.propose_percent, 100)) {
    return;
  }
  SimNode* leader = RandomLeader();
  if (leader != nullptr) {
    const std::string data = fmt::format("{}{}", probe ? "probe" : "c", next_command_++);
    checker_.OnProposed(data);
    Result<multipaxos::LogPosition> position = leader->core->Propose(data);
    Tracef("client asks n{} to propose \"{}\": {}", leader->id, data,
           position.ok() ? fmt::format("slot {}", position->index) : position.status().ToString());
    if (position.ok()) {
      ++stats_.proposals;
      if (probe) probes_[data];
    }
    AfterInput(*leader);
  }
  if (probe || !prng_.Chance(parameters_.read_percent, 100)) return;
  // Half the reads go to a leader, half to any running node, which forwards them to the leader
  // it knows if it is a follower.
  SimNode* reader = prng_.Chance(1, 2) ? RandomLeader() : RandomRunningNode();
  if (reader == nullptr || reader->paused) return;
  const std::string context = fmt::format("r{}", next_read_++);
  checker_.OnReadAsked(context);
  if (Status status = reader->core->ReadIndex(context); status.ok()) {
    Tracef("client asks n{} ({}) for read {}", reader->id,
           multipaxos::ToString(reader->core->role()), context);
    AfterInput(*reader);
  }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

void MultiPaxosSimulation::AfterInput(SimNode& node) {
  while (node.running && !node.writing.has_value() && node.core->HasReady()) {
    Ready ready = node.core->TakeReady();
    if (ready.soft_state.has_value() && ready.soft_state->role == Role::kLeader) {
      ++stats_.leaders_elected;
      Tracef("n{} leads in ballot {}", node.id, paxos::ToString(node.core->ballot()));
      if (transfer_target_ != kNoNode) {
        if (node.id == transfer_target_) ++stats_.transfers_completed;
        transfer_target_ = kNoNode;
      }
    }
    // The leader's accepts may leave while its own disk write is under way (types.h).
    for (Message& message : ready.early_messages) Send(std::move(message));
    ready.early_messages.clear();
    const bool must_persist = ready.MustPersist();
    node.writing = std::move(ready);
    if (must_persist) {
      Schedule(now_ + prng_.Between(1, 4),
               Event{NodeEventKind::kDiskDone, node.id, node.incarnation, 0, {}});
      return;
    }
    CompleteWrite(node);
  }
}

void MultiPaxosSimulation::CompleteWrite(SimNode& node) {
  SYNOD_ASSERT(node.writing.has_value());
  Ready ready = std::move(*node.writing);
  node.writing.reset();
  multipaxos::PersistInMemory(ready, node.durable);
  checker_.OnReadyDurable(node.id, ready.hard_state, ready.slots, ready.messages);
  // Only now, with the state durable, may the promises and acceptances leave the node.
  const bool promised_or_accepted =
      std::any_of(ready.messages.begin(), ready.messages.end(), [](const Message& m) {
        return m.type == MessageType::kPromise || m.type == MessageType::kAccepted;
      });
  for (Message& message : ready.messages) Send(std::move(message));
  Apply(node, ready);
  node.core->Advance();
  MaybeSnapshot(node);
  MaybeFaultAfterAcceptorReply(node, promised_or_accepted);
}

void MultiPaxosSimulation::Apply(SimNode& node, const Ready& ready) {
  if (ready.snapshot.has_value()) {
    ++stats_.snapshots_installed;
    node.applied = ready.snapshot->meta.index;
    node.digest = SnapshotDigest(ready.snapshot->data);
    Tracef("n{} installs the snapshot at {}", node.id, node.applied);
    checker_.OnRestored(node.id, node.applied, node.digest);
  }
  for (const multipaxos::Entry& entry : ready.committed_entries) {
    node.applied = entry.index;
    node.digest = checker_.OnApplied(node.id, entry);
    if (auto probe = probes_.find(entry.data);
        probe != probes_.end() && entry.type == multipaxos::EntryType::kNormal) {
      probe->second.insert(node.id);
    }
  }
  for (const multipaxos::ReadState& read : ready.read_states) {
    ++stats_.reads_released;
    if (node.core->role() != Role::kLeader) ++stats_.follower_reads_released;
    checker_.OnReadReleased(node.id, read);
  }
}

void MultiPaxosSimulation::MaybeSnapshot(SimNode& node) {
  if (parameters_.snapshot_interval == 0 || !node.running) return;
  MultiPaxos& core = *node.core;
  // A snapshot the core installed is ahead of the state machine until its Ready is applied.
  const Index latest = core.snapshot().meta.index;
  if (node.applied <= latest || node.applied.distance_from(latest) < parameters_.snapshot_interval) {
    return;
  }
  // The caller makes the snapshot durable first, then tells the core, then compacts (raft.h's
  // order for SetSnapshot and CompactLog).
  const Status set = core.SetSnapshot(node.applied, SnapshotData(node.digest));
  // Refused while a chosen configuration change is not yet in effect above the snapshot.
  if (set.code() == absl::StatusCode::kFailedPrecondition) return;
  SYNOD_ASSERT_MSG(set.ok(), "{}", set.ToString());
  node.durable.snapshot = core.snapshot();
  const Status compacted = core.CompactLog(node.applied);
  SYNOD_ASSERT_MSG(compacted.ok(), "{}", compacted.ToString());
  std::erase_if(node.durable.slots, [&node](const multipaxos::Slot& slot) {
    return slot.value.index <= node.applied;
  });
  Tracef("n{} snapshots and compacts through slot {}", node.id, node.applied);
}

void MultiPaxosSimulation::Start(SimNode& node) {
  SYNOD_ASSERT(node.core == nullptr);
  multipaxos::Config config;
  config.id = node.id;
  config.election_timeout_ticks = parameters_.election_timeout_ticks;
  config.heartbeat_interval_ticks = parameters_.heartbeat_interval_ticks;
  config.message_entries_max = parameters_.message_entries_max;
  config.alpha_slots = parameters_.alpha_slots;
  config.seed = prng_.NextU64();
  config.check_invariants = true;
  auto created = MultiPaxos::Create(config, node.durable);
  if (!created.ok()) {
    Fail(fmt::format("node {} cannot restart from its durable state: {}", node.id,
                     created.status().ToString()));
    return;
  }
  node.core = std::move(*created);
  node.running = true;
  // The state machine restarts from the snapshot; the core hands out the rest again.
  node.applied = node.durable.snapshot.meta.index;
  node.digest = SnapshotDigest(node.durable.snapshot.data);
  checker_.OnRestored(node.id, node.applied, node.digest);
  if (node.incarnation > 0) {
    Tracef("n{} restarts: promised {} commit {} snapshot {} slots {}", node.id,
           paxos::ToString(node.durable.hard_state.promised), node.durable.hard_state.commit,
           node.applied, node.durable.slots.size());
  }
  // Nodes' clocks are not in phase: each ticks at its own offset within the tick.
  ScheduleTick(node, now_ + prng_.Between(1, kTickUnits));
  AfterInput(node);
}

// ---------------------------------------------------------------------------------------------
// Faults.

void MultiPaxosSimulation::Nemesis() {
  if (!prng_.Chance(parameters_.rates.fault_per_mille, 1000)) return;
  std::vector<Fault> enabled = NodeEventFaults(options_.faults);
  if (Enabled(options_.faults, Fault::kMembership)) enabled.push_back(Fault::kMembership);
  if (Enabled(options_.faults, Fault::kTransfer)) enabled.push_back(Fault::kTransfer);
  if (enabled.empty()) return;
  const Fault fault = enabled[prng_.Below(enabled.size())];
  if (fault == Fault::kMembership) {
    ChangeMembership();
    return;
  }
  if (fault == Fault::kTransfer) {
    TransferLeadership();
    return;
  }
  // Half the faults hit the leader, where they matter most (a new ballot must take over).
  SimNode* victim = prng_.Chance(1, 2) ? RandomLeader() : nullptr;
  if (victim == nullptr) victim = RandomRunningNode();
  if (victim == nullptr) return;
  StartNodeFault(*victim, fault);
}

void MultiPaxosSimulation::ChangeMembership() {
  SimNode* leader = RandomLeader();
  if (leader == nullptr) return;
  const multipaxos::Membership& membership = leader->core->membership();
  std::vector<raft::ConfChange> candidates;
  for (NodeId learner : membership.learners) {
    candidates.push_back({raft::ConfChangeType::kPromoteLearner, learner, {}});
    candidates.push_back({raft::ConfChangeType::kRemoveNode, learner, {}});
  }
  if (membership.voters.size() < kVotersMax && !spare_ids_.empty()) {
    candidates.push_back({raft::ConfChangeType::kAddLearner, spare_ids_.front(), {}});
    candidates.push_back({raft::ConfChangeType::kAddVoter, spare_ids_.front(), {}});
  }
  if (membership.voters.size() > kVotersMin) {
    for (NodeId voter : membership.voters) {
      candidates.push_back({raft::ConfChangeType::kRemoveNode, voter, {}});
    }
  }
  if (candidates.empty()) return;
  raft::ConfChange change = candidates[prng_.Below(candidates.size())];
  // The context is the entry's data; the checker's validity rule knows it as proposed.
  change.context = fmt::format("conf{}", next_conf_change_++);
  checker_.OnProposed(change.context);
  const raft::ConfChangeType type = change.type;
  const NodeId node = change.node;
  Result<multipaxos::LogPosition> position = leader->core->ProposeConfChange(std::move(change));
  Tracef("n{} proposes {} n{}: {}", leader->id, raft::ToString(type), node,
         position.ok() ? fmt::format("slot {}", position->index) : position.status().ToString());
  if (position.ok()) {
    ++stats_.membership_changes;
    if (type == raft::ConfChangeType::kAddLearner || type == raft::ConfChangeType::kAddVoter) {
      spare_ids_.erase(spare_ids_.begin());
    }
  }
  AfterInput(*leader);
}

void MultiPaxosSimulation::TransferLeadership() {
  SimNode* leader = RandomLeader();
  if (leader == nullptr) return;
  const NodeId target = ChooseTransferTarget(leader->core->membership(), leader->id, prng_);
  if (target == kNoNode) return;
  Status status = leader->core->TransferLeadership(target);
  Tracef("n{} transfers leadership to n{}: {}", leader->id, target, status.ToString());
  if (status.ok()) {
    ++stats_.transfers;
    transfer_target_ = target;
  }
  AfterInput(*leader);
}

bool MultiPaxosSimulation::Live() const {
  // Every member of the latest configuration must apply a probe (removed nodes and spares
  // never added need not).
  const multipaxos::Membership& members = checker_.latest_membership();
  return std::any_of(probes_.begin(), probes_.end(), [&members](const auto& probe) {
    for (const std::vector<NodeId>* ids : {&members.voters, &members.learners}) {
      for (NodeId id : *ids) {
        if (!probe.second.contains(id)) return false;
      }
    }
    return true;
  });
}

std::string MultiPaxosSimulation::DescribeNodes() const {
  std::vector<std::string> states;
  for (const auto& [id, node] : nodes_) {
    if (!node.running) {
      states.push_back(fmt::format("n{} down", id));
      continue;
    }
    const MultiPaxos& core = *node.core;
    states.push_back(fmt::format("n{} {} ballot={} promised={} commit={} applied={}", id,
                                 multipaxos::ToString(core.role()),
                                 paxos::ToString(core.ballot()), paxos::ToString(core.promised()),
                                 core.commit(), node.applied));
  }
  return fmt::format("{}", fmt::join(states, "; "));
}

}  // namespace

void MultiPaxosSimStats::Add(const MultiPaxosSimStats& run) {
  RunStats::Add(run);
  leaders_elected += run.leaders_elected;
  proposals += run.proposals;
  chosen += run.chosen;
  reads_released += run.reads_released;
  follower_reads_released += run.follower_reads_released;
  snapshots_installed += run.snapshots_installed;
  membership_changes += run.membership_changes;
  transfers += run.transfers;
  transfers_completed += run.transfers_completed;
}

MultiPaxosSimResult RunMultiPaxosSimulation(const SimOptions& options) {
  ThrowAssertionFailures();
  MultiPaxosSimulation simulation(options);
  return RunReportingAssertions(simulation, options.trace);
}

}  // namespace synod::sim
