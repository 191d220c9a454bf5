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
#include "sim/node_simulation.h"
#include "sim/paxos_checker.h"

namespace synod::sim {
namespace {

using paxos::Message;
using paxos::MessageType;
using paxos::Paxos;
using paxos::Ready;

constexpr uint64_t kTickUnits = kNodeSimTickUnits;

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

struct SimNode : SimProcess<Paxos, Ready, Message> {
  // What the disk holds: the state of the last Ready whose write completed. A write is one
  // small record, so a crash loses it whole or not at all.
  paxos::PersistentState durable;
  // The value this node's client wants proposed; the client asks again after every restart
  // until the node has decided, as a client retries a call that failed.
  std::optional<std::string> client_value;
  paxos::ProposalNumber last_proposal_number;
};

class PaxosSimulation
    : public NodeSimulation<PaxosSimulation, SimNode, Message, PaxosSimStats> {
 public:
  explicit PaxosSimulation(const SimOptions& options);
  PaxosSimResult Run();
  const std::string& parameters_description() const { return parameters_description_; }

 private:
  friend class NodeSimulation<PaxosSimulation, SimNode, Message, PaxosSimStats>;

  // NodeSimulation's hooks.
  void Start(SimNode& node);
  // The Ready contract (consensus/paxos/types.h), with a disk that takes time.
  void AfterInput(SimNode& node);
  void CompleteWrite(SimNode& node);
  // A client asks event.node to propose its value.
  void OnClient(Event event);
  void Nemesis();
  void OnLivenessPhase() {
    if (checker_.chosen().has_value()) stats_.chosen_under_faults = 1;
  }
  std::optional<std::string> CheckerFailure() const { return checker_.failure(); }
  bool Live() const;
  uint64_t FaultWindowUnits() const { return parameters_.phase_timeout_ticks * kTickUnits; }

  void ClientPropose(SimNode& node);
  std::string DescribeNodes() const;

  Parameters parameters_;
  std::string parameters_description_;
  PaxosChecker checker_;
};

PaxosSimulation::PaxosSimulation(const SimOptions& options)
    : NodeSimulation(options),
      parameters_(ChooseParameters(options, prng_)),
      parameters_description_(parameters_.ToString()),
      checker_(parameters_.nodes) {
  for (uint32_t i = 1; i <= parameters_.nodes; ++i) {
    members_.push_back(NodeId(i));
    nodes_[NodeId(i)].id = NodeId(i);
  }
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

// ---------------------------------------------------------------------------------------------
// The run.

PaxosSimResult PaxosSimulation::Run() {
  Tracef("seed {} faults {} {}", options_.seed, ToString(options_.faults), parameters_description_);
  // The proposers are a random subset, each asked at a random moment of the window, so some
  // proposals race and some find a value already chosen.
  std::vector<NodeId> shuffled = members_;
  for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[prng_.Below(i)]);
  stats_.proposers = parameters_.proposers;
  const uint64_t propose_window_units =
      std::min(parameters_.propose_window_ticks, options_.safety_ticks) * kTickUnits;
  for (uint32_t i = 0; i < parameters_.proposers; ++i) {
    Schedule(prng_.Between(1, propose_window_units),
             Event{NodeEventKind::kClient, shuffled[i], 0, 0, {}});
  }
  RunEvents(parameters_.rates, [this] {
    return fmt::format("Liveness: {} ticks after faults stopped, not every node has decided [{}]",
                       now_ / kTickUnits - options_.safety_ticks, DescribeNodes());
  });

  PaxosSimResult result;
  result.passed = !failure_.has_value();
  result.failure = failure_.value_or("");
  result.parameters = parameters_description_;
  result.stats = stats_;
  return result;
}

void PaxosSimulation::OnClient(Event event) {
  SimNode& node = nodes_.at(event.node);
  node.client_value = fmt::format("v{}", node.id);
  checker_.OnProposed(node.id, *node.client_value);
  if (!node.running) return;  // Asked again when it restarts.
  if (node.paused) {
    node.deferred.push_back(std::move(event));
    return;
  }
  ClientPropose(node);
}

// ---------------------------------------------------------------------------------------------
// Nodes.

void PaxosSimulation::ClientPropose(SimNode& node) {
  Status status = node.core->Propose(*node.client_value);
  Tracef("client asks n{} to propose \"{}\": {}", node.id, *node.client_value, status.ToString());
  AfterInput(node);
}

void PaxosSimulation::AfterInput(SimNode& node) {
  while (node.running && !node.writing.has_value() && node.core->HasReady()) {
    Ready ready = node.core->TakeReady();
    if (node.core->proposal_number() != node.last_proposal_number) {
      node.last_proposal_number = node.core->proposal_number();
      ++stats_.prepares;
    }
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
  for (Message& message : ready.messages) {
    checker_.OnSent(message);
    Send(std::move(message));
  }
  if (ready.decided.has_value()) {
    Tracef("n{} decides \"{}\"", node.id, *ready.decided);
    checker_.OnDecided(node.id, *ready.decided);
  }
  node.core->Advance();
  MaybeFaultAfterAcceptorReply(node, promised_or_accepted);
}

void PaxosSimulation::Start(SimNode& node) {
  SYNOD_ASSERT(node.core == nullptr);
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
  node.core = std::move(*created);
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
  ScheduleTick(node, now_ + prng_.Between(1, kTickUnits));
  if (node.client_value.has_value() && !node.core->Query().has_value()) ClientPropose(node);
}

// ---------------------------------------------------------------------------------------------
// Faults.

void PaxosSimulation::Nemesis() {
  if (!prng_.Chance(parameters_.rates.fault_per_mille, 1000)) return;
  const std::vector<Fault> enabled = NodeEventFaults(options_.faults);
  if (enabled.empty()) return;
  const Fault fault = enabled[prng_.Below(enabled.size())];
  if (fault == Fault::kPartition) {
    AddPartition(ChoosePartition(members_, std::nullopt, prng_));
    return;
  }
  SimNode* victim = RandomRunningNode();
  if (victim == nullptr) return;
  StartNodeFault(*victim, fault);
}

bool PaxosSimulation::Live() const {
  return std::all_of(nodes_.begin(), nodes_.end(), [](const auto& entry) {
    return entry.second.running && entry.second.core->Query().has_value();
  });
}

std::string PaxosSimulation::DescribeNodes() const {
  std::vector<std::string> states;
  for (const auto& [id, node] : nodes_) {
    if (!node.running) {
      states.push_back(fmt::format("n{} down", id));
      continue;
    }
    const Paxos& paxos = *node.core;
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
