#pragma once

// The leader-side lease timers (etcd's lessor, minus everything that must be replicated).
//
// What is replicated lives in the Store: which leases exist, their granted TTL, the remaining TTL
// as last checkpointed, and their keys; applying an entry never looks at a clock. What is not
// replicated lives here: when each lease expires. Only the leader's Lessor is "primary" and
// decides expiry, by proposing LeaseExpire entries; when a lease is applied as expired, every
// replica deletes it and its keys at one revision. Now and then the leader proposes
// LeaseCheckpoint entries with the remaining TTLs, so that a new leader resumes each lease where
// the old one left it instead of granting a full TTL again (etcd 3.4's lease checkpointing).
//
// A pure class: every method that needs the time takes `now_ms`, a monotonic clock in
// milliseconds passed in by the caller; no clock is read inside, so the simulator drives it with
// simulated time. Not thread-safe; the event loop owns it.
//
// Keeping it in step: the Store calls Reset / Granted / Revoked / Checkpointed on every replica in
// apply order (Store::AttachLessor). The leader's event loop calls Promote / Demote on role
// changes, Renew for keepalives, and Expired / CheckpointsDue on every tick, proposing what they
// return.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "base/status.h"

namespace synod::kv {

// One lease as replicated state describes it.
struct LeaseState {
  int64_t id = 0;
  int64_t ttl_s = 0;
  // The remaining TTL as last checkpointed; 0 means "none since the last grant or renewal",
  // and a new leader then starts the lease with its full TTL (etcd's convention).
  int64_t remaining_ttl_s = 0;
};

struct LeaseCheckpointDue {
  int64_t id = 0;
  int64_t remaining_ttl_s = 0;
};

struct LessorConfig {
  // A lease whose remaining TTL is longer than this is checkpointed this often (etcd:
  // leaseCheckpointInterval, 5 minutes); shorter leases never need one.
  int64_t checkpoint_interval_ms = 5 * 60 * 1000;
  // A lease reported by Expired is reported again after this long if it is still there (its
  // LeaseExpire proposal may have been lost in a leader change). etcd: expiredLeaseRetryInterval.
  int64_t expired_retry_ms = 3000;
  // Bounds on what one call returns, so one tick proposes a bounded amount (etcd revokes at most
  // 1000 leases per second and checkpoints at most 1000 per batch).
  size_t expired_per_call_max = 100;
  size_t checkpoints_per_call_max = 1000;
};

class Lessor {
 public:
  explicit Lessor(LessorConfig config = {});

  // --- Replicated changes, in apply order, on every replica ---------------------------------
  // Replaces everything (store opened or snapshot installed). A primary lessor resumes at the
  // next call that passes `now` as if just promoted.
  void Reset(const std::vector<LeaseState>& leases);
  void Granted(int64_t id, int64_t ttl_s);
  void Revoked(int64_t id);
  void Checkpointed(int64_t id, int64_t remaining_ttl_s);

  // --- Leader side ---------------------------------------------------------------------------
  // Becoming leader: each lease's deadline is now + its checkpointed remaining TTL (or its full
  // TTL when it has none), so a lease keeps its remaining time across a leader change.
  void Promote(int64_t now_ms);
  // No longer leader: forget every deadline; only the leader's clock decides expiry.
  void Demote();
  bool primary() const { return primary_; }

  // A keepalive: the lease lives a full TTL from now. Returns the TTL in seconds.
  // FailedPrecondition when not primary; NotFound (etcd's "requested lease not found") for an
  // unknown or already expired lease.
  Result<int64_t> Renew(int64_t id, int64_t now_ms);

  // Leases whose deadline has passed, to propose as LeaseExpire: ordered by deadline then id,
  // at most expired_per_call_max. Empty when not primary.
  std::vector<int64_t> Expired(int64_t now_ms);
  // Remaining TTLs to propose as one LeaseCheckpoint entry: ordered by due time then id, at most
  // checkpoints_per_call_max. Empty when not primary.
  std::vector<LeaseCheckpointDue> CheckpointsDue(int64_t now_ms);

  // Milliseconds until the lease expires by this leader's clock; nullopt when not primary or
  // the lease is unknown. For TimeToLive on the leader.
  std::optional<int64_t> RemainingMs(int64_t id, int64_t now_ms);

  size_t size() const { return leases_.size(); }
  // Checks the internal invariants; for tests and the simulator.
  void CheckInvariants() const;

 private:
  struct Lease {
    int64_t ttl_s = 0;
    int64_t remaining_ttl_s = 0;  // As last checkpointed.
    // Primary only. Invariant: deadline and checkpoint times are in the sets below exactly
    // when set. A lease granted while primary has no deadline until the next call with `now`
    // (apply has no clock); it then runs from that moment, so it never ends early.
    std::optional<int64_t> deadline_ms;
    std::optional<int64_t> checkpoint_ms;
    bool reset_checkpoint = false;  // Renewed: propose remaining 0 to clear the checkpoint.
  };

  void Settle(int64_t now_ms);
  void Start(int64_t id, Lease& lease, int64_t now_ms, int64_t ttl_ms);
  void ClearTimers(int64_t id, Lease& lease);
  void SetDeadline(int64_t id, Lease& lease, std::optional<int64_t> deadline_ms);
  void SetCheckpoint(int64_t id, Lease& lease, std::optional<int64_t> checkpoint_ms);

  LessorConfig config_;
  bool primary_ = false;
  std::map<int64_t, Lease> leases_;
  std::set<std::pair<int64_t, int64_t>> deadlines_;    // (deadline_ms, id)
  std::set<std::pair<int64_t, int64_t>> checkpoints_;  // (checkpoint_ms, id)
  std::set<int64_t> unstarted_;      // Primary: granted since the last call with `now`.
  int64_t last_now_ms_ = INT64_MIN;  // Invariant: the clock never runs backwards.
};

}  // namespace synod::kv
