#include "server/transport.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <thread>

#include "absl/strings/numbers.h"
#include "server/config.h"
#include "server/raft_codec.h"
#include "synod/peer.grpc.pb.h"

namespace synod::server {
namespace {

constexpr char kClusterIdKey[] = "synod-cluster-id";
constexpr char kToKey[] = "synod-to";
constexpr char kFromKey[] = "synod-from";

std::shared_ptr<grpc::Channel> NewChannel(const std::string& url) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(Transport::kMessageBytesMax);
  arguments.SetMaxSendMessageSize(Transport::kMessageBytesMax);
  // Reconnect attempts are paced by the sender's own backoff; keep gRPC's short.
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  std::string target = url;
  if (auto parsed = ParseUrl(url); parsed.ok()) target = parsed->HostPort();
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
}

std::optional<uint64_t> HexMetadata(const grpc::ServerContext& context, const char* key) {
  auto it = context.client_metadata().find(key);
  if (it == context.client_metadata().end()) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleHexAtoi(absl::string_view(it->second.data(), it->second.size()), &value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Receiving.

class Transport::PeerService final : public synodpb::Peer::Service {
 public:
  PeerService(NodeId self, uint64_t cluster_id, PeerHandlers handlers)
      : self_(self), cluster_id_(cluster_id), handlers_(std::move(handlers)) {}

  grpc::Status Stream(grpc::ServerContext* context, grpc::ServerReader<synodpb::PeerBatch>* reader,
                      synodpb::PeerStreamSummary*) override {
    if (grpc::Status status = Check(*context); !status.ok()) return status;
    const NodeId from(HexMetadata(*context, kFromKey).value_or(0));
    synodpb::PeerBatch batch;
    while (reader->Read(&batch)) {
      for (synodpb::PeerMessage& message : *batch.mutable_messages()) {
        if (message.has_raft()) {
          auto decoded = DecodeRaftMessage(message.raft());
          if (!decoded.ok()) {
            spdlog::warn("dropped a malformed message from {:x}: {}", from.value(),
                         decoded.status().ToString());
            continue;
          }
          handlers_.on_raft_message(std::move(*decoded));
        } else if (message.kind_case() == synodpb::PeerMessage::kForwardedRequest) {
          handlers_.on_forwarded_proposal(from, std::move(*message.mutable_forwarded_request()));
        }
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status LeaseRenew(grpc::ServerContext* context,
                          const etcdserverpb::LeaseKeepAliveRequest* request,
                          etcdserverpb::LeaseKeepAliveResponse* response) override {
    if (grpc::Status status = Check(*context); !status.ok()) return status;
    return handlers_.on_lease_renew(*request, response);
  }

  grpc::Status LeaseTimeToLive(grpc::ServerContext* context,
                               const etcdserverpb::LeaseTimeToLiveRequest* request,
                               etcdserverpb::LeaseTimeToLiveResponse* response) override {
    if (grpc::Status status = Check(*context); !status.ok()) return status;
    return handlers_.on_lease_time_to_live(*request, response);
  }

  grpc::Status FetchSnapshot(grpc::ServerContext* context, const synodpb::SnapshotRequest* request,
                             grpc::ServerWriter<synodpb::SnapshotChunk>* writer) override {
    if (grpc::Status status = Check(*context); !status.ok()) return status;
    auto source = handlers_.on_fetch_snapshot(Index(request->min_applied_index()));
    if (!source.ok()) {
      return grpc::Status(static_cast<grpc::StatusCode>(source.status().code()),
                          std::string(source.status().message()));
    }
    synodpb::SnapshotChunk chunk;
    while (!context->IsCancelled()) {
      Result<std::optional<std::string>> next = (*source)();
      if (!next.ok()) {
        return grpc::Status(grpc::StatusCode::INTERNAL, std::string(next.status().message()));
      }
      if (!next->has_value()) return grpc::Status::OK;
      chunk.set_data(std::move(**next));
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "snapshot fetch cancelled");
  }

 private:
  grpc::Status Check(const grpc::ServerContext& context) const {
    const std::optional<uint64_t> cluster = HexMetadata(context, kClusterIdKey);
    const std::optional<uint64_t> to = HexMetadata(context, kToKey);
    if (!cluster || *cluster != cluster_id_) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          fmt::format("peer is of cluster {:x}, this member is of cluster {:x}",
                                      cluster.value_or(0), cluster_id_));
    }
    if (!to || NodeId(*to) != self_) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          fmt::format("message for member {:x} reached member {:x}",
                                      to.value_or(0), self_.value()));
    }
    return grpc::Status::OK;
  }

  const NodeId self_;
  const uint64_t cluster_id_;
  const PeerHandlers handlers_;
};

// ---------------------------------------------------------------------------------------------
// Sending: one thread and one stream per peer.

class Transport::PeerSender {
 public:
  PeerSender(const Transport* transport, NodeId id, std::vector<std::string> urls)
      : transport_(transport), id_(id) {
    SetUrls(std::move(urls));
    thread_ = std::thread([this] { Run(); });
  }

  ~PeerSender() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    changed_.notify_all();
    thread_.join();
  }

  void SetUrls(std::vector<std::string> urls) {
    std::lock_guard lock(mutex_);
    if (urls == urls_) return;
    urls_ = std::move(urls);
    channel_ = urls_.empty() ? nullptr : NewChannel(urls_.front());
    if (context_ != nullptr) context_->TryCancel();  // Reconnect to the new address.
  }

  std::shared_ptr<grpc::Channel> channel() const {
    std::lock_guard lock(mutex_);
    return channel_;
  }

  bool Enqueue(Outgoing message, size_t queued_max) {
    {
      std::lock_guard lock(mutex_);
      if (queue_.size() >= queued_max) return false;
      queue_.push_back(std::move(message));
    }
    changed_.notify_one();
    return true;
  }

  bool connected() const { return connected_.load(); }
  uint64_t sent() const { return sent_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run() {
    auto backoff = transport_->options_.reconnect_backoff_min;
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientWriter<synodpb::PeerBatch>> writer;
    std::unique_ptr<synodpb::Peer::Stub> stub;
    synodpb::PeerStreamSummary summary;
    std::deque<Outgoing> taken;
    while (true) {
      std::shared_ptr<grpc::Channel> channel;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        taken.swap(queue_);
        channel = channel_;
        if (writer == nullptr && channel != nullptr) {
          context = std::make_unique<grpc::ClientContext>();
          transport_->AddMetadata(*context, id_);
          context_ = context.get();
        }
      }
      if (channel == nullptr) {
        transport_->dropped_ += taken.size();
        taken.clear();
        continue;
      }
      if (writer == nullptr) {
        stub = synodpb::Peer::NewStub(channel);
        writer = stub->Stream(context.get(), &summary);
      }
      bool ok = true;
      while (!taken.empty() && ok) {
        synodpb::PeerBatch batch;
        size_t bytes = 0;
        while (!taken.empty() && bytes < transport_->options_.batch_bytes_max) {
          synodpb::PeerMessage* message = batch.add_messages();
          if (taken.front().raft) {
            EncodeRaftMessage(*taken.front().raft, message->mutable_raft());
          } else {
            message->set_forwarded_request(std::move(taken.front().forwarded_request));
          }
          bytes += message->ByteSizeLong();
          taken.pop_front();
        }
        ok = writer->Write(batch);
        if (ok) sent_ += batch.messages_size();
      }
      if (ok) {
        connected_ = true;
        backoff = transport_->options_.reconnect_backoff_min;
        continue;
      }
      // The stream broke (peer down, restarted, or the address changed): drop what is left,
      // close the stream and reconnect after a pause, so a dead peer costs little.
      connected_ = false;
      transport_->dropped_ += taken.size();
      taken.clear();
      {
        std::lock_guard lock(mutex_);
        context_ = nullptr;
      }
      writer->WritesDone();
      grpc::Status status = writer->Finish();
      writer.reset();
      context.reset();
      ++reconnects_;
      spdlog::debug("stream to member {:x} broke ({}); retrying in {} ms", id_.value(),
                    status.error_message(), backoff.count());
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, backoff, [&] { return stopping_; });
      if (stopping_) break;
      // Messages queued during the pause are stale; Raft resends what matters.
      transport_->dropped_ += queue_.size();
      queue_.clear();
      backoff = std::min(backoff * 2, transport_->options_.reconnect_backoff_max);
    }
    if (writer != nullptr) {
      context->TryCancel();
      writer->Finish();
    }
  }

  const Transport* const transport_;
  const NodeId id_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> urls_;            // Guarded by mutex_.
  std::shared_ptr<grpc::Channel> channel_;   // Guarded by mutex_.
  std::deque<Outgoing> queue_;               // Guarded by mutex_.
  grpc::ClientContext* context_ = nullptr;   // Guarded by mutex_; the open stream's.
  bool stopping_ = false;                    // Guarded by mutex_.
  std::atomic<bool> connected_ = false;
  std::atomic<uint64_t> sent_ = 0;
  std::atomic<uint64_t> reconnects_ = 0;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------

Transport::Transport(TransportOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<Transport>> Transport::Start(TransportOptions options,
                                                    PeerHandlers handlers) {
  std::unique_ptr<Transport> transport(new Transport(std::move(options)));
  transport->service_ = std::make_unique<PeerService>(
      transport->options_.self, transport->options_.cluster_id, std::move(handlers));
  grpc::ServerBuilder builder;
  std::vector<int> ports(transport->options_.listen_urls.size(), 0);
  std::vector<std::string> addresses;
  for (size_t i = 0; i < ports.size(); ++i) {
    auto url = ParseUrl(transport->options_.listen_urls[i]);
    if (!url.ok()) return url.status();
    addresses.push_back(url->HostPort());
    builder.AddListeningPort(addresses.back(), grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(kMessageBytesMax);
  builder.SetMaxSendMessageSize(kMessageBytesMax);
  builder.RegisterService(transport->service_.get());
  transport->server_ = builder.BuildAndStart();
  for (size_t i = 0; i < ports.size(); ++i) {
    if (transport->server_ == nullptr || ports[i] == 0) {
      return absl::UnavailableError(
          fmt::format("cannot listen for peers on {} (address in use or not local?)",
                      addresses[i]));
    }
  }
  return transport;
}

Transport::~Transport() {
  StopServing();
  std::map<NodeId, std::shared_ptr<PeerSender>> peers;
  {
    std::lock_guard lock(peers_mutex_);
    peers.swap(peers_);
  }
  peers.clear();  // Joins every sender thread.
}

void Transport::StopServing() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server_->Wait();
  server_.reset();
}

void Transport::SetPeer(NodeId id, std::vector<std::string> peer_urls) {
  if (id == options_.self) return;
  std::lock_guard lock(peers_mutex_);
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    it->second->SetUrls(std::move(peer_urls));
    return;
  }
  peers_.emplace(id, std::make_shared<PeerSender>(this, id, std::move(peer_urls)));
}

void Transport::RemovePeer(NodeId id) {
  std::shared_ptr<PeerSender> removed;
  {
    std::lock_guard lock(peers_mutex_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    removed = std::move(it->second);
    peers_.erase(it);
  }
}

std::shared_ptr<Transport::PeerSender> Transport::Sender(NodeId id) const {
  std::lock_guard lock(peers_mutex_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void Transport::Enqueue(NodeId to, Outgoing message) {
  std::shared_ptr<PeerSender> sender = Sender(to);
  if (sender == nullptr || !sender->Enqueue(std::move(message), options_.queued_messages_max)) {
    ++dropped_;
  }
}

void Transport::Send(raft::Message message) {
  const NodeId to = message.to;
  Enqueue(to, Outgoing{std::move(message), {}});
}

void Transport::SendForward(NodeId to, std::string request) {
  Enqueue(to, Outgoing{std::nullopt, std::move(request)});
}

void Transport::AddMetadata(grpc::ClientContext& context, NodeId to) const {
  context.AddMetadata(kClusterIdKey, fmt::format("{:x}", options_.cluster_id));
  context.AddMetadata(kToKey, fmt::format("{:x}", to.value()));
  context.AddMetadata(kFromKey, fmt::format("{:x}", options_.self.value()));
}

namespace {
grpc::Status UnknownPeer(NodeId id) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      fmt::format("etcdserver: no peer address for member {:x}", id.value()));
}
}  // namespace

template <typename Request, typename Response>
grpc::Status Transport::CallLeader(
    NodeId to, grpc::Status (synodpb::Peer::Stub::*method)(grpc::ClientContext*, const Request&,
                                                           Response*),
    const Request& request, Response* response, std::chrono::milliseconds deadline) {
  std::shared_ptr<PeerSender> sender = Sender(to);
  if (sender == nullptr || sender->channel() == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        fmt::format("etcdserver: no peer address for member {:x}", to.value()));
  }
  grpc::ClientContext context;
  AddMetadata(context, to);
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  auto stub = synodpb::Peer::NewStub(sender->channel());
  return ((*stub).*method)(&context, request, response);
}

grpc::Status Transport::LeaseRenew(NodeId to, const etcdserverpb::LeaseKeepAliveRequest& request,
                                   etcdserverpb::LeaseKeepAliveResponse* response,
                                   std::chrono::milliseconds deadline) {
  return CallLeader(to, &synodpb::Peer::Stub::LeaseRenew, request, response, deadline);
}

grpc::Status Transport::LeaseTimeToLive(NodeId to,
                                        const etcdserverpb::LeaseTimeToLiveRequest& request,
                                        etcdserverpb::LeaseTimeToLiveResponse* response,
                                        std::chrono::milliseconds deadline) {
  return CallLeader(to, &synodpb::Peer::Stub::LeaseTimeToLive, request, response, deadline);
}

Status Transport::FetchSnapshot(NodeId from, Index min_applied_index,
                                const std::function<Status(std::string_view chunk)>& sink,
                                std::chrono::milliseconds deadline) {
  std::shared_ptr<PeerSender> sender = Sender(from);
  if (sender == nullptr || sender->channel() == nullptr) {
    return absl::UnavailableError(fmt::format("no peer address for member {:x}", from.value()));
  }
  grpc::ClientContext context;
  AddMetadata(context, from);
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  synodpb::SnapshotRequest request;
  request.set_min_applied_index(min_applied_index.value());
  auto reader = synodpb::Peer::NewStub(sender->channel())->FetchSnapshot(&context, request);
  synodpb::SnapshotChunk chunk;
  Status sink_status;
  while (reader->Read(&chunk)) {
    sink_status = sink(chunk.data());
    if (!sink_status.ok()) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!sink_status.ok()) return sink_status;
  if (!status.ok()) {
    return Status(static_cast<absl::StatusCode>(status.error_code()),
                  fmt::format("snapshot from member {:x}: {}", from.value(),
                              status.error_message()));
  }
  return absl::OkStatus();
}

bool Transport::IsConnected(NodeId id) const {
  std::shared_ptr<PeerSender> sender = Sender(id);
  return sender != nullptr && sender->connected();
}

Transport::Stats Transport::stats() const {
  Stats stats;
  stats.dropped = dropped_.load();
  std::lock_guard lock(peers_mutex_);
  for (const auto& [id, sender] : peers_) {
    stats.sent += sender->sent();
    stats.reconnects += sender->reconnects();
  }
  return stats;
}

}  // namespace synod::server
