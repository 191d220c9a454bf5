#include "kv/lessor.h"

#include <algorithm>

#include "base/assert.h"
#include "kv/errors.h"

namespace synod::kv {

Lessor::Lessor(LessorConfig config) : config_(config) {
  SYNOD_ASSERT(config_.checkpoint_interval_ms > 0);
  SYNOD_ASSERT(config_.expired_retry_ms > 0);
  SYNOD_ASSERT(config_.expired_per_call_max > 0);
  SYNOD_ASSERT(config_.checkpoints_per_call_max > 0);
}

void Lessor::Reset(const std::vector<LeaseState>& leases) {
  leases_.clear();
  deadlines_.clear();
  checkpoints_.clear();
  unstarted_.clear();
  for (const LeaseState& state : leases) {
    SYNOD_ASSERT(state.id != 0);
    auto [it, inserted] = leases_.emplace(state.id, Lease{});
    SYNOD_ASSERT_MSG(inserted, "lease {} twice", state.id);
    it->second.ttl_s = state.ttl_s;
    it->second.remaining_ttl_s = state.remaining_ttl_s;
    if (primary_) unstarted_.insert(state.id);
  }
}

void Lessor::Granted(int64_t id, int64_t ttl_s) {
  SYNOD_ASSERT(id != 0);
  SYNOD_ASSERT(ttl_s > 0);
  auto [it, inserted] = leases_.emplace(id, Lease{});
  SYNOD_ASSERT_MSG(inserted, "lease {} granted twice (the store rejects duplicates)", id);
  it->second.ttl_s = ttl_s;
  if (primary_) unstarted_.insert(id);
}

void Lessor::Revoked(int64_t id) {
  auto it = leases_.find(id);
  SYNOD_ASSERT_MSG(it != leases_.end(), "revoked lease {} is unknown", id);
  ClearTimers(id, it->second);
  unstarted_.erase(id);
  leases_.erase(it);
}

void Lessor::Checkpointed(int64_t id, int64_t remaining_ttl_s) {
  SYNOD_ASSERT(remaining_ttl_s >= 0);
  auto it = leases_.find(id);
  SYNOD_ASSERT_MSG(it != leases_.end(), "checkpointed lease {} is unknown", id);
  // Only recorded for a future leader; this leader's own deadline stays the truth.
  it->second.remaining_ttl_s = remaining_ttl_s;
}

void Lessor::Start(int64_t id, Lease& lease, int64_t now_ms, int64_t ttl_ms) {
  SYNOD_ASSERT(primary_);
  SetDeadline(id, lease, now_ms + ttl_ms);
  // Only a lease that outlives a checkpoint interval needs checkpoints (etcd 3.4).
  SetCheckpoint(id, lease,
                ttl_ms > config_.checkpoint_interval_ms
                    ? std::optional<int64_t>(now_ms + config_.checkpoint_interval_ms)
                    : std::nullopt);
}

void Lessor::ClearTimers(int64_t id, Lease& lease) {
  SetDeadline(id, lease, std::nullopt);
  SetCheckpoint(id, lease, std::nullopt);
  lease.reset_checkpoint = false;
}

void Lessor::SetDeadline(int64_t id, Lease& lease, std::optional<int64_t> deadline_ms) {
  if (lease.deadline_ms.has_value()) {
    SYNOD_ASSERT(deadlines_.erase({*lease.deadline_ms, id}) == 1);
  }
  lease.deadline_ms = deadline_ms;
  if (deadline_ms.has_value()) SYNOD_ASSERT(deadlines_.insert({*deadline_ms, id}).second);
}

void Lessor::SetCheckpoint(int64_t id, Lease& lease, std::optional<int64_t> checkpoint_ms) {
  if (lease.checkpoint_ms.has_value()) {
    SYNOD_ASSERT(checkpoints_.erase({*lease.checkpoint_ms, id}) == 1);
  }
  lease.checkpoint_ms = checkpoint_ms;
  if (checkpoint_ms.has_value()) SYNOD_ASSERT(checkpoints_.insert({*checkpoint_ms, id}).second);
}

// Starts the leases granted (or reset) since the last call that knew the time.
void Lessor::Settle(int64_t now_ms) {
  SYNOD_ASSERT_MSG(now_ms >= last_now_ms_, "monotonic clock ran backwards: {} after {}", now_ms,
                   last_now_ms_);
  last_now_ms_ = now_ms;
  if (!primary_) {
    SYNOD_ASSERT(unstarted_.empty());
    return;
  }
  for (int64_t id : unstarted_) {
    auto it = leases_.find(id);
    SYNOD_ASSERT(it != leases_.end());
    const int64_t ttl_s =
        it->second.remaining_ttl_s > 0 ? it->second.remaining_ttl_s : it->second.ttl_s;
    Start(id, it->second, now_ms, ttl_s * 1000);
  }
  unstarted_.clear();
}

void Lessor::Promote(int64_t now_ms) {
  primary_ = true;
  for (auto& [id, lease] : leases_) {
    ClearTimers(id, lease);
    unstarted_.insert(id);
  }
  Settle(now_ms);
}

void Lessor::Demote() {
  primary_ = false;
  for (auto& [id, lease] : leases_) ClearTimers(id, lease);
  unstarted_.clear();
  SYNOD_ASSERT(deadlines_.empty());
  SYNOD_ASSERT(checkpoints_.empty());
}

Result<int64_t> Lessor::Renew(int64_t id, int64_t now_ms) {
  Settle(now_ms);
  if (!primary_) return absl::FailedPreconditionError("lessor: not the primary (leader)");
  auto it = leases_.find(id);
  if (it == leases_.end()) return LeaseNotFoundError();
  Lease& lease = it->second;
  SYNOD_ASSERT(lease.deadline_ms.has_value());
  // An expired lease is as good as gone: its LeaseExpire is (or will be) proposed. etcd waits
  // for the revocation and then answers "not found"; we answer at once.
  if (*lease.deadline_ms <= now_ms) return LeaseNotFoundError();
  Start(id, lease, now_ms, lease.ttl_s * 1000);
  // A checkpointed remaining TTL is stale now: clear it, so that a new leader grants the full
  // TTL again (etcd 3.4 proposes a checkpoint of 0 on renewal for the same reason).
  if (lease.remaining_ttl_s > 0) {
    lease.reset_checkpoint = true;
    SetCheckpoint(id, lease, now_ms);
  }
  return lease.ttl_s;
}

std::vector<int64_t> Lessor::Expired(int64_t now_ms) {
  Settle(now_ms);
  std::vector<int64_t> expired;
  if (!primary_) return expired;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_ms &&
         expired.size() < config_.expired_per_call_max) {
    const int64_t id = deadlines_.begin()->second;
    Lease& lease = leases_.at(id);
    expired.push_back(id);
    // Reported once per retry interval until the store revokes it (Revoked).
    SetDeadline(id, lease, now_ms + config_.expired_retry_ms);
    SetCheckpoint(id, lease, std::nullopt);
  }
  SYNOD_ASSERT(expired.size() <= config_.expired_per_call_max);
  return expired;
}

std::vector<LeaseCheckpointDue> Lessor::CheckpointsDue(int64_t now_ms) {
  Settle(now_ms);
  std::vector<LeaseCheckpointDue> due;
  if (!primary_) return due;
  while (!checkpoints_.empty() && checkpoints_.begin()->first <= now_ms &&
         due.size() < config_.checkpoints_per_call_max) {
    const int64_t id = checkpoints_.begin()->second;
    Lease& lease = leases_.at(id);
    SYNOD_ASSERT(lease.deadline_ms.has_value());
    const int64_t remaining_ms = std::max<int64_t>(*lease.deadline_ms - now_ms, 0);
    if (lease.reset_checkpoint) {
      due.push_back({id, 0});
      lease.reset_checkpoint = false;
    } else {
      // Rounded up: a new leader must never end the lease earlier than this one would.
      due.push_back({id, (remaining_ms + 999) / 1000});
    }
    SetCheckpoint(id, lease,
                  remaining_ms > config_.checkpoint_interval_ms
                      ? std::optional<int64_t>(now_ms + config_.checkpoint_interval_ms)
                      : std::nullopt);
  }
  SYNOD_ASSERT(due.size() <= config_.checkpoints_per_call_max);
  return due;
}

std::optional<int64_t> Lessor::RemainingMs(int64_t id, int64_t now_ms) {
  Settle(now_ms);
  if (!primary_) return std::nullopt;
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  SYNOD_ASSERT(it->second.deadline_ms.has_value());
  return std::max<int64_t>(*it->second.deadline_ms - now_ms, 0);
}

void Lessor::CheckInvariants() const {
  size_t with_deadline = 0, with_checkpoint = 0;
  for (const auto& [id, lease] : leases_) {
    SYNOD_ASSERT(id != 0);
    SYNOD_ASSERT(lease.ttl_s > 0);
    SYNOD_ASSERT(lease.remaining_ttl_s >= 0);
    if (!primary_) SYNOD_ASSERT(!lease.deadline_ms.has_value());
    if (primary_ && !unstarted_.contains(id)) SYNOD_ASSERT(lease.deadline_ms.has_value());
    if (lease.deadline_ms.has_value()) {
      SYNOD_ASSERT(deadlines_.contains({*lease.deadline_ms, id}));
      ++with_deadline;
    }
    if (lease.checkpoint_ms.has_value()) {
      SYNOD_ASSERT(checkpoints_.contains({*lease.checkpoint_ms, id}));
      ++with_checkpoint;
    }
  }
  SYNOD_ASSERT(deadlines_.size() == with_deadline);
  SYNOD_ASSERT(checkpoints_.size() == with_checkpoint);
  for (int64_t id : unstarted_) SYNOD_ASSERT(leases_.contains(id));
}

}  // namespace synod::kv
