#include "sim/sim_disk.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"

namespace synod::sim {
namespace {

constexpr uint64_t kPageBytes = 4096;

std::string ParentOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string NameOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

class SimDisk::File final : public storage::AppendableFile {
 public:
  File(SimDisk* disk, std::shared_ptr<FileData> data, std::string path)
      : disk_(disk), data_(std::move(data)), path_(std::move(path)),
        generation_(disk->generation_) {}

  Status Append(std::string_view bytes) override {
    SYNOD_ASSERT_MSG(generation_ == disk_->generation_, "file handle used after a crash");
    data_->visible.append(bytes);
    return absl::OkStatus();
  }

  Status Sync() override {
    SYNOD_ASSERT_MSG(generation_ == disk_->generation_, "file handle used after a crash");
    if (disk_->TakeSyncFailure()) {
      return absl::InternalError(fmt::format("fdatasync {}: Input/output error", path_));
    }
    data_->durable = data_->visible;
    return absl::OkStatus();
  }

  uint64_t size() const override { return data_->visible.size(); }

  void Preallocate(uint64_t bytes) override {
    SYNOD_ASSERT_MSG(generation_ == disk_->generation_, "file handle used after a crash");
    data_->reserved = std::max(data_->reserved, bytes);
  }

 private:
  SimDisk* const disk_;
  const std::shared_ptr<FileData> data_;
  const std::string path_;
  const uint64_t generation_;
};

bool SimDisk::TakeSyncFailure() {
  if (syncs_to_fail_ == 0) return false;
  --syncs_to_fail_;
  return true;
}

void SimDisk::Crash(CrashKind kind, base::Prng& prng) {
  ++generation_;
  syncs_to_fail_ = 0;
  visible_names_ = durable_names_;
  for (auto& [path, data] : durable_names_) {
    const std::string& visible = data->visible;
    std::string& durable = data->durable;
    // A file whose visible contents do not extend the durable ones was truncated (durably);
    // appends are the only unsynced change the storage code makes.
    if (kind == CrashKind::kTornWrite && visible.size() > durable.size() &&
        visible.starts_with(durable)) {
      const uint64_t length = prng.Between(durable.size(), visible.size());
      std::string torn = durable;
      torn.resize(length, '\0');
      for (uint64_t page = durable.size() / kPageBytes * kPageBytes; page < length;
           page += kPageBytes) {
        if (!prng.Chance(1, 2)) continue;
        const uint64_t from = std::max<uint64_t>(page, durable.size());
        const uint64_t to = std::min<uint64_t>(page + kPageBytes, length);
        torn.replace(from, to - from, visible, from, to - from);
      }
      durable = std::move(torn);
    }
    data->visible = durable;
  }
}

void SimDisk::FlipBit(const std::string& path, uint64_t offset, uint8_t bit) {
  auto it = durable_names_.find(path);
  SYNOD_ASSERT_MSG(it != durable_names_.end(), "no file {}", path);
  FileData& data = *it->second;
  SYNOD_ASSERT(offset < data.durable.size());
  SYNOD_ASSERT(bit < 8);
  data.durable[offset] = static_cast<char>(data.durable[offset] ^ (1 << bit));
  if (offset < data.visible.size()) {
    data.visible[offset] = static_cast<char>(data.visible[offset] ^ (1 << bit));
  }
}

uint64_t SimDisk::DurableSize(const std::string& path) const {
  auto it = durable_names_.find(path);
  return it == durable_names_.end() ? 0 : it->second->durable.size();
}

Status SimDisk::CreateDirectory(const std::string& path) {
  directories_.insert(path);
  return absl::OkStatus();
}

bool SimDisk::Exists(const std::string& path) {
  return directories_.contains(path) || visible_names_.contains(path);
}

Result<std::vector<std::string>> SimDisk::ListDirectory(const std::string& path) {
  if (!directories_.contains(path)) {
    return absl::NotFoundError(fmt::format("opendir {}: No such file or directory", path));
  }
  std::vector<std::string> names;
  for (const auto& [file, data] : visible_names_) {
    if (ParentOf(file) == path) names.push_back(NameOf(file));
  }
  for (const std::string& directory : directories_) {
    if (ParentOf(directory) == path) names.push_back(NameOf(directory));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::unique_ptr<storage::AppendableFile>> SimDisk::OpenForAppend(const std::string& path) {
  if (!directories_.contains(ParentOf(path))) {
    return absl::NotFoundError(fmt::format("open {}: No such file or directory", path));
  }
  auto [it, inserted] = visible_names_.try_emplace(path, nullptr);
  if (inserted) it->second = std::make_shared<FileData>();
  return std::unique_ptr<storage::AppendableFile>(new File(this, it->second, path));
}

Result<std::string> SimDisk::ReadFile(const std::string& path) {
  auto it = visible_names_.find(path);
  if (it == visible_names_.end()) {
    return absl::NotFoundError(fmt::format("open {}: No such file or directory", path));
  }
  const FileData& data = *it->second;
  std::string contents = data.visible;
  if (data.reserved > contents.size()) contents.resize(data.reserved, '\0');
  return contents;
}

Status SimDisk::Truncate(const std::string& path, uint64_t size) {
  auto it = visible_names_.find(path);
  if (it == visible_names_.end()) {
    return absl::NotFoundError(fmt::format("open {}: No such file or directory", path));
  }
  if (TakeSyncFailure()) return absl::InternalError(fmt::format("fsync {}: Input/output error", path));
  FileData& data = *it->second;
  // Within the reserved length a cut may also lengthen the data: a record can end in zeros that
  // the reservation, not a write, supplied (as on a real disk).
  SYNOD_ASSERT(size <= std::max<uint64_t>(data.visible.size(), data.reserved));
  data.visible.resize(size, '\0');
  data.durable = data.visible;
  data.reserved = size;  // ftruncate frees the blocks past the new length.
  return absl::OkStatus();
}

Status SimDisk::Remove(const std::string& path) {
  if (visible_names_.erase(path) == 0) {
    return absl::NotFoundError(fmt::format("unlink {}: No such file or directory", path));
  }
  return absl::OkStatus();
}

Status SimDisk::Rename(const std::string& from, const std::string& to) {
  if (directories_.contains(from)) {
    // Directory renames are durable at once (see the header); move everything below it.
    directories_.erase(from);
    directories_.insert(to);
    for (auto* names : {&visible_names_, &durable_names_}) {
      std::map<std::string, std::shared_ptr<FileData>> renamed;
      for (auto& [path, data] : *names) {
        renamed.emplace(ParentOf(path) == from ? to + "/" + NameOf(path) : path, data);
      }
      *names = std::move(renamed);
    }
    return absl::OkStatus();
  }
  auto it = visible_names_.find(from);
  if (it == visible_names_.end()) {
    return absl::NotFoundError(fmt::format("rename {}: No such file or directory", from));
  }
  visible_names_[to] = it->second;
  visible_names_.erase(from);
  return absl::OkStatus();
}

Status SimDisk::SyncDirectory(const std::string& path) {
  if (!directories_.contains(path)) {
    return absl::NotFoundError(fmt::format("open {}: No such file or directory", path));
  }
  if (TakeSyncFailure()) return absl::InternalError(fmt::format("fsync {}: Input/output error", path));
  for (auto it = durable_names_.begin(); it != durable_names_.end();) {
    it = ParentOf(it->first) == path ? durable_names_.erase(it) : std::next(it);
  }
  for (const auto& [file, data] : visible_names_) {
    if (ParentOf(file) == path) durable_names_[file] = data;
  }
  return absl::OkStatus();
}

}  // namespace synod::sim
