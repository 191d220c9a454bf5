// A power-loss model for the fault tests, preloaded into a synod member (LD_PRELOAD).
//
// Why: kill -9 leaves the kernel's page cache intact, so everything a process wrote survives it,
// synced or not, and a build that acknowledges before fsync loses nothing. A power cut loses
// what was not synced. This kernel has no dm-flakey to model that below the file system, so the
// model lives at the process's fsync calls: for every regular file under SYNOD_POWERLOSS_DIR,
// the shim appends to the log SYNOD_POWERLOSS_LOG how many bytes of it are durable:
//   sync <dev> <inode> <size>  fsync or fdatasync succeeded; the file's size when the call began
//                              (every byte written before the call) is durable;
//   cut <dev> <inode> <size>   the file was created or truncated to <size> bytes; nothing past
//                              them is durable any more.
// After kill -9 the harness cuts every file back to its durable size (tests/fault/powerloss.py),
// which leaves the directory as a power cut at the moment of the kill could have left it.
//
// Why a log of durable sizes rather than holding unsynced writes back in memory: writes still go
// to the kernel, so every way of reading (read, pread, stdio, mmap) sees the process's own
// writes with nothing to intercept, and a record is one append, so kill -9 cannot tear it. The
// price is one assumption, that files under the directory are appended to and never overwritten
// in place. It holds for the write-ahead log's segments (src/storage/wal.h) and for RocksDB's
// files with synod's options (WAL without recycling, SST, MANIFEST), and the shim checks it:
// positioned writes below the end of a tracked file, and files opened with O_SYNC or O_DSYNC
// (durable at every write) or O_DIRECT (past the page cache), which the log cannot express, stop
// the process with a message instead of giving a wrong model. (An overwrite through write()
// after lseek is not caught; synod and RocksDB's writable files never seek back.)
//
// A file reserved with fallocate (mode 0: the file's length grows, the new part reads as zeros;
// synod's write-ahead log preallocates its segments so) has data that ends before its length.
// For those the shim keeps the end of the data itself, counts that end in its sync records, lets
// writes land anywhere from it on (over the reserved zeros), and logs
//   reserve <dev> <inode> <length>  the file was reserved up to <length> bytes;
// the harness then turns what a power cut loses inside that length back into zeros, as the
// unwritten blocks of a reserved file read after a real one, and cuts only what lies past it.
//
// What it does not model: directory entries (creation, rename and removal count as durable at
// once; the nemesis tests target lost data, not lost names); sync() and syncfs(); calls that do
// not go through the dynamic linker (glibc's internal opens behind fopen: such a file is tracked
// from its first fsync on, and untouched by the restore before that).
// sync_file_range is deliberately not counted: it neither writes metadata nor flushes the disk's
// cache, so it makes nothing durable (man 2 sync_file_range).

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace {

template <typename Function>
Function* Real(const char* name) {
  void* symbol = dlsym(RTLD_NEXT, name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "powerloss shim: no next definition of %s\n", name);
    std::abort();
  }
  return reinterpret_cast<Function*>(symbol);
}

[[noreturn]] void Refuse(const char* what, int fd) {
  std::fprintf(stderr,
               "powerloss shim: %s on fd %d under SYNOD_POWERLOSS_DIR, which the model "
               "cannot express (see tests/fault/powerloss_shim.cc); stopping\n",
               what, fd);
  std::abort();
}

struct Config {
  // Canonical, with a trailing slash; empty when the shim is inactive.
  std::string directory_prefix;
  int log_fd = -1;
};

const Config& GetConfig() {
  static const Config config = [] {
    Config made;
    const char* directory = std::getenv("SYNOD_POWERLOSS_DIR");
    if (directory == nullptr || *directory == '\0') return made;
    const char* log_path = std::getenv("SYNOD_POWERLOSS_LOG");
    // The directory may not exist yet (the member creates it), so it cannot be canonicalised
    // here: the harness must pass a canonical absolute path.
    if (directory[0] != '/' || log_path == nullptr || *log_path == '\0') {
      std::fprintf(stderr,
                   "powerloss shim: SYNOD_POWERLOSS_DIR must be an absolute canonical "
                   "path and SYNOD_POWERLOSS_LOG must be set\n");
      std::abort();
    }
    made.directory_prefix = directory;
    if (made.directory_prefix.back() != '/') made.directory_prefix += '/';
    made.log_fd = Real<int(const char*, int, ...)>("open")(
        log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (made.log_fd < 0) {
      std::fprintf(stderr, "powerloss shim: cannot open %s: %s\n", log_path, std::strerror(errno));
      std::abort();
    }
    return made;
  }();
  return config;
}

// Whether a descriptor is a regular file under the directory, with its identity and size. The
// path comes from /proc, so it is canonical like the configured prefix.
struct TrackedFile {
  bool tracked = false;
  struct stat info {};
};

TrackedFile Track(int fd) {
  TrackedFile file;
  const Config& config = GetConfig();
  if (config.directory_prefix.empty() || fd < 0) return file;
  if (fstat(fd, &file.info) != 0 || !S_ISREG(file.info.st_mode)) return file;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char path[4096];
  const ssize_t length = readlink(link, path, sizeof path - 1);
  if (length <= 0) return file;
  file.tracked =
      std::string_view(path, static_cast<size_t>(length)).starts_with(config.directory_prefix);
  return file;
}

void Record(const char* kind, const struct stat& info, off_t size) {
  char line[128];
  const int length = std::snprintf(
      line, sizeof line, "%s %llu %llu %lld\n", kind, static_cast<unsigned long long>(info.st_dev),
      static_cast<unsigned long long>(info.st_ino), static_cast<long long>(size));
  // One append of a short line: concurrent records never interleave, and kill -9 lands either
  // before the write or after it.
  if (write(GetConfig().log_fd, line, static_cast<size_t>(length)) != length) {
    std::fprintf(stderr, "powerloss shim: cannot append to SYNOD_POWERLOSS_LOG\n");
    std::abort();
  }
}

// The end of the data of every reserved file (see the top), by device and inode.
std::mutex reserved_mutex;
std::map<std::pair<dev_t, ino_t>, off_t> reserved_data_end;

std::pair<dev_t, ino_t> KeyOf(const struct stat& info) {
  return {info.st_dev, info.st_ino};
}

// Where a tracked file's data ends: its length, unless it is reserved.
off_t DataEnd(const struct stat& info) {
  std::lock_guard lock(reserved_mutex);
  auto it = reserved_data_end.find(KeyOf(info));
  return it == reserved_data_end.end() ? info.st_size : it->second;
}

// After an open: a file that is empty now has nothing durable (a new file, a truncated one, or
// a new file that reuses the inode of a removed one).
int AfterOpen(int fd, int flags) {
  // Writes through such a descriptor are durable (O_SYNC, O_DSYNC) or bypass the page cache
  // (O_DIRECT) at once, which a log of fsyncs cannot express.
  constexpr int kUnmodelledFlags = O_SYNC | O_DSYNC | O_DIRECT;
  if (fd < 0 || (flags & (kUnmodelledFlags | O_CREAT | O_TRUNC)) == 0) return fd;
  const int saved_errno = errno;
  const TrackedFile file = Track(fd);
  if (file.tracked && (flags & kUnmodelledFlags) != 0)
    Refuse("open with O_SYNC/O_DSYNC/O_DIRECT", fd);
  if (file.tracked && file.info.st_size == 0) {
    Record("cut", file.info, 0);
    std::lock_guard lock(reserved_mutex);
    reserved_data_end.erase(KeyOf(file.info));  // A new file may reuse a removed one's inode.
  }
  errno = saved_errno;
  return fd;
}

template <typename Sync>
int SyncAndRecord(Sync* real_sync, int fd) {
  // The size is read before the sync: bytes written while it runs may not be covered.
  const TrackedFile file = Track(fd);
  const off_t data_end = file.tracked ? DataEnd(file.info) : 0;
  const int result = real_sync(fd);
  if (result == 0 && file.tracked) Record("sync", file.info, data_end);
  return result;
}

void CheckAppend(int fd, off_t offset) {
  struct stat info;
  if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && offset < DataEnd(info) &&
      Track(fd).tracked) {
    Refuse("a write over existing bytes", fd);
  }
}

// After a positioned write of `written` bytes at `offset`: a reserved file's data now ends
// there, if that is further.
void AfterWrite(int fd, off_t offset, ssize_t written) {
  if (written <= 0) return;
  struct stat info;
  if (fstat(fd, &info) != 0) return;
  std::lock_guard lock(reserved_mutex);
  auto it = reserved_data_end.find(KeyOf(info));
  if (it != reserved_data_end.end()) it->second = std::max(it->second, offset + written);
}

mode_t ModeArgument(int flags, va_list arguments) {
  return (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(arguments, int)) : 0;
}

}  // namespace

// The *64 variants are the same functions on a 64-bit system (off_t is 64 bits, O_LARGEFILE is
// implied), so they are aliases.
static_assert(sizeof(off_t) == 8, "the *64 aliases below assume a 64-bit off_t");

extern "C" {

int open(const char* path, int flags, ...) {
  static auto* real = Real<int(const char*, int, ...)>("open");
  va_list arguments;
  va_start(arguments, flags);
  const mode_t mode = ModeArgument(flags, arguments);
  va_end(arguments);
  return AfterOpen(real(path, flags, mode), flags);
}
int open64(const char* path, int flags, ...) __attribute__((alias("open")));

int openat(int directory_fd, const char* path, int flags, ...) {
  static auto* real = Real<int(int, const char*, int, ...)>("openat");
  va_list arguments;
  va_start(arguments, flags);
  const mode_t mode = ModeArgument(flags, arguments);
  va_end(arguments);
  return AfterOpen(real(directory_fd, path, flags, mode), flags);
}
int openat64(int directory_fd, const char* path, int flags, ...) __attribute__((alias("openat")));

int fsync(int fd) {
  static auto* real = Real<int(int)>("fsync");
  return SyncAndRecord(real, fd);
}

int fdatasync(int fd) {
  static auto* real = Real<int(int)>("fdatasync");
  return SyncAndRecord(real, fd);
}

int ftruncate(int fd, off_t length) {
  static auto* real = Real<int(int, off_t)>("ftruncate");
  const TrackedFile file = Track(fd);
  const int result = real(fd, length);
  if (result == 0 && file.tracked && length < file.info.st_size) {
    Record("cut", file.info, length);
    std::lock_guard lock(reserved_mutex);
    auto it = reserved_data_end.find(KeyOf(file.info));
    // Cut at or before the end of its data, the file ends with its data again.
    if (it != reserved_data_end.end() && length <= it->second) reserved_data_end.erase(it);
  }
  return result;
}
int ftruncate64(int fd, off64_t length) __attribute__((alias("ftruncate")));

int truncate(const char* path, off_t length) {
  // Through a descriptor, so that the file is identified as the other calls identify it.
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const int result = ftruncate(fd, length);
  const int saved_errno = errno;
  close(fd);
  errno = saved_errno;
  return result;
}
int truncate64(const char* path, off64_t length) __attribute__((alias("truncate")));

ssize_t pwrite(int fd, const void* buffer, size_t count, off_t offset) {
  static auto* real = Real<ssize_t(int, const void*, size_t, off_t)>("pwrite");
  CheckAppend(fd, offset);
  const ssize_t written = real(fd, buffer, count, offset);
  AfterWrite(fd, offset, written);
  return written;
}
ssize_t pwrite64(int fd, const void* buffer, size_t count, off64_t offset)
    __attribute__((alias("pwrite")));

ssize_t pwritev(int fd, const struct iovec* vectors, int count, off_t offset) {
  static auto* real = Real<ssize_t(int, const struct iovec*, int, off_t)>("pwritev");
  CheckAppend(fd, offset);
  const ssize_t written = real(fd, vectors, count, offset);
  AfterWrite(fd, offset, written);
  return written;
}
ssize_t pwritev64(int fd, const struct iovec* vectors, int count, off64_t offset)
    __attribute__((alias("pwritev")));

int fallocate(int fd, int mode, off_t offset, off_t length) {
  static auto* real = Real<int(int, int, off_t, off_t)>("fallocate");
  const TrackedFile file = Track(fd);
  const int result = real(fd, mode, offset, length);
  // Mode 0 lengthens the file; other modes (FALLOC_FL_KEEP_SIZE, as RocksDB uses) keep it.
  if (result == 0 && file.tracked && mode == 0 && offset + length > file.info.st_size) {
    const int saved_errno = errno;
    {
      std::lock_guard lock(reserved_mutex);
      reserved_data_end.try_emplace(KeyOf(file.info), file.info.st_size);
    }
    Record("reserve", file.info, offset + length);
    errno = saved_errno;
  }
  return result;
}
int fallocate64(int fd, int mode, off64_t offset, off64_t length)
    __attribute__((alias("fallocate")));

}  // extern "C"
