#include "storage/crc32c.h"

#include <rocksdb/file_checksum.h>

#include "base/assert.h"

namespace synod::storage {

Crc32c::Crc32c() {
  rocksdb::FileChecksumGenContext context;
  generator_ = rocksdb::GetFileChecksumGenCrc32cFactory()->CreateFileChecksumGenerator(context);
  SYNOD_ASSERT(generator_ != nullptr);
}

Crc32c::~Crc32c() = default;

void Crc32c::Update(std::string_view data) {
  SYNOD_ASSERT(!finished_);
  generator_->Update(data.data(), data.size());
}

uint32_t Crc32c::Finish() {
  SYNOD_ASSERT(!finished_);
  finished_ = true;
  generator_->Finalize();
  // RocksDB hands the checksum out as four big-endian bytes.
  const std::string bytes = generator_->GetChecksum();
  SYNOD_ASSERT(bytes.size() == 4);
  uint32_t value = 0;
  for (unsigned char byte : bytes) value = (value << 8) | byte;
  return value;
}

uint32_t ComputeCrc32c(std::string_view data) {
  Crc32c crc;
  crc.Update(data);
  return crc.Finish();
}

}  // namespace synod::storage
