// An interpreter for scripted Raft scenarios (STYLE.md: "scripted scenario tests run from text
// files in testdata/"). It drives a group of Raft cores through the same contract a server
// follows (types.h: persist, send, apply, Advance), but every step is an explicit command, so a
// script can hold a message back, drop it, cut a link or crash a node at exactly the moment a
// rule of the paper is at stake, and the printed output shows what each node did.
//
// Commands (one a line; ids are node ids; a list is written (1,2,3)):
//   add-nodes N [voters=(..)] [learners=(..)] [pre-vote=B] [check-quorum=B]
//             [append-entries-bytes-max=N] [learner-promotion-lag-max=N]
//       Creates N nodes numbered after the existing ones. With voters/learners they form a new
//       cluster (a snapshot at index 0 holding that membership); without, they have an empty
//       membership and wait to be added to an existing cluster. Unset options keep Config's
//       defaults; election_timeout_ticks is 10 and heartbeat_interval_ticks 1.
//   campaign ID                         Raft::Campaign.
//   tick ID [N]                         N ticks (default 1).
//   tick-heartbeat ID                   One heartbeat interval.
//   tick-election ID                    A leader: one election timeout. Anyone else: ticks until
//                                       it starts an election, at most twice the election
//                                       timeout (a learner never does).
//   propose ID DATA                     Raft::Propose.
//   propose-conf-change ID add-voter|add-learner|promote|remove NODE
//   read-index ID CTX                   Raft::ReadIndex.
//   transfer-leadership FROM TO         Raft::TransferLeadership on FROM.
//   process-ready ID...                 Takes each node's Ready, prints it, and does what it asks:
//                                       persists, queues the messages, applies, Advance.
//   deliver-msgs [ID...] [drop=true]    Delivers (or drops) every message queued for each node
//                                       (default: all nodes), in the order they were sent.
//   stabilize                           Repeats process-ready and deliver-msgs on every node
//                                       until nothing is left to do.
//   partition GROUP...                  Cuts every link between nodes of different groups; a
//                                       group is an id or a list, and the nodes not named form
//                                       one more group. Messages on a cut link are dropped
//                                       when delivered.
//   heal                                Restores every link.
//   crash ID                            Loses everything not persisted through a Ready and the
//                                       messages queued for the node.
//   restart ID                          Builds the node again from what it persisted; messages
//                                       that arrived while it was down are lost.
//   set-snapshot ID INDEX               Snapshots the node's state machine at INDEX.
//   compact ID INDEX                    Raft::CompactLog, and the same on the durable log.
//   status ID                           Role, term, vote, log positions, progress of each peer.
//   raft-log ID                         The node's log.
//
// Every node runs with check_invariants and seed = its id, so a script replays exactly. A log
// position is printed term/index ("2/5" is the entry at index 5 written in term 2). Messages are
// listed by receiver, each receiver's in the order sent, and identical consecutive lines print
// once with "(N times)". A failed call into the core prints its Status as "error: CODE: text";
// that is part of the expected output. An unknown command or malformed argument is an error of
// the script itself and is returned as InvalidArgument.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/raft.h"
#include "consensus/raft/types.h"

namespace synod::raft {

class ScenarioEnv {
 public:
  // Runs one command and returns what it printed: never empty, never a blank line (a blank line
  // ends an expected output block in a script file), no trailing newline.
  Result<std::string> Run(std::string_view command_line);

  // One parsed command line; handlers consume its arguments so that a leftover one (a typo in a
  // script) is reported rather than silently ignored.
  struct Command;

 private:
  // What a node has made durable through Ready batches: all that survives a crash.
  struct Durable {
    HardState hard_state;
    Snapshot snapshot;
    // Contiguous; may still hold entries the snapshot covers until the log is compacted.
    std::vector<Entry> entries;
    // The state machine is durable with its applied index (ARCHITECTURE.md: the applied index
    // is stored atomically with the data), so a restart does not apply an entry twice.
    Index applied;
    // The applied commands, each with the index it was applied at (a value restored from a
    // snapshot carries the snapshot's index).
    std::vector<std::pair<Index, std::string>> state_machine;
  };

  struct Node {
    Config config;
    Durable durable;
    // Null while the node is crashed.
    std::unique_ptr<Raft> raft;
  };

  using Handler = Status (ScenarioEnv::*)(Command& command, std::string& out);

  Status AddNodes(Command& command, std::string& out);
  Status Campaign(Command& command, std::string& out);
  Status Tick(Command& command, std::string& out);
  Status TickHeartbeat(Command& command, std::string& out);
  Status TickElection(Command& command, std::string& out);
  Status Propose(Command& command, std::string& out);
  Status ProposeConfChange(Command& command, std::string& out);
  Status ReadIndex(Command& command, std::string& out);
  Status TransferLeadership(Command& command, std::string& out);
  Status ProcessReady(Command& command, std::string& out);
  Status DeliverMsgs(Command& command, std::string& out);
  Status Stabilize(Command& command, std::string& out);
  Status Partition(Command& command, std::string& out);
  Status Heal(Command& command, std::string& out);
  Status Crash(Command& command, std::string& out);
  Status Restart(Command& command, std::string& out);
  Status SetSnapshot(Command& command, std::string& out);
  Status Compact(Command& command, std::string& out);
  Status PrintStatus(Command& command, std::string& out);
  Status PrintRaftLog(Command& command, std::string& out);

  // The node named by the next argument; InvalidArgument if there is no such node.
  Result<Node*> TakeNode(Command& command);
  // The node's core, or null after printing that it is down: acting on a crashed node is part
  // of a scenario, not an error of the script.
  Raft* Running(Node& node, std::string& out);

  // Takes one Ready of the node, prints it and carries out the contract of types.h.
  void HandleReady(Node& node, std::string& out);
  void Persist(Node& node, const Ready& ready);
  void Apply(Node& node, const Ready& ready);
  // Delivers (or drops) every message queued for the node at this moment; messages it sends in
  // response wait for its next Ready.
  void DeliverQueued(Node& node, bool drop, std::string& out);
  // Drops the messages queued for `id`, printing each: a crashed node loses what it had not yet
  // read, and a restarted one never saw what arrived while it was down.
  void LoseInbox(NodeId id, std::string& out);
  bool LinkIsCut(NodeId a, NodeId b) const;

  std::map<NodeId, Node> nodes_;
  // Messages in flight, per receiver, in the order they were sent.
  std::map<NodeId, std::deque<Message>> inboxes_;
  // Cut links, each stored as (smaller id, larger id).
  std::set<std::pair<NodeId, NodeId>> cut_links_;
};

}  // namespace synod::raft
