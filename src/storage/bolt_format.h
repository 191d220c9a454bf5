#pragma once

// The on-disk format of a bbolt database (go.etcd.io/bbolt 1.3, the backend of etcd 3.4), shared
// by BoltWriter and BoltReader. Learned from bbolt's page.go, node.go, bucket.go and db.go; every
// integer is little-endian (bbolt writes its structs in native byte order, and every platform
// etcd supports for production is little-endian).
//
// A file is a sequence of pages of `page_bytes` (4096 here, the page size of the machines etcd
// runs on). Every page starts with a 16-byte header:
//   id u64 | flags u16 | count u16 | overflow u32
// `overflow` counts the extra pages a node occupies when it does not fit in one page.
//   - Pages 0 and 1 are meta pages (flags 0x04): after the header, the meta below. A reader uses
//     the valid one with the higher transaction id (db.go DB.meta), so a torn meta write falls
//     back to the previous one.
//   - The freelist page (flags 0x10) lists the free page ids (count, or 0xFFFF and the real count
//     in the first u64 when there are more).
//   - Branch pages (flags 0x01): `count` elements of pos u32 | ksize u32 | child pgid u64, then
//     the keys; each element's key is the first key of its child.
//   - Leaf pages (flags 0x02): `count` elements of flags u32 | pos u32 | ksize u32 | vsize u32,
//     then each key followed by its value. `pos` is the distance from the element to its key.
//     Element flag 0x01 marks a nested bucket: the value is the bucket header root u64 |
//     sequence u64; root 0 means an inline bucket, whose one leaf page follows the header inside
//     the value.
// The root bucket (the meta's) holds the top-level buckets; etcd keeps all its data in those.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace synod::storage::bolt {

inline constexpr uint32_t kMagic = 0xED0CDAED;
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kPageBytes = 4096;

inline constexpr uint16_t kBranchPageFlag = 0x01;
inline constexpr uint16_t kLeafPageFlag = 0x02;
inline constexpr uint16_t kMetaPageFlag = 0x04;
inline constexpr uint16_t kFreelistPageFlag = 0x10;
inline constexpr uint32_t kBucketLeafFlag = 0x01;

inline constexpr size_t kPageHeaderBytes = 16;
inline constexpr size_t kBranchElementBytes = 16;
inline constexpr size_t kLeafElementBytes = 16;
inline constexpr size_t kBucketHeaderBytes = 16;
// magic, version, page size, flags, root bucket (root, sequence), freelist, pgid (the high-water
// mark: pages in use), txid; then the checksum, an FNV-64a of everything before it.
inline constexpr size_t kMetaChecksumOffset = 56;
inline constexpr size_t kMetaBytes = 64;
// bbolt's pgidNoFreelist: the meta says no freelist page was written (NoFreelistSync).
inline constexpr uint64_t kNoFreelist = ~uint64_t{0};

// bbolt's limits (bucket.go MaxKeySize, MaxValueSize).
inline constexpr size_t kKeyBytesMax = 32768;
inline constexpr size_t kValueBytesMax = (size_t{1} << 31) - 2;

// The checksum of a meta: FNV-1a, 64 bits (Go's hash/fnv New64a), over its first 56 bytes.
inline uint64_t MetaChecksum(std::string_view meta_prefix) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char byte : meta_prefix) {
    hash ^= byte;
    hash *= 1099511628211ULL;
  }
  return hash;
}

inline void PutLe(char* out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
inline uint64_t GetLe(const char* in, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  return value;
}

}  // namespace synod::storage::bolt
