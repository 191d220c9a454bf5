#include "kv/key_index.h"

#include <algorithm>

#include "base/assert.h"

namespace synod::kv {

namespace {

using codec::Rev;

// Debian's Abseil has its own string_view type, which the hash map's lookups take.
absl::string_view AbslView(std::string_view key) {
  return absl::string_view(key.data(), key.size());
}

// The newest change with main <= at_rev, or nullptr.
template <typename Changes>
auto NewestAtOrBelow(Changes& changes, int64_t at_rev) -> decltype(&changes.front()) {
  auto above =
      std::upper_bound(changes.begin(), changes.end(), at_rev,
                       [](int64_t r, const KeyIndex::Change& c) { return r < c.rev.main; });
  return above == changes.begin() ? nullptr : &*(above - 1);
}

}  // namespace

KeyIndex::KeyIndex(const KeyIndex& other)
    : keys_(other.keys_), live_keys_(other.live_keys_) {
  SYNOD_ASSERT_MSG(other.undo_.empty(), "copy of a key index in the middle of a command");
  for (auto& [key, history] : keys_) {
    history.key = &key;
    ordered_.emplace(key, &history);
  }
}

const KeyIndex::Newest* KeyIndex::Find(std::string_view key) const {
  auto it = keys_.find(AbslView(key));
  return it == keys_.end() || !it->second.live() ? nullptr : &it->second.newest;
}

std::optional<Rev> KeyIndex::LiveAt(std::string_view key, int64_t at_rev) const {
  auto it = keys_.find(AbslView(key));
  if (it == keys_.end()) return std::nullopt;
  const Change* change = NewestAtOrBelow(it->second.changes, at_rev);
  if (change == nullptr || change->tombstone) return std::nullopt;
  return change->rev;
}

std::optional<Rev> KeyIndex::PutBefore(std::string_view key, Rev rev) const {
  auto it = keys_.find(AbslView(key));
  SYNOD_ASSERT(it != keys_.end());
  const std::vector<Change>& changes = it->second.changes;
  auto at = std::lower_bound(changes.begin(), changes.end(), rev,
                             [](const Change& c, Rev r) { return c.rev < r; });
  SYNOD_ASSERT(at != changes.end() && at->rev == rev);
  if (at == changes.begin() || (at - 1)->tombstone) return std::nullopt;
  return (at - 1)->rev;
}

void KeyIndex::VisitLive(const KeyRange& range, int64_t at_rev,
                         const std::function<bool(const std::string&, Rev)>& visit) const {
  if (range.single) {
    // One key: a hash lookup, no walk.
    auto it = keys_.find(AbslView(range.key));
    if (it == keys_.end()) return;
    const Change* change = NewestAtOrBelow(it->second.changes, at_rev);
    if (change != nullptr && !change->tombstone) visit(it->first, change->rev);
    return;
  }
  for (auto it = ordered_.lower_bound(range.key); it != ordered_.end(); ++it) {
    if (range.Past(it->first)) break;
    const Change* change = NewestAtOrBelow(it->second->changes, at_rev);
    if (change == nullptr || change->tombstone) continue;
    if (!visit(*it->second->key, change->rev)) break;
  }
}

KeyIndex::History& KeyIndex::Append(std::string_view key, Change change) {
  auto [it, inserted] = keys_.try_emplace(AbslView(key));
  History& history = it->second;
  if (inserted) {
    SYNOD_ASSERT_MSG(!change.tombstone, "delete of {:?}, which is absent", key);
    history.key = &it->first;
    ordered_.emplace(it->first, &history);
  } else {
    SYNOD_ASSERT_MSG(history.changes.back().rev < change.rev, "change of {:?} out of order", key);
    SYNOD_ASSERT_MSG(!change.tombstone || history.live(), "delete of {:?}, which is not live",
                     key);
    if (history.live()) --live_keys_;
  }
  history.changes.push_back(change);
  if (!change.tombstone) ++live_keys_;
  return history;
}

void KeyIndex::Erase(absl::node_hash_map<std::string, History>::iterator it) {
  ordered_.erase(it->first);
  keys_.erase(it);
}

void KeyIndex::Put(std::string_view key, const Newest& newest) {
  History& history = Append(key, Change{newest.rev, false});
  undo_.push_back(Undo{&history, history.newest});
  history.newest = newest;
}

void KeyIndex::Delete(std::string_view key, Rev rev) {
  History& history = Append(key, Change{rev, true});
  undo_.push_back(Undo{&history, history.newest});
}

void KeyIndex::RollbackTo(size_t mark) {
  SYNOD_ASSERT(mark <= undo_.size());
  while (undo_.size() > mark) {
    Undo& undo = undo_.back();
    History& history = *undo.history;
    if (history.live()) --live_keys_;
    history.changes.pop_back();
    if (history.changes.empty()) {
      Erase(keys_.find(AbslView(*history.key)));
    } else {
      history.newest = undo.newest_before;
      if (history.live()) ++live_keys_;
    }
    undo_.pop_back();
  }
}

std::vector<Rev> KeyIndex::Compact(int64_t rev) {
  SYNOD_ASSERT(undo_.empty());
  std::vector<Rev> dropped;
  std::vector<std::string_view> emptied;
  for (auto& [key, history] : ordered_) {
    std::vector<Change>& changes = history->changes;
    const Change* newest = NewestAtOrBelow(changes, rev);
    if (newest == nullptr) continue;
    // Everything before the newest change at or below rev goes; so does that one if it ends
    // the key's generation (a delete), as etcd's compaction drops tombstones.
    auto keep_from = changes.begin() + (newest - changes.data());
    if (newest->tombstone) ++keep_from;
    for (auto c = changes.begin(); c != keep_from; ++c) dropped.push_back(c->rev);
    changes.erase(changes.begin(), keep_from);
    if (changes.empty()) emptied.push_back(key);
  }
  for (std::string_view key : emptied) Erase(keys_.find(AbslView(key)));
  return dropped;
}

void KeyIndex::Clear() {
  ordered_.clear();
  keys_.clear();
  live_keys_ = 0;
  undo_.clear();
}

void KeyIndex::Load(std::string_view key, Rev rev, const codec::Record& record) {
  SYNOD_ASSERT(undo_.empty());
  History& history = Append(key, Change{rev, record.tombstone});
  if (!record.tombstone) {
    history.newest = Newest{rev, record.create_revision, record.version, record.lease};
  }
}

}  // namespace synod::kv
