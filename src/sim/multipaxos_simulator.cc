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
#include "sim/event_queue.h"
#include "sim/multipaxos_checker.h"
#include "sim/network.h"

namespace synod::sim {
namespace {

using multipaxos::Message;
using multipaxos::MessageType;
using multipaxos::MultiPaxos;
using multipaxos::Ready;
using multipaxos::Role;

// As in the other simulators: a tick is 10 units and a message takes 1-4.
constexpr uint64_t kTickUnits = 10;

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

  std::string ToString() const {
    return fmt::format(
        "nodes={} election_timeout={} heartbeat={} message_entries_max={} propose={}% read={}% "
        "snapshot_interval={} {}",
        nodes, election_timeout_ticks, heartbeat_interval_ticks, message_entries_max,
        propose_percent, read_percent, snapshot_interval, rates.ToString());
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
  return p;
}

enum class EventKind : uint8_t {
  kTick,
  kDeliver,
  kDiskDone,
  kRestart,
  kUnpause,
  kHealPartition,
  // The clients: a proposal or a read to a leader.
  kClient,
  kNemesis,
};

struct Event {
  EventKind kind = EventKind::kTick;
  NodeId node;
  // Bumped at every crash, so timers and disk completions of a previous life are ignored.
  uint64_t incarnation = 0;
  uint64_t partition = 0;
  Message message;
};

struct SimNode {
  NodeId id;
  bool running = false;
  uint64_t incarnation = 0;
  std::unique_ptr<MultiPaxos> core;
  // What the disk holds: everything of the Readies whose write completed. A Ready's write is
  // one record, so a crash loses it whole or not at all.
  multipaxos::PersistentState durable;
  // The Ready being written (at most one: Advance comes before the next TakeReady).
  std::optional<Ready> writing;
  // The state machine: its digest (sim/multipaxos_checker.h) and how far it has applied.
  Index applied;
  uint64_t digest = 0;
  bool paused = false;
  // Events that arrived while paused, delivered in order on resume (like SIGSTOP).
  std::vector<Event> deferred;
};

std::string SnapshotData(uint64_t digest) { return fmt::format("{}", digest); }
uint64_t SnapshotDigest(const std::string& data) { return data.empty() ? 0 : std::stoull(data); }

class MultiPaxosSimulation {
 public:
  explicit MultiPaxosSimulation(const SimOptions& options);
  MultiPaxosSimResult Run();
  const std::string& parameters_description() const { return parameters_description_; }

 private:
  uint64_t ElectionUnits() const { return parameters_.election_timeout_ticks * kTickUnits; }
  void Schedule(uint64_t time, Event event) { events_.Schedule(time, std::move(event)); }
  void Dispatch(Event event);
  template <typename... Args>
  void Tracef(fmt::format_string<Args...> format, Args&&... args) {
    if (options_.trace == nullptr) return;
    *options_.trace << fmt::format("[{:>6}.{}] ", now_ / kTickUnits, now_ % kTickUnits)
                    << fmt::format(format, std::forward<Args>(args)...) << "\n";
  }
  void Fail(std::string message);

  // The Ready contract (consensus/multipaxos/types.h), with a disk that takes time.
  void AfterInput(SimNode& node);
  void CompleteWrite(SimNode& node);
  void Apply(SimNode& node, const Ready& ready);
  void MaybeSnapshot(SimNode& node);
  void Send(Message message);
  void Client();
  SimNode* RandomLeader();

  void Start(SimNode& node);
  void Crash(SimNode& node);
  void Pause(SimNode& node);
  void Unpause(SimNode& node);
  void Nemesis();
  void StartFault(SimNode& node);
  void AddPartition(PartitionPlan plan);
  void HealEverything();
  bool ProbeAppliedEverywhere() const;
  std::string DescribeNodes() const;

  SimOptions options_;
  base::Prng prng_;
  Parameters parameters_;
  std::string parameters_description_;
  std::vector<NodeId> members_;
  std::map<NodeId, SimNode> nodes_;
  MultiPaxosChecker checker_;
  MultiPaxosSimStats stats_;
  std::optional<std::string> failure_;
  EventQueue<Event> events_;
  SimNetwork network_;
  uint64_t now_ = 0;
  bool liveness_phase_ = false;
  uint64_t next_command_ = 1;
  uint64_t next_read_ = 1;
  // Liveness phase: the commands proposed since the faults stopped, and the nodes that applied
  // each of them.
  std::map<std::string, std::set<NodeId>> probes_;
};

MultiPaxosSimulation::MultiPaxosSimulation(const SimOptions& options)
    : options_(options),
      prng_(options.seed),
      parameters_(ChooseParameters(options, prng_)),
      parameters_description_(parameters_.ToString()),
      checker_(parameters_.nodes) {
  for (uint32_t i = 1; i <= parameters_.nodes; ++i) members_.push_back(NodeId(i));
}

void MultiPaxosSimulation::Fail(std::string message) {
  if (failure_.has_value()) return;
  failure_ = std::move(message);
  Tracef("FAILURE: {}", *failure_);
}

// ---------------------------------------------------------------------------------------------
// The run.

MultiPaxosSimResult MultiPaxosSimulation::Run() {
  Tracef("seed {} faults {} {}", options_.seed, ToString(options_.faults), parameters_description_);
  network_.loss_percent = parameters_.rates.loss_percent;
  network_.duplicate_percent = parameters_.rates.duplicate_percent;
  network_.long_delay_percent = parameters_.rates.long_delay_percent;
  network_.long_delay_units_max = parameters_.rates.long_delay_units_max;
  for (NodeId id : members_) {
    SimNode& node = nodes_[id];
    node.id = id;
    node.durable.snapshot.meta.membership.voters = members_;
    Start(node);
  }
  Schedule(kTickUnits, Event{EventKind::kClient, {}, 0, 0, {}});
  Schedule(kTickUnits, Event{EventKind::kNemesis, {}, 0, 0, {}});

  const uint64_t end_units = (options_.safety_ticks + options_.liveness_ticks_max) * kTickUnits;
  bool live = false;
  while (!events_.empty() && !failure_.has_value()) {
    Event event = events_.Pop();
    now_ = events_.now();
    ++stats_.events;
    if (!liveness_phase_ && now_ >= options_.safety_ticks * kTickUnits) {
      liveness_phase_ = true;
      HealEverything();
    }
    if (now_ > end_units) break;
    Dispatch(std::move(event));
    if (checker_.failure().has_value()) Fail(*checker_.failure());
    if (liveness_phase_ && ProbeAppliedEverywhere()) {
      live = true;
      break;
    }
  }
  if (!failure_.has_value() && !live) {
    Fail(fmt::format(
        "Liveness: {} ticks after faults stopped, no command proposed since is applied by every "
        "node [{}]",
        now_ / kTickUnits - options_.safety_ticks, DescribeNodes()));
  }
  stats_.liveness_ticks = now_ / kTickUnits - std::min(now_ / kTickUnits, options_.safety_ticks);
  stats_.chosen = checker_.chosen_slots();

  MultiPaxosSimResult result;
  result.passed = !failure_.has_value();
  result.failure = failure_.value_or("");
  result.parameters = parameters_description_;
  result.stats = stats_;
  return result;
}

void MultiPaxosSimulation::Dispatch(Event event) {
  switch (event.kind) {
    case EventKind::kTick: {
      SimNode& node = nodes_.at(event.node);
      if (!node.running || event.incarnation != node.incarnation) return;
      Schedule(now_ + kTickUnits, Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
      // A paused process's timers do not fire.
      if (node.paused) return;
      node.core->Tick();
      AfterInput(node);
      return;
    }
    case EventKind::kDeliver: {
      SimNode& node = nodes_.at(event.node);
      if (!node.running || network_.LinkCut(event.message.from, event.message.to)) {
        ++stats_.messages_dropped;
        return;
      }
      if (node.paused) {
        node.deferred.push_back(std::move(event));
        return;
      }
      const std::string description = multipaxos::ToString(event.message);
      if (Status status = node.core->Step(std::move(event.message)); !status.ok()) {
        Fail(fmt::format("node {} rejected {}: {}", node.id, description, status.ToString()));
        return;
      }
      AfterInput(node);
      return;
    }
    case EventKind::kDiskDone: {
      SimNode& node = nodes_.at(event.node);
      if (!node.running || event.incarnation != node.incarnation) return;
      if (node.paused) {
        node.deferred.push_back(std::move(event));
        return;
      }
      CompleteWrite(node);
      AfterInput(node);
      return;
    }
    case EventKind::kRestart: {
      // The liveness phase may already have restarted it.
      SimNode& node = nodes_.at(event.node);
      if (!node.running) Start(node);
      return;
    }
    case EventKind::kUnpause:
      Unpause(nodes_.at(event.node));
      return;
    case EventKind::kHealPartition:
      if (network_.HealPartition(event.partition)) Tracef("partition {} heals", event.partition);
      return;
    case EventKind::kClient:
      Client();
      Schedule(now_ + kTickUnits, Event{EventKind::kClient, {}, 0, 0, {}});
      return;
    case EventKind::kNemesis:
      if (liveness_phase_) return;
      Nemesis();
      Schedule(now_ + kTickUnits, Event{EventKind::kNemesis, {}, 0, 0, {}});
      return;
  }
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

void MultiPaxosSimulation::Client() {
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
  leader = RandomLeader();
  if (leader == nullptr) return;
  const std::string context = fmt::format("r{}", next_read_++);
  checker_.OnReadAsked(context);
  if (Status status = leader->core->ReadIndex(context); status.ok()) {
    Tracef("client asks n{} for read {}", leader->id, context);
    AfterInput(*leader);
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
    }
    const bool must_persist = ready.MustPersist();
    node.writing = std::move(ready);
    if (must_persist) {
      Schedule(now_ + prng_.Between(1, 4),
               Event{EventKind::kDiskDone, node.id, node.incarnation, 0, {}});
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
  if (!liveness_phase_ && promised_or_accepted &&
      prng_.Chance(parameters_.rates.acceptor_fault_percent, 100)) {
    StartFault(node);
  }
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
  SYNOD_ASSERT_MSG(set.ok(), "{}", set.ToString());
  node.durable.snapshot = core.snapshot();
  const Status compacted = core.CompactLog(node.applied);
  SYNOD_ASSERT_MSG(compacted.ok(), "{}", compacted.ToString());
  std::erase_if(node.durable.slots, [&node](const multipaxos::Slot& slot) {
    return slot.value.index <= node.applied;
  });
  Tracef("n{} snapshots and compacts through slot {}", node.id, node.applied);
}

void MultiPaxosSimulation::Send(Message message) {
  ++stats_.messages_sent;
  Transmission transmission = network_.Transmit(message.from, message.to, now_, prng_);
  Tracef("{}{}", multipaxos::ToString(message), transmission.lost ? "  (lost)" : "");
  if (transmission.lost) {
    ++stats_.messages_dropped;
    return;
  }
  if (transmission.duplicated) ++stats_.messages_duplicated;
  const NodeId to = message.to;
  for (uint64_t arrival : transmission.arrivals) {
    Schedule(arrival, Event{EventKind::kDeliver, to, 0, 0, message});
  }
}

void MultiPaxosSimulation::Start(SimNode& node) {
  SYNOD_ASSERT(node.core == nullptr);
  multipaxos::Config config;
  config.id = node.id;
  config.election_timeout_ticks = parameters_.election_timeout_ticks;
  config.heartbeat_interval_ticks = parameters_.heartbeat_interval_ticks;
  config.message_entries_max = parameters_.message_entries_max;
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
  Schedule(now_ + prng_.Between(1, kTickUnits),
           Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
  AfterInput(node);
}

void MultiPaxosSimulation::Crash(SimNode& node) {
  ++stats_.crashes;
  Tracef("n{} CRASHES (losing {})", node.id,
         node.writing.has_value() ? "a write in progress" : "nothing unsynced");
  node.running = false;
  node.core.reset();
  node.writing.reset();
  node.paused = false;
  node.deferred.clear();
  ++node.incarnation;
  Schedule(now_ + prng_.Between(1, parameters_.rates.downtime_units_max),
           Event{EventKind::kRestart, node.id, 0, 0, {}});
}

void MultiPaxosSimulation::Unpause(SimNode& node) {
  if (!node.paused) return;
  Tracef("n{} resumes ({} events were waiting)", node.id, node.deferred.size());
  node.paused = false;
  std::vector<Event> deferred = std::move(node.deferred);
  node.deferred.clear();
  for (Event& event : deferred) {
    if (!node.running) return;
    Dispatch(std::move(event));
  }
}

// ---------------------------------------------------------------------------------------------
// Faults.

void MultiPaxosSimulation::Nemesis() {
  if (!prng_.Chance(parameters_.rates.fault_per_mille, 1000)) return;
  const std::vector<Fault> enabled = NodeEventFaults(options_.faults);
  if (enabled.empty()) return;
  // Half the faults hit the leader, where they matter most (a new ballot must take over).
  SimNode* victim = prng_.Chance(1, 2) ? RandomLeader() : nullptr;
  if (victim == nullptr) {
    std::vector<SimNode*> running;
    for (auto& [id, node] : nodes_) {
      if (node.running) running.push_back(&node);
    }
    if (running.empty()) return;
    victim = running[prng_.Below(running.size())];
  }
  const Fault fault = enabled[prng_.Below(enabled.size())];
  if (fault == Fault::kPartition) {
    AddPartition(ChoosePartition(members_, victim->id, prng_));
  } else if (fault == Fault::kCrash) {
    Crash(*victim);
  } else {
    Pause(*victim);
  }
}

void MultiPaxosSimulation::StartFault(SimNode& node) {
  const std::vector<Fault> enabled = NodeEventFaults(options_.faults);
  SYNOD_ASSERT(!enabled.empty());
  switch (enabled[prng_.Below(enabled.size())]) {
    case Fault::kPartition:
      AddPartition(IsolationOf(node.id, members_));
      return;
    case Fault::kCrash:
      Crash(node);
      return;
    default:
      Pause(node);
      return;
  }
}

void MultiPaxosSimulation::AddPartition(PartitionPlan plan) {
  if (plan.links.empty()) return;
  ++stats_.partitions;
  const uint64_t id = network_.AddPartition(std::move(plan.links));
  Tracef("PARTITION {} {}", id, plan.description);
  Schedule(now_ + prng_.Between(ElectionUnits(), 8 * ElectionUnits()),
           Event{EventKind::kHealPartition, {}, 0, id, {}});
}

void MultiPaxosSimulation::Pause(SimNode& node) {
  if (node.paused) return;
  ++stats_.pauses;
  Tracef("n{} PAUSES", node.id);
  node.paused = true;
  Schedule(now_ + prng_.Between(ElectionUnits() / 2, 4 * ElectionUnits()),
           Event{EventKind::kUnpause, node.id, 0, 0, {}});
}

void MultiPaxosSimulation::HealEverything() {
  Tracef("FAULTS STOP: healing everything for the liveness phase");
  network_.HealAll();
  for (auto& [id, node] : nodes_) {
    if (!node.running) Start(node);
    if (node.paused) Unpause(node);
  }
}

bool MultiPaxosSimulation::ProbeAppliedEverywhere() const {
  return std::any_of(probes_.begin(), probes_.end(), [this](const auto& probe) {
    return probe.second.size() == nodes_.size();
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
  snapshots_installed += run.snapshots_installed;
}

MultiPaxosSimResult RunMultiPaxosSimulation(const SimOptions& options) {
  ThrowAssertionFailures();
  MultiPaxosSimulation simulation(options);
  return RunReportingAssertions(simulation, options.trace);
}

}  // namespace synod::sim
