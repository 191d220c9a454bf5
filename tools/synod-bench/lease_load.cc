// lease-keepalive: --leases leases are granted, then kept alive over --streams LeaseKeepAlive
// streams; each keepalive's latency is the round trip to its response. A lease has at most one
// keepalive outstanding, so a response's lease id names the request it answers. The schedule
// (--total or --duration, --rate) is the same as for unary requests, with leases as the clients.

#include <deque>
#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "load.h"

namespace synod::bench {
namespace {

using etcdserverpb::Lease;

grpc::ClientContext* WithDeadline(grpc::ClientContext* context, const Options& options) {
  context->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::nanoseconds(static_cast<Nanos>(options.request_timeout_s * 1e9)));
  return context;
}

class KeepAliveStream {
 public:
  KeepAliveStream(Lease::Stub* stub, std::vector<int64_t> lease_ids, grpc::CompletionQueue* queue,
                  LoadResult* result, Progress* progress)
      : stub_(stub), queue_(queue), result_(result), progress_(progress) {
    for (const int64_t id : lease_ids) {
      index_of_lease_[id] = leases_.size();
      leases_.push_back(LeaseState{id, false, {}});
    }
    for (size_t i = 0; i < leases_.size(); ++i) idle_.push_back(i);
  }

  void Start() {
    call_ = stub_->PrepareAsyncLeaseKeepAlive(&context_, queue_);
    call_->StartCall(&started_);
  }

  // Finish may complete before a failed write reports back; the stream is done with both.
  bool finished() const { return finished_ && !writing_; }
  bool broken() const { return broken_; }
  bool has_idle_lease() const { return started_ok_ && !broken_ && !idle_.empty(); }
  bool all_idle() const { return idle_.size() == leases_.size(); }

  // Sends a keepalive for an idle lease, the request being `ticket`.
  void Send(const RequestSchedule::Ticket& ticket) {
    SYNOD_ASSERT(has_idle_lease());
    const size_t index = idle_.front();
    idle_.pop_front();
    leases_[index].outstanding = true;
    leases_[index].ticket = ticket;
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(leases_[index].id);
    unsent_.push_back(std::move(request));
    WriteNext();
  }

  // No more keepalives: close our side once the last write is out.
  void CloseWhenIdle() {
    closing_ = true;
    WriteNext();
  }

 private:
  struct LeaseState {
    int64_t id;
    bool outstanding;
    RequestSchedule::Ticket ticket;
  };

  void OnStarted(bool ok) {
    if (!ok) {
      broken_ = true;
      call_->Finish(&status_, &finished_tag_);
      return;
    }
    started_ok_ = true;
    call_->Read(&response_, &read_);
  }

  // gRPC allows one write in flight per stream.
  void WriteNext() {
    if (writing_ || broken_ || !started_ok_ || closed_) return;
    if (!unsent_.empty()) {
      writing_ = true;
      call_->Write(unsent_.front(), &written_);
    } else if (closing_ && all_idle()) {
      closed_ = true;
      writing_ = true;
      call_->WritesDone(&written_);
    }
  }

  void OnWritten(bool ok) {
    writing_ = false;
    if (!ok) return;  // the stream is broken; the pending read reports how
    if (!closed_) unsent_.pop_front();
    WriteNext();
  }

  void OnRead(bool ok) {
    if (!ok) {
      broken_ = true;
      call_->Finish(&status_, &finished_tag_);
      return;
    }
    const Nanos now = clock_.Now();
    const auto found = index_of_lease_.find(response_.id());
    if (found == index_of_lease_.end() || !leases_[found->second].outstanding) {
      // A server fault, not ours: an answer nobody asked for. Count it and read on.
      result_->RecordError(
          grpc::Status(grpc::StatusCode::INTERNAL,
                       fmt::format("unrequested keepalive answer for lease {:x}", response_.id())));
      call_->Read(&response_, &read_);
      return;
    }
    LeaseState& lease = leases_[found->second];
    lease.outstanding = false;
    if (response_.ttl() <= 0) {
      // etcd answers a keepalive for an expired or revoked lease with TTL 0.
      result_->RecordError(
          grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("lease {:x} not found", lease.id)));
    } else {
      result_->RecordSuccess(Operation::kKeepAlive, RequestSchedule::Latency(lease.ticket, now));
    }
    progress_->completed.fetch_add(1, std::memory_order_relaxed);
    idle_.push_back(found->second);
    call_->Read(&response_, &read_);
    WriteNext();
  }

  void OnFinished(bool ok) {
    SYNOD_ASSERT(ok);
    finished_ = true;
    // Every keepalive still outstanding failed with the stream. After our WritesDone the server
    // ends it with OK and nothing is outstanding.
    const grpc::Status failure =
        status_.ok()
            ? grpc::Status(grpc::StatusCode::UNKNOWN, "the server ended the keepalive stream early")
            : status_;
    bool counted = false;
    for (const LeaseState& lease : leases_) {
      if (!lease.outstanding) continue;
      result_->RecordError(failure);
      progress_->completed.fetch_add(1, std::memory_order_relaxed);
      counted = true;
    }
    if (!counted && !status_.ok()) result_->RecordError(status_);
  }

  Lease::Stub* stub_;
  grpc::CompletionQueue* queue_;
  LoadResult* result_;
  Progress* progress_;
  SteadyClock clock_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                                etcdserverpb::LeaseKeepAliveResponse>>
      call_;
  etcdserverpb::LeaseKeepAliveResponse response_;
  grpc::Status status_;
  StreamCompletion<KeepAliveStream> started_{this, &KeepAliveStream::OnStarted};
  StreamCompletion<KeepAliveStream> written_{this, &KeepAliveStream::OnWritten};
  StreamCompletion<KeepAliveStream> read_{this, &KeepAliveStream::OnRead};
  StreamCompletion<KeepAliveStream> finished_tag_{this, &KeepAliveStream::OnFinished};
  std::vector<LeaseState> leases_;
  std::unordered_map<int64_t, size_t> index_of_lease_;
  std::deque<size_t> idle_;  // leases without an outstanding keepalive
  std::deque<etcdserverpb::LeaseKeepAliveRequest> unsent_;
  bool started_ok_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

class KeepAliveThread {
 public:
  KeepAliveThread(const Options& options, uint32_t lane, uint32_t lanes, Nanos start_ns)
      : schedule_(&clock_, start_ns,
                  ScheduleLimits{options.total, static_cast<Nanos>(options.duration_s * 1e9),
                                 options.rate_per_s},
                  lane, lanes) {}

  void Add(Lease::Stub* stub, std::vector<int64_t> lease_ids, Progress* progress) {
    streams_.push_back(
        std::make_unique<KeepAliveStream>(stub, std::move(lease_ids), &queue_, &result_, progress));
  }

  void Run() {
    for (auto& stream : streams_) stream->Start();
    RunCompletionLoop(&queue_, clock_, [this] { return Pump(); });
  }

  LoadResult& result() { return result_; }

 private:
  std::optional<Nanos> Pump() {
    // Round-robin over the streams, so every stream's leases get their share.
    bool sent = true;
    while (sent && !schedule_.done()) {
      sent = false;
      for (auto& stream : streams_) {
        if (!stream->has_idle_lease()) continue;
        const std::optional<RequestSchedule::Ticket> ticket = schedule_.Take();
        if (!ticket.has_value()) break;
        stream->Send(*ticket);
        sent = true;
      }
    }
    bool all_finished = true;
    bool any_alive = false;
    bool any_idle_lease = false;
    for (auto& stream : streams_) {
      all_finished = all_finished && stream->finished();
      any_alive = any_alive || !stream->broken();
      any_idle_lease = any_idle_lease || stream->has_idle_lease();
    }
    if (all_finished) return std::nullopt;
    if ((schedule_.done() || !any_alive) && !closing_) {
      closing_ = true;
      for (auto& stream : streams_) stream->CloseWhenIdle();
    }
    const Nanos idle_wake_ns = clock_.Now() + 100'000'000;
    // Only a free lease can use the next due time; otherwise wait for answers.
    if (closing_ || !any_idle_lease) return idle_wake_ns;
    return std::min(idle_wake_ns, schedule_.wake_ns());
  }

  SteadyClock clock_;
  RequestSchedule schedule_;
  grpc::CompletionQueue queue_;
  std::vector<std::unique_ptr<KeepAliveStream>> streams_;
  bool closing_ = false;
  LoadResult result_;
};

}  // namespace

LoadResult RunLeaseKeepAliveLoad(const Options& options,
                                 const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                                 Progress* progress) {
  std::vector<std::unique_ptr<Lease::Stub>> stubs;
  for (const auto& channel : channels) stubs.push_back(Lease::NewStub(channel));
  LoadResult merged;

  // Granting is set-up, not the measured load: plain blocking calls.
  const uint32_t stream_count = std::min(options.streams, options.leases);
  std::vector<std::vector<int64_t>> leases_of_stream(stream_count);
  for (uint32_t i = 0; i < options.leases; ++i) {
    grpc::ClientContext context;
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(options.lease_ttl_s);
    etcdserverpb::LeaseGrantResponse response;
    const grpc::Status status =
        stubs[i % stubs.size()]->LeaseGrant(WithDeadline(&context, options), request, &response);
    if (!status.ok()) {
      merged.RecordError(status);
      fmt::print(stderr, "synod-bench: granting a lease failed: {}\n", merged.first_error);
      return merged;
    }
    leases_of_stream[i % stream_count].push_back(response.id());
  }

  const uint32_t lanes = std::min(options.threads, stream_count);
  const Nanos start_ns = SteadyClock().Now();
  std::vector<std::unique_ptr<KeepAliveThread>> loads;
  for (uint32_t lane = 0; lane < lanes; ++lane) {
    loads.push_back(std::make_unique<KeepAliveThread>(options, lane, lanes, start_ns));
  }
  for (uint32_t s = 0; s < stream_count; ++s) {
    loads[s % lanes]->Add(stubs[s % stubs.size()].get(), leases_of_stream[s], progress);
  }
  LoadThreads(loads).JoinInto(&merged);

  // Leave nothing behind: the leases would otherwise live on for their TTL.
  for (uint32_t s = 0; s < stream_count; ++s) {
    for (const int64_t id : leases_of_stream[s]) {
      grpc::ClientContext context;
      etcdserverpb::LeaseRevokeRequest request;
      request.set_id(id);
      etcdserverpb::LeaseRevokeResponse response;
      const grpc::Status status =
          stubs[s % stubs.size()]->LeaseRevoke(WithDeadline(&context, options), request, &response);
      if (!status.ok()) {
        fmt::print(stderr, "synod-bench: revoking lease {:x} failed: {}\n", id,
                   status.error_message());
      }
    }
  }
  return merged;
}

}  // namespace synod::bench
