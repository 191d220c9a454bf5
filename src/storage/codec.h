#pragma once

// Fixed-width little-endian encoding of the Raft types the write-ahead log stores. Hand-written
// rather than protobuf because the log's records are few, small and fixed in shape, and a log
// record must decode the same way for as long as its format version says so.

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/types.h"

namespace synod::storage {

class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}
  void PutU8(uint8_t value);
  void PutU16(uint16_t value);
  void PutU32(uint32_t value);
  void PutU64(uint64_t value);
  // A u32 length, then the bytes.
  void PutBytes(std::string_view bytes);

 private:
  std::string* out_;
};

// Reads what Encoder wrote. Every getter returns false once the input runs short, and stays
// false; the caller turns that into a corruption error naming its file and offset.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool GetU8(uint8_t* value);
  bool GetU16(uint16_t* value);
  bool GetU32(uint32_t* value);
  bool GetU64(uint64_t* value);
  bool GetBytes(std::string* bytes);
  bool empty() const { return in_.empty(); }

 private:
  bool Take(size_t count, std::string_view* bytes);
  std::string_view in_;
};

uint32_t LoadU32(const char* bytes);
uint64_t LoadU64(const char* bytes);

void EncodeEntry(const raft::Entry& entry, std::string* out);
bool DecodeEntry(std::string_view in, raft::Entry* entry);
void EncodeHardState(const raft::HardState& hard_state, std::string* out);
bool DecodeHardState(std::string_view in, raft::HardState* hard_state);
void EncodeSnapshotMeta(const raft::SnapshotMeta& meta, std::string* out);
bool DecodeSnapshotMeta(std::string_view in, raft::SnapshotMeta* meta);
// A Multi-Paxos acceptor's slot: the accepted ballot (round, proposer), then the value as an
// entry (EncodeEntry); the slot's index is the entry's.
void EncodeSlot(const multipaxos::Slot& slot, std::string* out);
bool DecodeSlot(std::string_view in, multipaxos::Slot* slot);

}  // namespace synod::storage
