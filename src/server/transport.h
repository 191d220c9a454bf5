#pragma once

// The peer transport between synod members (ARCHITECTURE.md, "server/"): Raft messages and
// forwarded proposals on one long-lived gRPC client stream per peer, plus unary lease calls and
// snapshot streams.
//
// Sending never blocks the caller (the event loop): each peer has a bounded queue and a sender
// thread of its own that drains it in batches onto the stream. A slow or unreachable peer
// therefore delays only its own thread; when its queue is full, further messages to it are
// dropped and counted, which Raft tolerates (it retransmits). A broken stream is reopened with
// exponential backoff; what could not be sent is dropped.
//
// Every call carries the sender's cluster id and the receiver's member id as metadata; the
// receiver refuses a mismatch with FAILED_PRECONDITION, so members of two clusters never talk.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/types.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "synod/peer.grpc.pb.h"

namespace synod::server {

// Called on gRPC threads; they must not block for long.
struct PeerHandlers {
  std::function<void(raft::Message)> on_raft_message;
  std::function<void(NodeId from, std::string request)> on_forwarded_proposal;
  std::function<grpc::Status(const etcdserverpb::LeaseKeepAliveRequest&,
                             etcdserverpb::LeaseKeepAliveResponse*)>
      on_lease_renew;
  std::function<grpc::Status(const etcdserverpb::LeaseTimeToLiveRequest&,
                             etcdserverpb::LeaseTimeToLiveResponse*)>
      on_lease_time_to_live;
  // The chunk source of a snapshot at an applied index >= min_applied_index; the source returns
  // nullopt after the last chunk.
  std::function<Result<std::function<Result<std::optional<std::string>>()>>(
      Index min_applied_index)>
      on_fetch_snapshot;
};

struct TransportOptions {
  NodeId self;
  uint64_t cluster_id = 0;
  std::vector<std::string> listen_urls;  // "http://127.0.0.1:2380"
  size_t queued_messages_max = 4096;
  // One stream write carries at most this much.
  size_t batch_bytes_max = 4 << 20;
  std::chrono::milliseconds reconnect_backoff_min{50};
  std::chrono::milliseconds reconnect_backoff_max{1000};
};

class Transport {
 public:
  // Snapshots and large append batches travel in one gRPC message.
  static constexpr int kMessageBytesMax = 64 << 20;

  // Starts the peer gRPC server on every listen URL. Fails with a clear message when a URL
  // cannot be bound.
  static Result<std::unique_ptr<Transport>> Start(TransportOptions options,
                                                  PeerHandlers handlers);
  // Stops the server (in-flight calls are cancelled) and every sender thread.
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Stops serving peers: returns once no handler runs any more. The senders keep working, so a
  // caller can stop receiving before it tears down what the handlers use.
  void StopServing();

  // Adds a peer or changes its URLs (the first reachable one is used).
  void SetPeer(NodeId id, std::vector<std::string> peer_urls);
  void RemovePeer(NodeId id);

  // Never block; drop (and count) when the peer is unknown or its queue is full.
  void Send(raft::Message message);
  void SendForward(NodeId to, std::string request);

  // Blocking calls with a deadline, for gRPC handler threads and helper threads, never the
  // event loop.
  grpc::Status LeaseRenew(NodeId to, const etcdserverpb::LeaseKeepAliveRequest& request,
                          etcdserverpb::LeaseKeepAliveResponse* response,
                          std::chrono::milliseconds deadline);
  grpc::Status LeaseTimeToLive(NodeId to, const etcdserverpb::LeaseTimeToLiveRequest& request,
                               etcdserverpb::LeaseTimeToLiveResponse* response,
                               std::chrono::milliseconds deadline);
  // Streams a snapshot from `from`, handing each chunk to `sink` in order. A sink error cancels
  // the stream and is returned.
  Status FetchSnapshot(NodeId from, Index min_applied_index,
                       const std::function<Status(std::string_view chunk)>& sink,
                       std::chrono::milliseconds deadline);

  // True when the last stream write to the peer succeeded.
  bool IsConnected(NodeId id) const;

  struct Stats {
    uint64_t sent = 0;
    uint64_t dropped = 0;
    uint64_t reconnects = 0;
  };
  Stats stats() const;

 private:
  class PeerSender;
  class PeerService;
  // Encoded on the peer's sender thread, not the caller's.
  struct Outgoing {
    std::optional<raft::Message> raft;
    std::string forwarded_request;
  };

  explicit Transport(TransportOptions options);
  void Enqueue(NodeId to, Outgoing message);
  std::shared_ptr<PeerSender> Sender(NodeId id) const;
  void AddMetadata(grpc::ClientContext& context, NodeId to) const;
  // A unary call to `to` with the cluster metadata and a deadline.
  template <typename Request, typename Response>
  grpc::Status CallLeader(NodeId to,
                          grpc::Status (synodpb::Peer::Stub::*method)(grpc::ClientContext*,
                                                                      const Request&, Response*),
                          const Request& request, Response* response,
                          std::chrono::milliseconds deadline);

  const TransportOptions options_;
  std::unique_ptr<PeerService> service_;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex peers_mutex_;
  std::map<NodeId, std::shared_ptr<PeerSender>> peers_;  // Guarded by peers_mutex_.
  mutable std::atomic<uint64_t> dropped_ = 0;  // Counted by the senders too.
};

}  // namespace synod::server
