#include "server/node.h"

#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "base/assert.h"
#include "base/thread_name.h"
#include "kv/errors.h"
#include "server/members.h"
#include "server/transport.h"
#include "storage/backend.h"
#include "storage/codec.h"

namespace synod::server {

using Clock = std::chrono::steady_clock;

Status NoLeaderError() { return absl::UnavailableError("etcdserver: no leader"); }
Status RequestTimedOutError() { return absl::UnavailableError("etcdserver: request timed out"); }
Status TooManyRequestsError() {
  return absl::ResourceExhaustedError("etcdserver: too many requests");
}
Status LeaderChangedError() { return absl::UnavailableError("etcdserver: leader changed"); }
Status ServerStoppedError() { return absl::UnavailableError("etcdserver: server stopped"); }

namespace {

// How many of a Ready's committed entries (in index order) are durable in this member's log
// before the Ready's own write completes: those below every index the write (re)places. A Raft
// write replaces the log from its first entry on, a Multi-Paxos write only its own slots, so
// starting at the lowest of them is exact for Raft and cautious for Multi-Paxos.
size_t DurableCommittedPrefix(const std::vector<raft::Entry>& committed,
                              const storage::LogWrite& write) {
  if (write.installed_snapshot) return 0;
  std::optional<Index> first_written;
  if (!write.entries.empty()) first_written = write.entries.front().index;
  for (const multipaxos::Slot& slot : write.slots) {
    if (!first_written || slot.value.index < *first_written) first_written = slot.value.index;
  }
  if (!first_written) return committed.size();
  return std::partition_point(committed.begin(), committed.end(),
                              [&](const raft::Entry& entry) {
                                return entry.index < *first_written;
                              }) -
         committed.begin();
}

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

// A snapshot fetch that stalls this long is abandoned; the leader sends the snapshot again.
constexpr std::chrono::minutes kSnapshotFetchTimeout{5};

#ifdef SYNOD_BROKEN_ACKS_BEFORE_FSYNC
// Deliberately broken, never in a product (src/server/node.cmake): the log's writes reach the
// page cache and are reported done at once, and an fsync follows only once the previous one is
// a second old, like a periodic fsync ("appendfsync everysec"). So this member acknowledges
// entries, votes and client writes before they are durable, against Raft's Figure 2 (persistent
// state is "updated on stable storage before responding to RPCs"): a power cut of the whole
// cluster loses what it acknowledged in the last second. The nemesis's powerloss fault must catch it.
constexpr std::chrono::seconds kBrokenFsyncInterval{1};

Status BrokenWriteSyncingLater(storage::Wal* wal) {
  // Only the storage thread calls this, and the broken binary runs one member per process.
  static Clock::time_point synced_at = Clock::now();
  if (Clock::now() - synced_at < kBrokenFsyncInterval) return wal->Write();
  synced_at = Clock::now();
  return wal->Sync();
}
#endif

}  // namespace

Node::Node(NodeOptions options, Transport* transport)
    : options_(std::move(options)), transport_(transport) {
  // Request ids must not repeat across restarts either: an entry proposed before a crash may be
  // applied after it, and must not answer a new client. So the low bits start at the wall clock
  // (milliseconds, shifted to leave room for 256 ids per millisecond), as etcd's idutil does,
  // and the high bits are this member's, so different members never collide.
  const uint64_t wall_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  request_sequence_ = wall_ms << 8;
}

Node::~Node() {
  shutting_down_ = true;
  {
    std::lock_guard lock(inbox_mutex_);
    stopping_ = true;
  }
  inbox_changed_.notify_all();
  if (loop_thread_.joinable()) loop_thread_.join();
  if (snapshot_fetch_thread_.joinable()) snapshot_fetch_thread_.join();
  // Finishes the writes already queued; their completions find the loop gone and do nothing.
  log_writer_.reset();
  FailAllWaiting(ServerStoppedError());
  if (publish_thread_.joinable()) publish_thread_.join();
  if (store_ != nullptr) store_->AttachLessor(nullptr).IgnoreError();
}

Result<std::unique_ptr<Node>> Node::Open(NodeOptions options, Transport* transport) {
  SYNOD_ASSERT(options.id != kNoNode);
  SYNOD_ASSERT(options.tick_ms > 0);
  std::unique_ptr<Node> node(new Node(std::move(options), transport));
  if (Status status = node->Recover(); !status.ok()) return status;
  return node;
}

Status Node::Recover() {
  fs_ = storage::NewPosixFileSystem();
  storage::WalOptions wal_options{options_.wal_dir, options_.wal_segment_bytes_max,
                                  WalContentOf(options_.engine)};
  storage::RecoveredLog recovered;
  auto opened = storage::Wal::Open(fs_.get(), wal_options, &recovered);
  if (absl::IsNotFound(opened.status())) {
    // A brand-new member: its log starts from a snapshot at index 0 that holds the initial
    // configuration (empty for a member joining an existing cluster).
    raft::SnapshotMeta initial{Index(0), Term(0), options_.initial_membership};
    opened = storage::Wal::Create(fs_.get(), wal_options, initial);
    recovered = storage::RecoveredLog{};
    recovered.snapshot = initial;
  }
  if (!opened.ok()) return opened.status();
  wal_ = std::move(*opened);
  if (recovered.torn_tail) {
    spdlog::warn("the log's last write was torn by a crash and was cut at {}", *recovered.torn_tail);
  }

  auto store = kv::Store::Open(options_.kv_dir, options_.store);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  const Index store_applied = store_->applied_index();
  // The store is made durable (Store::Sync) before the log drops what it covers, and a
  // snapshot from the leader replaces the store before the log records it; so the store is
  // never behind the log's snapshot unless a file was lost.
  if (store_applied < recovered.snapshot.index) {
    return absl::DataLossError(fmt::format(
        "the state machine in {} has applied up to index {}, but the log in {} starts after a "
        "snapshot at index {}: the entries in between are lost",
        options_.kv_dir, store_applied, options_.wal_dir, recovered.snapshot.index));
  }

  EngineStart start;
  start.id = options_.id;
  start.election_timeout_ticks = options_.election_timeout_ticks;
  // Each incarnation draws different election timeouts; the core itself stays deterministic in
  // the seed it is given.
  start.seed = options_.id.value() ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  // The core requires snapshot <= applied <= commit. A store ahead of the durable commit index
  // (it installed a leader's snapshot just before a crash) holds only committed entries; the
  // core re-delivers the ones in between and Store::Apply skips them.
  start.applied = std::clamp(store_applied, recovered.snapshot.index,
                             std::max(recovered.hard_state.commit, recovered.snapshot.index));
  last_snapshot_index_ = recovered.snapshot.index;
  const size_t recovered_records = recovered.entries.size() + recovered.slots.size();
  start.recovered = std::move(recovered);
  auto engine = ConsensusEngine::Create(options_.engine, std::move(start));
  if (!engine.ok()) return engine.status();
  engine_ = std::move(*engine);
  if (Status status = store_->AttachLessor(&lessor_); !status.ok()) return status;
  LoadMembers();
  if (options_.auto_compaction.has_value()) {
    auto_compactor_ =
        std::make_shared<AutoCompactor>(*options_.auto_compaction, MonotonicMs(),
                                        static_cast<int64_t>(store_->current_revision().value()));
    const AutoCompactionPolicy& policy = *options_.auto_compaction;
    if (policy.mode == AutoCompactionPolicy::Mode::kRevision) {
      spdlog::info("auto-compaction: revision mode, keeping the last {} revisions",
                   policy.retention_revisions);
    } else {
      spdlog::info("auto-compaction: periodic mode, keeping {} ms of history", policy.retention_ms);
    }
  }

  log_writer_ = std::make_unique<storage::LogWriter>(
      [this](std::vector<storage::LogWrite>& group) -> Status {
        bool release_segments = false;
        for (storage::LogWrite& write : group) {
          if (write.installed_snapshot) {
            wal_->InstallSnapshot(*write.installed_snapshot);
            release_segments = true;
          }
          if (!write.entries.empty()) wal_->Append(write.entries);
          if (!write.slots.empty()) wal_->SaveSlots(write.slots);
          if (write.hard_state) wal_->SaveHardState(*write.hard_state);
          if (write.compacted_to) {
            wal_->CompactTo(*write.compacted_to);
            release_segments = true;
          }
        }
#ifdef SYNOD_BROKEN_ACKS_BEFORE_FSYNC
        if (Status status = BrokenWriteSyncingLater(wal_.get()); !status.ok()) return status;
#else
        if (Status status = wal_->Sync(); !status.ok()) return status;
#endif
        if (release_segments) {
          if (auto released = wal_->ReleaseCoveredSegments(); !released.ok()) {
            return released.status();
          }
        }
        return absl::OkStatus();
      });
  PublishStatus();
  spdlog::info(
      "member {:x} recovered on the {} engine: term {}, commit {}, applied {}, {} log records up "
      "to {}, voters [{}]",
      options_.id.value(), ToString(options_.engine), engine_->term(), engine_->commit(),
      store_applied, recovered_records, wal_->last_index(), raft::ToString(engine_->membership()));
  return absl::OkStatus();
}

void Node::Start() {
  SYNOD_ASSERT(!loop_thread_.joinable());
  next_tick_ = Clock::now() + std::chrono::milliseconds(options_.tick_ms);
  const raft::Membership& membership = engine_->membership();
  if (membership.voters.size() == 1 && membership.voters[0] == options_.id) {
    engine_->Campaign();
  } else if (options_.initial_election_tick_advance && transport_ != nullptr &&
             membership.IsVoter(options_.id)) {
    // etcd gives its peers up to rafthttp's connection read timeout (5 s) to report in.
    tick_advance_until_ = Clock::now() + std::chrono::seconds(5);
  }
  loop_thread_ = std::thread([this] { Run(); });
  // Publishing the name and client URLs is a configuration entry (server/members.h).
  if (!options_.name.empty()) {
    publish_thread_ = std::thread([this] { Publish(); });
  }
}

// ---------------------------------------------------------------------------------------------
// Any thread.

uint64_t Node::NextRequestId() {
  constexpr uint64_t kSequenceBits = 48;
  const uint64_t sequence = request_sequence_.fetch_add(1) & ((uint64_t{1} << kSequenceBits) - 1);
  return ((options_.id.value() & 0xffff) << kSequenceBits) | sequence;
}

bool Node::Post(std::function<void()> work) {
  {
    std::lock_guard lock(inbox_mutex_);
    if (stopping_ || inbox_.size() >= kEventsQueuedMax) return false;
    inbox_.push_back(std::move(work));
  }
  inbox_changed_.notify_one();
  return true;
}

void Node::ProposeAsync(synodpb::Request request, ProposalDone done) {
  const uint64_t request_id = NextRequestId();
  request.set_id(request_id);
  std::string data = request.SerializeAsString();
  const auto deadline = Clock::now() + options_.request_timeout;
  // Shared, so that it can still be answered here when the queue refuses the closure.
  auto shared_done = std::make_shared<ProposalDone>(std::move(done));
  if (!Post([this, request_id, data = std::move(data), shared_done, deadline]() mutable {
        if (proposals_.size() >= kPendingProposalsMax) {
          shared_done->Complete(TooManyRequestsError());
          return;
        }
        proposals_.emplace(request_id, PendingProposal{std::move(*shared_done), deadline});
        ProposeOnLoop(request_id, std::move(data));
      })) {
    shared_done->Complete(TooManyRequestsError());
  }
}

Result<kv::CommandResult> Node::Propose(synodpb::Request request) {
  const auto deadline = Clock::now() + options_.request_timeout;
  auto [done, future] = CompletionWithFuture<Result<kv::CommandResult>>();
  ProposeAsync(std::move(request), std::move(done));
  if (future.wait_until(deadline) != std::future_status::ready) return RequestTimedOutError();
  return future.get();
}

void Node::WaitLinearizableReadAsync(ReadDone done) {
  const auto deadline = Clock::now() + options_.request_timeout;
  auto shared_done = std::make_shared<ReadDone>(std::move(done));
  if (!Post([this, shared_done, deadline] {
        if (reads_unissued_.size() >= kPendingReadsMax) {
          shared_done->Complete(TooManyRequestsError());
          return;
        }
        reads_unissued_.push_back(
            PendingRead{std::move(*shared_done), deadline, Clock::now() + LeaderWait()});
      })) {
    shared_done->Complete(TooManyRequestsError());
  }
}

Status Node::WaitLinearizableRead() {
  const auto deadline = Clock::now() + options_.request_timeout;
  auto [done, future] = CompletionWithFuture<Status>();
  WaitLinearizableReadAsync(std::move(done));
  if (future.wait_until(deadline) != std::future_status::ready) return RequestTimedOutError();
  return future.get();
}

Result<int64_t> Node::CallOnLoop(std::function<Result<int64_t>()> call) {
  auto promise = std::make_shared<std::promise<Result<int64_t>>>();
  auto future = promise->get_future();
  if (!Post([promise, call = std::move(call)] { promise->set_value(call()); })) {
    return TooManyRequestsError();
  }
  if (future.wait_for(options_.request_timeout) != std::future_status::ready) {
    return RequestTimedOutError();
  }
  return future.get();
}

Result<int64_t> Node::RenewLease(int64_t lease_id) {
  return CallOnLoop([this, lease_id]() -> Result<int64_t> {
    if (!engine_->is_leader()) return absl::FailedPreconditionError("not the leader");
    return lessor_.Renew(lease_id, MonotonicMs());
  });
}

Result<int64_t> Node::LeaseRemainingMs(int64_t lease_id) {
  return CallOnLoop([this, lease_id]() -> Result<int64_t> {
    if (!engine_->is_leader() || !lessor_.primary()) {
      return absl::FailedPreconditionError("not the leader");
    }
    std::optional<int64_t> remaining = lessor_.RemainingMs(lease_id, MonotonicMs());
    if (!remaining) return kv::LeaseNotFoundError();
    return *remaining;
  });
}

void Node::OnPeerMessage(PeerMessage message) {
  // A full inbox drops the message; both engines recover from lost messages by retransmission.
  Post([this, message = std::move(message)]() mutable {
    const std::optional<Index> snapshot_index = AnnouncedSnapshotIndex(message);
    if (snapshot_index && *snapshot_index > store_->applied_index()) {
      StartSnapshotFetch(std::move(message), *snapshot_index);
      return;
    }
    if (Status status = engine_->Step(std::move(message)); !status.ok()) {
      spdlog::debug("dropped a peer message: {}", status.ToString());
    }
  });
}

void Node::OnForwardedProposal(std::string request) {
  Post([this, request = std::move(request)]() mutable {
    if (!engine_->is_leader()) return;  // The follower's client times out.
    if (auto position = engine_->Propose(std::move(request)); !position.ok()) {
      spdlog::debug("refused a forwarded proposal: {}", position.status().ToString());
    }
  });
}

Result<std::function<Result<std::optional<std::string>>()>> Node::OpenSnapshotSource(
    Index min_applied_index) {
  // The source keeps the store from being replaced while a follower reads it: the reader holds
  // a RocksDB snapshot of this backend.
  struct Source {
    Node* node;
    std::unique_ptr<storage::SnapshotReader> reader;
    ~Source() {
      {
        std::shared_lock lock(node->store_mutex_);
        reader.reset();
      }
      --node->snapshot_sources_;
    }
  };
  std::shared_lock lock(store_mutex_);
  if (store_->applied_index() < min_applied_index) {
    return absl::FailedPreconditionError(
        fmt::format("this member has applied up to {}, not yet {}", store_->applied_index(),
                    min_applied_index));
  }
  auto reader = store_->ReadSnapshot();
  if (!reader.ok()) return reader.status();
  ++snapshot_sources_;
  auto source = std::make_shared<Source>();
  source->node = this;
  source->reader = std::move(*reader);
  return std::function<Result<std::optional<std::string>>()>(
      [this, source]() -> Result<std::optional<std::string>> {
        std::shared_lock lock(store_mutex_);
        return source->reader->Next();
      });
}

Result<kv::EtcdBackupSummary> Node::WriteEtcdSnapshot(storage::BoltWriter& writer) {
  std::unique_ptr<storage::SnapshotView> view;
  {
    // Counted under the lock the snapshot install takes exclusively, so no install begins
    // while the view lives (see StartSnapshotFetch).
    std::shared_lock lock(store_mutex_);
    auto opened = store_->ReadView();
    if (!opened.ok()) return opened.status();
    view = std::move(*opened);
    ++snapshot_sources_;
  }
  // The member records the image's applied index describes; a new cluster that has applied no
  // configuration entry yet has them from its flags only.
  Result<synodpb::ClusterMembers> members = DecodeClusterMembers(view->membership());
  if (view->membership().empty()) members = this->members();
  Result<kv::EtcdBackupSummary> summary =
      members.ok() ? kv::WriteEtcdBackup(*view, *members, writer)
                   : Result<kv::EtcdBackupSummary>(members.status());
  {
    std::shared_lock lock(store_mutex_);
    view.reset();
    --snapshot_sources_;
  }
  return summary;
}

NodeStatus Node::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

// ---------------------------------------------------------------------------------------------
// The loop.

void Node::Run() {
  NameThisThread("loop");
  std::deque<std::function<void()>> work;
  while (true) {
    {
      std::unique_lock lock(inbox_mutex_);
      inbox_changed_.wait_until(lock, next_tick_, [this] { return stopping_ || !inbox_.empty(); });
      if (stopping_) return;
      work.swap(inbox_);
    }
    for (std::function<void()>& item : work) item();
    work.clear();
    if (Clock::now() >= next_tick_) Tick();
    ProposeAwaitingLeader();
    IssueReadIndex();
    ProcessReady();
    PublishStatus();
  }
}

void Node::Tick() {
  const auto now = Clock::now();
  const auto scheduled = next_tick_;
  next_tick_ += std::chrono::milliseconds(options_.tick_ms);
  // A loop that fell far behind (a paused process) does not fire a burst of ticks: that would
  // end every election timeout at once. The ticks are lost, so this member's timeouts (election,
  // check-quorum, leases) run late by that much: said in the log, as etcd warns of a late
  // heartbeat, since it explains a slow failover on an overloaded machine.
  if (next_tick_ < now) {
    spdlog::warn("member {:x}: loop fell {} ms behind its {} ms tick; ticks skipped (overloaded "
                 "machine or paused process)",
                 options_.id.value(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(now - scheduled).count(),
                 options_.tick_ms);
    next_tick_ = now + std::chrono::milliseconds(options_.tick_ms);
  }
  engine_->Tick();
  MaybeAdvanceInitialElectionTicks(now);
  ExpireWaiting(now);
  // A snapshot whose store Sync finished after the last Ready is taken now, not at the next
  // write, which may never come.
  if (!ready_at_disk_) MaybeSnapshot();

  const int64_t now_ms = MonotonicMs();
  MaybeAutoCompact(now_ms);

  // Lease expiry and checkpoints are decided by the leader's clock only, and replicated as
  // entries so that every replica deletes the same keys at the same revision.
  if (!engine_->is_leader()) return;
  for (int64_t lease_id : lessor_.Expired(now_ms)) {
    synodpb::Request request;
    request.mutable_lease_expire()->set_id(lease_id);
    ProposeOnLoop(0, request.SerializeAsString());
  }
  std::vector<kv::LeaseCheckpointDue> due = lessor_.CheckpointsDue(now_ms);
  if (!due.empty()) {
    synodpb::Request request;
    for (const kv::LeaseCheckpointDue& checkpoint : due) {
      synodpb::LeaseCheckpoint* added = request.mutable_lease_checkpoint()->add_checkpoints();
      added->set_id(checkpoint.id);
      added->set_remaining_ttl(checkpoint.remaining_ttl_s);
    }
    ProposeOnLoop(0, request.SerializeAsString());
  }
}

void Node::MaybeAutoCompact(int64_t now_ms) {
  if (auto_compactor_ == nullptr) return;
  const std::optional<int64_t> revision = auto_compactor_->Due(
      now_ms, static_cast<int64_t>(store_->current_revision().value()),
      static_cast<int64_t>(store_->compact_revision().value()), engine_->is_leader());
  if (!revision.has_value()) return;
  spdlog::info("member {:x}: auto-compaction at revision {}", options_.id.value(), *revision);
  synodpb::Request request;
  request.mutable_compaction()->set_revision(*revision);
  // The completion runs on this loop, or when a stopping node drops it; the weak pointer lets
  // it outlive the compactor.
  std::weak_ptr<AutoCompactor> compactor = auto_compactor_;
  ProposeAsync(std::move(request),
               ProposalDone([compactor, revision = *revision](Result<kv::CommandResult> result) {
                 const Status status = result.ok() ? result->status : result.status();
                 if (!status.ok()) {
                   spdlog::warn("auto-compaction at revision {} failed: {}", revision,
                                status.ToString());
                 }
                 if (std::shared_ptr<AutoCompactor> alive = compactor.lock()) {
                   alive->Finished(revision, status, MonotonicMs());
                 }
               }));
}

void Node::ProposeOnLoop(uint64_t request_id, std::string data) {
  auto fail = [&](Status status) {
    auto it = proposals_.find(request_id);
    if (it == proposals_.end()) return;
    it->second.done.Complete(std::move(status));
    proposals_.erase(it);
  };
  if (engine_->is_leader()) {
    auto position = engine_->Propose(std::move(data));
    if (position.ok()) return;
    if (absl::IsResourceExhausted(position.status())) {
      fail(TooManyRequestsError());
    } else {
      // Not the leader any more, or a leadership transfer is under way (thesis 3.10).
      fail(LeaderChangedError());
    }
    return;
  }
  const NodeId leader = engine_->leader();
  if (leader == kNoNode) {
    proposals_awaiting_leader_.push_back(
        ProposalAwaitingLeader{request_id, std::move(data), Clock::now() + LeaderWait()});
    return;
  }
  if (transport_ == nullptr) {
    fail(NoLeaderError());
    return;
  }
  transport_->SendForward(leader, std::move(data));
}

std::chrono::milliseconds Node::LeaderWait() const {
  return std::chrono::milliseconds(uint64_t{options_.tick_ms} * options_.election_timeout_ticks);
}

bool Node::LeaderKnown() const {
  return engine_->is_leader() || engine_->leader() != kNoNode;
}

void Node::ProposeAwaitingLeader() {
  if (proposals_awaiting_leader_.empty() || !LeaderKnown()) return;
  std::vector<ProposalAwaitingLeader> awaiting;
  awaiting.swap(proposals_awaiting_leader_);
  for (ProposalAwaitingLeader& proposal : awaiting) {
    // Its client may have been answered meanwhile (timed out, or "leader changed").
    if (proposal.request_id != 0 && !proposals_.contains(proposal.request_id)) continue;
    ProposeOnLoop(proposal.request_id, std::move(proposal.data));
  }
}

void Node::IssueReadIndex() {
  if (reads_unissued_.empty()) return;
  if (!LeaderKnown()) return;  // They wait (LeaderWait); ExpireWaiting ends the wait.
  const uint64_t context = next_read_context_++;
  Status status = engine_->ReadIndex(std::to_string(context));
  if (!status.ok()) {
    const Status error = absl::IsUnavailable(status) ? NoLeaderError() : TooManyRequestsError();
    for (PendingRead& read : reads_unissued_) read.done.Complete(error);
    reads_unissued_.clear();
    return;
  }
  reads_issued_.emplace(context, std::move(reads_unissued_));
  reads_unissued_.clear();
}

void Node::ProcessReady() {
  // A Ready with nothing to persist is finished at once, and its Advance may give the core more
  // to do (Multi-Paxos counts its own acceptances there, which may commit a slot): that Ready
  // is taken now, not at the loop's next wake-up, which may be a tick away. This ends: without
  // new input a core's Readies run dry (Advance only delivers the core's answers to itself).
  while (!ready_at_disk_ && engine_->HasReady()) StartReady();
}

void Node::StartReady() {
  EngineReady ready = engine_->TakeReady();
  NoteAppendedConfigs(ready.write);
  if (ready.soft_state && ready.soft_state->leader != known_leader_) {
    // A proposal forwarded to the old leader, or queued by it, may be lost; let its client
    // retry now instead of waiting out the request timeout. The outcome is unknown (it may
    // still commit), which an error answer allows, as etcd's "leader changed" does.
    // They are failed once this Ready's committed entries are applied (FinishReady), so that a
    // request committed in it still gets its answer: a removed leader steps down in the very
    // Ready that commits its removal.
    if (known_leader_ != kNoNode) fail_waiting_after_apply_ = true;
    known_leader_ = ready.soft_state->leader;
    spdlog::info("member {:x} ({}): leader is now {:x}, term {}", options_.id.value(),
                 raft::ToString(ready.soft_state->role), known_leader_.value(), engine_->term());
  }
  if (ready.soft_state) {
    if (ready.soft_state->role == raft::Role::kLeader) {
      if (!lessor_.primary()) lessor_.Promote(MonotonicMs());
    } else if (lessor_.primary()) {
      lessor_.Demote();
    }
  }
  for (PeerMessage& message : ready.early_messages) Send(std::move(message));
  ready.early_messages.clear();
  if (ready.write.installed_snapshot) {
    // Installed into the store before the message was stepped (StartSnapshotFetch).
    SYNOD_ASSERT_MSG(store_->applied_index() >= ready.write.installed_snapshot->index,
                     "snapshot at {} reached the core before the store (applied {})",
                     ready.write.installed_snapshot->index, store_->applied_index());
  }
  if (!ready.MustPersist()) {
    ready_at_disk_ = std::move(ready);
    FinishReady();
    return;
  }
  // Committed entries that this member's log already holds durably are applied while the write
  // is at the disk (a quorum has them durable too, so answering their clients now is safe):
  // in steady state that is all of them, the batch the leader wrote one Ready earlier, so a
  // client's answer no longer waits for a second fsync (Raft thesis 10.2.1).
  const size_t durable = DurableCommittedPrefix(ready.committed_entries, ready.write);
  if (durable > 0) {
    std::vector<raft::Entry> now(std::make_move_iterator(ready.committed_entries.begin()),
                                 std::make_move_iterator(ready.committed_entries.begin() +
                                                         static_cast<ptrdiff_t>(durable)));
    ready.committed_entries.erase(ready.committed_entries.begin(),
                                  ready.committed_entries.begin() +
                                      static_cast<ptrdiff_t>(durable));
    unapplied_.push_back(UnappliedReady{std::move(now), false});
  }
  storage::LogWrite write = std::move(ready.write);
  ready.write = {};
  ready_at_disk_ = std::move(ready);
  log_writer_->Submit(std::move(write), [this](Status status) {
    // On the storage thread. The completion must reach the loop even when the inbox is full,
    // so it bypasses the bound (there is at most one Ready at the disk).
    {
      std::lock_guard lock(inbox_mutex_);
      if (stopping_) return;
      inbox_.push_back([this, status = std::move(status)] { OnPersisted(status); });
    }
    inbox_changed_.notify_one();
  });
  ApplyUnapplied();
}

void Node::OnPersisted(Status status) {
  if (!status.ok()) FailStop(status);
  FinishReady();
}

void Node::FinishReady() {
  SYNOD_ASSERT(ready_at_disk_.has_value());
  EngineReady ready = std::move(*ready_at_disk_);
  ready_at_disk_.reset();
  for (PeerMessage& message : ready.messages) Send(std::move(message));
  unapplied_.push_back(
      UnappliedReady{std::move(ready.committed_entries),
                     std::exchange(fail_waiting_after_apply_, false)});
  for (raft::ReadState& read_state : ready.read_states) {
    uint64_t context = 0;
    if (!absl::SimpleAtoi(read_state.context, &context)) continue;
    auto it = reads_issued_.find(context);
    if (it == reads_issued_.end()) continue;
    // Read states arrive in increasing index order, but keep the queue sorted regardless.
    auto position = std::find_if(reads_confirmed_.begin(), reads_confirmed_.end(),
                                 [&](const ConfirmedReads& c) { return c.index > read_state.index; });
    reads_confirmed_.insert(position, ConfirmedReads{read_state.index, std::move(it->second)});
    reads_issued_.erase(it);
  }
  engine_->Advance();
  // Between Readys, as the core requires of SetSnapshot and CompactLog.
  MaybeSnapshot();
  // The committed entries are durable (in this member's log or a quorum's), so the next Ready's
  // write can go to the disk before they are applied: the store's write then overlaps that
  // fsync instead of holding it back. Whatever the next Ready holds applies after them
  // (unapplied_ is first in, first out).
  ProcessReady();
  ApplyUnapplied();
}

void Node::MaybeAdvanceInitialElectionTicks(Clock::time_point now) {
  if (!tick_advance_until_) return;
  const raft::Membership& membership = engine_->membership();
  size_t reachable = 1;  // This member.
  for (NodeId voter : membership.voters) {
    if (voter != options_.id && transport_->IsConnected(voter)) ++reachable;
  }
  if (reachable >= membership.voters.size() / 2 + 1) {
    // Two short, not one, as etcd: room for a leader's heartbeat that is on its way.
    const uint32_t ticks =
        options_.election_timeout_ticks > 2 ? options_.election_timeout_ticks - 2 : 0;
    for (uint32_t i = 0; i < ticks; ++i) engine_->Tick();
    spdlog::info("member {:x}: {} of {} voters reachable at boot; election clock advanced by {} "
                 "ticks",
                 options_.id.value(), reachable, membership.voters.size(), ticks);
    tick_advance_until_.reset();
  } else if (now >= *tick_advance_until_) {
    tick_advance_until_.reset();
  }
}

void Node::ApplyUnapplied() {
  while (!unapplied_.empty()) {
    UnappliedReady next = std::move(unapplied_.front());
    unapplied_.pop_front();
    ApplyCommitted(next.committed_entries);
    OnConfigEntriesApplied(next.committed_entries);
    if (next.fail_waiting_after_apply) FailAllWaiting(LeaderChangedError());
    ReleaseReads();
  }
}

void Node::ApplyCommitted(std::vector<raft::Entry>& entries) {
  if (entries.empty()) return;
  std::vector<std::string> membership_blobs;
  membership_blobs.reserve(entries.size());
  std::vector<kv::Entry> batch;
  for (size_t start = 0; start < entries.size(); start += kv::Store::kApplyEntriesMax) {
    const size_t end = std::min(entries.size(), start + kv::Store::kApplyEntriesMax);
    batch.clear();
    for (size_t i = start; i < end; ++i) {
      const raft::Entry& entry = entries[i];
      kv::Entry converted{entry.index, kv::Entry::Kind::kCommand, entry.data};
      if (entry.type == raft::EntryType::kEmpty) {
        converted.kind = kv::Entry::Kind::kNoOp;
      } else if (entry.type == raft::EntryType::kConfig) {
        // The store keeps the member records with the data they describe, so a snapshot carries
        // them (Raft 7; server/members.h).
        std::string& blob = membership_blobs.emplace_back(MembersBlobOf(entry));
        converted.kind = kv::Entry::Kind::kMembership;
        converted.data = blob;
      }
      batch.push_back(converted);
    }
    Result<std::vector<kv::CommandResult>> results;
    {
      std::unique_lock lock(store_mutex_);
      results = store_->Apply(batch, watch_hub_.AnyWantsPrevKv());
      // Still under the lock: a watcher registering now sees either the revision or its event.
      if (results.ok()) {
        for (const kv::CommandResult& result : *results) {
          if (!result.events.empty()) watch_hub_.Notify(result.revision, result.events);
        }
      }
    }
    if (!results.ok()) FailStop(results.status());
    for (kv::CommandResult& result : *results) {
      auto it = proposals_.find(result.request_id);
      if (result.request_id == 0 || it == proposals_.end()) continue;
      it->second.done.Complete(std::move(result));
      proposals_.erase(it);
    }
  }
}

void Node::ReleaseReads() {
  const Index applied = store_->applied_index();
  while (!reads_confirmed_.empty() && reads_confirmed_.front().index <= applied) {
    for (PendingRead& read : reads_confirmed_.front().reads) {
      read.done.Complete(absl::OkStatus());
    }
    reads_confirmed_.pop_front();
  }
}

void Node::MaybeSnapshot() {
  // Raft 7: the state machine is the snapshot; once it is durable at `index`, the log up to
  // there is no longer needed (but the core keeps a tail for followers that are slightly
  // behind).
  Index index = std::min(store_->applied_index(), engine_->applied());
  if (index <= engine_->snapshot_meta().index) return;
  if (index.distance_from(last_snapshot_index_) < options_.snapshot_count) return;
  // The store must be durable up to the snapshot before the log may drop what it covers. Its
  // flush runs on RocksDB's thread, so the loop does not wait on the disk (a flush of a
  // snapshot_count's worth of memtables takes a few hundred ms); each later Ready and tick
  // looks again.
  if (sync_started_at_ <= last_snapshot_index_) {
    if (Status status = store_->StartSync(); !status.ok()) FailStop(status);
    sync_started_at_ = index;
    return;
  }
  Result<Index> durable = store_->durable_applied_index();
  if (!durable.ok()) FailStop(durable.status());
  if (*durable < sync_started_at_) return;
  index = std::min(index, *durable);
  if (Status status = engine_->SetSnapshot(index); !status.ok()) {
    // Multi-Paxos takes no snapshot while a chosen configuration change is not yet in effect
    // above it (the α rule; consensus/multipaxos/multipaxos.h): the leader is filling the slots
    // up to there, and a later Ready snapshots instead, after a Sync that covers more.
    if (absl::IsFailedPrecondition(status)) {
      sync_started_at_ = last_snapshot_index_;
      return;
    }
    FailStop(status);
  }
  last_snapshot_index_ = index;
  storage::LogWrite write;
  write.compacted_to = engine_->snapshot_meta();
  log_writer_->Submit(std::move(write), [this](Status status) {
    if (!status.ok()) FailStop(status);
  });
  const uint64_t tail = std::max(options_.snapshot_catchup_entries, engine_->log_tail_min());
  if (index.value() > tail) engine_->CompactLog(index.minus(tail));
  spdlog::info("snapshot at index {}; log compacted", index);
}

void Node::StartSnapshotFetch(PeerMessage message, Index index) {
  // One fetch at a time; the leader resends the snapshot until it is acknowledged.
  if (snapshot_fetch_running_ || transport_ == nullptr) return;
  if (snapshot_fetch_thread_.joinable()) snapshot_fetch_thread_.join();
  snapshot_fetch_running_ = true;
  snapshot_fetch_thread_ = std::thread([this, index, message = std::move(message)]() mutable {
    const NodeId from = SenderOf(message);
    spdlog::info("fetching a snapshot at index >= {} from member {:x}", index, from.value());
    auto installer = storage::SnapshotInstaller::Start(store_->dir());
    Status status = installer.status();
    if (status.ok()) {
      status = transport_->FetchSnapshot(
          from, index,
          [&](std::string_view chunk) -> Status {
            {
              std::lock_guard lock(inbox_mutex_);
              if (stopping_) return absl::CancelledError("server stopping");
            }
            return (*installer)->Add(chunk);
          },
          kSnapshotFetchTimeout);
    }
    if (status.ok()) status = (*installer)->Finish();
    if (status.ok() && (*installer)->applied_index() < index) {
      status = absl::FailedPreconditionError("the fetched snapshot is older than announced");
    }
    auto finished = std::make_shared<Result<std::unique_ptr<storage::SnapshotInstaller>>>(
        status.ok() ? Result<std::unique_ptr<storage::SnapshotInstaller>>(std::move(*installer))
                    : Result<std::unique_ptr<storage::SnapshotInstaller>>(status));
    std::lock_guard lock(inbox_mutex_);
    if (stopping_) return;
    inbox_.push_back([this, finished, message = std::move(message)]() mutable {
      snapshot_fetch_running_ = false;
      if (!finished->ok()) {
        spdlog::warn("snapshot fetch failed: {}", finished->status().ToString());
        return;
      }
      // The log may have brought the store further while the snapshot came (a Multi-Paxos
      // follower learns chosen values and accepts in the leader's ballot meanwhile): installing
      // it then would roll back entries the core counts as applied and never hands out again.
      if ((**finished)->applied_index() <= store_->applied_index()) {
        spdlog::info("dropped a fetched snapshot at {}: the store has applied up to {}",
                     (**finished)->applied_index(), store_->applied_index());
        if (Status status = engine_->Step(std::move(message)); !status.ok()) {
          spdlog::debug("dropped a peer message: {}", status.ToString());
        }
        return;
      }
      {
        std::unique_lock lock(store_mutex_);
        // Serving a snapshot ourselves; try again later. Checked under the exclusive lock,
        // because sources are counted under the shared one.
        if (snapshot_sources_ > 0) return;
        if (Status status = store_->InstallSnapshot(std::move(**finished)); !status.ok()) {
          FailStop(status);
        }
        watch_hub_.MarkAllUnsynced();
      }
      spdlog::info("installed a snapshot; the store has applied up to {}",
                   store_->applied_index());
      LoadMembers();
      if (Status status = engine_->Step(std::move(message)); !status.ok()) {
        spdlog::warn("the core refused the snapshot message: {}", status.ToString());
      }
    });
    inbox_changed_.notify_one();
  });
}

void Node::Send(PeerMessage message) {
  if (transport_ != nullptr) transport_->Send(std::move(message));
}

void Node::ExpireWaiting(Clock::time_point now) {
  // A waiting thread has given up by itself at the deadline; a callback handler is answered
  // only here.
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    it->second.done.Complete(RequestTimedOutError());
    it = proposals_.erase(it);
  }
  auto expire_reads = [&](std::vector<PendingRead>& reads) {
    std::erase_if(reads, [&](PendingRead& read) {
      if (read.deadline > now) return false;
      read.done.Complete(RequestTimedOutError());
      return true;
    });
  };
  // Those waiting for a leader, unless one is known now: they go out this loop turn.
  if (!LeaderKnown()) ExpireLeaderWaits(now);
  for (auto& [context, reads] : reads_issued_) expire_reads(reads);
  std::erase_if(reads_issued_, [](auto& item) { return item.second.empty(); });
  for (ConfirmedReads& confirmed : reads_confirmed_) expire_reads(confirmed.reads);
  std::erase_if(reads_confirmed_, [](const ConfirmedReads& c) { return c.reads.empty(); });
}

void Node::ExpireLeaderWaits(Clock::time_point now) {
  std::erase_if(proposals_awaiting_leader_, [&](const ProposalAwaitingLeader& proposal) {
    if (proposal.leader_wait_end > now) return false;
    auto it = proposals_.find(proposal.request_id);
    if (it != proposals_.end()) {
      it->second.done.Complete(NoLeaderError());
      proposals_.erase(it);
    }
    return true;
  });
  std::erase_if(reads_unissued_, [&](PendingRead& read) {
    if (read.leader_wait_end > now) return false;
    read.done.Complete(NoLeaderError());
    return true;
  });
}

void Node::FailAllWaiting(const Status& status) {
  for (auto& [id, proposal] : proposals_) proposal.done.Complete(status);
  proposals_.clear();
  proposals_awaiting_leader_.clear();
  for (PendingRead& read : reads_unissued_) read.done.Complete(status);
  reads_unissued_.clear();
  for (auto& [context, reads] : reads_issued_) {
    for (PendingRead& read : reads) read.done.Complete(status);
  }
  reads_issued_.clear();
  for (ConfirmedReads& confirmed : reads_confirmed_) {
    for (PendingRead& read : confirmed.reads) read.done.Complete(status);
  }
  reads_confirmed_.clear();
}

void Node::PublishStatus() {
  std::lock_guard lock(status_mutex_);
  status_.id = options_.id;
  status_.leader = engine_->leader();
  status_.role = engine_->role();
  status_.term = engine_->term();
  status_.commit = engine_->commit();
  status_.applied = store_->applied_index();
  if (status_.membership != engine_->membership()) status_.membership = engine_->membership();
}

void Node::FailStop(const Status& status) {
  spdlog::critical("storage failure, stopping so that nothing unsynced is acknowledged: {}",
                   status.ToString());
  spdlog::default_logger()->flush();
  std::_Exit(EXIT_FAILURE);
}

}  // namespace synod::server
