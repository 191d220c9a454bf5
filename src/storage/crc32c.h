#pragma once

// CRC32C (Castagnoli), the checksum of every record Synod writes: log records, hard state,
// snapshot chunks. It is computed by RocksDB's file-checksum generator, which uses the SSE4.2
// instruction where the CPU has it, so Synod does not carry a checksum implementation of its own.

#include <cstdint>
#include <memory>
#include <string_view>

namespace rocksdb {
class FileChecksumGenerator;
}

namespace synod::storage {

// Accumulates a CRC32C over several pieces, as if they were one buffer.
class Crc32c {
 public:
  Crc32c();
  ~Crc32c();
  Crc32c(const Crc32c&) = delete;
  Crc32c& operator=(const Crc32c&) = delete;

  void Update(std::string_view data);
  // The checksum of everything passed to Update. Call once; the object is spent afterwards.
  uint32_t Finish();

 private:
  std::unique_ptr<rocksdb::FileChecksumGenerator> generator_;
  bool finished_ = false;
};

// The CRC32C of one buffer.
uint32_t ComputeCrc32c(std::string_view data);

}  // namespace synod::storage
