#pragma once

// etcd's Watch service (etcdserver/api/v3rpc/watch.go, 3.4): one bidirectional stream carries
// many watchers, created, canceled and asked for progress by the client's requests, and the
// events of each, in revision order, from the node's watch hub (kv/watch_hub.h).
//
// Threads, per stream: gRPC's handler thread sends (it drains the stream's outbox and runs the
// hub's catch-up reads for watchers that are behind), and a reader thread of its own receives
// requests. The hub fills the outbox from the apply loop (under the store's lock) and never
// waits for the client: when the outbox is full it refuses, and the watcher catches up from the
// store's history later (kv/watch_hub.h). Responses leave in the order they entered the outbox,
// which is what makes a watcher's "created" response precede its events and a progress
// notification follow every event it vouches for.

#include <chrono>
#include <cstdint>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "server/node.h"

namespace synod::server {

struct WatchServiceOptions {
  // etcd --max-request-bytes: a response of a watcher created with `fragment` is split into
  // pieces of at most this size.
  uint32_t max_request_bytes = 1572864;
  // How often a watcher created with progress_notify that had no events is told the revision it
  // is current at (etcd --experimental-watch-progress-notify-interval, default 10 minutes).
  std::chrono::milliseconds progress_notify_interval{std::chrono::minutes(10)};
};

class WatchService final : public etcdserverpb::Watch::Service {
 public:
  // Limits.
  static constexpr size_t kWatchersPerStreamMax = 10000;
  // The outbox refuses events beyond these (the watcher then catches up from the store).
  static constexpr size_t kOutboxResponsesMax = 1024;
  static constexpr size_t kOutboxEventsMax = 16384;

  WatchService(Node* node, WatchServiceOptions options) : node_(node), options_(options) {}

  grpc::Status Watch(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<etcdserverpb::WatchResponse,
                                              etcdserverpb::WatchRequest>* stream) override;

 private:
  Node* const node_;
  const WatchServiceOptions options_;
};

}  // namespace synod::server
