#pragma once

// The peer transport between synod members (ARCHITECTURE.md, "server/"): Raft messages and
// forwarded proposals on one long-lived gRPC client stream per peer, plus unary lease calls and
// pulled snapshot streams (proto/synod/peer.proto).
//
// Sending never blocks the caller (the event loop). Each peer has a bounded queue, drained in
// batches onto the stream with gRPC's callback API: when the stream is idle, Send encodes the
// queued messages and starts the write on the caller's thread, and each finished write starts
// the next from gRPC's callback thread, so no thread wakes per batch only to hand it to gRPC.
// One write per peer is in flight at a time; a slow or unreachable peer fills only its own
// queue, and when that is full further messages to it are dropped and counted. Raft tolerates
// that: it retransmits what matters (Raft 5.3, "if followers crash or run slowly, or if network
// packets are lost, the leader retries AppendEntries RPCs indefinitely").
//
// Connection life cycle, per peer, on a sender thread of its own (the only blocking calls):
//   - The sender connects as soon as the peer is known, not at the first message, so that
//     IsConnected means something for a peer we have not yet had reason to talk to, and so that
//     the first vote request of an election does not wait for a TCP handshake.
//   - Connecting is a Handshake call (the receiver checks cluster and member id) followed by
//     opening the stream. A refused handshake is logged once with the receiver's reason
//     ("peer is of cluster 7, this node is of cluster 8") rather than showing up as a stream that
//     dies after its first write.
//   - When a stream that has carried messages breaks (typically: the peer restarted), the sender
//     reconnects at once and writes the failed batch again, once; a peer restart therefore costs
//     no message. A write is not even started while the channel is not READY (its connection
//     died under the stream, and gRPC would take the bytes and lose them): the messages wait
//     and the sender reconnects first. Otherwise what could not be written is dropped, and
//     connection attempts back off exponentially from reconnect_backoff_min to
//     reconnect_backoff_max. Messages queued while waiting go out on the next stream if it
//     opens, and are dropped if it does not.
//   - HTTP/2 keepalive pings (both directions) detect a peer that vanished without closing its
//     connection (power loss, partition) within a few seconds instead of TCP's minutes.
//
// Ordering: messages to one peer arrive in the order Send was called while one stream lasts.
// Across a reconnect, messages may be lost (and, rarely, the tail of the old stream may still be
// delivered after the head of the new one); Raft tolerates loss, duplication and reordering.
//
// Identity: every call carries the sender's cluster id and member id and the receiver's member
// id as metadata; the receiver refuses a mismatch with FAILED_PRECONDITION, so members of two
// clusters never talk, and a member never takes another member's messages.
//
// Departures from the first sketch of this interface, and why:
//   - Identity is metadata rather than fields of PeerBatch/SnapshotRequest (peer.proto explains).
//   - The forwarded proposal stays `bytes forwarded_request`, not a wrapper message: the field
//     had already shipped as bytes, and a field's type never changes.
//   - A Handshake call precedes each stream (above).
//   - StopServing() exists so that the process can stop the handlers before it destroys what they
//     use, while the node still sends (main.cc's shutdown order).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/ids.h"
#include "base/status.h"
#include "consensus/raft/types.h"
#include "etcd/etcdserverpb/rpc.pb.h"
#include "server/peer_message.h"
#include "synod/peer.pb.h"

namespace synod::server {

// What the transport does with what peers send. Every handler must be set.
// Threading: called on gRPC server threads, concurrently with each other. One peer's stream is
// read on gRPC's callback API, one batch at a time, so its messages arrive in order; the other
// calls have a thread each. They must not block: a blocked on_raft_message stalls that peer's
// stream, which backs up into the peer's queue (and then its drops), and it holds one of gRPC's
// few callback threads, which other streams and clients share.
struct PeerHandlers {
  // A decoded, well-formed message addressed to this member by the peer it says it is from.
  std::function<void(raft::Message)> on_raft_message;
  // The same for a Multi-Paxos message (server/peer_message.h), which members on the
  // multipaxos engine send. Optional: a transport without it refuses them.
  std::function<void(PeerMessage)> on_multipaxos_message;
  // A serialized synodpb::Request that `from` wants the leader (this member, it thinks) to
  // propose.
  std::function<void(NodeId from, std::string request)> on_forwarded_proposal;
  // The returned status goes back to the asking member verbatim (etcd's clients match on the
  // error text, so the asking member passes it on unchanged).
  std::function<grpc::Status(const etcdserverpb::LeaseKeepAliveRequest&,
                             etcdserverpb::LeaseKeepAliveResponse*)>
      on_lease_renew;
  std::function<grpc::Status(const etcdserverpb::LeaseTimeToLiveRequest&,
                             etcdserverpb::LeaseTimeToLiveResponse*)>
      on_lease_time_to_live;
  // The chunk source of a snapshot at an applied index >= min_applied_index. The source is called
  // on the same thread until it returns nullopt (after the last chunk) or an error, or until the
  // asking member goes away; it is destroyed on that thread. An error from either is passed to the
  // asking member with its code.
  std::function<Result<std::function<Result<std::optional<std::string>>()>>(
      Index min_applied_index)>
      on_fetch_snapshot;

  // Membership (server/members.h). These are optional: a transport without them answers the
  // calls UNIMPLEMENTED and refuses nobody as removed.
  // A change to the members asked of this member as the leader; the status goes back verbatim.
  std::function<grpc::Status(const synodpb::MemberChangeRequest&, synodpb::MemberChangeResponse*)>
      on_change_members;
  // The cluster id and member records, for a member about to join (no identity check).
  std::function<grpc::Status(synodpb::MembersResponse*)> on_members;
  // Whether `id` has been removed from the cluster: its calls and streams are then refused with
  // kRemovedMemberMessage, which tells it to stop. Must be cheap: asked once per received batch.
  std::function<bool(NodeId id)> is_removed_member;
  // A peer refused this member with kRemovedMemberMessage. Called on a sender thread, at most
  // once per transport.
  std::function<void()> on_removed;
};

// The refusal a removed member gets from its former peers (etcd's rafthttp answers 410 Gone with
// the same words), code FAILED_PRECONDITION.
inline constexpr std::string_view kRemovedMemberMessage =
    "the member has been permanently removed from the cluster";

// Limits. Options outside them are refused by Start, never adjusted.
inline constexpr size_t kPeerQueuedMessagesMaxDefault = 4096;
inline constexpr size_t kPeerQueuedMessagesLimit = 1 << 20;
// Bounds the memory one peer's queue holds; an AppendEntries can carry a megabyte
// (raft::Config::append_entries_bytes_max), so a count alone would allow gigabytes.
inline constexpr size_t kPeerQueuedBytesMaxDefault = 64 << 20;
inline constexpr size_t kPeerBatchBytesMaxDefault = 4 << 20;
// The largest gRPC message on peer channels, either way. Large enough for a storage snapshot
// chunk at its limit (storage::kSnapshotChunkBytesLimit, 64 MiB) plus its framing, and for the
// biggest batch; gRPC's default (4 MiB) is not.
inline constexpr size_t kPeerMessageBytesMax = (64 << 20) + (1 << 20);

struct TransportOptions {
  // This member. Not kNoNode.
  NodeId self;
  uint64_t cluster_id = 0;
  // Where to serve peers: "http://host:port", at least one. Port 0 picks a free port (tests);
  // listen_urls() tells which.
  std::vector<std::string> listen_urls;
  // Per peer. In [1, kPeerQueuedMessagesLimit].
  size_t queued_messages_max = kPeerQueuedMessagesMaxDefault;
  // Per peer, estimated encoded bytes. At least 1; a single message larger than this is still
  // queued when the queue is empty, so a big AppendEntries is never starved.
  size_t queued_bytes_max = kPeerQueuedBytesMaxDefault;
  // One stream write carries at most this much, unless a single message is larger (up to
  // kPeerMessageBytesMax). In [1, kPeerMessageBytesMax].
  size_t batch_bytes_max = kPeerBatchBytesMaxDefault;
  // Pause after a failed connection attempt, doubling up to the max. 0 < min <= max <= 1 min.
  std::chrono::milliseconds reconnect_backoff_min{50};
  std::chrono::milliseconds reconnect_backoff_max{1000};
  // How long one connection attempt waits for the peer to answer its handshake, through gRPC's
  // own reconnects (so a peer that comes up meanwhile is found at once). Bounds the wait on a
  // silent peer, which would otherwise hold the attempt for TCP's connect timeout; an unreachable
  // peer costs one attempt per handshake_timeout plus backoff. In (0, 1 min].
  std::chrono::milliseconds handshake_timeout{1000};
};

// Asks the members at `peer_urls`, in turn, for the cluster's id and member records (peer.proto
// Members), for a member started with --initial-cluster-state existing that does not know its
// own id yet. Each URL gets at most `deadline_per_url`. Unavailable naming every URL tried when
// none answers.
Result<synodpb::MembersResponse> FetchClusterMembers(const std::vector<std::string>& peer_urls,
                                                     std::chrono::milliseconds deadline_per_url);

// "http://host:port" -> "host:port", the gRPC target. Errors (kInvalidArgument): https (TLS is
// not supported), another scheme, a path, no port.
Result<std::string> PeerUrlToTarget(std::string_view url);

class Transport {
 public:
  // Binds every listen URL and starts serving peers. Errors: kInvalidArgument for options
  // outside the limits above or an unusable URL; kUnavailable when an address cannot be bound,
  // with the reason ("listen on 127.0.0.1:2380: address already in use"). Another process (or
  // transport) on the same port is refused: SO_REUSEPORT is off, so two members never share a
  // port silently.
  // Precondition: every handler is set (asserted).
  static Result<std::unique_ptr<Transport>> Start(TransportOptions options, PeerHandlers handlers);
  // Stops serving (in-flight peer calls are cancelled) and every sender; returns promptly even
  // when peers are unreachable, since every blocking call of a sender thread is cancellable.
  // Messages still queued are dropped.
  // Precondition: no other thread uses the transport (in particular none is inside LeaseRenew,
  // LeaseTimeToLive or FetchSnapshot).
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Stops serving peers: returns once no handler runs and none will. Sending keeps working, so
  // the caller can stop the handlers before tearing down what they use. Idempotent.
  // Threading: not concurrently with itself.
  void StopServing();

  // The listen URLs as bound, with the actual port where the option said 0.
  const std::vector<std::string>& listen_urls() const { return listen_urls_bound_; }

  // Adds a peer, or changes its URLs (an open stream is closed and the new address dialled at
  // once). With several URLs the sender dials them in turn until one answers. URLs that
  // PeerUrlToTarget refuses are logged and skipped; a peer left without any is unreachable.
  // `id` == self is ignored, so a caller may pass the whole cluster.
  // Threading: any thread; never blocks on the network.
  void SetPeer(NodeId id, std::vector<std::string> peer_urls);
  // Forgets a peer, dropping what is queued for it. Returns once its sender thread has stopped,
  // which is prompt (see ~Transport). Unknown ids are ignored.
  void RemovePeer(NodeId id);

  // Queue for the peer's sender. Never blocks on the network; drops (and counts) when the peer is
  // unknown or its queue is full. Threading: any thread.
  void Send(PeerMessage message);
  void SendForward(NodeId to, std::string request);

  // A unary call to member `to`, waiting at most `deadline`. The status is the peer handler's,
  // untouched, or gRPC's when the call did not get there (UNAVAILABLE for an unknown or
  // unreachable member, DEADLINE_EXCEEDED). It does not wait for a peer that is known to be
  // down (gRPC's fail-fast): the client retries, which beats holding it for the deadline.
  // Threading: blocks; for gRPC handler threads and helper threads, never the event loop.
  grpc::Status LeaseRenew(NodeId to, const etcdserverpb::LeaseKeepAliveRequest& request,
                          etcdserverpb::LeaseKeepAliveResponse* response,
                          std::chrono::milliseconds deadline);
  grpc::Status LeaseTimeToLive(NodeId to, const etcdserverpb::LeaseTimeToLiveRequest& request,
                               etcdserverpb::LeaseTimeToLiveResponse* response,
                               std::chrono::milliseconds deadline);
  // Asks the leader `to` for a change to the members (peer.proto ChangeMembers). Like LeaseRenew.
  grpc::Status ChangeMembers(NodeId to, const synodpb::MemberChangeRequest& request,
                             synodpb::MemberChangeResponse* response,
                             std::chrono::milliseconds deadline);
  // Pulls a snapshot at applied index >= min_applied_index from `from`, handing each chunk to
  // `sink` in order; returns when the stream ends. A sink error cancels the stream and is
  // returned as is; a remote or transport error keeps its code and names the member. The whole
  // fetch must finish within `deadline`.
  // Threading: blocks, like LeaseRenew.
  Status FetchSnapshot(NodeId from, Index min_applied_index,
                       const std::function<Status(std::string_view chunk)>& sink,
                       std::chrono::milliseconds deadline);

  // True while a stream to the peer is open on a live connection, i.e. the peer answered our
  // last handshake and nothing failed since (etcd's "endpoint health" and member status). A peer
  // that vanished silently (partition, power loss) reads as connected until keepalive gives up on
  // it, a few seconds.
  bool IsConnected(NodeId id) const;

  // Monotonic counters over the transport's life (peers removed included).
  struct Stats {
    // Messages written to a peer's stream (handed to gRPC; a connection that dies right after
    // may still lose them).
    uint64_t sent = 0;
    // Messages given to Send/SendForward and never written: unknown peer, full queue, peer
    // unreachable, stream broken, larger than kPeerMessageBytesMax, peer removed, shutdown.
    uint64_t dropped = 0;
    // Streams opened to a peer that had had one before.
    uint64_t reconnects = 0;
    // Messages from peers handed to the handlers.
    uint64_t received = 0;
    // Messages and calls from peers refused: wrong cluster or member, malformed message.
    uint64_t refused = 0;
  };
  Stats stats() const;

 private:
  class PeerSender;
  class PeerService;
  struct Counters {
    std::atomic<uint64_t> sent = 0;
    std::atomic<uint64_t> dropped = 0;
    std::atomic<uint64_t> reconnects = 0;
    std::atomic<uint64_t> received = 0;
    std::atomic<uint64_t> refused = 0;
  };

  struct Outgoing;

  explicit Transport(TransportOptions options);
  // Queues for the peer's sender, or counts the drop.
  void Enqueue(NodeId to, Outgoing message);
  // The current channel to `id`, or null when the peer is unknown or has no usable URL.
  std::shared_ptr<grpc::Channel> ChannelTo(NodeId id) const;
  // Calls on_removed once (a sender thread heard kRemovedMemberMessage from `by`).
  void ReportRemoved(NodeId by);
  // Adds this member's identity and the receiver's to an outgoing call.
  void AddMetadata(grpc::ClientContext& context, NodeId to) const;
  // One unary Peer call to `to`, with the cluster metadata and `deadline`; gRPC's UNAVAILABLE
  // when `to` has no address.
  // `method` is a synodpb::Peer::Stub member function (transport.cc).
  template <typename StubMethod, typename Request, typename Response>
  grpc::Status CallPeer(NodeId to, StubMethod method, const Request& request,
                        Response* response, std::chrono::milliseconds deadline);

  const TransportOptions options_;
  Counters counters_;
  // PeerHandlers::on_removed, and whether it has been called.
  std::function<void()> on_removed_;
  std::atomic<bool> removed_reported_ = false;
  std::vector<std::string> listen_urls_bound_;  // Set by Start, then constant.
  std::unique_ptr<PeerService> service_;
  std::unique_ptr<grpc::Server> server_;  // Null once StopServing ran.

  // Send holds it shared while it queues, so RemovePeer (exclusive) never destroys a sender that
  // a Send is using, and the thread joins happen outside it.
  mutable absl::Mutex peers_mutex_;
  std::map<NodeId, std::unique_ptr<PeerSender>> peers_ ABSL_GUARDED_BY(peers_mutex_);
};

}  // namespace synod::server
