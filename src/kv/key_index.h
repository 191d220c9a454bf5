#pragma once

// Every key's revisions, in memory and in key order: etcd's treeIndex of keyIndex entries
// (mvcc/index.go, mvcc/key_index.go). The stored history (kv.revs, kv/key_codec.h) is keyed by
// revision, so that a put appends at the end of the table instead of inserting at a random
// place among the keys (docs/benchmarks.md, "What-if at ba765aa": 24% more puts at 128 clients,
// 23% less CPU per put); which revision of a key a read wants comes from here. A read is then a
// walk of this index and one point Get of kv.revs per key.
//
// Besides each key's changes it keeps its newest live revision's create revision, version and
// lease, which a put must know before it writes: then that is a lookup, not a read of the row.
//
// It is derived state: Store::Open and InstallSnapshot rebuild it from kv.revs, and Apply
// changes it together with the batch. A command that fails rolls its puts and deletes back (the
// undo log below, beside the batch's save point). Compaction drops what it deletes from kv.revs.
//
// Determinism: only the key-ordered map is iterated, so every replica visits keys in the same
// order; the hash map is only looked up.
// Threads: not thread-safe; the store's users hold its lock (Store).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/node_hash_map.h"
#include "kv/key_codec.h"
#include "kv/key_range.h"

namespace synod::kv {

class KeyIndex {
 public:
  // A live key's newest revision and the fields of its record other than the value. (No
  // default member initializers: GCC 12 rejects them in a nested struct that a container
  // member of the enclosing class holds; value-initialize it.)
  struct Newest {
    codec::Rev rev;
    int64_t create_revision;
    int64_t version;
    int64_t lease;
    bool operator==(const Newest&) const = default;
  };
  // One stored change of a key.
  struct Change {
    codec::Rev rev;
    bool tombstone;
    bool operator==(const Change&) const = default;
  };

  // nullptr when the key is absent or its newest change is a delete.
  const Newest* Find(std::string_view key) const;
  // The number of live keys.
  size_t size() const { return live_keys_; }

  // The revision of the key's newest change with main <= at_rev, when that change is a put.
  std::optional<codec::Rev> LiveAt(std::string_view key, int64_t at_rev) const;
  // The revision of the key's change just before `rev`, when it is still stored and is a put
  // (watch replay's prev_kv). Precondition: the key has a change at `rev`.
  std::optional<codec::Rev> PutBefore(std::string_view key, codec::Rev rev) const;
  // Calls visit(key, rev) for every key of `range` alive at at_rev, in key order, with the
  // revision LiveAt gives; stops when visit returns false.
  void VisitLive(const KeyRange& range, int64_t at_rev,
                 const std::function<bool(const std::string&, codec::Rev)>& visit) const;

  // Changes made while applying a command, each recorded in the undo log. Preconditions: `rev`
  // is above every revision of the key; Delete only of a live key.
  void Put(std::string_view key, const Newest& newest);
  void Delete(std::string_view key, codec::Rev rev);
  // A position in the undo log (taken with the batch's save point); RollbackTo undoes every
  // change made since, ForgetUndo keeps them all.
  size_t UndoMark() const { return undo_.size(); }
  void RollbackTo(size_t mark);
  void ForgetUndo() { undo_.clear(); }

  // Compaction at `rev` (etcd's keyIndex.compact): of every key, drops each change at or below
  // rev except the newest one, and that one too when it is a delete; returns the dropped
  // revisions in key order. Not undone by RollbackTo, so it is for a command that can no longer
  // fail. Precondition: the undo log is empty.
  std::vector<codec::Rev> Compact(int64_t rev);

  // Loading, without undo: empties the index, then adds the stored changes in revision order.
  void Clear();
  void Load(std::string_view key, codec::Rev rev, const codec::Record& record);

  // Same keys with the same changes and newest fields (the undo log aside).
  bool operator==(const KeyIndex& other) const { return keys_ == other.keys_; }
  KeyIndex() = default;
  // Copies rebuild the ordered view, which points into the copy's own keys. Precondition: the
  // undo log is empty (it points into the original).
  KeyIndex(const KeyIndex& other);
  KeyIndex& operator=(const KeyIndex&) = delete;

 private:
  struct History {
    const std::string* key;       // The map's key of this entry.
    std::vector<Change> changes;  // Oldest first; never empty while in the map.
    Newest newest{};              // Meaningful while the last change is a put.
    bool live() const { return !changes.back().tombstone; }
    bool operator==(const History& other) const {
      return changes == other.changes && (!live() || newest == other.newest);
    }
  };
  // The history a Put or Delete appended to (nodes are stable, and nothing erases a history
  // while the undo log is not empty: Compact requires it empty, Clear empties both), and its
  // newest fields before. No copy of the key: the log costs no allocation per write.
  struct Undo {
    History* history;
    Newest newest_before;
  };

  History& Append(std::string_view key, Change change);
  void Erase(absl::node_hash_map<std::string, History>::iterator it);

  // Each key's history, found by hash: a put (the hot path) looks its key up at hash speed,
  // not by string compares down a B-tree (docs/benchmarks.md, change 14). Nodes are stable,
  // so `ordered_` can point into them.
  absl::node_hash_map<std::string, History> keys_;
  // The same keys in key order, for ranges and compaction: views of keys_'s keys.
  absl::btree_map<std::string_view, History*> ordered_;
  size_t live_keys_ = 0;
  std::vector<Undo> undo_;  // Oldest first: one entry per Put or Delete.
};

}  // namespace synod::kv
