#include "server/recipes.h"

#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "absl/cleanup/cleanup.h"
#include "kv/errors.h"
#include "kv/watch_hub.h"

namespace synod::server {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;

// clientv3/concurrency's session TTL.
constexpr int64_t kSessionTtl_s = 60;
// How often a waiting call looks at its client's cancellation.
constexpr auto kCancelPoll = std::chrono::milliseconds(100);

// concurrency's errors are plain Go errors, which gRPC sends as UNKNOWN with the text.
Status ElectionNoLeaderError() { return absl::UnknownError("election: no leader"); }
Status ElectionNotLeaderError() { return absl::UnknownError("election: not leader"); }
Status ContextCanceledError() { return absl::CancelledError("context canceled"); }

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// clientv3.GetPrefixRangeEnd: the first key after every key with this prefix.
std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // Every key.
}

// The queue's key of one session: "<name>/<lease id in hex>" (concurrency's "%s%x").
std::string SessionKey(const std::string& prefix, int64_t lease) {
  return prefix + (lease < 0 ? fmt::format("-{:x}", -static_cast<uint64_t>(lease))
                             : fmt::format("{:x}", lease));
}

// concurrency's WithFirstCreate / WithLastCreate: the oldest or newest key under a prefix.
RangeRequest TopByCreate(const std::string& prefix, bool newest, int64_t max_create_revision) {
  RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  request.set_sort_target(RangeRequest::CREATE);
  request.set_sort_order(newest ? RangeRequest::DESCEND : RangeRequest::ASCEND);
  request.set_limit(1);
  request.set_max_create_revision(max_create_revision);
  return request;
}

RequestOp OpPut(const std::string& key, const std::string& value, int64_t lease) {
  RequestOp op;
  op.mutable_request_put()->set_key(key);
  op.mutable_request_put()->set_value(value);
  op.mutable_request_put()->set_lease(lease);
  return op;
}
RequestOp OpGet(RangeRequest request) {
  RequestOp op;
  *op.mutable_request_range() = std::move(request);
  return op;
}
RequestOp OpGetKey(const std::string& key) {
  RangeRequest request;
  request.set_key(key);
  return OpGet(std::move(request));
}
RequestOp OpDelete(const std::string& key) {
  RequestOp op;
  op.mutable_request_delete_range()->set_key(key);
  return op;
}
// A Txn whose condition is "the key's create_revision equals `revision`" (0: it does not exist).
TxnRequest IfCreateRevision(const std::string& key, int64_t revision) {
  TxnRequest txn;
  etcdserverpb::Compare* compare = txn.add_compare();
  compare->set_key(key);
  compare->set_target(etcdserverpb::Compare::CREATE);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_create_revision(revision);
  return txn;
}

// Collects one internal watcher's events for Follow. Never refuses: the follower drains it
// promptly, and what it waits for is small.
class FollowSink final : public kv::WatchSink {
 public:
  struct Item {
    mvccpb::Event event;
    int64_t revision;
  };

  bool Deliver(int64_t, Revision revision, std::vector<mvccpb::Event> events, bool) override {
    std::lock_guard lock(mutex_);
    for (mvccpb::Event& event : events) {
      items_.push_back(Item{std::move(event), static_cast<int64_t>(revision.value())});
    }
    changed_.notify_one();
    return true;
  }
  void Compacted(int64_t, Revision) override {
    std::lock_guard lock(mutex_);
    compacted_ = true;
    changed_.notify_one();
  }
  void CatchUpNeeded() override {
    std::lock_guard lock(mutex_);
    catch_up_needed_ = true;
    changed_.notify_one();
  }

  // Waits a little for something to happen; returns what arrived and what to do.
  struct Wakeup {
    std::deque<Item> items;
    bool compacted = false;
    bool catch_up = false;
  };
  Wakeup Wait() {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, kCancelPoll,
                      [&] { return !items_.empty() || compacted_ || catch_up_needed_; });
    Wakeup wakeup{std::move(items_), compacted_, catch_up_needed_};
    items_.clear();
    catch_up_needed_ = false;
    return wakeup;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Item> items_;        // Guarded by mutex_.
  bool compacted_ = false;        // Guarded by mutex_.
  bool catch_up_needed_ = false;  // Guarded by mutex_.
};

}  // namespace

// ---- LocalClient ------------------------------------------------------------------------------

Result<etcdserverpb::TxnResponse> LocalClient::Txn(const TxnRequest& request) {
  return kv_->TxnAndWait(request);
}

Result<etcdserverpb::RangeResponse> LocalClient::Range(const RangeRequest& request) {
  return kv_->RangeAndWait(request);
}

Result<etcdserverpb::DeleteRangeResponse> LocalClient::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  return kv_->DeleteRangeAndWait(request);
}

Result<int64_t> LocalClient::GrantSessionLease() {
  grpc::ServerContext context;
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(kSessionTtl_s);
  etcdserverpb::LeaseGrantResponse response;
  if (Status status = FromGrpc(lease_->LeaseGrant(&context, &request, &response));
      !status.ok()) {
    return status;
  }
  return response.id();
}

Status LocalClient::Follow(
    grpc::ServerContext* context, const std::string& key, const std::string& range_end,
    Revision start_revision,
    const std::function<bool(const mvccpb::Event&, int64_t revision)>& on_event) {
  FollowSink sink;
  kv::WatchHub& hub = node_->watch_hub();
  node_->ReadStore([&](const kv::Store& store) {
    hub.Add(&sink, 0, kv::WatchSpec{.key = key, .range_end = range_end}, start_revision,
            store.current_revision());
  });
  // After this no hub callback can reach the sink.
  absl::Cleanup unregister = [&] { hub.RemoveAll(&sink); };
  for (;;) {
    FollowSink::Wakeup wakeup = sink.Wait();
    for (const FollowSink::Item& item : wakeup.items) {
      if (on_event(item.event, item.revision)) return absl::OkStatus();
    }
    if (wakeup.compacted) return kv::CompactedError();
    if (context->IsCancelled()) return ContextCanceledError();
    if (wakeup.catch_up) {
      Result<bool> more =
          node_->ReadStore([&](const kv::Store& store) { return hub.CatchUp(store, &sink); });
      if (!more.ok()) return more.status();
      if (*more) sink.CatchUpNeeded();
    }
  }
}

Result<etcdserverpb::ResponseHeader> LocalClient::WaitDeletes(grpc::ServerContext* context,
                                                              const std::string& prefix,
                                                              int64_t max_create_revision) {
  for (;;) {
    Result<etcdserverpb::RangeResponse> newest =
        Range(TopByCreate(prefix, /*newest=*/true, max_create_revision));
    if (!newest.ok()) return newest.status();
    if (newest->kvs().empty()) return newest->header();
    // Wait for the newest older key to go; then look again (it may not have been the last).
    const std::string& waiting_for = newest->kvs(0).key();
    Status status = Follow(context, waiting_for, "",
                           Revision(static_cast<uint64_t>(newest->header().revision())),
                           [](const mvccpb::Event& event, int64_t) {
                             return event.type() == mvccpb::Event::DELETE;
                           });
    if (!status.ok()) return status;
  }
}

// ---- Lock ---------------------------------------------------------------------------------

grpc::Status LockService::Lock(grpc::ServerContext* context, const v3lockpb::LockRequest* request,
                               v3lockpb::LockResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  int64_t lease = request->lease();
  if (lease == 0) {
    Result<int64_t> granted = client_->GrantSessionLease();
    if (!granted.ok()) return ToGrpc(granted.status());
    lease = *granted;
  }
  const std::string prefix = request->name() + "/";
  const std::string my_key = SessionKey(prefix, lease);
  // Join the queue unless this session is in it already, and read its head in the same Txn.
  TxnRequest txn = IfCreateRevision(my_key, 0);
  *txn.add_success() = OpPut(my_key, "", lease);
  *txn.add_success() = OpGet(TopByCreate(prefix, /*newest=*/false, 0));
  *txn.add_failure() = OpGetKey(my_key);
  *txn.add_failure() = OpGet(TopByCreate(prefix, /*newest=*/false, 0));
  Result<etcdserverpb::TxnResponse> joined = client_->Txn(txn);
  if (!joined.ok()) return ToGrpc(joined.status());
  int64_t my_revision = joined->header().revision();
  if (!joined->succeeded()) {
    my_revision = joined->responses(0).response_range().kvs(0).create_revision();
  }
  const auto& owner = joined->responses(1).response_range().kvs();
  response->set_key(my_key);
  if (owner.empty() || owner[0].create_revision() == my_revision) {
    *response->mutable_header() = joined->header();
    return grpc::Status::OK;
  }
  Result<etcdserverpb::ResponseHeader> acquired =
      client_->WaitDeletes(context, prefix, my_revision - 1);
  if (!acquired.ok()) {
    // Leave the queue: an abandoned waiter must not become the owner later.
    client_->Delete(my_key).IgnoreError();
    response->Clear();
    return ToGrpc(acquired.status());
  }
  *response->mutable_header() = *acquired;
  return grpc::Status::OK;
}

grpc::Status LockService::Unlock(grpc::ServerContext*, const v3lockpb::UnlockRequest* request,
                                 v3lockpb::UnlockResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  Result<etcdserverpb::DeleteRangeResponse> deleted = client_->Delete(request->key());
  if (!deleted.ok()) return ToGrpc(deleted.status());
  *response->mutable_header() = deleted->header();
  return grpc::Status::OK;
}

// ---- Election -----------------------------------------------------------------------------

namespace {

// concurrency.Election.Proclaim: the new value, only while `key` is still the one created at
// `revision` (a successor's key has another create revision).
Result<etcdserverpb::ResponseHeader> ProclaimAs(LocalClient* client, const std::string& key,
                                                int64_t revision, int64_t lease,
                                                const std::string& value) {
  TxnRequest txn = IfCreateRevision(key, revision);
  *txn.add_success() = OpPut(key, value, lease);
  Result<etcdserverpb::TxnResponse> response = client->Txn(txn);
  if (!response.ok()) return response.status();
  if (!response->succeeded()) return ElectionNotLeaderError();
  return response->header();
}

// concurrency.Election.Resign: deletes the key if it is still this leader's.
Result<etcdserverpb::ResponseHeader> ResignAs(LocalClient* client, const std::string& key,
                                              int64_t revision) {
  TxnRequest txn = IfCreateRevision(key, revision);
  *txn.add_success() = OpDelete(key);
  Result<etcdserverpb::TxnResponse> response = client->Txn(txn);
  if (!response.ok()) return response.status();
  return response->header();
}

// The lease a request names, or a fresh session lease for 0 (etcd's session does that).
Result<int64_t> SessionLease(LocalClient* client, int64_t lease) {
  if (lease != 0) return lease;
  return client->GrantSessionLease();
}

}  // namespace

grpc::Status ElectionService::Campaign(grpc::ServerContext* context,
                                       const v3electionpb::CampaignRequest* request,
                                       v3electionpb::CampaignResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  Result<int64_t> lease = SessionLease(client_, request->lease());
  if (!lease.ok()) return ToGrpc(lease.status());
  const std::string prefix = request->name() + "/";
  const std::string key = SessionKey(prefix, *lease);
  TxnRequest txn = IfCreateRevision(key, 0);
  *txn.add_success() = OpPut(key, request->value(), *lease);
  *txn.add_failure() = OpGetKey(key);
  Result<etcdserverpb::TxnResponse> joined = client_->Txn(txn);
  if (!joined.ok()) return ToGrpc(joined.status());
  int64_t leader_revision = joined->header().revision();
  if (!joined->succeeded()) {
    // Campaigning again with the same lease: keep the place in the queue, update the value.
    const mvccpb::KeyValue& existing = joined->responses(0).response_range().kvs(0);
    leader_revision = existing.create_revision();
    if (existing.value() != request->value()) {
      auto proclaimed = ProclaimAs(client_, key, leader_revision, *lease, request->value());
      if (!proclaimed.ok()) {
        ResignAs(client_, key, leader_revision).IgnoreError();
        return ToGrpc(proclaimed.status());
      }
    }
  }
  Result<etcdserverpb::ResponseHeader> elected =
      client_->WaitDeletes(context, prefix, leader_revision - 1);
  if (!elected.ok()) {
    if (context->IsCancelled()) ResignAs(client_, key, leader_revision).IgnoreError();
    return ToGrpc(elected.status());
  }
  *response->mutable_header() = joined->header();
  v3electionpb::LeaderKey* leader = response->mutable_leader();
  leader->set_name(request->name());
  leader->set_key(key);
  leader->set_rev(leader_revision);
  leader->set_lease(*lease);
  return grpc::Status::OK;
}

grpc::Status ElectionService::Proclaim(grpc::ServerContext*,
                                       const v3electionpb::ProclaimRequest* request,
                                       v3electionpb::ProclaimResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  const v3electionpb::LeaderKey& leader = request->leader();
  Result<int64_t> lease = SessionLease(client_, leader.lease());
  if (!lease.ok()) return ToGrpc(lease.status());
  Result<etcdserverpb::ResponseHeader> header =
      ProclaimAs(client_, leader.key(), leader.rev(), *lease, request->value());
  if (!header.ok()) return ToGrpc(header.status());
  *response->mutable_header() = *header;
  return grpc::Status::OK;
}

grpc::Status ElectionService::Leader(grpc::ServerContext*,
                                     const v3electionpb::LeaderRequest* request,
                                     v3electionpb::LeaderResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  Result<etcdserverpb::RangeResponse> oldest =
      client_->Range(TopByCreate(request->name() + "/", /*newest=*/false, 0));
  if (!oldest.ok()) return ToGrpc(oldest.status());
  if (oldest->kvs().empty()) return ToGrpc(ElectionNoLeaderError());
  *response->mutable_header() = oldest->header();
  *response->mutable_kv() = oldest->kvs(0);
  return grpc::Status::OK;
}

grpc::Status ElectionService::Observe(grpc::ServerContext* context,
                                      const v3electionpb::LeaderRequest* request,
                                      grpc::ServerWriter<v3electionpb::LeaderResponse>* writer) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  // concurrency.Election.observe: the current leader, then every new value it proclaims, until
  // its key is deleted; then the next leader (or the first to come when there is none).
  const std::string prefix = request->name() + "/";
  bool client_gone = false;
  auto send = [&](etcdserverpb::ResponseHeader header, const mvccpb::KeyValue& kv) {
    v3electionpb::LeaderResponse response;
    *response.mutable_header() = std::move(header);
    *response.mutable_kv() = kv;
    client_gone = !writer->Write(response);
    return !client_gone;
  };
  auto header_at = [&](int64_t revision) {
    etcdserverpb::ResponseHeader header;
    header.set_revision(revision);
    FillHeader(*client_->node(), &header);
    return header;
  };
  while (!context->IsCancelled()) {
    Result<etcdserverpb::RangeResponse> oldest =
        client_->Range(TopByCreate(prefix, /*newest=*/false, 0));
    if (!oldest.ok()) return ToGrpc(oldest.status());
    mvccpb::KeyValue leader;
    etcdserverpb::ResponseHeader header = oldest->header();
    if (oldest->kvs().empty()) {
      // Only a put can start a term; a delete would make this loop spin.
      Status status = client_->Follow(
          context, prefix, PrefixEnd(prefix),
          Revision(static_cast<uint64_t>(oldest->header().revision())),
          [&](const mvccpb::Event& event, int64_t) {
            if (event.type() != mvccpb::Event::PUT) return false;
            leader = event.kv();
            header = header_at(leader.mod_revision());
            return true;
          });
      if (!status.ok()) return ToGrpc(status);
    } else {
      leader = oldest->kvs(0);
    }
    if (!send(header, leader)) return grpc::Status::OK;
    Status status = client_->Follow(
        context, leader.key(), "", Revision(static_cast<uint64_t>(header.revision() + 1)),
        [&](const mvccpb::Event& event, int64_t revision) {
          if (event.type() == mvccpb::Event::DELETE) return true;
          return !send(header_at(revision), event.kv());
        });
    if (client_gone) return grpc::Status::OK;
    if (!status.ok()) return ToGrpc(status);
  }
  return ToGrpc(ContextCanceledError());
}

grpc::Status ElectionService::Resign(grpc::ServerContext*,
                                     const v3electionpb::ResignRequest* request,
                                     v3electionpb::ResignResponse* response) {
  if (grpc::Status refused = RefuseOnLearner(*client_->node()); !refused.ok()) return refused;
  const v3electionpb::LeaderKey& leader = request->leader();
  Result<etcdserverpb::ResponseHeader> header = ResignAs(client_, leader.key(), leader.rev());
  if (!header.ok()) return ToGrpc(header.status());
  *response->mutable_header() = *header;
  return grpc::Status::OK;
}

}  // namespace synod::server
