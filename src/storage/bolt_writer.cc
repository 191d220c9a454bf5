#include "storage/bolt_writer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/assert.h"
#include "storage/bolt_format.h"

namespace synod::storage {

using bolt::PutLe;

BoltWriter::BoltWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
  SYNOD_ASSERT(fd_ >= 0);
  trees_.emplace_back();  // The root bucket.
}

BoltWriter::~BoltWriter() = default;

Status BoltWriter::Fail(Status status) {
  SYNOD_ASSERT(!status.ok());
  failed_ = status;
  return status;
}

Status BoltWriter::CheckKey(const Tree& tree, std::string_view key) const {
  if (key.empty() || key.size() > bolt::kKeyBytesMax) {
    return absl::InvalidArgumentError(fmt::format("bolt file {}: key of {} bytes (must be 1 to {})",
                                                  path_, key.size(), bolt::kKeyBytesMax));
  }
  if (tree.has_keys && key <= std::string_view(tree.last_key)) {
    return absl::InvalidArgumentError(
        fmt::format("bolt file {}: keys must increase; {:?} follows {:?}", path_, std::string(key),
                    tree.last_key));
  }
  return Status();
}

Status BoltWriter::BeginBucket(std::string_view name) {
  if (!failed_.ok()) return failed_;
  SYNOD_ASSERT(!finished_);
  Tree& parent = trees_.back();
  if (Status status = CheckKey(parent, name); !status.ok()) return Fail(status);
  parent.last_key = std::string(name);
  parent.has_keys = true;
  Tree& child = trees_.emplace_back();
  child.name = std::string(name);
  return Status();
}

Status BoltWriter::Put(std::string_view key, std::string_view value) {
  if (!failed_.ok()) return failed_;
  SYNOD_ASSERT(!finished_);
  if (trees_.size() == 1) {
    return Fail(absl::InvalidArgumentError(
        fmt::format("bolt file {}: the root bucket holds buckets only", path_)));
  }
  if (value.size() > bolt::kValueBytesMax) {
    return Fail(absl::InvalidArgumentError(
        fmt::format("bolt file {}: value of {} bytes is too large", path_, value.size())));
  }
  Tree& tree = trees_.back();
  if (Status status = CheckKey(tree, key); !status.ok()) return Fail(status);
  tree.last_key = std::string(key);
  tree.has_keys = true;
  return AddLeaf(tree, key, value, 0);
}

Status BoltWriter::EndBucket() {
  if (!failed_.ok()) return failed_;
  if (trees_.size() < 2) {
    return Fail(absl::FailedPreconditionError(
        fmt::format("bolt file {}: EndBucket without an open bucket", path_)));
  }
  Tree tree = std::move(trees_.back());
  trees_.pop_back();
  Result<uint64_t> root = FinishTree(tree);
  if (!root.ok()) return root.status();
  // The bucket header: its root page, and a sequence (NextSequence's counter) of 0.
  std::string header(bolt::kBucketHeaderBytes, '\0');
  PutLe(header.data(), *root, 8);
  return AddLeaf(trees_.back(), tree.name, header, bolt::kBucketLeafFlag);
}

Status BoltWriter::AddLeaf(Tree& tree, std::string_view key, std::string_view value,
                           uint32_t flags) {
  return AddToLevel(tree, 0, Element{std::string(key), std::string(value), flags, 0});
}

Status BoltWriter::AddToLevel(Tree& tree, size_t level, Element element) {
  if (level == tree.levels.size()) {
    tree.levels.emplace_back().bytes = bolt::kPageHeaderBytes;
  }
  const size_t element_bytes =
      level == 0 ? bolt::kLeafElementBytes + element.key.size() + element.value.size()
                 : bolt::kBranchElementBytes + element.key.size();
  // A node is written once the next element would not fit in its page; a lone element bigger
  // than a page gets a node of its own spanning overflow pages.
  if (!tree.levels[level].elements.empty() &&
      tree.levels[level].bytes + element_bytes > bolt::kPageBytes) {
    if (Status status = FlushLevel(tree, level); !status.ok()) return status;
  }
  Node& node = tree.levels[level];  // After FlushLevel, which may grow `levels`.
  node.elements.push_back(std::move(element));
  node.bytes += element_bytes;
  return Status();
}

Status BoltWriter::FlushLevel(Tree& tree, size_t level) {
  Node& node = tree.levels[level];
  SYNOD_ASSERT(!node.elements.empty());
  Result<uint64_t> page_id = WriteNode(node, level == 0);
  if (!page_id.ok()) return page_id.status();
  // A branch element's key is the first key of its child (bbolt node.go: inode key = key()).
  std::string first_key = std::move(node.elements.front().key);
  node.elements.clear();
  node.bytes = bolt::kPageHeaderBytes;
  ++node.pages_written;
  return AddToLevel(tree, level + 1, Element{std::move(first_key), "", 0, *page_id});
}

Result<uint64_t> BoltWriter::FinishTree(Tree& tree) {
  if (tree.levels.empty()) {
    // An empty bucket: a root leaf without elements.
    tree.levels.emplace_back().bytes = bolt::kPageHeaderBytes;
  }
  for (size_t level = 0;; ++level) {
    SYNOD_ASSERT(level < tree.levels.size());
    Node& node = tree.levels[level];
    // The top level holds the root once nothing of it was written before: every lower level
    // has been flushed into it.
    if (level + 1 == tree.levels.size() && node.pages_written == 0) {
      return WriteNode(node, level == 0);
    }
    if (Status status = FlushLevel(tree, level); !status.ok()) return status;
  }
}

Result<uint64_t> BoltWriter::WriteNode(const Node& node, bool leaf) {
  if (!failed_.ok()) return failed_;
  SYNOD_ASSERT(node.elements.size() <= 0xFFFF);
  const uint64_t page_count = (node.bytes + bolt::kPageBytes - 1) / bolt::kPageBytes;
  SYNOD_ASSERT(page_count >= 1);
  if (page_count - 1 > UINT32_MAX) {
    return Fail(absl::InvalidArgumentError(fmt::format("bolt file {}: node too large", path_)));
  }
  const uint64_t page_id = next_page_id_;
  std::string bytes(page_count * bolt::kPageBytes, '\0');
  PutLe(&bytes[0], page_id, 8);
  PutLe(&bytes[8], leaf ? bolt::kLeafPageFlag : bolt::kBranchPageFlag, 2);
  PutLe(&bytes[10], node.elements.size(), 2);
  PutLe(&bytes[12], page_count - 1, 4);
  size_t data = bolt::kPageHeaderBytes + node.elements.size() * bolt::kLeafElementBytes;
  for (size_t i = 0; i < node.elements.size(); ++i) {
    const Element& element = node.elements[i];
    const size_t at = bolt::kPageHeaderBytes + i * bolt::kLeafElementBytes;
    if (leaf) {
      PutLe(&bytes[at], element.flags, 4);
      PutLe(&bytes[at + 4], data - at, 4);
      PutLe(&bytes[at + 8], element.key.size(), 4);
      PutLe(&bytes[at + 12], element.value.size(), 4);
    } else {
      PutLe(&bytes[at], data - at, 4);
      PutLe(&bytes[at + 4], element.key.size(), 4);
      PutLe(&bytes[at + 8], element.child, 8);
    }
    std::memcpy(&bytes[data], element.key.data(), element.key.size());
    data += element.key.size();
    if (leaf && !element.value.empty()) {
      std::memcpy(&bytes[data], element.value.data(), element.value.size());
      data += element.value.size();
    }
  }
  SYNOD_ASSERT(data == node.bytes);
  if (Status status = WriteAt(page_id, bytes); !status.ok()) return status;
  next_page_id_ += page_count;
  return page_id;
}

Status BoltWriter::WriteAt(uint64_t page_id, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                                     static_cast<off_t>(page_id * bolt::kPageBytes + done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      const std::string why = written < 0 ? std::strerror(errno) : "nothing written";
      return Fail(errno == ENOSPC
                      ? absl::ResourceExhaustedError(fmt::format("bolt file {}: {}", path_, why))
                      : absl::InternalError(fmt::format("bolt file {}: {}", path_, why)));
    }
    done += static_cast<size_t>(written);
  }
  return Status();
}

Status BoltWriter::Finish() {
  if (!failed_.ok()) return failed_;
  SYNOD_ASSERT(!finished_);
  if (trees_.size() != 1) {
    return Fail(absl::FailedPreconditionError(
        fmt::format("bolt file {}: {} bucket(s) still open", path_, trees_.size() - 1)));
  }
  Result<uint64_t> root = FinishTree(trees_[0]);
  if (!root.ok()) return root.status();

  std::string freelist(bolt::kPageBytes, '\0');
  PutLe(&freelist[0], 2, 8);
  PutLe(&freelist[8], bolt::kFreelistPageFlag, 2);
  if (Status status = WriteAt(2, freelist); !status.ok()) return status;

  for (uint64_t txid : {0, 1}) {
    std::string page(bolt::kPageBytes, '\0');
    PutLe(&page[0], txid, 8);  // Meta page ids equal their txid here, as in bbolt's init.
    PutLe(&page[8], bolt::kMetaPageFlag, 2);
    char* meta = &page[bolt::kPageHeaderBytes];
    PutLe(meta, bolt::kMagic, 4);
    PutLe(meta + 4, bolt::kVersion, 4);
    PutLe(meta + 8, bolt::kPageBytes, 4);
    PutLe(meta + 12, 0, 4);
    PutLe(meta + 16, *root, 8);
    PutLe(meta + 24, 0, 8);  // The root bucket's sequence.
    PutLe(meta + 32, 2, 8);  // The freelist page.
    PutLe(meta + 40, next_page_id_, 8);
    PutLe(meta + 48, txid, 8);
    PutLe(meta + bolt::kMetaChecksumOffset,
          bolt::MetaChecksum(std::string_view(meta, bolt::kMetaChecksumOffset)), 8);
    if (Status status = WriteAt(txid, page); !status.ok()) return status;
  }
  finished_ = true;
  return Status();
}

}  // namespace synod::storage
