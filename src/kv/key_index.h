#pragma once

// The newest revision of every live key, in memory: what etcd keeps in its treeIndex
// (mvcc/index.go), reduced to what the store asks at the newest revision. A put must know the
// key's create revision, version and lease before it writes; without the index that is a Seek
// through RocksDB's memtables and levels at every put (9.7% of the machine's CPU under 128
// clients of puts: docs/benchmarks.md, changes 6 and 7). With it, that is a hash lookup, and a
// read of one key at the newest revision is one point Get of the row the index names.
//
// It is derived state: Store::Open and InstallSnapshot rebuild it from the kv.keys table, and
// Apply changes it together with the batch. A command that fails rolls its changes back (the
// undo log below, beside the batch's save point). Keys whose newest row is a tombstone are not
// in it. Compaction never removes a key's newest live row, so it does not touch the index.
//
// Determinism: only looked up, never iterated, so its hash order cannot reach a reply or a
// stored byte.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kv/key_codec.h"

namespace synod::kv {

class KeyIndex {
 public:
  // The key's newest row: its revision and the record's fields other than the value.
  struct Newest {
    codec::Rev rev;
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
    bool operator==(const Newest&) const = default;
  };

  // nullptr when the key is absent or deleted.
  const Newest* Find(std::string_view key) const;
  size_t size() const { return newest_.size(); }

  // Changes made while applying a command; each is recorded in the undo log.
  void Set(std::string_view key, const Newest& newest);
  void Erase(std::string_view key);
  // A position in the undo log (taken with the batch's save point); RollbackTo undoes every
  // change made since, ForgetUndo keeps them all.
  size_t UndoMark() const { return undo_.size(); }
  void RollbackTo(size_t mark);
  void ForgetUndo() { undo_.clear(); }

  // Loading, without undo: empties the index, then adds keys one by one.
  void Clear();
  void Load(std::string key, const Newest& newest);

 private:
  absl::flat_hash_map<std::string, Newest> newest_;
  // What each change replaced, oldest first: the key and its previous entry (nullopt: absent).
  std::vector<std::pair<std::string, std::optional<Newest>>> undo_;
};

}  // namespace synod::kv
