#pragma once

// Reads a bbolt database (storage/bolt_format.h): what etcd 3.4 keeps its backend in and what
// `etcdctl snapshot save` writes, and what BoltWriter writes. Read-only; the file is mapped, not
// copied, so a reader of a large snapshot costs address space, not memory.
//
// The file is untrusted input (a snapshot a user hands to `synod snapshot restore`): every page
// id, element offset and length is checked against the file and the meta's page count before it
// is used, and a bad one is DataLoss naming the file and page, never a crash. Meta selection
// follows bbolt's (db.go DB.meta): the valid meta with the higher transaction id; the database
// is refused only when neither is valid. Departure: bbolt accepts a meta whose checksum field is
// 0 (files older than checksums); every file etcd 3.4 writes has one, so here 0 is a mismatch.
//
// Threads: const methods may run concurrently.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace synod::storage {

class BoltReader {
 public:
  // Bounds the recursion through branch pages and nested buckets, so a page that points at
  // itself ends in an error instead of a stack overflow (a real tree is far shallower).
  static constexpr int kDepthMax = 64;

  static Result<std::unique_ptr<BoltReader>> Open(const std::string& path);
  ~BoltReader();
  BoltReader(const BoltReader&) = delete;
  BoltReader& operator=(const BoltReader&) = delete;

  struct Entry {
    std::string_view key;
    // For a nested bucket, its header (and inline page); ignore it.
    std::string_view value;
    bool is_bucket = false;
  };
  using Visit = std::function<Status(const Entry&)>;

  // Visits every entry of the bucket at `bucket_path` (bucket names from the root; empty means
  // the root bucket, whose entries are the top-level buckets) in key order. NotFound when a
  // bucket on the path does not exist; DataLoss for a damaged page. A non-OK status from
  // `visit` stops the walk and is returned.
  Status ForEach(const std::vector<std::string>& bucket_path, const Visit& visit) const;
  // Whether the bucket at `bucket_path` exists.
  Result<bool> HasBucket(const std::vector<std::string>& bucket_path) const;

  uint32_t page_bytes() const { return page_bytes_; }
  // The meta's high-water mark: the pages the database uses.
  uint64_t page_count() const { return page_count_; }
  uint64_t txid() const { return txid_; }

 private:
  struct PageRef {
    const char* data = nullptr;
    size_t bytes = 0;  // Including overflow pages.
    uint16_t flags = 0;
    uint16_t count = 0;
    uint64_t id = 0;  // 0 for an inline page.
  };
  struct BucketRef {
    uint64_t root = 0;  // 0: inline, at `inline_page`.
    std::string_view inline_page;
  };

  BoltReader() = default;
  Status Damaged(uint64_t page_id, std::string_view why) const;
  Result<PageRef> Page(uint64_t id) const;
  Result<PageRef> RootPage(const BucketRef& bucket) const;
  Result<Entry> LeafEntry(const PageRef& page, size_t index) const;
  Status Walk(const PageRef& page, int depth, const Visit& visit) const;
  Result<BucketRef> FindBucket(const std::vector<std::string>& bucket_path, bool* found) const;

  std::string path_;
  int fd_ = -1;
  const char* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint32_t page_bytes_ = 0;
  uint64_t page_count_ = 0;
  uint64_t txid_ = 0;
  uint64_t root_ = 0;
};

}  // namespace synod::storage
