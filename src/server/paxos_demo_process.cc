// The `synod paxos` process (paxos_demo.h): the event loop that owns the Paxos core, the gRPC
// service that queues the peers' messages for it, and the calls that carry its messages out.

#include <grpcpp/grpcpp.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/assert.h"
#include "consensus/paxos/paxos.h"
#include "server/paxos_demo.h"
#include "synod/paxos_demo.grpc.pb.h"

namespace synod::server {
namespace {

using Clock = std::chrono::steady_clock;

// Events queued for the loop at most; more are dropped, which Paxos tolerates like any lost
// message ("Paxos Made Simple" 2.1: "messages ... can be lost").
constexpr size_t kInboxEventsMax = 4096;
// Calls under way to one peer at most; beyond it, messages to that peer are dropped.
constexpr size_t kPeerCallsInFlightMax = 256;
// A call to a peer is abandoned after this long (the core's timeouts retry what matters).
constexpr std::chrono::milliseconds kPeerCallDeadline{1000};
// A restarted peer is redialled within this long: gRPC's default backoff grows to two minutes,
// far beyond the demo's whole run.
constexpr int kReconnectBackoffMinMs = 100;
constexpr int kReconnectBackoffMaxMs = 1000;
// The core's phase timeout, and how often a decided process probes its peers (paxos_demo.h,
// "Hand-off"), in ticks.
constexpr uint32_t kPhaseTimeoutTicks = 10;
constexpr uint32_t kProbeIntervalTicks = 5;

// The hand-off (paxos_demo.h). A process may exit once, for every peer, it knows that the peer
// holds the decision (else the peer might need this process to learn it) and that the peer knows
// this process holds it (else the peer would wait for this process's answer after it is gone).

// A peer's data dir holds this decision: it said so in its Probe, or in its answer to ours.
struct PeerHolds {
  NodeId peer;
  std::string value;
};
// A peer knows this process holds the decision: it took our Probe, or we answered its Probe
// with the decision.
struct PeerInformed {
  NodeId peer;
};
using Event = std::variant<paxos::Message, PeerHolds, PeerInformed>;

// What the gRPC threads hand to the event loop. Threading: any thread.
class Inbox {
 public:
  // False, and the event dropped, when kInboxEventsMax events are waiting.
  bool Push(Event event) {
    absl::MutexLock lock(&mutex_);
    if (events_.size() >= kInboxEventsMax) return false;
    events_.push_back(std::move(event));
    return true;
  }

  // Waits at most `timeout` for an event, then takes every waiting one.
  std::vector<Event> Take(Clock::duration timeout) {
    absl::MutexLock lock(&mutex_);
    mutex_.AwaitWithTimeout(absl::Condition(this, &Inbox::HasEvents), absl::FromChrono(timeout));
    std::vector<Event> taken = std::move(events_);
    events_.clear();
    return taken;
  }

 private:
  bool HasEvents() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return !events_.empty(); }

  absl::Mutex mutex_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mutex_);
};

// The decision as the data dir holds it, which is what Probe answers: a peer may exit on the
// strength of it, so it is set only after the state that holds it is durable.
class DurableDecision {
 public:
  void Set(std::optional<std::string> decided) {
    absl::MutexLock lock(&mutex_);
    SYNOD_ASSERT_MSG(!decided_.has_value() || decided == decided_,
                     "the durable decision changed from {:?}", *decided_);
    decided_ = std::move(decided);
  }
  std::optional<std::string> Get() const {
    absl::MutexLock lock(&mutex_);
    return decided_;
  }

 private:
  mutable absl::Mutex mutex_;
  std::optional<std::string> decided_ ABSL_GUARDED_BY(mutex_);
};

// Serves the peers. Handlers run on gRPC threads and only queue for the loop.
class PaxosDemoService final : public synodpb::PaxosDemo::Service {
 public:
  PaxosDemoService(uint64_t group_id, NodeId self, size_t members, Inbox* inbox,
                   const DurableDecision* decision)
      : group_id_(group_id), self_(self), members_(members), inbox_(inbox), decision_(decision) {}

  grpc::Status Deliver(grpc::ServerContext*, const synodpb::PaxosMessage* request,
                       synodpb::PaxosDeliverResponse*) override {
    if (grpc::Status status = CheckGroup(request->group_id()); !status.ok()) return status;
    Result<paxos::Message> message = DecodePaxosMessage(*request);
    if (!message.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string(message.status().message()));
    }
    if (message->to != self_) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          fmt::format("message for member {}, this is member {}", message->to, self_));
    }
    if (!inbox_->Push(std::move(*message))) return InboxFull();
    return grpc::Status::OK;
  }

  grpc::Status Probe(grpc::ServerContext*, const synodpb::PaxosProbeRequest* request,
                     synodpb::PaxosProbeResponse* response) override {
    if (grpc::Status status = CheckGroup(request->group_id()); !status.ok()) return status;
    const NodeId from(request->from());
    if (from == kNoNode || from.value() > members_ || from == self_) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("probe from {}, which is not another member", from));
    }
    // A probe whose news did not reach the loop must fail: the asker counts an OK as told.
    if (!inbox_->Push(PeerHolds{from, request->value()})) return InboxFull();
    if (std::optional<std::string> decided = decision_->Get()) {
      if (!inbox_->Push(PeerInformed{from})) return InboxFull();
      response->set_decided(true);
      response->set_value(std::move(*decided));
    }
    return grpc::Status::OK;
  }

 private:
  static grpc::Status InboxFull() {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "inbox full");
  }

  grpc::Status CheckGroup(uint64_t group_id) const {
    if (group_id == group_id_) return grpc::Status::OK;
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        fmt::format("call of group {:016x}, this member is of group {:016x}", group_id, group_id_));
  }

  const uint64_t group_id_;
  const NodeId self_;
  const size_t members_;
  Inbox* const inbox_;
  const DurableDecision* const decision_;
};

// Carries the loop's messages and probes to the peers as asynchronous unary calls, so the loop
// never waits on the network. Probe answers come back through the inbox.
class PeerCalls {
 public:
  PeerCalls(const std::vector<PaxosDemoPeer>& peers, NodeId self, uint64_t group_id, Inbox* inbox)
      : self_(self), group_id_(group_id), inbox_(inbox) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kReconnectBackoffMinMs);
    arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kReconnectBackoffMinMs);
    arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kReconnectBackoffMaxMs);
    for (const PaxosDemoPeer& peer : peers) {
      const NodeId id = PaxosDemoNodeId(peers, peer.name);
      if (id == self) continue;
      stubs_[id] = synodpb::PaxosDemo::NewStub(
          grpc::CreateCustomChannel(peer.address, grpc::InsecureChannelCredentials(), arguments));
    }
  }

  // Every call ends by its deadline; the callbacks use this object, so it waits for them.
  ~PeerCalls() {
    absl::MutexLock lock(&mutex_);
    mutex_.Await(absl::Condition(this, &PeerCalls::NoneInFlight));
  }

  PeerCalls(const PeerCalls&) = delete;
  PeerCalls& operator=(const PeerCalls&) = delete;

  void Send(const paxos::Message& message) {
    auto call = std::make_unique<Call<synodpb::PaxosMessage, synodpb::PaxosDeliverResponse>>();
    call->request = EncodePaxosMessage(message, group_id_);
    Start(
        message.to, std::move(call),
        [](auto* async, auto* context, auto* request, auto* response, auto done) {
          async->Deliver(context, request, response, std::move(done));
        },
        [](const synodpb::PaxosDeliverResponse&, const grpc::Status&) {});
  }

  // Tells `peer` this process's decision and asks for its own.
  void Probe(NodeId peer, const std::string& decided) {
    auto call = std::make_unique<Call<synodpb::PaxosProbeRequest, synodpb::PaxosProbeResponse>>();
    call->request.set_group_id(group_id_);
    call->request.set_from(self_.value());
    call->request.set_value(decided);
    Start(
        peer, std::move(call),
        [](auto* async, auto* context, auto* request, auto* response, auto done) {
          async->Probe(context, request, response, std::move(done));
        },
        [this, peer](const synodpb::PaxosProbeResponse& response, const grpc::Status& status) {
          if (!status.ok()) return;  // Asked again at the next probe.
          inbox_->Push(PeerInformed{peer});
          if (response.decided()) inbox_->Push(PeerHolds{peer, response.value()});
        });
  }

 private:
  template <typename Request, typename Response>
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };

  // Starts the call on the stub of `to` (`start` names the method: gRPC's async interface
  // overloads each one, so a member pointer would be ambiguous) unless kPeerCallsInFlightMax
  // calls to it are under way; `on_done` gets the response when the call ends, on a gRPC thread.
  template <typename Request, typename Response, typename StartCall, typename OnDone>
  void Start(NodeId to, std::unique_ptr<Call<Request, Response>> call, StartCall start,
             OnDone on_done) {
    auto stub = stubs_.find(to);
    SYNOD_ASSERT_MSG(stub != stubs_.end(), "no peer {}", to);
    {
      absl::MutexLock lock(&mutex_);
      if (in_flight_[to] >= kPeerCallsInFlightMax) return;  // Dropped, as a lost message.
      ++in_flight_[to];
    }
    // gRPC takes deadlines on the system clock only; a clock jump just shortens or stretches one
    // call, which the core's own (steady) timeouts cover.
    call->context.set_deadline(std::chrono::system_clock::now() + kPeerCallDeadline);
    Call<Request, Response>* raw = call.release();
    start(stub->second->async(), &raw->context, &raw->request, &raw->response,
          std::function<void(grpc::Status)>(
              [this, to, raw, on_done = std::move(on_done)](grpc::Status status) {
                on_done(raw->response, status);
                // The call's context goes before the count drops: once it is zero the destructor
                // may take the channels down, and a context must not outlive its channel.
                delete raw;
                absl::MutexLock lock(&mutex_);
                --in_flight_[to];
              }));
  }

  bool NoneInFlight() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    for (const auto& [peer, count] : in_flight_) {
      if (count != 0) return false;
    }
    return true;
  }

  const NodeId self_;
  const uint64_t group_id_;
  Inbox* const inbox_;
  std::map<NodeId, std::unique_ptr<synodpb::PaxosDemo::Stub>>
      stubs_;  // Constant after construction.
  mutable absl::Mutex mutex_;
  std::map<NodeId, size_t> in_flight_ ABSL_GUARDED_BY(mutex_);
};

// The one line of stdout (paxos_demo.h, "Output").
void PrintOutcome(const std::optional<std::string>& decided) {
  if (decided.has_value()) {
    std::printf("chosen: %s\n", decided->c_str());
  } else {
    std::printf("not yet decided\n");
  }
  std::fflush(stdout);
}

int Query(const PaxosDemoOptions& options) {
  std::unique_ptr<storage::FileSystem> fs = storage::NewPosixFileSystem();
  if (!fs->Exists(options.data_dir)) {
    spdlog::critical("no data dir {}", options.data_dir);
    return kPaxosDemoExitError;
  }
  auto loaded = LoadPaxosDemoState(*fs, options.data_dir);
  if (!loaded.ok()) {
    spdlog::critical("{}", std::string(loaded.status().message()));
    return kPaxosDemoExitError;
  }
  const std::optional<std::string> decided =
      loaded->has_value() ? (*loaded)->state.decided : std::nullopt;
  PrintOutcome(decided);
  return decided.has_value() ? kPaxosDemoExitDecided : kPaxosDemoExitUndecided;
}

// Creates the data dir if it is missing (durably: its parent is synced) and returns the state it
// holds, refusing the data dir of another group or member.
Result<paxos::PersistentState> OpenDataDir(storage::FileSystem& fs, const PaxosDemoOptions& options,
                                           uint64_t group_id) {
  if (!fs.Exists(options.data_dir)) {
    if (Status status = fs.CreateDirectory(options.data_dir); !status.ok()) return status;
    std::string parent = std::filesystem::path(options.data_dir).parent_path().string();
    if (Status status = fs.SyncDirectory(parent.empty() ? "." : parent); !status.ok()) {
      return status;
    }
  }
  auto loaded = LoadPaxosDemoState(fs, options.data_dir);
  if (!loaded.ok()) return loaded.status();
  if (!loaded->has_value()) return paxos::PersistentState{};
  const PaxosDemoStateFile& file = **loaded;
  if (file.name != options.name) {
    return absl::FailedPreconditionError(fmt::format("{} is the data dir of member {}, not {}",
                                                     options.data_dir, file.name, options.name));
  }
  if (file.group_id != group_id) {
    return absl::FailedPreconditionError(
        fmt::format("{} is the data dir of group {:016x}, and --peers make group {:016x}",
                    options.data_dir, file.group_id, group_id));
  }
  return file.state;
}

int RunMember(const PaxosDemoOptions& options) {
  const uint64_t group_id = PaxosDemoGroupId(options.peers);
  const NodeId self = PaxosDemoNodeId(options.peers, options.name);
  std::unique_ptr<storage::FileSystem> fs = storage::NewPosixFileSystem();
  Result<paxos::PersistentState> durable = OpenDataDir(*fs, options, group_id);
  if (!durable.ok()) {
    spdlog::critical("{}", std::string(durable.status().message()));
    return kPaxosDemoExitError;
  }

  paxos::Config config;
  config.id = self;
  for (size_t i = 1; i <= options.peers.size(); ++i) config.members.push_back(NodeId(i));
  config.phase_timeout_ticks = kPhaseTimeoutTicks;
  // The process edge is where randomness may come from; the core only sees the seed, which is
  // logged so a run's backoff can be repeated.
  config.seed =
      options.seed.value_or(std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32));
  config.check_invariants = true;  // A single decision: the checks cost nothing that matters.
  auto core = paxos::Paxos::Create(config, *durable);
  if (!core.ok()) {
    spdlog::critical("{}", std::string(core.status().message()));
    return kPaxosDemoExitError;
  }
  spdlog::info("member {} ({}) of group {:016x}, {} members, seed {}, promised {}", options.name,
               self, group_id, options.peers.size(), config.seed,
               paxos::ToString(durable->promised));

  Inbox inbox;
  DurableDecision decision;
  decision.Set(durable->decided);
  PaxosDemoService service(group_id, self, options.peers.size(), &inbox, &decision);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string& address = options.peers[self.value() - 1].address;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    spdlog::critical("cannot listen on {}", address);
    return kPaxosDemoExitError;
  }

  const int exit_status = [&] {
    PeerCalls calls(options.peers, self, group_id, &inbox);
    const Clock::time_point start = Clock::now();
    const Clock::time_point give_up_at = start + options.timeout;
    Clock::time_point next_tick = start + options.tick;
    // Set once this process has printed the decision: when it exits at the latest.
    std::optional<Clock::time_point> exit_by;
    // The decision each peer's data dir is known to hold, and the peers known to know ours.
    std::map<NodeId, std::string> peer_decisions;
    std::set<NodeId> peers_informed;
    uint32_t ticks_since_probe = 0;

    if (durable->decided.has_value()) {
      PrintOutcome(durable->decided);
      exit_by = start + options.linger;
    } else if (options.propose.has_value()) {
      // A restarted proposer proposes again: its earlier proposal may have died with it.
      Status proposed = (*core)->Propose(*options.propose);
      SYNOD_ASSERT_MSG(proposed.ok(), "{}", std::string(proposed.message()));
    }

    while (true) {
      const Clock::time_point now = Clock::now();
      if (exit_by.has_value()) {
        for (const auto& [peer, value] : peer_decisions) {
          // Two different decisions break the one property Paxos promises (2.1: "only a single
          // value is chosen"); nothing after that can be trusted.
          SYNOD_ASSERT_MSG(value == *(*core)->Query(),
                           "safety violation: member {} holds {:?}, this member {:?}", peer, value,
                           *(*core)->Query());
        }
        if (peer_decisions.size() + 1 == options.peers.size() &&
            peers_informed.size() + 1 == options.peers.size()) {
          spdlog::info("every peer holds the decision and knows this member does");
          return kPaxosDemoExitDecided;
        }
        if (now >= *exit_by) {
          spdlog::warn(
              "--linger has passed; of {} peers, {} are known to hold the decision and {} to know "
              "this member does",
              options.peers.size() - 1, peer_decisions.size(), peers_informed.size());
          return kPaxosDemoExitDecided;
        }
      } else if (now >= give_up_at) {
        PrintOutcome(std::nullopt);
        return kPaxosDemoExitUndecided;
      }

      for (Event& event : inbox.Take(next_tick - now)) {
        if (auto* message = std::get_if<paxos::Message>(&event)) {
          const std::string described = paxos::ToString(*message);
          if (Status status = (*core)->Step(std::move(*message)); !status.ok()) {
            spdlog::warn("dropped {}: {}", described, std::string(status.message()));
          }
          continue;
        }
        if (auto* holds = std::get_if<PeerHolds>(&event)) {
          peer_decisions[holds->peer] = std::move(holds->value);
        } else {
          peers_informed.insert(std::get<PeerInformed>(event).peer);
        }
      }

      if (Clock::now() >= next_tick) {
        (*core)->Tick();
        // After a stall (a slow fsync, a paused process) ticks resume from now instead of
        // catching up: the core counts ticks, and a burst of them would only fire its timeouts
        // at once.
        next_tick += options.tick;
        if (next_tick <= Clock::now()) next_tick = Clock::now() + options.tick;
        if (exit_by.has_value() && ++ticks_since_probe >= kProbeIntervalTicks) {
          ticks_since_probe = 0;
          for (size_t i = 1; i <= options.peers.size(); ++i) {
            const NodeId peer(i);
            if (peer != self &&
                (!peer_decisions.contains(peer) || !peers_informed.contains(peer))) {
              calls.Probe(peer, *(*core)->Query());
            }
          }
        }
      }

      // The Ready contract (consensus/paxos/types.h): persist, then send, then report, then
      // Advance.
      while ((*core)->HasReady()) {
        paxos::Ready ready = (*core)->TakeReady();
        if (ready.state.has_value()) {
          Status saved = SavePaxosDemoState(
              *fs, options.data_dir, PaxosDemoStateFile{group_id, options.name, *ready.state});
          if (!saved.ok()) {
            // After a failed fsync the disk's contents are unknown; sending anything that
            // depends on them could break a promise.
            spdlog::critical("cannot persist the acceptor state: {}", std::string(saved.message()));
            return kPaxosDemoExitError;
          }
          decision.Set(ready.state->decided);
        }
        for (const paxos::Message& message : ready.messages) calls.Send(message);
        if (ready.decided.has_value()) {
          PrintOutcome(ready.decided);
          exit_by = Clock::now() + options.linger;
        }
        (*core)->Advance();
      }
    }
  }();
  // No handler may run once the loop's objects are gone; they are all still alive here except
  // the calls, which handlers do not use.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return exit_status;
}

}  // namespace

int RunPaxosDemo(int argc, const char* const* argv) {
  // stdout carries only the outcome line; the logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("synod-paxos"));
  auto options = ParsePaxosDemoFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "synod paxos: %s\n", std::string(options.status().message()).c_str());
    return kPaxosDemoExitUsage;
  }
  if (options->print_and_exit.has_value()) {
    std::fputs(options->print_and_exit->c_str(), stdout);
    return kPaxosDemoExitDecided;
  }
  spdlog::set_level(spdlog::level::from_str(options->log_level));
  spdlog::set_pattern(fmt::format("%H:%M:%S.%e {} %l: %v", options->name));
  return options->query ? Query(*options) : RunMember(*options);
}

}  // namespace synod::server
