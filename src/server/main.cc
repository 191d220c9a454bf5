// synod: one member of a Synod cluster, serving etcd's v3 gRPC API. A command line that starts an
// etcd 3.4 member starts a synod member (server/config.h lists the flags); with no flags it
// starts a one-member cluster on 127.0.0.1:2379 with its data in ./default.synod.
// `synod snapshot restore FILE ...` makes a member's data dir from an etcd snapshot file
// (server/snapshot_restore.h). `synod paxos ...` decides one value among processes with
// single-decree Paxos (server/paxos_demo.h).

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "base/stop_signals.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "server/members.h"
#include "server/node.h"
#include "server/paxos_demo.h"
#include "server/recipes.h"
#include "server/services.h"
#include "server/snapshot_restore.h"
#include "server/watch_service.h"
#include "server/transport.h"

namespace synod::server {
namespace {

// gRPC framing on top of the largest request (etcd's grpcOverheadBytes).
constexpr int kGrpcOverheadBytes = 512 * 1024;

std::vector<std::string> UrlStrings(const std::vector<Url>& urls) {
  std::vector<std::string> strings;
  for (const Url& url : urls) strings.push_back(url.ToString());
  return strings;
}

// How long a joining member waits for each peer to tell it about the cluster.
constexpr std::chrono::seconds kFetchMembersTimeoutPerPeer{2};

// --initial-cluster-state existing (server/members.h): the ids come from the running cluster,
// not from the flags, because etcdctl member add drew this member's id. A member that has
// joined before finds them in its data dir. Fills `config`'s ids and what the node starts from.
Status ResolveExistingCluster(ServerConfig& config, NodeOptions& options) {
  options.joining = true;
  auto stored = ReadDataDirIdentity(config.data_dir);
  if (!stored.ok()) return stored.status();
  std::vector<std::string> others;
  std::vector<InitialClusterMember> initial_cluster;
  for (const InitialMember& member : config.initial_cluster) {
    initial_cluster.push_back({member.name, UrlStrings(member.peer_urls)});
    if (member.name == config.name) continue;
    for (const std::string& url : UrlStrings(member.peer_urls)) others.push_back(url);
  }
  auto fetched = FetchClusterMembers(others, kFetchMembersTimeoutPerPeer);
  if (stored->has_value()) {
    // A restart: the data dir says who we are (OpenDataDir checks the name). What the cluster
    // says, if it answers, only helps to reach it until the store's records are loaded.
    config.member_id = (*stored)->member_id;
    config.cluster_id = (*stored)->cluster_id;
    if (fetched.ok() && fetched->cluster_id() == config.cluster_id) {
      options.initial_members = fetched->members();
    }
    return absl::OkStatus();
  }
  if (!fetched.ok()) return fetched.status();
  auto id = FindJoiningMember(fetched->members(), initial_cluster,
                              UrlStrings(config.initial_advertise_peer_urls));
  if (!id.ok()) return id.status();
  config.member_id = *id;
  config.cluster_id = fetched->cluster_id();
  options.initial_members = fetched->members();
  spdlog::info("joining cluster {:x} as member {:x}", config.cluster_id, config.member_id.value());
  return absl::OkStatus();
}

// A removed member stops, as etcd does, after a pause that lets its last messages (the
// TimeoutNow of a removed leader) leave. SIGTERM ends Serve's wait; the exit status is 0.
void StopRemovedMember() {
  static std::atomic<bool> stopping = false;
  if (stopping.exchange(true)) return;
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    ::kill(::getpid(), SIGTERM);
  }).detach();
}

int Serve(ServerConfig config) {
#ifdef SYNOD_BROKEN_FORGETS_DATA
  // Deliberately broken build (tests/CMakeLists.txt): every start begins with no data.
  std::filesystem::remove_all(config.data_dir);
#endif
  NodeOptions options;
  if (config.initial_cluster_state == ServerConfig::ClusterState::kExisting) {
    if (Status status = ResolveExistingCluster(config, options); !status.ok()) {
      spdlog::critical("cannot join the cluster: {}", std::string(status.message()));
      return 1;
    }
  }
  auto data_dir = OpenDataDir(config);
  if (!data_dir.ok()) {
    spdlog::critical("{}", std::string(data_dir.status().message()));
    return 1;
  }

  // The transport starts before the node so that the node can be given it; messages that
  // arrive before the node exists are dropped (Raft retransmits).
  std::atomic<Node*> node_for_peers = nullptr;
  PeerHandlers handlers;
  handlers.on_raft_message = [&](raft::Message message) {
    if (Node* node = node_for_peers.load()) node->OnPeerMessage(std::move(message));
  };
  if (data_dir->engine == EngineKind::kMultiPaxos) {
    handlers.on_multipaxos_message = [&](PeerMessage message) {
      if (Node* node = node_for_peers.load()) node->OnPeerMessage(std::move(message));
    };
  }
  handlers.on_forwarded_proposal = [&](NodeId, std::string request) {
    if (Node* node = node_for_peers.load()) node->OnForwardedProposal(std::move(request));
  };
  handlers.on_fetch_snapshot = [&](Index min_applied_index)
      -> Result<std::function<Result<std::optional<std::string>>()>> {
    Node* node = node_for_peers.load();
    if (node == nullptr) return ServerStoppedError();
    return node->OpenSnapshotSource(min_applied_index);
  };
  handlers.on_change_members = [&](const synodpb::MemberChangeRequest& request,
                                   synodpb::MemberChangeResponse* response) {
    Node* node = node_for_peers.load();
    if (node == nullptr) return ToGrpc(ServerStoppedError());
    Result<Index> index = node->ChangeMembersAsLeader(request);
    if (!index.ok()) return ToGrpc(index.status());
    response->set_index(index->value());
    return grpc::Status::OK;
  };
  handlers.on_members = [&](synodpb::MembersResponse* response) {
    Node* node = node_for_peers.load();
    if (node == nullptr) return ToGrpc(ServerStoppedError());
    response->set_cluster_id(node->cluster_id());
    *response->mutable_members() = node->NewestMembers();
    return grpc::Status::OK;
  };
  handlers.is_removed_member = [&](NodeId id) {
    Node* node = node_for_peers.load();
    return node != nullptr && node->IsRemovedMember(id);
  };
  handlers.on_removed = [] { StopRemovedMember(); };
  std::atomic<LeaseService*> lease_service_for_peers = nullptr;
  handlers.on_lease_renew = [&](const etcdserverpb::LeaseKeepAliveRequest& request,
                                etcdserverpb::LeaseKeepAliveResponse* response) {
    LeaseService* service = lease_service_for_peers.load();
    if (service == nullptr) return ToGrpc(ServerStoppedError());
    return service->RenewOnLeader(request, response);
  };
  handlers.on_lease_time_to_live = [&](const etcdserverpb::LeaseTimeToLiveRequest& request,
                                       etcdserverpb::LeaseTimeToLiveResponse* response) {
    LeaseService* service = lease_service_for_peers.load();
    if (service == nullptr) return ToGrpc(ServerStoppedError());
    return service->TimeToLiveOnLeader(request, response);
  };

  TransportOptions transport_options;
  transport_options.self = config.member_id;
  transport_options.cluster_id = config.cluster_id;
  transport_options.listen_urls = UrlStrings(config.listen_peer_urls);
  auto transport = Transport::Start(transport_options, handlers);
  if (!transport.ok()) {
    spdlog::critical("{}", std::string(transport.status().message()));
    return 1;
  }

  options.id = config.member_id;
  options.cluster_id = config.cluster_id;
  options.wal_dir = data_dir->wal_dir;
  options.kv_dir = data_dir->kv_dir;
  options.engine = data_dir->engine;
  options.tick_ms = config.heartbeat_interval_ms;
  options.initial_election_tick_advance = config.initial_election_tick_advance;
  options.election_timeout_ticks = config.election_timeout_ms / config.heartbeat_interval_ms;
  options.snapshot_count = config.snapshot_count;
  options.auto_compaction = config.auto_compaction;
  options.snapshot_catchup_entries = config.snapshot_catchup_entries;
  options.request_timeout = std::chrono::milliseconds(5000 + 2 * config.election_timeout_ms);
  ServiceOptions service_options;
  service_options.max_request_bytes = config.max_request_bytes;
  service_options.data_dir = config.data_dir;
  if (config.quota_backend_bytes != 0) {
    service_options.quota_backend_bytes = config.quota_backend_bytes;
  }
  service_options.member_id_seed =
      config.member_id.value() ^
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  // Member records (server/members.h): a new cluster's come from --initial-cluster; the node
  // gives the transport its peers from them.
  options.name = config.name;
  options.client_urls = UrlStrings(config.advertise_client_urls);
  options.on_removed = [] { StopRemovedMember(); };
  if (!options.joining) {
    std::vector<synodpb::MemberRecord> initial;
    for (const auto& [id, member] : config.initial_member_ids) {
      options.initial_membership.voters.push_back(id);
      synodpb::MemberRecord& record = initial.emplace_back();
      record.set_id(id.value());
      record.set_name(member.name);
      for (const std::string& url : UrlStrings(member.peer_urls)) record.add_peer_urls(url);
    }
    options.initial_members = InitialClusterMembers(std::move(initial));
  }
  std::sort(options.initial_membership.voters.begin(), options.initial_membership.voters.end());

  auto node = Node::Open(options, transport->get());
  if (!node.ok()) {
    spdlog::critical("{}", std::string(node.status().message()));
    return 1;
  }
  node_for_peers = node->get();
  StoreSize store_size(data_dir->kv_dir, [node = node->get()] {
    return node->ReadStore([](const kv::Store& store) { return store.unflushed_bytes(); });
  });
  service_options.store_size = &store_size;

  KvService kv_service(node->get(), service_options);
  MaintenanceService maintenance_service(node->get(), service_options);
  ClusterService cluster_service(node->get(), service_options);
  LeaseService lease_service(node->get(), service_options);
  WatchServiceOptions watch_options;
  watch_options.max_request_bytes = config.max_request_bytes;
  watch_options.progress_notify_interval = config.watch_progress_notify_interval;
  WatchService watch_service(node->get(), watch_options);
  LocalClient local_client(node->get(), &kv_service, &lease_service);
  LockService lock_service(&local_client);
  ElectionService election_service(&local_client);
  lease_service_for_peers = &lease_service;
  grpc::ServerBuilder builder;
  std::vector<int> bound_ports(config.listen_client_urls.size(), 0);
  for (size_t i = 0; i < config.listen_client_urls.size(); ++i) {
    builder.AddListeningPort(config.listen_client_urls[i].HostPort(),
                             grpc::InsecureServerCredentials(), &bound_ports[i]);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes) + kGrpcOverheadBytes);
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  builder.RegisterService(&kv_service);
  builder.RegisterService(&maintenance_service);
  builder.RegisterService(&cluster_service);
  builder.RegisterService(&lease_service);
  builder.RegisterService(&watch_service);
  builder.RegisterService(&lock_service);
  builder.RegisterService(&election_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  for (size_t i = 0; i < bound_ports.size(); ++i) {
    if (server == nullptr || bound_ports[i] == 0) {
      spdlog::critical("cannot listen for clients on {}",
                       config.listen_client_urls[i].ToString());
      return 1;
    }
  }
  (*node)->Start();
  spdlog::info("member {:x} of cluster {:x} serving clients on {}", config.member_id.value(),
               config.cluster_id, fmt::join(UrlStrings(config.listen_client_urls), ","));

  // Runs until SIGINT or SIGTERM (blocked in every thread, taken here).
  const int signal_number = base::WaitForStopSignal();
  spdlog::info("received signal {}, stopping", signal_number);
  // Order: no client and no peer handler may still run when the node goes; the node's
  // snapshot fetch may still use the transport's sending side until the node is gone.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  (*transport)->StopServing();
  node_for_peers = nullptr;
  lease_service_for_peers = nullptr;
  node->reset();
  transport->reset();
  return 0;
}

}  // namespace
}  // namespace synod::server

int main(int argc, char** argv) {
  // `synod paxos ...`: before the signals are blocked, since the demo keeps SIGTERM's default
  // action: its state is durable at every step, so being stopped at any moment is safe.
  if (argc >= 2 && std::string_view(argv[1]) == "paxos") {
    return synod::server::RunPaxosDemo(argc - 2, argv + 2);
  }
  // Block the stop signals before any thread starts, so only Serve's wait takes them.
  synod::base::BlockStopSignals();
  // Debian builds Abseil without NDEBUG, which turns on absl::Mutex's deadlock detection: every
  // lock (gRPC's own mutexes are absl::Mutex too) records lock-order edges in a global graph,
  // about 2.5% of the member's CPU under load. A production build of Abseil does not; the unit
  // tests, which do not run this, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // `synod snapshot restore FILE ...`: etcdctl's restore, making a synod data dir.
  if (argc >= 3 && std::string_view(argv[1]) == "snapshot" &&
      std::string_view(argv[2]) == "restore") {
    return synod::server::RunSnapshotRestore(argc - 3, argv + 3);
  }
  auto config = synod::server::ParseFlags(argc, argv);
  if (!config.ok()) {
    std::fprintf(stderr, "synod: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (config->print_and_exit) {
    std::fputs(config->print_and_exit->c_str(), stdout);
    return 0;
  }
  // etcd's panic and fatal levels log only the worst messages; spdlog calls that critical.
  const bool critical_only = config->log_level == "panic" || config->log_level == "fatal";
  spdlog::set_level(critical_only ? spdlog::level::critical
                                  : spdlog::level::from_str(config->log_level));
  return synod::server::Serve(*config);
}
