// The Raft log as the core sees it: the latest snapshot, the entries after the compaction
// point, and how far they are durable, committed and applied. It lives in memory; the caller
// makes it durable through Ready batches and hands it back on restart (PersistentState).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "base/ids.h"
#include "consensus/raft/types.h"

namespace synod::raft {

class RaftLog {
 public:
  // Builds the log a node restarts with. Preconditions (checked by Raft::Create):
  // state.entries are contiguous from state.snapshot.meta.index + 1.
  explicit RaftLog(const PersistentState& state);

  // Positions. first_index() is the first entry still held; entries below it are compacted
  // (covered by a snapshot). The entry at first_index() - 1 is known only by its term.
  // Invariant: prev_index() + 1 == first_index(), last_index() >= prev_index().
  Index first_index() const { return prev_index_.next(); }
  Index prev_index() const { return prev_index_; }
  Index last_index() const { return prev_index_.plus(entries_.size()); }
  Term last_term() const { return *TermAt(last_index()); }

  // Invariant: applied <= committed <= last_index(); stable <= last_index().
  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  // Entries up to here are durable (the caller has persisted and acknowledged them).
  Index stable() const { return stable_; }

  // The term of the entry at `index`, or nullopt if it is compacted or beyond the end.
  std::optional<Term> TermAt(Index index) const;
  bool MatchesTerm(Index index, Term term) const;
  // Precondition: first_index() <= index <= last_index().
  const Entry& At(Index index) const;

  // Entries [from, last_index()], stopping before the total data size exceeds bytes_max but
  // always returning at least one entry when one exists.
  // Precondition: first_index() <= from.
  std::vector<Entry> Slice(Index from, uint64_t bytes_max) const;

  // Raft 5.3: appends entries that follow the entry (log_index, ...), which the caller has
  // checked matches. An existing entry that conflicts with a new one (same index, different
  // term) is deleted with all that follow it; entries already present are kept, so a duplicated
  // or reordered AppendEntries never truncates the log. Returns the index of the last new
  // entry (log_index + entries.size()).
  // Precondition: an entry in `entries` that conflicts is above committed() (asserted: a
  // committed entry is never overwritten).
  Index AppendAfter(Index log_index, std::vector<Entry> entries);
  // Appends one entry at last_index() + 1 (the leader's path).
  void Append(Entry entry);

  // Fast backtracking: the largest index <= `index` whose term is <= `term`, and its term. Used
  // by a follower to reply to a rejected AppendEntries and by the leader to jump over a whole
  // term of conflicting entries. Stops at prev_index() when the log is compacted below.
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  // Raft 5.4.1: is a log ending at (last_term, last_index) at least as up-to-date as ours?
  bool IsUpToDate(Index last_index, Term last_term) const;

  void CommitTo(Index index);
  // The caller has persisted every entry up to (index, term); ignored if the entry at `index`
  // has since been replaced (the write was of entries that no longer exist).
  void StableTo(Index index, Term term);
  void AppliedTo(Index index);

  // Replaces the whole log by a snapshot received from the leader (Raft 7); it stays pending
  // until handed out in a Ready and persisted.
  void Restore(Snapshot snapshot);
  const std::optional<Snapshot>& pending_snapshot() const { return pending_snapshot_; }
  void ClearPendingSnapshot() { pending_snapshot_.reset(); }

  // The most recent snapshot, sent to a follower that needs compacted entries.
  const Snapshot& snapshot() const { return snapshot_; }
  // Records the caller's snapshot of its state machine at `index` (<= applied()).
  void SetSnapshot(Index index, std::string data);
  // Discards entries up to `index` (<= snapshot().meta.index).
  void Compact(Index index);

  // Thesis 4.1: a server uses the latest configuration in its log, committed or not.
  const Membership& membership() const;
  Index membership_index() const;
  // The configuration in force at `index` (precondition: index >= prev_index()).
  const Membership& MembershipAt(Index index) const;

  uint64_t unstable_entry_count() const { return last_index().distance_from(stable_); }

 private:
  struct ConfigPoint {
    Index index;
    Membership membership;
  };

  // Truncates every entry at and after `index`, with their configurations.
  void TruncateFrom(Index index);

  Index prev_index_;
  Term prev_term_;
  // Entries prev_index_ + 1 ... last_index().
  std::deque<Entry> entries_;
  Index committed_;
  Index applied_;
  Index stable_;
  Snapshot snapshot_;
  std::optional<Snapshot> pending_snapshot_;
  // configs_[0] is the configuration at prev_index_ (from the snapshot or compacted entries);
  // the rest are the configuration entries in entries_, in index order.
  // Invariant: non-empty; configs_[0].index <= prev_index_ < configs_[1..].index <= last_index().
  std::vector<ConfigPoint> configs_;
};

}  // namespace synod::raft
