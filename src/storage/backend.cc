#include "storage/backend.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/assert.h"

namespace synod::storage {

namespace fs = std::filesystem;

namespace {

// The backend's own column family: applied index, membership and format version.
constexpr char kMetaTable[] = "synod.backend";
// The block cache of a database (OpenDb). It fills only as blocks are written or read, so a
// small store costs only what it holds; a store larger than this is served partly from the OS
// page cache, through a worker thread (etcd's bbolt maps its whole file into memory instead).
constexpr size_t kBlockCacheBytes = size_t{256} << 20;
constexpr char kAppliedIndexKey[] = "applied_index";
constexpr char kMembershipKey[] = "membership";
constexpr char kFormatKey[] = "format";
// The on-disk layout of the meta table and of CURRENT; a newer layout must not be opened by an
// older binary that would misread it.
constexpr uint32_t kBackendFormatVersion = 1;

constexpr char kCurrentFile[] = "CURRENT";
constexpr char kCurrentTempFile[] = "CURRENT.tmp";
constexpr char kTmpSuffix[] = ".tmp";

constexpr uint32_t kSnapshotMagic = 0x53594e53;  // "SYNS"
enum ChunkKind : uint8_t { kChunkHeader = 1, kChunkData = 2, kChunkEnd = 3 };

void PutU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}
void PutU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}
void PutBytes(std::string& out, std::string_view bytes) {
  SYNOD_ASSERT(bytes.size() <= UINT32_MAX);
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes);
}

// Reads big-endian integers and length-prefixed strings; every read checks the bounds, so a
// corrupt length is an error, never an overrun.
class Decoder {
 public:
  explicit Decoder(std::string_view data) : data_(data) {}
  bool U8(uint8_t* v) { return Fixed(1, v); }
  bool U16(uint16_t* v) { return Fixed(2, v); }
  bool U32(uint32_t* v) { return Fixed(4, v); }
  bool U64(uint64_t* v) { return Fixed(8, v); }
  bool Bytes(std::string_view* v) {
    uint32_t size = 0;
    if (!U32(&size) || data_.size() < size) return false;
    *v = data_.substr(0, size);
    data_.remove_prefix(size);
    return true;
  }
  size_t remaining() const { return data_.size(); }
  std::string_view rest() const { return data_; }

 private:
  template <typename T>
  bool Fixed(size_t n, T* v) {
    if (data_.size() < n) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i) x = (x << 8) | static_cast<unsigned char>(data_[i]);
    *v = static_cast<T>(x);
    data_.remove_prefix(n);
    return true;
  }
  std::string_view data_;
};

std::string EncodeU64(uint64_t v) {
  std::string out;
  PutU64(out, v);
  return out;
}

// RocksDB's status becomes ours, naming what failed and where. A full disk is
// ResourceExhausted, corruption is DataLoss, everything else Internal.
Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  SYNOD_ASSERT(!s.ok());
  std::string message = fmt::format("{}: {}", what, s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::FailedPreconditionError(message);
  // Only a MemoryReader's read gets Incomplete: the data is on disk, not in memory.
  if (s.IsIncomplete()) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

Status ErrnoStatus(std::string_view what, const std::string& path) {
  const int error = errno;
  std::string message = fmt::format("{} {}: {}", what, path, std::strerror(error));
  if (error == ENOSPC) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0) | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open for fsync", path);
  const int rc = ::fsync(fd);
  Status status = rc == 0 ? Status() : ErrnoStatus("fsync", path);
  ::close(fd);
  return status;
}

// Writes a small file durably: write, fsync of the file. (The caller renames and syncs the
// directory.)
Status WriteFileSynced(const std::string& path, std::string_view content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", path);
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status status = ErrnoStatus("write", path);
      ::close(fd);
      return status;
    }
    written += static_cast<size_t>(n);
  }
  Status status = ::fsync(fd) == 0 ? Status() : ErrnoStatus("fsync", path);
  ::close(fd);
  return status;
}

Status RenameAndSyncDir(const std::string& from, const std::string& to, const std::string& dir) {
  if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus("rename to " + to, from);
  return FsyncPath(dir, /*directory=*/true);
}

std::string CurrentContent(std::string_view db_name) {
  return fmt::format("{} {:08x}\n", db_name, ComputeCrc32c(db_name));
}

// CURRENT names the live database. nullopt when the file does not exist (a new directory).
Result<std::optional<std::string>> ReadCurrent(const std::string& dir) {
  const std::string path = dir + "/" + kCurrentFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (ec) return absl::InternalError(fmt::format("stat {}: {}", path, ec.message()));
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return absl::InternalError(fmt::format("read {} failed", path));
  const size_t space = content.find(' ');
  if (space == std::string::npos || content.empty() || content.back() != '\n') {
    return absl::DataLossError(fmt::format("{} is corrupt: {:?}", path, content));
  }
  const std::string name = content.substr(0, space);
  if (CurrentContent(name) != content || !name.starts_with("db-")) {
    return absl::DataLossError(
        fmt::format("{} is corrupt (checksum mismatch): {:?}", path, content));
  }
  return name;
}

Result<uint64_t> DbNumber(std::string_view name, const std::string& dir) {
  uint64_t n = 0;
  std::string_view digits = name.substr(3);
  if (digits.empty()) return absl::DataLossError(fmt::format("{}: bad database name", dir));
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return absl::DataLossError(fmt::format("{}: bad database name {}", dir, name));
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

std::string DbName(uint64_t n) {
  return fmt::format("db-{:06}", n);
}

Status ValidateTables(const std::vector<std::string>& tables, const std::string& dir) {
  if (tables.size() > Backend::kTablesMax) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {} tables, at most {}", dir, tables.size(), Backend::kTablesMax));
  }
  for (size_t i = 0; i < tables.size(); ++i) {
    if (tables[i].empty() || tables[i] == kMetaTable ||
        tables[i] == rocksdb::kDefaultColumnFamilyName) {
      return absl::InvalidArgumentError(fmt::format("{}: bad table name {:?}", dir, tables[i]));
    }
    for (size_t j = 0; j < i; ++j) {
      if (tables[i] == tables[j]) {
        return absl::InvalidArgumentError(fmt::format("{}: table {} twice", dir, tables[i]));
      }
    }
  }
  return Status();
}

rocksdb::Options DbOptions() {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  // Commits bypass RocksDB's WAL (see Durability in backend.h), so a crash keeps what the last
  // flush wrote. Flushing every table in one atomic flush keeps the stored applied index (in
  // the meta table) describing exactly the data of the other tables.
  options.atomic_flush = true;
  // Only the first write of a new database (its format) goes through the WAL. After a crash
  // its unsynced tail may be torn; recover the longest consistent prefix.
  options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  return options;
}

// Opens (or creates) a RocksDB database with the meta table and `tables`. Every column family
// already in the database must be one of those: an unknown one means another program or
// another version wrote here.
Status OpenDb(const std::string& path, const std::vector<std::string>& tables,
              std::unique_ptr<rocksdb::DB>* db, std::vector<rocksdb::ColumnFamilyHandle*>* all,
              rocksdb::ColumnFamilyHandle** meta,
              std::vector<rocksdb::ColumnFamilyHandle*>* handles) {
  rocksdb::Options options = DbOptions();
  std::vector<std::string> existing;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(options, path, &existing);
  if (listed.ok()) {
    for (const std::string& name : existing) {
      bool known = name == rocksdb::kDefaultColumnFamilyName || name == kMetaTable;
      for (const std::string& table : tables) known = known || name == table;
      if (!known) {
        return absl::FailedPreconditionError(
            fmt::format("backend {}: unknown table {:?} in the database", path, name));
      }
    }
  }
  // One block cache for every table. Each flush puts the blocks it writes there, so the data
  // a Sync moved out of the memtables can still be read by the node's loop, which reads from
  // memory only (MemoryReader). RocksDB's default would be 8 MiB per table.
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  table_options.prepopulate_block_cache =
      rocksdb::BlockBasedTableOptions::PrepopulateBlockCache::kFlushOnly;
  rocksdb::ColumnFamilyOptions table_family;
  table_family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, table_family);
  descriptors.emplace_back(kMetaTable, table_family);
  for (const std::string& table : tables) descriptors.emplace_back(table, table_family);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(options), path, descriptors, all, &raw);
  if (!s.ok()) return FromRocks(s, fmt::format("backend {}: open", path));
  db->reset(raw);
  SYNOD_ASSERT(all->size() == tables.size() + 2);
  *meta = (*all)[1];
  handles->assign(all->begin() + 2, all->end());
  return Status();
}

void CloseDb(std::unique_ptr<rocksdb::DB>* db, std::vector<rocksdb::ColumnFamilyHandle*>* all) {
  if (*db == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* handle : *all) {
    rocksdb::Status s = (*db)->DestroyColumnFamilyHandle(handle);
    SYNOD_ASSERT_MSG(s.ok(), "destroy column family handle: {}", s.ToString());
  }
  all->clear();
  // Close reports an error only for unreleased snapshots or a background error already
  // reported to a writer; there is nobody left to tell.
  (void)(*db)->Close();
  db->reset();
}

}  // namespace

// --- Iterator -------------------------------------------------------------------------------

Iterator::Iterator(std::unique_ptr<rocksdb::Iterator> it, std::string context)
    : it_(std::move(it)), context_(std::move(context)) {
  SYNOD_ASSERT(it_ != nullptr);
}
Iterator::~Iterator() = default;
bool Iterator::Valid() const {
  return it_->Valid();
}
void Iterator::Seek(std::string_view target) {
  it_->Seek(rocksdb::Slice(target));
}
void Iterator::SeekToFirst() {
  it_->SeekToFirst();
}
void Iterator::Next() {
  SYNOD_ASSERT(it_->Valid());
  it_->Next();
}
std::string_view Iterator::key() const {
  SYNOD_ASSERT(it_->Valid());
  return it_->key().ToStringView();
}
std::string_view Iterator::value() const {
  SYNOD_ASSERT(it_->Valid());
  return it_->value().ToStringView();
}
Status Iterator::status() const {
  rocksdb::Status s = it_->status();
  if (s.ok()) return Status();
  return FromRocks(s, fmt::format("backend {}: iterate", context_));
}

// --- WriteBatch -----------------------------------------------------------------------------

WriteBatch::WriteBatch(const Backend* backend)
    : backend_(backend),
      // overwrite_key: a key written twice appears once in the index, as iteration over
      // batch-and-base requires.
      batch_(std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0,
                                                            /*overwrite_key=*/true)) {}

WriteBatch::~WriteBatch() = default;

void WriteBatch::Put(TableId table, std::string_view key, std::string_view value) {
  rocksdb::Status s = batch_->Put(backend_->handle(table), key, value);
  SYNOD_ASSERT_MSG(s.ok(), "batch put: {}", s.ToString());  // Only fails on size overflow.
}

void WriteBatch::Delete(TableId table, std::string_view key) {
  rocksdb::Status s = batch_->Delete(backend_->handle(table), key);
  SYNOD_ASSERT_MSG(s.ok(), "batch delete: {}", s.ToString());
}

void WriteBatch::SetSavePoint() {
  batch_->SetSavePoint();
  ++save_points_;
}

void WriteBatch::RollbackToSavePoint() {
  SYNOD_ASSERT(save_points_ > 0);
  rocksdb::Status s = batch_->RollbackToSavePoint();
  SYNOD_ASSERT_MSG(s.ok(), "rollback to save point: {}", s.ToString());
  --save_points_;
}

void WriteBatch::PopSavePoint() {
  SYNOD_ASSERT(save_points_ > 0);
  rocksdb::Status s = batch_->PopSavePoint();
  SYNOD_ASSERT_MSG(s.ok(), "pop save point: {}", s.ToString());
  --save_points_;
}

size_t WriteBatch::count() const {
  return batch_->GetWriteBatch()->Count();
}
size_t WriteBatch::bytes() const {
  return batch_->GetWriteBatch()->GetDataSize();
}

Result<std::optional<std::string>> WriteBatch::Get(TableId table, std::string_view key) const {
  std::string value;
  rocksdb::Status s = batch_->GetFromBatchAndDB(backend_->db_.get(), rocksdb::ReadOptions(),
                                                backend_->handle(table), key, &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, fmt::format("backend {}: get", backend_->dir_));
  return value;
}

std::unique_ptr<Iterator> WriteBatch::NewIterator(TableId table) const {
  rocksdb::ColumnFamilyHandle* handle = backend_->handle(table);
  rocksdb::Iterator* base = backend_->db_->NewIterator(rocksdb::ReadOptions(), handle);
  // The batch iterator takes ownership of the base iterator.
  std::unique_ptr<rocksdb::Iterator> merged(batch_->NewIteratorWithBase(handle, base));
  return std::unique_ptr<Iterator>(new Iterator(std::move(merged), backend_->dir_));
}

// --- Backend --------------------------------------------------------------------------------

Result<std::unique_ptr<Backend>> Backend::Open(const std::string& dir,
                                               std::vector<std::string> tables) {
  if (Status s = ValidateTables(tables, dir); !s.ok()) return s;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(fmt::format("create directory {}: {}", dir, ec.message()));

  Result<std::optional<std::string>> current = ReadCurrent(dir);
  if (!current.ok()) return current.status();
  std::string db_name;
  if (current->has_value()) {
    db_name = **current;
  } else {
    // A new directory. CURRENT is written before the database exists, so CURRENT can never
    // be missing beside a database we created: a db-* here without CURRENT is not ours to
    // delete.
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with("db-")) {
        return absl::DataLossError(fmt::format("backend {}: database {} exists but {} is missing",
                                               dir, name, kCurrentFile));
      }
    }
    db_name = DbName(1);
    const std::string temp = dir + "/" + kCurrentTempFile;
    if (Status s = WriteFileSynced(temp, CurrentContent(db_name)); !s.ok()) return s;
    if (Status s = RenameAndSyncDir(temp, dir + "/" + kCurrentFile, dir); !s.ok()) return s;
  }
  if (Result<uint64_t> n = DbNumber(db_name, dir); !n.ok()) return n.status();

  // Leftovers of an interrupted snapshot install: a new database that CURRENT does not name
  // (the install did not reach its commit point) or an old one (it did, then crashed before
  // removing the old database).
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if ((name.starts_with("db-") && name != db_name) || name == kCurrentTempFile) {
      fs::remove_all(entry.path(), ec);
      if (ec) {
        return absl::InternalError(
            fmt::format("backend {}: remove leftover {}: {}", dir, name, ec.message()));
      }
    }
  }
  if (ec) return absl::InternalError(fmt::format("list directory {}: {}", dir, ec.message()));

  std::unique_ptr<Backend> backend(new Backend());
  backend->dir_ = dir;
  backend->db_name_ = db_name;
  backend->tables_ = std::move(tables);
  if (Status s = OpenDb(dir + "/" + db_name, backend->tables_, &backend->db_,
                        &backend->all_handles_, &backend->meta_handle_, &backend->handles_);
      !s.ok()) {
    return s;
  }

  rocksdb::DB* db = backend->db_.get();
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), backend->meta_handle_, kFormatKey, &value);
  if (s.IsNotFound()) {
    // A new database: record the format so that a future layout change is detected.
    rocksdb::WriteOptions options;
    options.sync = true;
    s = db->Put(options, backend->meta_handle_, kFormatKey, EncodeU64(kBackendFormatVersion));
    if (!s.ok()) return FromRocks(s, fmt::format("backend {}: initialise", dir));
  } else if (!s.ok()) {
    return FromRocks(s, fmt::format("backend {}: read format", dir));
  } else {
    Decoder d(value);
    uint64_t format = 0;
    if (!d.U64(&format) || d.remaining() != 0) {
      return absl::DataLossError(fmt::format("backend {}: corrupt format record", dir));
    }
    if (format != kBackendFormatVersion) {
      return absl::FailedPreconditionError(
          fmt::format("backend {}: format version {}, this binary reads {}", dir, format,
                      kBackendFormatVersion));
    }
  }
  Result<Index> applied = backend->ReadAppliedIndex(rocksdb::ReadOptions());
  if (!applied.ok()) return applied.status();
  backend->applied_index_ = *applied;
  s = db->Get(rocksdb::ReadOptions(), backend->meta_handle_, kMembershipKey, &value);
  if (s.ok()) {
    backend->membership_ = value;
  } else if (!s.IsNotFound()) {
    return FromRocks(s, fmt::format("backend {}: read membership", dir));
  }
  return backend;
}

Backend::~Backend() {
  SYNOD_ASSERT_MSG(live_snapshot_readers_ == 0, "backend {} closed under {} snapshot readers", dir_,
                   live_snapshot_readers_.load());
  CloseDb(&db_, &all_handles_);
}

rocksdb::ColumnFamilyHandle* Backend::handle(TableId table) const {
  SYNOD_ASSERT_MSG(table.value < handles_.size(), "table {} of {}", table.value, handles_.size());
  return handles_[table.value];
}

Status Backend::Fail(Status status) {
  SYNOD_ASSERT(!status.ok());
  if (failed_.ok()) failed_ = status;
  return status;
}

std::unique_ptr<WriteBatch> Backend::NewBatch() const {
  return std::unique_ptr<WriteBatch>(new WriteBatch(this));
}

Status Backend::Commit(WriteBatch& batch, Index applied_index,
                       std::optional<std::string_view> membership) {
  SYNOD_ASSERT(batch.backend_ == this);
  SYNOD_ASSERT_MSG(batch.save_points_ == 0, "commit with {} open save points", batch.save_points_);
  SYNOD_ASSERT_MSG(applied_index > applied_index_, "applied index {} after {}", applied_index,
                   applied_index_);
  SYNOD_ASSERT(!membership.has_value() || membership->size() <= kMembershipBytesMax);
  if (!failed_.ok()) return failed_;
  // The applied index goes in the same atomic write as the data it describes.
  batch.batch_->Put(meta_handle_, kAppliedIndexKey, EncodeU64(applied_index.value()));
  if (membership.has_value()) batch.batch_->Put(meta_handle_, kMembershipKey, *membership);

  rocksdb::WriteOptions options;
  options.disableWAL = true;  // Sync() is the durability point; see the header.
  rocksdb::Status s = injected_error_.ok()
                          ? db_->Write(options, batch.batch_->GetWriteBatch())
                          : rocksdb::Status::IOError(std::string(injected_error_.message()));
  batch.batch_->Clear();
  if (!s.ok()) {
    Status status = FromRocks(
        s, fmt::format("backend {}: commit of applied index {} failed; refusing further writes",
                       dir_, applied_index));
    if (!injected_error_.ok()) status = Status(injected_error_.code(), status.message());
    return Fail(status);
  }
  applied_index_ = applied_index;
  if (membership.has_value()) membership_ = std::string(*membership);
  return Status();
}

Status Backend::Sync() {
  return Flush(/*wait=*/true);
}

Status Backend::StartSync() {
  return Flush(/*wait=*/false);
}

Status Backend::Flush(bool wait) {
  if (!failed_.ok()) return failed_;
  rocksdb::FlushOptions flush;
  flush.wait = wait;
  // Waiting for an earlier flush to finish first would block StartSync's caller, which that
  // call exists to avoid; RocksDB stalls writes instead if too many memtables are unflushed.
  flush.allow_write_stall = !wait;
  rocksdb::Status s = injected_error_.ok()
                          ? db_->Flush(flush, all_handles_)
                          : rocksdb::Status::IOError(std::string(injected_error_.message()));
  if (!s.ok()) {
    Status status =
        FromRocks(s, fmt::format("backend {}: sync failed; refusing further writes", dir_));
    if (!injected_error_.ok()) status = Status(injected_error_.code(), status.message());
    return Fail(status);
  }
  return Status();
}

Result<Index> Backend::durable_applied_index() const {
  rocksdb::ReadOptions options;
  options.read_tier = rocksdb::kPersistedTier;
  return ReadAppliedIndex(options);
}

Result<Index> Backend::ReadAppliedIndex(const rocksdb::ReadOptions& options) const {
  std::string value;
  rocksdb::Status s = db_->Get(options, meta_handle_, kAppliedIndexKey, &value);
  if (s.IsNotFound()) return Index(0);  // A new database.
  if (!s.ok()) return FromRocks(s, fmt::format("backend {}: read applied index", dir_));
  Decoder d(value);
  uint64_t index = 0;
  if (!d.U64(&index) || d.remaining() != 0) {
    return absl::DataLossError(fmt::format("backend {}: corrupt applied index", dir_));
  }
  return Index(index);
}

int64_t Backend::memtable_bytes() const {
  uint64_t bytes = 0;
  const bool known =
      db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &bytes);
  SYNOD_ASSERT_MSG(known, "backend {}: no memtable size", dir_);
  return static_cast<int64_t>(bytes);
}

Status Backend::Defragment() {
  if (!failed_.ok()) return failed_;
  rocksdb::CompactRangeOptions options;
  // Rewrite the bottom level too, so space held by old versions there is freed as well.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* handle : all_handles_) {
    rocksdb::Status s = db_->CompactRange(options, handle, nullptr, nullptr);
    if (!s.ok()) return FromRocks(s, fmt::format("backend {}: defragment", dir_));
  }
  return Status();
}

Result<std::optional<std::string>> Backend::GetWith(const rocksdb::ReadOptions& options,
                                                    TableId table, std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->Get(options, handle(table), key, &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s, fmt::format("backend {}: get", dir_));
  return value;
}

std::unique_ptr<Iterator> Backend::NewIteratorWith(const rocksdb::ReadOptions& options,
                                                   TableId table) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handle(table)));
  return std::unique_ptr<Iterator>(new Iterator(std::move(it), dir_));
}

Result<std::optional<std::string>> Backend::Get(TableId table, std::string_view key) const {
  return GetWith(rocksdb::ReadOptions(), table, key);
}

std::unique_ptr<Iterator> Backend::NewIterator(TableId table) const {
  return NewIteratorWith(rocksdb::ReadOptions(), table);
}

// --- MemoryReader -------------------------------------------------------------------------

namespace {

rocksdb::ReadOptions MemoryOnly() {
  rocksdb::ReadOptions options;
  options.read_tier = rocksdb::kBlockCacheTier;
  return options;
}

}  // namespace

Result<std::optional<std::string>> MemoryReader::Get(TableId table, std::string_view key) const {
  return backend_->GetWith(MemoryOnly(), table, key);
}

std::unique_ptr<Iterator> MemoryReader::NewIterator(TableId table) const {
  return backend_->NewIteratorWith(MemoryOnly(), table);
}

// --- Snapshot: sending ----------------------------------------------------------------------

Result<std::unique_ptr<SnapshotReader>> Backend::ReadSnapshot(size_t chunk_bytes_max) const {
  if (chunk_bytes_max < kSnapshotChunkBytesMin || chunk_bytes_max > kSnapshotChunkBytesLimit) {
    return absl::InvalidArgumentError(fmt::format("snapshot chunk_bytes_max {} outside [{}, {}]",
                                                  chunk_bytes_max, kSnapshotChunkBytesMin,
                                                  kSnapshotChunkBytesLimit));
  }
  std::unique_ptr<SnapshotReader> reader(new SnapshotReader());
  reader->backend_ = this;
  reader->chunk_bytes_max_ = chunk_bytes_max;
  reader->snapshot_ = db_->GetSnapshot();
  ++live_snapshot_readers_;

  // The applied index and membership are read at the snapshot, so they describe exactly the
  // data the stream carries even while commits go on.
  std::string membership;
  if (Status s = ReadMetaAt(reader->snapshot_, &reader->applied_index_, &membership); !s.ok()) {
    return s;
  }

  std::string& header = reader->header_payload_;
  PutU64(header, reader->applied_index_.value());
  PutBytes(header, membership);
  PutU32(header, static_cast<uint32_t>(tables_.size()));
  for (const std::string& table : tables_) PutBytes(header, table);
  if (header.size() + kSnapshotChunkOverheadBytes > chunk_bytes_max) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot header of {} bytes does not fit chunk_bytes_max {}", header.size(),
                    chunk_bytes_max));
  }
  return reader;
}

Status Backend::ReadMetaAt(const rocksdb::Snapshot* snapshot, Index* applied_index,
                          std::string* membership) const {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  std::string value;
  uint64_t index = 0;
  rocksdb::Status s = db_->Get(options, meta_handle_, kAppliedIndexKey, &value);
  if (s.ok()) {
    Decoder d(value);
    if (!d.U64(&index)) return absl::DataLossError(fmt::format("{}: bad applied index", dir_));
  } else if (!s.IsNotFound()) {
    return FromRocks(s, fmt::format("backend {}: snapshot", dir_));
  }
  membership->clear();
  s = db_->Get(options, meta_handle_, kMembershipKey, membership);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, fmt::format("backend {}: snapshot", dir_));
  *applied_index = Index(index);
  return Status();
}

// --- Snapshot views ---------------------------------------------------------------------------

Result<std::unique_ptr<SnapshotView>> Backend::NewSnapshotView() const {
  if (!failed_.ok()) return failed_;
  std::unique_ptr<SnapshotView> view(new SnapshotView());
  view->backend_ = this;
  view->snapshot_ = db_->GetSnapshot();
  ++live_snapshot_readers_;
  if (Status s = ReadMetaAt(view->snapshot_, &view->applied_index_, &view->membership_);
      !s.ok()) {
    return s;
  }
  return view;
}

SnapshotView::~SnapshotView() {
  if (snapshot_ != nullptr) backend_->db_->ReleaseSnapshot(snapshot_);
  if (backend_ != nullptr) --backend_->live_snapshot_readers_;
}

Result<std::optional<std::string>> SnapshotView::Get(TableId table, std::string_view key) const {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot_;
  return backend_->GetWith(options, table, key);
}

std::unique_ptr<Iterator> SnapshotView::NewIterator(TableId table) const {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot_;
  return backend_->NewIteratorWith(options, table);
}

SnapshotReader::~SnapshotReader() {
  it_.reset();  // Before the snapshot it reads.
  if (snapshot_ != nullptr) backend_->db_->ReleaseSnapshot(snapshot_);
  if (backend_ != nullptr) --backend_->live_snapshot_readers_;
}

std::string SnapshotReader::MakeChunk(uint8_t kind, std::string_view payload) {
  std::string chunk;
  chunk.reserve(payload.size() + kSnapshotChunkOverheadBytes);
  PutU32(chunk, kSnapshotMagic);
  PutU16(chunk, kSnapshotFormatVersion);
  chunk.push_back(static_cast<char>(kind));
  chunk.push_back(0);
  PutU64(chunk, sequence_++);
  PutU64(chunk, applied_index_.value());
  PutU32(chunk, static_cast<uint32_t>(payload.size()));
  chunk.append(payload);
  PutU32(chunk, ComputeCrc32c(chunk));
  SYNOD_ASSERT(chunk.size() == payload.size() + kSnapshotChunkOverheadBytes);
  SYNOD_ASSERT(chunk.size() <= chunk_bytes_max_);
  return chunk;
}

Status SnapshotReader::FillData() {
  const size_t payload_max = chunk_bytes_max_ - kSnapshotChunkOverheadBytes;
  while (pending_.size() < payload_max && table_ < backend_->tables_.size()) {
    if (it_ == nullptr) {
      rocksdb::ReadOptions options;
      options.snapshot = snapshot_;
      std::unique_ptr<rocksdb::Iterator> raw(
          backend_->db_->NewIterator(options, backend_->handles_[table_]));
      it_.reset(new Iterator(std::move(raw), backend_->dir_));
      it_->SeekToFirst();
    }
    if (it_->Valid()) {
      PutU32(pending_, static_cast<uint32_t>(table_));
      PutBytes(pending_, it_->key());
      PutBytes(pending_, it_->value());
      ++records_;
      it_->Next();
    } else {
      if (Status s = it_->status(); !s.ok()) return s;
      it_.reset();
      ++table_;
    }
  }
  return Status();
}

Result<std::optional<std::string>> SnapshotReader::Next() {
  if (end_sent_) return std::nullopt;
  if (!header_sent_) {
    header_sent_ = true;
    return MakeChunk(kChunkHeader, header_payload_);
  }
  if (Status s = FillData(); !s.ok()) return s;
  if (!pending_.empty()) {
    const size_t payload_max = chunk_bytes_max_ - kSnapshotChunkOverheadBytes;
    const size_t n = std::min(payload_max, pending_.size());
    std::string_view payload(pending_.data(), n);
    data_crc_.Update(payload);
    data_bytes_ += n;
    ++data_chunks_;
    std::string chunk = MakeChunk(kChunkData, payload);
    pending_.erase(0, n);
    return chunk;
  }
  SYNOD_ASSERT(table_ == backend_->tables_.size());
  std::string end;
  PutU64(end, data_chunks_);
  PutU64(end, records_);
  PutU64(end, data_bytes_);
  PutU32(end, data_crc_.Finish());
  end_sent_ = true;
  return MakeChunk(kChunkEnd, end);
}

// --- Snapshot: receiving --------------------------------------------------------------------

Result<std::unique_ptr<SnapshotInstaller>> SnapshotInstaller::Start(const std::string& dir) {
  Result<std::optional<std::string>> current = ReadCurrent(dir);
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    return absl::FailedPreconditionError(
        fmt::format("snapshot install into {}: no database there (no {})", dir, kCurrentFile));
  }
  Result<uint64_t> n = DbNumber(**current, dir);
  if (!n.ok()) return n.status();
  std::unique_ptr<SnapshotInstaller> installer(new SnapshotInstaller());
  installer->dir_ = dir;
  installer->new_name_ = DbName(*n + 1);
  installer->tmp_path_ = dir + "/" + installer->new_name_ + kTmpSuffix;
  // A leftover of an earlier attempt; never the live database, which CURRENT names.
  std::error_code ec;
  fs::remove_all(installer->tmp_path_, ec);
  if (!ec) fs::remove_all(dir + "/" + installer->new_name_, ec);
  if (ec) {
    return absl::InternalError(
        fmt::format("snapshot install into {}: remove leftover: {}", dir, ec.message()));
  }
  return installer;
}

void SnapshotInstaller::CloseDb() {
  storage::CloseDb(&db_, &all_handles_);
  handles_.clear();
  meta_handle_ = nullptr;
}

SnapshotInstaller::~SnapshotInstaller() {
  CloseDb();
  if (!handed_over_) {
    std::error_code ec;
    fs::remove_all(tmp_path_, ec);  // Best effort; Open removes what remains.
  }
}

Status SnapshotInstaller::Fail(Status status) {
  SYNOD_ASSERT(!status.ok());
  if (failed_.ok()) {
    failed_ = Status(status.code(), fmt::format("snapshot install into {}: {}", dir_,
                                                std::string(status.message())));
  }
  CloseDb();
  std::error_code ec;
  fs::remove_all(tmp_path_, ec);
  return failed_;
}

Status SnapshotInstaller::Add(std::string_view chunk) {
  if (!failed_.ok()) return failed_;
  if (finished_) return Fail(absl::FailedPreconditionError("chunk after Finish"));
  const uint64_t seq = next_sequence_;
  if (chunk.size() < kSnapshotChunkOverheadBytes) {
    return Fail(absl::DataLossError(
        fmt::format("chunk {} has {} bytes, fewer than the {} of an empty chunk (truncated chunk)",
                    seq, chunk.size(), kSnapshotChunkOverheadBytes)));
  }
  if (chunk.size() > kSnapshotChunkBytesLimit) {
    return Fail(absl::DataLossError(fmt::format("chunk {} has {} bytes, more than the limit {}",
                                                seq, chunk.size(), kSnapshotChunkBytesLimit)));
  }
  Decoder trailer(chunk.substr(chunk.size() - 4));
  uint32_t crc = 0;
  SYNOD_ASSERT(trailer.U32(&crc));
  if (crc != ComputeCrc32c(chunk.substr(0, chunk.size() - 4))) {
    return Fail(
        absl::DataLossError(fmt::format("chunk {} fails its CRC32C check (corrupt chunk)", seq)));
  }
  Decoder d(chunk.substr(0, chunk.size() - 4));
  uint32_t magic = 0, payload_size = 0;
  uint16_t version = 0;
  uint8_t kind = 0, reserved = 0;
  uint64_t sequence = 0, stream_id = 0;
  SYNOD_ASSERT(d.U32(&magic) && d.U16(&version) && d.U8(&kind) && d.U8(&reserved) &&
               d.U64(&sequence) && d.U64(&stream_id) && d.U32(&payload_size));
  if (magic != kSnapshotMagic) {
    return Fail(absl::DataLossError(fmt::format("chunk {} is not a snapshot chunk", seq)));
  }
  if (version != kSnapshotFormatVersion) {
    return Fail(absl::FailedPreconditionError(
        fmt::format("chunk {} has format version {}, this binary reads {}", seq, version,
                    kSnapshotFormatVersion)));
  }
  if (payload_size != d.remaining()) {
    return Fail(absl::DataLossError(
        fmt::format("chunk {}: payload length {} but {} bytes", seq, payload_size, d.remaining())));
  }
  if (end_seen_) {
    return Fail(
        absl::DataLossError(fmt::format("chunk {} arrived after the end of the stream", sequence)));
  }
  if (sequence != seq) {
    return Fail(absl::DataLossError(fmt::format(
        "expected chunk {} but got chunk {} (a chunk is missing, repeated or out of order)", seq,
        sequence)));
  }
  if ((seq == 0) != (kind == kChunkHeader)) {
    return Fail(absl::DataLossError(
        fmt::format("chunk {} has kind {}; the stream must begin with one header", seq, kind)));
  }
  if (seq != 0 && stream_id != applied_index_.value()) {
    return Fail(absl::DataLossError(
        fmt::format("chunk {} belongs to the snapshot at index {}, not to the one at index {}", seq,
                    stream_id, applied_index_)));
  }
  ++next_sequence_;
  Status status;
  switch (kind) {
    case kChunkHeader:
      status = AddHeader(d.rest());
      if (status.ok() && stream_id != applied_index_.value()) {
        status = absl::DataLossError("header chunk: stream id differs from its applied index");
      }
      break;
    case kChunkData:
      status = AddData(d.rest());
      break;
    case kChunkEnd:
      status = AddEnd(d.rest());
      break;
    default:
      status = absl::DataLossError(fmt::format("chunk {} has unknown kind {}", seq, kind));
  }
  if (!status.ok()) return Fail(status);
  return Status();
}

Status SnapshotInstaller::AddHeader(std::string_view payload) {
  SYNOD_ASSERT(!header_seen_);
  Decoder d(payload);
  uint64_t index = 0;
  std::string_view membership;
  uint32_t table_count = 0;
  if (!d.U64(&index) || !d.Bytes(&membership) || !d.U32(&table_count) ||
      table_count > Backend::kTablesMax) {
    return absl::DataLossError("corrupt header chunk");
  }
  for (uint32_t i = 0; i < table_count; ++i) {
    std::string_view name;
    if (!d.Bytes(&name)) return absl::DataLossError("corrupt header chunk");
    tables_.emplace_back(name);
  }
  if (d.remaining() != 0) return absl::DataLossError("corrupt header chunk (trailing bytes)");
  if (membership.size() > Backend::kMembershipBytesMax) {
    return absl::DataLossError("header chunk: membership too large");
  }
  if (Status s = ValidateTables(tables_, dir_); !s.ok()) return absl::DataLossError(s.message());
  header_seen_ = true;
  applied_index_ = Index(index);
  membership_ = std::string(membership);
  if (Status s = OpenDb(tmp_path_, tables_, &db_, &all_handles_, &meta_handle_, &handles_);
      !s.ok()) {
    return s;
  }
  batch_ = std::make_unique<rocksdb::WriteBatch>();
  return Status();
}

Status SnapshotInstaller::AddData(std::string_view payload) {
  SYNOD_ASSERT(header_seen_ && db_ != nullptr);
  ++data_chunks_;
  data_bytes_ += payload.size();
  data_crc_.Update(payload);
  partial_.append(payload);
  // Records may span chunks: take every complete one and keep the rest for the next chunk.
  Decoder d(partial_);
  size_t consumed = 0;
  while (true) {
    uint32_t table = 0;
    std::string_view key, value;
    if (!d.U32(&table) || !d.Bytes(&key) || !d.Bytes(&value)) break;
    if (table >= tables_.size()) {
      return absl::DataLossError(
          fmt::format("record {} names table {} of {}", records_, table, tables_.size()));
    }
    rocksdb::Status s = batch_->Put(handles_[table], key, value);
    if (!s.ok()) return FromRocks(s, "batch");
    ++records_;
    consumed = partial_.size() - d.remaining();
    if (batch_->GetDataSize() >= kInstallBatchBytesMax) {
      if (Status st = FlushBatch(); !st.ok()) return st;
    }
  }
  partial_.erase(0, consumed);
  // A record's bytes are bounded by the chunk limit times a few chunks only through the sender;
  // refuse an absurd partial record rather than buffering without bound.
  if (partial_.size() > kSnapshotChunkBytesLimit) {
    return absl::DataLossError("a record in the stream is larger than the chunk limit allows");
  }
  return Status();
}

Status SnapshotInstaller::AddEnd(std::string_view payload) {
  Decoder d(payload);
  uint64_t chunks = 0, records = 0, bytes = 0;
  uint32_t crc = 0;
  if (!d.U64(&chunks) || !d.U64(&records) || !d.U64(&bytes) || !d.U32(&crc) || d.remaining() != 0) {
    return absl::DataLossError("corrupt end chunk");
  }
  if (chunks != data_chunks_ || records != records_ || bytes != data_bytes_) {
    return absl::DataLossError(
        fmt::format("end chunk counts {} data chunks, {} records, {} bytes; received {}, {}, {}",
                    chunks, records, bytes, data_chunks_, records_, data_bytes_));
  }
  if (!partial_.empty()) {
    return absl::DataLossError(
        fmt::format("stream ends inside a record ({} bytes left over)", partial_.size()));
  }
  if (crc != data_crc_.Finish()) {
    return absl::DataLossError("end chunk: CRC32C of the data does not match");
  }
  end_seen_ = true;
  return Status();
}

Status SnapshotInstaller::FlushBatch() {
  if (batch_->Count() == 0) return Status();
  // No WAL: the new database only counts once Finish has flushed it to SST files; a crash
  // before that discards it anyway.
  rocksdb::WriteOptions options;
  options.disableWAL = true;
  rocksdb::Status s = db_->Write(options, batch_.get());
  batch_->Clear();
  if (!s.ok()) return FromRocks(s, "write");
  return Status();
}

Status SnapshotInstaller::Finish() {
  if (!failed_.ok()) return failed_;
  if (finished_) return Status();
  if (!end_seen_) {
    return Fail(absl::DataLossError(
        fmt::format("stream truncated: no end chunk after {} chunks", next_sequence_)));
  }
  SYNOD_ASSERT(header_seen_ && db_ != nullptr);
  batch_->Put(meta_handle_, kFormatKey, EncodeU64(kBackendFormatVersion));
  batch_->Put(meta_handle_, kAppliedIndexKey, EncodeU64(applied_index_.value()));
  batch_->Put(meta_handle_, kMembershipKey, membership_);
  if (Status s = FlushBatch(); !s.ok()) return Fail(s);
  rocksdb::FlushOptions flush;
  flush.wait = true;
  for (rocksdb::ColumnFamilyHandle* handle : all_handles_) {
    rocksdb::Status s = db_->Flush(flush, handle);
    if (!s.ok()) return Fail(FromRocks(s, "flush"));
  }
  CloseDb();
  // RocksDB syncs the files it flushes; sync every file and the directory once more so that the
  // new database is durable before CURRENT can name it, whatever RocksDB's options.
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(tmp_path_, ec)) {
    if (!entry.is_regular_file()) continue;
    if (Status s = FsyncPath(entry.path().string(), false); !s.ok()) return Fail(s);
  }
  if (ec) return Fail(absl::InternalError(fmt::format("list {}: {}", tmp_path_, ec.message())));
  if (Status s = FsyncPath(tmp_path_, true); !s.ok()) return Fail(s);
  finished_ = true;
  return Status();
}

Result<std::unique_ptr<Backend>> Backend::InstallSnapshot(
    std::unique_ptr<Backend> live, std::unique_ptr<SnapshotInstaller> installer,
    std::optional<InstallStep> stop_before) {
  SYNOD_ASSERT(live != nullptr);
  SYNOD_ASSERT(installer != nullptr);
  if (!installer->finished()) {
    return absl::FailedPreconditionError("snapshot install: the stream is not finished");
  }
  if (installer->dir_ != live->dir_) {
    return absl::InvalidArgumentError(
        fmt::format("snapshot install: built for {}, offered to {}", installer->dir_, live->dir_));
  }
  if (installer->tables_ != live->tables_) {
    return absl::FailedPreconditionError(
        fmt::format("snapshot install into {}: the snapshot has tables [{}], the backend [{}]",
                    live->dir_, fmt::join(installer->tables_, ","), fmt::join(live->tables_, ",")));
  }
  const std::string dir = live->dir_;
  const std::string old_name = live->db_name_;
  const std::vector<std::string> tables = live->tables_;
  Result<std::optional<std::string>> current = ReadCurrent(dir);
  if (!current.ok()) return current.status();
  if (!current->has_value() || **current != old_name) {
    return absl::FailedPreconditionError(
        fmt::format("snapshot install into {}: the live database changed", dir));
  }
  live.reset();  // Close: the swap must not happen under an open database.
  installer->handed_over_ = true;
  const auto stop = [&](InstallStep step) {
    return stop_before.has_value() && *stop_before == step;
  };
  const Status stopped = absl::AbortedError("snapshot install stopped for a test");

  // 1. The complete new database gets its final name. Not yet live: CURRENT names the old one.
  if (stop(InstallStep::kRenameDatabase)) return stopped;
  const std::string new_path = dir + "/" + installer->new_name_;
  if (Status s = RenameAndSyncDir(installer->tmp_path_, new_path, dir); !s.ok()) return s;
  // 2. The new CURRENT, under a temporary name.
  if (stop(InstallStep::kWriteCurrentTemp)) return stopped;
  const std::string temp = dir + "/" + kCurrentTempFile;
  if (Status s = WriteFileSynced(temp, CurrentContent(installer->new_name_)); !s.ok()) return s;
  // 3. The commit point: rename is atomic, so CURRENT names the old or the new database.
  if (stop(InstallStep::kRenameCurrent)) return stopped;
  if (Status s = RenameAndSyncDir(temp, dir + "/" + kCurrentFile, dir); !s.ok()) return s;
  // 4. The old database is garbage now (Open would remove it too).
  if (stop(InstallStep::kRemoveOld)) return stopped;
  std::error_code ec;
  fs::remove_all(dir + "/" + old_name, ec);
  if (ec) {
    return absl::InternalError(
        fmt::format("snapshot install into {}: remove {}: {}", dir, old_name, ec.message()));
  }
  return Open(dir, tables);
}

}  // namespace synod::storage
