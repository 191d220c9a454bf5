// What the Paxos simulators (single-decree: sim/paxos_simulator.cc, Multi-Paxos:
// sim/multipaxos_simulator.cc) share: simulated processes that crash, restart and pause around
// a core, the events that drive them, the network with its per-message faults, and the safety
// then liveness phases of a run. Each simulator derives from NodeSimulation (CRTP) and adds its
// protocol: how a node starts from its durable state, takes and writes Readies, what its
// clients do and what the checker sees.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/prng.h"
#include "sim/event_queue.h"
#include "sim/faults.h"
#include "sim/network.h"
#include "sim/run.h"

namespace synod::sim {

// A tick is 10 units and a message takes 1-4, so a tick is a few network round trips.
inline constexpr uint64_t kNodeSimTickUnits = 10;

enum class NodeEventKind : uint8_t {
  kTick,
  kDeliver,
  kDiskDone,
  kRestart,
  kUnpause,
  kHealPartition,
  // A client acts (what it does is the simulator's; `node` is set if it targets one node).
  kClient,
  kNemesis,
};

template <typename Message>
struct NodeEvent {
  NodeEventKind kind = NodeEventKind::kTick;
  NodeId node;
  // Bumped at every crash, so timers and disk completions of a previous life are ignored.
  uint64_t incarnation = 0;
  uint64_t partition = 0;
  Message message;
};

// The process around a core: Core has Tick() and Step(Message) -> Status.
template <typename Core, typename Ready, typename Message>
struct SimProcess {
  NodeId id;
  bool running = false;
  uint64_t incarnation = 0;
  std::unique_ptr<Core> core;
  // The Ready being written (at most one: Advance comes before the next TakeReady). A crash
  // loses it whole.
  std::optional<Ready> writing;
  bool paused = false;
  // Events that arrived while paused, delivered in order on resume (like SIGSTOP).
  std::vector<NodeEvent<Message>> deferred;
};

// Derived provides:
//   void Start(Node&)          builds node.core from its durable state; sets running
//   void AfterInput(Node&)     takes Readies while it can and starts their writes
//   void CompleteWrite(Node&)  the write of node.writing completed: send, apply, Advance
//   void OnClient(Event)       a kClient event
//   void Nemesis()             maybe starts a fault (once a tick in the safety phase)
//   void OnLivenessPhase()     the faults stop (after this base heals everything)
//   std::optional<std::string> CheckerFailure() const
//   bool Live() const          the liveness goal is reached
//   uint64_t FaultWindowUnits() const   the time scale of partitions and pauses
// Node is a SimProcess (or derives from one).
template <typename Derived, typename Node, typename Message, typename Stats>
class NodeSimulation {
 protected:
  using Event = NodeEvent<Message>;
  static constexpr uint64_t kTickUnits = kNodeSimTickUnits;

  explicit NodeSimulation(const SimOptions& options) : options_(options), prng_(options.seed) {}

  Derived& self() { return static_cast<Derived&>(*this); }

  void Schedule(uint64_t time, Event event) { events_.Schedule(time, std::move(event)); }
  void ScheduleTick(const Node& node, uint64_t time) {
    Schedule(time, Event{NodeEventKind::kTick, node.id, node.incarnation, 0, {}});
  }

  template <typename... Args>
  void Tracef(fmt::format_string<Args...> format, Args&&... args) {
    if (options_.trace == nullptr) return;
    *options_.trace << fmt::format("[{:>6}.{}] ", now_ / kTickUnits, now_ % kTickUnits)
                    << fmt::format(format, std::forward<Args>(args)...) << "\n";
  }

  void Fail(std::string message) {
    if (failure_.has_value()) return;
    failure_ = std::move(message);
    Tracef("FAILURE: {}", *failure_);
  }

  // Starts every node and runs the events: faults until options_.safety_ticks, then healing and
  // the liveness phase. Returns whether Live() was reached in time; fails the run otherwise
  // with `liveness_failure` (called then) as the reason.
  template <typename DescribeFailure>
  bool RunEvents(const FaultRates& rates, DescribeFailure liveness_failure) {
    rates_ = rates;
    network_.loss_percent = rates.loss_percent;
    network_.duplicate_percent = rates.duplicate_percent;
    network_.long_delay_percent = rates.long_delay_percent;
    network_.long_delay_units_max = rates.long_delay_units_max;
    for (NodeId id : members_) {
      Node& node = nodes_.at(id);
      self().Start(node);
    }
    Schedule(kTickUnits, Event{NodeEventKind::kNemesis, {}, 0, 0, {}});
    const uint64_t end_units = (options_.safety_ticks + options_.liveness_ticks_max) * kTickUnits;
    bool live = false;
    while (!events_.empty() && !failure_.has_value()) {
      Event event = events_.Pop();
      now_ = events_.now();
      ++stats_.events;
      if (!liveness_phase_ && now_ >= options_.safety_ticks * kTickUnits) {
        liveness_phase_ = true;
        self().OnLivenessPhase();
        HealEverything();
      }
      if (now_ > end_units) break;
      Dispatch(std::move(event));
      if (std::optional<std::string> failure = self().CheckerFailure()) Fail(std::move(*failure));
      if (liveness_phase_ && self().Live()) {
        live = true;
        break;
      }
    }
    if (!failure_.has_value() && !live) Fail(liveness_failure());
    stats_.liveness_ticks = now_ / kTickUnits - std::min(now_ / kTickUnits, options_.safety_ticks);
    return live;
  }

  void Dispatch(Event event) {
    switch (event.kind) {
      case NodeEventKind::kTick: {
        Node& node = nodes_.at(event.node);
        if (!node.running || event.incarnation != node.incarnation) return;
        ScheduleTick(node, now_ + kTickUnits);
        // A paused process's timers do not fire.
        if (node.paused) return;
        node.core->Tick();
        self().AfterInput(node);
        return;
      }
      case NodeEventKind::kDeliver: {
        Node& node = nodes_.at(event.node);
        if (!node.running || network_.LinkCut(event.message.from, event.message.to)) {
          ++stats_.messages_dropped;
          return;
        }
        if (node.paused) {
          node.deferred.push_back(std::move(event));
          return;
        }
        const std::string description = ToString(event.message);
        if (Status status = node.core->Step(std::move(event.message)); !status.ok()) {
          Fail(fmt::format("node {} rejected {}: {}", node.id, description, status.ToString()));
          return;
        }
        self().AfterInput(node);
        return;
      }
      case NodeEventKind::kDiskDone: {
        Node& node = nodes_.at(event.node);
        if (!node.running || event.incarnation != node.incarnation) return;
        if (node.paused) {
          node.deferred.push_back(std::move(event));
          return;
        }
        self().CompleteWrite(node);
        self().AfterInput(node);
        return;
      }
      case NodeEventKind::kRestart: {
        // The liveness phase may already have restarted it.
        Node& node = nodes_.at(event.node);
        if (!node.running) self().Start(node);
        return;
      }
      case NodeEventKind::kUnpause:
        Unpause(nodes_.at(event.node));
        return;
      case NodeEventKind::kHealPartition:
        if (network_.HealPartition(event.partition)) Tracef("partition {} heals", event.partition);
        return;
      case NodeEventKind::kClient:
        self().OnClient(std::move(event));
        return;
      case NodeEventKind::kNemesis:
        if (liveness_phase_) return;
        self().Nemesis();
        Schedule(now_ + kTickUnits, Event{NodeEventKind::kNemesis, {}, 0, 0, {}});
        return;
    }
  }

  // Puts a message on the network: lost, delivered, or delivered twice.
  void Send(Message message) {
    ++stats_.messages_sent;
    Transmission transmission = network_.Transmit(message.from, message.to, now_, prng_);
    Tracef("{}{}", ToString(message), transmission.lost ? "  (lost)" : "");
    if (transmission.lost) {
      ++stats_.messages_dropped;
      return;
    }
    if (transmission.duplicated) ++stats_.messages_duplicated;
    const NodeId to = message.to;
    for (uint64_t arrival : transmission.arrivals) {
      Schedule(arrival, Event{NodeEventKind::kDeliver, to, 0, 0, message});
    }
  }

  // The core's next incarnation is due when the node restarts.
  void Crash(Node& node) {
    ++stats_.crashes;
    Tracef("n{} CRASHES (losing {})", node.id,
           node.writing.has_value() ? "a write in progress" : "nothing unsynced");
    node.running = false;
    node.core.reset();
    node.writing.reset();
    node.paused = false;
    node.deferred.clear();
    ++node.incarnation;
    Schedule(now_ + prng_.Between(1, rates_.downtime_units_max),
             Event{NodeEventKind::kRestart, node.id, 0, 0, {}});
  }

  void Pause(Node& node) {
    if (node.paused) return;
    ++stats_.pauses;
    Tracef("n{} PAUSES", node.id);
    node.paused = true;
    const uint64_t window = self().FaultWindowUnits();
    Schedule(now_ + prng_.Between(window / 2, 4 * window),
             Event{NodeEventKind::kUnpause, node.id, 0, 0, {}});
  }

  void Unpause(Node& node) {
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

  void AddPartition(PartitionPlan plan) {
    if (plan.links.empty()) return;
    ++stats_.partitions;
    const uint64_t id = network_.AddPartition(std::move(plan.links));
    Tracef("PARTITION {} {}", id, plan.description);
    const uint64_t window = self().FaultWindowUnits();
    Schedule(now_ + prng_.Between(window, 8 * window),
             Event{NodeEventKind::kHealPartition, {}, 0, id, {}});
  }

  // `fault` (a node event fault) of `node`: a partition of the nodes (`node` preferred as the
  // victim), a crash or a pause.
  void StartNodeFault(Node& node, Fault fault) {
    if (fault == Fault::kPartition) {
      AddPartition(ChoosePartition(members_, node.id, prng_));
    } else if (fault == Fault::kCrash) {
      Crash(node);
    } else {
      Pause(node);
    }
  }

  // The buggify fault right after an acceptor's promise or acceptance left: isolation, crash or
  // pause of that node, whichever of them the run enables.
  void MaybeFaultAfterAcceptorReply(Node& node, bool promised_or_accepted) {
    if (liveness_phase_ || !promised_or_accepted ||
        !prng_.Chance(rates_.acceptor_fault_percent, 100)) {
      return;
    }
    const std::vector<Fault> enabled = NodeEventFaults(options_.faults);
    SYNOD_ASSERT(!enabled.empty());
    const Fault fault = enabled[prng_.Below(enabled.size())];
    if (fault == Fault::kPartition) {
      AddPartition(IsolationOf(node.id, members_));
    } else {
      StartNodeFault(node, fault);
    }
  }

  Node* RandomRunningNode() {
    std::vector<Node*> running;
    for (auto& [id, node] : nodes_) {
      if (node.running) running.push_back(&node);
    }
    if (running.empty()) return nullptr;
    return running[prng_.Below(running.size())];
  }

  void HealEverything() {
    Tracef("FAULTS STOP: healing everything for the liveness phase");
    network_.HealAll();
    for (auto& [id, node] : nodes_) {
      if (!node.running) self().Start(node);
      if (node.paused) Unpause(node);
    }
  }

  SimOptions options_;
  base::Prng prng_;
  FaultRates rates_;
  std::vector<NodeId> members_;
  std::map<NodeId, Node> nodes_;
  Stats stats_;
  std::optional<std::string> failure_;
  EventQueue<Event> events_;
  SimNetwork network_;
  uint64_t now_ = 0;
  bool liveness_phase_ = false;
};

}  // namespace synod::sim
