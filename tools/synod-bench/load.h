// The parts every workload of synod-bench shares: its options, the per-thread result that is
// merged into the summary, the connections, and the completion-queue loop that drives many
// outstanding RPCs from one thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "delivery_check.h"
#include "histogram.h"
#include "schedule.h"

namespace synod::bench {

enum class Workload { kPut, kRange, kTxnPut, kMixed, kWatch, kLeaseKeepAlive };

struct Options {
  Workload workload = Workload::kPut;
  std::string workload_name = "put";
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  uint32_t conns = 1;
  uint32_t clients = 1;
  uint32_t threads = 2;
  uint64_t total = 0;
  double duration_s = 0;
  double rate_per_s = 0;
  uint64_t key_space_size = 1;
  uint32_t key_size = 16;
  uint32_t val_size = 8;
  std::string key_prefix = "bench/";
  bool sequential_keys = false;
  uint64_t seed = 1;
  bool linearizable = true;  // range: --consistency l (true) or s
  double read_ratio = 0.5;   // mixed
  uint32_t watchers = 100;   // watch
  uint32_t streams = 10;     // watch and lease-keepalive
  uint32_t leases = 100;     // lease-keepalive
  int64_t lease_ttl_s = 60;  // lease-keepalive
  double request_timeout_s = 30;
  double drain_timeout_s = 10;  // watch: how long to wait for events after the last put
  bool json = false;
};

enum class Operation { kPut, kRange, kTxn, kWatchEvent, kKeepAlive };
inline constexpr int kOperationCount = 5;
const char* OperationName(Operation operation);
const char* StatusCodeName(grpc::StatusCode code);

// What one load thread measured; merged across threads into the summary.
struct LoadResult {
  LatencyHistogram latency_ns;  // every successful request; for watch, every delivered event
  std::array<LatencyHistogram, kOperationCount> by_operation;  // split by kind
  uint64_t succeeded = 0;
  std::map<grpc::StatusCode, uint64_t> errors;
  std::string first_error;
  // txn-put: transactions whose compare held (the put happened) and whose compare failed.
  uint64_t txn_compare_succeeded = 0;
  uint64_t txn_compare_failed = 0;
  // watch: events the watchers should have seen (watchers x acknowledged puts) and the
  // DeliveryCounts of what they saw (delivery_check.h).
  uint64_t watch_events_expected = 0;
  DeliveryCounts watch_delivery;

  void RecordSuccess(Operation operation, Nanos latency);
  void RecordError(const grpc::Status& status);
  void Merge(const LoadResult& other);
  uint64_t error_count() const;
};

// Live counters the progress display reads while the load threads run.
struct Progress {
  std::atomic<uint64_t> completed{0};
  uint64_t planned = 0;  // 0 when the run is bounded by time
  Nanos start_ns = 0;
  Nanos duration_ns = 0;
};

// --conns channels over the endpoints round-robin. Each channel gets its own channel arguments
// (and a local subchannel pool), because gRPC shares one TCP connection between channels whose
// target and arguments are equal.
std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const Options& options);

// Something waiting on a completion queue: the queue hands back the pointer as its tag.
class Completion {
 public:
  virtual ~Completion() = default;
  virtual void OnComplete(bool ok) = 0;
};

// The completion of one operation of a stream, calling back into the stream. A stream has
// several operations in flight at once (start, read, write, finish), each with its own tag.
template <typename Stream>
class StreamCompletion final : public Completion {
 public:
  StreamCompletion(Stream* stream, void (Stream::*handler)(bool))
      : stream_(stream), handler_(handler) {}
  void OnComplete(bool ok) override { (stream_->*handler_)(ok); }

 private:
  Stream* stream_;
  void (Stream::*handler_)(bool);
};

// Runs each load's Run() on a thread of its own; JoinInto waits for all and merges results.
template <typename Load>
class LoadThreads {
 public:
  explicit LoadThreads(const std::vector<std::unique_ptr<Load>>& loads) : loads_(loads) {
    for (const auto& load : loads) threads_.emplace_back([&load] { load->Run(); });
  }
  void JoinInto(LoadResult* merged) {
    for (size_t i = 0; i < threads_.size(); ++i) {
      threads_[i].join();
      merged->Merge(loads_[i]->result());
    }
  }

 private:
  const std::vector<std::unique_ptr<Load>>& loads_;
  std::vector<std::thread> threads_;
};

// Drives one completion queue from the calling thread: `pump` starts whatever is due and
// returns when it next wants to be called (a time on the steady clock) or nullopt when the
// thread has nothing left to do and nothing outstanding.
void RunCompletionLoop(grpc::CompletionQueue* queue, const Clock& clock,
                       const std::function<std::optional<Nanos>()>& pump);

// Keys are the prefix and a zero-padded decimal index, --key-size bytes long in all, so a
// range over the prefix finds exactly the benchmark's keys.
std::string MakeKey(const Options& options, uint64_t index);
std::string MakeValue(const Options& options);

// Called on a load thread for every acknowledged put: its revision and when the answer arrived.
using PutAckObserver = std::function<void(int64_t revision, Nanos acked_ns)>;

// Each workload: runs the load on --threads threads and returns the merged result.
// put, range, txn-put and mixed. `observer`, when given, sees every acknowledged put.
LoadResult RunUnaryLoad(const Options& options,
                        const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                        Progress* progress, const PutAckObserver& observer = {});
LoadResult RunWatchLoad(const Options& options,
                        const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                        Progress* progress);
LoadResult RunLeaseKeepAliveLoad(const Options& options,
                                 const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                                 Progress* progress);

}  // namespace synod::bench
