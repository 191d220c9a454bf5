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

// Writes `body` and its checksum line to `member_dir`/`name` atomically.
Status WriteChecksummedFile(const std::string& member_dir, std::string_view name,
                            const std::string& body) {
  const std::string path = fmt::format("{}/{}", member_dir, name);
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

Status WriteIdentity(const std::string& member_dir, const MemberIdentity& identity) {
  return WriteChecksummedFile(member_dir, "identity", IdentityBody(identity));
}

// The body of a file WriteChecksummedFile wrote, its checksum verified; DataLoss naming the
// file (`what` says which) when it is damaged.
Result<std::string> ReadChecksummedFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  const std::string text = contents.str();
  auto damaged = [&](std::string_view why) {
    return absl::DataLossError(fmt::format("{} file {} is damaged: {}", what, path, why));
  };
  const size_t crc_line = text.rfind("crc32c ");
  if (crc_line == std::string::npos) return damaged("no checksum");
  std::string body = text.substr(0, crc_line);
  uint32_t stored = 0;
  if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(absl::string_view(text).substr(crc_line + 7)),
                           &stored) ||
      stored != Checksum(body)) {
    return damaged("checksum mismatch");
  }
  return body;
}

constexpr std::string_view kEngineFileName = "engine";

std::string EngineBody(EngineKind engine) { return fmt::format("engine {}\n", ToString(engine)); }

// The engine recorded in `member_dir`; Raft when there is no record (a data dir made before
// engines were recorded).
Result<EngineKind> ReadEngine(const std::string& member_dir) {
  const std::string path = fmt::format("{}/{}", member_dir, kEngineFileName);
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return EngineKind::kRaft;
  Result<std::string> body = ReadChecksummedFile(path, "engine");
  if (!body.ok()) return body.status();
  for (EngineKind engine : {EngineKind::kRaft, EngineKind::kMultiPaxos}) {
    if (*body == EngineBody(engine)) return engine;
  }
  return absl::DataLossError(
      fmt::format("engine file {} is damaged: it names no known engine", path));
}

Result<MemberIdentity> ReadIdentity(const std::string& path) {
  Result<std::string> checked = ReadChecksummedFile(path, "identity");
  if (!checked.ok()) return checked.status();
  const std::string& body = *checked;
  auto damaged = [&](std::string_view why) {
    return absl::DataLossError(fmt::format("identity file {} is damaged: {}", path, why));
  };
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
    auto engine = ReadEngine(member_dir);
    if (!engine.ok()) return engine.status();
    if (*engine != config.engine) {
      return absl::FailedPreconditionError(fmt::format(
          "data dir {} was created by the {} engine, but this member was started with --engine "
          "{}; a member's engine cannot change (start it with --engine {}, or give it a new "
          "data dir)",
          config.data_dir, ToString(*engine), ToString(config.engine), ToString(*engine)));
    }
    opened.engine = *engine;
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
  // The engine first: the identity marks a complete directory, and a crash in between leaves
  // none, so the next start writes both again.
  if (Status status =
          WriteChecksummedFile(member_dir, kEngineFileName, EngineBody(config.engine));
      !status.ok()) {
    return status;
  }
  if (Status status = WriteIdentity(member_dir, opened.identity); !status.ok()) return status;
  opened.engine = config.engine;
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
