// The Raft core beyond the paper: the extensions of Ongaro's thesis ("Consensus: Bridging Theory
// and Practice"), the Ready contract of types.h, and start-up validation. Each test is named
// after the rule it checks and cites the section. The paper's own rules are in
// raft_paper_test.cc.
#include "consensus/raft/raft.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <set>
#include <string>

#include "consensus/raft/test_cluster.h"

namespace synod::raft {
namespace {

const std::vector<NodeId> kThreeVoters = {kNode1, kNode2, kNode3};
const uint32_t kElectionTimeout = Config().election_timeout_ticks;

// `count` entries of `term`, for building long logs.
std::vector<uint64_t> Repeat(uint64_t term, size_t count) {
  return std::vector<uint64_t>(count, term);
}

std::vector<uint64_t> Concat(std::vector<uint64_t> a, const std::vector<uint64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void ProposeAndStabilize(TestCluster& cluster, NodeId leader,
                         const std::vector<std::string>& commands) {
  for (const std::string& command : commands) {
    const Result<LogPosition> position = cluster.node(leader).Propose(command);
    EXPECT_TRUE(position.ok()) << position.status();
    cluster.Stabilize();
  }
}

void ChangeMembership(TestCluster& cluster, NodeId leader, ConfChangeType type, NodeId node) {
  const Result<LogPosition> position = cluster.node(leader).ProposeConfChange({type, node});
  EXPECT_TRUE(position.ok()) << position.status();
  cluster.Stabilize();
}

// Node 1 leads nodes 1 to 3, and node 4 joins as a learner (thesis 4.2.1).
void ElectNode1AndAddLearner4(TestCluster& cluster) {
  cluster.Campaign(kNode1);
  cluster.AddNode(kNode4);
  ChangeMembership(cluster, kNode1, ConfChangeType::kAddLearner, kNode4);
}

Message GrantedVote(NodeId from, NodeId to, Term term) {
  return Message{.type = MessageType::kRequestVoteResponse, .from = from, .to = to, .term = term};
}

// Counts the messages of one type delivered from one node to another; the rest pass.
std::function<bool(Message&)> Counting(MessageType type, NodeId from, NodeId to, int& count) {
  return [type, from, to, &count](Message& message) {
    if (message.type == type && message.from == from && message.to == to) ++count;
    return true;
  };
}

// ---------------------------------------------------------------------------------------------
// Pre-vote (thesis 9.6)

// Thesis 9.6: with pre-vote, a server rejoining the cluster after a partition cannot raise its
// term, because no majority would vote for it (its log is behind and they hear a leader), so
// the stable leader keeps leading. Without pre-vote (the control case) the same rejoin deposes
// the leader.
TEST(PreVote_9_6, RejoiningNodeWithStaleLogDoesNotDisruptStableLeader) {
  for (bool pre_vote : {true, false}) {
    SCOPED_TRACE(pre_vote ? "with pre-vote" : "without pre-vote");
    Config config = PaperConfig();
    config.pre_vote = pre_vote;
    TestCluster cluster(3, config);
    cluster.Campaign(kNode1);
    cluster.Isolate(kNode3);
    ProposeAndStabilize(cluster, kNode1, {"x"});
    cluster.Tick(kNode3, 3 * kElectionTimeout);
    cluster.Heal();
    int vote_requests = 0;
    cluster.SetFilter([&](Message& message) {
      if (message.type == MessageType::kRequestPreVote ||
          message.type == MessageType::kRequestVote) {
        ++vote_requests;
      }
      return true;
    });
    cluster.Tick(kNode3, 2 * kElectionTimeout);
    ASSERT_GT(vote_requests, 0) << "node 3 asked the others after the partition healed";
    if (pre_vote) {
      EXPECT_EQ(cluster.leader(), kNode1);
      for (NodeId id : kThreeVoters) EXPECT_EQ(cluster.node(id).term(), Term(1));
    } else {
      EXPECT_NE(cluster.node(kNode1).role(), Role::kLeader);
      EXPECT_GT(cluster.node(kNode1).term(), Term(1));
    }
  }
}

// Thesis 9.6 with check-quorum (6.2), Synod's default: an isolated node's term does not rise
// while it is cut off, and once back it simply follows the leader it left.
TEST(PreVote_9_6, IsolatedNodeTermDoesNotRiseAndItRejoinsAsFollower) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.leader(), kNode1);
  cluster.Isolate(kNode3);
  cluster.TickAll(5 * kElectionTimeout);
  EXPECT_EQ(cluster.node(kNode3).term(), Term(1));
  EXPECT_NE(cluster.node(kNode3).role(), Role::kCandidate);

  cluster.Heal();
  cluster.TickAll(kElectionTimeout);
  EXPECT_EQ(cluster.leader(), kNode1);
  for (NodeId id : kThreeVoters) EXPECT_EQ(cluster.node(id).term(), Term(1));
  EXPECT_EQ(cluster.node(kNode3).role(), Role::kFollower);
  EXPECT_EQ(cluster.node(kNode3).leader(), kNode1);
}

// Thesis 9.6: "a candidate would first ask other servers whether its log was up-to-date enough
// to get their vote. Only if the candidate believed it could get votes from a majority ... would
// it increment its term and start a normal election."
TEST(PreVote_9_6, PreCandidateDoesNotIncrementItsTerm) {
  std::unique_ptr<Raft> raft = NewRaft(kNode1, StateWithLog(kThreeVoters, {1}, Term(1)), Config());
  ASSERT_TRUE(raft->Campaign().ok());
  EXPECT_EQ(raft->role(), Role::kPreCandidate);
  EXPECT_EQ(raft->term(), Term(1));
  const Ready ready = raft->TakeReady();
  EXPECT_FALSE(ready.hard_state.has_value()) << "nothing to persist for a pre-vote";
  const std::vector<Message> requests = OfType(ready.messages, MessageType::kRequestPreVote);
  ASSERT_EQ(requests.size(), 2u);
  for (const Message& request : requests)
    EXPECT_EQ(request.term, Term(2)) << "the term it would use";
}

// Thesis 9.6: answering a pre-vote promises nothing, so the voter keeps its term and its vote
// whether it grants the pre-vote or not.
TEST(PreVote_9_6, PreVoteChangesNeitherTermNorVoteOfVoter) {
  struct Case {
    Index candidate_last_index;
    bool granted;
  };
  for (const Case& c : {Case{Index(2), true}, Case{Index(1), false}}) {
    std::unique_ptr<Raft> voter =
        NewRaft(kNode1, StateWithLog(kThreeVoters, {1, 1}, Term(1)), Config());
    ASSERT_TRUE(voter
                    ->Step(Message{.type = MessageType::kRequestPreVote,
                                   .from = kNode2,
                                   .to = kNode1,
                                   .term = Term(5),
                                   .log_index = c.candidate_last_index,
                                   .log_term = Term(1)})
                    .ok());
    EXPECT_EQ(voter->term(), Term(1));
    EXPECT_EQ(voter->voted_for(), kNoNode);
    const Ready ready = voter->TakeReady();
    EXPECT_FALSE(ready.hard_state.has_value());
    const std::vector<Message> replies =
        OfType(ready.messages, MessageType::kRequestPreVoteResponse);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(!replies[0].reject, c.granted);
  }
}

// ---------------------------------------------------------------------------------------------
// Check-quorum (thesis 6.2)

// Thesis 6.2: "a leader steps down if an election timeout elapses without a successful round of
// heartbeats to a majority of its cluster", and not before.
TEST(CheckQuorum_6_2, LeaderStepsDownOneElectionTimeoutAfterLastHearingMajority) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.TickAll(kElectionTimeout);
  ASSERT_EQ(cluster.leader(), kNode1);
  cluster.Isolate(kNode1);
  cluster.Tick(kNode1, kElectionTimeout - 1);
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kLeader);
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kFollower);
  EXPECT_EQ(cluster.node(kNode1).leader(), kNoNode);
}

// Thesis 6.2, for a leader that never hears from anyone after its election: one election timeout
// later it must step down.
TEST(CheckQuorum_6_2, NewLeaderThatNeverHearsFromMajorityStepsDownAfterOneElectionTimeout) {
  TestCluster cluster(3, Config());
  // The votes get through; nothing the leader sends afterwards does.
  cluster.SetFilter([](Message& message) {
    return message.from != kNode1 || message.type == MessageType::kRequestPreVote ||
           message.type == MessageType::kRequestVote;
  });
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.node(kNode1).role(), Role::kLeader);
  cluster.Tick(kNode1, kElectionTimeout);
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kFollower);
}

TEST(CheckQuorum_6_2, LeaderHearingFromMajorityKeepsLeading) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode3);
  cluster.TickAll(10 * kElectionTimeout);
  EXPECT_EQ(cluster.leader(), kNode1);
  EXPECT_EQ(cluster.node(kNode1).term(), Term(1));
}

// Thesis 4.2.1 with 6.2: learners are "not considered for majorities", so answers from a
// learner alone do not keep a leader in power.
TEST(CheckQuorum_6_2, AnswersFromLearnersDoNotKeepLeaderInPower) {
  TestCluster cluster(3, Config());
  ElectNode1AndAddLearner4(cluster);
  cluster.Cut(kNode1, kNode2);
  cluster.Cut(kNode1, kNode3);
  cluster.Tick(kNode1, kElectionTimeout);
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kFollower);
}

// Thesis 6.2 (and 4.2.3): "if a server receives a RequestVote request within the minimum
// election timeout of hearing from a current leader, it does not update its term or grant its
// vote". Pre-vote is off here so that the request reaches the voters as a real RequestVote.
TEST(CheckQuorum_6_2, FollowersInLeaseIgnoreVoteRequestsUntilLeaseExpires) {
  Config config;
  config.pre_vote = false;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  cluster.Campaign(kNode3);
  EXPECT_EQ(cluster.node(kNode3).term(), Term(2));
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kLeader);
  EXPECT_EQ(cluster.node(kNode1).term(), Term(1)) << "the leader ignores it too";
  EXPECT_EQ(cluster.node(kNode2).term(), Term(1));
  EXPECT_EQ(cluster.node(kNode2).voted_for(), kNode1);

  // Node 2 stops hearing from the leader; an election timeout later its lease is over.
  cluster.Isolate(kNode1);
  cluster.Tick(kNode2, kElectionTimeout);
  cluster.Campaign(kNode3);
  EXPECT_EQ(cluster.node(kNode3).role(), Role::kLeader);
}

// ---------------------------------------------------------------------------------------------
// Fast backtracking (Raft 5.3: "the follower can include the term of the conflicting entry and
// the first index it stores for that term. With this information, the leader can decrement
// nextIndex to bypass all of the conflicting entries in that term; one AppendEntries RPC will
// be required for each term with conflicting entries, rather than one RPC per entry.")

TEST(FastBacktracking_5_3, LongDivergentFollowerLogIsFixedWithOneRejection) {
  struct Case {
    std::vector<uint64_t> leader_log;
    std::vector<uint64_t> follower_log;
  };
  const std::vector<Case> cases = {
      // The follower has 45 entries of a term the leader never saw.
      {Concat(Repeat(1, 5), Repeat(3, 5)), Concat(Repeat(1, 5), Repeat(2, 45))},
      // The leader has 45 entries of a term the follower never saw.
      {Concat(Repeat(1, 5), Repeat(3, 45)), Concat(Repeat(1, 5), Repeat(2, 5))},
      // They share 15 entries of term 2, then the follower's term-2 tail diverges.
      {Concat(Concat(Repeat(1, 5), Repeat(2, 15)), Repeat(3, 10)),
       Concat(Repeat(1, 5), Repeat(2, 45))},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(
        fmt::format("leader {} entries, follower {}", c.leader_log.size(), c.follower_log.size()));
    TestCluster cluster({{kNode1, StateWithLog(kThreeVoters, c.leader_log, Term(3))},
                         {kNode2, StateWithLog(kThreeVoters, c.follower_log, Term(3))},
                         {kNode3, StateWithLog(kThreeVoters, c.leader_log, Term(3))}},
                        Config());
    int rejections = 0;
    cluster.SetFilter([&](Message& message) {
      if (message.type == MessageType::kAppendEntriesResponse && message.from == kNode2 &&
          message.reject) {
        ++rejections;
      }
      return true;
    });
    cluster.Campaign(kNode1);
    ASSERT_EQ(cluster.leader(), kNode1);
    EXPECT_EQ(LogTerms(cluster.node(kNode2).log()), LogTerms(cluster.node(kNode1).log()));
    EXPECT_EQ(rejections, 1) << "one round trip per conflicting term, not per entry";
  }
}

// ---------------------------------------------------------------------------------------------
// Flow control: probe and replicate states, and the bounded window of pipelined AppendEntries
// (thesis 10.2.2: the leader pipelines AppendEntries; TigerBeetle: put a limit on everything).

TEST(FlowControl, ReplicateStateKeepsAtMostInflightMaxAppendEntriesUnacknowledged) {
  Config config;
  config.inflight_messages_max = 3;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.node(kNode1).progress().at(kNode2).state(), Progress::State::kReplicate);
  int appends_with_entries = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.from == kNode2 && message.to == kNode1) return false;  // No acknowledgement.
    if (message.type == MessageType::kAppendEntries && message.to == kNode2 &&
        !message.entries.empty()) {
      ++appends_with_entries;
    }
    return true;
  });
  for (int i = 0; i < 10; ++i) ProposeAndStabilize(cluster, kNode1, {fmt::format("c{}", i)});
  EXPECT_EQ(appends_with_entries, 3);
  EXPECT_TRUE(cluster.node(kNode1).progress().at(kNode2).IsPaused());
  EXPECT_EQ(cluster.applied(kNode1).size(), 10u) << "node 3 keeps the quorum going";

  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_EQ(LogTerms(cluster.node(kNode2).log()), LogTerms(cluster.node(kNode1).log()));
  EXPECT_EQ(cluster.node(kNode1).progress().at(kNode2).match(),
            cluster.node(kNode1).log().last_index());
}

TEST(FlowControl, ProbeStateSendsOneAppendEntriesUntilAnswered) {
  TestCluster cluster(3, Config());
  int appends_to_node3 = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.to != kNode3) return true;
    if (message.type == MessageType::kAppendEntries) ++appends_to_node3;
    return false;
  });
  cluster.Campaign(kNode1);
  ProposeAndStabilize(cluster, kNode1, {"a", "b", "c", "d", "e"});
  EXPECT_EQ(appends_to_node3, 1) << "only the first probe";
  EXPECT_EQ(cluster.node(kNode1).progress().at(kNode3).state(), Progress::State::kProbe);

  // A heartbeat answer shows the follower is back: the leader probes again and, on success,
  // switches to replicate.
  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.node(kNode1).progress().at(kNode3).state(), Progress::State::kReplicate);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

// ---------------------------------------------------------------------------------------------
// Snapshots (Raft 7)

// Node 3 misses a, b and c while cut off; then the leader, node 1, snapshots and compacts its
// log, so node 3 can only catch up from the snapshot. The links are healed on return.
void LagBehindCompactedLeader(TestCluster& cluster) {
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode3);
  ProposeAndStabilize(cluster, kNode1, {"a", "b", "c"});
  cluster.SnapshotAndCompact(kNode1);
  ASSERT_EQ(cluster.node(kNode1).log().first_index(), Index(5));
  cluster.Heal();
}

// The InstallSnapshot or its answer may be lost: after snapshot_retry_ticks the leader probes
// again and sends the snapshot anew.
TEST(Snapshot_7, LostSnapshotIsSentAgainAfterRetryTimeout) {
  Config config;
  config.snapshot_retry_ticks = 5;
  TestCluster cluster(3, config);
  LagBehindCompactedLeader(cluster);
  int snapshots = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.type != MessageType::kInstallSnapshot) return true;
    ++snapshots;
    return false;
  });
  cluster.TickAll(config.snapshot_retry_ticks + 1);
  EXPECT_EQ(snapshots, 2);

  cluster.Heal();
  cluster.TickAll(config.snapshot_retry_ticks + 1);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(cluster.node(kNode1).progress().at(kNode3).state(), Progress::State::kReplicate);
}

// A follower that installed a snapshot restarts from it (the snapshot is its durable log
// prefix) and goes on replicating from there.
TEST(Snapshot_7, FollowerRestartsFromInstalledSnapshot) {
  TestCluster cluster(3, Config());
  LagBehindCompactedLeader(cluster);
  cluster.Tick(kNode1);
  ASSERT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c"}));

  cluster.Crash(kNode3);
  cluster.Restart(kNode3);
  EXPECT_EQ(cluster.node(kNode3).log().prev_index(), Index(4));
  EXPECT_EQ(cluster.node(kNode3).log().applied(), Index(4));
  ProposeAndStabilize(cluster, kNode1, {"d"});
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c", "d"}));
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (thesis 3.10)

// Thesis 3.10: "the prior leader sends a TimeoutNow request to the target server. This request
// has the same effect as the target server's election timer firing". Its RequestVote is marked
// so that voters in a leader lease (6.2) do not ignore it.
TEST(LeadershipTransfer_3_10, UpToDateTargetIsElectedWithoutWaitingForTimeout) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  int timeout_now = 0;
  cluster.SetFilter(Counting(MessageType::kTimeoutNow, kNode1, kNode3, timeout_now));
  ASSERT_TRUE(cluster.node(kNode1).TransferLeadership(kNode3).ok());
  cluster.Stabilize();
  EXPECT_EQ(timeout_now, 1);
  EXPECT_EQ(cluster.leader(), kNode3);
  EXPECT_EQ(cluster.node(kNode3).term(), Term(2));
  EXPECT_EQ(cluster.node(kNode1).leader(), kNode3);
}

// Thesis 3.10: "the prior leader stops accepting new client requests" during the transfer.
TEST(LeadershipTransfer_3_10, ProposalsAreRefusedDuringTransfer) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.Cut(kNode1, kNode3);
  ASSERT_TRUE(cluster.node(kNode1).TransferLeadership(kNode3).ok());
  cluster.Stabilize();
  const Result<LogPosition> proposal = cluster.node(kNode1).Propose("x");
  EXPECT_EQ(proposal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(proposal.status().message().find("transfer"), std::string_view::npos)
      << proposal.status();
  EXPECT_EQ(
      cluster.node(kNode1).ProposeConfChange({ConfChangeType::kAddLearner, kNode4}).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

// Thesis 3.10: the prior leader first brings the target's log up to date, and only then sends
// TimeoutNow, so that the target can win the election.
TEST(LeadershipTransfer_3_10, LaggingTargetIsCaughtUpBeforeTimeoutNow) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.Cut(kNode1, kNode3);
  ProposeAndStabilize(cluster, kNode1, {"a", "b"});
  cluster.Heal();
  std::optional<Index> target_last_index_at_timeout_now;
  cluster.SetFilter([&](Message& message) {
    if (message.type == MessageType::kTimeoutNow) {
      target_last_index_at_timeout_now = cluster.node(kNode3).log().last_index();
    }
    return true;
  });
  const Index leader_last_index = cluster.node(kNode1).log().last_index();
  ASSERT_TRUE(cluster.node(kNode1).TransferLeadership(kNode3).ok());
  cluster.Stabilize();
  EXPECT_EQ(target_last_index_at_timeout_now, leader_last_index);
  EXPECT_EQ(cluster.leader(), kNode3);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b"}));
}

// Thesis 3.10: "If the transfer does not complete within about one election timeout, the prior
// leader aborts the transfer and resumes accepting client requests."
TEST(LeadershipTransfer_3_10, TransferAbortsAfterElectionTimeout) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.Cut(kNode1, kNode3);
  ASSERT_TRUE(cluster.node(kNode1).TransferLeadership(kNode3).ok());
  cluster.Tick(kNode1, kElectionTimeout - 1);
  EXPECT_EQ(cluster.node(kNode1).transfer_target(), kNode3);
  EXPECT_FALSE(cluster.node(kNode1).Propose("early").ok());
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.node(kNode1).transfer_target(), kNoNode);
  EXPECT_EQ(cluster.leader(), kNode1);
  EXPECT_TRUE(cluster.node(kNode1).Propose("after").ok());
}

// ---------------------------------------------------------------------------------------------
// ReadIndex (thesis 6.4)

// Thesis 6.4: "If the leader has not yet marked an entry from its current term committed, it
// waits until it has done so."
TEST(ReadIndex_6_4, LeaderServesReadsOnlyAfterCommittingEntryOfItsTerm) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  // Node 2 takes over, but no follower's acknowledgement reaches it yet.
  cluster.SetFilter([](Message& message) {
    return message.type != MessageType::kAppendEntriesResponse || message.to != kNode2;
  });
  ASSERT_TRUE(cluster.node(kNode1).TransferLeadership(kNode2).ok());
  cluster.Stabilize();
  Raft& leader = cluster.node(kNode2);
  ASSERT_EQ(leader.role(), Role::kLeader);
  ASSERT_EQ(leader.log().committed(), Index(1)) << "its no-op at index 2 is not committed";
  ASSERT_TRUE(leader.ReadIndex("r").ok());
  cluster.Stabilize();
  EXPECT_TRUE(cluster.read_states(kNode2).empty());

  cluster.Heal();
  cluster.Tick(kNode2);
  EXPECT_EQ(cluster.read_states(kNode2), (std::vector<ReadState>{{Index(2), "r"}}));
}

// Thesis 6.4: the leader confirms leadership with one round of heartbeats; reads that arrive
// together share it, which amortizes the round over many reads.
TEST(ReadIndex_6_4, ReadsWaitingAtOneMomentShareOneHeartbeatRound) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  int heartbeats = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.type == MessageType::kHeartbeat) ++heartbeats;
    return true;
  });
  Raft& leader = cluster.node(kNode1);
  ASSERT_TRUE(leader.ReadIndex("a").ok());
  ASSERT_TRUE(leader.ReadIndex("b").ok());
  cluster.Stabilize();
  EXPECT_EQ(heartbeats, 2) << "one per follower for both reads";
  EXPECT_EQ(cluster.read_states(kNode1),
            (std::vector<ReadState>{{Index(1), "a"}, {Index(1), "b"}}));

  ASSERT_TRUE(leader.ReadIndex("c").ok());
  cluster.Stabilize();
  EXPECT_EQ(heartbeats, 4) << "a later read needs a round of its own";
  EXPECT_EQ(cluster.read_states(kNode1).size(), 3u);
}

// Thesis 6.4: a follower asks the leader for the current read index, then serves the read once
// it has applied that far.
TEST(ReadIndex_6_4, FollowerGetsReadIndexFromLeader) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  ProposeAndStabilize(cluster, kNode1, {"x"});
  int forwarded = 0;
  cluster.SetFilter(Counting(MessageType::kReadIndex, kNode2, kNode1, forwarded));
  ASSERT_TRUE(cluster.node(kNode2).ReadIndex("f").ok());
  cluster.Stabilize();
  EXPECT_EQ(forwarded, 1);
  EXPECT_EQ(cluster.read_states(kNode2), (std::vector<ReadState>{{Index(2), "f"}}));
}

TEST(ReadIndex_6_4, ReadIndexWithoutKnownLeaderIsUnavailable) {
  TestCluster cluster(3, Config());
  EXPECT_EQ(cluster.node(kNode1).ReadIndex("r").code(), absl::StatusCode::kUnavailable);
}

// Thesis 6.4: the heartbeat round is what keeps a deposed leader from serving stale data. Here
// check-quorum is off, so the partitioned leader keeps believing it leads while a new leader
// commits a write it does not know about.
TEST(ReadIndex_6_4, PartitionedStaleLeaderNeverReleasesRead) {
  Config config;
  config.check_quorum = false;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode1);
  // Node 3 stops hearing from node 1; once its lease is over it grants node 2 a (pre-)vote.
  cluster.Tick(kNode3, kElectionTimeout);
  cluster.Campaign(kNode2);
  ASSERT_EQ(cluster.node(kNode2).role(), Role::kLeader);
  ProposeAndStabilize(cluster, kNode2, {"new"});

  ASSERT_EQ(cluster.node(kNode1).role(), Role::kLeader);
  ASSERT_TRUE(cluster.node(kNode1).ReadIndex("stale").ok());
  cluster.TickAll(5 * kElectionTimeout);
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kLeader) << "still believes it leads";
  EXPECT_TRUE(cluster.read_states(kNode1).empty());
}

// ---------------------------------------------------------------------------------------------
// Membership changes (thesis 4)

// Thesis 4.2.1: new servers join "as non-voting members": the leader replicates entries to
// them, but they are not considered for majorities. A learner never starts an election.
TEST(Membership_4, LearnerReceivesTheLogButNeverCampaigns) {
  TestCluster cluster(3, Config());
  ElectNode1AndAddLearner4(cluster);
  ProposeAndStabilize(cluster, kNode1, {"x"});
  cluster.Tick(kNode1);
  for (NodeId id : {kNode1, kNode2, kNode3, kNode4}) {
    EXPECT_EQ(cluster.node(id).membership(), (Membership{kThreeVoters, {kNode4}}));
  }
  EXPECT_EQ(cluster.applied(kNode4), (std::vector<std::string>{"x"}));

  cluster.Isolate(kNode4);
  cluster.Tick(kNode4, 5 * kElectionTimeout);
  EXPECT_EQ(cluster.node(kNode4).role(), Role::kFollower);
  EXPECT_EQ(cluster.node(kNode4).term(), Term(1));
  EXPECT_EQ(cluster.node(kNode4).Campaign().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Membership_4, LearnerDoesNotCountTowardCommitQuorum) {
  TestCluster cluster(3, Config());
  ElectNode1AndAddLearner4(cluster);
  cluster.Cut(kNode1, kNode2);
  cluster.Cut(kNode1, kNode3);
  const Index committed = cluster.node(kNode1).log().committed();
  ProposeAndStabilize(cluster, kNode1, {"y"});
  EXPECT_EQ(cluster.node(kNode1).progress().at(kNode4).match(),
            cluster.node(kNode1).log().last_index())
      << "the learner has the entry";
  EXPECT_EQ(cluster.node(kNode1).log().committed(), committed)
      << "but the leader alone is no quorum";
}

TEST(Membership_4, LearnerIsNotAskedForVotesAndItsVoteDoesNotCount) {
  PersistentState state = StateWithLog(kThreeVoters, {}, Term(0));
  state.snapshot.meta.membership.learners = {kNode4};
  std::unique_ptr<Raft> candidate = NewRaft(kNode2, state, PaperConfig());
  ASSERT_TRUE(candidate->Campaign().ok());
  std::set<NodeId> asked;
  for (const Message& request : OfType(TakeMessages(*candidate), MessageType::kRequestVote)) {
    asked.insert(request.to);
  }
  EXPECT_EQ(asked, (std::set<NodeId>{kNode1, kNode3}));
  ASSERT_TRUE(candidate->Step(GrantedVote(kNode4, kNode2, Term(1))).ok());
  EXPECT_EQ(candidate->role(), Role::kCandidate);
  ASSERT_TRUE(candidate->Step(GrantedVote(kNode3, kNode2, Term(1))).ok());
  EXPECT_EQ(candidate->role(), Role::kLeader);
}

// Thesis 4.2.1: a server is given a vote only once it has caught up, so that it does not stall
// commitment while it copies the log.
TEST(Membership_4, LearnerIsPromotedOnlyOnceCaughtUp) {
  Config config;
  config.learner_promotion_lag_max = 2;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  cluster.AddNode(kNode4);
  cluster.Cut(kNode1, kNode4);
  ChangeMembership(cluster, kNode1, ConfChangeType::kAddLearner, kNode4);
  ProposeAndStabilize(cluster, kNode1, {"a", "b", "c", "d", "e"});
  const Result<LogPosition> refused =
      cluster.node(kNode1).ProposeConfChange({ConfChangeType::kPromoteLearner, kNode4});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);

  cluster.Heal();
  cluster.Tick(kNode1);
  ChangeMembership(cluster, kNode1, ConfChangeType::kPromoteLearner, kNode4);
  for (NodeId id : {kNode1, kNode4}) {
    EXPECT_EQ(cluster.node(id).membership(), (Membership{{kNode1, kNode2, kNode3, kNode4}, {}}));
  }
}

// Raft 7 with thesis 4.2.1: a server added after the leader compacted its log has to start
// from the leader's snapshot, which also tells it the configuration it is joining.
TEST(Membership_4, NewMemberCatchesUpFromSnapshotWhenLeaderLogIsCompacted) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  ProposeAndStabilize(cluster, kNode1, {"a", "b"});
  cluster.SnapshotAndCompact(kNode1);
  cluster.AddNode(kNode4);
  int snapshots = 0;
  cluster.SetFilter(Counting(MessageType::kInstallSnapshot, kNode1, kNode4, snapshots));
  ChangeMembership(cluster, kNode1, ConfChangeType::kAddLearner, kNode4);
  cluster.Tick(kNode1);
  EXPECT_EQ(snapshots, 1);
  EXPECT_EQ(cluster.applied(kNode4), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cluster.node(kNode4).membership(), (Membership{kThreeVoters, {kNode4}}));
}

// Thesis 4.1: one server added or removed at a time; the quorum follows the configuration.
TEST(Membership_4, AddingVoterGrowsQuorumAndRemovingOneShrinksIt) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.AddNode(kNode4);
  ChangeMembership(cluster, kNode1, ConfChangeType::kAddVoter, kNode4);
  EXPECT_EQ(cluster.node(kNode4).membership().voters,
            (std::vector<NodeId>{kNode1, kNode2, kNode3, kNode4}));
  cluster.Cut(kNode1, kNode3);
  cluster.Cut(kNode1, kNode4);
  const Index before = cluster.node(kNode1).log().committed();
  ProposeAndStabilize(cluster, kNode1, {"p"});
  EXPECT_EQ(cluster.node(kNode1).log().committed(), before) << "two of four are no quorum";
  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.node(kNode1).log().committed(), cluster.node(kNode1).log().last_index());

  ChangeMembership(cluster, kNode1, ConfChangeType::kRemoveNode, kNode4);
  EXPECT_EQ(cluster.node(kNode1).membership().voters, kThreeVoters);
  cluster.Cut(kNode1, kNode3);
  ProposeAndStabilize(cluster, kNode1, {"q"});
  EXPECT_EQ(cluster.node(kNode1).log().committed(), cluster.node(kNode1).log().last_index())
      << "two of three are a quorum again";
}

// Thesis 4.1: the leader begins the next configuration change only once the previous one has
// been committed.
TEST(Membership_4, OneConfigurationChangeAtATime) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode1);
  Raft& leader = cluster.node(kNode1);
  ASSERT_TRUE(leader.ProposeConfChange({ConfChangeType::kAddLearner, kNode4}).ok());
  const Result<LogPosition> second =
      leader.ProposeConfChange({ConfChangeType::kAddLearner, kNode5});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);

  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_TRUE(leader.ProposeConfChange({ConfChangeType::kAddLearner, kNode5}).ok());
}

// The caller's context travels in the configuration entry's data to every member, and an update
// entry (etcd raft's ConfChangeUpdateNode) leaves the configuration as it was. Like any other
// change it waits for the previous one to commit, and it names an existing member.
TEST(Membership_4, ChangeContextReachesEveryLogAndUpdateKeepsTheConfiguration) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  Raft& leader = cluster.node(kNode1);
  const Membership before = leader.membership();
  EXPECT_EQ(leader.ProposeConfChange({ConfChangeType::kUpdateNode, kNode4, "x"}).status().code(),
            absl::StatusCode::kNotFound);
  const Result<LogPosition> update =
      leader.ProposeConfChange({ConfChangeType::kUpdateNode, kNode2, "node 2 moved"});
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(leader.ProposeConfChange({ConfChangeType::kUpdateNode, kNode3, "y"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  cluster.Stabilize();
  for (NodeId id : {kNode1, kNode2, kNode3}) {
    const Entry& entry = cluster.node(id).log().At(update->index);
    EXPECT_EQ(entry.type, EntryType::kConfig);
    EXPECT_EQ(entry.data, "node 2 moved");
    EXPECT_EQ(entry.membership, before);
    EXPECT_EQ(cluster.node(id).membership(), before);
    EXPECT_GE(cluster.node(id).log().committed(), update->index);
  }
  EXPECT_TRUE(leader.ProposeConfChange({ConfChangeType::kUpdateNode, kNode3, "y"}).ok());
}

// Thesis 4.1: "a server always uses the latest configuration in its log, regardless of whether
// the entry is committed" ... "a log entry for a configuration change can be removed (if
// leadership changes); in this case, a server must be prepared to fall back to the previous
// configuration in its log."
TEST(Membership_4, ConfigurationTakesEffectOnAppendAndRevertsWhenTruncated) {
  const std::vector<NodeId> five = {kNode1, kNode2, kNode3, kNode4, kNode5};
  std::map<NodeId, PersistentState> states;
  for (NodeId id : five) states[id] = StateWithLog(five, {}, Term(0));
  TestCluster cluster(std::move(states), PaperConfig());
  cluster.Campaign(kNode1);
  // The configuration entry reaches node 2 only.
  cluster.SetFilter([](Message& message) {
    return message.from != kNode1 || message.to == kNode2 ||
           message.type != MessageType::kAppendEntries;
  });
  const Result<LogPosition> change =
      cluster.node(kNode1).ProposeConfChange({ConfChangeType::kRemoveNode, kNode5});
  ASSERT_TRUE(change.ok()) << change.status();
  const std::vector<NodeId> without5 = {kNode1, kNode2, kNode3, kNode4};
  EXPECT_EQ(cluster.node(kNode1).membership().voters, without5);
  EXPECT_FALSE(cluster.node(kNode1).progress().contains(kNode5));
  cluster.Stabilize();
  EXPECT_EQ(cluster.node(kNode2).membership().voters, without5);
  EXPECT_LT(cluster.node(kNode2).log().committed(), change->index);

  // Node 3 wins term 2 with the votes of nodes 4 and 5 and overwrites the entry on node 2.
  cluster.Heal();
  cluster.Isolate(kNode1);
  cluster.Campaign(kNode3);
  ASSERT_EQ(cluster.leader(), kNode3);
  EXPECT_EQ(cluster.node(kNode2).log().TermAt(change->index), Term(2));
  EXPECT_EQ(cluster.node(kNode2).membership().voters, five);
}

// Thesis 4.2.2: a leader removed from the configuration "steps down ... once the Cnew entry is
// committed"; until then it manages a cluster it is not part of. It hands over with TimeoutNow
// (3.10) so that nobody waits for an election timeout.
TEST(Membership_4, RemovedLeaderStepsDownOnceRemovalCommitsAndHandsOver) {
  TestCluster cluster(3, Config());
  cluster.Campaign(kNode1);
  int timeout_now = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.type == MessageType::kTimeoutNow && message.from == kNode1) ++timeout_now;
    return true;
  });
  const Result<LogPosition> removal =
      cluster.node(kNode1).ProposeConfChange({ConfChangeType::kRemoveNode, kNode1});
  ASSERT_TRUE(removal.ok()) << removal.status();
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kLeader) << "leads until the removal commits";
  EXPECT_FALSE(cluster.node(kNode1).membership().IsMember(kNode1));

  cluster.Stabilize();
  EXPECT_EQ(cluster.node(kNode1).role(), Role::kFollower);
  EXPECT_GE(cluster.node(kNode1).log().committed(), removal->index);
  EXPECT_EQ(timeout_now, 1);
  const NodeId successor = cluster.leader();
  ASSERT_TRUE(successor == kNode2 || successor == kNode3) << successor.value();
  EXPECT_EQ(cluster.node(successor).term(), Term(2));
  ProposeAndStabilize(cluster, successor, {"after"});
  EXPECT_EQ(cluster.applied(successor), (std::vector<std::string>{"after"}));
}

// Thesis 4.2.2: "a server that is not part of its own latest configuration should still start
// new elections, as it might still be needed until the Cnew entry is committed ... It does not
// count its own vote in elections unless it is part of the latest configuration." Here the
// leader of {1, 2} removes itself, but the entry reaches no one before it steps down. Node 2
// still uses {1, 2} and needs node 1's vote, which node 1 refuses (its log is longer); only
// node 1 can move on, by campaigning in {2}.
TEST(Membership_4, ServerRemovedByUncommittedEntryStillCampaigns) {
  TestCluster cluster(2, Config());
  cluster.Campaign(kNode1);
  cluster.Cut(kNode1, kNode2);
  ChangeMembership(cluster, kNode1, ConfChangeType::kRemoveNode, kNode1);
  cluster.Tick(kNode1, kElectionTimeout);  // Check-quorum: node 1 hears from no voter of {2}.
  ASSERT_EQ(cluster.node(kNode1).role(), Role::kFollower);
  ASSERT_EQ(cluster.node(kNode2).membership().voters, (std::vector<NodeId>{kNode1, kNode2}));

  cluster.Heal();
  cluster.TickAll(10 * kElectionTimeout);
  EXPECT_EQ(cluster.leader(), kNode2);
  EXPECT_EQ(cluster.node(kNode2).membership().voters, (std::vector<NodeId>{kNode2}));
}

// ---------------------------------------------------------------------------------------------
// Client requests without a leader

TEST(Proposals, RefusedWithoutLeaderWithMessageNamingTheLeader) {
  TestCluster cluster(3, Config());
  Result<LogPosition> proposal = cluster.node(kNode1).Propose("x");
  EXPECT_EQ(proposal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(proposal.status().message(), "no leader");
  EXPECT_EQ(
      cluster.node(kNode1).ProposeConfChange({ConfChangeType::kAddLearner, kNode4}).status().code(),
      absl::StatusCode::kFailedPrecondition);

  cluster.Campaign(kNode1);
  proposal = cluster.node(kNode2).Propose("x");
  EXPECT_EQ(proposal.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(proposal.status().message().find("leader is node 1"), std::string_view::npos)
      << proposal.status();
  EXPECT_EQ(cluster.node(kNode2).TransferLeadership(kNode3).code(),
            absl::StatusCode::kFailedPrecondition);
}

// raft.h, LogPosition: a proposal "is committed if an entry with the same index and term is
// later applied; a different term at that index means it was lost in a leader change".
TEST(Proposals, ProposalLostInLeaderChangeShowsAsDifferentTermAtItsIndex) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  const Result<LogPosition> lost = cluster.node(kNode1).Propose("lost");
  ASSERT_TRUE(lost.ok()) << lost.status();
  cluster.Crash(kNode1);  // Before the entry was persisted or sent.
  cluster.Restart(kNode1);
  cluster.Campaign(kNode2);
  ProposeAndStabilize(cluster, kNode2, {"kept"});
  for (NodeId id : kThreeVoters) {
    EXPECT_NE(cluster.node(id).log().TermAt(lost->index), lost->term);
    EXPECT_EQ(cluster.applied(id), (std::vector<std::string>{"kept"})) << "node " << id.value();
  }
}

// ---------------------------------------------------------------------------------------------
// Limits (TigerBeetle: put a limit on everything; refuse rather than grow without bound)

TEST(Limits, ProposalsRefusedWhileTooManyEntriesAreUncommitted) {
  Config config;
  config.uncommitted_entries_max = 3;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode1);
  Raft& leader = cluster.node(kNode1);
  for (const char* command : {"a", "b", "c"}) ASSERT_TRUE(leader.Propose(command).ok());
  EXPECT_EQ(leader.Propose("d").status().code(), absl::StatusCode::kResourceExhausted);

  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_TRUE(leader.Propose("d").ok());
}

TEST(Limits, ReadsRefusedWhileTooManyArePending) {
  Config config;
  config.pending_reads_max = 2;
  TestCluster cluster(3, config);
  cluster.Campaign(kNode1);
  cluster.Isolate(kNode1);
  Raft& leader = cluster.node(kNode1);
  ASSERT_TRUE(leader.ReadIndex("a").ok());
  ASSERT_TRUE(leader.ReadIndex("b").ok());
  EXPECT_EQ(leader.ReadIndex("c").code(), absl::StatusCode::kResourceExhausted);

  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.read_states(kNode1).size(), 2u);
  EXPECT_TRUE(leader.ReadIndex("c").ok());
}

// ---------------------------------------------------------------------------------------------
// The Ready contract (types.h)

// Raft figure 2: votedFor is persistent state, "updated on stable storage before responding to
// RPCs"; the vote and the response granting it leave in one Ready, the response among the
// messages sent only after persisting.
TEST(ReadyContract, VoteIsPersistedInTheReadyThatCarriesTheVoteResponse) {
  std::unique_ptr<Raft> voter =
      NewRaft(kNode2, StateWithLog(kThreeVoters, {}, Term(0)), PaperConfig());
  ASSERT_TRUE(
      voter
          ->Step(Message{
              .type = MessageType::kRequestVote, .from = kNode1, .to = kNode2, .term = Term(1)})
          .ok());
  const Ready ready = voter->TakeReady();
  EXPECT_EQ(ready.hard_state, (HardState{Term(1), kNode1, Index(0)}));
  EXPECT_TRUE(ready.early_messages.empty());
  const std::vector<Message> replies = OfType(ready.messages, MessageType::kRequestVoteResponse);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_FALSE(replies[0].reject);
}

// An acknowledgement promises the entries are durable, so it leaves with the Ready that
// persists them, after the write.
TEST(ReadyContract, FollowerAcknowledgesEntriesOnlyAfterPersistingThem) {
  std::unique_ptr<Raft> follower =
      NewRaft(kNode2, StateWithLog(kThreeVoters, {}, Term(1)), PaperConfig());
  ASSERT_TRUE(follower
                  ->Step(Message{.type = MessageType::kAppendEntries,
                                 .from = kNode1,
                                 .to = kNode2,
                                 .term = Term(1),
                                 .entries = EntriesWithTerms(Index(1), {1, 1})})
                  .ok());
  const Ready ready = follower->TakeReady();
  EXPECT_EQ(ready.entries, EntriesWithTerms(Index(1), {1, 1}));
  EXPECT_TRUE(ready.early_messages.empty());
  const std::vector<Message> acks = OfType(ready.messages, MessageType::kAppendEntriesResponse);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].index, Index(2));
}

// Thesis 10.2.1: the leader may send AppendEntries before its own write finishes, but only in
// a term that is durable: otherwise it could, after a crash, forget a term it led in.
TEST(ReadyContract, LeaderAppendEntriesAreEarlyOnlyOnceItsTermIsDurable) {
  std::unique_ptr<Raft> leader =
      NewRaft(kNode1, StateWithLog(kThreeVoters, {}, Term(0)), PaperConfig());
  ASSERT_TRUE(leader->Campaign().ok());
  // The vote arrives before the Ready with the new term was even taken.
  ASSERT_TRUE(leader->Step(GrantedVote(kNode2, kNode1, Term(1))).ok());
  ASSERT_EQ(leader->role(), Role::kLeader);
  Ready ready = leader->TakeReady();
  EXPECT_EQ(ready.hard_state->term, Term(1));
  EXPECT_TRUE(ready.early_messages.empty());
  EXPECT_EQ(OfType(ready.messages, MessageType::kAppendEntries).size(), 2u);
  leader->Advance();

  ASSERT_TRUE(leader
                  ->Step(Message{.type = MessageType::kAppendEntriesResponse,
                                 .from = kNode2,
                                 .to = kNode1,
                                 .term = Term(1),
                                 .index = Index(1)})
                  .ok());
  TakeMessages(*leader);
  ASSERT_TRUE(leader->Propose("x").ok());
  ready = leader->TakeReady();
  ASSERT_EQ(ready.entries.size(), 1u);
  const std::vector<Message> early = OfType(ready.early_messages, MessageType::kAppendEntries);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0].to, kNode2);
  EXPECT_EQ(early[0].entries, ready.entries);
  EXPECT_TRUE(OfType(ready.messages, MessageType::kAppendEntries).empty());
}

// Thesis 10.2.1: the leader writes to its disk in parallel with replicating, and counts itself
// toward a majority only once its own write has completed.
TEST(ReadyContract, LeaderCountsItselfTowardCommitOnlyAfterAdvance) {
  std::unique_ptr<Raft> leader =
      NewRaft(kNode1, StateWithLog(kThreeVoters, {}, Term(0)), PaperConfig());
  ElectByHand(*leader, {kNode2});
  auto acknowledge = [&](Index index) {
    ASSERT_TRUE(leader
                    ->Step(Message{.type = MessageType::kAppendEntriesResponse,
                                   .from = kNode2,
                                   .to = kNode1,
                                   .term = Term(1),
                                   .index = index})
                    .ok());
  };
  acknowledge(Index(1));
  TakeMessages(*leader);
  ASSERT_EQ(leader->log().committed(), Index(1));

  ASSERT_TRUE(leader->Propose("x").ok());
  leader->TakeReady();
  acknowledge(Index(2));
  EXPECT_EQ(leader->log().committed(), Index(1)) << "node 2 alone is not a majority of three";
  leader->Advance();
  EXPECT_EQ(leader->log().committed(), Index(2));
}

// ---------------------------------------------------------------------------------------------
// Start-up validation (TigerBeetle: invalid configuration is rejected, never adjusted)

// A way to spoil a valid start-up input, named for the failure message.
struct Breakage {
  std::string name;
  std::function<void(Config&, PersistentState&)> apply;
};

// Create accepts a valid node 1 of a three-node cluster, and refuses it with InvalidArgument once
// any one breakage is applied.
void ExpectCreateRefusesEach(const std::vector<Breakage>& breakages) {
  Config valid_config;
  valid_config.id = kNode1;
  const PersistentState valid_state = StateWithLog(kThreeVoters, {1, 1, 2}, Term(2), Index(2));
  ASSERT_TRUE(Raft::Create(valid_config, valid_state).ok());
  for (const Breakage& breakage : breakages) {
    Config config = valid_config;
    PersistentState state = valid_state;
    breakage.apply(config, state);
    EXPECT_EQ(Raft::Create(config, state).status().code(), absl::StatusCode::kInvalidArgument)
        << breakage.name;
  }
}

// The durable commit index lags (a Ready that only commits persists nothing), so a state
// machine may have applied beyond it; those entries were committed, and the node starts so.
TEST(Create, AppliedBeyondTheDurableCommitIndexRaisesIt) {
  Config config;
  config.id = kNode1;
  PersistentState state = StateWithLog(kThreeVoters, {1, 1, 2}, Term(2), Index(1));
  state.applied = Index(3);
  auto raft = Raft::Create(config, state);
  ASSERT_TRUE(raft.ok()) << raft.status();
  EXPECT_EQ((*raft)->log().committed(), Index(3));
  EXPECT_EQ((*raft)->log().applied(), Index(3));
}

TEST(Create, RejectsInvalidConfigWithInvalidArgument) {
  ExpectCreateRefusesEach({
      {"node id 0", [](Config& c, PersistentState&) { c.id = kNoNode; }},
      {"election timeout of 1 tick",
       [](Config& c, PersistentState&) { c.election_timeout_ticks = 1; }},
      {"heartbeat interval 0", [](Config& c, PersistentState&) { c.heartbeat_interval_ticks = 0; }},
      {"heartbeat not shorter than election timeout",
       [](Config& c, PersistentState&) { c.heartbeat_interval_ticks = c.election_timeout_ticks; }},
      {"no in-flight window", [](Config& c, PersistentState&) { c.inflight_messages_max = 0; }},
      {"empty AppendEntries", [](Config& c, PersistentState&) { c.append_entries_bytes_max = 0; }},
      {"empty apply batch", [](Config& c, PersistentState&) { c.committed_entries_bytes_max = 0; }},
      {"no uncommitted entries",
       [](Config& c, PersistentState&) { c.uncommitted_entries_max = 0; }},
      {"no pending reads", [](Config& c, PersistentState&) { c.pending_reads_max = 0; }},
      {"snapshot retry 0", [](Config& c, PersistentState&) { c.snapshot_retry_ticks = 0; }},
  });
}

TEST(Create, RejectsInconsistentPersistentStateWithInvalidArgument) {
  ExpectCreateRefusesEach({
      {"voters not sorted",
       [](Config&, PersistentState& s) {
         s.snapshot.meta.membership.voters = {kNode2, kNode1};
       }},
      {"voter also a learner",
       [](Config&, PersistentState& s) { s.snapshot.meta.membership.learners = {kNode1}; }},
      {"snapshot term beyond current term",
       [](Config&, PersistentState& s) {
         s.snapshot.meta.term = Term(3);
         s.entries.clear();
         s.hard_state.commit = Index(0);
       }},
      {"log not contiguous",
       [](Config&, PersistentState& s) { s.entries.erase(s.entries.begin()); }},
      {"entry term beyond current term",
       [](Config&, PersistentState& s) { s.hard_state.term = Term(1); }},
      {"entry terms decrease", [](Config&, PersistentState& s) { s.entries[2].term = Term(0); }},
      {"commit beyond last entry",
       [](Config&, PersistentState& s) { s.hard_state.commit = Index(4); }},
      {"applied beyond last entry", [](Config&, PersistentState& s) { s.applied = Index(4); }},
      {"malformed configuration entry",
       [](Config&, PersistentState& s) {
         s.entries[2].type = EntryType::kConfig;
         s.entries[2].membership.voters = {kNode3, kNode3};
       }},
  });
}

// ---------------------------------------------------------------------------------------------
// Restart (Raft figure 2: currentTerm, votedFor and log[] are persistent)

TEST(Restart, VoteIsNotForgotten) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  cluster.Crash(kNode2);
  cluster.Restart(kNode2);
  EXPECT_EQ(cluster.node(kNode2).term(), Term(1));
  EXPECT_EQ(cluster.node(kNode2).voted_for(), kNode1);

  std::optional<bool> granted;
  cluster.SetFilter([&](Message& message) {
    if (message.type == MessageType::kRequestVoteResponse) granted = !message.reject;
    return true;
  });
  ASSERT_TRUE(cluster.node(kNode2)
                  .Step(Message{.type = MessageType::kRequestVote,
                                .from = kNode3,
                                .to = kNode2,
                                .term = Term(1),
                                .log_index = Index(1),
                                .log_term = Term(1)})
                  .ok());
  cluster.Stabilize();
  EXPECT_EQ(granted, false) << "a second vote in term 1";
}

TEST(Restart, LogAndCommitSurviveAndNothingIsAppliedTwice) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  ProposeAndStabilize(cluster, kNode1, {"a", "b"});
  cluster.Tick(kNode1);
  ASSERT_EQ(cluster.applied(kNode2), (std::vector<std::string>{"a", "b"}));
  cluster.Crash(kNode2);
  cluster.Restart(kNode2);
  EXPECT_EQ(cluster.node(kNode2).log().last_index(), Index(3));
  EXPECT_EQ(cluster.node(kNode2).log().committed(), Index(3));
  cluster.Stabilize();
  ProposeAndStabilize(cluster, kNode1, {"c"});
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.applied(kNode2), (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace synod::raft
