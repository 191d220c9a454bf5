#include "storage/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/assert.h"

namespace synod::storage {
namespace {

Status ErrnoStatus(std::string_view operation, const std::string& path, int error) {
  std::string message = fmt::format("{} {}: {}", operation, path, std::strerror(error));
  if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
  if (error == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

class PosixAppendableFile final : public AppendableFile {
 public:
  PosixAppendableFile(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~PosixAppendableFile() override { ::close(fd_); }

  Status Append(std::string_view data) override {
    while (!data.empty()) {
      // At the offset, not O_APPEND: a preallocated file's length is past the appended data.
      const ssize_t written = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(size_));
      if (written < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", path_, errno);
      }
      SYNOD_ASSERT(static_cast<size_t>(written) <= data.size());
      data.remove_prefix(static_cast<size_t>(written));
      size_ += static_cast<uint64_t>(written);
    }
    return absl::OkStatus();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoStatus("fdatasync", path_, errno);
    return absl::OkStatus();
  }

  uint64_t size() const override { return size_; }

  void Preallocate(uint64_t bytes) override {
    // Mode 0 sets the file's length, so an append inside it changes no length. A failure
    // (EOPNOTSUPP, ENOSPC) leaves the file usable as it was, which is all the contract asks.
    if (bytes > size_) (void)::fallocate(fd_, 0, 0, static_cast<off_t>(bytes));
  }

 private:
  const std::string path_;
  const int fd_;
  uint64_t size_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Status CreateDirectory(const std::string& path) override {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir", path, errno);
    }
    return absl::OkStatus();
  }

  bool Exists(const std::string& path) override {
    struct stat info;
    return ::stat(path.c_str(), &info) == 0;
  }

  Result<std::vector<std::string>> ListDirectory(const std::string& path) override {
    DIR* directory = ::opendir(path.c_str());
    if (directory == nullptr) return ErrnoStatus("opendir", path, errno);
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(directory)) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(directory);
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<std::unique_ptr<AppendableFile>> OpenForAppend(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    struct stat info;
    if (::fstat(fd, &info) != 0) {
      const int error = errno;
      ::close(fd);
      return ErrnoStatus("fstat", path, error);
    }
    return std::unique_ptr<AppendableFile>(
        new PosixAppendableFile(path, fd, static_cast<uint64_t>(info.st_size)));
  }

  Result<std::string> ReadFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    std::string contents;
    // A preallocated segment is mostly zeros; one allocation of its full length, not doublings.
    if (struct stat info; ::fstat(fd, &info) == 0)
      contents.reserve(static_cast<size_t>(info.st_size));
    char buffer[1 << 16];
    while (true) {
      const ssize_t count = ::read(fd, buffer, sizeof buffer);
      if (count < 0) {
        if (errno == EINTR) continue;
        const int error = errno;
        ::close(fd);
        return ErrnoStatus("read", path, error);
      }
      if (count == 0) break;
      contents.append(buffer, static_cast<size_t>(count));
    }
    ::close(fd);
    return contents;
  }

  Status Truncate(const std::string& path, uint64_t size) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    Status status = absl::OkStatus();
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      status = ErrnoStatus("ftruncate", path, errno);
    } else if (::fsync(fd) != 0) {
      status = ErrnoStatus("fsync", path, errno);
    }
    ::close(fd);
    return status;
  }

  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return absl::OkStatus();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus("rename", from, errno);
    return absl::OkStatus();
  }

  Status SyncDirectory(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    Status status = absl::OkStatus();
    if (::fsync(fd) != 0) status = ErrnoStatus("fsync", path, errno);
    ::close(fd);
    return status;
  }
};

}  // namespace

std::unique_ptr<FileSystem> NewPosixFileSystem() { return std::make_unique<PosixFileSystem>(); }

std::string JoinPath(std::string_view directory, std::string_view name) {
  if (directory.empty()) return std::string(name);
  if (directory.back() == '/') return fmt::format("{}{}", directory, name);
  return fmt::format("{}/{}", directory, name);
}

Status ReplaceFileDurably(FileSystem& fs, const std::string& directory, std::string_view name,
                          std::string_view contents) {
  SYNOD_ASSERT(!name.empty());
  const std::string path = JoinPath(directory, name);
  const std::string temporary = path + ".tmp";
  // OpenForAppend keeps what a file holds, so a leftover temporary file must go first.
  if (fs.Exists(temporary)) {
    if (Status status = fs.Remove(temporary); !status.ok()) return status;
  }
  auto file = fs.OpenForAppend(temporary);
  if (!file.ok()) return file.status();
  if (Status status = (*file)->Append(contents); !status.ok()) return status;
  if (Status status = (*file)->Sync(); !status.ok()) return status;
  SYNOD_ASSERT((*file)->size() == contents.size());
  if (Status status = fs.Rename(temporary, path); !status.ok()) return status;
  return fs.SyncDirectory(directory);
}

}  // namespace synod::storage
