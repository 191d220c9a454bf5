#include "consensus/raft/scenario_env.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <optional>

#include "base/assert.h"

namespace synod::raft {

// Unwraps a Result into `lhs`, or returns its error from the enclosing function.
#define SCENARIO_CONCAT_INNER(a, b) a##b
#define SCENARIO_CONCAT(a, b) SCENARIO_CONCAT_INNER(a, b)
#define SCENARIO_ASSIGN_OR_RETURN(lhs, expression) \
  SCENARIO_ASSIGN_OR_RETURN_IMPL(SCENARIO_CONCAT(scenario_result_, __COUNTER__), lhs, expression)
#define SCENARIO_ASSIGN_OR_RETURN_IMPL(result, lhs, expression) \
  auto result = (expression);                                   \
  if (!result.ok()) return result.status();                     \
  lhs = *std::move(result)

namespace {

// The non-empty pieces of `text` between separators.
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> pieces;
  while (!text.empty()) {
    const size_t end = std::min(text.find(separator), text.size());
    if (end > 0) pieces.push_back(text.substr(0, end));
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return pieces;
}

Result<uint64_t> ParseNumber(std::string_view text) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return absl::InvalidArgumentError(fmt::format("not a number: {}", text));
  }
  return value;
}

}  // namespace

struct ScenarioEnv::Command {
  std::string name;
  std::deque<std::string> positional;
  std::map<std::string, std::string, std::less<>> named;

  Result<std::string> TakePositional(std::string_view what) {
    if (positional.empty()) {
      return absl::InvalidArgumentError(fmt::format("{}: missing {}", name, what));
    }
    std::string value = std::move(positional.front());
    positional.pop_front();
    return value;
  }

  Result<uint64_t> TakeNumber(std::string_view what) {
    std::string text;
    SCENARIO_ASSIGN_OR_RETURN(text, TakePositional(what));
    return ParseNumber(text);
  }

  Result<NodeId> TakeNodeId() {
    uint64_t id = 0;
    SCENARIO_ASSIGN_OR_RETURN(id, TakeNumber("node id"));
    return NodeId(id);
  }

  std::optional<std::string> TakeNamed(std::string_view key) {
    auto it = named.find(key);
    if (it == named.end()) return std::nullopt;
    std::string value = std::move(it->second);
    named.erase(it);
    return value;
  }

  // Every argument must have been used: a misspelt option must not silently change a scenario.
  Status CheckAllTaken() const {
    if (!positional.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: unexpected argument {}", name, positional.front()));
    }
    if (!named.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: unknown option {}", name, named.begin()->first));
    }
    return absl::OkStatus();
  }
};

namespace {

// Bounds `stabilize`: a group that is still busy after this many rounds of Ready handling and
// delivery is livelocked (messages ping-pong forever), which is itself a finding.
constexpr int kStabilizeRoundsMax = 100;

// Config's defaults, fixed here because tick-heartbeat and tick-election count in them.
constexpr uint32_t kElectionTimeoutTicks = 10;
constexpr uint32_t kHeartbeatIntervalTicks = 1;

void Line(std::string& out, int indent, std::string_view text) {
  if (!out.empty()) out += '\n';
  out.append(static_cast<size_t>(indent), ' ');
  out += text;
}

// Identical consecutive lines (a leader's heartbeats over many ticks) print once with a count.
void Lines(std::string& out, int indent, const std::vector<std::string>& lines) {
  for (size_t i = 0; i < lines.size();) {
    size_t run = 1;
    while (i + run < lines.size() && lines[i + run] == lines[i]) ++run;
    Line(out, indent, run == 1 ? lines[i] : fmt::format("{} ({} times)", lines[i], run));
    i += run;
  }
}

void PrintResult(std::string& out, const Status& status) {
  Line(out, 0, status.ok() ? "ok" : "error: " + status.ToString());
}

// "(1,2,3)" or a single id "3", for node lists and partition groups.
Result<std::vector<NodeId>> ParseNodeList(std::string_view text) {
  if (text.size() >= 2 && text.front() == '(' && text.back() == ')') {
    text = text.substr(1, text.size() - 2);
  }
  std::vector<NodeId> ids;
  for (std::string_view part : Split(text, ',')) {
    uint64_t id = 0;
    SCENARIO_ASSIGN_OR_RETURN(id, ParseNumber(part));
    ids.push_back(NodeId(id));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<bool> ParseBool(std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return absl::InvalidArgumentError(fmt::format("not a boolean: {}", text));
}

Result<ConfChangeType> ParseConfChangeType(std::string_view text) {
  if (text == "add-voter") return ConfChangeType::kAddVoter;
  if (text == "add-learner") return ConfChangeType::kAddLearner;
  if (text == "promote") return ConfChangeType::kPromoteLearner;
  if (text == "remove") return ConfChangeType::kRemoveNode;
  if (text == "update") return ConfChangeType::kUpdateNode;
  return absl::InvalidArgumentError(fmt::format("unknown configuration change: {}", text));
}

Result<ScenarioEnv::Command> ParseCommand(std::string_view line) {
  ScenarioEnv::Command command;
  for (std::string_view word : Split(line, ' ')) {
    if (command.name.empty()) {
      command.name = std::string(word);
      continue;
    }
    const size_t equals = word.find('=');
    if (equals == std::string_view::npos) {
      command.positional.emplace_back(word);
    } else if (!command.named.emplace(word.substr(0, equals), word.substr(equals + 1)).second) {
      return absl::InvalidArgumentError(fmt::format("option given twice: {}", word));
    }
  }
  if (command.name.empty()) return absl::InvalidArgumentError("empty command");
  return command;
}

std::string Position(Term term, Index index) {
  return fmt::format("{}/{}", term, index);
}

std::string FormatEntry(const Entry& entry) {
  const std::string position = Position(entry.term, entry.index);
  switch (entry.type) {
    case EntryType::kNormal:
      return fmt::format("{} \"{}\"", position, entry.data);
    case EntryType::kEmpty:
      return position + " empty";
    case EntryType::kConfig:
      return fmt::format("{} config {}", position, ToString(entry.membership));
  }
  return position + " ?";
}

std::string FormatSnapshot(const Snapshot& snapshot) {
  return fmt::format("{} {} data=\"{}\"", Position(snapshot.meta.term, snapshot.meta.index),
                     ToString(snapshot.meta.membership), snapshot.data);
}

std::string FormatMessage(const Message& message) {
  std::string text = fmt::format("{}->{} {} term={}", message.from, message.to,
                                 ToString(message.type), message.term);
  auto append = std::back_inserter(text);
  switch (message.type) {
    case MessageType::kAppendEntries: {
      std::vector<std::string> entries;
      for (const Entry& entry : message.entries) entries.push_back(FormatEntry(entry));
      fmt::format_to(append, " log={} commit={} entries=[{}]",
                     Position(message.log_term, message.log_index), message.commit,
                     fmt::join(entries, ", "));
      break;
    }
    case MessageType::kAppendEntriesResponse:
      if (message.reject) {
        fmt::format_to(append, " reject index={} hint={}", message.index,
                       Position(message.reject_hint_term, message.reject_hint_index));
      } else {
        fmt::format_to(append, " index={}", message.index);
      }
      break;
    case MessageType::kRequestVote:
    case MessageType::kRequestPreVote:
      fmt::format_to(append, " last={}{}", Position(message.log_term, message.log_index),
                     message.leadership_transfer ? " transfer" : "");
      break;
    case MessageType::kRequestVoteResponse:
    case MessageType::kRequestPreVoteResponse:
      text += message.reject ? " rejected" : " granted";
      break;
    case MessageType::kHeartbeat:
      fmt::format_to(append, " commit={} round={}", message.commit, message.read_round);
      break;
    case MessageType::kHeartbeatResponse:
      fmt::format_to(append, " round={}", message.read_round);
      break;
    case MessageType::kInstallSnapshot:
      text += " snapshot=" + FormatSnapshot(*message.snapshot);
      break;
    case MessageType::kTimeoutNow:
      break;
    case MessageType::kReadIndex:
      fmt::format_to(append, " ctx={}", message.read_context);
      break;
    case MessageType::kReadIndexResponse:
      fmt::format_to(append, " index={} ctx={}", message.index, message.read_context);
      break;
  }
  return text;
}

// Messages grouped by receiver, each receiver's in the order sent (the order that matters: the
// environment delivers them in that order), so that repeats line up and print once.
std::vector<Message> ByReceiver(std::vector<Message> messages) {
  std::stable_sort(messages.begin(), messages.end(),
                   [](const Message& a, const Message& b) { return a.to < b.to; });
  return messages;
}

// Only a follower's view of the leader tells something: a leader is its own and a candidate
// has none.
std::string FormatSoftState(const SoftState& state) {
  if (state.role != Role::kFollower) return std::string(ToString(state.role));
  if (state.leader == kNoNode) return "follower leader=none";
  return fmt::format("follower leader={}", state.leader);
}

std::string FormatHardState(const HardState& state) {
  return fmt::format("term={} vote={} commit={}", state.term, state.voted_for, state.commit);
}

// The snapshot image of a state machine: its commands in order, separated by spaces (commands in
// scripts are single words).
std::string StateMachineImage(const std::vector<std::pair<Index, std::string>>& state_machine,
                              Index through) {
  std::vector<std::string_view> values;
  for (const auto& [index, value] : state_machine) {
    if (index <= through) values.push_back(value);
  }
  return fmt::format("{}", fmt::join(values, " "));
}

// What a proposal returned: where the entry landed, or why it was refused.
void PrintProposal(std::string& out, const Result<LogPosition>& position) {
  if (!position.ok()) {
    PrintResult(out, position.status());
  } else {
    Line(out, 0, "proposed at " + Position(position->term, position->index));
  }
}

}  // namespace

Result<std::string> ScenarioEnv::Run(std::string_view command_line) {
  static const std::map<std::string_view, Handler> kHandlers = {
      {"add-nodes", &ScenarioEnv::AddNodes},
      {"campaign", &ScenarioEnv::Campaign},
      {"tick", &ScenarioEnv::Tick},
      {"tick-heartbeat", &ScenarioEnv::TickHeartbeat},
      {"tick-election", &ScenarioEnv::TickElection},
      {"propose", &ScenarioEnv::Propose},
      {"propose-conf-change", &ScenarioEnv::ProposeConfChange},
      {"read-index", &ScenarioEnv::ReadIndex},
      {"transfer-leadership", &ScenarioEnv::TransferLeadership},
      {"process-ready", &ScenarioEnv::ProcessReady},
      {"deliver-msgs", &ScenarioEnv::DeliverMsgs},
      {"stabilize", &ScenarioEnv::Stabilize},
      {"partition", &ScenarioEnv::Partition},
      {"heal", &ScenarioEnv::Heal},
      {"crash", &ScenarioEnv::Crash},
      {"restart", &ScenarioEnv::Restart},
      {"set-snapshot", &ScenarioEnv::SetSnapshot},
      {"compact", &ScenarioEnv::Compact},
      {"status", &ScenarioEnv::PrintStatus},
      {"raft-log", &ScenarioEnv::PrintRaftLog},
  };
  Command command;
  SCENARIO_ASSIGN_OR_RETURN(command, ParseCommand(command_line));
  auto handler = kHandlers.find(command.name);
  if (handler == kHandlers.end()) {
    return absl::InvalidArgumentError(fmt::format("unknown command: {}", command.name));
  }
  std::string out;
  if (Status status = (this->*handler->second)(command, out); !status.ok()) return status;
  if (Status status = command.CheckAllTaken(); !status.ok()) return status;
  if (out.empty()) out = "ok";
  return out;
}

Result<ScenarioEnv::Node*> ScenarioEnv::TakeNode(Command& command) {
  NodeId id;
  SCENARIO_ASSIGN_OR_RETURN(id, command.TakeNodeId());
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return absl::InvalidArgumentError(fmt::format("no node {}", id));
  return &it->second;
}

Raft* ScenarioEnv::Running(Node& node, std::string& out) {
  if (node.raft == nullptr) Line(out, 0, fmt::format("node {} is down", node.config.id));
  return node.raft.get();
}

Status ScenarioEnv::AddNodes(Command& command, std::string& out) {
  uint64_t count = 0;
  SCENARIO_ASSIGN_OR_RETURN(count, command.TakeNumber("node count"));
  Membership membership;
  if (auto voters = command.TakeNamed("voters")) {
    SCENARIO_ASSIGN_OR_RETURN(membership.voters, ParseNodeList(*voters));
  }
  if (auto learners = command.TakeNamed("learners")) {
    SCENARIO_ASSIGN_OR_RETURN(membership.learners, ParseNodeList(*learners));
  }
  if (!membership.IsWellFormed()) {
    return absl::InvalidArgumentError("voters and learners must be distinct non-zero ids");
  }
  Config config;
  config.election_timeout_ticks = kElectionTimeoutTicks;
  config.heartbeat_interval_ticks = kHeartbeatIntervalTicks;
  config.check_invariants = true;
  if (auto pre_vote = command.TakeNamed("pre-vote")) {
    SCENARIO_ASSIGN_OR_RETURN(config.pre_vote, ParseBool(*pre_vote));
  }
  if (auto check_quorum = command.TakeNamed("check-quorum")) {
    SCENARIO_ASSIGN_OR_RETURN(config.check_quorum, ParseBool(*check_quorum));
  }
  if (auto bytes_max = command.TakeNamed("append-entries-bytes-max")) {
    SCENARIO_ASSIGN_OR_RETURN(config.append_entries_bytes_max, ParseNumber(*bytes_max));
  }
  if (auto lag_max = command.TakeNamed("learner-promotion-lag-max")) {
    SCENARIO_ASSIGN_OR_RETURN(config.learner_promotion_lag_max, ParseNumber(*lag_max));
  }
  NodeId id = nodes_.empty() ? NodeId(1) : nodes_.rbegin()->first.next();
  for (uint64_t i = 0; i < count; ++i, id = id.next()) {
    Node node;
    node.config = config;
    node.config.id = id;
    // Each node draws its own election timeouts, and the same ones on every run.
    node.config.seed = id.value();
    node.durable.snapshot.meta.membership = membership;
    PersistentState state{node.durable.hard_state, node.durable.snapshot, {}, std::nullopt};
    SCENARIO_ASSIGN_OR_RETURN(node.raft, Raft::Create(node.config, std::move(state)));
    Line(out, 0,
         fmt::format("node {}: {} pre-vote={} check-quorum={}", id, ToString(membership),
                     node.config.pre_vote, node.config.check_quorum));
    nodes_.emplace(id, std::move(node));
  }
  return absl::OkStatus();
}

// A handler acting on one node reads all its arguments first, so that a script line is checked
// the same way whether the node is up or down, then does nothing but say so if it is down.

Status ScenarioEnv::Campaign(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  if (Raft* raft = Running(*node, out)) PrintResult(out, raft->Campaign());
  return absl::OkStatus();
}

Status ScenarioEnv::Tick(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  uint64_t ticks = 1;
  if (!command.positional.empty()) {
    SCENARIO_ASSIGN_OR_RETURN(ticks, command.TakeNumber("tick count"));
  }
  if (Raft* raft = Running(*node, out)) {
    for (uint64_t i = 0; i < ticks; ++i) raft->Tick();
  }
  return absl::OkStatus();
}

Status ScenarioEnv::TickHeartbeat(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  if (Raft* raft = Running(*node, out)) {
    for (uint32_t i = 0; i < kHeartbeatIntervalTicks; ++i) raft->Tick();
  }
  return absl::OkStatus();
}

Status ScenarioEnv::TickElection(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  Raft* raft = Running(*node, out);
  if (raft == nullptr) return absl::OkStatus();
  if (raft->role() == Role::kLeader) {
    for (uint32_t i = 0; i < kElectionTimeoutTicks; ++i) raft->Tick();
    return absl::OkStatus();
  }
  // The randomized timeout lies in [timeout, 2 * timeout) (Raft 5.2), so this many ticks always
  // reach it. Stopping at the first sign of an election keeps a short timeout from firing twice.
  const Role role = raft->role();
  const Term term = raft->term();
  bool had_ready = raft->HasReady();
  for (uint32_t i = 0; i < 2 * kElectionTimeoutTicks; ++i) {
    raft->Tick();
    const bool has_ready = raft->HasReady();
    if (raft->role() != role || raft->term() != term || (has_ready && !had_ready)) break;
    had_ready = has_ready;
  }
  return absl::OkStatus();
}

Status ScenarioEnv::Propose(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  std::string data;
  SCENARIO_ASSIGN_OR_RETURN(data, command.TakePositional("data"));
  if (Raft* raft = Running(*node, out)) PrintProposal(out, raft->Propose(std::move(data)));
  return absl::OkStatus();
}

Status ScenarioEnv::ProposeConfChange(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  std::string type;
  SCENARIO_ASSIGN_OR_RETURN(type, command.TakePositional("change type"));
  ConfChange change;
  SCENARIO_ASSIGN_OR_RETURN(change.type, ParseConfChangeType(type));
  SCENARIO_ASSIGN_OR_RETURN(change.node, command.TakeNodeId());
  if (Raft* raft = Running(*node, out)) PrintProposal(out, raft->ProposeConfChange(change));
  return absl::OkStatus();
}

Status ScenarioEnv::ReadIndex(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  std::string context;
  SCENARIO_ASSIGN_OR_RETURN(context, command.TakePositional("read context"));
  if (Raft* raft = Running(*node, out)) PrintResult(out, raft->ReadIndex(std::move(context)));
  return absl::OkStatus();
}

Status ScenarioEnv::TransferLeadership(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  NodeId target;
  SCENARIO_ASSIGN_OR_RETURN(target, command.TakeNodeId());
  if (Raft* raft = Running(*node, out)) PrintResult(out, raft->TransferLeadership(target));
  return absl::OkStatus();
}

Status ScenarioEnv::ProcessReady(Command& command, std::string& out) {
  if (command.positional.empty()) return absl::InvalidArgumentError("process-ready: no node");
  while (!command.positional.empty()) {
    Node* node = nullptr;
    SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
    HandleReady(*node, out);
  }
  return absl::OkStatus();
}

Status ScenarioEnv::DeliverMsgs(Command& command, std::string& out) {
  bool drop = false;
  if (auto drop_text = command.TakeNamed("drop")) {
    SCENARIO_ASSIGN_OR_RETURN(drop, ParseBool(*drop_text));
  }
  std::vector<Node*> receivers;
  while (!command.positional.empty()) {
    Node* node = nullptr;
    SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
    receivers.push_back(node);
  }
  if (receivers.empty()) {
    for (auto& [id, node] : nodes_) receivers.push_back(&node);
  }
  for (Node* node : receivers) DeliverQueued(*node, drop, out);
  if (out.empty()) Line(out, 0, "no messages");
  return absl::OkStatus();
}

Status ScenarioEnv::Stabilize(Command&, std::string& out) {
  for (int round = 0; round < kStabilizeRoundsMax; ++round) {
    bool busy = false;
    for (auto& [id, node] : nodes_) {
      if (node.raft != nullptr && node.raft->HasReady()) {
        HandleReady(node, out);
        busy = true;
      }
    }
    for (auto& [id, node] : nodes_) {
      if (!inboxes_[id].empty()) {
        DeliverQueued(node, false, out);
        busy = true;
      }
    }
    if (!busy) return absl::OkStatus();
  }
  Line(out, 0, fmt::format("still busy after {} rounds", kStabilizeRoundsMax));
  return absl::OkStatus();
}

Status ScenarioEnv::Partition(Command& command, std::string& out) {
  // Nodes not named in any group form group 0 together.
  std::map<NodeId, size_t> group_of;
  for (size_t group = 1; !command.positional.empty(); ++group) {
    std::string group_text;
    SCENARIO_ASSIGN_OR_RETURN(group_text, command.TakePositional("group"));
    std::vector<NodeId> members;
    SCENARIO_ASSIGN_OR_RETURN(members, ParseNodeList(group_text));
    for (NodeId id : members) {
      if (!nodes_.contains(id)) return absl::InvalidArgumentError(fmt::format("no node {}", id));
      group_of[id] = group;
    }
  }
  cut_links_.clear();
  std::vector<std::string> cut;
  for (auto a = nodes_.begin(); a != nodes_.end(); ++a) {
    for (auto b = std::next(a); b != nodes_.end(); ++b) {
      if (group_of[a->first] == group_of[b->first]) continue;
      cut_links_.emplace(a->first, b->first);
      cut.push_back(fmt::format("{}-{}", a->first, b->first));
    }
  }
  Line(out, 0, fmt::format("cut {}", fmt::join(cut, " ")));
  return absl::OkStatus();
}

Status ScenarioEnv::Heal(Command&, std::string&) {
  cut_links_.clear();
  return absl::OkStatus();
}

Status ScenarioEnv::Crash(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  if (Running(*node, out) == nullptr) return absl::OkStatus();
  // Everything the core held in memory is gone; only the durable state remains.
  node->raft.reset();
  LoseInbox(node->config.id, out);
  return absl::OkStatus();
}

Status ScenarioEnv::Restart(Command& command, std::string& out) {
  Node* found = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(found, TakeNode(command));
  Node& node = *found;
  if (node.raft != nullptr) {
    Line(out, 0, fmt::format("node {} is running", node.config.id));
    return absl::OkStatus();
  }
  const Durable& durable = node.durable;
  PersistentState state{durable.hard_state, durable.snapshot, {}, durable.applied};
  // Entries the snapshot covers are not part of the log the node restarts with.
  std::copy_if(durable.entries.begin(), durable.entries.end(), std::back_inserter(state.entries),
               [&](const Entry& entry) { return entry.index > durable.snapshot.meta.index; });
  Result<std::unique_ptr<Raft>> raft = Raft::Create(node.config, std::move(state));
  if (!raft.ok()) {
    PrintResult(out, raft.status());
    return absl::OkStatus();
  }
  node.raft = *std::move(raft);
  // Messages that reached the node while it was down found no one listening.
  LoseInbox(node.config.id, out);
  const RaftLog& log = node.raft->log();
  Line(out, 0,
       fmt::format("restarted with {} last={} applied={}", FormatHardState(node.raft->hard_state()),
                   Position(log.last_term(), log.last_index()), log.applied()));
  return absl::OkStatus();
}

Status ScenarioEnv::SetSnapshot(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  uint64_t index = 0;
  SCENARIO_ASSIGN_OR_RETURN(index, command.TakeNumber("snapshot index"));
  Raft* raft = Running(*node, out);
  if (raft == nullptr) return absl::OkStatus();
  Durable& durable = node->durable;
  Status status =
      raft->SetSnapshot(Index(index), StateMachineImage(durable.state_machine, Index(index)));
  if (!status.ok()) {
    PrintResult(out, status);
    return absl::OkStatus();
  }
  // Raft::SetSnapshot requires the snapshot to be durable already; it is, from here on.
  durable.snapshot = raft->log().snapshot();
  Line(out, 0, "snapshot " + FormatSnapshot(durable.snapshot));
  return absl::OkStatus();
}

Status ScenarioEnv::Compact(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  uint64_t index = 0;
  SCENARIO_ASSIGN_OR_RETURN(index, command.TakeNumber("compaction index"));
  Raft* raft = Running(*node, out);
  if (raft == nullptr) return absl::OkStatus();
  Status status = raft->CompactLog(Index(index));
  if (status.ok()) {
    std::erase_if(node->durable.entries,
                  [&](const Entry& entry) { return entry.index <= Index(index); });
  }
  PrintResult(out, status);
  return absl::OkStatus();
}

Status ScenarioEnv::PrintStatus(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  Raft* raft = Running(*node, out);
  if (raft == nullptr) return absl::OkStatus();
  const RaftLog& log = raft->log();
  Line(out, 0,
       fmt::format("node {}: {} term={} vote={}", raft->id(),
                   FormatSoftState({raft->role(), raft->leader()}), raft->term(),
                   raft->voted_for()));
  Line(out, 2,
       fmt::format("log: snapshot={} last={} commit={} applied={}",
                   Position(*log.TermAt(log.prev_index()), log.prev_index()),
                   Position(log.last_term(), log.last_index()), log.committed(), log.applied()));
  Line(out, 2, "membership: " + ToString(raft->membership()));
  for (const auto& [peer, progress] : raft->progress()) {
    std::string line = fmt::format("progress {}: {} {} match={} next={}", peer,
                                   progress.is_learner() ? "learner" : "voter",
                                   ToString(progress.state()), progress.match(), progress.next());
    if (progress.state() == Progress::State::kSnapshot) {
      line += fmt::format(" pending-snapshot={}", progress.pending_snapshot());
    }
    if (progress.IsPaused()) line += " paused";
    Line(out, 2, line);
  }
  if (raft->transfer_target() != kNoNode) {
    Line(out, 2, fmt::format("transferring leadership to {}", raft->transfer_target()));
  }
  const Durable& durable = node->durable;
  Line(out, 2,
       fmt::format("state machine: [{}]",
                   StateMachineImage(durable.state_machine, durable.applied)));
  return absl::OkStatus();
}

Status ScenarioEnv::PrintRaftLog(Command& command, std::string& out) {
  Node* node = nullptr;
  SCENARIO_ASSIGN_OR_RETURN(node, TakeNode(command));
  Raft* raft = Running(*node, out);
  if (raft == nullptr) return absl::OkStatus();
  const RaftLog& log = raft->log();
  if (log.prev_index() > Index(0)) {
    Line(out, 0, "compacted through " + Position(*log.TermAt(log.prev_index()), log.prev_index()));
  }
  for (Index index = log.first_index(); index <= log.last_index(); index = index.next()) {
    Line(out, 0, FormatEntry(log.At(index)));
  }
  if (out.empty()) Line(out, 0, "empty");
  return absl::OkStatus();
}

void ScenarioEnv::HandleReady(Node& node, std::string& out) {
  const NodeId id = node.config.id;
  if (node.raft == nullptr) {
    Line(out, 0, fmt::format("> {} is down", id));
    return;
  }
  Line(out, 0, fmt::format("> {} handling Ready", id));
  if (!node.raft->HasReady()) {
    Line(out, 2, "nothing to do");
    return;
  }
  const Ready ready = node.raft->TakeReady();
  if (ready.soft_state) Line(out, 2, "soft state: " + FormatSoftState(*ready.soft_state));
  if (ready.hard_state) Line(out, 2, "hard state: " + FormatHardState(*ready.hard_state));
  if (ready.snapshot) Line(out, 2, "snapshot: " + FormatSnapshot(*ready.snapshot));
  auto section = [&](std::string_view title, const auto& items, auto format) {
    if (items.empty()) return;
    Line(out, 2, title);
    std::vector<std::string> lines;
    for (const auto& item : items) lines.push_back(format(item));
    Lines(out, 4, lines);
  };
  section("entries:", ready.entries, FormatEntry);
  // Thesis 10.2.1: these may leave before the entries above are durable.
  section("early messages:", ByReceiver(ready.early_messages), FormatMessage);
  section("messages:", ByReceiver(ready.messages), FormatMessage);
  section("committed entries:", ready.committed_entries, FormatEntry);
  section("read states:", ready.read_states, [](const ReadState& state) {
    return fmt::format("index={} ctx={}", state.index, state.context);
  });

  // The contract of types.h, in its order: persist, send, apply, Advance.
  Persist(node, ready);
  for (const std::vector<Message>* messages : {&ready.early_messages, &ready.messages}) {
    for (const Message& message : *messages) inboxes_[message.to].push_back(message);
  }
  Apply(node, ready);
  node.raft->Advance();
}

void ScenarioEnv::Persist(Node& node, const Ready& ready) {
  Durable& durable = node.durable;
  if (ready.snapshot) {
    // Raft 7: a snapshot from the leader supersedes the whole log.
    durable.snapshot = *ready.snapshot;
    durable.entries.clear();
  }
  if (!ready.entries.empty()) {
    // An entry at an index already stored replaces it and everything after it (types.h).
    const Index first = ready.entries.front().index;
    std::erase_if(durable.entries, [&](const Entry& entry) { return entry.index >= first; });
    SYNOD_ASSERT(durable.entries.empty() || durable.entries.back().index.next() == first);
    durable.entries.insert(durable.entries.end(), ready.entries.begin(), ready.entries.end());
  }
  if (ready.hard_state) durable.hard_state = *ready.hard_state;
}

void ScenarioEnv::Apply(Node& node, const Ready& ready) {
  Durable& durable = node.durable;
  if (ready.snapshot) {
    const Index index = ready.snapshot->meta.index;
    durable.state_machine.clear();
    for (std::string_view value : Split(ready.snapshot->data, ' ')) {
      durable.state_machine.emplace_back(index, value);
    }
    durable.applied = index;
  }
  for (const Entry& entry : ready.committed_entries) {
    SYNOD_ASSERT_MSG(entry.index == durable.applied.next(), "applying {} after {}", entry.index,
                     durable.applied);
    if (entry.type == EntryType::kNormal)
      durable.state_machine.emplace_back(entry.index, entry.data);
    durable.applied = entry.index;
  }
}

void ScenarioEnv::DeliverQueued(Node& node, bool drop, std::string& out) {
  const NodeId id = node.config.id;
  std::deque<Message> queued;
  queued.swap(inboxes_[id]);
  if (queued.empty()) return;
  Line(out, 0, fmt::format("> {} receiving messages", id));
  Raft* raft = node.raft.get();
  std::vector<std::string> lines;
  for (Message& message : queued) {
    const std::string text = FormatMessage(message);
    if (drop) {
      lines.push_back(text + " (dropped)");
    } else if (LinkIsCut(message.from, message.to)) {
      lines.push_back(text + " (dropped: link cut)");
    } else if (raft == nullptr) {
      lines.push_back(text + " (dropped: node down)");
    } else {
      lines.push_back(text);
      if (Status status = raft->Step(std::move(message)); !status.ok()) {
        lines.push_back("  error: " + status.ToString());
      }
    }
  }
  Lines(out, 2, lines);
}

void ScenarioEnv::LoseInbox(NodeId id, std::string& out) {
  std::vector<std::string> lines;
  for (const Message& message : inboxes_[id]) lines.push_back("lost " + FormatMessage(message));
  Lines(out, 0, lines);
  inboxes_[id].clear();
}

bool ScenarioEnv::LinkIsCut(NodeId a, NodeId b) const {
  return cut_links_.contains(std::minmax(a, b));
}

}  // namespace synod::raft
