#pragma once

// The file operations the write-ahead log needs, behind an interface so the simulator can put a
// disk with faults underneath (unsynced writes lost at a crash, torn writes, flipped bits, fsync
// failures) while production uses POSIX files. Paths are plain strings; a directory and the
// files in it are named by the caller.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace synod::storage {

// A file open for appending. Nothing appended is durable until Sync returns OK.
class AppendableFile {
 public:
  virtual ~AppendableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable (fdatasync). After an error the file's unsynced
  // contents are unknown: the page cache may have dropped them (the 2018 "fsyncgate" lesson), so
  // the caller must stop rather than retry and trust the data.
  virtual Status Sync() = 0;
  // The file's size including unsynced appends.
  virtual uint64_t size() const = 0;
  // Reserves room so that appends up to `bytes` in all need not grow the file: its length on
  // disk becomes at least `bytes`, and what lies past the appended data reads as zeros (which a
  // reader must therefore accept after the last thing written). An fdatasync after an append
  // into the reserved part then flushes the data without committing a new file length to the
  // filesystem's journal, as etcd's WAL preallocates its segments for. Best effort: where the
  // filesystem cannot reserve (no fallocate, no room), the file stays as it is and appends grow
  // it as before.
  virtual void Preallocate(uint64_t bytes) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates the directory if it is missing (its parent must exist).
  virtual Status CreateDirectory(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // The names (not paths) of the entries of a directory, sorted.
  virtual Result<std::vector<std::string>> ListDirectory(const std::string& path) = 0;
  // Opens a file for appending after its last byte, creating it empty if it does not exist. A
  // new file's name is durable only after SyncDirectory on its directory.
  virtual Result<std::unique_ptr<AppendableFile>> OpenForAppend(const std::string& path) = 0;
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // Cuts a file to `size` bytes and makes the cut durable.
  virtual Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual Status Remove(const std::string& path) = 0;
  // Atomically replaces `to` with `from` (durable after SyncDirectory).
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Makes the creation, removal and renaming of entries in the directory durable.
  virtual Status SyncDirectory(const std::string& path) = 0;
};

// The real disk. Errors carry the path and strerror; ENOSPC becomes ResourceExhausted so the
// server can report "disk full" as etcd reports its NOSPACE alarm.
std::unique_ptr<FileSystem> NewPosixFileSystem();

std::string JoinPath(std::string_view directory, std::string_view name);

// Replaces the file `name` in `directory` with `contents` so that a crash at any moment leaves
// either the old file or the new one, never a mix: the contents go to "<name>.tmp", which is
// synced, renamed over `name`, and the directory synced. Returns OK only once the new contents
// are durable. A "<name>.tmp" left by an earlier crash is discarded. After an error the caller
// must not assume either version is the durable one until a later call succeeds.
Status ReplaceFileDurably(FileSystem& fs, const std::string& directory, std::string_view name,
                          std::string_view contents);

}  // namespace synod::storage
