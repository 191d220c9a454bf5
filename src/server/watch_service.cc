#include "server/watch_service.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "base/assert.h"
#include "kv/watch_hub.h"
#include "server/services.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;
using Clock = std::chrono::steady_clock;
using Stream = grpc::ServerReaderWriter<WatchResponse, WatchRequest>;

// etcd's errors for a create request (mvcc/watcher.go), sent as a canceled "created" response.
constexpr char kEmptyRangeReason[] = "mvcc: watcher range is empty";
constexpr char kDuplicateIdReason[] = "mvcc: duplicate watch ID provided on the WatchStream";
constexpr char kTooManyWatchersReason[] = "synod: too many watchers on this stream";
// How often the sender looks at the call's cancellation while it has nothing to send.
constexpr auto kIdlePoll = std::chrono::milliseconds(100);

class WatchStream final : public kv::WatchSink {
 public:
  WatchStream(Node* node, const WatchServiceOptions& options, grpc::ServerContext* context,
              Stream* stream)
      : node_(node), options_(options), context_(context), stream_(stream) {}

  // Runs the stream until the client goes away or the server shuts down.
  void Run() {
    std::thread reader([this] { ReadRequests(); });
    SendResponses();
    // Wakes the reader if it is still waiting for a request.
    context_->TryCancel();
    reader.join();
    // After this no hub callback can reach this object.
    node_->watch_hub().RemoveAll(this);
  }

  // ---- kv::WatchSink (under the store's lock and the hub's mutex) --------------------------

  bool Deliver(int64_t watch_id, Revision revision, std::vector<mvccpb::Event> events,
               bool from_history) override {
    std::lock_guard lock(mutex_);
    if (!from_history && (outbox_.size() >= WatchService::kOutboxResponsesMax ||
                          outbox_events_ + events.size() > WatchService::kOutboxEventsMax)) {
      return false;
    }
    WatchResponse& response = outbox_.emplace_back();
    response.mutable_header()->set_revision(static_cast<int64_t>(revision.value()));
    response.set_watch_id(watch_id);
    outbox_events_ += events.size();
    for (mvccpb::Event& event : events) *response.add_events() = std::move(event);
    if (auto it = watchers_.find(watch_id); it != watchers_.end()) it->second.quiet = false;
    changed_.notify_one();
    return true;
  }

  void Compacted(int64_t watch_id, Revision compact_revision) override {
    std::lock_guard lock(mutex_);
    // etcd 3.4 sends this with a zero header revision and cancels the watcher (watch.go
    // sendLoop: canceled := wresp.CompactRevision != 0).
    WatchResponse& response = outbox_.emplace_back();
    response.mutable_header();
    response.set_watch_id(watch_id);
    response.set_compact_revision(static_cast<int64_t>(compact_revision.value()));
    response.set_canceled(true);
    watchers_.erase(watch_id);
    changed_.notify_one();
  }

  void CatchUpNeeded() override {
    std::lock_guard lock(mutex_);
    catch_up_needed_ = true;
    changed_.notify_one();
  }

 private:
  struct WatcherOptions {
    bool progress_notify = false;
    bool fragment = false;
    // No events were sent since the last progress tick.
    bool quiet = true;
  };

  void ReadRequests() {
    WatchRequest request;
    while (stream_->Read(&request)) {
      switch (request.request_union_case()) {
        case WatchRequest::kCreateRequest:
          Create(request.create_request());
          break;
        case WatchRequest::kCancelRequest:
          Cancel(request.cancel_request().watch_id());
          break;
        case WatchRequest::kProgressRequest:
          RequestProgress();
          break;
        case WatchRequest::REQUEST_UNION_NOT_SET:
          break;  // etcd ignores an empty request too.
      }
    }
  }

  // etcd's recvLoop for a create request, then mvcc's watchStream.Watch.
  void Create(const etcdserverpb::WatchCreateRequest& request) {
    kv::WatchSpec spec;
    // "\x00 is the smallest key": an empty key watches from the start of the keyspace.
    spec.key = request.key().empty() ? std::string(1, '\0') : request.key();
    spec.range_end = request.range_end();  // "\0" stays: every key >= key (kv/key_range.h).
    spec.prev_kv = request.prev_kv();
    for (int filter : request.filters()) {
      if (filter == etcdserverpb::WatchCreateRequest::NOPUT) spec.filter_put = true;
      if (filter == etcdserverpb::WatchCreateRequest::NODELETE) spec.filter_delete = true;
    }
    const bool bounded_range =
        !spec.range_end.empty() && spec.range_end != std::string_view("\0", 1);
    std::string refusal;
    int64_t watch_id = request.watch_id();
    {
      std::lock_guard lock(mutex_);
      if (bounded_range && spec.key >= spec.range_end) {
        refusal = kEmptyRangeReason;
      } else if (watch_id != 0 && watchers_.contains(watch_id)) {
        refusal = kDuplicateIdReason;
      } else if (watchers_.size() >= WatchService::kWatchersPerStreamMax) {
        refusal = kTooManyWatchersReason;
      } else if (watch_id == 0) {
        // etcd's automatic ids: the lowest unused number counting up from 0, per stream.
        while (watchers_.contains(next_watch_id_)) ++next_watch_id_;
        watch_id = next_watch_id_++;
      }
      if (refusal.empty()) {
        watchers_[watch_id] = WatcherOptions{request.progress_notify(), request.fragment()};
      }
    }
    node_->ReadStore([&](const kv::Store& store) {
      const Revision current = store.current_revision();
      WatchResponse response;
      response.mutable_header()->set_revision(static_cast<int64_t>(current.value()));
      response.set_created(true);
      if (!refusal.empty()) {
        response.set_watch_id(-1);
        response.set_canceled(true);
        response.set_cancel_reason(refusal);
        Enqueue(std::move(response));
        return;
      }
      response.set_watch_id(watch_id);
      // Queued before the hub knows the watcher, so it precedes every event of it.
      Enqueue(std::move(response));
      const Revision start = request.start_revision() == 0
                                 ? current.next()
                                 : Revision(static_cast<uint64_t>(
                                       std::max<int64_t>(1, request.start_revision())));
      node_->watch_hub().Add(this, watch_id, std::move(spec), start, current);
    });
  }

  void Cancel(int64_t watch_id) {
    node_->ReadStore([&](const kv::Store& store) {
      // etcd answers only when there was such a watcher.
      if (!node_->watch_hub().Remove(this, watch_id)) return;
      WatchResponse response;
      response.mutable_header()->set_revision(
          static_cast<int64_t>(store.current_revision().value()));
      response.set_watch_id(watch_id);
      response.set_canceled(true);
      std::lock_guard lock(mutex_);
      watchers_.erase(watch_id);
      EnqueueLocked(std::move(response));
    });
  }

  // etcd 3.4 answers a progress request at once with the current revision and watch id -1.
  // Queued under the store's lock, it follows every event of the revisions it reports.
  void RequestProgress() {
    node_->ReadStore([&](const kv::Store& store) {
      WatchResponse response;
      response.mutable_header()->set_revision(
          static_cast<int64_t>(store.current_revision().value()));
      response.set_watch_id(-1);
      Enqueue(std::move(response));
    });
  }

  // The periodic notification for watchers created with progress_notify that had no events
  // since the last one and are current (etcd's sendLoop progress ticker).
  void NotifyProgress() {
    node_->ReadStore([&](const kv::Store& store) {
      const std::vector<int64_t> synced = node_->watch_hub().SyncedWatchers(this);
      std::lock_guard lock(mutex_);
      for (const int64_t id : synced) {
        auto it = watchers_.find(id);
        if (it == watchers_.end() || !it->second.progress_notify) continue;
        if (it->second.quiet) {
          WatchResponse& response = outbox_.emplace_back();
          response.mutable_header()->set_revision(
              static_cast<int64_t>(store.current_revision().value()));
          response.set_watch_id(id);
        }
      }
      for (auto& [id, watcher] : watchers_) watcher.quiet = true;
      changed_.notify_one();
    });
  }

  void Enqueue(WatchResponse response) {
    std::lock_guard lock(mutex_);
    EnqueueLocked(std::move(response));
  }
  void EnqueueLocked(WatchResponse response) {
    outbox_.push_back(std::move(response));
    changed_.notify_one();
  }

  void SendResponses() {
    Clock::time_point next_progress = Clock::now() + options_.progress_notify_interval;
    for (;;) {
      std::optional<WatchResponse> response;
      bool catch_up = false;
      bool fragment = false;
      {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, kIdlePoll, [&] {
          return !outbox_.empty() ||
                 (catch_up_needed_ && outbox_.size() < WatchService::kOutboxResponsesMax / 2);
        });
        if (!outbox_.empty()) {
          response = std::move(outbox_.front());
          outbox_.pop_front();
          outbox_events_ -= static_cast<size_t>(response->events_size());
          auto it = watchers_.find(response->watch_id());
          fragment = it != watchers_.end() && it->second.fragment;
        } else if (catch_up_needed_) {
          catch_up_needed_ = false;
          catch_up = true;
        }
      }
      if (context_->IsCancelled()) return;
      if (response.has_value()) {
        if (!Send(std::move(*response), fragment)) return;
        continue;
      }
      if (catch_up) {
        Result<bool> more = node_->ReadStore([&](const kv::Store& store) {
          return node_->watch_hub().CatchUp(store, this);
        });
        if (!more.ok()) {
          // The store failed to read its own history; the node stops on storage failures of
          // its own, so end this stream and let the client retry elsewhere.
          spdlog::error("watch catch-up failed: {}", more.status().ToString());
          return;
        }
        if (*more) CatchUpNeeded();
        continue;
      }
      if (Clock::now() >= next_progress) {
        NotifyProgress();
        next_progress = Clock::now() + options_.progress_notify_interval;
      }
    }
  }

  // Fills in the header's member fields (the revision was set when the response was made) and
  // writes, in fragments when the watcher asked for them and the response is too large.
  bool Send(WatchResponse response, bool fragment) {
    etcdserverpb::ResponseHeader* header = response.mutable_header();
    header->set_cluster_id(node_->cluster_id());
    header->set_member_id(node_->id().value());
    header->set_raft_term(node_->status().term.value());
    if (!fragment || response.ByteSizeLong() <= options_.max_request_bytes ||
        response.events_size() <= 1) {
      return stream_->Write(response);
    }
    // etcd's sendFragments: as many events per piece as fit, at least one; every piece but
    // the last carries fragment=true.
    WatchResponse piece = response;
    piece.clear_events();
    const size_t base_bytes = piece.ByteSizeLong();
    size_t piece_bytes = base_bytes;
    for (int i = 0; i < response.events_size(); ++i) {
      const size_t event_bytes = response.events(i).ByteSizeLong() + 8;
      if (piece.events_size() > 0 && piece_bytes + event_bytes > options_.max_request_bytes) {
        piece.set_fragment(true);
        if (!stream_->Write(piece)) return false;
        piece.clear_events();
        piece_bytes = base_bytes;
      }
      *piece.add_events() = response.events(i);
      piece_bytes += event_bytes;
    }
    piece.set_fragment(false);
    return stream_->Write(piece);
  }

  Node* const node_;
  const WatchServiceOptions& options_;
  grpc::ServerContext* const context_;
  Stream* const stream_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<WatchResponse> outbox_;          // Guarded by mutex_.
  size_t outbox_events_ = 0;                  // Guarded by mutex_.
  bool catch_up_needed_ = false;              // Guarded by mutex_.
  std::map<int64_t, WatcherOptions> watchers_;  // Guarded by mutex_; the stream's live ids.
  int64_t next_watch_id_ = 0;                 // Guarded by mutex_.
};

}  // namespace

grpc::Status WatchService::Watch(grpc::ServerContext* context, Stream* stream) {
  if (grpc::Status refused = RefuseOnLearner(*node_); !refused.ok()) return refused;
  WatchStream watch_stream(node_, options_, context, stream);
  watch_stream.Run();
  return grpc::Status::OK;
}

}  // namespace synod::server
