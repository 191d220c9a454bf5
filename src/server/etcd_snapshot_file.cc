#include "server/etcd_snapshot_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

namespace synod::server {
namespace {

constexpr size_t kHashChunkBytes = 1 << 20;

Status IoError(std::string_view what, const std::string& path) {
  const int error = errno;
  const std::string message = fmt::format("{} {}: {}", what, path, std::strerror(error));
  return error == ENOSPC ? absl::ResourceExhaustedError(message) : absl::InternalError(message);
}

// The SHA-256 of the first `bytes` bytes of `fd`.
Result<std::string> Sha256Prefix(int fd, uint64_t bytes, const std::string& path) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> sha256(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha256.get(), EVP_sha256(), nullptr);
  std::string buffer(kHashChunkBytes, '\0');
  for (uint64_t offset = 0; offset < bytes;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), bytes - offset));
    const ssize_t got = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return IoError("read", path);
    if (got == 0) return absl::DataLossError(fmt::format("{} ends early at {}", path, offset));
    EVP_DigestUpdate(sha256.get(), buffer.data(), static_cast<size_t>(got));
    offset += static_cast<uint64_t>(got);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_bytes = 0;
  EVP_DigestFinal_ex(sha256.get(), digest, &digest_bytes);
  return std::string(reinterpret_cast<const char*>(digest), digest_bytes);
}

// Go's %v of a byte slice, as etcdctl prints the hashes it compares: "[1 2 3]".
std::string GoBytes(std::string_view bytes) {
  std::string out = "[";
  for (unsigned char c : bytes) out += fmt::format("{}{}", out.size() > 1 ? " " : "", c);
  return out + "]";
}

}  // namespace

Status AppendSha256Trailer(int fd, uint64_t bytes, const std::string& path) {
  Result<std::string> digest = Sha256Prefix(fd, bytes, path);
  if (!digest.ok()) return digest.status();
  if (::pwrite(fd, digest->data(), digest->size(), static_cast<off_t>(bytes)) !=
      static_cast<ssize_t>(digest->size())) {
    return IoError("write", path);
  }
  return Status();
}

Status CheckSha256Trailer(const std::string& path, bool skip_hash_check) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? absl::NotFoundError(fmt::format("{}: no such file", path))
                           : IoError("open", path);
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  Status status;
  const bool has_hash = size >= 0 && size % 512 == static_cast<off_t>(kSnapshotSha256Bytes);
  if (size < 0) {
    status = IoError("seek", path);
  } else if (!has_hash && !skip_hash_check) {
    status = absl::FailedPreconditionError("snapshot missing hash but --skip-hash-check=false");
  } else if (has_hash && !skip_hash_check) {
    const uint64_t db_bytes = static_cast<uint64_t>(size) - kSnapshotSha256Bytes;
    std::string stored(kSnapshotSha256Bytes, '\0');
    Result<std::string> computed = Sha256Prefix(fd, db_bytes, path);
    if (::pread(fd, stored.data(), stored.size(), static_cast<off_t>(db_bytes)) !=
        static_cast<ssize_t>(stored.size())) {
      status = IoError("read", path);
    } else if (!computed.ok()) {
      status = computed.status();
    } else if (*computed != stored) {
      status = absl::DataLossError(
          fmt::format("expected sha256 {}, got {}", GoBytes(stored), GoBytes(*computed)));
    }
  }
  ::close(fd);
  return status;
}

}  // namespace synod::server
