// watch: --watchers watchers on the key prefix, spread over --streams Watch streams, while a
// writer puts (the put workload with sequential keys, --clients outstanding, --rate). Measures
// delivery latency from the put's answer to each watcher's event, and checks that every watcher
// sees every acknowledged put exactly once, in revision order.

#include <absl/synchronization/mutex.h>

#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "delivery_check.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "load.h"

namespace synod::bench {
namespace {

using etcdserverpb::Watch;

// When each acknowledged put (by revision) was answered; written by the writer, read by the
// watch threads.
class AckTable {
 public:
  void Add(int64_t revision, Nanos acked_ns) {
    absl::MutexLock lock(&mutex_);
    acked_ns_.emplace(revision, acked_ns);
  }
  std::optional<Nanos> Find(int64_t revision) const {
    absl::MutexLock lock(&mutex_);
    const auto found = acked_ns_.find(revision);
    if (found == acked_ns_.end()) return std::nullopt;
    return found->second;
  }
  uint64_t size() const {
    absl::MutexLock lock(&mutex_);
    return acked_ns_.size();
  }

 private:
  mutable absl::Mutex mutex_;
  std::unordered_map<int64_t, Nanos> acked_ns_ ABSL_GUARDED_BY(mutex_);
};

// What the watch threads and the writer share.
struct WatchRun {
  const Options& options;
  AckTable acks;
  std::atomic<uint32_t> watchers_created{0};
  // Events accepted in revision order so far (delivered or awaiting their put's answer).
  std::atomic<uint64_t> events_in_order{0};
  // Set once the writer has finished: then the watch threads wait for the expected events, at
  // most until the drain deadline.
  std::atomic<bool> writer_done{false};
  std::atomic<Nanos> drain_deadline_ns{0};
  std::atomic<uint64_t> events_expected{0};
};

// The prefix's range end as etcd computes it (clientv3.GetPrefixRangeEnd): the prefix with its
// last byte below 0xff incremented and what follows dropped.
std::string PrefixRangeEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(prefix.back() + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

class WatchStream {
 public:
  WatchStream(WatchRun* run, Watch::Stub* stub, uint32_t watchers, grpc::CompletionQueue* queue,
              LoadResult* result)
      : run_(run), stub_(stub), watchers_(watchers), queue_(queue), result_(result) {}

  void Start() {
    call_ = stub_->PrepareAsyncWatch(&context_, queue_);
    call_->StartCall(&started_);
  }
  // Ends the stream; its reads and Finish complete afterwards.
  void Stop() {
    stopping_ = true;
    context_.TryCancel();
  }
  // Finish may complete before a failed write reports back; the stream is done with both.
  bool finished() const { return finished_ && !writing_; }

  // Once the writer is done and the stream ended: adds what the watchers saw to the result.
  void Settle() {
    check_.Settle();
    result_->watch_delivery.Add(check_.counts());
    result_->by_operation[static_cast<size_t>(Operation::kWatchEvent)].Merge(check_.latency_ns());
  }

 private:
  void OnStarted(bool ok) {
    if (!ok) {
      call_->Finish(&status_, &finished_tag_);
      return;
    }
    call_->Read(&response_, &read_);
    WriteNextCreate();
  }

  // One write in flight at a time, as gRPC requires; the next create follows the previous.
  void WriteNextCreate() {
    if (creates_sent_ == watchers_ || stopping_) return;
    ++creates_sent_;
    writing_ = true;
    etcdserverpb::WatchRequest request;
    etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
    create->set_key(run_->options.key_prefix);
    create->set_range_end(PrefixRangeEnd(run_->options.key_prefix));
    call_->Write(request, &written_);
  }

  void OnWritten(bool ok) {
    writing_ = false;
    if (ok) WriteNextCreate();  // otherwise the stream is broken and the read reports it
  }

  void OnRead(bool ok) {
    if (!ok) {
      call_->Finish(&status_, &finished_tag_);
      return;
    }
    const Nanos arrived_ns = clock_.Now();
    if (response_.created()) run_->watchers_created.fetch_add(1);
    if (response_.canceled()) {
      result_->RecordError(
          grpc::Status(grpc::StatusCode::CANCELLED,
                       "watch canceled by the server: " + response_.cancel_reason()));
    }
    for (const mvccpb::Event& event : response_.events()) {
      if (check_.OnEvent(response_.watch_id(), event.type() == mvccpb::Event::PUT,
                         event.kv().mod_revision(), arrived_ns)) {
        run_->events_in_order.fetch_add(1, std::memory_order_relaxed);
      }
    }
    call_->Read(&response_, &read_);
  }

  void OnFinished(bool ok) {
    SYNOD_ASSERT(ok);
    finished_ = true;
    // Our own cancellation ends the stream with CANCELLED; anything else is a failure.
    if (!status_.ok() && !(stopping_ && status_.error_code() == grpc::StatusCode::CANCELLED)) {
      result_->RecordError(status_);
    }
  }

  WatchRun* run_;
  Watch::Stub* stub_;
  const uint32_t watchers_;
  grpc::CompletionQueue* queue_;
  LoadResult* result_;
  SteadyClock clock_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      call_;
  etcdserverpb::WatchResponse response_;
  grpc::Status status_;
  StreamCompletion<WatchStream> started_{this, &WatchStream::OnStarted};
  StreamCompletion<WatchStream> written_{this, &WatchStream::OnWritten};
  StreamCompletion<WatchStream> read_{this, &WatchStream::OnRead};
  StreamCompletion<WatchStream> finished_tag_{this, &WatchStream::OnFinished};
  uint32_t creates_sent_ = 0;
  bool writing_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  DeliveryCheck check_{[this](int64_t revision) { return run_->acks.Find(revision); }};
};

class WatchThread {
 public:
  explicit WatchThread(WatchRun* run) : run_(run) {}

  void Add(Watch::Stub* stub, uint32_t watchers) {
    streams_.push_back(std::make_unique<WatchStream>(run_, stub, watchers, &queue_, &result_));
  }

  void Run() {
    for (auto& stream : streams_) stream->Start();
    RunCompletionLoop(&queue_, clock_, [this] { return Pump(); });
    for (auto& stream : streams_) stream->Settle();
  }

  LoadResult& result() { return result_; }

 private:
  std::optional<Nanos> Pump() {
    const Nanos now = clock_.Now();
    if (!stopping_ && run_->writer_done.load()) {
      const bool all_arrived = run_->events_in_order.load() >= run_->events_expected.load();
      if (all_arrived || now >= run_->drain_deadline_ns.load()) {
        stopping_ = true;
        for (auto& stream : streams_) stream->Stop();
      }
    }
    bool all_finished = true;
    for (auto& stream : streams_) all_finished = all_finished && stream->finished();
    if (all_finished) return std::nullopt;
    // Polls for the writer's end; events themselves wake the loop at once.
    return now + 10'000'000;
  }

  WatchRun* run_;
  SteadyClock clock_;
  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<WatchStream>> streams_;
  bool stopping_ = false;
  LoadResult result_;
};

}  // namespace

LoadResult RunWatchLoad(const Options& options,
                        const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                        Progress* progress) {
  WatchRun run{options};
  std::vector<std::unique_ptr<Watch::Stub>> stubs;
  for (const auto& channel : channels) stubs.push_back(Watch::NewStub(channel));
  const uint32_t stream_count = std::min(options.streams, options.watchers);
  const uint32_t thread_count = std::min(options.threads, stream_count);
  std::vector<std::unique_ptr<WatchThread>> watch_threads;
  for (uint32_t t = 0; t < thread_count; ++t) {
    watch_threads.push_back(std::make_unique<WatchThread>(&run));
  }
  for (uint32_t s = 0; s < stream_count; ++s) {
    const uint32_t watchers =
        options.watchers / stream_count + (s < options.watchers % stream_count ? 1 : 0);
    watch_threads[s % thread_count]->Add(stubs[s % stubs.size()].get(), watchers);
  }
  LoadThreads running_watchers(watch_threads);

  // The writer starts once every watcher exists, so every watcher should see every put.
  SteadyClock clock;
  const Nanos created_deadline_ns =
      clock.Now() + static_cast<Nanos>(options.request_timeout_s * 1e9);
  while (run.watchers_created.load() < options.watchers && clock.Now() < created_deadline_ns) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  LoadResult merged;
  if (run.watchers_created.load() == options.watchers) {
    Options writer = options;
    writer.workload = Workload::kPut;
    writer.sequential_keys = true;
    writer.threads = 1;
    merged = RunUnaryLoad(writer, channels, progress, [&run](int64_t revision, Nanos acked_ns) {
      run.acks.Add(revision, acked_ns);
    });
  } else {
    merged.RecordError(
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                     fmt::format("only {} of {} watchers were created within --request-timeout",
                                 run.watchers_created.load(), options.watchers)));
  }
  run.events_expected = uint64_t{options.watchers} * run.acks.size();
  run.drain_deadline_ns = clock.Now() + static_cast<Nanos>(options.drain_timeout_s * 1e9);
  run.writer_done = true;
  running_watchers.JoinInto(&merged);
  merged.watch_events_expected = run.events_expected;
  // The run's headline latency is delivery; the writer's put latencies stay under "put".
  merged.latency_ns = merged.by_operation[static_cast<size_t>(Operation::kWatchEvent)];
  return merged;
}

}  // namespace synod::bench
