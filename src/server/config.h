#pragma once

// The synod member's configuration, from command-line flags named and defaulted as etcd 3.4's
// (embed/config.go), so that a command line that starts an etcd member starts a synod member.
// With no flags: a one-member cluster named "default", clients on 127.0.0.1:2379, peers on
// 127.0.0.1:2380, data in ./default.synod.
//
// Invalid configuration is rejected with a message naming the flag; nothing is adjusted
// silently and nothing on disk is touched (TigerBeetle's rule, STYLE.md).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "server/auto_compactor.h"
#include "server/engine_kind.h"

namespace synod::server {

// The etcd version synod answers as (Maintenance.Status); etcdctl and client libraries check
// the major and minor.
inline constexpr const char* kEtcdCompatibleVersion = "3.4.23";

struct Url {
  std::string scheme = "http";
  std::string host;
  uint16_t port = 0;

  std::string ToString() const;  // "http://127.0.0.1:2379"
  // "127.0.0.1:2379", the form gRPC listens on and dials; "localhost" becomes 127.0.0.1.
  std::string HostPort() const;
  bool operator==(const Url&) const = default;
};

// Parses "http://host:port". Only plain http: TLS is not supported yet.
Result<Url> ParseUrl(std::string_view text);

struct InitialMember {
  std::string name;
  std::vector<Url> peer_urls;
};

struct ServerConfig {
  enum class ClusterState { kNew, kExisting };

  std::string name = "default";
  std::string data_dir;  // Default "<name>.synod" (etcd: "<name>.etcd").
  std::vector<Url> listen_client_urls;
  std::vector<Url> advertise_client_urls;
  std::vector<Url> listen_peer_urls;
  std::vector<Url> initial_advertise_peer_urls;
  std::vector<InitialMember> initial_cluster;
  ClusterState initial_cluster_state = ClusterState::kNew;
  std::string initial_cluster_token = "etcd-cluster";
  uint32_t heartbeat_interval_ms = 100;
  uint32_t election_timeout_ms = 1000;
  bool initial_election_tick_advance = true;
  uint64_t snapshot_count = 100000;
  // Entries kept behind a snapshot for followers that lag a little (etcd 3.5's
  // --experimental-snapshot-catchup-entries); a follower further behind gets a snapshot.
  uint64_t snapshot_catchup_entries = 5000;
  int64_t quota_backend_bytes = 0;  // 0: etcd's default of 2 GiB; negative: no quota.
  uint32_t max_request_bytes = 1572864;
  // etcd --experimental-watch-progress-notify-interval (a Go duration such as "10m" or "1.5s").
  std::chrono::milliseconds watch_progress_notify_interval{std::chrono::minutes(10)};
  // etcd --auto-compaction-mode and --auto-compaction-retention, parsed (nullopt: off, etcd's
  // default).
  std::optional<AutoCompactionPolicy> auto_compaction;
  std::string log_level = "info";
  // --engine (synod's own flag): the consensus engine of a new data dir; an existing data dir
  // must have been created with the same one (server/data_dir.h).
  EngineKind engine = EngineKind::kRaft;

  // Derived from the above (etcd's scheme: a member's id hashes its peer URLs and the cluster
  // token; the cluster's id hashes the member ids), so every member computes the same ids.
  NodeId member_id;
  uint64_t cluster_id = 0;
  // Every initial member with its id, in --initial-cluster order.
  std::vector<std::pair<NodeId, InitialMember>> initial_member_ids;

  // Set for --help and --version: print this and exit successfully without starting.
  std::optional<std::string> print_and_exit;
};

// Parses etcd-style flags: "--flag value", "--flag=value", and Go's single-dash "-flag value".
// InvalidArgument with a message naming the flag for anything invalid or unknown.
Result<ServerConfig> ParseFlags(int argc, const char* const* argv);

// Checks the rules etcd checks (embed/config.go Validate, etcdmain/config.go) and fills in the
// derived fields. ParseFlags calls it.
Status ValidateAndDerive(ServerConfig& config);

}  // namespace synod::server
