#pragma once

// The watch hub: hands every change the store applies to the watchers that want it, in revision
// order, exactly once, and lets watchers that started in the past or fell behind catch up from
// the store's history (etcd 3.4 mvcc/watchable_store.go: "synced" and "unsynced" watcher groups).
//
// A watcher is "synced" when every revision up to the store's current one has been handed to its
// sink; the applier then hands it each new revision's events through Notify. Otherwise it is
// "unsynced" with a next revision to read: its sink runs CatchUp, which reads a page of history
// from the store; when a page reaches the current revision the watcher becomes synced again.
//
// Gap-freedom rests on one rule: Add, CatchUp and Notify all run while the caller holds the
// store's lock (Add and CatchUp shared, Notify exclusive, as the applier holds it), so no
// revision can be applied between reading the store's current revision and changing a watcher's
// group. Lock order: store lock, then the hub's mutex, then whatever a sink locks inside its
// callbacks. A sink must not call the hub from a callback.
//
// A slow client never slows the applier: a sink that has no room refuses a delivery, and the
// watcher falls back to unsynced at that revision (etcd's "victim" watchers), to be caught up
// from the store when the sink has drained. If compaction overtakes it meanwhile, it is canceled
// with the compacted revision, as in etcd.
//
// Cost: Notify compares each event with every synced watcher (a linear scan; etcd uses an
// interval tree). Fine for the hundreds of watchers a 3-7 member cluster's clients open.

#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/ids.h"
#include "etcd/mvccpb/kv.pb.h"
#include "kv/key_range.h"
#include "kv/store.h"

namespace synod::kv {

// What a watcher asks for (etcd's WatchCreateRequest, after the server's normalisation).
struct WatchSpec {
  std::string key;
  std::string range_end;  // KeyRange's rules.
  bool prev_kv = false;
  bool filter_put = false;     // etcd's NOPUT filter.
  bool filter_delete = false;  // etcd's NODELETE filter.
};

// The receiving end of a set of watchers (one client stream). Its callbacks run under the hub's
// mutex (and the store's lock): they must be quick and must not call the hub.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // The events for watcher `watch_id`: one revision's from Notify, or a page of history from
  // CatchUp (then `from_history`). `revision` is the store revision the response reports.
  // Returns false when there is no room; the hub then lets the watcher fall behind. Pages from
  // history must be accepted (CatchUp runs only when the sink asks for it).
  virtual bool Deliver(int64_t watch_id, Revision revision, std::vector<mvccpb::Event> events,
                       bool from_history) = 0;
  // The watcher needed history below `compact_revision`, which is gone; the hub has removed it.
  virtual void Compacted(int64_t watch_id, Revision compact_revision) = 0;
  // A watcher of this sink became unsynced: the sink should run CatchUp soon.
  virtual void CatchUpNeeded() = 0;
};

class WatchHub {
 public:
  // Events per history page (etcd's watchBatchMaxRevs is 1000 revisions per response).
  static constexpr size_t kCatchUpEventsMax = 1000;

  // Registers watcher `watch_id` of `sink`, to receive every change in spec's range from
  // `start_revision` on. `current_revision` is the store's, read under the same store lock the
  // caller still holds. Precondition: the id is not in use on the sink (asserted).
  void Add(WatchSink* sink, int64_t watch_id, WatchSpec spec, Revision start_revision,
           Revision current_revision);
  // Unregisters; false when there was no such watcher.
  bool Remove(WatchSink* sink, int64_t watch_id);
  // Unregisters every watcher of `sink` (its stream ended).
  void RemoveAll(WatchSink* sink);
  bool Contains(WatchSink* sink, int64_t watch_id) const;
  // Whether some watcher asked for prev_kv: the applier asks the store for events with prev_kv
  // only then (Store::Apply). A watcher is added under the store's shared lock, so none arrives
  // between this call and the Notify calls the applier makes under its exclusive lock.
  bool AnyWantsPrevKv() const;

  // The applier, under the store's exclusive lock, right after the commit that made `revision`,
  // with that revision's events (kv::CommandResult::events), in revision order.
  void Notify(Revision revision, std::span<const mvccpb::Event> events);
  // After the store was replaced wholesale (a snapshot from the leader): every watcher must
  // catch up from the new store's history.
  void MarkAllUnsynced();

  // The sink's side: reads one page of history for one unsynced watcher of `sink` from `store`
  // (under the store's shared lock, which the caller holds) and delivers it. Returns true when
  // some watcher of the sink is still unsynced afterwards. A storage error is returned as is
  // (the watchers stay unsynced).
  Result<bool> CatchUp(const Store& store, WatchSink* sink);

  // The watchers of `sink` that are synced (for progress notifications).
  std::vector<int64_t> SyncedWatchers(WatchSink* sink) const;
  size_t size() const;

 private:
  struct Watcher {
    WatchSpec spec;
    KeyRange range;
    // Invariant: every change below `next_revision` was delivered; when synced, next_revision
    // is the store's current revision + 1.
    Revision next_revision;
    bool synced = false;
  };
  // Filters `events` for `watcher`: its range, its filters, prev_kv only when asked for.
  static std::vector<mvccpb::Event> Select(const Watcher& watcher,
                                           std::span<const mvccpb::Event> events);

  mutable std::mutex mutex_;
  // By sink, then watch id.
  std::map<WatchSink*, std::map<int64_t, Watcher>> watchers_;  // Guarded by mutex_.
  size_t synced_count_ = 0;                                    // Guarded by mutex_.
  size_t prev_kv_count_ = 0;  // Watchers with spec.prev_kv; guarded by mutex_.
};

}  // namespace synod::kv
