#pragma once

// The RocksDB backend of the replicated state machine: the only code in Synod that touches
// RocksDB. It stores tables of ordered byte strings (one RocksDB column family each) and, in the
// same atomic write, the Raft index of the last applied entry and the membership blob, so that
// after a crash the stored applied index describes exactly the data stored: replay after restart
// applies every later entry once, and no entry twice (the "consistent index" of etcd's backend).
//
// Durability: the Raft log is the write-ahead log of the state machine, so Commit writes only
// RocksDB's memtables (no RocksDB WAL, which would write and checksum every value a second
// time). Sync flushes the memtables of every table to SST files in one atomic flush; RocksDB
// also flushes them, the same way, when they fill. After a crash the database is therefore
// exactly what some flush left, with the applied index of that moment, and the unflushed
// commits are lost. Before the caller truncates the Raft log past an applied index, that index
// must be durable (Sync, or StartSync and then durable_applied_index()), so that the entries a
// crash would lose are still in the log to be applied again (etcd's backend works the same way:
// bbolt commits every 100 ms and the WAL replays the rest).
//
// Directory layout (why: a snapshot must replace the whole database atomically, and a directory
// cannot be renamed over a non-empty one):
//   <dir>/CURRENT      "db-<n> <crc32c>\n": names the live database; replaced by rename only
//   <dir>/db-<n>/      the live RocksDB database
// Anything else named db-* or CURRENT.tmp is a leftover of an interrupted snapshot install
// and is removed by Open.
//
// Threads: a Backend is used by one thread at a time, except that a SnapshotReader may run on
// another thread while the owner keeps committing (it reads a RocksDB snapshot and takes no lock).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "storage/crc32c.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Iterator;
class Snapshot;
struct ReadOptions;
class WriteBatch;
class WriteBatchWithIndex;
}  // namespace rocksdb

namespace synod::storage {

// A table of the backend: one RocksDB column family, named by the user at Open. The id is the
// table's position in the list given to Open.
struct TableId {
  uint32_t value = 0;
};

// Ordered iteration over one table, in bytewise key order. Invalid once its source is gone.
class Iterator {
 public:
  ~Iterator();
  Iterator(const Iterator&) = delete;
  Iterator& operator=(const Iterator&) = delete;

  bool Valid() const;
  // Positions at the first key >= target.
  void Seek(std::string_view target);
  void SeekToFirst();
  // Precondition: Valid().
  void Next();
  std::string_view key() const;
  std::string_view value() const;
  // Not OK when iteration stopped early because of an I/O error or corruption; check after a
  // loop ends, because Valid() is also false at the end of the data.
  Status status() const;

 private:
  friend class Backend;
  friend class WriteBatch;
  friend class SnapshotReader;
  friend class SnapshotView;
  friend class MemoryReader;
  Iterator(std::unique_ptr<rocksdb::Iterator> it, std::string context);
  std::unique_ptr<rocksdb::Iterator> it_;
  std::string context_;  // For error messages: the backend directory.
};

// Read access to tables; implemented by the Backend (committed state) and by a WriteBatch
// (the batch's own writes on top of the committed state).
class Reader {
 public:
  virtual ~Reader() = default;
  // nullopt when the key is absent.
  virtual Result<std::optional<std::string>> Get(TableId table, std::string_view key) const = 0;
  virtual std::unique_ptr<Iterator> NewIterator(TableId table) const = 0;
};

class Backend;

// Changes that Backend::Commit applies atomically. Reads through the batch see its own writes,
// so a state machine can apply several commands into one batch and each sees the previous ones.
// Save points let one command's writes be undone when it fails half-way.
class WriteBatch final : public Reader {
 public:
  ~WriteBatch() override;
  WriteBatch(const WriteBatch&) = delete;
  WriteBatch& operator=(const WriteBatch&) = delete;

  void Put(TableId table, std::string_view key, std::string_view value);
  void Delete(TableId table, std::string_view key);

  void SetSavePoint();
  // Undoes every write since the most recent SetSavePoint and removes that save point.
  // Invalidates iterators over this batch. Precondition: a save point is set.
  void RollbackToSavePoint();
  // Removes the most recent save point, keeping the writes. Precondition: a save point is set.
  void PopSavePoint();

  // The number of Put and Delete operations and the bytes they occupy.
  size_t count() const;
  size_t bytes() const;

  Result<std::optional<std::string>> Get(TableId table, std::string_view key) const override;
  std::unique_ptr<Iterator> NewIterator(TableId table) const override;

 private:
  friend class Backend;
  explicit WriteBatch(const Backend* backend);
  const Backend* backend_;
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;
  size_t save_points_ = 0;
};

class SnapshotReader;
class SnapshotInstaller;
class SnapshotView;

// Reads of a backend's committed state that never wait on disk: a Get or iterator that needs a
// block in neither a memtable nor the block cache fails with Unavailable instead of reading the
// file (RocksDB's kBlockCacheTier). For a thread that must never block on I/O (the node's loop),
// which then hands the read to a thread that may. Obtained from Backend::memory_reader().
class MemoryReader final : public Reader {
 public:
  explicit MemoryReader(const Backend* backend) : backend_(backend) {}
  Result<std::optional<std::string>> Get(TableId table, std::string_view key) const override;
  std::unique_ptr<Iterator> NewIterator(TableId table) const override;

 private:
  const Backend* backend_;
};

// The snapshot stream (both ends use these):
// every chunk is  magic "SYNS" | format version u16 | kind u8 | 0 u8 | sequence u64 |
//                 stream id u64 | payload length u32 | payload | CRC32C u32 of all before it
// (integers big-endian). Sequence numbers start at 0 and rise by one; the stream id is the
// snapshot's applied index. Chunk 0 is the header (applied index, membership, table names), then
// data chunks (a byte stream of records table u32 | key length u32 | key | value length u32 |
// value, which may span chunks), then one end chunk (data chunk count, record count, data bytes,
// CRC32C of all data payloads). A receiver thus detects a corrupt chunk (CRC), a missing,
// repeated or reordered chunk (sequence), a chunk of another snapshot (stream id) and a
// truncated stream (no end chunk, or counts that disagree).
inline constexpr uint16_t kSnapshotFormatVersion = 1;
inline constexpr size_t kSnapshotChunkBytesDefault = 1 << 20;
// Bounds the memory a receiver spends on one chunk; a sender's chunk_bytes_max must not exceed it.
inline constexpr size_t kSnapshotChunkBytesLimit = 64 << 20;
// Fixed bytes around a chunk's payload; chunk_bytes_max must leave room for payload.
inline constexpr size_t kSnapshotChunkOverheadBytes = 32;
inline constexpr size_t kSnapshotChunkBytesMin = 256;

class Backend final : public Reader {
 public:
  // The membership blob is small (a configuration); bounding it keeps it inside one chunk.
  static constexpr size_t kMembershipBytesMax = 64 << 10;
  static constexpr size_t kTablesMax = 64;

  // Opens the database in `dir`, creating the directory and an empty database (applied index 0,
  // empty membership) if there is none. `tables` names the tables in TableId order; a new
  // database gets them, an existing one must have exactly these. Removes the leftovers of an
  // interrupted snapshot install.
  static Result<std::unique_ptr<Backend>> Open(const std::string& dir,
                                               std::vector<std::string> tables);
  // Closes the database; RocksDB flushes the memtables first. Precondition: no SnapshotReader
  // of this backend is alive.
  ~Backend() override;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& tables() const { return tables_; }
  // The index stored by the last Commit (0 for a new database). Invariant: it describes
  // exactly the data stored, because both are written in one atomic RocksDB write.
  Index applied_index() const { return applied_index_; }
  const std::string& membership() const { return membership_; }

  // A new empty batch. The batch reads through this backend, so it must not outlive it.
  std::unique_ptr<WriteBatch> NewBatch() const;

  // Writes `batch` together with the new applied index (and membership, when given) in one
  // atomic write, to memory only (see Durability above). Preconditions: applied_index >
  // this->applied_index(); the batch came from this backend and has no save point open. On error
  // nothing of the batch is applied, and the backend refuses every later Commit and Sync
  // (fail-stop): after a failed write the only safe continuation is to reopen and replay from the
  // log.
  Status Commit(WriteBatch& batch, Index applied_index,
                std::optional<std::string_view> membership = std::nullopt);

  // Makes every commit so far durable: one atomic flush of every table's memtable, which
  // RocksDB writes and fsyncs. Blocks until the flush is done.
  Status Sync();
  // Sync without waiting: starts the atomic flush of every commit so far on RocksDB's
  // background thread and returns. durable_applied_index() tells when it is done.
  Status StartSync();
  // The applied index of what the flushes so far made durable: what a crash now would keep.
  // Read from the table files only (RocksDB's kPersistedTier), usually from the block cache.
  Result<Index> durable_applied_index() const;
  // The memory the memtables of every table hold: the data committed since the last flush,
  // which is not in any file yet. Safe beside Commit.
  int64_t memtable_bytes() const;
  // Rewrites every table's files without the space that deleted and overwritten rows left
  // (etcd's defragmentation; for RocksDB a full manual compaction). Commits and reads go on
  // meanwhile. Errors are RocksDB's; the data is untouched by a failed compaction.
  Status Defragment();

  // Reads of the committed state.
  Result<std::optional<std::string>> Get(TableId table, std::string_view key) const override;
  std::unique_ptr<Iterator> NewIterator(TableId table) const override;
  // The same reads, from memory only (see MemoryReader).
  const MemoryReader& memory_reader() const { return memory_reader_; }

  // A point-in-time snapshot of everything committed so far, read out as a chunk stream. The
  // reader holds a RocksDB snapshot, not a lock: commits go on while it is read. It must not
  // outlive this backend. chunk_bytes_max in [kSnapshotChunkBytesMin, kSnapshotChunkBytesLimit].
  Result<std::unique_ptr<SnapshotReader>> ReadSnapshot(
      size_t chunk_bytes_max = kSnapshotChunkBytesDefault) const;

  // A point-in-time read view of everything committed so far, for a reader that needs random
  // access to one consistent state (exporting the store in another layout). Like a
  // SnapshotReader it holds a RocksDB snapshot, not a lock, and must not outlive this backend.
  Result<std::unique_ptr<SnapshotView>> NewSnapshotView() const;

  // The steps of InstallSnapshot after the new database is complete, for crash tests.
  enum class InstallStep {
    kRenameDatabase,    // db-<n+1>.tmp -> db-<n+1>, fsync of dir
    kWriteCurrentTemp,  // CURRENT.tmp written and fsynced
    kRenameCurrent,     // CURRENT.tmp -> CURRENT, fsync of dir: the commit point
    kRemoveOld,         // db-<n> removed
  };
  // Replaces the live database by the one a finished installer built: closes `live`, swaps the
  // new database in atomically (a crash at any instant leaves the old or the new database,
  // never a mix) and opens it. On error the old backend is closed anyway; the caller reopens
  // with Open, which finds either state. `stop_before` (tests only) simulates a crash: return
  // an Aborted error just before that step.
  static Result<std::unique_ptr<Backend>> InstallSnapshot(
      std::unique_ptr<Backend> live, std::unique_ptr<SnapshotInstaller> installer,
      std::optional<InstallStep> stop_before = std::nullopt);

  // Tests only: the next Commit or Sync fails with `status` as if RocksDB had returned it
  // (for example a full disk), so that the fail-stop path can be tested.
  void InjectWriteErrorForTest(Status status) { injected_error_ = std::move(status); }

 private:
  friend class WriteBatch;
  friend class SnapshotReader;
  friend class SnapshotView;
  friend class MemoryReader;
  Backend() = default;
  // The applied index and membership as of `snapshot`, so that they describe exactly the data
  // a reader of that snapshot sees.
  Status ReadMetaAt(const rocksdb::Snapshot* snapshot, Index* applied_index,
                    std::string* membership) const;
  rocksdb::ColumnFamilyHandle* handle(TableId table) const;
  // Get and NewIterator with the given options: the committed state, a snapshot's, or memory's.
  Result<std::optional<std::string>> GetWith(const rocksdb::ReadOptions& options, TableId table,
                                             std::string_view key) const;
  std::unique_ptr<Iterator> NewIteratorWith(const rocksdb::ReadOptions& options,
                                            TableId table) const;
  Status Fail(Status status);
  // Sync (wait) or StartSync (not).
  Status Flush(bool wait);
  Result<Index> ReadAppliedIndex(const rocksdb::ReadOptions& options) const;

  std::string dir_;
  std::string db_name_;  // "db-<n>", as CURRENT names it.
  std::vector<std::string> tables_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;      // tables_, in order.
  rocksdb::ColumnFamilyHandle* meta_handle_ = nullptr;     // The backend's own table.
  std::vector<rocksdb::ColumnFamilyHandle*> all_handles_;  // Everything to destroy on close.
  Index applied_index_;
  std::string membership_;
  Status failed_;  // Not OK after a failed write: fail-stop.
  Status injected_error_;
  // Atomic: a reader may be destroyed on another thread (see "Threads" above).
  mutable std::atomic<int> live_snapshot_readers_ = 0;
  MemoryReader memory_reader_{this};
};

// Reads of one point-in-time state of a backend (Backend::NewSnapshotView). Commits to the
// backend after it was taken are invisible to it.
class SnapshotView final : public Reader {
 public:
  ~SnapshotView() override;
  SnapshotView(const SnapshotView&) = delete;
  SnapshotView& operator=(const SnapshotView&) = delete;

  Index applied_index() const { return applied_index_; }
  const std::string& membership() const { return membership_; }
  Result<std::optional<std::string>> Get(TableId table, std::string_view key) const override;
  std::unique_ptr<Iterator> NewIterator(TableId table) const override;

 private:
  friend class Backend;
  SnapshotView() = default;
  const Backend* backend_ = nullptr;
  const rocksdb::Snapshot* snapshot_ = nullptr;
  Index applied_index_;
  std::string membership_;
};

// The sending end of a snapshot: yields the chunks of one point-in-time snapshot.
class SnapshotReader {
 public:
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  Index applied_index() const { return applied_index_; }
  // The next chunk, or nullopt after the end chunk was returned. Each chunk is at most
  // chunk_bytes_max bytes.
  Result<std::optional<std::string>> Next();

 private:
  friend class Backend;
  SnapshotReader() = default;
  std::string MakeChunk(uint8_t kind, std::string_view payload);
  Status FillData();

  const Backend* backend_ = nullptr;
  const rocksdb::Snapshot* snapshot_ = nullptr;
  size_t chunk_bytes_max_ = 0;
  Index applied_index_;
  std::string header_payload_;
  uint64_t sequence_ = 0;
  bool header_sent_ = false;
  bool end_sent_ = false;
  size_t table_ = 0;
  std::unique_ptr<Iterator> it_;
  std::string pending_;  // Encoded records not yet sent.
  uint64_t data_chunks_ = 0;
  uint64_t records_ = 0;
  uint64_t data_bytes_ = 0;
  Crc32c data_crc_;  // Of all data payloads, in order.
};

// The receiving end: builds a new database from the chunks in a temporary directory beside the
// live one (<dir>/db-<n+1>.tmp). The live database is untouched until
// Backend::InstallSnapshot; an abandoned installer leaves a leftover that Open removes.
class SnapshotInstaller {
 public:
  // Writes to the new database go in batches of at most this many bytes.
  static constexpr size_t kInstallBatchBytesMax = 4 << 20;

  // `dir` is the backend directory of the live database (it must exist, with CURRENT).
  static Result<std::unique_ptr<SnapshotInstaller>> Start(const std::string& dir);
  ~SnapshotInstaller();
  SnapshotInstaller(const SnapshotInstaller&) = delete;
  SnapshotInstaller& operator=(const SnapshotInstaller&) = delete;

  // Verifies and stores one chunk. After an error the installer is spent: every later call
  // fails too, and the partial database is discarded.
  Status Add(std::string_view chunk);
  // Verifies that the stream is complete, then makes the new database durable and closes it.
  Status Finish();

  bool finished() const { return finished_; }
  Index applied_index() const { return applied_index_; }
  const std::string& membership() const { return membership_; }
  const std::vector<std::string>& tables() const { return tables_; }

 private:
  friend class Backend;
  SnapshotInstaller() = default;
  Status Fail(Status status);
  Status AddHeader(std::string_view payload);
  Status AddData(std::string_view payload);
  Status AddEnd(std::string_view payload);
  Status FlushBatch();
  void CloseDb();

  std::string dir_;
  std::string new_name_;  // "db-<n+1>"
  std::string tmp_path_;  // <dir>/db-<n+1>.tmp
  Status failed_;
  bool finished_ = false;
  bool header_seen_ = false;
  bool end_seen_ = false;
  uint64_t next_sequence_ = 0;
  Index applied_index_;
  std::string membership_;
  std::vector<std::string> tables_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_handle_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> all_handles_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;  // Records waiting to be written.
  std::string partial_;  // Bytes of a record that continues in the next chunk.
  uint64_t data_chunks_ = 0;
  uint64_t records_ = 0;
  uint64_t data_bytes_ = 0;
  Crc32c data_crc_;
  bool handed_over_ = false;  // InstallSnapshot owns the files now.
};

}  // namespace synod::storage
