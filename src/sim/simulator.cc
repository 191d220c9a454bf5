#include "sim/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/assert.h"
#include "base/prng.h"
#include "consensus/raft/raft.h"
#include "sim/assertion_failure.h"
#include "sim/checker.h"
#include "sim/event_queue.h"
#include "sim/network.h"
#include "sim/sim_disk.h"
#include "storage/wal.h"

namespace synod::sim {
namespace {

using raft::Entry;
using raft::Message;
using raft::MessageType;
using raft::Ready;
using raft::Role;

// Simulated time advances in units; a node ticks every kTickUnits units. A message normally
// takes a few units, so a tick is several network round trips, as with a 100 ms tick on a LAN.
constexpr uint64_t kTickUnits = 10;
// Spare node ids that membership changes may add; ids are never reused once removed.
constexpr uint32_t kSpareNodes = 3;
constexpr uint32_t kVotersMin = 3;
constexpr uint32_t kVotersMax = 7;
// Small segments, so runs rotate and release them and a flipped bit can land in an old one.
constexpr uint64_t kWalSegmentBytes = 8 << 10;
constexpr char kWalDirectory[] = "/node/wal";

// Moments at which a fault exposes the most, because what a node has promised and what the
// others know are briefly out of step.
enum class Moment : uint8_t {
  // A vote was just made durable and sent: a node that forgets it could vote twice.
  kVoteGranted,
  // A node just became leader: its log may hold entries nobody else has.
  kBecameLeader,
  // A leader's commit index just advanced: the entries that follow, maybe of a newer term, are
  // still on the wire (the setting of the paper's figure 8).
  kCommitAdvanced,
};
inline constexpr size_t kMomentCount = 3;

// Every random choice a seed makes about the run, printed with a failure so it can be read
// without replaying.
struct Parameters {
  uint32_t voters = 3;
  // The core's settings, shared by every node; each node gets its own id and seed.
  raft::Config node;
  uint64_t snapshot_interval = 100;
  uint64_t compaction_keep = 10;
  uint32_t loss_percent = 0;
  uint32_t duplicate_percent = 0;
  uint32_t long_delay_percent = 0;
  uint64_t long_delay_units_max = 0;
  uint32_t fault_per_mille = 0;  // chance per tick of starting a fault
  // The chance that a node crashes right after any disk write completes and its messages leave.
  uint32_t crash_after_write_per_100k = 0;
  // FoundationDB-style "buggify": the chance of a fault (crash, isolation or pause of the node)
  // at each moment the protocol changes state; see Moment.
  std::array<uint32_t, kMomentCount> moment_fault_percent{};
  // The longest downtime of a crashed node; short ones let it rejoin within one election.
  uint64_t downtime_units_max = 0;
  uint32_t proposals_per_tick_max = 2;
  uint32_t reads_per_mille = 300;
  // Disk faults: the chance that a crash tears the write in progress (rather than losing it
  // whole), that a completed write's fsync fails, and that a crash comes with a flipped bit in
  // an old log segment.
  uint32_t torn_crash_percent = 0;
  uint32_t fsync_failure_per_100k = 0;
  uint32_t bit_flip_percent = 0;

  std::string ToString() const {
    return fmt::format(
        "voters={} election_timeout={} heartbeat={} pre_vote={} check_quorum={} inflight={} "
        "append_bytes={} snapshot_every={} compaction_keep={} loss={}% dup={}% long_delay={}% "
        "long_delay_max={}u faults_per_mille={} crash_after_write_per_100k={} "
        "moment_faults={}% downtime_max={}u "
        "proposals_per_tick<={} reads_per_mille={} torn_crash={}% fsync_fail_per_100k={} "
        "bit_flip={}%",
        voters, node.election_timeout_ticks, node.heartbeat_interval_ticks, node.pre_vote,
        node.check_quorum, node.inflight_messages_max, node.append_entries_bytes_max,
        snapshot_interval, compaction_keep, loss_percent, duplicate_percent, long_delay_percent,
        long_delay_units_max, fault_per_mille, crash_after_write_per_100k,
        fmt::join(moment_fault_percent, "/"), downtime_units_max, proposals_per_tick_max,
        reads_per_mille, torn_crash_percent, fsync_failure_per_100k, bit_flip_percent);
  }
};

enum class EventKind : uint8_t {
  kTick,
  kDeliver,
  kDiskDone,
  kCrash,
  kRestart,
  kUnpause,
  kHealPartition,
  kUnslow,
  kClient,
  kNemesis,
};

struct Event {
  EventKind kind = EventKind::kTick;
  NodeId node;
  uint64_t incarnation = 0;
  uint64_t partition = 0;
  Message message;
};

// A node of the simulated cluster: the Raft core, what it has made durable, its state machine
// and its fault state.
struct SimNode {
  NodeId id;
  bool running = true;
  // Bumped at every crash, so events of a previous life (disk completions, ticks) are ignored.
  uint64_t incarnation = 0;
  std::unique_ptr<raft::Raft> raft;

  // The node's disk and its write-ahead log on it: what production runs, with faults.
  std::unique_ptr<SimDisk> disk;
  std::unique_ptr<storage::Wal> wal;
  // A write handed to the disk whose fsync had not returned when the node crashed: recovery
  // may find it whole, or not at all, never in part. Who wrote it matters to the checker.
  struct UnsyncedWrite {
    Ready ready;
    bool was_leader = false;
    Term term;
  };
  std::optional<UnsyncedWrite> unsynced_at_crash;
  // A bit flipped in an old log record at the last crash: restart must refuse to start, naming
  // the file and an offset at or before it.
  struct FlippedBit {
    std::string path;
    uint64_t offset = 0;
    uint8_t bit = 0;
  };
  std::optional<FlippedBit> flipped_bit;

  // The model of what is durable, which the log recovered at restart must match: survives a
  // crash.
  raft::HardState hard_state;
  raft::Snapshot snapshot;
  // Durable log entries, contiguous, starting at durable_first.
  std::deque<Entry> durable_log;
  Index durable_first{1};

  // The Ready being written (at most one: Advance must come before the next TakeReady).
  std::optional<Ready> writing;

  // Volatile state machine: a hash chain over the applied entries.
  Index applied;
  uint64_t state_hash = 0;
  Index last_snapshot_index;
  // The commit index at the last look, to notice a leader's commit advancing.
  Index commit_seen;

  // Faults.
  bool paused = false;
  std::vector<Event> deferred;
  uint32_t slow_factor = 1;

  Index durable_last() const { return durable_first.plus(durable_log.size()).prev(); }
};

// A client request; it is retried (with a new proposal id each time) until one attempt applies.
struct Request {
  uint64_t last_attempt_tick = 0;
  // Who accepted the last attempt, in which term (none if it was refused): like an etcd client
  // waiting on its call, the client retries early only when that leadership ended.
  NodeId accepted_by;
  Term accepted_term;
  bool done = false;
};

std::string DescribeMessage(const Message& m) {
  std::string text = fmt::format("n{}->n{} {} t{}", m.from, m.to, raft::ToString(m.type), m.term);
  switch (m.type) {
    case MessageType::kAppendEntries:
      text += fmt::format(" prev={}/t{} commit={}", m.log_index, m.log_term, m.commit);
      if (!m.entries.empty()) {
        text += fmt::format(" entries={}..{}", m.entries.front().index, m.entries.back().index);
      }
      break;
    case MessageType::kAppendEntriesResponse:
      text += m.reject ? fmt::format(" reject={} hint={}/t{}", m.index, m.reject_hint_index,
                                     m.reject_hint_term)
                       : fmt::format(" match={}", m.index);
      break;
    case MessageType::kRequestVote:
    case MessageType::kRequestPreVote:
      text += fmt::format(" last={}/t{}{}", m.log_index, m.log_term,
                          m.leadership_transfer ? " transfer" : "");
      break;
    case MessageType::kRequestVoteResponse:
    case MessageType::kRequestPreVoteResponse:
      text += m.reject ? " rejected" : " granted";
      break;
    case MessageType::kHeartbeat:
      text += fmt::format(" commit={} round={}", m.commit, m.read_round);
      break;
    case MessageType::kHeartbeatResponse:
      text += fmt::format(" round={}", m.read_round);
      break;
    case MessageType::kInstallSnapshot:
      text += fmt::format(" snapshot={}/t{} {}", m.snapshot->meta.index, m.snapshot->meta.term,
                          raft::ToString(m.snapshot->meta.membership));
      break;
    case MessageType::kReadIndex:
      text += fmt::format(" read={}", m.read_context);
      break;
    case MessageType::kReadIndexResponse:
      text += fmt::format(" read={} index={}", m.read_context, m.index);
      break;
    case MessageType::kTimeoutNow:
      break;
  }
  return text;
}

std::string EncodeSnapshot(Index index, uint64_t state_hash) {
  return fmt::format("{}:{}", index, state_hash);
}

uint64_t DecodeSnapshotHash(const std::string& data) {
  if (data.empty()) return 0;  // The initial snapshot at index 0.
  const size_t colon = data.find(':');
  SYNOD_ASSERT(colon != std::string::npos);
  return std::stoull(data.substr(colon + 1));
}

class Simulation {
 public:
  explicit Simulation(const SimOptions& options);
  SimResult Run();
  const std::string& parameters_description() const { return parameters_description_; }

 private:
  void ChooseParameters();
  raft::Config NodeConfig(NodeId id);
  uint64_t ElectionUnits() const { return parameters_.node.election_timeout_ticks * kTickUnits; }
  void Schedule(uint64_t time, Event event) { events_.Schedule(time, std::move(event)); }
  void Dispatch(Event event);
  void Trace(std::string_view text);
  template <typename... Args>
  void Tracef(fmt::format_string<Args...> format, Args&&... args) {
    if (options_.trace != nullptr) Trace(fmt::format(format, std::forward<Args>(args)...));
  }
  void Fail(std::string message);

  SimNode& NodeAt(NodeId id) { return nodes_.at(id); }
  // Runs the node's pending Ready batches and records what the checker needs to see.
  void AfterInput(SimNode& node);
  void Pump(SimNode& node);
  void CompleteWrite(SimNode& node);
  void Persist(SimNode& node, const Ready& ready);
  void WriteToLog(SimNode& node, const Ready& ready);
  // Opens the node's log after a crash and checks it against the model; false on failure.
  bool RecoverLog(SimNode& node);
  void Apply(SimNode& node, const Ready& ready);
  void MaybeSnapshot(SimNode& node);
  void Send(Message message);
  uint64_t DeliveryTime(NodeId from, NodeId to);

  // Faults.
  void Nemesis();
  void Crash(SimNode& node);
  void CrashAndScheduleRestart(SimNode& node);
  void MaybeFaultAt(SimNode& node, Moment moment);
  void AddPartition(PartitionPlan plan, uint64_t duration_units);
  std::vector<NodeId> AllIds() const;
  void Restart(SimNode& node);
  void Pause(SimNode& node);
  void Unpause(SimNode& node);
  void StartPartition();
  void HealPartition(uint64_t id);
  void ChangeMembership();
  void TransferLeadership();
  void HealEverything();

  // Clients.
  void ClientStep();
  void Propose(uint64_t request_id);
  void Read();
  SimNode* BelievedLeader();
  NodeId RandomRunningNode();
  bool LivenessReached();

  SimOptions options_;
  base::Prng prng_;
  Parameters parameters_;
  // As chosen at the start (the liveness phase zeroes the fault rates).
  std::string parameters_description_;
  Checker checker_;
  SimStats stats_;
  std::optional<std::string> failure_;

  uint64_t now_ = 0;
  EventQueue<Event> events_;

  std::map<NodeId, SimNode> nodes_;
  SimNetwork network_;
  std::vector<NodeId> spare_ids_;

  bool liveness_phase_ = false;
  uint64_t liveness_start_tick_ = 0;
  uint64_t tick_ = 0;
  std::map<uint64_t, Request> requests_;
  std::map<uint64_t, uint64_t> request_of_proposal_;
  uint64_t next_request_id_ = 1;
  uint64_t next_proposal_id_ = 1;
  uint64_t next_read_id_ = 1;
  uint64_t pending_requests_ = 0;
};

Simulation::Simulation(const SimOptions& options) : options_(options), prng_(options.seed) {
  ChooseParameters();
  parameters_description_ = parameters_.ToString();
}

void Simulation::ChooseParameters() {
  Parameters& p = parameters_;
  static constexpr std::array<uint32_t, 3> kSizes = {3, 5, 7};
  p.voters = options_.nodes != 0 ? options_.nodes : kSizes[prng_.Below(kSizes.size())];
  p.node.election_timeout_ticks = static_cast<uint32_t>(prng_.Between(5, 15));
  p.node.heartbeat_interval_ticks = static_cast<uint32_t>(prng_.Between(1, 2));
  p.node.pre_vote = prng_.Chance(85, 100);
  p.node.check_quorum = prng_.Chance(85, 100);
  static constexpr std::array<uint32_t, 3> kInflight = {1, 4, 64};
  p.node.inflight_messages_max = kInflight[prng_.Below(kInflight.size())];
  // Payloads are a few bytes: 1 byte means one entry per message (which splits an old term's
  // entries from a new leader's no-op, the setting of the paper's figure 8), 64 about ten.
  static constexpr std::array<uint64_t, 4> kAppendBytes = {1, 64, 1024, 1 << 20};
  p.node.append_entries_bytes_max = kAppendBytes[prng_.Below(kAppendBytes.size())];
  // One entry per message carries the workload only with a pipeline.
  if (p.node.append_entries_bytes_max == 1) p.node.inflight_messages_max = 64;
  p.node.snapshot_retry_ticks = p.node.election_timeout_ticks * 2;
  // Always in the simulator: every input is followed by the core's own invariant checks.
  p.node.check_invariants = true;
  p.snapshot_interval = prng_.Between(5, 200);
  p.compaction_keep = prng_.Between(0, 20);
  const FaultSet& f = options_.faults;
  if (f.test(static_cast<size_t>(Fault::kLoss))) p.loss_percent = prng_.Between(1, 20);
  if (f.test(static_cast<size_t>(Fault::kDuplicate))) p.duplicate_percent = prng_.Between(1, 10);
  if (f.test(static_cast<size_t>(Fault::kDelay))) {
    p.long_delay_percent = prng_.Between(1, 20);
    p.long_delay_units_max = prng_.Between(2, 40) * kTickUnits;
  }
  p.fault_per_mille = f.any() ? prng_.Between(10, 80) : 0;
  const bool moment_faults = f.test(static_cast<size_t>(Fault::kCrash)) ||
                             f.test(static_cast<size_t>(Fault::kPartition)) ||
                             f.test(static_cast<size_t>(Fault::kPause));
  for (uint32_t& percent : p.moment_fault_percent) {
    percent = moment_faults && prng_.Chance(1, 2) ? static_cast<uint32_t>(prng_.Between(5, 50)) : 0;
  }
  if (f.test(static_cast<size_t>(Fault::kCrash))) {
    p.crash_after_write_per_100k = prng_.Chance(1, 2) ? prng_.Between(1, 100) : 0;
    p.downtime_units_max =
        prng_.Chance(1, 2) ? prng_.Between(2, 30) : prng_.Between(5, 50) * kTickUnits;
  }
  p.proposals_per_tick_max = static_cast<uint32_t>(prng_.Between(1, 4));
  p.reads_per_mille = static_cast<uint32_t>(prng_.Between(50, 500));
  if (f.test(static_cast<size_t>(Fault::kDisk))) {
    p.torn_crash_percent = static_cast<uint32_t>(prng_.Between(20, 100));
    p.fsync_failure_per_100k = prng_.Chance(1, 2) ? static_cast<uint32_t>(prng_.Between(10, 300)) : 0;
    p.bit_flip_percent = prng_.Chance(1, 2) ? static_cast<uint32_t>(prng_.Between(5, 30)) : 0;
  }
}

raft::Config Simulation::NodeConfig(NodeId id) {
  raft::Config config = parameters_.node;
  config.id = id;
  config.seed = prng_.NextU64();
  return config;
}

void Simulation::Trace(std::string_view text) {
  *options_.trace << fmt::format("[{:>6}.{}] {}\n", now_ / kTickUnits, now_ % kTickUnits, text);
}

void Simulation::Fail(std::string message) {
  if (!failure_.has_value()) {
    failure_ = std::move(message);
    Tracef("FAILURE: {}", *failure_);
  }
}

// ---------------------------------------------------------------------------------------------
// The run.

SimResult Simulation::Run() {
  const uint32_t total = parameters_.voters + kSpareNodes;
  raft::Membership initial;
  for (uint32_t i = 1; i <= parameters_.voters; ++i) initial.voters.push_back(NodeId(i));
  for (uint32_t i = 1; i <= total; ++i) {
    const NodeId id(i);
    SimNode& node = nodes_[id];
    node.id = id;
    // Members of the new cluster start from a snapshot at index 0 holding the initial
    // configuration; spare nodes start empty and learn the configuration when added.
    if (i <= parameters_.voters) node.snapshot.meta.membership = initial;
    if (i > parameters_.voters) spare_ids_.push_back(id);
    node.disk = std::make_unique<SimDisk>();
    SYNOD_ASSERT(node.disk->CreateDirectory("/node").ok());
    auto wal = storage::Wal::Create(node.disk.get(), {kWalDirectory, kWalSegmentBytes},
                                    node.snapshot.meta);
    SYNOD_ASSERT_MSG(wal.ok(), "{}", wal.status().ToString());
    node.wal = std::move(*wal);
    Restart(node);
  }
  Tracef("seed {} faults {} {}", options_.seed, ToString(options_.faults), parameters_.ToString());
  network_.loss_percent = parameters_.loss_percent;
  network_.duplicate_percent = parameters_.duplicate_percent;
  network_.long_delay_percent = parameters_.long_delay_percent;
  network_.long_delay_units_max = parameters_.long_delay_units_max;
  Schedule(kTickUnits, Event{EventKind::kClient, {}, 0, 0, {}});
  Schedule(kTickUnits, Event{EventKind::kNemesis, {}, 0, 0, {}});

  const uint64_t end_tick = options_.safety_ticks + options_.liveness_ticks_max;
  bool live = false;
  while (!events_.empty() && !failure_.has_value()) {
    Event event = events_.Pop();
    now_ = events_.now();
    ++stats_.events;
    tick_ = now_ / kTickUnits;
    if (!liveness_phase_ && tick_ >= options_.safety_ticks) {
      liveness_phase_ = true;
      liveness_start_tick_ = tick_;
      HealEverything();
    }
    if (tick_ > end_tick) break;
    const EventKind kind = event.kind;
    Dispatch(std::move(event));
    if (checker_.failed()) Fail(*checker_.failure());
    if (liveness_phase_ && kind == EventKind::kClient && LivenessReached()) {
      live = true;
      break;
    }
  }
  if (!failure_.has_value() && !live) {
    std::vector<std::string> states;
    for (const auto& [id, node] : nodes_) {
      if (!node.running) continue;
      states.push_back(fmt::format("n{} {} t{} commit={} applied={} last={}", id,
                                   raft::ToString(node.raft->role()), node.raft->term(),
                                   node.raft->log().committed(), node.applied,
                                   node.raft->log().last_index()));
    }
    Fail(fmt::format(
        "Liveness: {} ticks after faults stopped, {} client requests were not committed or the "
        "members had not caught up [{}]",
        tick_ - liveness_start_tick_, pending_requests_, fmt::join(states, "; ")));
  }
  stats_.liveness_ticks = tick_ - liveness_start_tick_;
  stats_.leaders_elected = checker_.leaders_elected();
  stats_.committed = checker_.committed_max().value();
  stats_.proposals_applied = checker_.applied_proposals().size();

  SimResult result;
  result.passed = !failure_.has_value();
  result.failure = failure_.value_or("");
  result.parameters = parameters_description_;
  result.stats = stats_;
  return result;
}

void Simulation::Dispatch(Event event) {
  switch (event.kind) {
    case EventKind::kTick: {
      SimNode& node = NodeAt(event.node);
      if (!node.running || event.incarnation != node.incarnation) return;
      Schedule(now_ + kTickUnits, Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
      // A paused process's timers do not fire.
      if (node.paused) return;
      node.raft->Tick();
      AfterInput(node);
      return;
    }
    case EventKind::kDeliver: {
      SimNode& node = NodeAt(event.node);
      if (!node.running) return;
      if (network_.LinkCut(event.message.from, event.message.to)) {
        ++stats_.messages_dropped;
        return;
      }
      if (node.paused) {
        node.deferred.push_back(std::move(event));
        return;
      }
      const NodeId from = event.message.from;
      const MessageType type = event.message.type;
      Status status = node.raft->Step(std::move(event.message));
      if (!status.ok()) {
        Fail(fmt::format("node {} rejected a {} from node {}: {}", node.id, raft::ToString(type),
                         from, status.ToString()));
        return;
      }
      AfterInput(node);
      return;
    }
    case EventKind::kDiskDone: {
      SimNode& node = NodeAt(event.node);
      if (!node.running || event.incarnation != node.incarnation) return;
      if (node.paused) {
        node.deferred.push_back(std::move(event));
        return;
      }
      CompleteWrite(node);
      AfterInput(node);
      return;
    }
    case EventKind::kCrash: {
      SimNode& node = NodeAt(event.node);
      if (node.running && event.incarnation == node.incarnation && !liveness_phase_) {
        CrashAndScheduleRestart(node);
      }
      return;
    }
    case EventKind::kRestart:
      // The liveness phase may already have restarted it.
      if (!NodeAt(event.node).running) Restart(NodeAt(event.node));
      return;
    case EventKind::kUnpause:
      Unpause(NodeAt(event.node));
      return;
    case EventKind::kHealPartition:
      HealPartition(event.partition);
      return;
    case EventKind::kUnslow:
      NodeAt(event.node).slow_factor = 1;
      Tracef("n{} is no longer slow", event.node);
      return;
    case EventKind::kClient:
      ClientStep();
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
// Nodes: the Ready contract (types.h), with a disk that takes time.

void Simulation::AfterInput(SimNode& node) {
  if (!node.running) return;
  Pump(node);
  // A crash right after a write may have ended the node meanwhile.
  if (!node.running) return;
  checker_.ObserveNode(*node.raft);
  const Index commit = node.raft->log().committed();
  const bool leader_committed = node.raft->role() == Role::kLeader && commit > node.commit_seen;
  node.commit_seen = commit;
  if (leader_committed) MaybeFaultAt(node, Moment::kCommitAdvanced);
}

void Simulation::Pump(SimNode& node) {
  while (node.running && !node.writing.has_value() && node.raft->HasReady()) {
    Ready ready = node.raft->TakeReady();
    if (ready.soft_state.has_value()) {
      Tracef("n{} is {} in term {} (leader n{})", node.id, raft::ToString(ready.soft_state->role),
             node.raft->term(), ready.soft_state->leader);
      if (ready.soft_state->role == Role::kLeader) MaybeFaultAt(node, Moment::kBecameLeader);
    }
    // Thesis 10.2.1: the leader's replication traffic overtakes its own disk write.
    for (Message& message : ready.early_messages) Send(std::move(message));
    ready.early_messages.clear();
    const bool must_persist = ready.MustPersist();
    if (must_persist) WriteToLog(node, ready);
    node.writing = std::move(ready);
    if (must_persist) {
      const uint64_t latency = prng_.Between(1, 4) * node.slow_factor;
      Schedule(now_ + latency, Event{EventKind::kDiskDone, node.id, node.incarnation, 0, {}});
      return;
    }
    CompleteWrite(node);
  }
}

void Simulation::CompleteWrite(SimNode& node) {
  SYNOD_ASSERT(node.writing.has_value());
  if (node.writing->MustPersist()) {
    if (!liveness_phase_ && prng_.Chance(parameters_.fsync_failure_per_100k, 100000)) {
      node.disk->FailSyncs(1);
    }
    if (Status status = node.wal->Sync(); !status.ok()) {
      // Nothing may be acknowledged on top of a failed fsync: the node stops (as etcd does)
      // and recovers from what its disk holds when it is restarted.
      ++stats_.fsync_failures;
      Tracef("n{} stops: {}", node.id, status.ToString());
      CrashAndScheduleRestart(node);
      return;
    }
  }
  Ready ready = std::move(*node.writing);
  node.writing.reset();
  const Index durable_last_before = node.durable_last();
  Persist(node, ready);
  checker_.OnPersist(*node.raft, ready, durable_last_before);
  // Only now, with the vote, term and entries durable, may promises about them leave the node.
  const bool granted_vote =
      std::any_of(ready.messages.begin(), ready.messages.end(), [](const Message& message) {
        return message.type == MessageType::kRequestVoteResponse && !message.reject;
      });
  for (Message& message : ready.messages) Send(std::move(message));
  // A Ready that only commits persists nothing and is applied at once: the checker must learn
  // the commit before it sees the entries applied.
  checker_.ObserveNode(*node.raft);
  Apply(node, ready);
  for (const raft::ReadState& read : ready.read_states) {
    ++stats_.reads_released;
    Tracef("n{} read {} released at index {}", node.id, read.context, read.index);
    checker_.OnReadReleased(node.id, read);
  }
  node.raft->Advance();
  MaybeSnapshot(node);
  if (liveness_phase_) return;
  if (granted_vote) MaybeFaultAt(node, Moment::kVoteGranted);
  if (node.running && prng_.Chance(parameters_.crash_after_write_per_100k, 100000)) {
    CrashAndScheduleRestart(node);
  }
}

void Simulation::MaybeFaultAt(SimNode& node, Moment moment) {
  if (liveness_phase_ || !node.running ||
      !prng_.Chance(parameters_.moment_fault_percent[static_cast<size_t>(moment)], 100)) {
    return;
  }
  std::vector<Fault> faults;
  for (Fault fault : {Fault::kCrash, Fault::kPartition, Fault::kPause}) {
    if (options_.faults.test(static_cast<size_t>(fault))) faults.push_back(fault);
  }
  SYNOD_ASSERT(!faults.empty());
  const uint64_t election_units = ElectionUnits();
  switch (faults[prng_.Below(faults.size())]) {
    case Fault::kCrash:
      if (moment == Moment::kBecameLeader) {
        // Let the new leader append (and perhaps start to send) before it dies.
        Schedule(now_ + prng_.Between(1, 2 * kTickUnits),
                 Event{EventKind::kCrash, node.id, node.incarnation, 0, {}});
      } else if (moment == Moment::kVoteGranted) {
        // Back within a message delay, so another candidate's request may find it.
        Crash(node);
        Schedule(now_ + prng_.Between(1, 3), Event{EventKind::kRestart, node.id, 0, 0, {}});
      } else {
        CrashAndScheduleRestart(node);
      }
      break;
    case Fault::kPartition:
      // Cut at once, so what the node sent in this very step is lost on the way.
      AddPartition(IsolationOf(node.id, AllIds()),
                   prng_.Between(election_units, 6 * election_units));
      break;
    case Fault::kPause:
      if (node.paused) break;
      Pause(node);
      Schedule(now_ + prng_.Between(election_units / 2, 4 * election_units),
               Event{EventKind::kUnpause, node.id, 0, 0, {}});
      break;
    default:
      break;
  }
}

void Simulation::CrashAndScheduleRestart(SimNode& node) {
  Crash(node);
  Schedule(now_ + prng_.Between(1, parameters_.downtime_units_max),
           Event{EventKind::kRestart, node.id, 0, 0, {}});
}

void Simulation::Persist(SimNode& node, const Ready& ready) {
  if (ready.snapshot.has_value()) {
    // Raft 7: the snapshot supersedes the whole log.
    node.snapshot = *ready.snapshot;
    node.durable_log.clear();
    node.durable_first = ready.snapshot->meta.index.next();
    ++stats_.snapshots_installed;
  }
  if (!ready.entries.empty()) {
    const Index first = ready.entries.front().index;
    SYNOD_ASSERT(first >= node.durable_first);
    SYNOD_ASSERT(first <= node.durable_last().next());
    node.durable_log.resize(first.distance_from(node.durable_first));
    for (const Entry& entry : ready.entries) node.durable_log.push_back(entry);
  }
  if (ready.hard_state.has_value()) node.hard_state = *ready.hard_state;
}

void Simulation::WriteToLog(SimNode& node, const Ready& ready) {
  storage::Wal& wal = *node.wal;
  if (ready.snapshot.has_value()) wal.InstallSnapshot(ready.snapshot->meta);
  wal.Append(ready.entries);
  if (ready.hard_state.has_value()) wal.SaveHardState(*ready.hard_state);
  // Only a rotation's fsync of the previous segment can fail here, and fsync failures are
  // injected only before the completing Sync.
  const Status status = wal.Write();
  SYNOD_ASSERT_MSG(status.ok(), "{}", status.ToString());
}

namespace {

// The durable state as the log holds it and as the model expects it, for comparison.
struct DurableView {
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;
  std::vector<Entry> entries;

  bool operator==(const DurableView&) const = default;
};

std::string Describe(const DurableView& view) {
  return fmt::format("term {} vote n{} commit {} snapshot {} (term {}) entries {}..{}",
                     view.hard_state.term, view.hard_state.voted_for, view.hard_state.commit,
                     view.snapshot.index, view.snapshot.term,
                     view.entries.empty() ? Index(0) : view.entries.front().index,
                     view.entries.empty() ? Index(0) : view.entries.back().index);
}

DurableView ModelView(const SimNode& node) {
  DurableView view{node.hard_state, node.snapshot.meta, {}};
  for (const Entry& entry : node.durable_log) {
    if (entry.index > node.snapshot.meta.index) view.entries.push_back(entry);
  }
  return view;
}

}  // namespace

bool Simulation::RecoverLog(SimNode& node) {
  const storage::WalOptions options{kWalDirectory, kWalSegmentBytes};
  storage::RecoveredLog recovered;
  if (node.flipped_bit.has_value()) {
    const SimNode::FlippedBit flip = *node.flipped_bit;
    node.flipped_bit.reset();
    auto damaged = storage::Wal::Open(node.disk.get(), options, &recovered);
    const std::string message(damaged.status().message());
    const size_t at = message.find("at offset ");
    if (damaged.ok() || damaged.status().code() != absl::StatusCode::kDataLoss ||
        message.find(flip.path) == std::string::npos || at == std::string::npos ||
        std::stoull(message.substr(at + 10)) > flip.offset) {
      Fail(fmt::format("Storage: node {} started from a log with bit {} of {} offset {} "
                       "flipped; expected a data-loss error naming them, got: {}",
                       node.id, flip.bit, flip.path, flip.offset, damaged.status().ToString()));
      return false;
    }
    ++stats_.corruptions_detected;
    Tracef("n{} refuses to start: {}", node.id, message);
    // The run goes on with the damage repaired (in production: the operator replaces the
    // member); what was checked is that it was detected and nothing was cut.
    node.disk->FlipBit(flip.path, flip.offset, flip.bit);
  }
  auto wal = storage::Wal::Open(node.disk.get(), options, &recovered);
  if (!wal.ok()) {
    Fail(fmt::format("Storage: node {} cannot recover its log: {}", node.id,
                     wal.status().ToString()));
    return false;
  }
  node.wal = std::move(*wal);
  const DurableView found{recovered.hard_state, recovered.snapshot, std::move(recovered.entries)};
  const DurableView synced = ModelView(node);
  std::optional<SimNode::UnsyncedWrite> unsynced = std::move(node.unsynced_at_crash);
  node.unsynced_at_crash.reset();
  if (found == synced) {
    if (recovered.torn_tail.has_value()) {
      ++stats_.torn_writes_cut;
      Tracef("n{} cut a torn write: {}", node.id, *recovered.torn_tail);
    }
    return true;
  }
  if (unsynced.has_value()) {
    // The write in progress may have reached the disk whole; then it counts as made.
    const Index durable_last_before = node.durable_last();
    Persist(node, unsynced->ready);
    if (found == ModelView(node)) {
      ++stats_.torn_writes_kept_whole;
      checker_.OnPersist(node.id, unsynced->was_leader, unsynced->term, unsynced->ready,
                         durable_last_before);
      return true;
    }
  }
  Fail(fmt::format("Storage: node {} recovered {} from its log; what was synced is {}{}",
                   node.id, Describe(found), Describe(synced),
                   unsynced.has_value() ? ", and the write in progress does not explain it" : ""));
  return false;
}

void Simulation::Apply(SimNode& node, const Ready& ready) {
  if (ready.snapshot.has_value()) {
    node.applied = ready.snapshot->meta.index;
    node.state_hash = DecodeSnapshotHash(ready.snapshot->data);
    node.last_snapshot_index = node.applied;
    Tracef("n{} restored snapshot at {}", node.id, node.applied);
    checker_.OnRestore(node.id, ready.snapshot->meta, node.state_hash);
  }
  for (const Entry& entry : ready.committed_entries) {
    node.state_hash = NextStateHash(node.state_hash, entry);
    node.applied = entry.index;
    checker_.OnApply(node.id, entry, node.state_hash);
    if (entry.type != raft::EntryType::kNormal) continue;
    const std::optional<uint64_t> proposal = DecodeProposal(entry.data);
    if (!proposal.has_value()) continue;
    auto it = request_of_proposal_.find(*proposal);
    if (it == request_of_proposal_.end()) continue;
    Request& request = requests_.at(it->second);
    if (!request.done) {
      request.done = true;
      --pending_requests_;
    }
  }
  if (!ready.committed_entries.empty()) {
    Tracef("n{} applied {}..{}", node.id, ready.committed_entries.front().index,
           ready.committed_entries.back().index);
  }
}

void Simulation::MaybeSnapshot(SimNode& node) {
  // The application snapshots its state machine every snapshot_interval entries and compacts
  // the log, keeping a few entries for followers that are only slightly behind (Raft 7).
  if (node.applied.distance_from(node.last_snapshot_index) < parameters_.snapshot_interval) return;
  // A snapshot from the leader may have overtaken what this node has applied; it is newer.
  if (node.applied <= node.raft->log().snapshot().meta.index) return;
  Status status =
      node.raft->SetSnapshot(node.applied, EncodeSnapshot(node.applied, node.state_hash));
  if (!status.ok()) {
    Fail(fmt::format("node {} refused a snapshot: {}", node.id, status.ToString()));
    return;
  }
  node.snapshot = node.raft->log().snapshot();
  node.last_snapshot_index = node.applied;
  // The state machine image is durable (here: in the model); the log may now drop what it
  // covers. A failed fsync stops the node like any other.
  node.wal->CompactTo(node.snapshot.meta);
  if (Status status = node.wal->Sync(); !status.ok()) {
    ++stats_.fsync_failures;
    CrashAndScheduleRestart(node);
    return;
  }
  if (auto released = node.wal->ReleaseCoveredSegments(); !released.ok()) {
    CrashAndScheduleRestart(node);
    return;
  }
  const Index compact_to = node.applied.value() > parameters_.compaction_keep
                               ? node.applied.minus(parameters_.compaction_keep)
                               : Index(0);
  if (compact_to <= node.raft->log().prev_index()) return;
  status = node.raft->CompactLog(compact_to);
  if (!status.ok()) {
    Fail(fmt::format("node {} refused to compact: {}", node.id, status.ToString()));
    return;
  }
  while (!node.durable_log.empty() && node.durable_first <= compact_to) {
    node.durable_log.pop_front();
    node.durable_first = node.durable_first.next();
  }
  if (node.durable_log.empty())
    node.durable_first = std::max(node.durable_first, compact_to.next());
}

// ---------------------------------------------------------------------------------------------
// The network.

uint64_t Simulation::DeliveryTime(NodeId from, NodeId to) {
  const uint64_t slowness = std::max(NodeAt(from).slow_factor, NodeAt(to).slow_factor);
  return network_.DeliveryTime(from, to, now_, slowness, prng_);
}

void Simulation::Send(Message message) {
  ++stats_.messages_sent;
  if (!nodes_.contains(message.to)) return;
  const bool dropped =
      network_.LinkCut(message.from, message.to) ||
      (network_.loss_percent > 0 && prng_.Chance(network_.loss_percent, 100));
  if (options_.trace != nullptr) {
    Tracef("{}{}", DescribeMessage(message), dropped ? "  (lost)" : "");
  }
  if (dropped) {
    ++stats_.messages_dropped;
    return;
  }
  if (network_.duplicate_percent > 0 && prng_.Chance(network_.duplicate_percent, 100)) {
    ++stats_.messages_duplicated;
    Schedule(DeliveryTime(message.from, message.to),
             Event{EventKind::kDeliver, message.to, 0, 0, message});
  }
  const uint64_t time = DeliveryTime(message.from, message.to);
  const NodeId to = message.to;
  Schedule(time, Event{EventKind::kDeliver, to, 0, 0, std::move(message)});
}

// ---------------------------------------------------------------------------------------------
// Faults.

void Simulation::Nemesis() {
  if (!prng_.Chance(parameters_.fault_per_mille, 1000)) return;
  std::vector<Fault> enabled;
  for (size_t i = 0; i < kFaultCount; ++i) {
    const Fault fault = static_cast<Fault>(i);
    // Loss, duplication and delay act on every message; the rest are events started here.
    if (fault == Fault::kLoss || fault == Fault::kDuplicate || fault == Fault::kDelay) continue;
    if (options_.faults.test(i)) enabled.push_back(fault);
  }
  if (enabled.empty()) return;
  const uint64_t election_units = ElectionUnits();
  switch (enabled[prng_.Below(enabled.size())]) {
    case Fault::kPartition:
      StartPartition();
      break;
    case Fault::kCrash: {
      // Crash the leader half of the time: it exercises the most interesting recovery.
      SimNode* leader = BelievedLeader();
      NodeId victim = leader != nullptr && prng_.Chance(1, 2) ? leader->id : RandomRunningNode();
      if (victim == kNoNode) break;
      CrashAndScheduleRestart(NodeAt(victim));
      break;
    }
    case Fault::kPause: {
      const NodeId victim = RandomRunningNode();
      if (victim == kNoNode || NodeAt(victim).paused) break;
      Pause(NodeAt(victim));
      Schedule(now_ + prng_.Between(election_units / 2, 4 * election_units),
               Event{EventKind::kUnpause, victim, 0, 0, {}});
      break;
    }
    case Fault::kSlow: {
      const NodeId victim = RandomRunningNode();
      if (victim == kNoNode) break;
      NodeAt(victim).slow_factor = static_cast<uint32_t>(prng_.Between(3, 20));
      Tracef("n{} becomes {}x slower", victim, NodeAt(victim).slow_factor);
      Schedule(now_ + prng_.Between(election_units, 6 * election_units),
               Event{EventKind::kUnslow, victim, 0, 0, {}});
      break;
    }
    case Fault::kMembership:
      ChangeMembership();
      break;
    case Fault::kTransfer:
      TransferLeadership();
      break;
    // Per-message rates, and disk faults, which strike at crashes (Crash, CompleteWrite).
    case Fault::kLoss:
    case Fault::kDuplicate:
    case Fault::kDelay:
    case Fault::kDisk:
      break;
  }
}

void Simulation::Crash(SimNode& node) {
  ++stats_.crashes;
  Tracef("n{} CRASHES (losing {} unpersisted)", node.id,
         node.writing.has_value() ? "a write in progress and" : "nothing");
  node.running = false;
  if (node.writing.has_value() && node.writing->MustPersist()) {
    node.unsynced_at_crash = SimNode::UnsyncedWrite{std::move(*node.writing),
                                                    node.raft->role() == Role::kLeader,
                                                    node.raft->term()};
  }
  node.raft.reset();
  node.writing.reset();
  node.wal.reset();
  const bool torn = prng_.Chance(parameters_.torn_crash_percent, 100);
  node.disk->Crash(torn ? SimDisk::CrashKind::kTornWrite : SimDisk::CrashKind::kLoseUnsynced,
                   prng_);
  if (prng_.Chance(parameters_.bit_flip_percent, 100)) {
    // Damage an old segment (every one but the newest, whose last write may be torn anyway).
    auto names = node.disk->ListDirectory(kWalDirectory);
    SYNOD_ASSERT(names.ok());
    if (names->size() >= 2) {
      const std::string path =
          storage::JoinPath(kWalDirectory, (*names)[prng_.Below(names->size() - 1)]);
      const uint64_t size = node.disk->DurableSize(path);
      if (size > 0) {
        node.flipped_bit = SimNode::FlippedBit{path, prng_.Below(size),
                                               static_cast<uint8_t>(prng_.Below(8))};
        node.disk->FlipBit(path, node.flipped_bit->offset, node.flipped_bit->bit);
        Tracef("n{} disk: bit {} of {} offset {} flipped", node.id, node.flipped_bit->bit, path,
               node.flipped_bit->offset);
      }
    }
  }
  node.paused = false;
  node.deferred.clear();
  ++node.incarnation;
  checker_.ForgetVolatile(node.id);
}

void Simulation::Restart(SimNode& node) {
  SYNOD_ASSERT(node.raft == nullptr);
  if (node.wal == nullptr && !RecoverLog(node)) return;
  raft::PersistentState state;
  state.hard_state = node.hard_state;
  state.snapshot = node.snapshot;
  for (const Entry& entry : node.durable_log) {
    if (entry.index > node.snapshot.meta.index) state.entries.push_back(entry);
  }
  Result<std::unique_ptr<raft::Raft>> created = raft::Raft::Create(NodeConfig(node.id), state);
  if (!created.ok()) {
    Fail(fmt::format("node {} cannot restart from its durable state: {}", node.id,
                     created.status().ToString()));
    return;
  }
  node.raft = std::move(*created);
  node.running = true;
  node.applied = node.snapshot.meta.index;
  node.state_hash = DecodeSnapshotHash(node.snapshot.data);
  node.last_snapshot_index = node.applied;
  node.commit_seen = node.raft->log().committed();
  node.slow_factor = 1;
  if (node.incarnation > 0) {
    Tracef("n{} restarts: term {} vote n{} commit {} snapshot {} log {}..{}", node.id,
           state.hard_state.term, state.hard_state.voted_for, state.hard_state.commit,
           node.snapshot.meta.index, node.durable_first, node.durable_last());
  }
  checker_.OnRestore(node.id, node.snapshot.meta, node.state_hash);
  // Nodes' clocks are not in phase: each ticks at its own offset within the tick.
  Schedule(now_ + prng_.Between(1, kTickUnits),
           Event{EventKind::kTick, node.id, node.incarnation, 0, {}});
  AfterInput(node);
}

void Simulation::Pause(SimNode& node) {
  ++stats_.pauses;
  Tracef("n{} PAUSES", node.id);
  node.paused = true;
}

void Simulation::Unpause(SimNode& node) {
  if (!node.paused) return;
  Tracef("n{} resumes ({} events were waiting)", node.id, node.deferred.size());
  node.paused = false;
  std::vector<Event> deferred = std::move(node.deferred);
  node.deferred.clear();
  for (size_t i = 0; i < deferred.size(); ++i) {
    Dispatch(std::move(deferred[i]));
    if (!node.running) return;  // A crash loses whatever was still waiting.
    if (node.paused) {
      // Paused again by a fault during the replay: the rest waits for the next resume, ahead
      // of anything that arrived meanwhile.
      deferred.erase(deferred.begin(), deferred.begin() + static_cast<std::ptrdiff_t>(i + 1));
      for (Event& later : node.deferred) deferred.push_back(std::move(later));
      node.deferred = std::move(deferred);
      return;
    }
  }
}

std::vector<NodeId> Simulation::AllIds() const {
  std::vector<NodeId> ids;
  for (const auto& [id, node] : nodes_) ids.push_back(id);
  return ids;
}

void Simulation::StartPartition() {
  // Often the leader alone, the most disruptive split.
  std::optional<NodeId> leader;
  if (const SimNode* believed = BelievedLeader(); believed != nullptr) leader = believed->id;
  PartitionPlan plan = ChoosePartition(AllIds(), leader, prng_);
  const uint64_t election_units = ElectionUnits();
  AddPartition(std::move(plan), prng_.Between(election_units, 8 * election_units));
}

void Simulation::AddPartition(PartitionPlan plan, uint64_t duration_units) {
  if (plan.links.empty()) return;
  ++stats_.partitions;
  const uint64_t id = network_.AddPartition(std::move(plan.links));
  Tracef("PARTITION {} {}", id, plan.description);
  Schedule(now_ + duration_units, Event{EventKind::kHealPartition, {}, 0, id, {}});
}

void Simulation::HealPartition(uint64_t id) {
  if (network_.HealPartition(id)) Tracef("partition {} heals", id);
}

void Simulation::ChangeMembership() {
  SimNode* leader = BelievedLeader();
  if (leader == nullptr) return;
  const raft::Membership& membership = leader->raft->membership();
  std::vector<raft::ConfChange> candidates;
  for (NodeId learner : membership.learners) {
    candidates.push_back({raft::ConfChangeType::kPromoteLearner, learner});
  }
  if (membership.voters.size() < kVotersMax && !spare_ids_.empty()) {
    candidates.push_back({raft::ConfChangeType::kAddLearner, spare_ids_.front()});
    candidates.push_back({raft::ConfChangeType::kAddVoter, spare_ids_.front()});
  }
  if (membership.voters.size() > kVotersMin) {
    for (NodeId voter : membership.voters) {
      candidates.push_back({raft::ConfChangeType::kRemoveNode, voter});
    }
  }
  for (NodeId learner : membership.learners) {
    candidates.push_back({raft::ConfChangeType::kRemoveNode, learner});
  }
  if (candidates.empty()) return;
  const raft::ConfChange change = candidates[prng_.Below(candidates.size())];
  Result<raft::LogPosition> result = leader->raft->ProposeConfChange(change);
  Tracef("n{} proposes {} n{}: {}", leader->id, raft::ToString(change.type), change.node,
         result.ok() ? fmt::format("at {}", result->index) : result.status().ToString());
  if (result.ok()) {
    ++stats_.membership_changes;
    if (change.type == raft::ConfChangeType::kAddLearner ||
        change.type == raft::ConfChangeType::kAddVoter) {
      spare_ids_.erase(spare_ids_.begin());
    }
  }
  AfterInput(*leader);
}

void Simulation::TransferLeadership() {
  SimNode* leader = BelievedLeader();
  if (leader == nullptr) return;
  const NodeId target = ChooseTransferTarget(leader->raft->membership(), leader->id, prng_);
  if (target == kNoNode) return;
  Status status = leader->raft->TransferLeadership(target);
  ++stats_.transfers;
  Tracef("n{} transfers leadership to n{}: {}", leader->id, target, status.ToString());
  AfterInput(*leader);
}

void Simulation::HealEverything() {
  Tracef("FAULTS STOP: healing everything for the liveness phase");
  network_.HealAll();
  for (auto& [id, node] : nodes_) {
    node.slow_factor = 1;
    if (!node.running) Restart(node);
    if (node.paused) Unpause(node);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients.

SimNode* Simulation::BelievedLeader() {
  // Clients find the leader the way an etcd client would after a few redirects: the running
  // node that believes it leads in the highest term.
  SimNode* best = nullptr;
  for (auto& [id, node] : nodes_) {
    if (!node.running || node.paused || node.raft->role() != Role::kLeader) continue;
    if (best == nullptr || node.raft->term() > best->raft->term()) best = &node;
  }
  return best;
}

NodeId Simulation::RandomRunningNode() {
  std::vector<NodeId> running;
  for (const auto& [id, node] : nodes_) {
    if (node.running) running.push_back(id);
  }
  if (running.empty()) return kNoNode;
  return running[prng_.Below(running.size())];
}

void Simulation::ClientStep() {
  // Retry requests whose last attempt was refused or whose leader is gone. An attempt accepted
  // by the leader still in office is never retried: a leader loses no entry of its own term
  // (Leader Append-Only), and re-proposing behind a long backlog only lengthens it.
  const uint64_t retry_ticks = 2 * parameters_.node.election_timeout_ticks;
  const SimNode* leader = BelievedLeader();
  for (auto& [id, request] : requests_) {
    if (request.done || tick_ < request.last_attempt_tick + retry_ticks) continue;
    const bool leadership_ended = request.accepted_by == kNoNode || leader == nullptr ||
                                  leader->id != request.accepted_by ||
                                  leader->raft->term() != request.accepted_term;
    if (leadership_ended) Propose(id);
  }
  if (!liveness_phase_) {
    const uint64_t count = prng_.Below(parameters_.proposals_per_tick_max + 1);
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t request_id = next_request_id_++;
      requests_.emplace(request_id, Request{});
      ++pending_requests_;
      Propose(request_id);
    }
  }
  if (prng_.Chance(parameters_.reads_per_mille, 1000)) Read();
}

void Simulation::Propose(uint64_t request_id) {
  Request& request = requests_.at(request_id);
  request.last_attempt_tick = tick_;
  // Mostly to the leader; sometimes to any node, which must refuse clearly.
  SimNode* target = BelievedLeader();
  if (target == nullptr || prng_.Chance(1, 10)) {
    const NodeId id = RandomRunningNode();
    target = id == kNoNode ? nullptr : &NodeAt(id);
  }
  if (target == nullptr || target->paused) return;
  const uint64_t proposal_id = next_proposal_id_++;
  checker_.OnProposalIssued(proposal_id);
  request_of_proposal_.emplace(proposal_id, request_id);
  ++stats_.proposals;
  Result<raft::LogPosition> result = target->raft->Propose(EncodeProposal(proposal_id));
  request.accepted_by = result.ok() ? target->id : kNoNode;
  request.accepted_term = result.ok() ? result->term : Term(0);
  if (options_.trace != nullptr) {
    Tracef("client proposes p{} (request {}) to n{}: {}", proposal_id, request_id, target->id,
           result.ok() ? fmt::format("at {}/t{}", result->index, result->term)
                       : result.status().ToString());
  }
  AfterInput(*target);
}

void Simulation::Read() {
  const NodeId id = RandomRunningNode();
  if (id == kNoNode || NodeAt(id).paused) return;
  SimNode& node = NodeAt(id);
  const std::string context = fmt::format("r{}", next_read_id_++);
  checker_.OnReadRequested(context);
  Status status = node.raft->ReadIndex(context);
  Tracef("client reads {} at n{}: {}", context, id, status.ToString());
  AfterInput(node);
}

bool Simulation::LivenessReached() {
  if (pending_requests_ > 0) return false;
  SimNode* leader = BelievedLeader();
  if (leader == nullptr) return false;
  // Every member has caught up with everything the leader has committed.
  const Index commit = leader->raft->log().committed();
  const raft::Membership& membership = leader->raft->membership();
  for (const std::vector<NodeId>* ids : {&membership.voters, &membership.learners}) {
    for (NodeId id : *ids) {
      const SimNode& node = NodeAt(id);
      if (!node.running || node.applied < commit) return false;
    }
  }
  return true;
}

}  // namespace

void SimStats::Add(const SimStats& run) {
  RunStats::Add(run);
  membership_changes += run.membership_changes;
  transfers += run.transfers;
  leaders_elected += run.leaders_elected;
  committed += run.committed;
  proposals += run.proposals;
  proposals_applied += run.proposals_applied;
  reads_released += run.reads_released;
  snapshots_installed += run.snapshots_installed;
  fsync_failures += run.fsync_failures;
  torn_writes_cut += run.torn_writes_cut;
  torn_writes_kept_whole += run.torn_writes_kept_whole;
  corruptions_detected += run.corruptions_detected;
}

SimResult RunSimulation(const SimOptions& options) {
  ThrowAssertionFailures();
  Simulation simulation(options);
  return RunReportingAssertions(simulation, options.trace);
}

}  // namespace synod::sim
