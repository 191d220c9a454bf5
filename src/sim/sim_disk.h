#pragma once

// A simulated disk with the faults real disks have, under the same storage code production
// runs. It keeps, for every file, what is durable and what the process sees:
//  - a write is visible at once but durable only after Sync; a new or removed name is durable
//    only after SyncDirectory of its directory;
//  - Crash() throws away what was not durable, either wholly or as a torn write: a random
//    length of the unsynced tail reaches the disk, each 4 KiB page of it independently, and the
//    pages that did not arrive read as zeros (page writeback has no order);
//  - FailSyncs() makes fsync fail, as after an I/O error, leaving the data's durability unknown;
//  - FlipBit() damages durable data, as a latent sector error does.
// Directory creation and directory renames are durable at once (the write-ahead log creates its
// directory once, atomically by rename); everything the log does inside its directory is
// modelled precisely. Single-threaded, like the simulator.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "base/prng.h"
#include "storage/file_system.h"

namespace synod::sim {

class SimDisk final : public storage::FileSystem {
 public:
  enum class CrashKind {
    // Everything unsynced is lost.
    kLoseUnsynced,
    // A torn write: a random part of the unsynced data reaches the disk, as described above.
    kTornWrite,
  };

  SimDisk() = default;
  SimDisk(const SimDisk&) = delete;
  SimDisk& operator=(const SimDisk&) = delete;

  // The process died: open files become invalid (their handles must not be used again) and the
  // visible state becomes the durable one. `prng` decides the torn parts.
  void Crash(CrashKind kind, base::Prng& prng);
  // The next `count` fsyncs (file or directory) fail with an I/O error.
  void FailSyncs(uint32_t count) { syncs_to_fail_ = count; }
  // Flips one bit of a file's durable (and visible) contents. Precondition: offset < size.
  void FlipBit(const std::string& path, uint64_t offset, uint8_t bit);

  // The durable size of a file, for choosing where to damage it.
  uint64_t DurableSize(const std::string& path) const;

  // storage::FileSystem.
  Status CreateDirectory(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Result<std::vector<std::string>> ListDirectory(const std::string& path) override;
  Result<std::unique_ptr<storage::AppendableFile>> OpenForAppend(const std::string& path) override;
  Result<std::string> ReadFile(const std::string& path) override;
  Status Truncate(const std::string& path, uint64_t size) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDirectory(const std::string& path) override;

 private:
  struct FileData {
    std::string visible;
    std::string durable;
    // The length Preallocate reserved: reads see zeros past the data up to it. Modelled as
    // durable at once; a reservation a crash undoes leaves the file as if never made, the case
    // of a file that was not preallocated.
    uint64_t reserved = 0;
  };
  class File;

  // True when an fsync should fail now (and counts it).
  bool TakeSyncFailure();

  // Names as the process sees them, and as they are on disk.
  std::map<std::string, std::shared_ptr<FileData>> visible_names_;
  std::map<std::string, std::shared_ptr<FileData>> durable_names_;
  std::set<std::string> directories_;
  uint32_t syncs_to_fail_ = 0;
  // Bumped by every crash; handles opened before it refuse to work.
  uint64_t generation_ = 0;
};

}  // namespace synod::sim
