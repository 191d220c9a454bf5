// The leader's view of one follower's log (Raft figure 2: nextIndex and matchIndex), plus the
// flow control that keeps a bounded number of AppendEntries in flight to it.
#pragma once

#include <cstdint>
#include <deque>
#include <string_view>

#include "base/ids.h"

namespace synod::raft {

class Progress {
 public:
  enum class State : uint8_t {
    // The leader does not know where the follower's log matches; it sends one AppendEntries at
    // a time and waits for the answer (or the next heartbeat answer) before sending another.
    kProbe,
    // The follower's log is known to match up to `match`; AppendEntries are pipelined, at most
    // `inflight_max` at a time, and `next` advances optimistically as they are sent.
    kReplicate,
    // The follower needs entries that are compacted; a snapshot is on its way.
    kSnapshot,
  };

  // A follower the new leader knows nothing about: Raft 5.3, "When a leader first comes to
  // power, it initializes all nextIndex values to the index just after the last one in its log."
  Progress(Index next, uint32_t inflight_max, bool is_learner);

  State state() const { return state_; }
  // Invariant: match < next.
  Index match() const { return match_; }
  Index next() const { return next_; }
  bool is_learner() const { return is_learner_; }
  void set_learner(bool is_learner) { is_learner_ = is_learner; }

  // Whether the leader must hold further AppendEntries to this follower for now.
  bool IsPaused() const;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);

  // An AppendEntries carrying entries up to `last_index` was sent.
  void SentEntries(Index last_index);
  // An empty AppendEntries (a probe with no new entries) was sent.
  void SentProbe();

  // The follower acknowledged everything up to `index`. Returns false if the acknowledgement is
  // stale (it tells nothing new).
  bool MaybeUpdate(Index index);
  // The follower rejected an AppendEntries whose previous entry was at `rejected`; the leader
  // will next try after `retry_after` (from fast backtracking). Returns false if the rejection
  // is stale (answers a message sent before a newer decision).
  bool MaybeDecrease(Index rejected, Index retry_after);

  // A heartbeat answer proves the follower is reachable: resume a paused probe, and in
  // replicate state free one slot of a full window in case an AppendEntries was lost (the
  // follower will then reject the next one and the leader falls back to probing).
  void OnHeartbeatResponse();

  Index pending_snapshot() const { return pending_snapshot_; }
  // Counts how long the current snapshot has been on its way; returns true when it is time to
  // give up on it and probe again (the message or its answer may have been lost).
  bool SnapshotTimedOut(uint32_t retry_ticks);

  // Leader ticks since the follower last answered, saturating at the election timeout: for
  // check-quorum (thesis 6.2), and to hold a snapshot back from a follower that may be down.
  // A new leader starts every follower at 0 (just heard), so it is not deposed at once.
  uint32_t silent_ticks = 0;
  // Thesis 6.4: the highest ReadIndex round this follower has confirmed.
  uint64_t read_round_acked = 0;

 private:
  State state_ = State::kProbe;
  Index match_;
  Index next_;
  bool is_learner_;
  // kProbe: an AppendEntries is outstanding.
  bool probe_sent_ = false;
  // kReplicate: the last index carried by each in-flight AppendEntries, oldest first.
  // Invariant: size() <= inflight_max_.
  std::deque<Index> inflight_;
  uint32_t inflight_max_;
  // kSnapshot: the index of the snapshot being sent and the ticks since it was sent.
  Index pending_snapshot_;
  uint32_t snapshot_elapsed_ticks_ = 0;
};

std::string_view ToString(Progress::State state);

}  // namespace synod::raft
