#include "sim/paxos_simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/assert.h"
#include "base/prng.h"
#include "consensus/paxos/paxos.h"
#include "sim/assertion_failure.h"
#include "sim/event_queue.h"
#include "sim/network.h"
#include "sim/paxos_checker.h"

namespace synod::sim {
namespace {

using paxos::Message;
using paxos::MessageType;
using paxos::Paxos;
using paxos::Ready;

// As in the Raft simulator: a tick is 10 units and a message takes 1-4, so a tick is a few
// network round trips.
constexpr uint64_t kTickUnits = 10;

// Every random choice a seed makes about the run, printed with a failure.
struct Parameters {
  uint32_t nodes = 3;
  uint32_t proposers = 1;
  // The proposers are asked within this many ticks of the start: a few ticks makes them duel.
  uint64_t propose_window_ticks = 1;
  uint32_t phase_timeout_ticks = 10;
  uint32_t backoff_ticks_max = 10;
  FaultRates rates;

  std::string ToString() const {
    return fmt::format("nodes={} proposers={} propose_window={} phase_timeout={} backoff_max={} {}",
                       nodes, proposers, propose_window_ticks, phase_timeout_ticks,
                       backoff_ticks_max, rates.ToString());
  }
};

Parameters ChooseParameters(const SimOptions& options, base::Prng& prng);

enum class EventKind : uint8_t {
  kTick,
  kDeliver,
  kDiskDone,
  kRestart,
  kUnpause,
  kHealPartition,
  // A client asks a node to propose its value.
  kPropose,
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
  std::unique_ptr<Paxos> paxos;
  // What the disk holds: the state of the last Ready whose write completed. A write is one
  // small record, so a crash loses it whole or not at all.
  paxos::PersistentState durable;
  // The Ready being written (at most one: Advance comes before the next TakeReady).
  std::optional<Ready> writing;
  // The value this node's client wants proposed; the client asks again after every restart
  // until the node has decided, as a client retries a call that failed.
  std::optional<std::string> client_value;
  paxos::ProposalNumber last_proposal_number;
  bool paused = false;
  // Events that arrived while paused, delivered in order on resume (like SIGSTOP).
  std::vector<Event> deferred;
};

class PaxosSimulation {
 public:
  explicit PaxosSimulation(const SimOptions& options);
  PaxosSimResult Run();
  const std::string& parameters_description() const { return parameters_description_; }

 private:
  uint64_t PhaseUnits() const { return parameters_.phase_timeout_ticks * kTickUnits; }
  void Schedule(uint64_t time, Event event) { events_.Schedule(time, std::move(event)); }
  void Dispatch(Event event);
  template <typename... Args>
  void Tracef(fmt::format_string<Args...> format, Args&&... args) {
    if (options_.trace == nullptr) return;
    *options_.trace << fmt::format("[{:>6}.{}] ", now_ / kTickUnits, now_ % kTickUnits)
                    << fmt::format(format, std::forward<Args>(args)...) << "\n";
  }
  void Fail(std::string message);

  // The Ready contract (consensus/paxos/types.h), with a disk that takes time.
  void AfterInput(SimNode& node);
  void CompleteWrite(SimNode& node);
  void Send(Message message);
  void ClientPropose(SimNode& node);

  void Start(SimNode& node);
  void Crash(SimNode& node);
  void Pause(SimNode& node);
  void Unpause(SimNode& node);
  void Nemesis();
  // A crash, isolation or pause of `node`, whichever of them the run enables.
  void StartFault(SimNode& node);
  void AddPartition(PartitionPlan plan);
  void HealEverything();
  NodeId RandomRunningNode();
  bool EveryNodeDecided() const;
  std::string DescribeNodes() const;

  SimOptions options_;
  base::Prng prng_;
  Parameters parameters_;
  std::string parameters_description_;
  std::vector<NodeId> members_;
  std::map<NodeId, SimNode> nodes_;
  PaxosChecker checker_;
  PaxosSimStats stats_;
  std::optional<std::string> failure_;
  EventQueue<Event> events_;
  SimNetwork network_;
  uint64_t now_ = 0;
  bool liveness_phase_ = false;
};

PaxosSimulation::PaxosSimulation(const SimOptions& options)
    : options_(options),
      prng_(options.seed),
      parameters_(ChooseParameters(options, prng_)),
      parameters_description_(parameters_.ToString()),
      checker_(parameters_.nodes) {
  for (uint32_t i = 1; i <= parameters_.nodes; ++i) members_.push_back(NodeId(i));
}

Parameters ChooseParameters(const SimOptions& options, base::Prng& prng) {
  Parameters p;
  static constexpr std::array<uint32_t, 3> kSizes = {3, 5, 7};
  p.nodes = options.nodes != 0 ? options.nodes : kSizes[prng.Below(kSizes.size())];
  // Usually several proposers with different values, sometimes every node, sometimes one.
  p.proposers = static_cast<uint32_t>(prng.Between(1, p.nodes));
  p.propose_window_ticks = prng.Chance(1, 2) ? prng.Between(1, 5) : prng.Between(10, 150);
  p.phase_timeout_ticks = static_cast<uint32_t>(prng.Between(3, 15));
  p.backoff_ticks_max = static_cast<uint32_t>(prng.Between(2, 32));
  p.rates = ChooseFaultRates(options.faults, kTickUnits, prng);
  return p;
}

void PaxosSimulation::Fail(std::string message) {
  if (failure_.has_value()) return;
  failure_ = std::move(message);
  Tracef("FAILURE: {}", *failure_);
}

// ---------------------------------------------------------------------------------------------
// The run.

PaxosSimResult PaxosSimulation::Run() {
  Tracef("seed {} faults {} {}", options_.seed, ToString(options_.faults), parameters_description_);
  network_.loss_percent = parameters_.rates.loss_percent;
  network_.duplicate_percent = parameters_.rates.duplicate_percent;
  network_.long_delay_percent = parameters_.rates.long_delay_percent;
  network_.long_delay_units_max = parameters_.rates.long_delay_units_max;
  for (NodeId id : members_) {
    SimNode& node = nodes_[id];
    node.id = id;
    Start(node);
  }
  // The proposers are a random subset, each asked at a random moment of the window, so some
  // proposals race and some find a value already chosen.
  std::vector<NodeId> shuffled = members_;
  for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[prng_.Below(i)]);
  stats_.proposers = parameters_.proposers;
  const uint64_t propose_window_units =
      std::min(parameters_.propose_window_ticks, options_.safety_ticks) * kTickUnits;
  for (uint32_t i = 0; i < parameters_.proposers; ++i) {
    Schedule(prng_.Between(1, propose_window_units),
             Event{EventKind::kPropose, shuffled[i], 0, 0, {}});
  }
  Schedule(kTickUnits, Event{EventKind::kNemesis, {}, 0, 0, {}});

  const uint64_t end_units = (options_.safety_ticks + options_.liveness_ticks_max) * kTickUnits;
  bool live = false;
  while (!events_.empty() && !failure_.has_value()) {
    Event event = events_.Pop();
    now_ = events_.now();
    ++stats_.events;
    if (!liveness_phase_ && now_ >= options_.safety_ticks * kTickUnits) {
      liveness_phase_ = true;
      if (checker_.chosen().has_value()) stats_.chosen_under_faults = 1;
      HealEverything();
    }
    if (now_ > end_units) break;
    Dispatch(std::move(event));
    if (checker_.failure().has_value()) Fail(*checker_.failure());
    if (liveness_phase_ && EveryNodeDecided()) {
      live = true;
      break;
    }
  }
  if (!failure_.has_value() && !live) {
    Fail(fmt::format("Liveness: {} ticks after faults stopped, not every node has decided [{}]",
                     now_ / kTickUnits - options_.safety_ticks, DescribeNodes()));
  }
  stats_.liveness_ticks = now_ / kTickUnits - std::min(now_ / kTickUnits, options_.safety_ticks);

  PaxosSimResult result;
  result.passed = !failure_.has_value();
  result.failure = failure_.value_or("");
  result.parameters = parameters_description_;
  result.stats = stats_;
  return result;
}

void PaxosSimulation::Dispatch(Event event) {
  switch (event.kind) {
    case EventKind::kTick: {
      SimNode& node = nodes_.at(event.node);
      if (!node.running || event.incarnation != node.incarnation) return;
      Schedule(now_ + kTickUnits, Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
      // A paused process's timers do not fire.
      if (node.paused) return;
      node.paxos->Tick();
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
      const std::string description = paxos::ToString(event.message);
      if (Status status = node.paxos->Step(std::move(event.message)); !status.ok()) {
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
    case EventKind::kPropose: {
      SimNode& node = nodes_.at(event.node);
      node.client_value = fmt::format("v{}", node.id);
      checker_.OnProposed(node.id, *node.client_value);
      if (!node.running) return;  // Asked again when it restarts.
      if (node.paused) {
        node.deferred.push_back(std::move(event));
        return;
      }
      ClientPropose(node);
      return;
    }
    case EventKind::kNemesis:
      if (liveness_phase_) return;
      Nemesis();
      Schedule(now_ + kTickUnits, Event{EventKind::kNemesis, {}, 0, 0, {}});
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

void PaxosSimulation::ClientPropose(SimNode& node) {
  Status status = node.paxos->Propose(*node.client_value);
  Tracef("client asks n{} to propose \"{}\": {}", node.id, *node.client_value, status.ToString());
  AfterInput(node);
}

void PaxosSimulation::AfterInput(SimNode& node) {
  while (node.running && !node.writing.has_value() && node.paxos->HasReady()) {
    Ready ready = node.paxos->TakeReady();
    if (node.paxos->proposal_number() != node.last_proposal_number) {
      node.last_proposal_number = node.paxos->proposal_number();
      ++stats_.prepares;
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

void PaxosSimulation::CompleteWrite(SimNode& node) {
  SYNOD_ASSERT(node.writing.has_value());
  Ready ready = std::move(*node.writing);
  node.writing.reset();
  if (ready.state.has_value()) node.durable = *ready.state;
  // Only now, with the state durable, may the promises and acceptances leave the node.
  const bool promised_or_accepted =
      std::any_of(ready.messages.begin(), ready.messages.end(), [](const Message& m) {
        return m.type == MessageType::kPromise || m.type == MessageType::kAccepted;
      });
  for (Message& message : ready.messages) Send(std::move(message));
  if (ready.decided.has_value()) {
    Tracef("n{} decides \"{}\"", node.id, *ready.decided);
    checker_.OnDecided(node.id, *ready.decided);
  }
  node.paxos->Advance();
  if (!liveness_phase_ && promised_or_accepted &&
      prng_.Chance(parameters_.rates.acceptor_fault_percent, 100)) {
    StartFault(node);
  }
}

void PaxosSimulation::Send(Message message) {
  ++stats_.messages_sent;
  checker_.OnSent(message);
  Transmission transmission = network_.Transmit(message.from, message.to, now_, prng_);
  Tracef("{}{}", paxos::ToString(message), transmission.lost ? "  (lost)" : "");
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

void PaxosSimulation::Start(SimNode& node) {
  SYNOD_ASSERT(node.paxos == nullptr);
  paxos::Config config;
  config.id = node.id;
  config.members = members_;
  config.phase_timeout_ticks = parameters_.phase_timeout_ticks;
  config.randomized_backoff = true;
  config.backoff_ticks_max = parameters_.backoff_ticks_max;
  config.seed = prng_.NextU64();
  config.check_invariants = true;
  auto created = Paxos::Create(config, node.durable);
  if (!created.ok()) {
    Fail(fmt::format("node {} cannot restart from its durable state: {}", node.id,
                     created.status().ToString()));
    return;
  }
  node.paxos = std::move(*created);
  node.running = true;
  node.last_proposal_number = {};
  if (node.incarnation > 0) {
    Tracef("n{} restarts: promised {} accepted {} decided {}", node.id,
           paxos::ToString(node.durable.promised),
           node.durable.accepted ? paxos::ToString(node.durable.accepted->number) : "none",
           node.durable.decided.value_or("(none)"));
  }
  if (node.durable.decided.has_value()) checker_.OnDecided(node.id, *node.durable.decided);
  // Nodes' clocks are not in phase: each ticks at its own offset within the tick.
  Schedule(now_ + prng_.Between(1, kTickUnits),
           Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
  if (node.client_value.has_value() && !node.paxos->Query().has_value()) ClientPropose(node);
}

void PaxosSimulation::Crash(SimNode& node) {
  ++stats_.crashes;
  Tracef("n{} CRASHES (losing {})", node.id,
         node.writing.has_value() ? "a write in progress" : "nothing unsynced");
  node.running = false;
  node.paxos.reset();
  node.writing.reset();
  node.paused = false;
  node.deferred.clear();
  ++node.incarnation;
  Schedule(now_ + prng_.Between(1, parameters_.rates.downtime_units_max),
           Event{EventKind::kRestart, node.id, 0, 0, {}});
}

void PaxosSimulation::Unpause(SimNode& node) {
  if (!node.paused) return;
  Tracef("n{} resumes ({} events were waiting)", node.id, node.deferred.size());
  node.paused = false;
  std::vector<Event> deferred = std::move(node.deferred);
  node.deferred.clear();
  // A fault during the replay may crash the node, losing whatever was still waiting, or pause
  // it again, which defers the rest anew, in order (Dispatch queues them while paused).
  for (Event& event : deferred) {
    if (!node.running) return;
    Dispatch(std::move(event));
  }
}

// ---------------------------------------------------------------------------------------------
// Faults.

NodeId PaxosSimulation::RandomRunningNode() {
  std::vector<NodeId> running;
  for (const auto& [id, node] : nodes_) {
    if (node.running) running.push_back(id);
  }
  if (running.empty()) return kNoNode;
  return running[prng_.Below(running.size())];
}

void PaxosSimulation::Nemesis() {
  if (!prng_.Chance(parameters_.rates.fault_per_mille, 1000)) return;
  const std::vector<Fault> enabled = NodeEventFaults(options_.faults);
  if (enabled.empty()) return;
  const Fault fault = enabled[prng_.Below(enabled.size())];
  if (fault == Fault::kPartition) {
    AddPartition(ChoosePartition(members_, std::nullopt, prng_));
    return;
  }
  const NodeId victim = RandomRunningNode();
  if (victim == kNoNode) return;
  if (fault == Fault::kCrash) {
    Crash(nodes_.at(victim));
  } else {
    Pause(nodes_.at(victim));
  }
}

void PaxosSimulation::StartFault(SimNode& node) {
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

void PaxosSimulation::AddPartition(PartitionPlan plan) {
  if (plan.links.empty()) return;
  ++stats_.partitions;
  const uint64_t id = network_.AddPartition(std::move(plan.links));
  Tracef("PARTITION {} {}", id, plan.description);
  const uint64_t phase_units = PhaseUnits();
  Schedule(now_ + prng_.Between(phase_units, 8 * phase_units),
           Event{EventKind::kHealPartition, {}, 0, id, {}});
}

void PaxosSimulation::Pause(SimNode& node) {
  if (node.paused) return;
  ++stats_.pauses;
  Tracef("n{} PAUSES", node.id);
  node.paused = true;
  const uint64_t phase_units = PhaseUnits();
  Schedule(now_ + prng_.Between(phase_units / 2, 4 * phase_units),
           Event{EventKind::kUnpause, node.id, 0, 0, {}});
}

void PaxosSimulation::HealEverything() {
  Tracef("FAULTS STOP: healing everything for the liveness phase");
  network_.HealAll();
  for (auto& [id, node] : nodes_) {
    if (!node.running) Start(node);
    if (node.paused) Unpause(node);
  }
}

bool PaxosSimulation::EveryNodeDecided() const {
  return std::all_of(nodes_.begin(), nodes_.end(), [](const auto& entry) {
    return entry.second.running && entry.second.paxos->Query().has_value();
  });
}

std::string PaxosSimulation::DescribeNodes() const {
  std::vector<std::string> states;
  for (const auto& [id, node] : nodes_) {
    if (!node.running) {
      states.push_back(fmt::format("n{} down", id));
      continue;
    }
    const Paxos& paxos = *node.paxos;
    states.push_back(fmt::format(
        "n{} {} proposal={} promised={} decided={}", id, paxos::ToString(paxos.phase()),
        paxos::ToString(paxos.proposal_number()),
        paxos::ToString(paxos.persistent_state().promised), paxos.Query().value_or("(none)")));
  }
  return fmt::format("{}", fmt::join(states, "; "));
}

}  // namespace

void PaxosSimStats::Add(const PaxosSimStats& run) {
  RunStats::Add(run);
  proposers += run.proposers;
  prepares += run.prepares;
  chosen_under_faults += run.chosen_under_faults;
}

PaxosSimResult RunPaxosSimulation(const SimOptions& options) {
  ThrowAssertionFailures();
  PaxosSimulation simulation(options);
  return RunReportingAssertions(simulation, options.trace);
}

}  // namespace synod::sim
