#pragma once

// Writes a new bbolt database (storage/bolt_format.h) from sorted contents, in one pass: the
// format etcd 3.4 keeps its backend in, so `etcdctl snapshot status/restore` and etcd itself can
// read what synod exports.
//
// Streaming: the caller opens buckets, puts keys in increasing bytewise order, and closes
// buckets; the writer builds each bucket's B+tree bottom-up (a bulk load), writing every page as
// soon as it is full. It holds one unfinished node per tree level per open bucket, so memory
// stays O(depth x page) whatever the data's size (a value bigger than a page is held until its
// leaf is written). Pages are written in allocation order after the two meta pages and the
// freelist; the metas are written last, so a file is a valid database only once Finish returns.
//
// The result is what bbolt itself would read as a freshly compacted database: every page
// reachable exactly once (bbolt's Tx.Check passes), an empty freelist, leaves filled up to a
// page, buckets never inline (a reader handles both), meta pages 0 and 1 with transaction ids 0
// and 1 as bbolt's own initialisation writes them.
//
// Not thread-safe. Errors are final: after one, every later call returns it.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace synod::storage {

class BoltWriter {
 public:
  // Writes through `fd` (not owned; positioned writes from offset 0, so the file should be empty
  // or will be overwritten up to its new size). `path` names the file in error messages.
  BoltWriter(int fd, std::string path);
  ~BoltWriter();
  BoltWriter(const BoltWriter&) = delete;
  BoltWriter& operator=(const BoltWriter&) = delete;

  // Opens a nested bucket named `name` in the current bucket (the root bucket when none is
  // open). InvalidArgument when `name` is not greater than the previous key of the current
  // bucket, or is empty or too long.
  Status BeginBucket(std::string_view name);
  // Adds a key to the current bucket. Preconditions as BeginBucket's for `key`; the value is at
  // most bolt::kValueBytesMax bytes. Keys of the root bucket must be buckets (bbolt's rule).
  Status Put(std::string_view key, std::string_view value);
  // Closes the current bucket. FailedPrecondition when none is open.
  Status EndBucket();
  // Writes the root bucket, the freelist and both meta pages. Every bucket must be closed. Does
  // not fsync: the caller decides what the file is for.
  Status Finish();

  // The pages written so far (after Finish: the whole file is pages() * bolt::kPageBytes).
  uint64_t pages() const { return next_page_id_; }

 private:
  struct Element {
    std::string key;
    std::string value;   // Leaf only.
    uint32_t flags = 0;  // Leaf only.
    uint64_t child = 0;  // Branch only.
  };
  struct Node {
    std::vector<Element> elements;
    size_t bytes = 0;            // Page header plus elements plus their keys and values.
    uint64_t pages_written = 0;  // Nodes of this level already written.
  };
  // One bucket's tree under construction: levels[0] is the leaf level.
  struct Tree {
    std::string name;  // Its key in the parent bucket.
    std::string last_key;
    bool has_keys = false;
    std::vector<Node> levels;
  };

  Status Fail(Status status);
  Status CheckKey(const Tree& tree, std::string_view key) const;
  Status AddLeaf(Tree& tree, std::string_view key, std::string_view value, uint32_t flags);
  Status AddToLevel(Tree& tree, size_t level, Element element);
  // Writes the level's node and adds a branch element for it to the level above.
  Status FlushLevel(Tree& tree, size_t level);
  // Writes whatever is left and returns the root page of the finished tree.
  Result<uint64_t> FinishTree(Tree& tree);
  Result<uint64_t> WriteNode(const Node& node, bool leaf);
  Status WriteAt(uint64_t page_id, const std::string& bytes);

  int fd_;
  std::string path_;
  Status failed_;
  bool finished_ = false;
  uint64_t next_page_id_ = 3;  // 0 and 1: metas; 2: the freelist.
  // The open buckets; trees_[0] is the root bucket.
  std::vector<Tree> trees_;
};

}  // namespace synod::storage
