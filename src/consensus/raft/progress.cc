#include "consensus/raft/progress.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::raft {

Progress::Progress(Index next, uint32_t inflight_max, bool is_learner)
    : next_(next), is_learner_(is_learner), inflight_max_(inflight_max) {
  SYNOD_ASSERT(next > Index(0));
  SYNOD_ASSERT(inflight_max > 0);
}

bool Progress::IsPaused() const {
  switch (state_) {
    case State::kProbe:
      return probe_sent_;
    case State::kReplicate:
      return inflight_.size() >= inflight_max_;
    case State::kSnapshot:
      return true;
  }
  return true;
}

void Progress::BecomeProbe() {
  // After a snapshot the follower holds at least the snapshot's index even if it has not said
  // so yet; probing below it would only make it ask for the snapshot again.
  if (state_ == State::kSnapshot) {
    next_ = std::max(match_.next(), pending_snapshot_.next());
  } else {
    next_ = match_.next();
  }
  state_ = State::kProbe;
  probe_sent_ = false;
  inflight_.clear();
  pending_snapshot_ = Index(0);
}

void Progress::BecomeReplicate() {
  state_ = State::kReplicate;
  next_ = match_.next();
  probe_sent_ = false;
  inflight_.clear();
  pending_snapshot_ = Index(0);
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state_ = State::kSnapshot;
  pending_snapshot_ = snapshot_index;
  snapshot_elapsed_ticks_ = 0;
  probe_sent_ = false;
  inflight_.clear();
}

void Progress::SentEntries(Index last_index) {
  SYNOD_ASSERT(last_index >= next_);
  switch (state_) {
    case State::kReplicate:
      SYNOD_ASSERT(inflight_.size() < inflight_max_);
      SYNOD_ASSERT(inflight_.empty() || inflight_.back() < last_index);
      next_ = last_index.next();
      inflight_.push_back(last_index);
      break;
    case State::kProbe:
      probe_sent_ = true;
      break;
    case State::kSnapshot:
      SYNOD_ASSERT_MSG(false, "entries sent to a follower waiting for a snapshot");
  }
}

void Progress::SentProbe() {
  if (state_ == State::kProbe) probe_sent_ = true;
}

bool Progress::MaybeUpdate(Index index) {
  bool updated = false;
  if (index > match_) {
    match_ = index;
    probe_sent_ = false;
    updated = true;
  }
  next_ = std::max(next_, index.next());
  while (!inflight_.empty() && inflight_.front() <= index) inflight_.pop_front();
  SYNOD_ASSERT(match_ < next_);
  return updated;
}

bool Progress::MaybeDecrease(Index rejected, Index retry_after) {
  switch (state_) {
    case State::kReplicate:
      // Everything up to match is known to be in the follower's log, so a rejection at or
      // below it answers an AppendEntries sent before the follower caught up.
      if (rejected <= match_) return false;
      BecomeProbe();
      return true;
    case State::kProbe:
      // Only the answer to the outstanding probe may move next; anything else is stale.
      if (rejected != next_.prev()) return false;
      next_ = std::max(std::min(rejected, retry_after.next()), match_.next());
      probe_sent_ = false;
      return true;
    case State::kSnapshot:
      return false;
  }
  return false;
}

void Progress::OnHeartbeatResponse() {
  switch (state_) {
    case State::kProbe:
      probe_sent_ = false;
      break;
    case State::kReplicate:
      if (inflight_.size() >= inflight_max_) inflight_.pop_front();
      break;
    case State::kSnapshot:
      break;
  }
}

bool Progress::SnapshotTimedOut(uint32_t retry_ticks) {
  SYNOD_ASSERT(state_ == State::kSnapshot);
  ++snapshot_elapsed_ticks_;
  return snapshot_elapsed_ticks_ >= retry_ticks;
}

std::string_view ToString(Progress::State state) {
  switch (state) {
    case Progress::State::kProbe:
      return "probe";
    case Progress::State::kReplicate:
      return "replicate";
    case Progress::State::kSnapshot:
      return "snapshot";
  }
  return "?";
}

}  // namespace synod::raft
