// The write-ahead log on the simulator's disk: what survives each fault, and what recovery
// must say about it (issue: unsynced writes lost at a crash, a torn final write, a flipped bit
// in an old record, fsync failure), for Raft's entries and Multi-Paxos's slots.
#include "storage/wal.h"

#include <gtest/gtest.h>

#include "base/prng.h"
#include "sim/sim_disk.h"
#include "storage/codec.h"
#include "storage/crc32c.h"

namespace synod::storage {
namespace {

using raft::Entry;
using raft::HardState;
using raft::Membership;
using raft::SnapshotMeta;
using sim::SimDisk;

constexpr char kDirectory[] = "/data/wal";
// Segments are preallocated to their full size and every open reads them whole, so the tests use
// 1 MiB ones: none fills that unless it asks for smaller segments.
constexpr uint64_t kSegmentBytes = 1 << 20;

SnapshotMeta InitialSnapshot() {
  return SnapshotMeta{Index(0), Term(0), Membership{{NodeId(1), NodeId(2), NodeId(3)}, {}}};
}

Entry MakeEntry(uint64_t term, uint64_t index, std::string data = "") {
  if (data.empty()) data = fmt::format("value-{}-{}", term, index);
  return Entry{Term(term), Index(index), raft::EntryType::kNormal, std::move(data), {}};
}

std::vector<Entry> MakeEntries(uint64_t term, uint64_t first, uint64_t last) {
  std::vector<Entry> entries;
  for (uint64_t index = first; index <= last; ++index) entries.push_back(MakeEntry(term, index));
  return entries;
}

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(disk_.CreateDirectory("/data").ok()); }

  std::unique_ptr<Wal> CreateWal(uint64_t segment_bytes_max = kSegmentBytes) {
    options_.directory = kDirectory;
    options_.segment_bytes_max = segment_bytes_max;
    auto wal = Wal::Create(&disk_, options_, InitialSnapshot());
    EXPECT_TRUE(wal.ok()) << wal.status();
    return wal.ok() ? std::move(*wal) : nullptr;
  }

  Result<std::unique_ptr<Wal>> Reopen(RecoveredLog* recovered) {
    return Wal::Open(&disk_, options_, recovered);
  }

  std::string OnlySegmentPath() {
    auto names = disk_.ListDirectory(kDirectory);
    EXPECT_TRUE(names.ok());
    EXPECT_EQ(names->size(), 1u);
    return JoinPath(kDirectory, names->front());
  }

  SimDisk disk_;
  WalOptions options_;
};

TEST_F(WalTest, RecoversWhatWasSynced) {
  auto wal = CreateWal();
  const std::vector<Entry> entries = MakeEntries(1, 1, 10);
  wal->Append(entries);
  wal->SaveHardState(HardState{Term(1), NodeId(2), Index(7)});
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();

  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(recovered.entries, entries);
  EXPECT_EQ(recovered.hard_state, (HardState{Term(1), NodeId(2), Index(7)}));
  EXPECT_EQ(recovered.snapshot, InitialSnapshot());
  EXPECT_FALSE(recovered.torn_tail.has_value());
  EXPECT_EQ((*reopened)->last_index(), Index(10));
}

TEST_F(WalTest, ConfigEntriesKeepTheirMembership) {
  auto wal = CreateWal();
  Entry config{Term(2), Index(1), raft::EntryType::kConfig, "", {{NodeId(1), NodeId(4)}, {NodeId(9)}}};
  Entry empty{Term(2), Index(2), raft::EntryType::kEmpty, "", {}};
  wal->Append(std::vector<Entry>{config, empty});
  ASSERT_TRUE(wal->Sync().ok());
  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.entries, (std::vector<Entry>{config, empty}));
}

// Raft 5.3: "If an existing entry conflicts with a new one, delete the existing entry and all
// that follow it". The log records the replacement; recovery must replay it the same way.
TEST_F(WalTest, ConflictingAppendReplacesTheSuffix) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 8));
  ASSERT_TRUE(wal->Sync().ok());
  wal->Append(MakeEntries(2, 4, 5));
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_EQ(wal->last_index(), Index(5));

  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  std::vector<Entry> expected = MakeEntries(1, 1, 3);
  for (const Entry& entry : MakeEntries(2, 4, 5)) expected.push_back(entry);
  EXPECT_EQ(recovered.entries, expected);
}

TEST_F(WalTest, UnsyncedRecordsAreLostAtACrash) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 3));
  ASSERT_TRUE(wal->Sync().ok());
  wal->Append(MakeEntries(1, 4, 6));
  wal->SaveHardState(HardState{Term(1), NodeId(1), Index(6)});
  wal.reset();  // The process dies before Sync: the records never left its memory.
  base::Prng prng(1);
  disk_.Crash(SimDisk::CrashKind::kTornWrite, prng);

  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.entries, MakeEntries(1, 1, 3));
  EXPECT_EQ(recovered.hard_state, HardState{});
}

// A crash during the write of a batch: any part of it may reach the disk, in any page order.
// Recovery must return the synced batches, plus the torn one only if all of it arrived, and
// the log must go on after it.
TEST_F(WalTest, TornFinalWriteIsCutAndNeverReportedAsCorruption) {
  int torn_tails = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SimDisk disk;
    ASSERT_TRUE(disk.CreateDirectory("/data").ok());
    WalOptions options{kDirectory, kSegmentBytes};
    auto created = Wal::Create(&disk, options, InitialSnapshot());
    ASSERT_TRUE(created.ok());
    std::unique_ptr<Wal> wal = std::move(*created);
    wal->Append(MakeEntries(1, 1, 20));
    ASSERT_TRUE(wal->Sync().ok());
    // Large values so the batch spans pages that reach the disk independently.
    std::vector<Entry> torn_batch;
    for (uint64_t index = 21; index <= 40; ++index) {
      torn_batch.push_back(MakeEntry(2, index, std::string(700, static_cast<char>('a' + index % 26))));
    }
    wal->Append(torn_batch);
    disk.FailSyncs(1);  // The write happened; the fsync never completed.
    ASSERT_FALSE(wal->Sync().ok());
    wal.reset();
    base::Prng prng(seed);
    disk.Crash(SimDisk::CrashKind::kTornWrite, prng);

    RecoveredLog recovered;
    auto reopened = Wal::Open(&disk, options, &recovered);
    ASSERT_TRUE(reopened.ok()) << "seed " << seed << ": " << reopened.status();
    ASSERT_TRUE(recovered.entries.size() == 20 || recovered.entries.size() == 40)
        << "seed " << seed << ": a write recovered in part: " << recovered.entries.size();
    const std::vector<Entry> synced = MakeEntries(1, 1, 20);
    for (size_t i = 0; i < recovered.entries.size(); ++i) {
      const Entry& expected = i < 20 ? synced[i] : torn_batch[i - 20];
      ASSERT_EQ(recovered.entries[i], expected) << "seed " << seed << " entry " << i;
    }
    if (recovered.torn_tail.has_value()) {
      ++torn_tails;
      EXPECT_EQ(recovered.entries.size(), 20u);
    }
    // The log goes on after the cut, and what follows is recovered too.
    const uint64_t next = recovered.entries.back().index.value() + 1;
    (*reopened)->Append(MakeEntries(3, next, next + 2));
    ASSERT_TRUE((*reopened)->Sync().ok());
    reopened->reset();
    RecoveredLog again;
    ASSERT_TRUE(Wal::Open(&disk, options, &again).ok()) << "seed " << seed;
    EXPECT_EQ(again.entries.back(), MakeEntry(3, next + 2));
    EXPECT_FALSE(again.torn_tail.has_value());
  }
  // Most seeds tear the batch somewhere; a test where none did would prove nothing.
  EXPECT_GT(torn_tails, 200);
}

// A flipped bit anywhere in data written before the last batch must stop start-up with an
// error naming the file and an offset at or before the damage; never a silent truncation.
TEST_F(WalTest, FlippedBitInAnOldRecordStopsStartUp) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 3));
  wal->SaveHardState(HardState{Term(1), NodeId(1), Index(3)});
  ASSERT_TRUE(wal->Sync().ok());
  const std::string path = OnlySegmentPath();
  const uint64_t old_bytes = disk_.DurableSize(path);
  wal->Append(MakeEntries(1, 4, 5));
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();
  const uint64_t total_bytes = disk_.DurableSize(path);

  for (uint64_t offset = 0; offset < old_bytes; ++offset) {
    const uint8_t bit = static_cast<uint8_t>(offset % 8);
    disk_.FlipBit(path, offset, bit);
    RecoveredLog recovered;
    auto reopened = Reopen(&recovered);
    ASSERT_FALSE(reopened.ok()) << "a flip at offset " << offset << " went unnoticed";
    EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
    const std::string message(reopened.status().message());
    EXPECT_NE(message.find(path), std::string::npos) << message;
    const size_t at = message.find("at offset ");
    ASSERT_NE(at, std::string::npos) << message;
    EXPECT_LE(std::stoull(message.substr(at + 10)), offset) << message;
    EXPECT_EQ(disk_.DurableSize(path), total_bytes) << "recovery cut damaged data";
    disk_.FlipBit(path, offset, bit);  // Repair, for the next offset.
  }
  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.entries, MakeEntries(1, 1, 5));
}

// fsyncgate: after a failed fsync nothing is known about the data, so the log refuses every
// later write instead of acknowledging anything on top of it.
TEST_F(WalTest, FsyncFailureStopsTheLog) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 2));
  disk_.FailSyncs(1);
  const Status failed = wal->Sync();
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("stopped accepting writes"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("Input/output error"), std::string::npos) << failed;
  wal->Append(MakeEntries(1, 3, 3));
  EXPECT_EQ(wal->Sync(), failed);
  EXPECT_FALSE(wal->ReleaseCoveredSegments().ok());
}

TEST_F(WalTest, SegmentsRotateAndSnapshotsReleaseThem) {
  auto wal = CreateWal(/*segment_bytes_max=*/2048);
  for (uint64_t index = 1; index <= 200; index += 10) {
    wal->Append(MakeEntries(1, index, index + 9));
    wal->SaveHardState(HardState{Term(1), NodeId(1), Index(index + 9)});
    ASSERT_TRUE(wal->Sync().ok());
  }
  EXPECT_GE(wal->segment_count(), 5u);

  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.entries, MakeEntries(1, 1, 200));

  const SnapshotMeta snapshot{Index(150), Term(1), InitialSnapshot().membership};
  wal->CompactTo(snapshot);
  // Not yet synced: nothing may be released on the strength of an unsynced snapshot record.
  ASSERT_EQ(*wal->ReleaseCoveredSegments(), 0u);
  ASSERT_TRUE(wal->Sync().ok());
  const uint64_t segments_before = wal->segment_count();
  auto released = wal->ReleaseCoveredSegments();
  ASSERT_TRUE(released.ok());
  EXPECT_GT(*released, 0u);
  EXPECT_EQ(wal->segment_count(), segments_before - *released);
  wal.reset();

  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.snapshot, snapshot);
  EXPECT_EQ(recovered.entries, MakeEntries(1, 151, 200));
  EXPECT_EQ(recovered.hard_state, (HardState{Term(1), NodeId(1), Index(200)}));
}

TEST_F(WalTest, InstalledSnapshotReplacesTheLog) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 10));
  ASSERT_TRUE(wal->Sync().ok());
  const SnapshotMeta snapshot{Index(50), Term(4), InitialSnapshot().membership};
  wal->InstallSnapshot(snapshot);
  wal->Append(MakeEntries(4, 51, 52));
  ASSERT_TRUE(wal->Sync().ok());
  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.snapshot, snapshot);
  EXPECT_EQ(recovered.entries, MakeEntries(4, 51, 52));
}

TEST_F(WalTest, MissingMiddleSegmentIsReported) {
  auto wal = CreateWal(/*segment_bytes_max=*/1024);
  for (uint64_t index = 1; index <= 100; index += 5) {
    wal->Append(MakeEntries(1, index, index + 4));
    ASSERT_TRUE(wal->Sync().ok());
  }
  wal.reset();
  auto names = disk_.ListDirectory(kDirectory);
  ASSERT_GE(names->size(), 3u);
  ASSERT_TRUE(disk_.Remove(JoinPath(kDirectory, (*names)[1])).ok());
  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(reopened.status().message().find("missing segment"), std::string::npos)
      << reopened.status();
}

// Replaces a file's durable contents.
void ReplaceContents(SimDisk& disk, const std::string& path, const std::string& contents) {
  ASSERT_TRUE(disk.Remove(path).ok());
  auto file = disk.OpenForAppend(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append(contents).ok());
  ASSERT_TRUE((*file)->Sync().ok());
}

// A segment is reserved to its full size; recovery takes the reserved zeros after the data for
// the end of the log (no torn write), and appends go on after the data, across restarts too.
TEST_F(WalTest, APreallocatedSegmentEndsWhereItsDataEnds) {
  auto wal = CreateWal();
  const std::string path = OnlySegmentPath();
  EXPECT_EQ(disk_.ReadFile(path)->size(), kSegmentBytes);
  uint64_t last = 3;
  wal->Append(MakeEntries(1, 1, last));
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();
  for (int restart = 0; restart < 3; ++restart) {
    RecoveredLog recovered;
    auto reopened = Reopen(&recovered);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    EXPECT_FALSE(recovered.torn_tail.has_value()) << *recovered.torn_tail;
    EXPECT_EQ(recovered.entries, MakeEntries(1, 1, last));
    EXPECT_EQ(disk_.ReadFile(path)->size(), kSegmentBytes) << "not reserved again";
    (*reopened)->Append(MakeEntries(1, last + 1, last + 2));
    ASSERT_TRUE((*reopened)->Sync().ok());
    last += 2;
  }
}

// In a large segment the reservation runs a fixed distance ahead of the data, not to the
// segment's end, so that opening the log reads few zeros.
TEST_F(WalTest, ALargeSegmentIsReservedAheadOfItsData) {
  auto wal = CreateWal(/*segment_bytes_max=*/16 << 20);
  const std::string path = OnlySegmentPath();
  auto data_end = [&] { return disk_.DurableSize(path); };
  EXPECT_EQ(disk_.ReadFile(path)->size(), data_end() + kWalReserveAheadBytes);
  // Past the reserved length: the next write reserves ahead again.
  std::vector<Entry> large;
  for (uint64_t index = 1; index <= 3; ++index) {
    large.push_back(MakeEntry(1, index, std::string(600 << 10, 'x')));
  }
  wal->Append(large);
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_GT(data_end(), kWalReserveAheadBytes);
  EXPECT_EQ(disk_.ReadFile(path)->size(), data_end() + kWalReserveAheadBytes);
  wal.reset();
  RecoveredLog recovered;
  ASSERT_TRUE(Reopen(&recovered).ok());
  EXPECT_EQ(recovered.entries, large);
  EXPECT_EQ(disk_.ReadFile(path)->size(), data_end() + kWalReserveAheadBytes);
}

// Only the last segment is ever reserved past its data, so zeros at the end of an earlier one
// are lost writes: damage, reported, never cut.
TEST_F(WalTest, ZerosAtTheEndOfAnEarlierSegmentAreDamage) {
  auto wal = CreateWal(/*segment_bytes_max=*/2048);
  for (uint64_t index = 1; index <= 60; ++index) {
    wal->Append(MakeEntries(1, index, index));
    ASSERT_TRUE(wal->Sync().ok());
  }
  wal.reset();
  auto names = disk_.ListDirectory(kDirectory);
  ASSERT_TRUE(names.ok());
  ASSERT_GE(names->size(), 2u);
  const std::string first = JoinPath(kDirectory, names->front());
  std::string contents = *disk_.ReadFile(first);
  // Zeros from the start of its last record (a record: 24-byte header, body_length at byte 8).
  size_t last_record = 0;
  for (size_t offset = 0; offset < contents.size();
       offset += 24 + LoadU32(contents.data() + offset + 8)) {
    last_record = offset;
  }
  ASSERT_GT(last_record, 0u);
  contents.replace(last_record, contents.size() - last_record,
                   std::string(contents.size() - last_record, '\0'));
  ReplaceContents(disk_, first, contents);
  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss) << reopened.status();
  EXPECT_NE(reopened.status().message().find(first), std::string::npos) << reopened.status();
  EXPECT_EQ(disk_.ReadFile(first)->size(), contents.size()) << "recovery cut damaged data";
}

// A crash can make a new segment's name durable before its opening records (its directory and
// its data are synced separately). Such a segment holds nothing: recovery removes it and the
// log goes on in the segment before it.
TEST_F(WalTest, ALastSegmentWithNothingWrittenIsRemoved) {
  auto wal = CreateWal(/*segment_bytes_max=*/2048);
  // Writes until the second segment is full (its data past its reserved 2,048 bytes): the next
  // write would open a third.
  uint64_t last = 0;
  auto last_segment_bytes = [&] {
    auto names = disk_.ListDirectory(kDirectory);
    return names->size() < 2 ? 0 : disk_.ReadFile(JoinPath(kDirectory, names->back()))->size();
  };
  while (last_segment_bytes() <= 2048) {
    ++last;
    wal->Append(MakeEntries(1, last, last));
    ASSERT_TRUE(wal->Sync().ok());
  }
  wal.reset();
  const std::string empty = JoinPath(kDirectory, fmt::format("{:016x}-{:016x}.wal", 2, last + 1));
  auto file = disk_.OpenForAppend(empty);
  ASSERT_TRUE(file.ok());
  (*file)->Preallocate(2048);
  ASSERT_TRUE(disk_.SyncDirectory(kDirectory).ok());
  file->reset();

  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(recovered.torn_tail.has_value());
  EXPECT_FALSE(disk_.Exists(empty));
  EXPECT_EQ(recovered.entries, MakeEntries(1, 1, last));
  (*reopened)->Append(MakeEntries(1, last + 1, last + 1));
  ASSERT_TRUE((*reopened)->Sync().ok());
  reopened->reset();
  RecoveredLog again;
  ASSERT_TRUE(Reopen(&again).ok());
  EXPECT_EQ(again.entries, MakeEntries(1, 1, last + 1));
}

// Rewrites the only segment's header record with `body` and valid checksums, as another build
// would have written it.
void RewriteSegmentHeader(SimDisk& disk, const std::string& path, const std::string& body) {
  std::string contents = *disk.ReadFile(path);
  // This build's header: magic, version, sequence and the content byte.
  const size_t old_record_bytes = 24 + (8 + 4 + 8 + 1);
  std::string record;
  Encoder header(&record);
  header.PutU32(0);
  header.PutU32(ComputeCrc32c(body));
  header.PutU32(static_cast<uint32_t>(body.size()));
  header.PutU8(1);
  header.PutU8(0);
  header.PutU16(0);
  header.PutU64(LoadU64(contents.data() + 16));
  const uint32_t header_crc = ComputeCrc32c(std::string_view(record).substr(4));
  for (int i = 0; i < 4; ++i) record[i] = static_cast<char>(header_crc >> (8 * i));
  record += body;
  contents.replace(0, old_record_bytes, record);
  ReplaceContents(disk, path, contents);
}

TEST_F(WalTest, UnknownFormatVersionIsRefused) {
  auto wal = CreateWal();
  wal.reset();
  std::string body = "SYNODWAL";
  Encoder encoder(&body);
  encoder.PutU32(2);
  encoder.PutU64(0);
  RewriteSegmentHeader(disk_, OnlySegmentPath(), body);

  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(reopened.status().message().find("format version 2"), std::string::npos)
      << reopened.status();
}

// A log written before WalContent existed has no content byte in its segment headers: it is a
// Raft log, and opens as one (and only as one).
TEST_F(WalTest, SegmentHeaderWithoutContentIsARaftLog) {
  auto wal = CreateWal();
  wal->Append(MakeEntries(1, 1, 3));
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();
  std::string body = "SYNODWAL";
  Encoder encoder(&body);
  encoder.PutU32(kWalFormatVersion);
  encoder.PutU64(0);
  RewriteSegmentHeader(disk_, OnlySegmentPath(), body);

  RecoveredLog recovered;
  auto reopened = Reopen(&recovered);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(recovered.entries, MakeEntries(1, 1, 3));
  options_.content = WalContent::kSlots;
  auto as_slots = Reopen(&recovered);
  ASSERT_FALSE(as_slots.ok());
  EXPECT_EQ(as_slots.status().code(), absl::StatusCode::kFailedPrecondition);
}

// A crash while the log is being created leaves no directory that looks like a log, and
// creating it again works.
TEST_F(WalTest, CreationIsAtomic) {
  options_.directory = kDirectory;
  disk_.FailSyncs(1);
  ASSERT_FALSE(Wal::Create(&disk_, options_, InitialSnapshot()).ok());
  base::Prng prng(7);
  disk_.Crash(SimDisk::CrashKind::kTornWrite, prng);
  RecoveredLog recovered;
  EXPECT_EQ(Reopen(&recovered).status().code(), absl::StatusCode::kNotFound);
  auto wal = Wal::Create(&disk_, options_, InitialSnapshot());
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_TRUE(Reopen(&recovered).ok());
}

TEST_F(WalTest, ExistingDirectoryIsNotOverwritten) {
  auto wal = CreateWal();
  auto again = Wal::Create(&disk_, options_, InitialSnapshot());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
}

// ---------------------------------------------------------------------------------------------
// The log as a Multi-Paxos acceptor's durable state (WalContent::kSlots): a slot record replaces
// only its own slot, slots may have gaps, a snapshot drops only the slots it covers, a torn final
// write is cut whole, and a log is never opened as the other engine's.

using multipaxos::BallotNumber;
using multipaxos::Slot;

Slot MakeSlot(uint64_t index, uint64_t round, uint64_t proposer, std::string data = "") {
  if (data.empty()) data = fmt::format("value-{}-{}", round, index);
  return Slot{BallotNumber{Ballot(round), NodeId(proposer)},
              Entry{Term(round), Index(index), raft::EntryType::kNormal, std::move(data), {}}};
}

std::vector<Slot> MakeSlots(uint64_t first, uint64_t last, uint64_t round) {
  std::vector<Slot> slots;
  for (uint64_t index = first; index <= last; ++index) slots.push_back(MakeSlot(index, round, 1));
  return slots;
}

std::vector<uint64_t> IndexesOf(const std::vector<Slot>& slots) {
  std::vector<uint64_t> indexes;
  for (const Slot& slot : slots) indexes.push_back(slot.value.index.value());
  return indexes;
}

class WalSlotsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(disk_.CreateDirectory("/data").ok());
    options_ = WalOptions{kDirectory, kSegmentBytes, WalContent::kSlots};
  }

  std::unique_ptr<Wal> CreateWal() {
    auto wal = Wal::Create(&disk_, options_, InitialSnapshot());
    EXPECT_TRUE(wal.ok()) << wal.status();
    return wal.ok() ? std::move(*wal) : nullptr;
  }

  RecoveredLog Recover() {
    RecoveredLog recovered;
    auto reopened = Wal::Open(&disk_, options_, &recovered);
    EXPECT_TRUE(reopened.ok()) << reopened.status();
    return recovered;
  }

  SimDisk disk_;
  WalOptions options_;
};

TEST_F(WalSlotsTest, LaterRecordReplacesOnlyItsOwnSlot) {
  auto wal = CreateWal();
  wal->SaveSlots(MakeSlots(1, 5, 1));
  ASSERT_TRUE(wal->Sync().ok());
  // A new leader's ballot re-proposes slot 3 (PMS 3): unlike Raft 5.3, slots 4 and 5 stay.
  const Slot reproposed = MakeSlot(3, 2, 2, "reproposed");
  wal->SaveSlots(std::vector<Slot>{reproposed});
  // The promise maps onto the hard state record: term = round, voted_for = proposer.
  wal->SaveHardState(HardState{Term(2), NodeId(2), Index(2)});
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();

  RecoveredLog recovered = Recover();
  std::vector<Slot> expected = MakeSlots(1, 5, 1);
  expected[2] = reproposed;
  EXPECT_EQ(recovered.slots, expected);
  EXPECT_TRUE(recovered.entries.empty());
  EXPECT_EQ(recovered.hard_state, (HardState{Term(2), NodeId(2), Index(2)}));
}

TEST_F(WalSlotsTest, SlotsWithGapsAreRecoveredAsTheyWere) {
  auto wal = CreateWal();
  wal->SaveSlots(std::vector<Slot>{MakeSlot(2, 1, 1), MakeSlot(7, 1, 1)});
  ASSERT_TRUE(wal->Sync().ok());
  wal->SaveSlots(std::vector<Slot>{MakeSlot(4, 1, 1)});
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_EQ(wal->last_index(), Index(7));
  wal.reset();
  EXPECT_EQ(IndexesOf(Recover().slots), (std::vector<uint64_t>{2, 4, 7}));
}

TEST_F(WalSlotsTest, SnapshotsDropOnlyTheSlotsTheyCover) {
  options_.segment_bytes_max = 2048;
  auto wal = CreateWal();
  for (uint64_t index = 1; index <= 200; index += 10) {
    wal->SaveSlots(MakeSlots(index, index + 9, 1));
    ASSERT_TRUE(wal->Sync().ok());
  }
  EXPECT_GE(wal->segment_count(), 5u);
  // A local snapshot at 120, then one received from a leader at 150: the slots above 150 are
  // acceptor state and survive both (a Raft log would lose them to the received one).
  wal->CompactTo(SnapshotMeta{Index(120), Term(1), InitialSnapshot().membership});
  ASSERT_TRUE(wal->Sync().ok());
  const SnapshotMeta received{Index(150), Term(1), InitialSnapshot().membership};
  wal->InstallSnapshot(received);
  wal->SaveSlots(std::vector<Slot>{MakeSlot(151, 3, 2, "after the snapshot")});
  ASSERT_TRUE(wal->Sync().ok());
  const uint64_t segments_before = wal->segment_count();
  auto released = wal->ReleaseCoveredSegments();
  ASSERT_TRUE(released.ok());
  EXPECT_GT(*released, 0u);
  EXPECT_EQ(wal->segment_count(), segments_before - *released);
  wal.reset();

  RecoveredLog recovered = Recover();
  EXPECT_EQ(recovered.snapshot, received);
  std::vector<Slot> expected = MakeSlots(151, 200, 1);
  expected[0] = MakeSlot(151, 3, 2, "after the snapshot");
  EXPECT_EQ(recovered.slots, expected);
}

// The torn final write of a batch of slots is cut whole, as for entries (wal.h).
TEST_F(WalSlotsTest, TornFinalWriteIsCutWhole) {
  int torn_tails = 0;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SimDisk disk;
    ASSERT_TRUE(disk.CreateDirectory("/data").ok());
    auto created = Wal::Create(&disk, options_, InitialSnapshot());
    ASSERT_TRUE(created.ok());
    std::unique_ptr<Wal> wal = std::move(*created);
    wal->SaveSlots(MakeSlots(1, 10, 1));
    ASSERT_TRUE(wal->Sync().ok());
    std::vector<Slot> torn_batch;
    for (uint64_t index = 5; index <= 30; ++index) {
      torn_batch.push_back(MakeSlot(index, 2, 3, std::string(700, static_cast<char>('a' + index % 26))));
    }
    wal->SaveSlots(torn_batch);
    wal->SaveHardState(HardState{Term(2), NodeId(3), Index(0)});
    disk.FailSyncs(1);
    ASSERT_FALSE(wal->Sync().ok());
    wal.reset();
    base::Prng prng(seed);
    disk.Crash(SimDisk::CrashKind::kTornWrite, prng);

    RecoveredLog recovered;
    auto reopened = Wal::Open(&disk, options_, &recovered);
    ASSERT_TRUE(reopened.ok()) << "seed " << seed << ": " << reopened.status();
    std::vector<Slot> whole = MakeSlots(1, 4, 1);
    whole.insert(whole.end(), torn_batch.begin(), torn_batch.end());
    const bool without_write =
        recovered.slots == MakeSlots(1, 10, 1) && recovered.hard_state == HardState{};
    EXPECT_TRUE(without_write || recovered.slots == whole) << "seed " << seed;
    // A cut write is reported; a write none of which reached the disk left only the segment's
    // reserved zeros, which are the end of the log.
    if (recovered.torn_tail.has_value()) {
      ++torn_tails;
      EXPECT_TRUE(without_write) << "seed " << seed;
    }
  }
  EXPECT_GT(torn_tails, 50);
}

TEST_F(WalSlotsTest, ALogIsNeverOpenedAsTheOtherEngines) {
  auto wal = CreateWal();
  wal->SaveSlots(MakeSlots(1, 3, 1));
  ASSERT_TRUE(wal->Sync().ok());
  wal.reset();
  RecoveredLog recovered;
  WalOptions as_raft = options_;
  as_raft.content = WalContent::kEntries;
  auto opened = Wal::Open(&disk_, as_raft, &recovered);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("holds Multi-Paxos slots"), std::string::npos)
      << opened.status();
}

}  // namespace
}  // namespace synod::storage
