#include "storage/bolt_reader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/assert.h"
#include "storage/bolt_format.h"

namespace synod::storage {

using bolt::GetLe;

namespace {

struct Meta {
  uint32_t page_bytes = 0;
  uint64_t root = 0;
  uint64_t page_count = 0;
  uint64_t txid = 0;
};

// The meta at `at`, when valid (bbolt's meta.validate: magic, version, checksum).
std::optional<Meta> ReadMeta(const char* file, size_t file_bytes, size_t at) {
  if (at + bolt::kPageHeaderBytes + bolt::kMetaBytes > file_bytes) return std::nullopt;
  const char* meta = file + at + bolt::kPageHeaderBytes;
  if (GetLe(meta, 4) != bolt::kMagic || GetLe(meta + 4, 4) != bolt::kVersion) return std::nullopt;
  const uint64_t checksum = GetLe(meta + bolt::kMetaChecksumOffset, 8);
  if (checksum != bolt::MetaChecksum(std::string_view(meta, bolt::kMetaChecksumOffset))) {
    return std::nullopt;
  }
  Meta result;
  result.page_bytes = static_cast<uint32_t>(GetLe(meta + 8, 4));
  result.root = GetLe(meta + 16, 8);
  result.page_count = GetLe(meta + 40, 8);
  result.txid = GetLe(meta + 48, 8);
  return result;
}

}  // namespace

Result<std::unique_ptr<BoltReader>> BoltReader::Open(const std::string& path) {
  std::unique_ptr<BoltReader> reader(new BoltReader());
  reader->path_ = path;
  reader->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (reader->fd_ < 0) {
    const int error = errno;
    const std::string message = fmt::format("open {}: {}", path, std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::InternalError(message);
  }
  struct stat info {};
  if (::fstat(reader->fd_, &info) != 0) {
    return absl::InternalError(fmt::format("stat {}: {}", path, std::strerror(errno)));
  }
  const size_t file_bytes = static_cast<size_t>(info.st_size);
  if (file_bytes < bolt::kPageHeaderBytes + bolt::kMetaBytes) {
    return absl::DataLossError(
        fmt::format("{} is not a bolt database: only {} bytes", path, file_bytes));
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, reader->fd_, 0);
  if (map == MAP_FAILED) {
    return absl::InternalError(fmt::format("mmap {}: {}", path, std::strerror(errno)));
  }
  reader->map_ = static_cast<const char*>(map);
  reader->map_bytes_ = file_bytes;

  // bbolt reads the page size from meta 0, and looks for meta 1 one default page further when
  // meta 0 is damaged (db.go DB.Open).
  std::optional<Meta> meta0 = ReadMeta(reader->map_, file_bytes, 0);
  const size_t meta1_at = meta0 ? meta0->page_bytes : bolt::kPageBytes;
  std::optional<Meta> meta1 = ReadMeta(reader->map_, file_bytes, meta1_at);
  const std::optional<Meta>& chosen =
      !meta0 ? meta1 : (!meta1 ? meta0 : (meta1->txid > meta0->txid ? meta1 : meta0));
  if (!chosen) {
    return absl::DataLossError(fmt::format(
        "{} is not a valid bolt database: both meta pages are damaged (bad magic, version or "
        "checksum)",
        path));
  }
  const uint32_t page_bytes = chosen->page_bytes;
  if (page_bytes < 1024 || page_bytes > (64 << 10) || (page_bytes & (page_bytes - 1)) != 0) {
    return absl::DataLossError(fmt::format("{}: invalid page size {}", path, page_bytes));
  }
  if (chosen->page_count < 3 || chosen->page_count > file_bytes / page_bytes) {
    return absl::DataLossError(
        fmt::format("{}: the meta counts {} pages of {} bytes, the file has {} bytes", path,
                    chosen->page_count, page_bytes, file_bytes));
  }
  reader->page_bytes_ = page_bytes;
  reader->page_count_ = chosen->page_count;
  reader->txid_ = chosen->txid;
  reader->root_ = chosen->root;
  return reader;
}

BoltReader::~BoltReader() {
  if (map_ != nullptr) ::munmap(const_cast<char*>(map_), map_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

Status BoltReader::Damaged(uint64_t page_id, std::string_view why) const {
  return absl::DataLossError(
      fmt::format("bolt database {} is damaged at page {}: {}", path_, page_id, why));
}

Result<BoltReader::PageRef> BoltReader::Page(uint64_t id) const {
  // Pages 0 and 1 are metas: a tree never points there.
  if (id < 2 || id >= page_count_) return Damaged(id, "page id out of range");
  const char* data = map_ + id * page_bytes_;
  PageRef page;
  page.id = GetLe(data, 8);
  page.flags = static_cast<uint16_t>(GetLe(data + 8, 2));
  page.count = static_cast<uint16_t>(GetLe(data + 10, 2));
  const uint64_t overflow = GetLe(data + 12, 4);
  if (page.id != id) return Damaged(id, fmt::format("the page header says page {}", page.id));
  if (overflow >= page_count_ - id) return Damaged(id, "overflow beyond the last page");
  page.data = data;
  page.bytes = (overflow + 1) * page_bytes_;
  return page;
}

Result<BoltReader::PageRef> BoltReader::RootPage(const BucketRef& bucket) const {
  if (bucket.root != 0) return Page(bucket.root);
  // An inline bucket: one leaf page stored inside the bucket's value (bucket.go openBucket).
  if (bucket.inline_page.size() < bolt::kPageHeaderBytes) return Damaged(0, "short inline bucket");
  PageRef page;
  page.data = bucket.inline_page.data();
  page.bytes = bucket.inline_page.size();
  page.flags = static_cast<uint16_t>(GetLe(page.data + 8, 2));
  page.count = static_cast<uint16_t>(GetLe(page.data + 10, 2));
  if (page.flags != bolt::kLeafPageFlag) return Damaged(0, "inline bucket page is not a leaf");
  return page;
}

Result<BoltReader::Entry> BoltReader::LeafEntry(const PageRef& page, size_t index) const {
  const size_t at = bolt::kPageHeaderBytes + index * bolt::kLeafElementBytes;
  if (at + bolt::kLeafElementBytes > page.bytes) return Damaged(page.id, "element beyond page");
  const char* element = page.data + at;
  const uint64_t flags = GetLe(element, 4);
  const uint64_t key_at = at + GetLe(element + 4, 4);
  const uint64_t key_bytes = GetLe(element + 8, 4);
  const uint64_t value_bytes = GetLe(element + 12, 4);
  if (key_at + key_bytes + value_bytes > page.bytes) {
    return Damaged(page.id, fmt::format("element {} runs past the page", index));
  }
  Entry entry;
  entry.key = std::string_view(page.data + key_at, key_bytes);
  entry.value = std::string_view(page.data + key_at + key_bytes, value_bytes);
  entry.is_bucket = (flags & bolt::kBucketLeafFlag) != 0;
  if (entry.is_bucket && value_bytes < bolt::kBucketHeaderBytes) {
    return Damaged(page.id, fmt::format("element {} is a bucket without a header", index));
  }
  return entry;
}

Status BoltReader::Walk(const PageRef& page, int depth, const Visit& visit) const {
  if (depth > kDepthMax) return Damaged(page.id, "tree deeper than any real one (a cycle?)");
  if (page.flags == bolt::kLeafPageFlag) {
    for (size_t i = 0; i < page.count; ++i) {
      Result<Entry> entry = LeafEntry(page, i);
      if (!entry.ok()) return entry.status();
      if (Status status = visit(*entry); !status.ok()) return status;
    }
    return Status();
  }
  if (page.flags != bolt::kBranchPageFlag) {
    return Damaged(page.id, fmt::format("not a branch or leaf page (flags {:#x})", page.flags));
  }
  for (size_t i = 0; i < page.count; ++i) {
    const size_t at = bolt::kPageHeaderBytes + i * bolt::kBranchElementBytes;
    if (at + bolt::kBranchElementBytes > page.bytes) return Damaged(page.id, "element beyond page");
    Result<PageRef> child = Page(GetLe(page.data + at + 8, 8));
    if (!child.ok()) return child.status();
    if (Status status = Walk(*child, depth + 1, visit); !status.ok()) return status;
  }
  return Status();
}

Result<BoltReader::BucketRef> BoltReader::FindBucket(const std::vector<std::string>& bucket_path,
                                                     bool* found) const {
  BucketRef bucket{root_, {}};
  *found = true;
  for (const std::string& name : bucket_path) {
    Result<PageRef> page = RootPage(bucket);
    if (!page.ok()) return page.status();
    // Descend to the leaf that would hold `name`: in a branch, the last child whose first key
    // is at most `name` (bbolt cursor.go search).
    for (int depth = 0; page->flags == bolt::kBranchPageFlag; ++depth) {
      if (depth > kDepthMax) return Damaged(page->id, "tree deeper than any real one (a cycle?)");
      if (page->count == 0) return Damaged(page->id, "empty branch page");
      uint64_t child = 0;
      for (size_t i = 0; i < page->count; ++i) {
        const size_t at = bolt::kPageHeaderBytes + i * bolt::kBranchElementBytes;
        if (at + bolt::kBranchElementBytes > page->bytes) {
          return Damaged(page->id, "element beyond page");
        }
        const uint64_t key_at = at + GetLe(page->data + at, 4);
        const uint64_t key_bytes = GetLe(page->data + at + 4, 4);
        if (key_at + key_bytes > page->bytes) return Damaged(page->id, "key beyond page");
        if (i > 0 && std::string_view(page->data + key_at, key_bytes) > name) break;
        child = GetLe(page->data + at + 8, 8);
      }
      page = Page(child);
      if (!page.ok()) return page.status();
    }
    if (page->flags != bolt::kLeafPageFlag) {
      return Damaged(page->id, fmt::format("not a branch or leaf page (flags {:#x})", page->flags));
    }
    std::optional<Entry> match;
    for (size_t i = 0; i < page->count && !match; ++i) {
      Result<Entry> entry = LeafEntry(*page, i);
      if (!entry.ok()) return entry.status();
      if (entry->key == name) match = *entry;
    }
    if (!match || !match->is_bucket) {
      *found = false;
      return bucket;
    }
    bucket.root = GetLe(match->value.data(), 8);
    bucket.inline_page = match->value.substr(bolt::kBucketHeaderBytes);
  }
  return bucket;
}

Status BoltReader::ForEach(const std::vector<std::string>& bucket_path, const Visit& visit) const {
  bool found = false;
  Result<BucketRef> bucket = FindBucket(bucket_path, &found);
  if (!bucket.ok()) return bucket.status();
  if (!found) {
    return absl::NotFoundError(
        fmt::format("bolt database {} has no bucket {}", path_, fmt::join(bucket_path, "/")));
  }
  Result<PageRef> root = RootPage(*bucket);
  if (!root.ok()) return root.status();
  return Walk(*root, 0, visit);
}

Result<bool> BoltReader::HasBucket(const std::vector<std::string>& bucket_path) const {
  bool found = false;
  Result<BucketRef> bucket = FindBucket(bucket_path, &found);
  if (!bucket.ok()) return bucket.status();
  return found;
}

}  // namespace synod::storage
