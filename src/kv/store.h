#pragma once

// The replicated state machine: etcd v3's multi-version key-value store (MVCC keyspace,
// revisions, transactions, compaction, leases) on the storage backend.
//
// Determinism: Apply reads no clock, draws no random number and iterates no unordered
// container; everything it does depends only on the stored state and the entries. The same
// entries therefore produce byte-identical state and responses on every replica (HashKV checks
// that across replicas).
//
// Data model (etcd 3.4, mvcc/kvstore*.go and etcdserver/apply.go):
// - One store revision, rising by one per write transaction: a Put, a DeleteRange that deletes
//   something, a Txn whose chosen branch writes, a lease revocation/expiry that deletes keys.
//   A transaction's changes share the main revision and have increasing sub-revisions. A new
//   store is at revision 1, so the first write gets revision 2, as in etcd.
// - Per key: create_revision, mod_revision, version (1 on creation, +1 per put; a delete ends the
//   key's generation, and a re-create starts again at version 1 with a new create_revision).
// - Compaction at R keeps, for every key, its newest revision at or below R (dropped too if that
//   is a delete) and everything above R.
//
// Durability and restart: one backend commit per Apply call carries the data, the new applied
// index and the membership (storage/backend.h), so after a crash the store resumes at a
// consistent applied index and replays the rest of the log; entries at or below the applied index
// are skipped. The Raft log may be truncated only up to an index the store has made durable:
// Sync() returns once every applied entry is, and durable_applied_index() tells how far a
// StartSync() has got (Node::MaybeSnapshot snapshots at that index).
//
// Threads: not thread-safe. One thread (the apply loop) owns the store; reads are served by the
// same thread, or the server adds the locking.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "etcd/mvccpb/kv.pb.h"
#include "kv/key_index.h"
#include "kv/lessor.h"
#include "storage/backend.h"
#include "synod/request.pb.h"

namespace synod::kv {

namespace internal {
struct ApplyState;  // store.cc
}  // namespace internal

// One committed Raft entry, as Apply takes it.
struct Entry {
  enum class Kind { kCommand, kNoOp, kMembership };
  Index index;
  Kind kind = Kind::kCommand;
  // kCommand: a serialized synodpb::Request. kMembership: an opaque blob the store keeps as the
  // backend's membership. kNoOp: ignored.
  std::string_view data;
};

// The etcd response of one command. LeaseExpire answers with a LeaseRevokeResponse.
using Response =
    std::variant<std::monostate, etcdserverpb::PutResponse, etcdserverpb::DeleteRangeResponse,
                 etcdserverpb::TxnResponse, etcdserverpb::CompactionResponse,
                 etcdserverpb::LeaseGrantResponse, etcdserverpb::LeaseRevokeResponse,
                 etcdserverpb::LeaseCheckpointResponse, etcdserverpb::AlarmResponse>;

struct CommandResult {
  Index index;
  // The Request's id, echoed so the proposing node finds the waiting client.
  uint64_t request_id = 0;
  // etcd's error when the command failed; then nothing of it was applied and `response` is
  // empty. Only the response header's revision is filled in; cluster id, member id and term are
  // the server's.
  Status status;
  Response response;
  // The store revision after this command.
  Revision revision;
  // The changes it made, in order, for the watch hub. Deletes carry the key and the deleting
  // revision as mod_revision (as etcd's watch events do); with Apply's events_with_prev_kv,
  // every event carries prev_kv when the key existed before, so the hub can serve watchers
  // that ask for it.
  std::vector<mvccpb::Event> events;
};

struct StoreOptions {
  // etcd raises a granted TTL below its minimum to the minimum (lessor.Grant); ours is a fixed
  // option rather than derived from the election timeout. Must be equal on every replica.
  int64_t lease_ttl_min_s = 2;
};

// The checks etcd's gRPC layer makes before proposing (v3rpc/key.go): empty keys, ignore_value
// with a value, ignore_lease with a lease, too many operations in a Txn, the same key written
// twice in a Txn. Pure; Apply runs it again (deterministically) so that an entry that skipped it
// cannot break the store.
Status ValidateRequest(const synodpb::Request& request);

struct LeaseInfo {
  int64_t id = 0;
  int64_t granted_ttl_s = 0;
  // As last checkpointed; the granted TTL when never checkpointed. The leader's Lessor knows
  // better (Lessor::RemainingMs).
  int64_t remaining_ttl_s = 0;
  std::vector<std::string> keys;  // In key order; only when asked for.
};

class Store {
 public:
  // Limits. etcd's defaults where etcd has one.
  static constexpr size_t kApplyEntriesMax = 10000;
  static constexpr size_t kTxnOpsMax = 128;                 // etcd --max-txn-ops
  static constexpr int64_t kLeaseTtlMax_s = 9'000'000'000;  // etcd lease.MaxLeaseTTL
  static constexpr size_t kLeaseCheckpointsMax = 1000;      // etcd maxLeaseCheckpointBatchSize
  static constexpr size_t kEventsPerCallMax = 100000;

  // Opens (or creates) the store in `dir`, restoring revision, compacted revision, leases and
  // applied index.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies committed entries in order; entries at or below applied_index() are skipped. One
  // backend commit for the whole call. Returns one result per applied command. An error
  // (storage failure) means nothing of the call was applied and the store refuses every later
  // Apply: reopen and replay. Preconditions: entries in increasing index order, at most
  // kApplyEntriesMax. Without `events_with_prev_kv` the results' events carry no prev_kv, and a
  // put reads no previous value unless its request needs it (the server passes false when no
  // watcher asked for prev_kv, as etcd reads a previous value only for such a watcher).
  Result<std::vector<CommandResult>> Apply(std::span<const Entry> entries,
                                           bool events_with_prev_kv = true);
  // Makes every applied entry durable (storage::Backend::Sync).
  Status Sync();
  // Sync in the background (storage::Backend::StartSync), and what it has made durable so far.
  Status StartSync();
  Result<Index> durable_applied_index() const;
  // Bytes of applied entries held in memory only until the next Sync or automatic flush
  // (storage::Backend::memtable_bytes); the quota adds them to the files' size.
  int64_t unflushed_bytes() const;
  // Frees the space of compacted and overwritten rows (storage::Backend::Defragment). Safe
  // beside reads; the server runs it under the shared lock.
  Status Defragment() const;

  Index applied_index() const;
  Revision current_revision() const { return Revision(static_cast<uint64_t>(current_rev_)); }
  // 0 when never compacted.
  Revision compact_revision() const { return Revision(static_cast<uint64_t>(compact_rev_)); }
  const std::string& membership() const;
  // The raised alarms, ordered by member id then type. While NOSPACE is among them, Apply
  // refuses what etcd's capped applier refuses (puts, transactions that write, lease grants)
  // with NoSpaceError; deletes, compaction and reads still work, so space can be freed.
  const std::vector<etcdserverpb::AlarmMember>& alarms() const { return alarms_; }
  const std::string& dir() const { return dir_; }

  // --- Reads of the applied state ------------------------------------------------------------
  // etcd's Range, at the latest revision or at request.revision.
  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request) const;
  // The same, read from memory only (storage::MemoryReader): where a row is only on disk it
  // fails with Unavailable instead of waiting for the disk, and the caller reads with Range on
  // a thread that may wait.
  Result<etcdserverpb::RangeResponse> RangeInMemory(
      const etcdserverpb::RangeRequest& request) const;

  // The history of [key, range_end) from start_revision on, in revision order, for watch
  // replay: at most events_max events, but never a revision cut in two. `next_revision` is where
  // to continue (current_revision()+1 when everything was returned). Fails with the compacted
  // error when start_revision < compact_revision() (etcd cancels a watcher whose start is below
  // the compacted revision; a start exactly at it is served, though its deletes at that
  // revision are gone, as in etcd). range_end follows Range's rules ("" one key, "\0" all keys
  // >= key). With prev_kv, each event carries the key's previous value when it is still stored.
  struct EventsPage {
    std::vector<mvccpb::Event> events;
    Revision next_revision;
  };
  Result<EventsPage> EventsSince(std::string_view key, std::string_view range_end,
                                 Revision start_revision, size_t events_max,
                                 bool prev_kv = false) const;

  // A CRC32C of every stored key revision at or below `revision` (0: the current one), for
  // HashKV: equal on every replica that applied the same entries. Errors as Range's.
  struct Hash {
    uint32_t hash = 0;
    Revision revision;  // The store's current revision.
    Revision compact_revision;
  };
  Result<Hash> HashKV(Revision revision) const;

  // NotFound ("requested lease not found") for an unknown lease; the server answers etcd's
  // TTL -1 for that.
  Result<LeaseInfo> TimeToLive(int64_t id, bool keys) const;
  // Every lease, in id order, without keys.
  Result<std::vector<LeaseInfo>> Leases() const;

  // Keeps `lessor` in step: filled with the current leases now, then told of every grant,
  // revocation and checkpoint as it is applied (after the commit). nullptr detaches. The lessor
  // must outlive the store or be detached.
  Status AttachLessor(Lessor* lessor);

  // Compares the in-memory key index (kv/key_index.h) with the one the stored history gives:
  // Internal when they disagree. For tests; it reads every row.
  Status CheckKeyIndex() const;

  // --- Snapshots ---------------------------------------------------------------------------
  // A point-in-time snapshot of the whole store as a chunk stream (storage/backend.h).
  Result<std::unique_ptr<storage::SnapshotReader>> ReadSnapshot(
      size_t chunk_bytes_max = storage::kSnapshotChunkBytesDefault) const;
  // A point-in-time view of the whole store for readers that need one consistent state
  // without holding up Apply (the etcd snapshot export, kv/etcd_backup.h): the tables laid out
  // as key_codec.h describes. It must not outlive the store, and InstallSnapshot must not run
  // while it lives.
  Result<std::unique_ptr<storage::SnapshotView>> ReadView() const;
  // Replaces the whole store by a finished snapshot (storage::SnapshotInstaller::Start(dir())
  // built it) and reloads; the attached lessor is reset. On error the store is closed and
  // refuses everything: reopen it with Open, which finds the old or the new state.
  Status InstallSnapshot(std::unique_ptr<storage::SnapshotInstaller> installer);

 private:
  Store() = default;
  Status Load();
  Status CheckUsable() const;
  // Range and RangeInMemory: Range's checks, then the read through `reader` (the backend, or
  // its memory-only reader).
  Result<etcdserverpb::RangeResponse> RangeThrough(const storage::Reader& reader,
                                                   const etcdserverpb::RangeRequest& request) const;
  Status ApplyCommand(storage::WriteBatch& batch, internal::ApplyState& state, const Entry& entry,
                      CommandResult& result);
  Status ApplyRequest(storage::WriteBatch& batch, internal::ApplyState& state,
                      const synodpb::Request& request, CommandResult& result);

  std::string dir_;
  StoreOptions options_;
  std::unique_ptr<storage::Backend> backend_;
  Status failed_;  // Not OK after a failed commit or install: fail-stop.
  // Invariant: equal to what the backend stores in the meta table, between Apply calls.
  int64_t current_rev_ = 1;
  int64_t compact_rev_ = 0;
  std::vector<etcdserverpb::AlarmMember> alarms_;  // Invariant: as stored in the meta table.
  // Invariant: the stored history of every key, plus the changes of the command Apply is
  // running.
  KeyIndex index_;
  Lessor* lessor_ = nullptr;
};

}  // namespace synod::kv
