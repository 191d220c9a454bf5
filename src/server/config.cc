#include "server/config.h"

#include <openssl/sha.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace synod::server {

std::string Url::ToString() const { return fmt::format("{}://{}:{}", scheme, host, port); }

std::string Url::HostPort() const {
  return fmt::format("{}:{}", host == "localhost" ? "127.0.0.1" : host, port);
}

Result<Url> ParseUrl(std::string_view text) {
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return absl::InvalidArgumentError(fmt::format("URL {:?} has no scheme (want http://host:port)",
                                                  std::string(text)));
  }
  Url url;
  url.scheme = std::string(text.substr(0, scheme_end));
  if (url.scheme == "https" || url.scheme == "unixs") {
    return absl::InvalidArgumentError(
        fmt::format("URL {:?}: TLS is not supported", std::string(text)));
  }
  if (url.scheme != "http") {
    return absl::InvalidArgumentError(
        fmt::format("URL {:?}: scheme must be http", std::string(text)));
  }
  std::string_view rest = text.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  uint32_t port = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(rest.substr(colon + 1).data(), rest.size() - colon - 1), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("URL {:?} must be http://host:port with a port in 1..65535",
                    std::string(text)));
  }
  url.host = std::string(rest.substr(0, colon));
  url.port = static_cast<uint16_t>(port);
  return url;
}

namespace {

Result<std::vector<Url>> ParseUrlList(const std::string& flag, const std::string& text) {
  std::vector<Url> urls;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    auto url = ParseUrl(std::string_view(part.data(), part.size()));
    if (!url.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("invalid value {:?} for flag --{}: {}", text, flag, std::string(url.status().message())));
    }
    urls.push_back(*url);
  }
  if (urls.empty()) {
    return absl::InvalidArgumentError(fmt::format("flag --{} needs at least one URL", flag));
  }
  return urls;
}

// The first 8 bytes of a SHA-1, big-endian, as etcd derives member and cluster ids.
uint64_t Sha1Prefix(std::string_view bytes) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | digest[i];
  return value;
}

// etcd membership.NewMember: sha1(sorted peer URLs joined, then the cluster token).
NodeId MemberId(const InitialMember& member, const std::string& token) {
  std::vector<std::string> urls;
  for (const Url& url : member.peer_urls) urls.push_back(url.ToString());
  std::sort(urls.begin(), urls.end());
  const uint64_t id = Sha1Prefix(absl::StrJoin(urls, "") + token);
  return NodeId(id == 0 ? 1 : id);  // 0 means "no node".
}

}  // namespace

Status ValidateAndDerive(ServerConfig& config) {
  if (config.heartbeat_interval_ms == 0) {
    return absl::InvalidArgumentError("--heartbeat-interval must be positive");
  }
  if (config.election_timeout_ms < 5 * config.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(fmt::format(
        "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
        config.election_timeout_ms, config.heartbeat_interval_ms));
  }
  constexpr uint32_t kElectionTimeoutMax_ms = 50000;
  if (config.election_timeout_ms > kElectionTimeoutMax_ms) {
    return absl::InvalidArgumentError(fmt::format(
        "--election-timeout[{}ms] is too long, and should be set less than {}ms",
        config.election_timeout_ms, kElectionTimeoutMax_ms));
  }
  if (config.snapshot_count == 0) {
    return absl::InvalidArgumentError("--snapshot-count must be positive");
  }
  if (config.max_request_bytes == 0) {
    return absl::InvalidArgumentError("--max-request-bytes must be positive");
  }
  static const std::set<std::string> kLogLevels = {"debug", "info", "warn", "error", "panic",
                                                   "fatal"};
  if (!kLogLevels.contains(config.log_level)) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid value {:?} for flag --log-level: want debug, info, warn, error, panic or fatal",
        config.log_level));
  }
  if (config.data_dir.empty()) config.data_dir = config.name + ".synod";

  std::set<std::string> names;
  std::set<std::string> peer_urls;
  for (const InitialMember& member : config.initial_cluster) {
    if (!names.insert(member.name).second) {
      return absl::InvalidArgumentError(
          fmt::format("--initial-cluster names member {:?} twice", member.name));
    }
    for (const Url& url : member.peer_urls) {
      if (!peer_urls.insert(url.ToString()).second) {
        return absl::InvalidArgumentError(
            fmt::format("--initial-cluster has duplicate url {}", url.ToString()));
      }
    }
  }
  auto self = std::find_if(config.initial_cluster.begin(), config.initial_cluster.end(),
                           [&](const InitialMember& m) { return m.name == config.name; });
  if (self == config.initial_cluster.end()) {
    return absl::InvalidArgumentError(fmt::format(
        "couldn't find local name {:?} in the initial cluster configuration", config.name));
  }
  auto sorted_strings = [](const std::vector<Url>& urls) {
    std::vector<std::string> strings;
    for (const Url& url : urls) strings.push_back(url.ToString());
    std::sort(strings.begin(), strings.end());
    return strings;
  };
  if (sorted_strings(self->peer_urls) != sorted_strings(config.initial_advertise_peer_urls)) {
    return absl::InvalidArgumentError(fmt::format(
        "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
        self->name, absl::StrJoin(sorted_strings(self->peer_urls), ","),
        absl::StrJoin(sorted_strings(config.initial_advertise_peer_urls), ",")));
  }

  config.initial_member_ids.clear();
  std::vector<uint64_t> ids;
  for (const InitialMember& member : config.initial_cluster) {
    const NodeId id = MemberId(member, config.initial_cluster_token);
    if (std::find(ids.begin(), ids.end(), id.value()) != ids.end()) {
      return absl::InvalidArgumentError("--initial-cluster: two members hash to the same id");
    }
    ids.push_back(id.value());
    config.initial_member_ids.emplace_back(id, member);
    if (member.name == config.name) config.member_id = id;
  }
  // etcd's genID: sha1 over the sorted member ids, 8 bytes big-endian each.
  std::sort(ids.begin(), ids.end());
  std::string bytes;
  for (uint64_t id : ids) {
    for (int shift = 56; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>(id >> shift));
  }
  config.cluster_id = Sha1Prefix(bytes);
  return absl::OkStatus();
}

Result<ServerConfig> ParseFlags(int argc, const char* const* argv) {
  // Go's flag package, which etcd uses, accepts "-name value" as well as "--name value"; CLI11
  // reads a single dash as a cluster of short options, so long single-dash flags are rewritten.
  std::vector<std::string> arguments;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument.size() > 2 && argument[0] == '-' && argument[1] != '-') argument.insert(0, "-");
    arguments.push_back(std::move(argument));
  }
  std::reverse(arguments.begin(), arguments.end());  // CLI11's vector form expects this order.

  ServerConfig config;
  std::string listen_client = "http://localhost:2379";
  std::string advertise_client = "http://localhost:2379";
  std::string listen_peer = "http://localhost:2380";
  std::string advertise_peer = "http://localhost:2380";
  std::string initial_cluster;
  std::string cluster_state = "new";
  std::string logger;
  std::string progress_notify_interval = "10m";
  std::string auto_compaction_mode = "periodic";
  std::string auto_compaction_retention = "0";
  bool enable_v2 = false;
  std::string engine = "raft";
  bool debug = false;
  bool help = false;
  bool version = false;

  CLI::App app{"synod: a member of a Synod cluster, serving etcd's v3 API", "synod"};
  app.footer(
      "Also: synod snapshot restore FILE [flags]   make a member's data dir from an etcd "
      "snapshot file\n(etcdctl snapshot restore's flags; `synod snapshot restore --help` lists "
      "them)\nAlso: synod paxos --name N --data-dir D --peers n1=host:port,... --propose V   decide "
      "one value among processes with Paxos (`synod paxos --help`)");
  app.set_help_flag();
  app.allow_windows_style_options(false);
  // Go's flag package lets a later occurrence of a flag replace an earlier one, and scripts that
  // start etcd rely on that (a default list of flags, then the caller's overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--help,-h", help, "print this help and exit");
  app.add_flag("--version", version, "print the version and exit");
  app.add_option("--name", config.name, "human-readable name for this member")->default_str("default");
  app.add_option("--data-dir", config.data_dir, "path to the data directory (default <name>.synod)");
  app.add_option("--listen-client-urls", listen_client, "URLs to listen on for client traffic");
  app.add_option("--advertise-client-urls", advertise_client, "client URLs to advertise");
  app.add_option("--listen-peer-urls", listen_peer, "URLs to listen on for peer traffic");
  app.add_option("--initial-advertise-peer-urls", advertise_peer, "peer URLs to advertise");
  app.add_option("--initial-cluster", initial_cluster,
                 "initial cluster configuration, name=peer-url,... (default <name>=<advertise peer urls>)");
  app.add_option("--initial-cluster-state", cluster_state, "new or existing");
  app.add_option("--initial-cluster-token", config.initial_cluster_token,
                 "initial cluster token, mixed into the member and cluster ids");
  app.add_option("--heartbeat-interval", config.heartbeat_interval_ms,
                 "time (in milliseconds) of a heartbeat interval");
  app.add_option("--election-timeout", config.election_timeout_ms,
                 "time (in milliseconds) for an election to timeout");
  app.add_flag("--initial-election-tick-advance", config.initial_election_tick_advance,
               "fast-forward the election clock at boot, once enough peers are reachable "
               "(default true; --initial-election-tick-advance=false turns it off)");
  app.add_option("--snapshot-count", config.snapshot_count,
                 "number of applied entries between snapshots");
  app.add_option("--experimental-snapshot-catchup-entries", config.snapshot_catchup_entries,
                 "entries kept after a snapshot for slow followers to catch up from "
                 "(at least 8192 on the multipaxos engine)");
  app.add_option("--quota-backend-bytes", config.quota_backend_bytes,
                 "raise an alarm when the backend size exceeds this (0: default, negative: no quota)");
  app.add_option("--max-request-bytes", config.max_request_bytes,
                 "maximum client request size in bytes the server will accept");
  app.add_option("--experimental-watch-progress-notify-interval", progress_notify_interval,
                 "duration of periodic watch progress notifications (a Go duration)");
  app.add_option("--auto-compaction-mode", auto_compaction_mode,
                 "interpret --auto-compaction-retention as 'periodic' (a duration, or hours when "
                 "a bare number) or 'revision' (a number of revisions)");
  app.add_option("--auto-compaction-retention", auto_compaction_retention,
                 "history to keep when compacting automatically (0: off)");
  app.add_option("--log-level", config.log_level, "debug, info, warn, error, panic or fatal");
  app.add_option("--logger", logger, "accepted for etcd compatibility (zap or capnslog)");
  app.add_flag("--enable-v2", enable_v2, "accepted for etcd compatibility; must be false");
  app.add_flag("--debug", debug, "same as --log-level=debug");
  app.add_option("--engine", engine,
                 "consensus engine, raft or multipaxos; fixed when the data dir is created")
      ->default_str("raft");
  try {
    app.parse(arguments);
  } catch (const CLI::ParseError& error) {
    return absl::InvalidArgumentError(error.what());
  }
  if (help) {
    config.print_and_exit = app.help();
    return config;
  }
  if (version) {
    config.print_and_exit = fmt::format("synod (etcd API version {})\n", kEtcdCompatibleVersion);
    return config;
  }
  if (enable_v2) return absl::InvalidArgumentError("--enable-v2: the v2 API is not served");
  if (auto kind = ParseEngineKind(engine); kind.ok()) {
    config.engine = *kind;
  } else {
    return absl::InvalidArgumentError(
        fmt::format("--engine: {}", std::string(kind.status().message())));
  }
  if (!logger.empty() && logger != "zap" && logger != "capnslog") {
    return absl::InvalidArgumentError(
        fmt::format("invalid value {:?} for flag --logger: want zap or capnslog", logger));
  }
  if (debug) config.log_level = "debug";
  // Go's time.ParseDuration syntax, which absl::ParseDuration shares.
  absl::Duration progress_interval;
  if (!absl::ParseDuration(progress_notify_interval, &progress_interval) ||
      progress_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid value {:?} for flag --experimental-watch-progress-notify-interval: want a "
        "positive duration such as 10m or 500ms",
        progress_notify_interval));
  }
  config.watch_progress_notify_interval =
      std::chrono::milliseconds(absl::ToInt64Milliseconds(progress_interval));
  Result<std::optional<AutoCompactionPolicy>> auto_compaction =
      ParseAutoCompaction(auto_compaction_mode, auto_compaction_retention);
  if (!auto_compaction.ok()) return auto_compaction.status();
  config.auto_compaction = *auto_compaction;

  struct UrlFlag {
    const char* name;
    const std::string* text;
    std::vector<Url>* urls;
  };
  for (const UrlFlag& flag :
       {UrlFlag{"listen-client-urls", &listen_client, &config.listen_client_urls},
        UrlFlag{"advertise-client-urls", &advertise_client, &config.advertise_client_urls},
        UrlFlag{"listen-peer-urls", &listen_peer, &config.listen_peer_urls},
        UrlFlag{"initial-advertise-peer-urls", &advertise_peer,
                &config.initial_advertise_peer_urls}}) {
    auto urls = ParseUrlList(flag.name, *flag.text);
    if (!urls.ok()) return urls.status();
    *flag.urls = std::move(*urls);
  }
  if (initial_cluster.empty()) {
    std::vector<std::string> parts;
    for (const Url& url : config.initial_advertise_peer_urls) {
      parts.push_back(config.name + "=" + url.ToString());
    }
    initial_cluster = absl::StrJoin(parts, ",");
  }
  // "name=url,name=url": a member with several peer URLs appears once per URL, as in etcd.
  for (absl::string_view split : absl::StrSplit(initial_cluster, ',', absl::SkipWhitespace())) {
    const std::string_view part(split.data(), split.size());
    const size_t equals = part.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return absl::InvalidArgumentError(fmt::format(
          "invalid value {:?} for flag --initial-cluster: want name=url,...", initial_cluster));
    }
    auto url = ParseUrl(part.substr(equals + 1));
    if (!url.ok()) {
      return absl::InvalidArgumentError(fmt::format(
          "invalid value {:?} for flag --initial-cluster: {}", initial_cluster,
          std::string(url.status().message())));
    }
    const std::string name(part.substr(0, equals));
    auto member = std::find_if(config.initial_cluster.begin(), config.initial_cluster.end(),
                               [&](const InitialMember& m) { return m.name == name; });
    if (member == config.initial_cluster.end()) {
      config.initial_cluster.push_back(InitialMember{name, {}});
      member = config.initial_cluster.end() - 1;
    }
    member->peer_urls.push_back(*url);
  }
  if (cluster_state == "new") {
    config.initial_cluster_state = ServerConfig::ClusterState::kNew;
  } else if (cluster_state == "existing") {
    config.initial_cluster_state = ServerConfig::ClusterState::kExisting;
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "invalid value {:?} for flag --initial-cluster-state: want new or existing",
        cluster_state));
  }
  if (Status status = ValidateAndDerive(config); !status.ok()) return status;
  return config;
}

}  // namespace synod::server
