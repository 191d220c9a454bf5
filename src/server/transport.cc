#include "server/transport.h"

#include <fmt/format.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "base/assert.h"
#include "base/thread_name.h"
#include "server/multipaxos_codec.h"
#include "server/raft_codec.h"
#include "synod/peer.grpc.pb.h"

namespace synod::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Call metadata (peer.proto): lowercase hex, as etcd prints member and cluster ids.
constexpr char kClusterIdKey[] = "synod-cluster-id";
constexpr char kFromKey[] = "synod-from";
constexpr char kToKey[] = "synod-to";

// HTTP/2 keepalive on peer connections, both ways. Without it a peer that vanishes without a
// FIN or RST (power loss, partition) leaves the stream looking open until TCP gives up after
// many minutes, and the sender's writes pile into a dead socket. Raft's own heartbeats do not
// help: they are writes, and writes into a dead socket succeed until its buffer fills.
constexpr milliseconds kKeepaliveTime{2000};
constexpr milliseconds kKeepaliveTimeout{2000};
// How often a sender with an open but idle stream checks that its connection still lives, so
// that it reconnects before Raft next needs the stream rather than after.
constexpr milliseconds kIdleCheckInterval{500};
// Upper bound for every duration option: beyond it a member would look dead for minutes.
constexpr milliseconds kDurationOptionLimit{60 * 1000};
// Room the sender keeps for the batch's own framing when it checks kPeerMessageBytesMax.
constexpr size_t kBatchFramingBytes = 64;
// A forwarded request adds its bytes plus a tag and length in PeerMessage and in PeerBatch.
constexpr size_t kForwardFixedBytesMax = 22;

static_assert(kPeerMessageBytesMax <= static_cast<size_t>(std::numeric_limits<int>::max()),
              "gRPC takes message size limits as int");
static_assert(kPeerBatchBytesMaxDefault <= kPeerMessageBytesMax);
static_assert(kPeerQueuedMessagesMaxDefault <= kPeerQueuedMessagesLimit);

// absl::Mutex under the names std::condition_variable_any needs (this Abseil has no lock()).
struct MutexAsLockable {
  absl::Mutex& mutex;
  void lock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mutex.Lock(); }
  void unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mutex.Unlock(); }
};

grpc::Status ToGrpc(const Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// gRPC's and absl's codes are the same numbers (both are google.rpc.Code).
Status FromGrpc(const grpc::Status& status, std::string_view context) {
  return Status(static_cast<absl::StatusCode>(status.error_code()),
                fmt::format("{}: {}", context, status.error_message()));
}

// absl::string_view is its own type in Debian's Abseil, not an alias of std::string_view.
absl::string_view Absl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

std::optional<uint64_t> HexMetadata(const grpc::ServerContextBase& context, const char* key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleHexAtoi(absl::string_view(it->second.data(), it->second.size()), &value)) {
    return std::nullopt;
  }
  return value;
}

// "host:port" -> {"host", "port"}, without the brackets of an IPv6 host.
std::pair<std::string, std::string> SplitHostPort(std::string_view target) {
  const size_t colon = target.rfind(':');
  SYNOD_ASSERT(colon != std::string_view::npos);  // PeerUrlToTarget made it.
  std::string_view host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return {std::string(host), std::string(target.substr(colon + 1))};
}

// Why `target` cannot be bound, found by binding it ourselves: gRPC reports only that it could
// not. Empty when it binds now (the problem went away, or was not the address).
std::string BindProblem(const std::string& target) {
  const auto [host, port] = SplitHostPort(target);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int resolved =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (resolved != 0) return fmt::format("cannot resolve {}: {}", host, ::gai_strerror(resolved));
  std::string problem;
  for (addrinfo* address = found; address != nullptr && problem.empty();
       address = address->ai_next) {
    const int fd =
        ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) {
      problem = std::error_code(errno, std::generic_category()).message();
      continue;
    }
    // As gRPC binds; without it a port in TIME_WAIT would be misreported as in use.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, address->ai_addr, address->ai_addrlen) != 0) {
      problem = std::error_code(errno, std::generic_category()).message();
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  // "Address already in use" -> "address already in use", to read as the end of a sentence.
  if (!problem.empty()) problem[0] = absl::ascii_tolower(static_cast<unsigned char>(problem[0]));
  return problem;
}

Status ValidateOptions(const TransportOptions& options) {
  if (options.self == kNoNode) {
    return absl::InvalidArgumentError("transport: the member id must not be 0");
  }
  if (options.listen_urls.empty()) {
    return absl::InvalidArgumentError("transport: no URL to listen for peers on");
  }
  if (options.queued_messages_max < 1 || options.queued_messages_max > kPeerQueuedMessagesLimit) {
    return absl::InvalidArgumentError(
        fmt::format("transport: queued_messages_max {} is outside [1, {}]",
                    options.queued_messages_max, kPeerQueuedMessagesLimit));
  }
  if (options.queued_bytes_max < 1) {
    return absl::InvalidArgumentError("transport: queued_bytes_max must be positive");
  }
  if (options.batch_bytes_max < 1 || options.batch_bytes_max > kPeerMessageBytesMax) {
    return absl::InvalidArgumentError(
        fmt::format("transport: batch_bytes_max {} is outside [1, {}]", options.batch_bytes_max,
                    kPeerMessageBytesMax));
  }
  const milliseconds zero{0};
  if (options.reconnect_backoff_min <= zero ||
      options.reconnect_backoff_min > options.reconnect_backoff_max ||
      options.reconnect_backoff_max > kDurationOptionLimit) {
    return absl::InvalidArgumentError(
        fmt::format("transport: reconnect backoff [{}, {}] ms must satisfy 0 < min <= max <= {}",
                    options.reconnect_backoff_min.count(), options.reconnect_backoff_max.count(),
                    kDurationOptionLimit.count()));
  }
  if (options.handshake_timeout <= zero || options.handshake_timeout > kDurationOptionLimit) {
    return absl::InvalidArgumentError(
        fmt::format("transport: handshake_timeout {} ms is outside (0, {}]",
                    options.handshake_timeout.count(), kDurationOptionLimit.count()));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target,
                                          const TransportOptions& options) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(static_cast<int>(kPeerMessageBytesMax));
  arguments.SetMaxSendMessageSize(static_cast<int>(kPeerMessageBytesMax));
  // gRPC reconnects on its own between our attempts; keep its pace close to ours so that a
  // restarted peer is found within reconnect_backoff_max, not gRPC's default of two minutes.
  const int backoff_min_ms = static_cast<int>(options.reconnect_backoff_min.count());
  const int backoff_max_ms = static_cast<int>(options.reconnect_backoff_max.count());
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, backoff_min_ms);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, backoff_min_ms);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, backoff_max_ms);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(kKeepaliveTime.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(kKeepaliveTimeout.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // By default gRPC stops pinging after two pings without data, which would end keepalive on an
  // idle stream, the very case it is for.
  arguments.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A connection of our own per channel, not one shared through gRPC's global pool with every
  // channel to the same address: a removed and re-added peer then starts afresh, and two
  // transports in one process (tests) stay independent.
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
}

}  // namespace

Result<std::string> PeerUrlToTarget(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  if (absl::StartsWithIgnoreCase(Absl(url), "https://")) {
    return absl::InvalidArgumentError(
        fmt::format("peer URL {}: TLS is not supported; use http://", url));
  }
  if (!absl::StartsWithIgnoreCase(Absl(url), Absl(kHttp))) {
    return absl::InvalidArgumentError(fmt::format("peer URL {}: expected http://host:port", url));
  }
  std::string_view host_port = url.substr(kHttp.size());
  if (host_port.ends_with('/')) host_port.remove_suffix(1);  // As etcd accepts it.
  if (host_port.find_first_of("/?#@") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        fmt::format("peer URL {}: expected http://host:port, without path or user", url));
  }
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        fmt::format("peer URL {}: expected http://host:port, with both", url));
  }
  const std::string_view host = host_port.substr(0, colon);
  const bool bracketed = host.front() == '[' && host.back() == ']';
  if (!bracketed && host.find_first_of("[]:") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        fmt::format("peer URL {}: an IPv6 host must be in brackets, as in http://[::1]:2380", url));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(Absl(host_port.substr(colon + 1)), &port) || port > 65535) {
    return absl::InvalidArgumentError(fmt::format("peer URL {}: bad port", url));
  }
  return std::string(host_port);
}

// ---------------------------------------------------------------------------------------------
// Receiving.

class Transport::PeerService final
    : public synodpb::Peer::WithCallbackMethod_Stream<synodpb::Peer::Service> {
 public:
  PeerService(const TransportOptions& options, PeerHandlers handlers, Counters& counters)
      : self_(options.self),
        cluster_id_(options.cluster_id),
        handlers_(std::move(handlers)),
        counters_(counters) {}

  grpc::Status Handshake(grpc::ServerContext* context, const synodpb::HandshakeRequest*,
                         synodpb::HandshakeResponse*) override {
    return Check(*context).status;
  }

  // On gRPC's callback API: a stream needs no thread of its own, and a batch is delivered on the
  // gRPC thread that read it, without a hand-off to a waiting handler thread (each hand-off is a
  // context switch; docs/benchmarks.md, change 10).
  grpc::ServerReadReactor<synodpb::PeerBatch>* Stream(grpc::CallbackServerContext* context,
                                                      synodpb::PeerStreamSummary*) override {
    return new StreamReceiver(*this, Check(*context));
  }

  grpc::Status LeaseRenew(grpc::ServerContext* context,
                          const etcdserverpb::LeaseKeepAliveRequest* request,
                          etcdserverpb::LeaseKeepAliveResponse* response) override {
    if (Caller caller = Check(*context); !caller.status.ok()) return caller.status;
    return handlers_.on_lease_renew(*request, response);
  }

  grpc::Status LeaseTimeToLive(grpc::ServerContext* context,
                               const etcdserverpb::LeaseTimeToLiveRequest* request,
                               etcdserverpb::LeaseTimeToLiveResponse* response) override {
    if (Caller caller = Check(*context); !caller.status.ok()) return caller.status;
    return handlers_.on_lease_time_to_live(*request, response);
  }

  grpc::Status ChangeMembers(grpc::ServerContext* context,
                             const synodpb::MemberChangeRequest* request,
                             synodpb::MemberChangeResponse* response) override {
    if (Caller caller = Check(*context); !caller.status.ok()) return caller.status;
    if (!handlers_.on_change_members) return Unimplemented("ChangeMembers");
    return handlers_.on_change_members(*request, response);
  }

  grpc::Status Members(grpc::ServerContext*, const synodpb::MembersRequest*,
                       synodpb::MembersResponse* response) override {
    // No identity check: the caller is about to join and knows neither id (peer.proto).
    if (!handlers_.on_members) return Unimplemented("Members");
    return handlers_.on_members(response);
  }

  grpc::Status FetchSnapshot(grpc::ServerContext* context, const synodpb::SnapshotRequest* request,
                             grpc::ServerWriter<synodpb::SnapshotChunk>* writer) override {
    const Caller caller = Check(*context);
    if (!caller.status.ok()) return caller.status;
    auto source = handlers_.on_fetch_snapshot(Index(request->min_applied_index()));
    if (!source.ok()) return ToGrpc(source.status());
    SYNOD_ASSERT_MSG(*source != nullptr, "on_fetch_snapshot returned an empty chunk source");
    synodpb::SnapshotChunk chunk;
    while (!context->IsCancelled()) {
      Result<std::optional<std::string>> next = (*source)();
      if (!next.ok()) return ToGrpc(next.status());
      if (!next->has_value()) return grpc::Status::OK;
      chunk.set_data(std::move(**next));
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status(
        grpc::StatusCode::CANCELLED,
        fmt::format("member {:x} stopped fetching the snapshot", caller.from.value()));
  }

 private:
  struct Caller {
    grpc::Status status;
    NodeId from;
  };

  // The identity check every call starts with (peer.proto).
  Caller Check(const grpc::ServerContextBase& context) {
    const std::optional<uint64_t> cluster = HexMetadata(context, kClusterIdKey);
    const std::optional<uint64_t> from = HexMetadata(context, kFromKey);
    const std::optional<uint64_t> to = HexMetadata(context, kToKey);
    std::string problem;
    if (!cluster || !from || !to) {
      problem = fmt::format("not a synod peer call: it lacks {}, {} or {} metadata", kClusterIdKey,
                            kFromKey, kToKey);
    } else if (*cluster != cluster_id_) {
      problem = fmt::format("peer is of cluster {:x}, this node is of cluster {:x}", *cluster,
                            cluster_id_);
    } else if (NodeId(*to) != self_) {
      problem =
          fmt::format("peer addressed member {:x}, this node is member {:x}", *to, self_.value());
    } else if (NodeId(*from) == kNoNode || NodeId(*from) == self_) {
      problem = fmt::format("peer claims member id {:x}, which no other member may have", *from);
    }
    if (problem.empty() && IsRemoved(NodeId(*from))) {
      ++counters_.refused;
      return {RemovedRefusal(), kNoNode};
    }
    if (problem.empty()) return {grpc::Status::OK, NodeId(*from)};
    ++counters_.refused;
    {
      // The sender retries every reconnect_backoff_max; say it once, not every second.
      absl::MutexLock lock(&mutex_);
      if (problem != last_refusal_) {
        spdlog::warn("refused a call from {}: {}", context.peer(), problem);
        last_refusal_ = problem;
      }
    }
    return {grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, problem), kNoNode};
  }

  // One peer's stream: reads batch after batch and hands each message to the handlers, in order
  // (one read at a time). A refused caller's stream ends at once with the refusal.
  class StreamReceiver final : public grpc::ServerReadReactor<synodpb::PeerBatch> {
   public:
    StreamReceiver(PeerService& service, Caller caller)
        : service_(service), caller_(std::move(caller)) {
      if (!caller_.status.ok()) {
        Finish(caller_.status);
        return;
      }
      StartRead(&batch_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      // A member removed while its stream was open: end the stream, so that its reconnect meets
      // the refusal that tells it to stop (Check).
      if (service_.IsRemoved(caller_.from)) {
        Finish(RemovedRefusal());
        return;
      }
      service_.Deliver(caller_.from, batch_, warned_);
      batch_.Clear();
      StartRead(&batch_);
    }

    void OnDone() override { delete this; }

   private:
    PeerService& service_;
    const Caller caller_;
    synodpb::PeerBatch batch_;
    bool warned_ = false;  // One warning per stream: a peer with a bug would send many.
  };

  // Hands the messages of one batch from `from` to the handlers; `warned` is the stream's.
  void Deliver(NodeId from, synodpb::PeerBatch& batch, bool& warned) {
    auto refuse = [&](const Status& problem) {
      ++counters_.refused;
      if (!std::exchange(warned, true)) {
        spdlog::warn(
            "refused a message from member {:x} (further ones on this stream are "
            "counted, not logged): {}",
            from.value(), std::string(problem.message()));
      }
    };
    for (synodpb::PeerMessage& message : *batch.mutable_messages()) {
      switch (message.kind_case()) {
        case synodpb::PeerMessage::kRaft: {
          Result<raft::Message> decoded = DecodeRaftMessage(std::move(*message.mutable_raft()));
          if (!decoded.ok()) {
            refuse(decoded.status());
            break;
          }
          // The stream's identity was checked once; each message must agree with it, or a
          // confused peer could make the core answer on another member's behalf.
          if (decoded->from != from || decoded->to != self_) {
            refuse(absl::InvalidArgumentError(fmt::format(
                "a message from {:x} to {:x} on the stream from {:x} to {:x}",
                decoded->from.value(), decoded->to.value(), from.value(), self_.value())));
            break;
          }
          ++counters_.received;
          handlers_.on_raft_message(std::move(*decoded));
          break;
        }
        case synodpb::PeerMessage::kMultipaxos: {
          if (!handlers_.on_multipaxos_message) {
            refuse(absl::InvalidArgumentError(
                "a Multi-Paxos message, but this member runs the raft engine"));
            break;
          }
          Result<PeerMessage> decoded =
              DecodeMultiPaxosMessage(std::move(*message.mutable_multipaxos()));
          if (!decoded.ok()) {
            refuse(decoded.status());
            break;
          }
          // As for Raft messages: each message must agree with the stream's identity.
          if (SenderOf(*decoded) != from || RecipientOf(*decoded) != self_) {
            refuse(absl::InvalidArgumentError(
                fmt::format("a message from {:x} to {:x} on the stream from {:x} to {:x}",
                            SenderOf(*decoded).value(), RecipientOf(*decoded).value(), from.value(),
                            self_.value())));
            break;
          }
          ++counters_.received;
          handlers_.on_multipaxos_message(std::move(*decoded));
          break;
        }
        case synodpb::PeerMessage::kForwardedRequest:
          ++counters_.received;
          handlers_.on_forwarded_proposal(from, std::move(*message.mutable_forwarded_request()));
          break;
        case synodpb::PeerMessage::KIND_NOT_SET:
          // A kind added by a newer peer, or an empty message: nothing we can act on.
          refuse(absl::InvalidArgumentError("a message of unknown kind"));
          break;
      }
    }
  }

  bool IsRemoved(NodeId id) const {
    return handlers_.is_removed_member && handlers_.is_removed_member(id);
  }

  static grpc::Status RemovedRefusal() {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(kRemovedMemberMessage));
  }

  static grpc::Status Unimplemented(std::string_view call) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        fmt::format("this member does not serve {}", call));
  }

  const NodeId self_;
  const uint64_t cluster_id_;
  const PeerHandlers handlers_;
  Counters& counters_;
  absl::Mutex mutex_;
  std::string last_refusal_ ABSL_GUARDED_BY(mutex_);
};

// ---------------------------------------------------------------------------------------------
// Sending: one queue, one stream and one connecting thread per peer.

// A message waiting in a peer's queue. Encoded when a write takes it (PumpWritesLocked), outside
// the queue's lock.
struct Transport::Outgoing {
  // A peer message of either engine, or a forwarded request's bytes.
  std::variant<PeerMessage, std::string> payload;
  // EncodedBytesMax of the payload: counted against the queue's and the batch's limits.
  size_t bytes = 0;
};

class Transport::PeerSender {
 public:
  PeerSender(Transport& transport, NodeId id, std::vector<std::string> targets)
      : transport_(transport), options_(transport.options_), id_(id) {
    SetTargets(std::move(targets));
    thread_ = std::thread([this] { Run(); });
  }

  // Prompt: see RequestStop.
  ~PeerSender() {
    RequestStop();
    thread_.join();
  }

  PeerSender(const PeerSender&) = delete;
  PeerSender& operator=(const PeerSender&) = delete;

  // Makes the thread stop soon: the one call it may be blocked in (a handshake) is registered in
  // active_context_ and cancelled here, and every wait checks stopping_.
  void RequestStop() {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    if (active_context_ != nullptr) active_context_->TryCancel();
    wake_.notify_all();
  }

  void SetTargets(std::vector<std::string> targets) {
    absl::MutexLock lock(&mutex_);
    if (targets == targets_) return;
    targets_ = std::move(targets);
    channels_.assign(targets_.size(), nullptr);
    target_index_ = 0;
    targets_changed_ = true;
    if (active_context_ != nullptr) active_context_->TryCancel();
    wake_.notify_all();
  }

  // False (the caller counts the drop) when the queue is full or stopping. With a stream open
  // and no write under way, the caller's thread encodes and starts the write (PumpWrites).
  bool Enqueue(Outgoing message) {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return false;
    // An empty queue takes any message, so one bigger than queued_bytes_max still goes out.
    if (!queue_.empty() && (queue_.size() >= options_.queued_messages_max ||
                            queued_bytes_ + message.bytes > options_.queued_bytes_max)) {
      return false;
    }
    queued_bytes_ += message.bytes;
    queue_.push_back(std::move(message));
    SYNOD_ASSERT(queue_.size() <= options_.queued_messages_max);
    PumpWritesLocked();
    return true;
  }

  // The channel to the address in use, created on first use; null without a usable address.
  std::shared_ptr<grpc::Channel> channel() {
    absl::MutexLock lock(&mutex_);
    return CurrentChannel();
  }

  bool connected() {
    if (!connected_.load()) return false;
    std::shared_ptr<grpc::Channel> current = channel();
    return current != nullptr && current->GetState(false) == GRPC_CHANNEL_READY;
  }

 private:
  // The open stream, written on gRPC's callback API: a write is started by whichever thread
  // finds the stream idle with messages queued (usually the event loop in Send), and the next
  // one from OnWriteDone, so no thread of ours wakes per batch. A hold (AddHold) keeps the call
  // from finishing while writes may still be started from outside its reactions; the sender
  // thread removes it when it closes the stream, and destroys the stream only after OnDone.
  class OpenStream : public grpc::ClientWriteReactor<synodpb::PeerBatch> {
   public:
    OpenStream(PeerSender& sender, std::string target)
        : sender_(sender), target_(std::move(target)) {}

    void OnWriteDone(bool ok) override { sender_.OnWriteDone(ok); }
    void OnDone(const grpc::Status& status) override { sender_.OnStreamDone(status); }

    grpc::ClientContext context;
    std::unique_ptr<synodpb::Peer::Stub> stub;
    synodpb::PeerStreamSummary summary;
    // The batch being written; only the holder of the sender's write turn (write_in_flight_)
    // touches it, and the sender thread after a failed write.
    synodpb::PeerBatch batch;
    const std::string& target() const { return target_; }

   private:
    PeerSender& sender_;
    const std::string target_;
  };

  std::shared_ptr<grpc::Channel> CurrentChannel() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (targets_.empty()) return nullptr;
    SYNOD_ASSERT(target_index_ < targets_.size());
    SYNOD_ASSERT(channels_.size() == targets_.size());
    std::shared_ptr<grpc::Channel>& channel = channels_[target_index_];
    if (channel == nullptr) channel = NewChannel(targets_[target_index_], options_);
    return channel;
  }

  void PumpWrites() {
    absl::MutexLock lock(&mutex_);
    PumpWritesLocked();
  }

  // Starts writes while the stream is open and idle and messages wait, one at a time so that
  // they keep their order. Any thread. Encoding and StartWrite happen with mutex_ released, so
  // Enqueue never waits for either, and a reaction that gRPC runs inline cannot deadlock.
  void PumpWritesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    // After SetTargets, messages wait for the stream to the new address.
    while (stream_ != nullptr && !closing_ && !write_failed_ && !stale_stream_ &&
           !write_in_flight_ && !targets_changed_ && !stopping_ &&
           (retry_.has_value() || !queue_.empty())) {
      // A channel that is not READY lost the connection under the stream (the peer restarted).
      // gRPC would report a write on that stream done once its transport took the bytes, and
      // they would be lost; so the messages stay queued and the sender thread reconnects first.
      std::shared_ptr<grpc::Channel> current = CurrentChannel();
      if (current == nullptr || current->GetState(false) != GRPC_CHANNEL_READY) {
        stale_stream_ = true;
        wake_.notify_all();
        break;
      }
      write_in_flight_ = true;
      ++writes_starting_;
      OpenStream* stream = stream_.get();
      std::optional<synodpb::PeerBatch> retry = std::exchange(retry_, std::nullopt);
      std::deque<Outgoing> taken;
      if (!retry.has_value()) TakeBatchWorth(taken);
      mutex_.Unlock();
      stream->batch = retry.has_value() ? std::move(*retry) : EncodeBatch(taken);
      const bool any = stream->batch.messages_size() > 0;
      if (any) stream->StartWrite(&stream->batch);
      mutex_.Lock();
      if (!any) write_in_flight_ = false;
      if (--writes_starting_ == 0 && closing_) wake_.notify_all();
    }
  }

  // Moves one batch's worth of queued messages (by their estimated sizes) into `taken`.
  void TakeBatchWorth(std::deque<Outgoing>& taken) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    size_t batch_bytes = 0;
    while (!queue_.empty()) {
      Outgoing& next = queue_.front();
      if (!taken.empty() && batch_bytes + next.bytes > options_.batch_bytes_max) break;
      batch_bytes += next.bytes;
      queued_bytes_ -= next.bytes;
      taken.push_back(std::move(next));
      queue_.pop_front();
    }
  }

  // gRPC's callback thread, for the write started last.
  void OnWriteDone(bool ok) {
    {
      absl::MutexLock lock(&mutex_);
      SYNOD_ASSERT(write_in_flight_ && stream_ != nullptr);
      write_in_flight_ = false;
      if (!ok) {
        // The stream broke; its batch stays in it for the sender thread to resend or drop.
        write_failed_ = true;
        wake_.notify_all();
        return;
      }
      stream_proven_ = true;
      transport_.counters_.sent += stream_->batch.messages_size();
    }
    PumpWrites();
  }

  // gRPC's callback thread, last of the stream's reactions.
  void OnStreamDone(const grpc::Status& status) {
    absl::MutexLock lock(&mutex_);
    stream_status_ = status;
    stream_done_ = true;
    wake_.notify_all();
  }

  void Run() {
    NameThisThread(fmt::format("send-{:x}", id_.value()));
    milliseconds backoff = options_.reconnect_backoff_min;
    // Connect at once: see "Connection life cycle" in transport.h.
    Clock::time_point next_attempt = Clock::now();
    while (true) {
      bool retarget = false;
      bool failed = false;
      bool stale = false;
      bool open = false;
      {
        absl::MutexLock lock(&mutex_);
        open = stream_ != nullptr;
        const Clock::time_point wake_at = open ? Clock::now() + kIdleCheckInterval : next_attempt;
        MutexAsLockable lockable{mutex_};
        wake_.wait_until(lockable, wake_at, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return stopping_ || targets_changed_ || write_failed_ || stale_stream_;
        });
        if (stopping_) break;
        retarget = targets_changed_;
        failed = write_failed_;
        stale = stale_stream_;
      }
      if (retarget) {
        CloseStream();
        backoff = options_.reconnect_backoff_min;
        next_attempt = Clock::now();
      } else if (failed) {
        if (!Reconnect()) {
          next_attempt = Clock::now() + backoff;
          backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
        }
        continue;
      }
      if (!open || retarget) {
        if (Clock::now() < next_attempt) continue;
        if (Connect()) {
          backoff = options_.reconnect_backoff_min;
        } else {
          // Whatever waited for this attempt is stale by the next one; Raft resends.
          DropQueued();
          next_attempt = Clock::now() + backoff;
          backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
        }
        continue;
      }
      // Open and woken by the timer, or by a write that found the stream stale: a connection
      // that died (the peer restarted, or keepalive gave up on it) leaves the channel READY no
      // longer. Reconnect now, before Raft needs the stream. A stale stream is closed even if
      // gRPC has meanwhile made the channel READY again: that is a new connection.
      std::shared_ptr<grpc::Channel> current = channel();
      if (stale || current == nullptr || current->GetState(false) != GRPC_CHANNEL_READY) {
        Closed closed = CloseStream();
        ReportFailure(closed.target, closed.status);
        next_attempt = Clock::now();
      }
    }
    CloseStream();
    DropQueued();
  }

  // After a failed write. A stream that had carried messages broke with the peer there a moment
  // ago (it probably restarted): reconnect at once and resend the failed batch, once. Otherwise
  // report, and drop the batch and what is queued. False when the caller should back off.
  bool Reconnect() {
    Closed closed = CloseStream(/*keep_failed_batch=*/true);
    if (closed.proven) {
      if (!Interrupted()) {
        spdlog::info("stream to member {:x} at {} ended ({}); reconnecting", id_.value(),
                     closed.target, closed.status.error_message());
      }
      if (Connect(std::move(closed.batch))) return true;
      // Connect reported why, and dropped the batch.
    } else {
      ReportFailure(closed.target, closed.status);
      transport_.counters_.dropped += closed.batch.messages_size();
    }
    DropQueued();
    return false;
  }

  // Encodes `taken` into one batch.
  synodpb::PeerBatch EncodeBatch(std::deque<Outgoing>& taken) {
    synodpb::PeerBatch batch;
    for (Outgoing& next : taken) {
      if (next.bytes > kPeerMessageBytesMax - kBatchFramingBytes) {
        // gRPC would fail the whole stream on it; drop this one message instead.
        spdlog::error(
            "dropped a message of about {} bytes to member {:x}: larger than the {} "
            "bytes a peer message may have",
            next.bytes, id_.value(), kPeerMessageBytesMax);
        ++transport_.counters_.dropped;
        continue;
      }
      synodpb::PeerMessage* message = batch.add_messages();
      if (auto* peer_message = std::get_if<PeerMessage>(&next.payload)) {
        if (auto* raft = std::get_if<raft::Message>(peer_message)) {
          EncodeRaftMessage(std::move(*raft), message->mutable_raft());
        } else {
          EncodeMultiPaxosMessage(std::move(std::get<multipaxos::Message>(*peer_message)),
                                  message->mutable_multipaxos());
        }
      } else {
        message->set_forwarded_request(std::move(std::get<std::string>(next.payload)));
      }
    }
    return batch;
  }

  // Handshake, then open the stream, whose first write is `first` if given. False (reported,
  // `first` dropped) when the peer cannot be reached, refuses, or we are stopping.
  bool Connect(std::optional<synodpb::PeerBatch> first = std::nullopt) {
    auto fail = [&] {
      if (first.has_value()) transport_.counters_.dropped += first->messages_size();
      return false;
    };
    std::shared_ptr<grpc::Channel> channel;
    std::string target;
    {
      absl::MutexLock lock(&mutex_);
      if (stopping_) return fail();
      targets_changed_ = false;
      channel = CurrentChannel();
      if (channel != nullptr) target = targets_[target_index_];
    }
    if (channel == nullptr) {
      ReportFailure("(no usable URL)",
                    grpc::Status(grpc::StatusCode::UNAVAILABLE, "no usable peer URL is known"));
      return fail();
    }
    auto stub = synodpb::Peer::NewStub(channel);
    {
      grpc::ClientContext context;
      transport_.AddMetadata(context, id_);
      // Wait through gRPC's own reconnect backoff, so that a peer that comes up while we wait
      // is found at once instead of at our next attempt.
      context.set_wait_for_ready(true);
      context.set_deadline(std::chrono::system_clock::now() + options_.handshake_timeout);
      if (!BeginCall(&context)) return fail();
      synodpb::HandshakeRequest request;
      synodpb::HandshakeResponse response;
      const grpc::Status status = stub->Handshake(&context, request, &response);
      EndCall();
      if (!status.ok()) {
        // Cancelled by RequestStop or SetTargets: nothing to report, and the next target is the
        // first of the new list, not the one after this.
        if (Interrupted()) return fail();
        ReportFailure(target, status);
        NextTarget();
        return fail();
      }
    }
    auto stream = std::make_unique<OpenStream>(*this, target);
    transport_.AddMetadata(stream->context, id_);
    stream->stub = std::move(stub);
    stream->stub->async()->Stream(&stream->context, &stream->summary, stream.get());
    stream->AddHold();
    // Sends the call's headers; a failure shows at the first write.
    stream->StartCall();
    {
      absl::MutexLock lock(&mutex_);
      stream_ = std::move(stream);
      stream_proven_ = false;
      stream_done_ = false;
      retry_ = std::move(first);
    }
    connected_ = true;
    if (std::exchange(had_stream_, true)) ++transport_.counters_.reconnects;
    spdlog::info("connected to member {:x} at {}", id_.value(), target);
    reported_failure_ = false;
    last_refusal_.clear();
    PumpWrites();
    return true;
  }

  // How a stream ended, and what it was writing when it failed.
  struct Closed {
    grpc::Status status;
    std::string target;
    bool proven = false;
    synodpb::PeerBatch batch;
  };

  // Closes the stream, if any: no write starts on it any more, the call is cancelled (one that
  // already failed keeps its status), and it is destroyed once gRPC is done with it. A batch
  // whose write failed is returned if asked for, else counted as dropped.
  Closed CloseStream(bool keep_failed_batch = false) {
    OpenStream* stream = nullptr;
    {
      absl::MutexLock lock(&mutex_);
      if (stream_ == nullptr) return Closed{};
      closing_ = true;
      MutexAsLockable lockable{mutex_};
      wake_.wait(lockable, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return writes_starting_ == 0; });
      stream = stream_.get();
    }
    connected_ = false;
    stream->context.TryCancel();
    stream->RemoveHold();
    std::unique_ptr<OpenStream> closed;
    Closed result;
    {
      absl::MutexLock lock(&mutex_);
      MutexAsLockable lockable{mutex_};
      wake_.wait(lockable, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stream_done_; });
      closed = std::move(stream_);
      result.status = stream_status_;
      result.proven = stream_proven_;
      if (write_failed_) {
        if (keep_failed_batch) {
          result.batch = std::move(closed->batch);
        } else {
          transport_.counters_.dropped += closed->batch.messages_size();
        }
      }
      closing_ = false;
      write_failed_ = false;
      stale_stream_ = false;
      write_in_flight_ = false;
    }
    result.target = closed->target();
    return result;
  }

  // Registers the handshake the thread is about to block in, so that RequestStop and SetTargets
  // can cancel it. False when stopping.
  bool BeginCall(grpc::ClientContext* context) {
    absl::MutexLock lock(&mutex_);
    if (stopping_) {
      context->TryCancel();
      return false;
    }
    active_context_ = context;
    return true;
  }

  void EndCall() {
    absl::MutexLock lock(&mutex_);
    active_context_ = nullptr;
  }

  // True when the thread's current call was cancelled on purpose.
  bool Interrupted() {
    absl::MutexLock lock(&mutex_);
    return stopping_ || targets_changed_;
  }

  void NextTarget() {
    absl::MutexLock lock(&mutex_);
    if (!targets_.empty()) target_index_ = (target_index_ + 1) % targets_.size();
  }

  void DropQueued() {
    absl::MutexLock lock(&mutex_);
    transport_.counters_.dropped += queue_.size();
    queue_.clear();
    queued_bytes_ = 0;
    if (retry_.has_value()) transport_.counters_.dropped += retry_->messages_size();
    retry_.reset();
  }

  // Logs a failure once per outage (a dead peer fails every second), and a refusal whenever its
  // reason changes (it needs an operator).
  void ReportFailure(const std::string& target, const grpc::Status& status) {
    connected_ = false;
    if (Interrupted()) return;
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
        status.error_message() == kRemovedMemberMessage) {
      transport_.ReportRemoved(id_);
    }
    if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      std::string refusal = fmt::format("member {:x} at {} refuses this node: {}", id_.value(),
                                        target, status.error_message());
      if (refusal != last_refusal_) spdlog::error("{}", refusal);
      last_refusal_ = std::move(refusal);
      reported_failure_ = true;
      return;
    }
    if (std::exchange(reported_failure_, true)) {
      spdlog::debug("member {:x} at {} still unreachable: {}", id_.value(), target,
                    status.error_message());
      return;
    }
    spdlog::warn("cannot reach member {:x} at {}: {}; retrying", id_.value(), target,
                 status.error_message());
  }

  Transport& transport_;
  const TransportOptions& options_;
  const NodeId id_;

  absl::Mutex mutex_;
  // Not an absl::CondVar: this Abseil's timed waits sleep until an absolute CLOCK_REALTIME
  // instant, so a wall-clock step (NTP, or the nemesis's clock fault) stretched every backoff by
  // the size of the step, and a member could not reconnect to a restarted peer for that long.
  // condition_variable_any waits on the steady clock (pthread_cond_clockwait, CLOCK_MONOTONIC).
  std::condition_variable_any wake_;
  std::vector<std::string> targets_ ABSL_GUARDED_BY(mutex_);
  // Parallel to targets_; created on first use.
  std::vector<std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mutex_);
  // Invariant: target_index_ < targets_.size() unless targets_ is empty.
  size_t target_index_ ABSL_GUARDED_BY(mutex_) = 0;
  bool targets_changed_ ABSL_GUARDED_BY(mutex_) = false;
  std::deque<Outgoing> queue_ ABSL_GUARDED_BY(mutex_);
  // Invariant: the sum of queue_[i].bytes.
  size_t queued_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  // The handshake the sender thread is blocked in.
  grpc::ClientContext* active_context_ ABSL_GUARDED_BY(mutex_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<bool> connected_ = false;

  // The open stream. Created and destroyed by the sender thread only, the latter only after
  // OnDone.
  std::unique_ptr<OpenStream> stream_ ABSL_GUARDED_BY(mutex_);
  // The sender thread is closing the stream: no write starts on it any more.
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
  // A write is started or under way: the one thread that set it owns the stream's batch until
  // OnWriteDone clears it. Invariant: at most one write in flight, so batches keep their order.
  bool write_in_flight_ ABSL_GUARDED_BY(mutex_) = false;
  // The last write failed: the stream is broken, and the sender thread takes over.
  bool write_failed_ ABSL_GUARDED_BY(mutex_) = false;
  // A write found the channel not READY: the stream's connection is gone, nothing more is
  // written on it, and the sender thread closes it and reconnects.
  bool stale_stream_ ABSL_GUARDED_BY(mutex_) = false;
  // Threads between taking a batch and StartWrite's return; closing waits for none.
  int writes_starting_ ABSL_GUARDED_BY(mutex_) = 0;
  // A write on this stream succeeded (see Reconnect).
  bool stream_proven_ ABSL_GUARDED_BY(mutex_) = false;
  bool stream_done_ ABSL_GUARDED_BY(mutex_) = false;
  grpc::Status stream_status_ ABSL_GUARDED_BY(mutex_);
  // A batch that failed on a proven stream, to be written first on the next one.
  std::optional<synodpb::PeerBatch> retry_ ABSL_GUARDED_BY(mutex_);

  // Only the sender thread touches these.
  bool had_stream_ = false;
  bool reported_failure_ = false;
  std::string last_refusal_;

  std::thread thread_;  // Last: it starts in the constructor and uses everything above.
};

// ---------------------------------------------------------------------------------------------

Transport::Transport(TransportOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<Transport>> Transport::Start(TransportOptions options,
                                                    PeerHandlers handlers) {
  SYNOD_ASSERT_MSG(handlers.on_raft_message != nullptr && handlers.on_forwarded_proposal &&
                       handlers.on_lease_renew && handlers.on_lease_time_to_live &&
                       handlers.on_fetch_snapshot,
                   "every peer handler must be set");
  if (Status status = ValidateOptions(options); !status.ok()) return status;
  std::vector<std::string> targets;
  for (const std::string& url : options.listen_urls) {
    Result<std::string> target = PeerUrlToTarget(url);
    if (!target.ok()) return target.status();
    targets.push_back(std::move(*target));
  }

  std::unique_ptr<Transport> transport(new Transport(std::move(options)));
  transport->on_removed_ = handlers.on_removed;
  transport->service_ =
      std::make_unique<PeerService>(transport->options_, std::move(handlers), transport->counters_);
  grpc::ServerBuilder builder;
  std::vector<int> ports(targets.size(), 0);
  for (size_t i = 0; i < targets.size(); ++i) {
    builder.AddListeningPort(targets[i], grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(kPeerMessageBytesMax));
  builder.SetMaxSendMessageSize(static_cast<int>(kPeerMessageBytesMax));
  // gRPC sets SO_REUSEPORT by default, under which a second member started on the same port
  // binds successfully and the kernel splits the connections between the two.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(kKeepaliveTime.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(kKeepaliveTimeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Let the senders' keepalive through: by default a server answers pings more frequent than
  // every five minutes with GOAWAY "too_many_pings".
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(kKeepaliveTime.count() / 2));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(transport->service_.get());
  transport->server_ = builder.BuildAndStart();
  const bool bound = transport->server_ != nullptr &&
                     std::none_of(ports.begin(), ports.end(), [](int port) { return port == 0; });
  if (!bound) {
    for (const std::string& target : targets) {
      if (std::string problem = BindProblem(target); !problem.empty()) {
        return absl::UnavailableError(fmt::format("listen on {}: {}", target, problem));
      }
    }
    return absl::UnavailableError(
        fmt::format("listen on {}: the peer server did not start (gRPC's log says why)",
                    absl::StrJoin(targets, ", ")));
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    SYNOD_ASSERT(ports[i] > 0 && ports[i] <= 65535);
    const size_t colon = targets[i].rfind(':');
    transport->listen_urls_bound_.push_back(
        fmt::format("http://{}:{}", std::string_view(targets[i]).substr(0, colon), ports[i]));
  }
  spdlog::info("member {:x} serving peers on {}", transport->options_.self.value(),
               absl::StrJoin(transport->listen_urls_bound_, ","));
  return transport;
}

Transport::~Transport() {
  StopServing();
  std::map<NodeId, std::unique_ptr<PeerSender>> peers;
  {
    absl::MutexLock lock(&peers_mutex_);
    peers.swap(peers_);
  }
  // Stop them all first, then join: one dead peer's cancellation then overlaps the others'.
  for (auto& [id, sender] : peers) sender->RequestStop();
  peers.clear();
}

void Transport::StopServing() {
  if (server_ == nullptr) return;
  // A deadline of now cancels every call at once: peer streams never end on their own, and a
  // cancelled peer simply reconnects to whoever serves next.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

void Transport::SetPeer(NodeId id, std::vector<std::string> peer_urls) {
  if (id == options_.self) return;
  SYNOD_ASSERT(id != kNoNode);
  std::vector<std::string> targets;
  for (const std::string& url : peer_urls) {
    Result<std::string> target = PeerUrlToTarget(url);
    if (!target.ok()) {
      spdlog::error("member {:x}: ignoring a URL: {}", id.value(),
                    std::string(target.status().message()));
      continue;
    }
    targets.push_back(std::move(*target));
  }
  absl::MutexLock lock(&peers_mutex_);
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    it->second->SetTargets(std::move(targets));
    return;
  }
  peers_.emplace(id, std::make_unique<PeerSender>(*this, id, std::move(targets)));
}

void Transport::RemovePeer(NodeId id) {
  std::unique_ptr<PeerSender> removed;
  {
    absl::MutexLock lock(&peers_mutex_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    removed = std::move(it->second);
    peers_.erase(it);
  }
  removed.reset();  // Joins its thread, outside the lock so that Send never waits for it.
}

void Transport::Enqueue(NodeId to, Outgoing message) {
  absl::ReaderMutexLock lock(&peers_mutex_);
  auto it = peers_.find(to);
  if (it == peers_.end() || !it->second->Enqueue(std::move(message))) ++counters_.dropped;
}

void Transport::Send(PeerMessage message) {
  const NodeId to = RecipientOf(message);
  const size_t bytes =
      std::visit([](const auto& each) { return EncodedBytesMax(each); }, message);
  Enqueue(to, Outgoing{std::move(message), bytes});
}

void Transport::SendForward(NodeId to, std::string request) {
  const size_t bytes = request.size() + kForwardFixedBytesMax;
  Enqueue(to, Outgoing{std::move(request), bytes});
}

std::shared_ptr<grpc::Channel> Transport::ChannelTo(NodeId id) const {
  absl::ReaderMutexLock lock(&peers_mutex_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second->channel();
}

void Transport::AddMetadata(grpc::ClientContext& context, NodeId to) const {
  context.AddMetadata(kClusterIdKey, fmt::format("{:x}", options_.cluster_id));
  context.AddMetadata(kFromKey, fmt::format("{:x}", options_.self.value()));
  context.AddMetadata(kToKey, fmt::format("{:x}", to.value()));
}

namespace {

grpc::Status NoAddress(NodeId id) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      fmt::format("no address known for member {:x}", id.value()));
}

}  // namespace

template <typename StubMethod, typename Request, typename Response>
grpc::Status Transport::CallPeer(NodeId to, StubMethod method, const Request& request,
                                 Response* response, milliseconds deadline) {
  SYNOD_ASSERT(response != nullptr);
  std::shared_ptr<grpc::Channel> channel = ChannelTo(to);
  if (channel == nullptr) return NoAddress(to);
  grpc::ClientContext context;
  AddMetadata(context, to);
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  std::unique_ptr<synodpb::Peer::Stub> stub = synodpb::Peer::NewStub(channel);
  return ((*stub).*method)(&context, request, response);
}

grpc::Status Transport::LeaseRenew(NodeId to, const etcdserverpb::LeaseKeepAliveRequest& request,
                                   etcdserverpb::LeaseKeepAliveResponse* response,
                                   milliseconds deadline) {
  return CallPeer(to, &synodpb::Peer::Stub::LeaseRenew, request, response, deadline);
}

grpc::Status Transport::LeaseTimeToLive(NodeId to,
                                        const etcdserverpb::LeaseTimeToLiveRequest& request,
                                        etcdserverpb::LeaseTimeToLiveResponse* response,
                                        milliseconds deadline) {
  return CallPeer(to, &synodpb::Peer::Stub::LeaseTimeToLive, request, response, deadline);
}

grpc::Status Transport::ChangeMembers(NodeId to, const synodpb::MemberChangeRequest& request,
                                      synodpb::MemberChangeResponse* response,
                                      milliseconds deadline) {
  return CallPeer(to, &synodpb::Peer::Stub::ChangeMembers, request, response, deadline);
}

void Transport::ReportRemoved(NodeId by) {
  if (removed_reported_.exchange(true)) return;
  spdlog::error("member {:x} says: {}", by.value(), kRemovedMemberMessage);
  if (on_removed_) on_removed_();
}

Result<synodpb::MembersResponse> FetchClusterMembers(const std::vector<std::string>& peer_urls,
                                                     milliseconds deadline_per_url) {
  std::vector<std::string> failures;
  for (const std::string& url : peer_urls) {
    Result<std::string> target = PeerUrlToTarget(url);
    if (!target.ok()) {
      failures.push_back(std::string(target.status().message()));
      continue;
    }
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateChannel(*target, grpc::InsecureChannelCredentials());
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + deadline_per_url);
    synodpb::MembersRequest request;
    synodpb::MembersResponse response;
    const grpc::Status status =
        synodpb::Peer::NewStub(channel)->Members(&context, request, &response);
    if (status.ok()) return response;
    failures.push_back(fmt::format("{}: {}", url, status.error_message()));
  }
  return absl::UnavailableError(
      fmt::format("cannot fetch the cluster's members from {}", absl::StrJoin(failures, "; ")));
}

Status Transport::FetchSnapshot(NodeId from, Index min_applied_index,
                                const std::function<Status(std::string_view chunk)>& sink,
                                milliseconds deadline) {
  std::shared_ptr<grpc::Channel> channel = ChannelTo(from);
  if (channel == nullptr) return FromGrpc(NoAddress(from), "snapshot fetch");
  grpc::ClientContext context;
  AddMetadata(context, from);
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  synodpb::SnapshotRequest request;
  request.set_min_applied_index(min_applied_index.value());
  std::unique_ptr<synodpb::Peer::Stub> stub = synodpb::Peer::NewStub(channel);
  std::unique_ptr<grpc::ClientReader<synodpb::SnapshotChunk>> reader =
      stub->FetchSnapshot(&context, request);
  synodpb::SnapshotChunk chunk;
  Status sink_status;
  while (reader->Read(&chunk)) {
    sink_status = sink(chunk.data());
    if (!sink_status.ok()) {
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!sink_status.ok()) return sink_status;
  if (!status.ok()) {
    return FromGrpc(status, fmt::format("snapshot from member {:x}", from.value()));
  }
  return absl::OkStatus();
}

bool Transport::IsConnected(NodeId id) const {
  absl::ReaderMutexLock lock(&peers_mutex_);
  auto it = peers_.find(id);
  return it != peers_.end() && it->second->connected();
}

Transport::Stats Transport::stats() const {
  Stats stats;
  stats.sent = counters_.sent.load();
  stats.dropped = counters_.dropped.load();
  stats.reconnects = counters_.reconnects.load();
  stats.received = counters_.received.load();
  stats.refused = counters_.refused.load();
  return stats;
}

}  // namespace synod::server
