#include "kv/watch_hub.h"

#include <utility>

#include "base/assert.h"

namespace synod::kv {

void WatchHub::Add(WatchSink* sink, int64_t watch_id, WatchSpec spec, Revision start_revision,
                   Revision current_revision) {
  SYNOD_ASSERT(sink != nullptr);
  SYNOD_ASSERT(start_revision.value() >= 1);
  std::lock_guard lock(mutex_);
  std::map<int64_t, Watcher>& watchers = watchers_[sink];
  SYNOD_ASSERT(!watchers.contains(watch_id));
  KeyRange range(spec.key, spec.range_end);
  // etcd puts a watcher that starts after the current revision straight into the synced group;
  // Notify skips the revisions before its start.
  const bool synced = start_revision > current_revision;
  if (spec.prev_kv) ++prev_kv_count_;
  watchers.emplace(watch_id, Watcher{std::move(spec), std::move(range), start_revision, synced});
  if (synced) {
    ++synced_count_;
  } else {
    sink->CatchUpNeeded();
  }
}

bool WatchHub::Remove(WatchSink* sink, int64_t watch_id) {
  std::lock_guard lock(mutex_);
  auto it = watchers_.find(sink);
  if (it == watchers_.end()) return false;
  auto watcher = it->second.find(watch_id);
  if (watcher == it->second.end()) return false;
  if (watcher->second.synced) --synced_count_;
  if (watcher->second.spec.prev_kv) --prev_kv_count_;
  it->second.erase(watcher);
  if (it->second.empty()) watchers_.erase(it);
  return true;
}

void WatchHub::RemoveAll(WatchSink* sink) {
  std::lock_guard lock(mutex_);
  auto it = watchers_.find(sink);
  if (it == watchers_.end()) return;
  for (const auto& [id, watcher] : it->second) {
    if (watcher.synced) --synced_count_;
    if (watcher.spec.prev_kv) --prev_kv_count_;
  }
  watchers_.erase(it);
}

bool WatchHub::AnyWantsPrevKv() const {
  std::lock_guard lock(mutex_);
  return prev_kv_count_ > 0;
}

bool WatchHub::Contains(WatchSink* sink, int64_t watch_id) const {
  std::lock_guard lock(mutex_);
  auto it = watchers_.find(sink);
  return it != watchers_.end() && it->second.contains(watch_id);
}

std::vector<mvccpb::Event> WatchHub::Select(const Watcher& watcher,
                                            std::span<const mvccpb::Event> events) {
  std::vector<mvccpb::Event> selected;
  for (const mvccpb::Event& event : events) {
    if (!watcher.range.Contains(event.kv().key())) continue;
    const bool is_put = event.type() == mvccpb::Event::PUT;
    if (is_put ? watcher.spec.filter_put : watcher.spec.filter_delete) continue;
    mvccpb::Event& copy = selected.emplace_back(event);
    if (!watcher.spec.prev_kv) copy.clear_prev_kv();
  }
  return selected;
}

void WatchHub::Notify(Revision revision, std::span<const mvccpb::Event> events) {
  SYNOD_ASSERT(revision.value() >= 2);  // A new store is at 1; the first change makes 2.
  std::lock_guard lock(mutex_);
  if (synced_count_ == 0 || events.empty()) return;
  for (auto& [sink, watchers] : watchers_) {
    bool fell_behind = false;
    for (auto& [id, watcher] : watchers) {
      if (!watcher.synced || revision < watcher.next_revision) continue;
      // A synced watcher has had everything below this revision (the invariant), and revisions
      // arrive in order, so this is exactly the next one it needs.
      SYNOD_ASSERT(watcher.next_revision <= revision);
      std::vector<mvccpb::Event> selected = Select(watcher, events);
      if (!selected.empty() && !sink->Deliver(id, revision, std::move(selected), false)) {
        watcher.synced = false;
        watcher.next_revision = revision;  // Read this one again from the store.
        --synced_count_;
        fell_behind = true;
        continue;
      }
      watcher.next_revision = revision.next();
    }
    if (fell_behind) sink->CatchUpNeeded();
  }
}

void WatchHub::MarkAllUnsynced() {
  std::lock_guard lock(mutex_);
  for (auto& [sink, watchers] : watchers_) {
    bool any = false;
    for (auto& [id, watcher] : watchers) {
      if (!watcher.synced) continue;
      watcher.synced = false;
      --synced_count_;
      any = true;
    }
    if (any) sink->CatchUpNeeded();
  }
  SYNOD_ASSERT(synced_count_ == 0);
}

Result<bool> WatchHub::CatchUp(const Store& store, WatchSink* sink) {
  std::lock_guard lock(mutex_);
  auto it = watchers_.find(sink);
  if (it == watchers_.end()) return false;
  const Revision current = store.current_revision();
  for (auto watcher_it = it->second.begin(); watcher_it != it->second.end();) {
    Watcher& watcher = watcher_it->second;
    if (watcher.synced) {
      ++watcher_it;
      continue;
    }
    if (watcher.next_revision > current) {
      // Nothing to read (a store replaced by an older snapshot cannot happen, but a watcher
      // that fell behind at the newest revision is simply current again).
      watcher.synced = true;
      ++synced_count_;
      ++watcher_it;
      continue;
    }
    if (watcher.next_revision < store.compact_revision()) {
      sink->Compacted(watcher_it->first, store.compact_revision());
      if (watcher.spec.prev_kv) --prev_kv_count_;
      watcher_it = it->second.erase(watcher_it);
      continue;
    }
    Result<Store::EventsPage> page =
        store.EventsSince(watcher.spec.key, watcher.spec.range_end, watcher.next_revision,
                          kCatchUpEventsMax, watcher.spec.prev_kv);
    if (!page.ok()) return page.status();
    SYNOD_ASSERT(page->next_revision > watcher.next_revision);
    SYNOD_ASSERT(page->next_revision <= current.next());
    std::vector<mvccpb::Event> selected = Select(watcher, page->events);
    if (!selected.empty()) sink->Deliver(watcher_it->first, current, std::move(selected), true);
    watcher.next_revision = page->next_revision;
    if (watcher.next_revision > current) {
      watcher.synced = true;
      ++synced_count_;
    }
    // One page per call, so that one watcher's long history does not hold the store's lock for
    // long; the sink calls again.
    break;
  }
  bool unsynced_left = false;
  for (const auto& [id, watcher] : it->second) unsynced_left = unsynced_left || !watcher.synced;
  if (it->second.empty()) watchers_.erase(it);
  return unsynced_left;
}

std::vector<int64_t> WatchHub::SyncedWatchers(WatchSink* sink) const {
  std::lock_guard lock(mutex_);
  std::vector<int64_t> ids;
  auto it = watchers_.find(sink);
  if (it == watchers_.end()) return ids;
  for (const auto& [id, watcher] : it->second) {
    if (watcher.synced) ids.push_back(id);
  }
  return ids;
}

size_t WatchHub::size() const {
  std::lock_guard lock(mutex_);
  size_t count = 0;
  for (const auto& [sink, watchers] : watchers_) count += watchers.size();
  return count;
}

}  // namespace synod::kv
