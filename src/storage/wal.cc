#include "storage/wal.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "base/assert.h"
#include "storage/codec.h"
#include "storage/crc32c.h"

namespace synod::storage {
namespace {

enum RecordType : uint8_t {
  kSegmentHeader = 1,
  kHardState = 2,
  // Raft 7, received from the leader: the log is replaced.
  kSnapshotInstalled = 3,
  // A local snapshot: the prefix up to its index is no longer needed.
  kSnapshotTaken = 4,
  kEntry = 5,
  // A Multi-Paxos acceptor's slot (WalContent::kSlots).
  kSlot = 6,
};

constexpr uint8_t kFlagLastInBatch = 1;
constexpr size_t kRecordHeaderBytes = 24;
// Larger than any entry the server accepts (etcd's --max-request-bytes defaults to 1.5 MiB and
// a batch is many records); a length beyond it can only be damage.
constexpr uint32_t kRecordBodyBytesMax = 64 << 20;
constexpr std::string_view kSegmentMagic = "SYNODWAL";
constexpr std::string_view kSegmentSuffix = ".wal";
constexpr std::string_view kCreatingSuffix = ".creating";

struct Record {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint64_t batch = 0;
  std::string_view body;
  size_t size = 0;
};

enum class ParseOutcome { kRecord, kEnd, kInvalid };

// Parses the record at `offset`. kEnd: the file ends exactly there. kInvalid: a short header,
// a checksum mismatch or an impossible field, with the reason in `why`.
ParseOutcome ParseRecordAt(std::string_view contents, size_t offset, Record* record,
                           std::string* why) {
  SYNOD_ASSERT(offset <= contents.size());
  if (offset == contents.size()) return ParseOutcome::kEnd;
  const std::string_view rest = contents.substr(offset);
  if (rest.size() < kRecordHeaderBytes) {
    *why = fmt::format("record header cut short ({} of {} bytes)", rest.size(), kRecordHeaderBytes);
    return ParseOutcome::kInvalid;
  }
  const uint32_t header_crc = LoadU32(rest.data());
  if (ComputeCrc32c(rest.substr(4, kRecordHeaderBytes - 4)) != header_crc) {
    *why = "record header checksum mismatch";
    return ParseOutcome::kInvalid;
  }
  const uint32_t body_crc = LoadU32(rest.data() + 4);
  const uint32_t body_length = LoadU32(rest.data() + 8);
  record->type = static_cast<uint8_t>(rest[12]);
  record->flags = static_cast<uint8_t>(rest[13]);
  record->batch = LoadU64(rest.data() + 16);
  if (body_length > kRecordBodyBytesMax) {
    *why = fmt::format("record length {} beyond the limit {}", body_length, kRecordBodyBytesMax);
    return ParseOutcome::kInvalid;
  }
  if (rest.size() - kRecordHeaderBytes < body_length) {
    *why = fmt::format("record body cut short ({} of {} bytes)", rest.size() - kRecordHeaderBytes,
                       body_length);
    return ParseOutcome::kInvalid;
  }
  record->body = rest.substr(kRecordHeaderBytes, body_length);
  if (ComputeCrc32c(record->body) != body_crc) {
    *why = "record body checksum mismatch";
    return ParseOutcome::kInvalid;
  }
  record->size = kRecordHeaderBytes + body_length;
  return ParseOutcome::kRecord;
}

void AppendRecord(std::string* out, uint8_t type, uint8_t flags, uint64_t batch,
                  std::string_view body) {
  SYNOD_ASSERT(body.size() <= kRecordBodyBytesMax);
  const size_t start = out->size();
  Encoder encoder(out);
  encoder.PutU32(0);  // The header checksum, filled in below once the header is complete.
  encoder.PutU32(ComputeCrc32c(body));
  encoder.PutU32(static_cast<uint32_t>(body.size()));
  encoder.PutU8(type);
  encoder.PutU8(flags);
  encoder.PutU16(0);
  encoder.PutU64(batch);
  SYNOD_ASSERT(out->size() - start == kRecordHeaderBytes);
  const uint32_t header_crc =
      ComputeCrc32c(std::string_view(*out).substr(start + 4, kRecordHeaderBytes - 4));
  for (int i = 0; i < 4; ++i) (*out)[start + i] = static_cast<char>(header_crc >> (8 * i));
  out->append(body);
}

// Sets the last-in-batch flag of the record at `offset` and refreshes its header checksum.
void MarkLastInBatch(std::string* buffer, size_t offset) {
  SYNOD_ASSERT(offset + kRecordHeaderBytes <= buffer->size());
  (*buffer)[offset + 13] = static_cast<char>((*buffer)[offset + 13] | kFlagLastInBatch);
  const uint32_t header_crc =
      ComputeCrc32c(std::string_view(*buffer).substr(offset + 4, kRecordHeaderBytes - 4));
  for (int i = 0; i < 4; ++i) (*buffer)[offset + i] = static_cast<char>(header_crc >> (8 * i));
}

std::string SegmentName(uint64_t sequence, Index first_index) {
  return fmt::format("{:016x}-{:016x}{}", sequence, first_index.value(), kSegmentSuffix);
}

bool ParseSegmentName(std::string_view name, uint64_t* sequence, Index* first_index) {
  if (name.size() != 33 + kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix) ||
      name[16] != '-') {
    return false;
  }
  uint64_t first = 0;
  if (std::sscanf(std::string(name).c_str(), "%16" SCNx64 "-%16" SCNx64, sequence, &first) != 2) {
    return false;
  }
  *first_index = Index(first);
  return true;
}

std::string SegmentHeaderBody(uint64_t sequence, WalContent content) {
  std::string body(kSegmentMagic);
  Encoder encoder(&body);
  encoder.PutU32(kWalFormatVersion);
  encoder.PutU64(sequence);
  encoder.PutU8(static_cast<uint8_t>(content));
  return body;
}

Status Corruption(const std::string& path, size_t offset, std::string_view why) {
  return absl::DataLossError(
      fmt::format("write-ahead log corrupt: {} at offset {}: {} (acknowledged data may be "
                  "damaged; refusing to start rather than truncate it)",
                  path, offset, why));
}

// The state rebuilt while replaying records.
struct Replay {
  // What the log is opened as; every segment header must agree.
  WalContent content = WalContent::kEntries;
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;
  // Sorted by index; may have one gap where removed segments were, which a later snapshot
  // record covers (checked at the end).
  std::vector<raft::Entry> entries;
  // kSlots: the latest record of each index.
  std::map<Index, multipaxos::Slot> slots;
  // The last batch applied; every applied batch was complete.
  uint64_t last_batch = 0;
};

void DropEntriesFrom(std::vector<raft::Entry>* entries, Index index) {
  auto first_dropped = std::lower_bound(
      entries->begin(), entries->end(), index,
      [](const raft::Entry& entry, Index value) { return entry.index < value; });
  entries->erase(first_dropped, entries->end());
}

void DropEntriesThrough(std::vector<raft::Entry>* entries, Index index) {
  auto first_kept = std::upper_bound(
      entries->begin(), entries->end(), index,
      [](Index value, const raft::Entry& entry) { return value < entry.index; });
  entries->erase(entries->begin(), first_kept);
}

// Applies one valid record; an error means the record is well formed on disk but its content
// makes no sense, which is damage too.
Status ApplyRecord(const Record& record, uint64_t segment_sequence, bool first_in_segment,
                   Replay* replay, std::string* why) {
  if (first_in_segment != (record.type == kSegmentHeader)) {
    *why = first_in_segment ? "segment does not start with a segment header"
                            : "segment header in the middle of a segment";
    return absl::DataLossError(*why);
  }
  switch (record.type) {
    case kSegmentHeader: {
      if (!record.body.starts_with(kSegmentMagic)) {
        *why = "segment header without the magic bytes";
        return absl::DataLossError(*why);
      }
      Decoder decoder(record.body.substr(kSegmentMagic.size()));
      uint32_t version = 0;
      uint64_t sequence = 0;
      if (!decoder.GetU32(&version) || !decoder.GetU64(&sequence)) {
        *why = "segment header cut short";
        return absl::DataLossError(*why);
      }
      // Logs from before WalContent existed end here; they are Raft logs.
      uint8_t content = static_cast<uint8_t>(WalContent::kEntries);
      if (!decoder.empty() && (!decoder.GetU8(&content) || !decoder.empty() ||
                               content > static_cast<uint8_t>(WalContent::kSlots))) {
        *why = "segment header with an unknown content";
        return absl::DataLossError(*why);
      }
      if (version != kWalFormatVersion) {
        *why = fmt::format("write-ahead log format version {}; this build reads version {}",
                           version, kWalFormatVersion);
        return absl::FailedPreconditionError(*why);
      }
      if (sequence != segment_sequence) {
        *why = fmt::format("segment header names sequence {}, the file name {}", sequence,
                           segment_sequence);
        return absl::DataLossError(*why);
      }
      if (static_cast<WalContent>(content) != replay->content) {
        *why = fmt::format("the log holds {}, but was opened as a log of {}",
                           ToString(static_cast<WalContent>(content)), ToString(replay->content));
        return absl::FailedPreconditionError(*why);
      }
      return absl::OkStatus();
    }
    case kHardState:
      if (!DecodeHardState(record.body, &replay->hard_state)) {
        *why = "undecodable hard state";
        return absl::DataLossError(*why);
      }
      return absl::OkStatus();
    case kSnapshotInstalled:
    case kSnapshotTaken: {
      raft::SnapshotMeta meta;
      if (!DecodeSnapshotMeta(record.body, &meta)) {
        *why = "undecodable snapshot metadata";
        return absl::DataLossError(*why);
      }
      // A segment's opening copy of the snapshot may be older than one replayed before it.
      if (meta.index < replay->snapshot.index) return absl::OkStatus();
      if (replay->content == WalContent::kSlots) {
        // Slots above a snapshot, received or local, are acceptor state (WalContent::kSlots).
        replay->slots.erase(replay->slots.begin(), replay->slots.upper_bound(meta.index));
      } else if (record.type == kSnapshotInstalled) {
        replay->entries.clear();
      } else {
        DropEntriesThrough(&replay->entries, meta.index);
      }
      replay->snapshot = std::move(meta);
      return absl::OkStatus();
    }
    case kSlot: {
      multipaxos::Slot slot;
      if (replay->content != WalContent::kSlots || !DecodeSlot(record.body, &slot)) {
        *why = replay->content != WalContent::kSlots ? "a slot record in a log of entries"
                                                     : "undecodable slot";
        return absl::DataLossError(*why);
      }
      if (slot.value.index <= replay->snapshot.index) return absl::OkStatus();
      // A later record of a slot replaces that slot only (an acceptor's accept, PMS 2.2).
      replay->slots[slot.value.index] = std::move(slot);
      return absl::OkStatus();
    }
    case kEntry: {
      if (replay->content != WalContent::kEntries) {
        *why = "an entry record in a log of slots";
        return absl::DataLossError(*why);
      }
      raft::Entry entry;
      if (!DecodeEntry(record.body, &entry)) {
        *why = "undecodable entry";
        return absl::DataLossError(*why);
      }
      if (entry.index <= replay->snapshot.index) return absl::OkStatus();
      // Raft 5.3: a later record for an index replaces that entry and everything after it.
      DropEntriesFrom(&replay->entries, entry.index);
      replay->entries.push_back(std::move(entry));
      return absl::OkStatus();
    }
    default:
      *why = fmt::format("unknown record type {}", record.type);
      return absl::DataLossError(*why);
  }
}

// Looks for a valid record of a batch other than `torn_batch` anywhere after `offset`. Finding
// one proves the damage at `offset` is not the torn tail of the last write.
// (Unused only by the deliberately broken build below.)
[[maybe_unused]] std::optional<size_t> FindLaterBatch(std::string_view contents, size_t offset,
                                     uint64_t torn_batch) {
  for (size_t probe = offset + 1; probe + kRecordHeaderBytes <= contents.size(); ++probe) {
    // A header of zeros fails its checksum, so a record can only start within a header's
    // length before a non-zero byte: this skips a preallocated segment's zeros quickly.
    const size_t nonzero = contents.find_first_not_of('\0', probe);
    if (nonzero == std::string_view::npos) break;
    if (nonzero - probe >= kRecordHeaderBytes) probe = nonzero - (kRecordHeaderBytes - 1);
    Record record;
    std::string why;
    if (ParseRecordAt(contents, probe, &record, &why) != ParseOutcome::kRecord) continue;
    if (record.batch != torn_batch) return probe;
  }
  return std::nullopt;
}

}  // namespace

std::string_view ToString(WalContent content) {
  switch (content) {
    case WalContent::kEntries:
      return "Raft entries";
    case WalContent::kSlots:
      return "Multi-Paxos slots";
  }
  return "unknown content";
}

Wal::Wal(FileSystem* fs, WalOptions options) : fs_(fs), options_(std::move(options)) {}

Result<std::unique_ptr<Wal>> Wal::Create(FileSystem* fs, const WalOptions& options,
                                         const raft::SnapshotMeta& initial_snapshot) {
  SYNOD_ASSERT(!options.directory.empty());
  if (fs->Exists(options.directory)) {
    return absl::AlreadyExistsError(
        fmt::format("write-ahead log directory {} already exists", options.directory));
  }
  // Build the first segment under a temporary directory name and rename it into place, so a
  // crash during creation leaves no directory that looks like a log.
  const std::string creating = options.directory + std::string(kCreatingSuffix);
  if (fs->Exists(creating)) {
    auto names = fs->ListDirectory(creating);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      if (Status status = fs->Remove(JoinPath(creating, name)); !status.ok()) return status;
    }
  } else if (Status status = fs->CreateDirectory(creating); !status.ok()) {
    return status;
  }
  {
    std::unique_ptr<Wal> draft(
        new Wal(fs, WalOptions{creating, options.segment_bytes_max, options.content}));
    draft->snapshot_ = initial_snapshot;
    draft->synced_snapshot_ = initial_snapshot;
    draft->written_snapshot_ = initial_snapshot;
    draft->last_index_ = initial_snapshot.index;
    draft->written_last_index_ = initial_snapshot.index;
    if (Status status = draft->OpenNewSegment(0, initial_snapshot.index.next()); !status.ok()) {
      return status;
    }
    if (Status status = draft->Sync(); !status.ok()) return status;
  }
  if (Status status = fs->Rename(creating, options.directory); !status.ok()) return status;
  // The rename is durable only once the parent directory is synced.
  const size_t slash = options.directory.find_last_of('/');
  if (slash != std::string::npos) {
    const std::string parent = slash == 0 ? "/" : options.directory.substr(0, slash);
    if (Status status = fs->SyncDirectory(parent); !status.ok()) return status;
  }
  RecoveredLog recovered;
  return Open(fs, options, &recovered);
}

Result<std::unique_ptr<Wal>> Wal::Open(FileSystem* fs, const WalOptions& options,
                                       RecoveredLog* recovered) {
  if (!fs->Exists(options.directory)) {
    return absl::NotFoundError(
        fmt::format("no write-ahead log in {}: the directory does not exist", options.directory));
  }
  auto names = fs->ListDirectory(options.directory);
  if (!names.ok()) return names.status();
  std::unique_ptr<Wal> wal(new Wal(fs, options));
  for (const std::string& name : *names) {
    Segment segment;
    if (!ParseSegmentName(name, &segment.sequence, &segment.first_index)) continue;
    segment.path = JoinPath(options.directory, name);
    if (!wal->segments_.empty() && segment.sequence != wal->segments_.back().sequence + 1) {
      return absl::DataLossError(fmt::format(
          "write-ahead log {} is missing segment {} (found {} after {})", options.directory,
          wal->segments_.back().sequence + 1, name, wal->segments_.back().path));
    }
    wal->segments_.push_back(std::move(segment));
  }
  if (wal->segments_.empty()) {
    return absl::NotFoundError(
        fmt::format("no write-ahead log segments in {}", options.directory));
  }

  Replay replay;
  replay.content = options.content;
  *recovered = RecoveredLog{};
  struct TailToCut {
    std::string path;
    uint64_t size;
  };
  std::optional<TailToCut> tail_to_cut;
  for (size_t i = 0; i < wal->segments_.size(); ++i) {
    const Segment& segment = wal->segments_[i];
    const bool last_segment = i + 1 == wal->segments_.size();
    auto contents = fs->ReadFile(segment.path);
    if (!contents.ok()) return contents.status();
    // Records of the batch being read, applied only once its last record is seen: a batch is
    // one write, and a write the crash interrupted is treated as never made (wal.h).
    std::vector<std::pair<Record, size_t>> batch;
    size_t offset = 0;
    std::string why;
    // Where a preallocated segment's zeros begin, after the last record written.
    std::optional<size_t> zeros_from;
    while (true) {
      Record record;
      const ParseOutcome outcome = ParseRecordAt(*contents, offset, &record, &why);
      if (outcome == ParseOutcome::kInvalid &&
          std::string_view(*contents).find_first_not_of('\0', offset) == std::string_view::npos) {
        zeros_from = offset;
        why = "the file ends inside a write";
        break;
      }
      if (outcome == ParseOutcome::kInvalid) break;
      if (outcome == ParseOutcome::kEnd) {
        why = "the file ends inside a write";
        break;
      }
      const bool continues_batch = !batch.empty() && record.batch == batch.front().first.batch;
      if ((!batch.empty() && !continues_batch) || record.batch <= replay.last_batch) {
        return Corruption(segment.path, offset,
                          fmt::format("record of write {} after write {}", record.batch,
                                      batch.empty() ? replay.last_batch : batch.front().first.batch));
      }
      batch.emplace_back(record, offset);
      offset += record.size;
      if ((record.flags & kFlagLastInBatch) == 0) continue;
      for (const auto& [member, member_offset] : batch) {
        if (Status status =
                ApplyRecord(member, segment.sequence, member_offset == 0, &replay, &why);
            !status.ok()) {
          if (absl::IsFailedPrecondition(status)) {
            return absl::FailedPreconditionError(fmt::format("{}: {}", segment.path, why));
          }
          return Corruption(segment.path, member_offset, why);
        }
      }
      replay.last_batch = record.batch;
      batch.clear();
      if (offset == contents->size()) break;
    }
    // A last segment with nothing in it: its opening records never reached the disk, which
    // the torn-write case below handles (a crash can make the file's name durable first).
    const bool unused_last_segment = last_segment && offset == 0;
    if (batch.empty() && !unused_last_segment) {
      if (offset == contents->size()) continue;  // A clean end.
      if (zeros_from.has_value() && last_segment) {
        // A clean end in a preallocated segment. Appends continue at the end of the data (the
        // file is cut there, then reserved again below). Only the last segment is ever
        // preallocated past its data: an earlier one was closed once its data filled it, so
        // zeros there are lost writes, and are reported below as damage.
        tail_to_cut = TailToCut{segment.path, offset};
        break;
      }
    }

    // An unfinished write: the torn tail of the last one, or damage (see wal.h).
    const size_t damage_offset = offset;
    const size_t write_start = batch.empty() ? offset : batch.front().second;
#ifdef SYNOD_BROKEN_WAL_CUTS_DAMAGE
    // Deliberately broken build (never shipped; see CMakeLists.txt): the naive log that treats
    // any bad record as a torn tail and cuts everything from it on. The simulator's flipped-bit
    // check must catch it.
    (void)damage_offset;
    (void)last_segment;
    for (size_t later = wal->segments_.size() - 1; later > i; --later) {
      if (Status status = fs->Remove(wal->segments_[later].path); !status.ok()) return status;
      wal->segments_.pop_back();
    }
#else
    if (!last_segment) return Corruption(segment.path, damage_offset, why);
    const uint64_t torn_batch = batch.empty() ? replay.last_batch + 1 : batch.front().first.batch;
    if (auto later = FindLaterBatch(*contents, damage_offset, torn_batch); later.has_value()) {
      return Corruption(segment.path, damage_offset,
                        fmt::format("{}, with a valid record of a later write at offset {}", why,
                                    *later));
    }
#endif
    recovered->torn_tail = fmt::format("{} at offset {} ({})", segment.path, write_start, why);
    if (write_start == 0) {
      // The segment's own opening records never reached the disk: it was never used.
      if (Status status = fs->Remove(segment.path); !status.ok()) return status;
      if (Status status = fs->SyncDirectory(options.directory); !status.ok()) return status;
      wal->segments_.pop_back();
      if (wal->segments_.empty()) {
        return Corruption(segment.path, 0, "the only segment has no complete write");
      }
    } else if (Status status = fs->Truncate(segment.path, write_start); !status.ok()) {
      return status;
    }
    break;
  }

  // After the last snapshot a log of entries must be contiguous: a gap means lost records. A log
  // of slots may have gaps (an acceptor need not accept every slot).
  DropEntriesThrough(&replay.entries, replay.snapshot.index);
  replay.slots.erase(replay.slots.begin(), replay.slots.upper_bound(replay.snapshot.index));
  Index expected = replay.snapshot.index.next();
  for (const raft::Entry& entry : replay.entries) {
    if (entry.index != expected) {
      return absl::DataLossError(
          fmt::format("write-ahead log {} has a gap: entry {} follows entry {}",
                      options.directory, entry.index, expected.prev()));
    }
    expected = expected.next();
  }

  if (tail_to_cut.has_value()) {
    if (Status status = fs->Truncate(tail_to_cut->path, tail_to_cut->size); !status.ok()) {
      return status;
    }
  }
  auto current = fs->OpenForAppend(wal->segments_.back().path);
  if (!current.ok()) return current.status();
  wal->current_ = std::move(*current);
  wal->ReserveFor(wal->current_->size());
  wal->next_batch_ = replay.last_batch + 1;
  wal->hard_state_ = replay.hard_state;
  wal->snapshot_ = replay.snapshot;
  wal->synced_snapshot_ = replay.snapshot;
  wal->written_snapshot_ = replay.snapshot;
  wal->last_index_ = replay.entries.empty() ? replay.snapshot.index : replay.entries.back().index;
  if (!replay.slots.empty()) wal->last_index_ = replay.slots.rbegin()->first;
  wal->written_last_index_ = wal->last_index_;
  recovered->hard_state = replay.hard_state;
  recovered->snapshot = std::move(replay.snapshot);
  recovered->entries = std::move(replay.entries);
  for (auto& [index, slot] : replay.slots) recovered->slots.push_back(std::move(slot));
  return wal;
}

void Wal::BufferRecord(uint8_t type, std::string_view body) {
  last_record_offset_in_buffer_ = buffer_.size();
  AppendRecord(&buffer_, type, 0, next_batch_, body);
}

void Wal::Append(std::span<const raft::Entry> entries) {
  if (entries.empty()) return;
  SYNOD_ASSERT(options_.content == WalContent::kEntries);
  SYNOD_ASSERT_MSG(entries.front().index <= last_index_.next(),
                   "append at {} leaves a gap after {}", entries.front().index, last_index_);
  SYNOD_ASSERT_MSG(entries.front().index > snapshot_.index, "append at {} at or below the snapshot {}",
                   entries.front().index, snapshot_.index);
  std::string body;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) SYNOD_ASSERT(entries[i].index == entries[i - 1].index.next());
    body.clear();
    EncodeEntry(entries[i], &body);
    BufferRecord(kEntry, body);
  }
  last_index_ = entries.back().index;
}

void Wal::SaveSlots(std::span<const multipaxos::Slot> slots) {
  SYNOD_ASSERT(options_.content == WalContent::kSlots);
  std::string body;
  for (const multipaxos::Slot& slot : slots) {
    SYNOD_ASSERT(slot.value.index != Index(0));
    body.clear();
    EncodeSlot(slot, &body);
    BufferRecord(kSlot, body);
    last_index_ = std::max(last_index_, slot.value.index);
  }
}

void Wal::SaveHardState(const raft::HardState& hard_state) {
  SYNOD_ASSERT(hard_state.term >= hard_state_.term);
  hard_state_ = hard_state;
  std::string body;
  EncodeHardState(hard_state, &body);
  BufferRecord(kHardState, body);
}

void Wal::InstallSnapshot(const raft::SnapshotMeta& meta) {
  SYNOD_ASSERT(meta.index >= snapshot_.index);
  snapshot_ = meta;
  // Slots above a received snapshot stay (WalContent::kSlots), and last_index_ never falls.
  last_index_ = options_.content == WalContent::kSlots ? std::max(last_index_, meta.index)
                                                        : meta.index;
  std::string body;
  EncodeSnapshotMeta(meta, &body);
  BufferRecord(kSnapshotInstalled, body);
}

void Wal::CompactTo(const raft::SnapshotMeta& meta) {
  SYNOD_ASSERT(meta.index >= snapshot_.index);
  // A log of slots may not hold the slots below the commit index it learned from a leader's
  // snapshot; the local snapshot then lies beyond its highest slot.
  if (options_.content == WalContent::kSlots) last_index_ = std::max(last_index_, meta.index);
  SYNOD_ASSERT(meta.index <= last_index_);
  snapshot_ = meta;
  std::string body;
  EncodeSnapshotMeta(meta, &body);
  BufferRecord(kSnapshotTaken, body);
}

Status Wal::OpenNewSegment(uint64_t sequence, Index first_index) {
  const std::string path = JoinPath(options_.directory, SegmentName(sequence, first_index));
  SYNOD_ASSERT_MSG(!fs_->Exists(path), "segment {} exists already", path);
  auto file = fs_->OpenForAppend(path);
  if (!file.ok()) return file.status();
  current_ = std::move(*file);
  reserved_end_ = 0;
  directory_unsynced_ = true;
  segments_.push_back(Segment{sequence, first_index, path});
  // The opening records go before anything already buffered: they make the segment readable on
  // its own once earlier segments are removed.
  std::string opening;
  AppendRecord(&opening, kSegmentHeader, 0, next_batch_,
               SegmentHeaderBody(sequence, options_.content));
  std::string body;
  EncodeHardState(hard_state_, &body);
  AppendRecord(&opening, kHardState, 0, next_batch_, body);
  body.clear();
  EncodeSnapshotMeta(snapshot_, &body);
  AppendRecord(&opening, kSnapshotTaken, 0, next_batch_, body);
  if (buffer_.empty()) {
    last_record_offset_in_buffer_ = opening.size() - kRecordHeaderBytes - body.size();
  } else {
    last_record_offset_in_buffer_ += opening.size();
  }
  buffer_.insert(0, opening);
  return absl::OkStatus();
}

void Wal::ReserveFor(uint64_t end) {
  if (end <= reserved_end_) return;
  // Never past the segment's size, so that a closed segment is never reserved past its data
  // (its last write took it to segment_bytes_max or beyond).
  reserved_end_ = std::max(end, std::min(end + kWalReserveAheadBytes, options_.segment_bytes_max));
  current_->Preallocate(reserved_end_);
}

Status Wal::Fail(Status status) {
  SYNOD_ASSERT(!status.ok());
  failure_ = absl::Status(status.code(),
                          fmt::format("write-ahead log {} stopped accepting writes after: {}",
                                      options_.directory, std::string(status.message())));
  return failure_;
}

Status Wal::Write() {
  if (!failure_.ok()) return failure_;
  if (buffer_.empty()) return absl::OkStatus();
  if (current_ != nullptr && current_->size() >= options_.segment_bytes_max) {
    // The full segment's last write must be durable before the log moves on from it.
    if (Status status = SyncWritten(); !status.ok()) return status;
    // Every live entry in earlier segments is at or below the last index written before this
    // batch; naming the new segment after it lets ReleaseCoveredSegments decide from names.
    if (Status status = OpenNewSegment(segments_.back().sequence + 1, written_last_index_.next());
        !status.ok()) {
      return Fail(status);
    }
  }
  MarkLastInBatch(&buffer_, last_record_offset_in_buffer_);
  ReserveFor(current_->size() + buffer_.size());
  if (Status status = current_->Append(buffer_); !status.ok()) return Fail(status);
  buffer_.clear();
  ++next_batch_;
  write_unsynced_ = true;
  written_snapshot_ = snapshot_;
  written_last_index_ = last_index_;
  return absl::OkStatus();
}

Status Wal::SyncWritten() {
  if (!write_unsynced_) return absl::OkStatus();
  if (Status status = current_->Sync(); !status.ok()) return Fail(status);
  if (directory_unsynced_) {
    // A new segment's name is durable only once its directory is synced.
    if (Status status = fs_->SyncDirectory(options_.directory); !status.ok()) return Fail(status);
    directory_unsynced_ = false;
  }
  write_unsynced_ = false;
  synced_snapshot_ = written_snapshot_;
  return absl::OkStatus();
}

Status Wal::Sync() {
  if (Status status = Write(); !status.ok()) return status;
  return SyncWritten();
}

Result<size_t> Wal::ReleaseCoveredSegments() {
  if (!failure_.ok()) return failure_;
  size_t removed = 0;
  // Segment i holds only entries below segment i+1's first index.
  while (segments_.size() >= 2 && segments_[1].first_index.prev() <= synced_snapshot_.index) {
    if (Status status = fs_->Remove(segments_.front().path); !status.ok()) return Fail(status);
    segments_.erase(segments_.begin());
    ++removed;
  }
  if (removed > 0) {
    if (Status status = fs_->SyncDirectory(options_.directory); !status.ok()) return Fail(status);
  }
  return removed;
}

}  // namespace synod::storage
