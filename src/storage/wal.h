#pragma once

// The durable Raft log and hard state: a write-ahead log of checksummed records in numbered
// segment files. The same log, with the same framing, batches, checksums and torn-tail
// recovery, also holds a Multi-Paxos acceptor's state (WalContent::kSlots below).
//
// Format (version 1). A segment file is named "<sequence>-<first index>.wal" (16 hex digits
// each) and is a sequence of records. Each record is a 24-byte header and a body:
//
//   u32 header_crc   CRC32C of the 20 header bytes after it
//   u32 body_crc     CRC32C of the body
//   u32 body_length
//   u8  type         RecordType below
//   u8  flags        bit 0: last record of its batch
//   u16 reserved     zero
//   u64 batch        the number of the write (one write + one fsync) the record belongs to
//
// The segment being written is preallocated ahead of its data (FileSystem's Preallocate), up to
// kWalReserveAheadBytes and never past segment_bytes_max: an fdatasync after an append into
// reserved space commits no new file length, which on ext4 spares a journal commit per write
// (etcd's WAL preallocates its segments for the same reason). The reserved part reads as zeros,
// so zeros after the last complete write of the last segment are the end of the log, not
// damage; the file is cut there and reserved again when it is opened for appending.
//
// A segment begins with a segment header record (magic, format version, sequence, and a
// content byte, WalContent, absent in logs written before Multi-Paxos existed), then the
// hard state and the latest snapshot's metadata, so every segment is readable on its own and
// older segments can be removed once a snapshot covers their entries (Raft 7).
//
// Recovery (Raft 5 and thesis 11.7.1: a node must come back with everything it acknowledged):
// records are read in order; a batch (one write) takes effect only when its flagged last record
// has been read, so a write the crash interrupted is treated as never made, whole. Reading
// stops at the first record whose header or body fails its checksum, or at an unfinished batch.
//  - Zeros from the start of a batch to the end of the last segment are its reserved space, not
//    a write: a clean end (a write none of which reached the disk leaves the same, and is
//    rightly taken as never made).
//  - If that is in the last segment and no valid record of a LATER batch follows it, it is the
//    torn tail of the one write a crash can interrupt: the write was never acknowledged, so the
//    file is cut at the start of that write and the node restarts without it.
//  - Otherwise (an older segment, or valid later batches after it) acknowledged data is damaged:
//    Open fails with a kDataLoss error naming the file and the offset, and never truncates.
// The header checksum lets that scan look for later records at every byte offset cheaply.
// A flipped bit inside the very last synced batch is indistinguishable from a torn write and is
// cut like one; this is the same limit etcd's WAL has.
//
// Threading: a Wal is not thread-safe; one storage thread owns it (LogWriter).

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/types.h"
#include "storage/file_system.h"

namespace synod::storage {

inline constexpr uint32_t kWalFormatVersion = 1;
// How far past its data the segment being written is reserved (see above): one length change
// per this many bytes written, and at most this many zeros read when the log is opened.
inline constexpr uint64_t kWalReserveAheadBytes = 1 << 20;

// What a log holds after its snapshot, fixed when it is created and named in every segment
// header, so that a log is never replayed by the rules of the other engine.
enum class WalContent : uint8_t {
  // Raft: a contiguous run of entries; an entry record replaces its index and every index after
  // it (Raft 5.3); a snapshot received from the leader replaces the whole log (Raft 7).
  kEntries = 0,
  // Multi-Paxos (consensus/multipaxos/types.h): acceptor slots. A slot record replaces only the
  // slot of its own index; slots need not be contiguous; a snapshot, received or local, drops
  // only the slots at or below its index, because a slot above it holds a value accepted in some
  // ballot, which may be part of a choice and must never be forgotten ("Paxos Made Simple" 2.3).
  // The hard state record holds the promise as {term = promise round, voted_for = promise
  // proposer, commit}.
  kSlots = 1,
};
std::string_view ToString(WalContent content);

struct WalOptions {
  std::string directory;
  // A segment that has grown past this is closed after the write that grew it, and the next
  // write starts a new one (etcd uses 64 MiB segments too).
  uint64_t segment_bytes_max = 64 << 20;
  // Create writes it; Open refuses a log of the other content with kFailedPrecondition.
  WalContent content = WalContent::kEntries;
};

// What a restarted node resumes from.
struct RecoveredLog {
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;
  // kEntries: contiguous, starting at snapshot.index + 1.
  std::vector<raft::Entry> entries;
  // kSlots: above snapshot.index, ascending, gaps allowed; each the latest record of its index.
  std::vector<multipaxos::Slot> slots;
  // Set when recovery cut a torn final write: the file and the offset it was cut at.
  std::optional<std::string> torn_tail;
};

class Wal {
 public:
  // Creates a new log in `options.directory`, which must not exist yet. The log starts with the
  // given snapshot metadata (a new cluster member: index 0 with the initial membership). The
  // directory appears complete or not at all: it is written under a temporary name first.
  static Result<std::unique_ptr<Wal>> Create(FileSystem* fs, const WalOptions& options,
                                             const raft::SnapshotMeta& initial_snapshot);

  // Opens an existing log and recovers its contents; see the recovery rules above. Errors:
  // kNotFound (no log there), kDataLoss (corruption, with file and offset), kFailedPrecondition
  // (a format version this build cannot read).
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, const WalOptions& options,
                                           RecoveredLog* recovered);

  // The next three only buffer records; nothing is durable, and nothing that depends on them may
  // be sent or answered, until Sync returns OK.
  //
  // Appends entries that continue the log or replace a suffix of it (Raft 5.3: a conflicting
  // entry and all that follow it are deleted); precondition: entries are contiguous and the
  // first index is at most last_index() + 1 and above the snapshot.
  void Append(std::span<const raft::Entry> entries);
  void SaveHardState(const raft::HardState& hard_state);
  // kSlots only: each slot replaces the stored slot of its index. Slots at or below the snapshot
  // are covered by it and dropped at recovery.
  void SaveSlots(std::span<const multipaxos::Slot> slots);
  // A snapshot received from the leader replaced the whole log (Raft 7: "the follower discards
  // its entire log"); the log continues at meta.index + 1. kSlots: only the slots at or below
  // meta.index are dropped (see WalContent).
  void InstallSnapshot(const raft::SnapshotMeta& meta);
  // This node's state machine is durable up to meta.index (a local snapshot), so the entries up
  // to it are no longer needed; later entries stay. Precondition: meta.index <= last_index().
  void CompactTo(const raft::SnapshotMeta& meta);

  // Writes every buffered record to the file as one batch, without fsync. Recovery treats a
  // batch as all or nothing. Rotates to a new segment first when the current one is full.
  Status Write();
  // Write(), then fsync: one fsync covers everything written since the previous Sync (group
  // commit). After any I/O error the Wal refuses every further call with that error: it cannot
  // know what reached the disk, so the node must stop and recover from what is there.
  Status Sync();

  // Removes segments whose entries are all at or below the latest synced snapshot's index.
  // Returns the number of segments removed.
  Result<size_t> ReleaseCoveredSegments();

  // kEntries: the last entry's index. kSlots: the highest slot index ever written (or the
  // snapshot's, if higher); segment names and ReleaseCoveredSegments rely on it never falling.
  Index last_index() const { return last_index_; }
  uint64_t segment_count() const { return segments_.size(); }

 private:
  struct Segment {
    uint64_t sequence = 0;
    Index first_index;
    std::string path;
  };

  Wal(FileSystem* fs, WalOptions options);
  Status OpenNewSegment(uint64_t sequence, Index first_index);
  void BufferRecord(uint8_t type, std::string_view body);
  Status SyncWritten();
  Status Fail(Status status);
  // Reserves the current segment past `end` (its data after the next write), see above.
  void ReserveFor(uint64_t end);

  FileSystem* const fs_;
  const WalOptions options_;
  std::vector<Segment> segments_;
  std::unique_ptr<AppendableFile> current_;
  // How far current_ is reserved.
  uint64_t reserved_end_ = 0;
  // Records of the batch being assembled; the last one is flagged at Sync.
  std::string buffer_;
  size_t last_record_offset_in_buffer_ = 0;
  uint64_t next_batch_ = 1;
  Index last_index_;
  // last_index_ and snapshot_ as of the end of the last written batch.
  Index written_last_index_;
  raft::SnapshotMeta written_snapshot_;
  bool write_unsynced_ = false;
  // A segment was created since the directory was last synced.
  bool directory_unsynced_ = false;
  raft::HardState hard_state_;
  raft::SnapshotMeta snapshot_;
  // The snapshot known to be durable, which bounds ReleaseCoveredSegments.
  raft::SnapshotMeta synced_snapshot_;
  Status failure_;
};

}  // namespace synod::storage
