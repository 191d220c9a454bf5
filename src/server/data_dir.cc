#include "server/data_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "storage/crc32c.h"

namespace synod::server {
namespace {

constexpr int kIdentityFormatVersion = 1;

std::string IdentityBody(const MemberIdentity& identity) {
  return fmt::format("synod-identity {}\ncluster {:x}\nmember {:x}\nname {}\n",
                     kIdentityFormatVersion, identity.cluster_id, identity.member_id.value(),
                     identity.name);
}

uint32_t Checksum(std::string_view body) {
  storage::Crc32c crc;
  crc.Update(body);
  return crc.Finish();
}

Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return absl::InternalError(fmt::format("open {}: {}", path, std::strerror(errno)));
  const int result = ::fsync(fd);
  const int saved_errno = errno;
  ::close(fd);
  if (result != 0) {
    return absl::InternalError(fmt::format("fsync {}: {}", path, std::strerror(saved_errno)));
  }
  return absl::OkStatus();
}

Status WriteIdentity(const std::string& member_dir, const MemberIdentity& identity) {
  const std::string body = IdentityBody(identity);
  const std::string path = member_dir + "/identity";
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << body << fmt::format("crc32c {:08x}\n", Checksum(body));
    if (!out.good()) return absl::InternalError(fmt::format("cannot write {}", temporary));
  }
  if (Status status = SyncPath(temporary, O_RDONLY); !status.ok()) return status;
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) return absl::InternalError(fmt::format("rename {}: {}", temporary, error.message()));
  return SyncPath(member_dir, O_RDONLY | O_DIRECTORY);
}

Result<MemberIdentity> ReadIdentity(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  const std::string text = contents.str();
  auto damaged = [&](std::string_view why) {
    return absl::DataLossError(fmt::format("identity file {} is damaged: {}", path, why));
  };
  const size_t crc_line = text.rfind("crc32c ");
  if (crc_line == std::string::npos) return damaged("no checksum");
  const std::string body = text.substr(0, crc_line);
  uint32_t stored = 0;
  if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(absl::string_view(text).substr(crc_line + 7)),
                           &stored) ||
      stored != Checksum(body)) {
    return damaged("checksum mismatch");
  }
  MemberIdentity identity;
  int version = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> field = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    uint64_t value = 0;
    if (field.first == "synod-identity") {
      if (!absl::SimpleAtoi(field.second, &version)) return damaged("bad version");
    } else if (field.first == "cluster" && absl::SimpleHexAtoi(field.second, &value)) {
      identity.cluster_id = value;
    } else if (field.first == "member" && absl::SimpleHexAtoi(field.second, &value)) {
      identity.member_id = NodeId(value);
    } else if (field.first == "name") {
      identity.name = field.second;
    } else {
      return damaged(fmt::format("unexpected line {:?}", std::string(line)));
    }
  }
  if (version != kIdentityFormatVersion) {
    return absl::FailedPreconditionError(fmt::format(
        "identity file {} has format version {}; this build reads version {}", path, version,
        kIdentityFormatVersion));
  }
  return identity;
}

}  // namespace

Result<OpenedDataDir> OpenDataDir(const ServerConfig& config) {
  OpenedDataDir opened;
  const std::string member_dir = config.data_dir + "/member";
  opened.wal_dir = member_dir + "/wal";
  opened.kv_dir = member_dir + "/kv";
  opened.identity = MemberIdentity{config.cluster_id, config.member_id, config.name};
  const std::string identity_path = member_dir + "/identity";
  std::error_code error;
  if (std::filesystem::exists(identity_path, error)) {
    auto stored = ReadIdentity(identity_path);
    if (!stored.ok()) return stored.status();
    if (stored->cluster_id != config.cluster_id || stored->member_id != config.member_id ||
        stored->name != config.name) {
      return absl::FailedPreconditionError(fmt::format(
          "data dir {} belongs to member {:x} ({}) of cluster {:x}, but the flags describe "
          "member {:x} ({}) of cluster {:x}",
          config.data_dir, stored->member_id.value(), stored->name, stored->cluster_id,
          config.member_id.value(), config.name, config.cluster_id));
    }
    opened.existed = true;
    return opened;
  }
  if (std::filesystem::exists(opened.wal_dir, error)) {
    return absl::DataLossError(
        fmt::format("data dir {} has a log but no identity file {}", config.data_dir,
                    identity_path));
  }
  std::filesystem::create_directories(member_dir, error);
  if (error) {
    return absl::InternalError(fmt::format("cannot create {}: {}", member_dir, error.message()));
  }
  if (Status status = WriteIdentity(member_dir, opened.identity); !status.ok()) return status;
  return opened;
}

Result<std::optional<MemberIdentity>> ReadDataDirIdentity(const std::string& data_dir) {
  const std::string identity_path = data_dir + "/member/identity";
  std::error_code error;
  if (!std::filesystem::exists(identity_path, error)) return std::optional<MemberIdentity>();
  auto stored = ReadIdentity(identity_path);
  if (!stored.ok()) return stored.status();
  return std::optional<MemberIdentity>(std::move(*stored));
}

}  // namespace synod::server
