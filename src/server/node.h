#pragma once

// One synod member's event loop (ARCHITECTURE.md, "Threads" and "Data path of a write"): it owns
// the consensus engine (Raft or Multi-Paxos, fixed when the data dir was created; see
// server/consensus_engine.h for the boundary), feeds it ticks, peer messages, proposals and read
// requests, and carries out each Ready in the order types.h prescribes:
//
//   1. early messages (a leader's AppendEntries for entries it has not yet synced, thesis
//      10.2.1) go out at once;
//   2. entries, hard state and snapshot go to the storage thread (LogWriter), which groups every
//      write queued during the previous fsync into one write and one fsync;
//   3. when that fsync returns, the loop sends the other messages (votes and acknowledgements
//      promise durable state, so never before), applies the committed entries to the kv::Store,
//      answers the clients waiting for them, releases the reads whose index is applied, and
//      calls Advance.
// While a Ready is at the disk the loop goes on stepping messages and queueing proposals; they
// land in the next Ready, and so in the next group commit.
//
// Proposals from a follower are forwarded to the leader over the peer transport; the follower
// then waits for the entry to be applied locally (every replica computes the same response from
// the same entry), as etcd does. Linearizable reads use ReadIndex (thesis 6.4): all reads that
// arrive in one loop iteration share one read index request and so one heartbeat round.
//
// Snapshots (Raft 7): the core's snapshot carries no data; the state machine itself is the
// snapshot. A follower that is sent an InstallSnapshot first pulls a point-in-time image of the
// sender's store in checksummed chunks (Transport::FetchSnapshot, storage::SnapshotReader),
// swaps it in atomically, and only then steps the message into the core, so that the log never
// claims a snapshot the store does not hold. The store may therefore be ahead of the log after a
// crash; that is safe because it only ever holds committed entries, and Store::Apply skips
// entries at or below its applied index.
//
// Failure: a failed write or fsync of the log or the store stops the process (crash-only, as
// etcd panics): the node cannot know what reached the disk, and it must never acknowledge
// anything that depends on it. A restart recovers from what the disk holds.
//
// Threads: Start() launches the loop thread; the public methods below marked "any thread" post
// work to it. The store is read by gRPC threads under a shared lock and written by the loop
// under an exclusive one.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/raft.h"
#include "kv/etcd_backup.h"
#include "kv/lessor.h"
#include "kv/store.h"
#include "kv/watch_hub.h"
#include "server/auto_compactor.h"
#include "server/completion.h"
#include "server/consensus_engine.h"
#include "storage/file_system.h"
#include "storage/log_writer.h"
#include "storage/wal.h"
#include "synod/peer.pb.h"
#include "synod/request.pb.h"

namespace synod::server {

class Transport;

// How a request the loop finishes is answered (server/completion.h).
using ProposalDone = Completion<Result<kv::CommandResult>>;
using ReadDone = Completion<Status>;

struct NodeOptions {
  NodeId id;
  uint64_t cluster_id = 0;
  std::string wal_dir;
  std::string kv_dir;
  // The consensus engine; must be the one the data dir was created with (server/data_dir.h).
  EngineKind engine = EngineKind::kRaft;
  // For a member of a new cluster: the initial voters. Used only when there is no log yet.
  raft::Membership initial_membership;
  uint32_t tick_ms = 100;               // etcd --heartbeat-interval
  uint32_t election_timeout_ticks = 10;  // etcd --election-timeout / --heartbeat-interval
  // etcd --initial-election-tick-advance: at boot, as soon as this voter reaches enough peers
  // to win an election (within the first 5 s), its election clock is moved to two ticks short
  // of the election timeout, so a fresh or restarted cluster elects within a few ticks rather
  // than a whole timeout. A live leader's heartbeat still resets the clock first, and pre-vote
  // (thesis 9.6) keeps an early campaign from disturbing a leader the others still hear.
  bool initial_election_tick_advance = true;
  // A local snapshot (and log compaction) every this many applied entries (etcd
  // --snapshot-count).
  uint64_t snapshot_count = 100000;
  // Entries kept in memory behind a snapshot so slightly lagging followers catch up from the log
  // rather than a whole snapshot (etcd's SnapshotCatchUpEntries).
  uint64_t snapshot_catchup_entries = 5000;
  // etcd --auto-compaction-mode/--auto-compaction-retention: the leader compacts the history
  // by itself (server/auto_compactor.h). nullopt: only when a client asks.
  std::optional<AutoCompactionPolicy> auto_compaction;
  // How long a client waits for its write or read before "request timed out"; etcd's default
  // is 5 s plus two election timeouts.
  std::chrono::milliseconds request_timeout{7000};
  uint64_t wal_segment_bytes_max = 64 << 20;
  kv::StoreOptions store;

  // Membership (server/members.h). A member of a new cluster starts with these records (from
  // --initial-cluster; their ids are initial_membership's voters) until it applies a
  // configuration entry. A member joining a running cluster (`joining`) starts with no records
  // and no configuration, and uses these only to reach the others until its first
  // configuration entry or snapshot arrives.
  synodpb::ClusterMembers initial_members;
  bool joining = false;
  // What this member publishes about itself through the log once it runs (etcd's publish).
  std::string name;
  std::vector<std::string> client_urls;
  // etcd's --strict-reconfig-check (default true): refuse changes that may lose the quorum.
  bool strict_reconfig_check = true;
  // Called once, on any thread, when this member learns that it has been removed from the
  // cluster (it applied its removal, or a peer refused it as removed). The process should stop.
  std::function<void()> on_removed;
};

// What the status and health endpoints show; a copy taken under a small lock.
struct NodeStatus {
  NodeId id;
  NodeId leader;
  raft::Role role = raft::Role::kFollower;
  // Multi-Paxos: the promised ballot's round.
  Term term;
  Index commit;
  Index applied;
  raft::Membership membership;
};

class Node {
 public:
  // Limits.
  static constexpr size_t kEventsQueuedMax = 65536;
  static constexpr size_t kPendingProposalsMax = 65536;
  static constexpr size_t kPendingReadsMax = 65536;

  // Recovers the member from its data: the log (or a new one for a new member) and the store.
  // `transport` may be null for a cluster of one; it must outlive the node. Errors: kDataLoss
  // from a damaged log, anything the store reports, InvalidArgument for inconsistent state.
  static Result<std::unique_ptr<Node>> Open(NodeOptions options, Transport* transport);
  // Stops the loop and the storage thread; answers every waiting client with "server stopped".
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts the loop thread. A sole voter campaigns at once instead of waiting a timeout.
  void Start();

  // ---- Any thread ---------------------------------------------------------------------------

  // Proposes `request` (its id is assigned here); `done` runs once it is applied on this node,
  // on the loop thread, or with an error. Errors: etcd's "no leader" (when none is known after
  // LeaderWait), "request timed out" (after the request timeout), "too many requests", "server
  // stopped".
  void ProposeAsync(synodpb::Request request, ProposalDone done);
  // ProposeAsync, waiting for the outcome on the calling thread.
  Result<kv::CommandResult> Propose(synodpb::Request request);
  // `done` runs once a read of the local store is linearizable: ReadIndex confirmed by a quorum
  // and applied up to the read index (thesis 6.4). Same errors as ProposeAsync.
  void WaitLinearizableReadAsync(ReadDone done);
  // WaitLinearizableReadAsync, waiting on the calling thread.
  Status WaitLinearizableRead();
  // Runs `read` on the store under the shared lock. The store must not escape the call.
  template <typename ReadFunction>
  auto ReadStore(ReadFunction&& read) const {
    std::shared_lock lock(store_mutex_);
    return read(static_cast<const kv::Store&>(*store_));
  }

  // Leases. The leader's clock alone decides expiry (kv/lessor.h), so keepalives and the
  // remaining time are answered by the leader; on another member these fail with
  // FailedPrecondition and the caller asks the leader over the transport.
  // A keepalive: the lease lives a full TTL from now; returns the TTL in seconds, or NotFound.
  Result<int64_t> RenewLease(int64_t lease_id);
  // Milliseconds the lease has left by the leader's clock; NotFound for an unknown lease.
  Result<int64_t> LeaseRemainingMs(int64_t lease_id);
  // A fresh positive lease id for a grant that did not name one (etcd picks one the same way).
  int64_t NewLeaseId() { return static_cast<int64_t>(NextRequestId() & INT64_MAX); }

  // Peer input (the transport's handlers).
  void OnPeerMessage(PeerMessage message);
  void OnForwardedProposal(std::string request);
  // A point-in-time chunk stream of this node's store (for a follower's FetchSnapshot).
  // FailedPrecondition when the store has not applied `min_applied_index` yet.
  Result<std::function<Result<std::optional<std::string>>()>> OpenSnapshotSource(
      Index min_applied_index);
  // Writes a point-in-time image of this node's store in etcd 3.4's backend layout
  // (kv/etcd_backup.h) and finishes the file. Applies go on meanwhile: the image is a view of
  // the store (Store::ReadView), and the store is not replaced by a snapshot while it is read.
  Result<kv::EtcdBackupSummary> WriteEtcdSnapshot(storage::BoltWriter& writer);

  // ---- Membership (server/members.h) ----
  // The member records as of the applied index.
  synodpb::ClusterMembers members() const;
  // The records of the newest configuration entry the engine holds (Raft: in the log,
  // committed or not; Multi-Paxos: chosen), or the applied ones when there is none newer: what
  // a member about to join is told (peer call Members). On Raft a voter added to a one-voter
  // cluster counts toward the quorum as soon as its entry is appended, so that entry commits
  // only once the new member runs, and the new member must be able to find itself before then.
  // (On Multi-Paxos the entry is chosen by the old configuration, α rule.)
  synodpb::ClusterMembers NewestMembers();
  // Whether `id` was removed from the cluster for good (the transport refuses it). Cheap.
  bool IsRemovedMember(NodeId id) const;
  // Changes the members (etcd's MemberAdd, MemberRemove, MemberPromote, MemberUpdate, publish)
  // and waits until the change is applied on this member, so that a MemberList here shows it.
  // The leader checks and proposes it (ChangeMembersAsLeader); another member asks the leader
  // over the transport. Returns the configuration entry's index. Errors: etcd's (members.h),
  // "no leader", "leader changed", "request timed out".
  Result<Index> ChangeMembers(const synodpb::MemberChangeRequest& request);
  // The leader's side of ChangeMembers, also the transport's handler: checks the change against
  // the applied records (PlanMemberChange; a learner must have caught up to be promoted),
  // proposes it and waits until it is applied here. "etcdserver: not leader" elsewhere.
  Result<Index> ChangeMembersAsLeader(const synodpb::MemberChangeRequest& request);
  // etcd's MoveLeader, asked of the leader: hands leadership to `target` (thesis 3.10) and waits
  // until `target` leads or `deadline` passes. Errors: "etcdserver: not leader", "etcdserver: bad
  // leader transferee" (not a voter), "etcdserver: request timed out, leader transfer took too
  // long".
  Status MoveLeader(NodeId target, std::chrono::steady_clock::time_point deadline);

  NodeStatus status() const;
  std::chrono::milliseconds request_timeout() const { return options_.request_timeout; }
  // Every change this node applies is notified to the hub under the store's exclusive lock;
  // watch streams register under ReadStore's shared lock (kv/watch_hub.h).
  kv::WatchHub& watch_hub() { return watch_hub_; }
  Transport* transport() const { return transport_; }
  NodeId id() const { return options_.id; }
  uint64_t cluster_id() const { return options_.cluster_id; }

 private:
  struct PendingProposal {
    ProposalDone done;
    std::chrono::steady_clock::time_point deadline;
  };
  struct PendingRead {
    ReadDone done;
    std::chrono::steady_clock::time_point deadline;
    // Until then it may wait unissued for a leader to become known (LeaderWait).
    std::chrono::steady_clock::time_point leader_wait_end;
  };
  // A proposal that came while no leader was known, proposed or forwarded once one is.
  struct ProposalAwaitingLeader {
    uint64_t request_id;  // In proposals_ while its client waits; 0 for the node's own.
    std::string data;
    std::chrono::steady_clock::time_point leader_wait_end;
  };
  // Reads confirmed by a ReadState, waiting for apply to reach `index`.
  struct ConfirmedReads {
    Index index;
    std::vector<PendingRead> reads;
  };

  explicit Node(NodeOptions options, Transport* transport);
  Status Recover();

  // Posts `work` to the loop; false when the queue is full or the node is stopping.
  bool Post(std::function<void()> work);
  // Runs `call` on the loop and waits for its result, at most the request timeout.
  Result<int64_t> CallOnLoop(std::function<Result<int64_t>()> call);
  void Run();
  // The leader's automatic compaction (NodeOptions::auto_compaction), at each tick.
  void MaybeAutoCompact(int64_t now_ms);
  void Tick();
  void MaybeAdvanceInitialElectionTicks(std::chrono::steady_clock::time_point now);
  // Takes the engine's Readies while they need no disk, and the first one that does goes to the
  // log writer (at most one Ready is at the disk at a time).
  void ProcessReady();
  void StartReady();
  void OnPersisted(Status status);
  void FinishReady();
  // Applies every finished Ready's committed entries in order, then answers what they allow.
  void ApplyUnapplied();
  void ApplyCommitted(std::vector<raft::Entry>& entries);
  void ReleaseReads();
  void IssueReadIndex();
  void MaybeSnapshot();
  void ProposeOnLoop(uint64_t request_id, std::string data);
  // How long a request that comes while no leader is known waits for one before "no leader":
  // one election timeout, as etcd's waitLeader waits, so that a member that has just started,
  // or one between two leaders, does not turn its clients away while the election that ends it
  // takes well under a second. A minority member still says "no leader" once the wait is over.
  std::chrono::milliseconds LeaderWait() const;
  bool LeaderKnown() const;
  // Proposes or forwards the proposals that waited for a leader, once one is known.
  void ProposeAwaitingLeader();
  void FailAllWaiting(const Status& status);
  void ExpireWaiting(std::chrono::steady_clock::time_point now);
  // "no leader" for the proposals and reads whose LeaderWait is over.
  void ExpireLeaderWaits(std::chrono::steady_clock::time_point now);
  void PublishStatus();
  void StartSnapshotFetch(PeerMessage message, Index index);
  void Send(PeerMessage message);
  [[noreturn]] void FailStop(const Status& status);
  uint64_t NextRequestId();

  // Membership (node_members.cc).
  // The records from the store's membership blob; the initial ones when it has none. Loop
  // thread (or Recover).
  void LoadMembers();
  // Installs `members` as the applied records and makes the transport follow them.
  void SetMembers(synodpb::ClusterMembers members);
  // Transport peers for members that configuration entries about to be persisted add (Raft
  // entries or Multi-Paxos slots), so that the leader reaches a new member before the entry
  // commits (Raft's core counts it at once; Multi-Paxos's sends to it once it is chosen).
  void NoteAppendedConfigs(const storage::LogWrite& write);
  // The blob the store keeps for an applied configuration entry.
  std::string MembersBlobOf(const raft::Entry& entry) const;
  // After configuration entries were applied: reload the records, answer the waiting clients.
  void OnConfigEntriesApplied(const std::vector<raft::Entry>& entries);
  // On the loop: checks and proposes a change; answers through `done`.
  void ProposeMemberChangeOnLoop(const synodpb::MemberChangeRequest& request,
                                 uint64_t request_id, ProposalDone done,
                                 std::chrono::steady_clock::time_point deadline);
  // Waits until this member has applied `index`.
  Status WaitApplied(Index index, std::chrono::steady_clock::time_point deadline) const;
  // The publish thread: makes this member's record carry its name and client URLs.
  void Publish();

  const NodeOptions options_;
  Transport* const transport_;
  std::unique_ptr<storage::FileSystem> fs_;

  // Owned by the storage thread once the node runs (LogWriter's write function).
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<storage::LogWriter> log_writer_;

  // Written by the loop under the exclusive lock; read by any thread under the shared lock.
  mutable std::shared_mutex store_mutex_;
  std::unique_ptr<kv::Store> store_;
  kv::WatchHub watch_hub_;  // Notified under the exclusive lock of store_mutex_.
  // Snapshot sources alive on gRPC threads; the store is not replaced while any is.
  std::atomic<int> snapshot_sources_ = 0;

  // ---- Loop thread only ----
  std::unique_ptr<ConsensusEngine> engine_;
  kv::Lessor lessor_;
  std::optional<EngineReady> ready_at_disk_;  // Set while its write is at the storage thread.
  // A finished Ready's committed entries, waiting only for the next Ready to reach the disk.
  struct UnappliedReady {
    std::vector<raft::Entry> committed_entries;
    bool fail_waiting_after_apply = false;  // The leader changed in that Ready.
  };
  std::deque<UnappliedReady> unapplied_;  // Empty outside ProcessReady and FinishReady.
  std::map<uint64_t, PendingProposal> proposals_;
  // Shared with the completions of the compactions it proposes, which may outlive it when the
  // node stops; null without --auto-compaction-retention.
  std::shared_ptr<AutoCompactor> auto_compactor_;
  std::vector<PendingRead> reads_unissued_;  // Also the ones waiting for a leader.
  std::vector<ProposalAwaitingLeader> proposals_awaiting_leader_;  // In arrival order.
  uint64_t next_read_context_ = 1;
  std::map<uint64_t, std::vector<PendingRead>> reads_issued_;  // By read context.
  std::deque<ConfirmedReads> reads_confirmed_;  // Increasing index.
  Index last_snapshot_index_;
  // The index the store's latest background Sync covers (MaybeSnapshot); above
  // last_snapshot_index_ while that Sync may still be running.
  Index sync_started_at_;
  NodeId known_leader_;  // As of the last Ready's soft state.
  // The leader changed in the Ready at the disk: fail the waiting clients after its apply.
  bool fail_waiting_after_apply_ = false;
  bool snapshot_fetch_running_ = false;
  std::thread snapshot_fetch_thread_;
  std::chrono::steady_clock::time_point next_tick_;
  // Until when the boot-time election tick advance may still happen (unset: done or off).
  std::optional<std::chrono::steady_clock::time_point> tick_advance_until_;

  // ---- The loop's inbox ----
  std::mutex inbox_mutex_;
  std::condition_variable inbox_changed_;
  std::deque<std::function<void()>> inbox_;  // Guarded by inbox_mutex_.
  bool stopping_ = false;                    // Guarded by inbox_mutex_.
  std::thread loop_thread_;

  std::atomic<uint64_t> request_sequence_;
  mutable std::mutex status_mutex_;
  NodeStatus status_;  // Guarded by status_mutex_.

  // ---- Membership ----
  mutable std::mutex members_mutex_;
  // As of the applied index. Written by the loop; guarded by members_mutex_.
  synodpb::ClusterMembers members_;
  // Peers the transport has been given (loop thread), so that removed ones can be dropped.
  std::set<NodeId> transport_peers_;
  std::atomic<bool> removed_ = false;
  // Set first thing in the destructor, for the threads below and the waits of ChangeMembers.
  std::atomic<bool> shutting_down_ = false;
  std::thread publish_thread_;
};

// etcd's errors for the request path (etcdserver/api/v3rpc/rpctypes/error.go).
Status NoLeaderError();
Status RequestTimedOutError();
Status TooManyRequestsError();
Status LeaderChangedError();
Status ServerStoppedError();

}  // namespace synod::server
