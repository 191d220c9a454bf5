// put, range, txn-put and mixed: unary KV calls, many outstanding per thread on one completion
// queue. A "client" is one slot for an outstanding request, as in etcd's benchmark tool; slots
// are spread over the threads and, within the run, over the connections round-robin.

#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "base/prng.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "load.h"

namespace synod::bench {
namespace {

using etcdserverpb::KV;

class UnaryLoadThread {
 public:
  UnaryLoadThread(const Options& options, const std::vector<std::unique_ptr<KV::Stub>>& stubs,
                  const std::vector<uint32_t>& slot_numbers, uint32_t lane, uint32_t lanes,
                  Nanos start_ns, Progress* progress, const PutAckObserver& observer)
      : options_(options),
        schedule_(&clock_, start_ns,
                  ScheduleLimits{options.total, static_cast<Nanos>(options.duration_s * 1e9),
                                 options.rate_per_s},
                  lane, lanes),
        prng_(options.seed * 1'000'003 + lane),
        value_(MakeValue(options)),
        progress_(progress),
        observer_(observer) {
    for (uint32_t number : slot_numbers) {
      auto slot = std::make_unique<Slot>();
      slot->owner = this;
      slot->stub = stubs[number % stubs.size()].get();
      free_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    SYNOD_ASSERT(!slots_.empty());
  }

  void Run() {
    RunCompletionLoop(&queue_, clock_, [this] { return Pump(); });
  }

  LoadResult& result() { return result_; }

 private:
  // One client: at most one outstanding request.
  struct Slot final : Completion {
    UnaryLoadThread* owner = nullptr;
    KV::Stub* stub = nullptr;
    std::unique_ptr<grpc::ClientContext> context;
    Operation operation = Operation::kPut;
    uint64_t key_index = 0;
    RequestSchedule::Ticket ticket;
    grpc::Status status;
    etcdserverpb::PutRequest put_request;
    etcdserverpb::PutResponse put_response;
    etcdserverpb::RangeRequest range_request;
    etcdserverpb::RangeResponse range_response;
    etcdserverpb::TxnRequest txn_request;
    etcdserverpb::TxnResponse txn_response;
    std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>> put_call;
    std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>> range_call;
    std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>> txn_call;

    void OnComplete(bool ok) override {
      // A unary Finish always completes with ok; the outcome is in `status`.
      SYNOD_ASSERT(ok);
      owner->Finish(this);
    }
  };

  std::optional<Nanos> Pump() {
    while (!free_.empty()) {
      const std::optional<RequestSchedule::Ticket> ticket = schedule_.Take();
      if (!ticket.has_value()) break;
      Slot* slot = free_.back();
      free_.pop_back();
      Start(slot, *ticket);
    }
    // With every slot busy, or nothing more to send, only completions matter; the timeout
    // merely bounds how long a stuck call keeps the loop from re-checking.
    const Nanos idle_wake_ns = clock_.Now() + 100'000'000;
    if (schedule_.done()) {
      if (free_.size() == slots_.size()) return std::nullopt;
      return idle_wake_ns;
    }
    if (free_.empty()) return idle_wake_ns;
    return schedule_.wake_ns();
  }

  Operation ChooseOperation() {
    switch (options_.workload) {
      case Workload::kPut:
        return Operation::kPut;
      case Workload::kRange:
        return Operation::kRange;
      case Workload::kTxnPut:
        return Operation::kTxn;
      case Workload::kMixed: {
        constexpr uint64_t kResolution = 1'000'000;
        const auto reads = static_cast<uint64_t>(options_.read_ratio * kResolution);
        return prng_.Chance(reads, kResolution) ? Operation::kRange : Operation::kPut;
      }
      case Workload::kWatch:
      case Workload::kLeaseKeepAlive:
        break;
    }
    SYNOD_ASSERT_MSG(false, "{} is not a unary workload", options_.workload_name);
    return Operation::kPut;
  }

  void Start(Slot* slot, const RequestSchedule::Ticket& ticket) {
    slot->ticket = ticket;
    slot->operation = ChooseOperation();
    slot->key_index = options_.sequential_keys ? ticket.sequence % options_.key_space_size
                                               : prng_.Below(options_.key_space_size);
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::nanoseconds(static_cast<Nanos>(options_.request_timeout_s * 1e9)));
    const std::string key = MakeKey(options_, slot->key_index);
    switch (slot->operation) {
      case Operation::kPut:
        slot->put_request.set_key(key);
        slot->put_request.set_value(value_);
        slot->put_call = slot->stub->AsyncPut(slot->context.get(), slot->put_request, &queue_);
        slot->put_call->Finish(&slot->put_response, &slot->status, slot);
        return;
      case Operation::kRange:
        slot->range_request.set_key(key);
        slot->range_request.set_serializable(!options_.linearizable);
        slot->range_call =
            slot->stub->AsyncRange(slot->context.get(), slot->range_request, &queue_);
        slot->range_call->Finish(&slot->range_response, &slot->status, slot);
        return;
      case Operation::kTxn:
        BuildCompareAndSwap(key, KnownModRevision(slot->key_index), &slot->txn_request);
        slot->txn_call = slot->stub->AsyncTxn(slot->context.get(), slot->txn_request, &queue_);
        slot->txn_call->Finish(&slot->txn_response, &slot->status, slot);
        return;
      case Operation::kWatchEvent:
      case Operation::kKeepAlive:
        break;
    }
    SYNOD_ASSERT_MSG(false, "not a unary operation: {}", OperationName(slot->operation));
  }

  // Compare-and-swap as clientv3 users write it: put only if the key's mod_revision is still
  // the one this client last saw (0: the key does not exist); otherwise read the key, whose
  // mod_revision the next attempt compares against.
  void BuildCompareAndSwap(const std::string& key, int64_t expected_mod_revision,
                           etcdserverpb::TxnRequest* txn) {
    txn->Clear();
    etcdserverpb::Compare* compare = txn->add_compare();
    compare->set_key(key);
    compare->set_target(etcdserverpb::Compare::MOD);
    compare->set_result(etcdserverpb::Compare::EQUAL);
    compare->set_mod_revision(expected_mod_revision);
    etcdserverpb::PutRequest* put = txn->add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value_);
    txn->add_failure()->mutable_request_range()->set_key(key);
  }

  int64_t KnownModRevision(uint64_t key_index) const {
    const auto known = known_mod_revision_.find(key_index);
    return known == known_mod_revision_.end() ? 0 : known->second;
  }

  void Finish(Slot* slot) {
    const Nanos now = clock_.Now();
    // A server that answers a compare-and-swap without the failure branch's range breaks the
    // protocol; the tool reports that as an error instead of trusting the answer.
    if (slot->status.ok() && slot->operation == Operation::kTxn && !LearnFromTxn(slot)) {
      slot->status =
          grpc::Status(grpc::StatusCode::INTERNAL,
                       "a failed compare did not answer with the failure branch's range");
    }
    if (slot->status.ok()) {
      result_.RecordSuccess(slot->operation, RequestSchedule::Latency(slot->ticket, now));
      if (slot->operation == Operation::kPut && observer_) {
        observer_(slot->put_response.header().revision(), now);
      }
    } else {
      result_.RecordError(slot->status);
    }
    progress_->completed.fetch_add(1, std::memory_order_relaxed);
    slot->context.reset();
    free_.push_back(slot);
  }

  // Counts the outcome of a compare-and-swap and remembers the key's mod_revision; false when
  // the answer lacks what a failed compare must carry.
  bool LearnFromTxn(const Slot* slot) {
    const etcdserverpb::TxnResponse& response = slot->txn_response;
    if (response.succeeded()) {
      ++result_.txn_compare_succeeded;
      // The put of the success branch made the key's mod_revision the transaction's revision.
      known_mod_revision_[slot->key_index] = response.header().revision();
      return true;
    }
    if (response.responses_size() != 1 || !response.responses(0).has_response_range()) {
      return false;
    }
    ++result_.txn_compare_failed;
    const etcdserverpb::RangeResponse& range = response.responses(0).response_range();
    known_mod_revision_[slot->key_index] = range.kvs_size() > 0 ? range.kvs(0).mod_revision() : 0;
    return true;
  }

  const Options& options_;
  SteadyClock clock_;
  RequestSchedule schedule_;
  base::Prng prng_;
  const std::string value_;
  Progress* progress_;
  const PutAckObserver& observer_;
  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  std::unordered_map<uint64_t, int64_t> known_mod_revision_;  // txn-put
  LoadResult result_;
};

}  // namespace

LoadResult RunUnaryLoad(const Options& options,
                        const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                        Progress* progress, const PutAckObserver& observer) {
  std::vector<std::unique_ptr<KV::Stub>> stubs;
  for (const auto& channel : channels) stubs.push_back(KV::NewStub(channel));
  // A thread without a client could not send its lane's requests, so there are at most as
  // many lanes as clients.
  const uint32_t lanes = std::min(options.threads, options.clients);
  std::vector<std::vector<uint32_t>> slots_of_lane(lanes);
  for (uint32_t client = 0; client < options.clients; ++client) {
    slots_of_lane[client % lanes].push_back(client);
  }
  const Nanos start_ns = SteadyClock().Now();
  std::vector<std::unique_ptr<UnaryLoadThread>> loads;
  for (uint32_t lane = 0; lane < lanes; ++lane) {
    loads.push_back(std::make_unique<UnaryLoadThread>(options, stubs, slots_of_lane[lane], lane,
                                                      lanes, start_ns, progress, observer));
  }
  LoadResult merged;
  LoadThreads(loads).JoinInto(&merged);
  return merged;
}

}  // namespace synod::bench
