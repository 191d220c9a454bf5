#include "consensus/raft/log.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::raft {

RaftLog::RaftLog(const PersistentState& state)
    : prev_index_(state.snapshot.meta.index),
      prev_term_(state.snapshot.meta.term),
      committed_(state.hard_state.commit),
      applied_(state.applied.value_or(state.snapshot.meta.index)),
      snapshot_(state.snapshot) {
  configs_.push_back({state.snapshot.meta.index, state.snapshot.meta.membership});
  for (const Entry& entry : state.entries) {
    SYNOD_ASSERT(entry.index == last_index().next());
    entries_.push_back(entry);
    if (entry.type == EntryType::kConfig) configs_.push_back({entry.index, entry.membership});
  }
  stable_ = last_index();
  // A commit index older than the snapshot is stale: the snapshot only contains committed state.
  committed_ = std::max(committed_, prev_index_);
  SYNOD_ASSERT_MSG(committed_ <= last_index(), "commit {} beyond last index {}", committed_,
                   last_index());
  SYNOD_ASSERT(applied_ >= prev_index_);
  SYNOD_ASSERT(applied_ <= committed_);
}

std::optional<Term> RaftLog::TermAt(Index index) const {
  if (index == prev_index_) return prev_term_;
  if (index < prev_index_ || index > last_index()) return std::nullopt;
  return entries_[index.distance_from(first_index())].term;
}

bool RaftLog::MatchesTerm(Index index, Term term) const {
  std::optional<Term> found = TermAt(index);
  return found.has_value() && *found == term;
}

const Entry& RaftLog::At(Index index) const {
  SYNOD_ASSERT_MSG(index >= first_index() && index <= last_index(), "index {} outside [{}, {}]",
                   index, first_index(), last_index());
  const Entry& entry = entries_[index.distance_from(first_index())];
  SYNOD_ASSERT(entry.index == index);
  return entry;
}

std::vector<Entry> RaftLog::Slice(Index from, uint64_t bytes_max) const {
  SYNOD_ASSERT(from >= first_index());
  std::vector<Entry> slice;
  uint64_t bytes = 0;
  for (Index index = from; index <= last_index(); index = index.next()) {
    const Entry& entry = At(index);
    bytes += entry.data.size();
    if (!slice.empty() && bytes > bytes_max) break;
    slice.push_back(entry);
  }
  return slice;
}

Index RaftLog::AppendAfter(Index log_index, std::vector<Entry> entries) {
  SYNOD_ASSERT(TermAt(log_index).has_value());
  const Index last_new = log_index.plus(entries.size());
  for (Entry& entry : entries) {
    SYNOD_ASSERT(entry.index > prev_index_);
    std::optional<Term> existing = TermAt(entry.index);
    if (existing.has_value() && *existing == entry.term) continue;
    if (existing.has_value()) {
      // Raft 5.3: "If an existing entry conflicts with a new one (same index but different
      // terms), delete the existing entry and all that follow it."
      SYNOD_ASSERT_MSG(entry.index > committed_, "conflict at committed index {} (commit {})",
                       entry.index, committed_);
      TruncateFrom(entry.index);
    }
    SYNOD_ASSERT(entry.index == last_index().next());
    if (entry.type == EntryType::kConfig) configs_.push_back({entry.index, entry.membership});
    entries_.push_back(std::move(entry));
  }
  return last_new;
}

void RaftLog::Append(Entry entry) {
  SYNOD_ASSERT(entry.index == last_index().next());
  SYNOD_ASSERT(entry.term >= last_term());
  if (entry.type == EntryType::kConfig) configs_.push_back({entry.index, entry.membership});
  entries_.push_back(std::move(entry));
}

void RaftLog::TruncateFrom(Index index) {
  SYNOD_ASSERT(index > prev_index_);
  SYNOD_ASSERT(index <= last_index());
  entries_.resize(index.distance_from(first_index()));
  while (configs_.size() > 1 && configs_.back().index >= index) configs_.pop_back();
  stable_ = std::min(stable_, index.prev());
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, last_index());
  while (index > prev_index_) {
    Term found = *TermAt(index);
    if (found <= term) return {index, found};
    index = index.prev();
  }
  return {prev_index_, prev_term_};
}

bool RaftLog::IsUpToDate(Index index, Term term) const {
#ifdef SYNOD_BROKEN_VOTE_WITHOUT_LOG_CHECK
  // Deliberately broken build: grants votes to candidates whose logs are behind, so a leader
  // can be elected without committed entries (violates Raft 5.4.1, Leader Completeness).
  (void)index;
  (void)term;
  return true;
#else
  return term > last_term() || (term == last_term() && index >= last_index());
#endif
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;
  SYNOD_ASSERT_MSG(index <= last_index(), "commit {} beyond last index {}", index, last_index());
  committed_ = index;
}

void RaftLog::StableTo(Index index, Term term) {
  if (index <= stable_ || !MatchesTerm(index, term)) return;
  stable_ = index;
}

void RaftLog::AppliedTo(Index index) {
  if (index <= applied_) return;
  SYNOD_ASSERT_MSG(index <= committed_, "applied {} beyond commit {}", index, committed_);
  applied_ = index;
}

void RaftLog::Restore(Snapshot snapshot) {
  SYNOD_ASSERT(snapshot.meta.index > committed_);
  entries_.clear();
  prev_index_ = snapshot.meta.index;
  prev_term_ = snapshot.meta.term;
  committed_ = snapshot.meta.index;
  applied_ = std::max(applied_, snapshot.meta.index);
  stable_ = snapshot.meta.index;
  configs_.clear();
  configs_.push_back({snapshot.meta.index, snapshot.meta.membership});
  snapshot_ = snapshot;
  pending_snapshot_ = std::move(snapshot);
}

void RaftLog::SetSnapshot(Index index, std::string data) {
  SYNOD_ASSERT(index <= applied_);
  SYNOD_ASSERT(index >= prev_index_);
  snapshot_ = Snapshot{SnapshotMeta{index, *TermAt(index), MembershipAt(index)}, std::move(data)};
}

void RaftLog::Compact(Index index) {
  SYNOD_ASSERT(index <= snapshot_.meta.index);
  if (index <= prev_index_) return;
  SYNOD_ASSERT(index <= applied_);
  const Term term = *TermAt(index);
  Membership membership = MembershipAt(index);
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<std::ptrdiff_t>(index.distance_from(prev_index_)));
  prev_index_ = index;
  prev_term_ = term;
  while (configs_.size() > 1 && configs_[1].index <= index) configs_.erase(configs_.begin() + 1);
  configs_[0] = {index, std::move(membership)};
}

const Membership& RaftLog::membership() const {
  return configs_.back().membership;
}
Index RaftLog::membership_index() const {
  return configs_.back().index;
}

const Membership& RaftLog::MembershipAt(Index index) const {
  SYNOD_ASSERT(index >= prev_index_);
  for (auto it = configs_.rbegin(); it != configs_.rend(); ++it) {
    if (it->index <= index) return it->membership;
  }
  return configs_.front().membership;
}

}  // namespace synod::raft
