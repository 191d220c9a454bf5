#include "server/snapshot_restore.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string_view>
#include <vector>

#include "server/data_dir.h"
#include "server/engine_kind.h"
#include "server/etcd_snapshot_file.h"
#include "server/members.h"
#include "storage/bolt_reader.h"
#include "storage/file_system.h"
#include "storage/wal.h"

namespace synod::server {
namespace {

namespace fs = std::filesystem;

// The Raft term the restored log starts in (etcd's restore writes its snapshot at term 1 too).
constexpr Term kRestoredTerm(1);

// Server flags that etcdctl snapshot restore also takes, and synod's --engine (which log the
// data dir gets); they are handed to ParseFlags.
const std::set<std::string>& ForwardedFlags() {
  static const std::set<std::string> flags = {"name", "data-dir", "initial-cluster",
                                              "initial-cluster-token",
                                              "initial-advertise-peer-urls", "engine"};
  return flags;
}

Status SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(fmt::format("open {}", path));
  const int result = ::fsync(fd);
  ::close(fd);
  return result == 0 ? Status() : absl::InternalError(fmt::format("fsync {}", path));
}

// Builds the member's data dir in `dir` (which exists and is empty).
Result<kv::EtcdBackupSummary> BuildDataDir(const SnapshotRestoreOptions& options,
                                           const storage::BoltReader& reader,
                                           const std::string& dir) {
  ServerConfig config = options.config;
  config.data_dir = dir;
  Result<OpenedDataDir> opened = OpenDataDir(config);
  if (!opened.ok()) return opened.status();
  std::vector<synodpb::MemberRecord> records;
  for (const auto& [id, member] : config.initial_member_ids) {
    synodpb::MemberRecord& record = records.emplace_back();
    record.set_id(id.value());
    record.set_name(member.name);
    for (const Url& url : member.peer_urls) record.add_peer_urls(url.ToString());
  }
  const synodpb::ClusterMembers members = InitialClusterMembers(std::move(records));
  Result<kv::EtcdBackupSummary> summary =
      kv::ImportEtcdBackup(reader, opened->kv_dir, EncodeClusterMembers(members));
  if (!summary.ok()) return summary.status();

  std::unique_ptr<storage::FileSystem> file_system = storage::NewPosixFileSystem();
  const raft::SnapshotMeta snapshot{summary->applied_index, kRestoredTerm, MembershipOf(members)};
  storage::WalOptions wal_options{opened->wal_dir};
  wal_options.content = WalContentOf(config.engine);
  auto wal = storage::Wal::Create(file_system.get(), wal_options, snapshot);
  if (!wal.ok()) return wal.status();
  // Raft's log starts in term 1 so that the first leader is elected in term 2. A Multi-Paxos
  // acceptor's hard state is its promise {round, proposer}: it has promised nothing yet, as in a
  // new cluster; the commit index is the snapshot's on both.
  const Term promised_or_term = config.engine == EngineKind::kRaft ? kRestoredTerm : Term(0);
  (*wal)->SaveHardState(raft::HardState{promised_or_term, kNoNode, summary->applied_index});
  if (Status status = (*wal)->Sync(); !status.ok()) return status;
  return summary;
}

}  // namespace

Result<SnapshotRestoreOptions> ParseSnapshotRestoreFlags(int argc, const char* const* argv) {
  SnapshotRestoreOptions options;
  std::vector<const char*> forwarded = {"synod"};
  for (int i = 0; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument.empty() || argument[0] != '-') {
      if (!options.snapshot_path.empty()) {
        return absl::InvalidArgumentError(fmt::format("one snapshot file, please: {:?} and {:?}",
                                                      options.snapshot_path, argument));
      }
      options.snapshot_path = argument;
      continue;
    }
    const size_t name_at = argument.find_first_not_of('-');
    if (name_at == std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("bad argument {:?}", argument));
    }
    const std::string flag = argument.substr(name_at);
    const size_t equals = flag.find('=');
    const std::string name = flag.substr(0, equals);
    if (name == "skip-hash-check") {
      const std::string value = equals == std::string::npos ? "true" : flag.substr(equals + 1);
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            fmt::format("--skip-hash-check takes true or false, not {:?}", value));
      }
      options.skip_hash_check = value == "true";
      continue;
    }
    if (!ForwardedFlags().contains(name)) {
      return absl::InvalidArgumentError(
          fmt::format("unknown flag {} for snapshot restore (it takes --name, --data-dir, "
                      "--initial-cluster, --initial-cluster-token, --initial-advertise-peer-urls, "
                      "--skip-hash-check, --engine)",
                      argument));
    }
    forwarded.push_back(argv[i]);
    if (equals == std::string::npos && i + 1 < argc) forwarded.push_back(argv[++i]);
  }
  if (options.snapshot_path.empty()) {
    return absl::InvalidArgumentError("snapshot path required: synod snapshot restore FILE ...");
  }
  Result<ServerConfig> config = ParseFlags(static_cast<int>(forwarded.size()), forwarded.data());
  if (!config.ok()) return config.status();
  options.config = std::move(*config);
  return options;
}

Result<kv::EtcdBackupSummary> RestoreSnapshot(const SnapshotRestoreOptions& options) {
  const std::string& data_dir = options.config.data_dir;
  std::error_code error;
  if (fs::exists(data_dir, error)) {
    return absl::FailedPreconditionError(fmt::format("data-dir {:?} exists", data_dir));
  }
  if (Status status = CheckSha256Trailer(options.snapshot_path, options.skip_hash_check);
      !status.ok()) {
    return status;
  }
  // The trailer, when there is one, lies beyond the pages the meta counts; the reader ignores
  // it.
  auto reader = storage::BoltReader::Open(options.snapshot_path);
  if (!reader.ok()) return reader.status();

  const fs::path target = fs::absolute(data_dir);
  fs::create_directories(target.parent_path(), error);
  if (error) {
    return absl::InternalError(
        fmt::format("cannot create {}: {}", target.parent_path().string(), error.message()));
  }
  std::string building = target.string() + ".restoring-XXXXXX";
  if (::mkdtemp(building.data()) == nullptr) {
    return absl::InternalError(fmt::format("cannot create a directory beside {}", data_dir));
  }
  Result<kv::EtcdBackupSummary> summary = BuildDataDir(options, **reader, building);
  if (summary.ok()) {
    fs::rename(building, target, error);
    if (error) {
      summary = absl::InternalError(
          fmt::format("rename {} to {}: {}", building, target.string(), error.message()));
    }
  }
  if (!summary.ok()) {
    fs::remove_all(building, error);
    return summary;
  }
  if (Status status = SyncDirectory(target.parent_path().string()); !status.ok()) return status;
  return summary;
}

int RunSnapshotRestore(int argc, const char* const* argv) {
  for (int i = 0; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (argument == "--help" || argument == "-help" || argument == "-h") {
      std::puts(
          "Usage: synod snapshot restore FILE [--name NAME] [--data-dir DIR]\n"
          "         [--initial-cluster NAME=URL,...] [--initial-cluster-token TOKEN]\n"
          "         [--initial-advertise-peer-urls URL,...] [--skip-hash-check]\n"
          "         [--engine raft|multipaxos]\n"
          "Makes the data dir of one member of a new cluster from an etcd 3.4 snapshot file\n"
          "(etcdctl snapshot save, from etcd or synod), as etcdctl snapshot restore does for\n"
          "etcd. Run it for each member, then start each with the same cluster flags (and the\n"
          "same --engine; default raft).");
      return 0;
    }
  }
  Result<SnapshotRestoreOptions> options = ParseSnapshotRestoreFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "Error: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  Result<kv::EtcdBackupSummary> summary = RestoreSnapshot(*options);
  if (!summary.ok()) {
    std::fprintf(stderr, "Error: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  std::printf(
      "restored snapshot %s into %s: member %s (%016llx) of cluster %016llx, revision %lld, "
      "compacted %lld, %llu key revisions, %llu leases, starting at index %llu\n",
      options->snapshot_path.c_str(), options->config.data_dir.c_str(),
      options->config.name.c_str(),
      static_cast<unsigned long long>(options->config.member_id.value()),
      static_cast<unsigned long long>(options->config.cluster_id),
      static_cast<long long>(summary->revision), static_cast<long long>(summary->compact_revision),
      static_cast<unsigned long long>(summary->key_revisions),
      static_cast<unsigned long long>(summary->leases),
      static_cast<unsigned long long>(summary->applied_index.value()));
  return 0;
}

}  // namespace synod::server
