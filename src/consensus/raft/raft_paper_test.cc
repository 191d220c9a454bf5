// The Raft paper, section by section (Ongaro and Ousterhout, "In Search of an Understandable
// Consensus Algorithm", extended version): each test checks the sentences it quotes, on Raft as
// the paper describes it (PaperConfig: no pre-vote, no check-quorum). After etcd raft's
// raft_paper_test.go. The thesis extensions are in raft_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "consensus/raft/raft.h"
#include "consensus/raft/test_cluster.h"

namespace synod::raft {
namespace {

const std::vector<NodeId> kThreeVoters = {kNode1, kNode2, kNode3};
const std::vector<NodeId> kFiveVoters = {kNode1, kNode2, kNode3, kNode4, kNode5};

std::unique_ptr<Raft> NewPaperNode(NodeId id, const PersistentState& state) {
  return NewRaft(id, state, PaperConfig());
}

Message AppendEntries(NodeId from, NodeId to, Term term, Index log_index, Term log_term,
                      std::vector<Entry> entries = {}, Index commit = Index(0)) {
  return Message{.type = MessageType::kAppendEntries,
                 .from = from,
                 .to = to,
                 .term = term,
                 .log_index = log_index,
                 .log_term = log_term,
                 .entries = std::move(entries),
                 .commit = commit};
}

Message VoteRequest(NodeId from, NodeId to, Term term, Index last_index, Term last_term) {
  return Message{.type = MessageType::kRequestVote,
                 .from = from,
                 .to = to,
                 .term = term,
                 .log_index = last_index,
                 .log_term = last_term};
}

Message InstallSnapshot(NodeId from, NodeId to, Term term, Snapshot snapshot) {
  return Message{.type = MessageType::kInstallSnapshot,
                 .from = from,
                 .to = to,
                 .term = term,
                 .snapshot = snapshot};
}

// The single reply a hand-driven node sent, checked to be of `type`.
Message OnlyReply(Raft& raft, MessageType type) {
  std::vector<Message> messages = TakeMessages(raft);
  EXPECT_EQ(messages.size(), 1u);
  if (messages.empty()) return Message{};
  EXPECT_EQ(messages[0].type, type);
  return messages[0];
}

// Node 1 of a new three-node cluster, in `role` in term 1 (a follower stays in term 0).
std::unique_ptr<Raft> NodeInRole(Role role) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {}, Term(0)));
  if (role == Role::kCandidate) {
    EXPECT_TRUE(raft->Campaign().ok());
    TakeMessages(*raft);
  } else if (role == Role::kLeader) {
    ElectByHand(*raft, {kNode2});
  }
  EXPECT_EQ(raft->role(), role);
  return raft;
}

// Ticks a node until it starts an election (its term rises); returns how many ticks that took
// (0 if it did not within `ticks_max`).
uint32_t TicksUntilElection(Raft& raft, uint32_t ticks_max) {
  const Term start = raft.term();
  for (uint32_t ticks = 1; ticks <= ticks_max; ++ticks) {
    raft.Tick();
    if (raft.term() > start) return ticks;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// 5.1 Raft basics

// "Current terms are exchanged whenever servers communicate; if one server's current term is
// smaller than the other's, then it updates its current term to the larger value. If a
// candidate or leader discovers that its term is out of date, it immediately reverts to
// follower state."
TEST(RaftPaper_5_1, ServerWithSmallerTermAdoptsLargerTermAndBecomesFollower) {
  const std::vector<Message> messages = {
      AppendEntries(kNode2, kNode1, Term(2), Index(0), Term(0)),
      VoteRequest(kNode2, kNode1, Term(2), Index(5), Term(1)),
      Message{.type = MessageType::kAppendEntriesResponse,
              .from = kNode2,
              .to = kNode1,
              .term = Term(2),
              .reject = true},
  };
  for (Role role : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    for (const Message& message : messages) {
      SCOPED_TRACE(fmt::format("{} receives {}", ToString(role), ToString(message.type)));
      std::unique_ptr<Raft> raft = NodeInRole(role);
      ASSERT_TRUE(raft->Step(message).ok());
      EXPECT_EQ(raft->term(), Term(2));
      EXPECT_EQ(raft->role(), Role::kFollower);
    }
  }
}

// "If a server receives a request with a stale term number, it rejects the request."
TEST(RaftPaper_5_1, ServerRejectsRequestWithStaleTerm) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {1, 2}, Term(2)));

  // Accepted, this would replace entry 2 of term 2.
  ASSERT_TRUE(raft->Step(AppendEntries(kNode2, kNode1, Term(1), Index(1), Term(1),
                                       EntriesWithTerms(Index(2), {1})))
                  .ok());
  const Message reply = OnlyReply(*raft, MessageType::kAppendEntriesResponse);
  EXPECT_TRUE(reply.reject);
  EXPECT_EQ(reply.term, Term(2)) << "the reply tells the stale leader the current term";
  EXPECT_EQ(LogTerms(raft->log()), (std::vector<uint64_t>{1, 2}));

  ASSERT_TRUE(raft->Step(VoteRequest(kNode3, kNode1, Term(1), Index(5), Term(2))).ok());
  for (const Message& message : TakeMessages(*raft)) {
    EXPECT_TRUE(message.type != MessageType::kRequestVoteResponse || message.reject);
  }
  EXPECT_EQ(raft->voted_for(), kNoNode);
}

// ---------------------------------------------------------------------------------------------
// 5.2 Leader election

// "When servers start up, they begin as followers."
TEST(RaftPaper_5_2, ServersStartAsFollowers) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {}, Term(0)));
  EXPECT_EQ(raft->role(), Role::kFollower);
  EXPECT_EQ(raft->term(), Term(0));
  EXPECT_EQ(raft->leader(), kNoNode);
}

// "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all
// followers in order to maintain their authority." Synod's heartbeat is a message of its own
// (kHeartbeat) that carries no entries.
TEST(RaftPaper_5_2, LeaderSendsHeartbeatsToAllFollowers) {
  std::unique_ptr<Raft> leader = NodeInRole(Role::kLeader);
  for (uint32_t i = 0; i < PaperConfig().heartbeat_interval_ticks; ++i) leader->Tick();
  const std::vector<Message> heartbeats = OfType(TakeMessages(*leader), MessageType::kHeartbeat);
  std::set<NodeId> receivers;
  for (const Message& heartbeat : heartbeats) {
    receivers.insert(heartbeat.to);
    EXPECT_EQ(heartbeat.term, leader->term());
    EXPECT_TRUE(heartbeat.entries.empty());
  }
  EXPECT_EQ(receivers, (std::set<NodeId>{kNode2, kNode3}));
}

// "If a follower receives no communication over a period of time called the election timeout,
// then it assumes there is no viable leader and begins an election to choose a new leader."
TEST(RaftPaper_5_2, FollowerStartsElectionAfterElectionTimeout) {
  const uint32_t timeout = PaperConfig().election_timeout_ticks;
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {}, Term(0)));
  const uint32_t ticks = TicksUntilElection(*raft, 2 * timeout);
  EXPECT_GE(ticks, timeout) << "not before the election timeout";
  EXPECT_LT(ticks, 2 * timeout) << "within the randomized election timeout";
}

// "A server remains in follower state as long as it receives valid RPCs from a leader or
// candidate." The leader sends heartbeats "to establish its authority and prevent new
// elections": while they flow, nobody starts an election.
TEST(RaftPaper_5_2, HeartbeatsPreventNewElections) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  cluster.TickAll(10 * PaperConfig().election_timeout_ticks);
  EXPECT_EQ(cluster.leader(), kNode1);
  for (NodeId id : kThreeVoters) EXPECT_EQ(cluster.node(id).term(), Term(1));
}

// "To begin an election, a follower increments its current term and transitions to candidate
// state. It then votes for itself and issues RequestVote RPCs in parallel to each of the other
// servers in the cluster."
TEST(RaftPaper_5_2, ElectionIncrementsTermVotesForSelfAndRequestsVotesFromAll) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kFiveVoters, {1, 1}, Term(1)));
  ASSERT_GT(TicksUntilElection(*raft, 2 * PaperConfig().election_timeout_ticks), 0u);
  EXPECT_EQ(raft->term(), Term(2));
  EXPECT_EQ(raft->voted_for(), kNode1);

  Ready ready = raft->TakeReady();
  // Figure 2: the term and the vote are persistent, made durable before the requests go out.
  EXPECT_EQ(ready.hard_state, (HardState{Term(2), kNode1, Index(0)}));
  EXPECT_TRUE(ready.early_messages.empty());
  std::set<NodeId> asked;
  for (const Message& request : OfType(ready.messages, MessageType::kRequestVote)) {
    asked.insert(request.to);
    EXPECT_EQ(request.term, Term(2));
    EXPECT_EQ(request.log_index, Index(2));
    EXPECT_EQ(request.log_term, Term(1));
  }
  EXPECT_EQ(asked, (std::set<NodeId>{kNode2, kNode3, kNode4, kNode5}));
}

// "A candidate wins an election if it receives votes from a majority of the servers in the full
// cluster for the same term." Otherwise it stays a candidate; once a majority has refused, it
// cannot win this term and goes back to follower (as etcd raft does).
TEST(RaftPaper_5_2, CandidateWinsWithVotesFromMajority) {
  struct Case {
    size_t cluster_size;
    std::vector<NodeId> granted;
    std::vector<NodeId> refused;
    Role expected;
  };
  const std::vector<Case> cases = {
      {1, {}, {}, Role::kLeader},
      {3, {kNode2}, {}, Role::kLeader},
      {3, {}, {kNode2}, Role::kCandidate},
      {3, {}, {kNode2, kNode3}, Role::kFollower},
      {5, {kNode2}, {}, Role::kCandidate},
      {5, {kNode2, kNode3}, {}, Role::kLeader},
      {5, {kNode2}, {kNode3, kNode4}, Role::kCandidate},
      {5, {kNode2}, {kNode3, kNode4, kNode5}, Role::kFollower},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} nodes, {} granted, {} refused", c.cluster_size, c.granted.size(),
                             c.refused.size()));
    const std::vector<NodeId> voters(kFiveVoters.begin(), kFiveVoters.begin() + c.cluster_size);
    std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(voters, {}, Term(0)));
    ASSERT_TRUE(raft->Campaign().ok());
    for (NodeId voter : c.granted) {
      ASSERT_TRUE(raft->Step(Message{.type = MessageType::kRequestVoteResponse,
                                     .from = voter,
                                     .to = kNode1,
                                     .term = Term(1)})
                      .ok());
    }
    for (NodeId voter : c.refused) {
      ASSERT_TRUE(raft->Step(Message{.type = MessageType::kRequestVoteResponse,
                                     .from = voter,
                                     .to = kNode1,
                                     .term = Term(1),
                                     .reject = true})
                      .ok());
    }
    EXPECT_EQ(raft->role(), c.expected);
    EXPECT_EQ(raft->term(), Term(1));
  }
}

// "Each server will vote for at most one candidate in a given term, on a first-come-first-served
// basis." Repeating the vote to the same candidate is harmless (its reply may have been lost).
TEST(RaftPaper_5_2, ServerVotesForAtMostOneCandidatePerTerm) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {}, Term(0)));
  struct Request {
    NodeId candidate;
    bool granted;
  };
  for (const Request& request :
       {Request{kNode2, true}, Request{kNode3, false}, Request{kNode2, true}}) {
    ASSERT_TRUE(
        raft->Step(VoteRequest(request.candidate, kNode1, Term(1), Index(0), Term(0))).ok());
    const Message reply = OnlyReply(*raft, MessageType::kRequestVoteResponse);
    EXPECT_EQ(reply.to, request.candidate);
    EXPECT_EQ(!reply.reject, request.granted) << "candidate " << request.candidate.value();
  }
  EXPECT_EQ(raft->voted_for(), kNode2);
}

// "Once a candidate wins an election, it becomes leader. It then sends heartbeat messages to
// all of the other servers to establish its authority". Its first message is an AppendEntries
// carrying the no-op entry of its term (section 8).
TEST(RaftPaper_5_2, NewLeaderSendsAppendEntriesToAllServers) {
  std::unique_ptr<Raft> raft = NodeInRole(Role::kCandidate);
  ASSERT_TRUE(raft->Step(Message{.type = MessageType::kRequestVoteResponse,
                                 .from = kNode3,
                                 .to = kNode1,
                                 .term = Term(1)})
                  .ok());
  ASSERT_EQ(raft->role(), Role::kLeader);
  std::set<NodeId> receivers;
  for (const Message& append : OfType(TakeMessages(*raft), MessageType::kAppendEntries)) {
    receivers.insert(append.to);
    EXPECT_EQ(append.term, Term(1));
  }
  EXPECT_EQ(receivers, (std::set<NodeId>{kNode2, kNode3}));
}

// "While waiting for votes, a candidate may receive an AppendEntries RPC from another server
// claiming to be leader. If the leader's term (included in its RPC) is at least as large as the
// candidate's current term, then the candidate recognizes the leader as legitimate and returns
// to follower state."
TEST(RaftPaper_5_2, CandidateReturnsToFollowerOnAppendEntriesOfLegitimateLeader) {
  for (Term leader_term : {Term(1), Term(2)}) {
    std::unique_ptr<Raft> raft = NodeInRole(Role::kCandidate);
    ASSERT_TRUE(raft->Step(AppendEntries(kNode2, kNode1, leader_term, Index(0), Term(0))).ok());
    EXPECT_EQ(raft->role(), Role::kFollower);
    EXPECT_EQ(raft->leader(), kNode2);
    EXPECT_EQ(raft->term(), leader_term);
  }
}

// "If the term in the RPC is smaller than the candidate's current term, then the candidate
// rejects the RPC and continues in candidate state."
TEST(RaftPaper_5_2, CandidateRejectsAppendEntriesWithSmallerTerm) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {}, Term(1)));
  ASSERT_TRUE(raft->Campaign().ok());
  TakeMessages(*raft);
  ASSERT_TRUE(raft->Step(AppendEntries(kNode2, kNode1, Term(1), Index(0), Term(0))).ok());
  EXPECT_TRUE(OnlyReply(*raft, MessageType::kAppendEntriesResponse).reject);
  EXPECT_EQ(raft->role(), Role::kCandidate);
  EXPECT_EQ(raft->term(), Term(2));
}

// "The third possible outcome is that a candidate neither wins nor loses the election ... When
// this happens, each candidate will time out and start a new election by incrementing its term
// and initiating another round of RequestVote RPCs."
TEST(RaftPaper_5_2, CandidateWithoutWinnerStartsNewElectionAfterTimeout) {
  std::unique_ptr<Raft> raft = NodeInRole(Role::kCandidate);
  ASSERT_GT(TicksUntilElection(*raft, 2 * PaperConfig().election_timeout_ticks), 0u);
  EXPECT_EQ(raft->term(), Term(2));
  std::set<NodeId> asked;
  for (const Message& request : OfType(TakeMessages(*raft), MessageType::kRequestVote)) {
    EXPECT_EQ(request.term, Term(2));
    asked.insert(request.to);
  }
  EXPECT_EQ(asked, (std::set<NodeId>{kNode2, kNode3}));
}

// "Raft uses randomized election timeouts to ensure that split votes are rare ... election
// timeouts are chosen randomly from a fixed interval (e.g., 150-300ms)." Here the interval is
// [election_timeout_ticks, 2 * election_timeout_ticks), drawn from the seeded generator.
TEST(RaftPaper_5_2, ElectionTimeoutsAreRandomizedWithinFixedInterval) {
  const uint32_t timeout = PaperConfig().election_timeout_ticks;
  std::set<uint32_t> timeouts;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    Config config = PaperConfig();
    config.seed = seed;
    std::unique_ptr<Raft> raft = NewRaft(kNode1, StateWithLog(kThreeVoters, {}, Term(0)), config);
    const uint32_t ticks = TicksUntilElection(*raft, 2 * timeout);
    EXPECT_GE(ticks, timeout);
    EXPECT_LT(ticks, 2 * timeout);
    timeouts.insert(ticks);
  }
  EXPECT_GE(timeouts.size(), timeout / 2) << "the timeouts spread over the interval";
}

// "Election Safety: at most one leader can be elected in a given term" (figure 3), and split
// votes resolve: whatever the seed, a cluster of five that starts together elects one leader.
TEST(RaftPaper_5_2, SplitVotesResolveAndEachTermHasAtMostOneLeader) {
  const uint32_t timeout = PaperConfig().election_timeout_ticks;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    Config config = PaperConfig();
    config.seed = seed * 100;
    TestCluster cluster(5, config);
    for (uint32_t tick = 0; tick < 20 * timeout && cluster.leader() == kNoNode; ++tick) {
      cluster.TickAll();
      std::set<Term> leader_terms;
      for (NodeId id : kFiveVoters) {
        if (cluster.node(id).role() != Role::kLeader) continue;
        EXPECT_TRUE(leader_terms.insert(cluster.node(id).term()).second)
            << "two leaders in term " << cluster.node(id).term().value();
      }
    }
    EXPECT_NE(cluster.leader(), kNoNode);
  }
}

// ---------------------------------------------------------------------------------------------
// 5.3 Log replication

// "The leader appends the command to its log as a new entry, then issues AppendEntries RPCs in
// parallel to each of the other servers to replicate the entry."
TEST(RaftPaper_5_3, LeaderAppendsCommandAndSendsItToEveryFollower) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  std::set<NodeId> received;
  cluster.SetFilter([&](Message& message) {
    for (const Entry& entry : message.entries) {
      if (entry.data == "x") received.insert(message.to);
    }
    return true;
  });
  Result<LogPosition> position = cluster.node(kNode1).Propose("x");
  ASSERT_TRUE(position.ok()) << position.status();
  EXPECT_EQ(*position, (LogPosition{Index(2), Term(1)}));
  EXPECT_EQ(cluster.node(kNode1).log().At(Index(2)).data, "x");
  cluster.Stabilize();
  EXPECT_EQ(received, (std::set<NodeId>{kNode2, kNode3}));
}

// "A log entry is committed once the leader that created the entry has replicated it on a
// majority of the servers".
TEST(RaftPaper_5_3, LeaderCommitsEntryOnceReplicatedOnMajority) {
  TestCluster cluster(5, PaperConfig());
  cluster.Campaign(kNode1);
  Raft& leader = cluster.node(kNode1);
  cluster.Cut(kNode1, kNode4);
  cluster.Cut(kNode1, kNode5);
  ASSERT_TRUE(leader.Propose("a").ok());
  cluster.Stabilize();
  EXPECT_EQ(leader.log().committed(), Index(2)) << "three of five hold it";

  cluster.Cut(kNode1, kNode3);
  ASSERT_TRUE(leader.Propose("b").ok());
  cluster.Stabilize();
  EXPECT_EQ(leader.log().committed(), Index(2)) << "two of five are not a majority";

  cluster.Heal();
  cluster.Tick(kNode1);
  EXPECT_EQ(leader.log().committed(), Index(3));
}

// "This also commits all preceding entries in the leader's log, including entries created by
// previous leaders."
TEST(RaftPaper_5_3, CommittingAnEntryCommitsAllPrecedingEntries) {
  TestCluster cluster({{kNode1, StateWithLog(kThreeVoters, {1, 1, 2}, Term(2), Index(1))},
                       {kNode2, StateWithLog(kThreeVoters, {1, 1}, Term(2), Index(1))},
                       {kNode3, StateWithLog(kThreeVoters, {1, 1}, Term(2), Index(1))}},
                      PaperConfig());
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.leader(), kNode1);
  EXPECT_EQ(cluster.node(kNode1).log().committed(), Index(4)) << "the no-op of term 3";
  cluster.Tick(kNode1);  // A heartbeat tells every follower the commit index.
  const std::vector<std::string> expected = {"1/1", "1/2", "2/3"};
  for (NodeId id : kThreeVoters) EXPECT_EQ(cluster.applied(id), expected) << "node " << id.value();
}

// "The leader keeps track of the highest index it knows to be committed, and it includes that
// index in future AppendEntries RPCs (including heartbeats) so that the other servers
// eventually find out. Once a follower learns that a log entry is committed, it applies the
// entry to its local state machine (in log order)."
TEST(RaftPaper_5_3, FollowersLearnCommitIndexFromLaterAppendEntriesAndHeartbeats) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  // Without the empty AppendEntries a leader sends when its commit index moves, followers learn
  // it only from the next entries or the next heartbeat.
  cluster.SetFilter([](Message& message) {
    return message.type != MessageType::kAppendEntries || !message.entries.empty();
  });
  ASSERT_TRUE(cluster.node(kNode1).Propose("a").ok());
  cluster.Stabilize();
  ASSERT_TRUE(cluster.node(kNode1).Propose("b").ok());
  cluster.Stabilize();
  EXPECT_EQ(cluster.applied(kNode1), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cluster.applied(kNode2), (std::vector<std::string>{"a"})) << "from b's AppendEntries";

  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.applied(kNode2), (std::vector<std::string>{"a", "b"})) << "from a heartbeat";
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b"}));
}

// "When sending an AppendEntries RPC, the leader includes the index and term of the entry in its
// log that immediately precedes the new entries. If the follower does not find an entry in its
// log with the same index and term, then it refuses the new entries."
TEST(RaftPaper_5_3, FollowerRefusesEntriesWhosePrecedingEntryDoesNotMatch) {
  struct Case {
    Index log_index;
    Term log_term;
    bool rejected;
  };
  for (const Case& c : {Case{Index(0), Term(0), false}, Case{Index(1), Term(1), false},
                        Case{Index(2), Term(2), false}, Case{Index(2), Term(1), true},
                        Case{Index(1), Term(2), true}, Case{Index(3), Term(2), true}}) {
    SCOPED_TRACE(fmt::format("preceding entry {}/{}", c.log_term, c.log_index));
    std::unique_ptr<Raft> follower =
        NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 2}, Term(2)));
    ASSERT_TRUE(follower
                    ->Step(AppendEntries(kNode1, kNode2, Term(2), c.log_index, c.log_term,
                                         EntriesWithTerms(c.log_index.next(), {2})))
                    .ok());
    EXPECT_EQ(OnlyReply(*follower, MessageType::kAppendEntriesResponse).reject, c.rejected);
    EXPECT_EQ(follower->log().last_index(), c.rejected ? Index(2) : c.log_index.next());
  }
}

// Figure 2, AppendEntries receiver: "If an existing entry conflicts with a new one (same index
// but different terms), delete the existing entry and all that follow it. Append any new
// entries not already in the log."
TEST(RaftPaper_5_3, FollowerDeletesConflictingEntriesAndAppendsNewOnes) {
  struct Case {
    Index log_index;
    Term log_term;
    std::vector<Entry> entries;
    std::vector<uint64_t> expected_terms;
  };
  const std::vector<Case> cases = {
      {Index(2), Term(2), EntriesWithTerms(Index(3), {3}), {1, 2, 3}},
      {Index(1), Term(1), EntriesWithTerms(Index(2), {3, 4}), {1, 3, 4}},
      {Index(0), Term(0), EntriesWithTerms(Index(1), {1}), {1, 2}},
      {Index(0), Term(0), EntriesWithTerms(Index(1), {3}), {3}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("after {}/{}", c.log_term, c.log_index));
    std::unique_ptr<Raft> follower =
        NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 2}, Term(2)));
    ASSERT_TRUE(
        follower->Step(AppendEntries(kNode1, kNode2, Term(4), c.log_index, c.log_term, c.entries))
            .ok());
    EXPECT_EQ(LogTerms(follower->log()), c.expected_terms);
  }
}

// Figure 2, AppendEntries receiver: "If leaderCommit > commitIndex, set commitIndex =
// min(leaderCommit, index of last new entry)". Entries past the last new one are not yet known
// to match the leader's.
TEST(RaftPaper_5_3, FollowerCommitsUpToLeaderCommitButNotPastLastNewEntry) {
  struct Case {
    Index log_index;
    std::vector<Entry> entries;
    Index leader_commit;
    Index expected_commit;
  };
  const std::vector<Case> cases = {
      {Index(1), EntriesWithTerms(Index(2), {1}), Index(4), Index(2)},
      {Index(3), {}, Index(4), Index(3)},
      {Index(3), {}, Index(1), Index(1)},
  };
  for (const Case& c : cases) {
    std::unique_ptr<Raft> follower =
        NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 1, 1, 1}, Term(1)));
    ASSERT_TRUE(follower
                    ->Step(AppendEntries(kNode1, kNode2, Term(1), c.log_index, Term(1), c.entries,
                                         c.leader_commit))
                    .ok());
    EXPECT_EQ(follower->log().committed(), c.expected_commit);
  }
}

// "When a leader first comes to power, it initializes all nextIndex values to the index just
// after the last one in its log", so its first AppendEntries checks the follower's log at the
// leader's last entry.
TEST(RaftPaper_5_3, NewLeaderStartsNextIndexJustAfterItsLastEntry) {
  std::unique_ptr<Raft> raft = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {1, 1, 2}, Term(2)));
  ASSERT_TRUE(raft->Campaign().ok());
  TakeMessages(*raft);
  ASSERT_TRUE(raft->Step(Message{.type = MessageType::kRequestVoteResponse,
                                 .from = kNode2,
                                 .to = kNode1,
                                 .term = Term(3)})
                  .ok());
  ASSERT_EQ(raft->role(), Role::kLeader);
  EXPECT_EQ(raft->progress().at(kNode2).next(), Index(4));
  for (const Message& append : OfType(TakeMessages(*raft), MessageType::kAppendEntries)) {
    EXPECT_EQ(append.log_index, Index(3));
    EXPECT_EQ(append.log_term, Term(2));
  }
}

// "In Raft, the leader handles inconsistencies by forcing the followers' logs to duplicate its
// own." "After a rejection, the leader decrements nextIndex and retries the AppendEntries RPC.
// Eventually nextIndex will reach a point where the leader and follower logs match." Figure 7:
// each follower (a)-(f) ends with the leader's log.
TEST(RaftPaper_5_3, LeaderForcesEveryFigure7FollowerLogToDuplicateItsOwn) {
  const std::vector<uint64_t> leader_log = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<uint64_t>> follower_logs = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing an entry
      {1, 1, 1, 4},                          // (b) missing many
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) an extra uncommitted entry
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra entries of a later term
      {1, 1, 1, 4, 4, 4, 4},                 // (e) missing entries, extra ones of term 4
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) a leader of terms 2 and 3 that never committed
  };
  for (const std::vector<uint64_t>& follower_log : follower_logs) {
    SCOPED_TRACE(fmt::format("follower log {}", fmt::join(follower_log, ",")));
    TestCluster cluster({{kNode1, StateWithLog(kThreeVoters, leader_log, Term(8))},
                         {kNode2, StateWithLog(kThreeVoters, follower_log, Term(7))}},
                        PaperConfig());
    // Node 3 (not running) gives node 1 the vote that (c) and (d) would refuse.
    ASSERT_TRUE(cluster.node(kNode1).Campaign().ok());
    ASSERT_TRUE(cluster.node(kNode1)
                    .Step(Message{.type = MessageType::kRequestVoteResponse,
                                  .from = kNode3,
                                  .to = kNode1,
                                  .term = Term(9)})
                    .ok());
    ASSERT_EQ(cluster.node(kNode1).role(), Role::kLeader);
    cluster.Stabilize();
    std::vector<uint64_t> expected = leader_log;
    expected.push_back(9);
    EXPECT_EQ(LogTerms(cluster.node(kNode1).log()), expected);
    EXPECT_EQ(LogTerms(cluster.node(kNode2).log()), expected);
  }
}

// ---------------------------------------------------------------------------------------------
// 5.4.1 Election restriction

// "The RequestVote RPC implements this restriction: the RPC includes information about the
// candidate's log, and the voter denies its vote if its own log is more up-to-date than that of
// the candidate. ... If the logs have last entries with different terms, then the log with the
// later term is more up-to-date. If the logs end with the same term, then whichever log is
// longer is more up-to-date."
TEST(RaftPaper_5_4_1, VoterDeniesVoteToCandidateWithLessUpToDateLog) {
  struct Case {
    Index last_index;
    Term last_term;
    bool granted;
  };
  // The voter's log ends with the entry of term 2 at index 2.
  for (const Case& c : {Case{Index(2), Term(2), true}, Case{Index(3), Term(2), true},
                        Case{Index(1), Term(3), true}, Case{Index(1), Term(2), false},
                        Case{Index(5), Term(1), false}, Case{Index(0), Term(0), false}}) {
    SCOPED_TRACE(fmt::format("candidate's last entry {}/{}", c.last_term, c.last_index));
    std::unique_ptr<Raft> voter = NewPaperNode(kNode1, StateWithLog(kThreeVoters, {1, 2}, Term(2)));
    ASSERT_TRUE(voter->Step(VoteRequest(kNode2, kNode1, Term(3), c.last_index, c.last_term)).ok());
    EXPECT_EQ(!OnlyReply(*voter, MessageType::kRequestVoteResponse).reject, c.granted);
  }
}

// "Raft uses the voting process to prevent a candidate from winning an election unless its log
// contains all committed entries."
TEST(RaftPaper_5_4_1, ServerMissingCommittedEntryCannotBeElected) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  cluster.Cut(kNode1, kNode3);
  ASSERT_TRUE(cluster.node(kNode1).Propose("x").ok());
  cluster.Stabilize();
  ASSERT_EQ(cluster.applied(kNode1), (std::vector<std::string>{"x"}));
  cluster.Crash(kNode1);

  cluster.Campaign(kNode3);
  EXPECT_NE(cluster.node(kNode3).role(), Role::kLeader) << "node 2 refuses: it holds x";
  cluster.Campaign(kNode2);
  EXPECT_EQ(cluster.leader(), kNode2);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"x"}));
}

// ---------------------------------------------------------------------------------------------
// 5.4.2 Committing entries from previous terms

// The logs of figure 8 (b): S1 led term 2 and wrote entry 2 on S2 only; S5 led term 3 (votes of
// S3, S4, S5) and wrote its own entry 2 only locally. S1 has since heard of term 3.
std::map<NodeId, PersistentState> Figure8LogsAtB() {
  std::map<NodeId, PersistentState> states = {
      {kNode1, StateWithLog(kFiveVoters, {1, 2}, Term(3), Index(1))},
      {kNode2, StateWithLog(kFiveVoters, {1, 2}, Term(2), Index(1))},
      {kNode3, StateWithLog(kFiveVoters, {1}, Term(3), Index(1))},
      {kNode4, StateWithLog(kFiveVoters, {1}, Term(3), Index(1))},
      {kNode5, StateWithLog(kFiveVoters, {1, 3}, Term(3), Index(1))},
  };
  for (NodeId voter : {kNode3, kNode4, kNode5}) states[voter].hard_state.voted_for = kNode5;
  return states;
}

bool AnyApplied(const TestCluster& cluster, const std::string& data) {
  for (NodeId id : kFiveVoters) {
    const std::vector<std::string>& applied = cluster.applied(id);
    if (std::find(applied.begin(), applied.end(), data) != applied.end()) return true;
  }
  return false;
}

// "Raft never commits log entries from previous terms by counting replicas. Only log entries
// from the leader's current term are committed by counting replicas". Figure 8 (c): S1, leader
// of term 4, copies entry 2 of term 2 to a majority, yet must not commit it, because in (d) S5
// can still be elected and overwrite it.
TEST(RaftPaper_5_4_2, LeaderDoesNotCommitEntryOfPreviousTermByCountingReplicas_Figure8) {
  TestCluster cluster(Figure8LogsAtB(), PaperConfig());
  cluster.Crash(kNode5);
  // (c): only entry 2 gets through; S1's entry of term 4 stays on S1.
  cluster.SetFilter([](Message& message) {
    std::erase_if(message.entries, [](const Entry& entry) { return entry.index > Index(2); });
    return true;
  });
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.leader(), kNode1);
  ASSERT_EQ(cluster.node(kNode1).term(), Term(4));
  for (NodeId id : {kNode2, kNode3}) ASSERT_EQ(cluster.node(id).log().TermAt(Index(2)), Term(2));
  EXPECT_EQ(cluster.node(kNode1).log().committed(), Index(1));

  // (d): S1 crashes, S5 comes back and wins with the votes of S2, S3 and S4.
  cluster.Crash(kNode1);
  cluster.Heal();
  cluster.Restart(kNode5);
  cluster.Campaign(kNode5);  // Term 4: they voted for S1 in it.
  cluster.Campaign(kNode5);  // Term 5.
  ASSERT_EQ(cluster.leader(), kNode5);
  for (NodeId id : {kNode2, kNode3, kNode4}) {
    EXPECT_EQ(cluster.node(id).log().TermAt(Index(2)), Term(3)) << "entry 2 was overwritten";
  }
  EXPECT_FALSE(AnyApplied(cluster, "2/2")) << "an overwritten entry was applied";
  EXPECT_EQ(cluster.applied(kNode2), (std::vector<std::string>{"1/1", "3/2"}));
}

// "once an entry from the current term has been committed in this way, then all prior entries
// are committed indirectly because of the Log Matching Property." Figure 8 (e): once S1
// replicates an entry of term 4 to a majority, entry 2 is committed too and S5 cannot win.
TEST(RaftPaper_5_4_2, EntryOfCurrentTermCommitsEarlierEntries_Figure8) {
  TestCluster cluster(Figure8LogsAtB(), PaperConfig());
  cluster.Crash(kNode5);
  cluster.Campaign(kNode1);
  ASSERT_EQ(cluster.leader(), kNode1);
  EXPECT_EQ(cluster.node(kNode1).log().committed(), Index(3));
  EXPECT_EQ(cluster.applied(kNode1), (std::vector<std::string>{"1/1", "2/2"}));

  cluster.Crash(kNode1);
  cluster.Restart(kNode5);
  for (int attempt = 0; attempt < 3; ++attempt) {
    cluster.Campaign(kNode5);
    EXPECT_NE(cluster.node(kNode5).role(), Role::kLeader);
  }
  EXPECT_EQ(cluster.node(kNode2).log().TermAt(Index(2)), Term(2));
}

// ---------------------------------------------------------------------------------------------
// 5.5 Follower and candidate crashes

// "If a follower or candidate crashes, then future RequestVote and AppendEntries RPCs sent to it
// will fail. Raft handles these failures by retrying indefinitely; if the crashed server
// restarts, then the RPC will complete successfully."
TEST(RaftPaper_5_5, LeaderRetriesUntilRestartedFollowerCatchesUp) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  cluster.Crash(kNode3);
  for (const char* command : {"a", "b"}) {
    ASSERT_TRUE(cluster.node(kNode1).Propose(command).ok());
    cluster.Stabilize();
  }
  cluster.Restart(kNode3);
  cluster.Tick(kNode1);
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b"}));
}

// "Raft RPCs are idempotent, so this causes no harm. For example, if a follower receives an
// AppendEntries request that includes log entries already present in its log, it ignores those
// entries in the new request."
TEST(RaftPaper_5_5, FollowerIgnoresEntriesAlreadyInItsLog) {
  std::unique_ptr<Raft> follower =
      NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 1, 1}, Term(1)));
  ASSERT_TRUE(follower
                  ->Step(AppendEntries(kNode1, kNode2, Term(1), Index(0), Term(0),
                                       EntriesWithTerms(Index(1), {1})))
                  .ok());
  const Message reply = OnlyReply(*follower, MessageType::kAppendEntriesResponse);
  EXPECT_FALSE(reply.reject);
  EXPECT_EQ(reply.index, Index(1));
  EXPECT_EQ(follower->log().last_index(), Index(3));
}

// ---------------------------------------------------------------------------------------------
// 7 Log compaction

// "Each server takes snapshots independently, covering just the committed entries in its log."
// The snapshot's metadata: "the last included index ... the last included term ... the snapshot
// also includes the latest configuration in the log as of last included index."
TEST(RaftPaper_7, SnapshotCoversAppliedEntriesAndRecordsIndexTermAndConfiguration) {
  std::unique_ptr<Raft> raft =
      NewPaperNode(kNode1, StateWithLog(kThreeVoters, {1, 1, 2, 2}, Term(2), Index(3)));
  TakeMessages(*raft);  // Applies entries 1 to 3.
  EXPECT_EQ(raft->SetSnapshot(Index(4), "image").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(raft->SetSnapshot(Index(3), "image").ok());
  EXPECT_EQ(raft->log().snapshot().meta,
            (SnapshotMeta{Index(3), Term(2), Membership{kThreeVoters, {}}}));
  EXPECT_EQ(raft->CompactLog(Index(4)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(raft->CompactLog(Index(3)).ok());
  EXPECT_EQ(raft->log().first_index(), Index(4));
}

// "the leader must occasionally send snapshots to followers that lag behind. This happens when
// the leader has already discarded the next log entry that it needs to send to a follower."
TEST(RaftPaper_7, LeaderSendsSnapshotToFollowerNeedingDiscardedEntries) {
  TestCluster cluster(3, PaperConfig());
  cluster.Campaign(kNode1);
  cluster.Crash(kNode3);
  for (const char* command : {"a", "b", "c"}) {
    ASSERT_TRUE(cluster.node(kNode1).Propose(command).ok());
    cluster.Stabilize();
  }
  cluster.SnapshotAndCompact(kNode1);
  int snapshots_sent = 0;
  cluster.SetFilter([&](Message& message) {
    if (message.type == MessageType::kInstallSnapshot) ++snapshots_sent;
    return true;
  });
  cluster.Restart(kNode3);
  cluster.Tick(kNode1);
  EXPECT_EQ(snapshots_sent, 1);
  EXPECT_EQ(cluster.node(kNode3).log().prev_index(), Index(4));
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c"}));

  ASSERT_TRUE(cluster.node(kNode1).Propose("d").ok());
  cluster.Stabilize();
  EXPECT_EQ(cluster.applied(kNode3), (std::vector<std::string>{"a", "b", "c", "d"}));
}

// "Usually the snapshot will contain new information not already in the recipient's log. In
// this case, the follower discards its entire log; it is all superseded by the snapshot and may
// possibly have uncommitted entries that conflict with the snapshot."
TEST(RaftPaper_7, FollowerDiscardsItsEntireLogForSnapshotWithNewInformation) {
  std::unique_ptr<Raft> follower =
      NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 1, 2}, Term(2), Index(1)));
  const Snapshot snapshot{SnapshotMeta{Index(5), Term(3), Membership{kThreeVoters, {}}}, "image"};
  ASSERT_TRUE(follower->Step(InstallSnapshot(kNode1, kNode2, Term(3), snapshot)).ok());
  EXPECT_EQ(follower->log().prev_index(), Index(5));
  EXPECT_EQ(follower->log().last_index(), Index(5));
  EXPECT_EQ(follower->log().committed(), Index(5));

  Ready ready = follower->TakeReady();
  EXPECT_EQ(ready.snapshot, snapshot);
  const std::vector<Message> replies = OfType(ready.messages, MessageType::kAppendEntriesResponse);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_FALSE(replies[0].reject);
  EXPECT_EQ(replies[0].index, Index(5));
}

// "If instead the follower receives a snapshot that describes a prefix of its log, then log
// entries covered by the snapshot are deleted but entries following the snapshot are still
// valid and must be retained." (Synod keeps the covered entries too, and marks them committed.)
TEST(RaftPaper_7, FollowerRetainsEntriesFollowingSnapshotThatIsPrefixOfItsLog) {
  std::unique_ptr<Raft> follower =
      NewPaperNode(kNode2, StateWithLog(kThreeVoters, {1, 1, 1, 1, 1}, Term(1), Index(1)));
  const Snapshot snapshot{SnapshotMeta{Index(3), Term(1), Membership{kThreeVoters, {}}}, "image"};
  ASSERT_TRUE(follower->Step(InstallSnapshot(kNode1, kNode2, Term(1), snapshot)).ok());
  EXPECT_EQ(follower->log().last_index(), Index(5));
  EXPECT_EQ(follower->log().committed(), Index(3));

  Ready ready = follower->TakeReady();
  EXPECT_FALSE(ready.snapshot.has_value()) << "nothing to install: the log already has it";
  const std::vector<Message> replies = OfType(ready.messages, MessageType::kAppendEntriesResponse);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].index, Index(3));
}

}  // namespace
}  // namespace synod::raft
