#include "kv/store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <deque>
#include <filesystem>
#include <map>

#include "base/prng.h"

namespace synod::kv {
namespace {

namespace fs = std::filesystem;
using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "synod-kv-XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

std::string Msg(const Status& s) {
  return std::string(s.message());
}

// --- Request builders ---------------------------------------------------------------------

etcdserverpb::PutRequest PutReq(std::string key, std::string value, int64_t lease = 0) {
  etcdserverpb::PutRequest r;
  r.set_key(std::move(key));
  r.set_value(std::move(value));
  r.set_lease(lease);
  return r;
}

etcdserverpb::DeleteRangeRequest DelReq(std::string key, std::string end = "") {
  etcdserverpb::DeleteRangeRequest r;
  r.set_key(std::move(key));
  r.set_range_end(std::move(end));
  return r;
}

RangeRequest RangeReq(std::string key, std::string end = "", int64_t rev = 0) {
  RangeRequest r;
  r.set_key(std::move(key));
  r.set_range_end(std::move(end));
  r.set_revision(rev);
  return r;
}

Compare Cmp(std::string key, Compare::CompareTarget target, Compare::CompareResult result,
            int64_t number, std::string value = "") {
  Compare c;
  c.set_key(std::move(key));
  c.set_target(target);
  c.set_result(result);
  switch (target) {
    case Compare::VERSION:
      c.set_version(number);
      break;
    case Compare::CREATE:
      c.set_create_revision(number);
      break;
    case Compare::MOD:
      c.set_mod_revision(number);
      break;
    case Compare::LEASE:
      c.set_lease(number);
      break;
    case Compare::VALUE:
      c.set_value(value);
      break;
    default:
      break;
  }
  return c;
}

RequestOp OpPut(std::string key, std::string value, int64_t lease = 0) {
  RequestOp op;
  *op.mutable_request_put() = PutReq(std::move(key), std::move(value), lease);
  return op;
}
RequestOp OpDel(std::string key, std::string end = "") {
  RequestOp op;
  *op.mutable_request_delete_range() = DelReq(std::move(key), std::move(end));
  return op;
}
RequestOp OpRange(std::string key, std::string end = "", int64_t rev = 0) {
  RequestOp op;
  *op.mutable_request_range() = RangeReq(std::move(key), std::move(end), rev);
  return op;
}
RequestOp OpTxn(TxnRequest txn) {
  RequestOp op;
  *op.mutable_request_txn() = std::move(txn);
  return op;
}

synodpb::Request Req(etcdserverpb::PutRequest r) {
  synodpb::Request q;
  *q.mutable_put() = std::move(r);
  return q;
}
synodpb::Request Req(etcdserverpb::DeleteRangeRequest r) {
  synodpb::Request q;
  *q.mutable_delete_range() = std::move(r);
  return q;
}
synodpb::Request Req(TxnRequest r) {
  synodpb::Request q;
  *q.mutable_txn() = std::move(r);
  return q;
}
synodpb::Request CompactReq(int64_t rev) {
  synodpb::Request q;
  q.mutable_compaction()->set_revision(rev);
  return q;
}
synodpb::Request GrantReq(int64_t id, int64_t ttl) {
  synodpb::Request q;
  q.mutable_lease_grant()->set_id(id);
  q.mutable_lease_grant()->set_ttl(ttl);
  return q;
}
synodpb::Request RevokeReq(int64_t id) {
  synodpb::Request q;
  q.mutable_lease_revoke()->set_id(id);
  return q;
}
synodpb::Request ExpireReq(int64_t id) {
  synodpb::Request q;
  q.mutable_lease_expire()->set_id(id);
  return q;
}
synodpb::Request CheckpointReq(int64_t id, int64_t remaining) {
  synodpb::Request q;
  synodpb::LeaseCheckpoint* cp = q.mutable_lease_checkpoint()->add_checkpoints();
  cp->set_id(id);
  cp->set_remaining_ttl(remaining);
  return q;
}

// A store in a temporary directory with a log of its own: every request becomes the next entry.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    Result<std::unique_ptr<Store>> store = Store::Open(tmp_.sub("store"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  CommandResult Apply(synodpb::Request request) {
    request.set_id(next_index_ * 10);
    data_.push_back(request.SerializeAsString());
    Entry entry{Index(next_index_++), Entry::Kind::kCommand, data_.back()};
    Result<std::vector<CommandResult>> results = store_->Apply(std::span(&entry, 1));
    EXPECT_TRUE(results.ok()) << results.status();
    EXPECT_EQ(results->size(), 1u);
    EXPECT_EQ((*results)[0].request_id, request.id());
    return std::move((*results)[0]);
  }

  CommandResult Put(std::string key, std::string value, int64_t lease = 0) {
    CommandResult r = Apply(Req(PutReq(std::move(key), std::move(value), lease)));
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r;
  }

  etcdserverpb::RangeResponse Get(RangeRequest request) {
    Result<etcdserverpb::RangeResponse> r = store_->Range(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : etcdserverpb::RangeResponse();
  }
  etcdserverpb::RangeResponse Get(std::string key, std::string end = "", int64_t rev = 0) {
    return Get(RangeReq(std::move(key), std::move(end), rev));
  }

  std::vector<std::string> Keys(const etcdserverpb::RangeResponse& r) {
    std::vector<std::string> keys;
    for (const auto& kv : r.kvs()) keys.push_back(kv.key());
    return keys;
  }

  int64_t Rev() { return static_cast<int64_t>(store_->current_revision().value()); }

  TempDir tmp_;
  std::unique_ptr<Store> store_;
  uint64_t next_index_ = 1;
  std::deque<std::string> data_;  // Entry data must outlive Apply only; kept for simplicity.
};

// --- Revisions, versions, deletes ---------------------------------------------------------

TEST_F(StoreTest, RevisionsAndVersionsFollowEtcd) {
  EXPECT_EQ(Rev(), 1);  // A new store is at revision 1; the first write gets 2.
  CommandResult r = Put("a", "1");
  EXPECT_EQ(r.revision, Revision(2));
  EXPECT_EQ(std::get<etcdserverpb::PutResponse>(r.response).header().revision(), 2);
  Put("a", "2");
  auto kv = Get("a").kvs(0);
  EXPECT_EQ(kv.create_revision(), 2);
  EXPECT_EQ(kv.mod_revision(), 3);
  EXPECT_EQ(kv.version(), 2);
  EXPECT_EQ(kv.value(), "2");

  r = Apply(Req(DelReq("a")));
  auto del = std::get<etcdserverpb::DeleteRangeResponse>(r.response);
  EXPECT_EQ(del.deleted(), 1);
  EXPECT_EQ(del.header().revision(), 4);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(r.events[0].kv().mod_revision(), 4);
  EXPECT_EQ(r.events[0].prev_kv().value(), "2");

  // Deleting nothing does not bump the revision.
  r = Apply(Req(DelReq("a")));
  EXPECT_EQ(std::get<etcdserverpb::DeleteRangeResponse>(r.response).deleted(), 0);
  EXPECT_EQ(std::get<etcdserverpb::DeleteRangeResponse>(r.response).header().revision(), 4);
  EXPECT_EQ(Rev(), 4);
  EXPECT_TRUE(r.events.empty());

  // Re-created: version starts again at 1 with a new create revision.
  Put("a", "3");
  kv = Get("a").kvs(0);
  EXPECT_EQ(kv.create_revision(), 5);
  EXPECT_EQ(kv.version(), 1);
  // History.
  EXPECT_EQ(Get("a", "", 3).kvs(0).value(), "2");
  EXPECT_EQ(Get("a", "", 3).header().revision(), 5);  // The header has the current revision.
  EXPECT_EQ(Get("a", "", 4).kvs_size(), 0);
  EXPECT_EQ(Get("a", "", 1).kvs_size(), 0);
}

TEST_F(StoreTest, PutOptionsAndErrors) {
  Put("k", "v1");
  etcdserverpb::PutRequest p = PutReq("k", "v2");
  p.set_prev_kv(true);
  CommandResult r = Apply(Req(p));
  EXPECT_EQ(std::get<etcdserverpb::PutResponse>(r.response).prev_kv().value(), "v1");

  Apply(GrantReq(7, 100));
  p = PutReq("k", "", 0);
  p.set_ignore_value(true);
  p.set_lease(7);
  r = Apply(Req(p));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(Get("k").kvs(0).value(), "v2");
  EXPECT_EQ(Get("k").kvs(0).lease(), 7);

  p = PutReq("k", "v3");
  p.set_ignore_lease(true);
  r = Apply(Req(p));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(Get("k").kvs(0).lease(), 7);  // Kept.
  EXPECT_EQ(Get("k").kvs(0).value(), "v3");

  const int64_t before = Rev();
  p = PutReq("missing", "");
  p.set_ignore_value(true);
  r = Apply(Req(p));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(r.status), "etcdserver: key not found");
  EXPECT_EQ(r.revision, Revision(static_cast<uint64_t>(before)));

  p = PutReq("k", "x");
  p.set_ignore_value(true);
  EXPECT_EQ(Msg(Apply(Req(p)).status), "etcdserver: value is provided");
  p = PutReq("k", "", 7);
  p.set_ignore_lease(true);
  EXPECT_EQ(Msg(Apply(Req(p)).status), "etcdserver: lease is provided");
  r = Apply(Req(PutReq("k", "v", 99)));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Msg(r.status), "etcdserver: requested lease not found");
  EXPECT_EQ(Msg(Apply(Req(PutReq("", "v"))).status), "etcdserver: key is not provided");
  EXPECT_EQ(Rev(), before);
  EXPECT_EQ(Get("k").kvs(0).value(), "v3");
}

// --- Range --------------------------------------------------------------------------------

TEST_F(StoreTest, EventsCarryPrevKvOnlyWhenAskedAndRepliesDoNotDependOnIt) {
  Put("k", "1");
  const auto apply_without_prev = [&](synodpb::Request request) {
    data_.push_back(request.SerializeAsString());
    const Entry entry{Index(next_index_++), Entry::Kind::kCommand, data_.back()};
    Result<std::vector<CommandResult>> results =
        store_->Apply(std::span(&entry, 1), /*events_with_prev_kv=*/false);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() && results->size() == 1 ? (*results)[0] : CommandResult();
  };
  synodpb::Request put = Req(PutReq("k", "2"));
  put.mutable_put()->set_prev_kv(true);
  CommandResult r = apply_without_prev(put);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_FALSE(r.events[0].has_prev_kv());
  EXPECT_EQ(r.events[0].kv().version(), 2);
  // The request's own prev_kv is still answered.
  EXPECT_EQ(std::get<etcdserverpb::PutResponse>(r.response).prev_kv().value(), "1");
  r = apply_without_prev(Req(DelReq("k")));
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_FALSE(r.events[0].has_prev_kv());
  // A delete's own prev_kv still carries the values.
  Put("d/1", "x");
  Put("d/2", "y");
  synodpb::Request del = Req(DelReq("d/", "d0"));
  del.mutable_delete_range()->set_prev_kv(true);
  r = apply_without_prev(del);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_FALSE(r.events[1].has_prev_kv());
  const auto& deleted = std::get<etcdserverpb::DeleteRangeResponse>(r.response);
  ASSERT_EQ(deleted.prev_kvs_size(), 2);
  EXPECT_EQ(deleted.prev_kvs(0).value(), "x");
  EXPECT_EQ(deleted.prev_kvs(1).value(), "y");

  Put("k", "3");
  r = Put("k", "4");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].prev_kv().value(), "3");
  EXPECT_EQ(r.events[0].prev_kv().version(), 1);
  EXPECT_EQ(r.events[0].kv().version(), 2);
}

TEST_F(StoreTest, RangeRangesLimitsSortsAndFilters) {
  Put("a", "3");                     // rev 2
  Put("b", "1");                     // rev 3
  Put("b/1", "2");                   // rev 4
  Put("b/2", "5");                   // rev 5
  Put("c", "4");                     // rev 6
  Put(std::string("\xff", 1), "0");  // rev 7
  Put("a", "33");                    // rev 8 (a: version 2)

  EXPECT_EQ(Keys(Get("b", "c")), (std::vector<std::string>{"b", "b/1", "b/2"}));
  EXPECT_EQ(Keys(Get("b/", "b0")), (std::vector<std::string>{"b/1", "b/2"}));  // Prefix.
  EXPECT_EQ(Get(std::string("b"), std::string("\0", 1)).count(), 5);           // Every key >= "b".
  EXPECT_EQ(Get(std::string("\0", 1), std::string("\0", 1)).count(), 6);       // All keys.
  EXPECT_EQ(Get("c", "b").count(), 0);

  RangeRequest r = RangeReq(std::string("\0", 1), std::string("\0", 1));
  r.set_limit(2);
  auto resp = Get(r);
  EXPECT_EQ(Keys(resp), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(resp.more());
  EXPECT_EQ(resp.count(), 6);
  r.set_limit(6);
  EXPECT_FALSE(Get(r).more());

  r.set_limit(3);
  r.set_sort_target(RangeRequest::VALUE);
  r.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(Keys(Get(r)), (std::vector<std::string>{"b/2", "c", "a"}));  // "5","4","33".
  // A non-KEY target alone means ascending, but etcd decides "fetch everything" on the order
  // alone: it takes limit+1 keys in key order (a, b, b/1, b/2), sorts those by value
  // ("33", "1", "2", "5") and cuts to the limit. We answer the same.
  r.set_sort_order(RangeRequest::NONE);
  EXPECT_EQ(Keys(Get(r)), (std::vector<std::string>{"b", "b/1", "a"}));
  r.set_sort_target(RangeRequest::VERSION);
  r.set_sort_order(RangeRequest::DESCEND);
  r.set_limit(1);
  EXPECT_EQ(Keys(Get(r)), (std::vector<std::string>{"a"}));

  r = RangeReq(std::string("\0", 1), std::string("\0", 1));
  r.set_min_mod_revision(4);
  r.set_max_mod_revision(6);
  resp = Get(r);
  EXPECT_EQ(Keys(resp), (std::vector<std::string>{"b/1", "b/2", "c"}));
  EXPECT_EQ(resp.count(), 6);  // etcd counts before the filters.
  r = RangeReq(std::string("\0", 1), std::string("\0", 1));
  r.set_max_create_revision(3);
  EXPECT_EQ(Keys(Get(r)), (std::vector<std::string>{"a", "b"}));
  r = RangeReq(std::string("\0", 1), std::string("\0", 1));
  r.set_min_create_revision(7);
  EXPECT_EQ(Keys(Get(r)), (std::vector<std::string>{std::string("\xff", 1)}));

  r = RangeReq("a", "c");
  r.set_keys_only(true);
  resp = Get(r);
  ASSERT_EQ(resp.kvs_size(), 4);
  EXPECT_EQ(resp.kvs(0).value(), "");
  EXPECT_EQ(resp.kvs(0).version(), 2);
  r.set_keys_only(false);
  r.set_count_only(true);
  resp = Get(r);
  EXPECT_EQ(resp.kvs_size(), 0);
  EXPECT_EQ(resp.count(), 4);
  EXPECT_FALSE(resp.more());

  Result<etcdserverpb::RangeResponse> future = store_->Range(RangeReq("a", "", 9));
  EXPECT_EQ(future.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Msg(future.status()), "etcdserver: mvcc: required revision is a future revision");
  EXPECT_EQ(store_->Range(RangeReq("")).status().code(), absl::StatusCode::kInvalidArgument);
}

// --- Txn ----------------------------------------------------------------------------------

TEST_F(StoreTest, RangeInMemoryAnswersAsRangeDoesOrRefusesWhatIsOnlyOnDisk) {
  Put("a", "1");
  Put("b", "2");
  Put("b", "3");
  const std::vector<RangeRequest> requests = {RangeReq("b"), RangeReq("z"), RangeReq("a", "c"),
                                              RangeReq("b", "", 3)};
  for (const RangeRequest& request : requests) {
    Result<etcdserverpb::RangeResponse> on_disk = store_->Range(request);
    Result<etcdserverpb::RangeResponse> in_memory = store_->RangeInMemory(request);
    ASSERT_TRUE(on_disk.ok() && in_memory.ok()) << in_memory.status();
    EXPECT_EQ(in_memory->SerializeAsString(), on_disk->SerializeAsString())
        << request.ShortDebugString();
  }
  EXPECT_EQ(store_->RangeInMemory(RangeReq("")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Defragmenting writes new table files, whose blocks no cache holds yet.
  ASSERT_TRUE(store_->Defragment().ok());
  EXPECT_EQ(store_->RangeInMemory(RangeReq("b")).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Get("b").kvs(0).value(), "3");  // Range may read the disk, and fills the cache.
  Result<etcdserverpb::RangeResponse> in_memory = store_->RangeInMemory(RangeReq("b"));
  ASSERT_TRUE(in_memory.ok()) << in_memory.status();
  EXPECT_EQ(in_memory->kvs(0).value(), "3");
}

TEST_F(StoreTest, TxnWritesShareOneRevisionWithRisingSubRevisions) {
  Put("c", "old");  // rev 2
  TxnRequest t;
  *t.add_compare() = Cmp("c", Compare::VALUE, Compare::EQUAL, 0, "old");
  *t.add_success() = OpPut("a", "1");
  *t.add_success() = OpRange("a");  // Sees the Txn's own put.
  *t.add_success() = OpPut("b", "2");
  *t.add_success() = OpDel("c");
  CommandResult r = Apply(Req(t));
  ASSERT_TRUE(r.status.ok()) << r.status;
  auto resp = std::get<etcdserverpb::TxnResponse>(r.response);
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(resp.header().revision(), 3);
  EXPECT_EQ(resp.responses(0).response_put().header().revision(), 3);
  EXPECT_EQ(resp.responses(1).response_range().kvs(0).value(), "1");
  EXPECT_EQ(resp.responses(1).response_range().header().revision(), 3);
  EXPECT_EQ(resp.responses(3).response_delete_range().deleted(), 1);
  EXPECT_EQ(Rev(), 3);
  ASSERT_EQ(r.events.size(), 3u);
  for (const auto& e : r.events) EXPECT_EQ(e.kv().mod_revision(), 3);

  // The sub-revisions order the events of one revision: the watch history has them in order.
  Result<Store::EventsPage> page =
      store_->EventsSince(std::string("\0", 1), std::string("\0", 1), Revision(3), 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 3u);
  EXPECT_EQ(page->events[0].kv().key(), "a");
  EXPECT_EQ(page->events[1].kv().key(), "b");
  EXPECT_EQ(page->events[2].kv().key(), "c");
  EXPECT_EQ(page->events[2].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(page->next_revision, Revision(4));
}

TEST_F(StoreTest, TxnComparesEveryTargetAndResult) {
  Apply(GrantReq(5, 100));
  Put("k", "m", 5);  // rev 2: create 2, mod 2, version 1, lease 5
  Put("k", "n", 5);  // rev 3: version 2
  struct Case {
    Compare compare;
    bool expected;
  };
  const std::vector<Case> cases = {
      {Cmp("k", Compare::VERSION, Compare::EQUAL, 2), true},
      {Cmp("k", Compare::VERSION, Compare::GREATER, 2), false},
      {Cmp("k", Compare::CREATE, Compare::EQUAL, 2), true},
      {Cmp("k", Compare::CREATE, Compare::LESS, 3), true},
      {Cmp("k", Compare::MOD, Compare::EQUAL, 3), true},
      {Cmp("k", Compare::MOD, Compare::NOT_EQUAL, 3), false},
      {Cmp("k", Compare::VALUE, Compare::GREATER, 0, "m"), true},
      {Cmp("k", Compare::VALUE, Compare::LESS, 0, "m"), false},
      {Cmp("k", Compare::LEASE, Compare::EQUAL, 5), true},
      // A missing key compares as all zero...
      {Cmp("nope", Compare::VERSION, Compare::EQUAL, 0), true},
      {Cmp("nope", Compare::CREATE, Compare::EQUAL, 0), true},
      // ...except its value, which never compares true.
      {Cmp("nope", Compare::VALUE, Compare::EQUAL, 0, ""), false},
      {Cmp("nope", Compare::VALUE, Compare::NOT_EQUAL, 0, "x"), false},
  };
  for (const Case& c : cases) {
    TxnRequest t;
    *t.add_compare() = c.compare;
    CommandResult r = Apply(Req(t));
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).succeeded(), c.expected)
        << c.compare.DebugString();
  }
  // A compare over a range holds only if it holds for every key.
  Put("k2", "z");
  TxnRequest t;
  Compare c = Cmp("k", Compare::VALUE, Compare::GREATER, 0, "a");
  c.set_range_end("l");
  *t.add_compare() = c;
  EXPECT_TRUE(std::get<etcdserverpb::TxnResponse>(Apply(Req(t)).response).succeeded());
  t.mutable_compare(0)->set_value("n");
  EXPECT_FALSE(std::get<etcdserverpb::TxnResponse>(Apply(Req(t)).response).succeeded());
}

TEST_F(StoreTest, ReadOnlyAndEmptyTxnsDoNotBumpTheRevision) {
  Put("a", "1");
  TxnRequest t;
  *t.add_success() = OpRange("a");
  *t.add_failure() = OpPut("never", "x");  // Not taken: this Txn writes nothing.
  CommandResult r = Apply(Req(t));
  EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).header().revision(), 2);
  TxnRequest d;
  *d.add_success() = OpDel("zzz");
  r = Apply(Req(d));
  EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).header().revision(), 2);
  EXPECT_EQ(Rev(), 2);
}

TEST_F(StoreTest, NestedTxnsFollowTheirOwnComparesAgainstTheStateBeforeTheTxn) {
  Put("x", "1");
  TxnRequest inner;
  // Evaluated before the outer Txn writes, as etcd does: x is still "1" here.
  *inner.add_compare() = Cmp("x", Compare::VALUE, Compare::EQUAL, 0, "1");
  *inner.add_success() = OpPut("inner", "then");
  *inner.add_failure() = OpPut("inner", "else");
  TxnRequest outer;
  *outer.add_compare() = Cmp("x", Compare::VERSION, Compare::EQUAL, 1);
  *outer.add_success() = OpPut("x", "2");
  *outer.add_success() = OpTxn(inner);
  CommandResult r = Apply(Req(outer));
  ASSERT_TRUE(r.status.ok()) << r.status;
  auto resp = std::get<etcdserverpb::TxnResponse>(r.response);
  EXPECT_TRUE(resp.succeeded());
  EXPECT_TRUE(resp.responses(1).response_txn().succeeded());
  EXPECT_EQ(Get("inner").kvs(0).value(), "then");
  EXPECT_EQ(Get("inner").kvs(0).mod_revision(), 3);
  EXPECT_EQ(Get("x").kvs(0).mod_revision(), 3);
}

TEST_F(StoreTest, AFailingTxnLeavesNothingApplied) {
  Put("a", "1");
  const int64_t before = Rev();
  // The second put names a lease that does not exist: the whole Txn fails.
  TxnRequest t;
  *t.add_success() = OpPut("a", "2");
  *t.add_success() = OpPut("b", "2", 42);
  CommandResult r = Apply(Req(t));
  EXPECT_EQ(Msg(r.status), "etcdserver: requested lease not found");
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(Rev(), before);
  EXPECT_EQ(Get("a").kvs(0).value(), "1");
  EXPECT_EQ(Get("b").kvs_size(), 0);

  // A range at a future revision fails it too.
  TxnRequest f;
  *f.add_success() = OpPut("a", "3");
  *f.add_success() = OpRange("a", "", 100);
  r = Apply(Req(f));
  EXPECT_EQ(Msg(r.status), "etcdserver: mvcc: required revision is a future revision");
  EXPECT_EQ(Get("a").kvs(0).value(), "1");

  // Validation: duplicate keys and too many operations.
  TxnRequest dup;
  *dup.add_success() = OpPut("a", "1");
  *dup.add_success() = OpPut("a", "2");
  EXPECT_EQ(Msg(Apply(Req(dup)).status), "etcdserver: duplicate key given in txn request");
  TxnRequest overlap;
  *overlap.add_success() = OpDel("a", "c");
  *overlap.add_success() = OpPut("b", "2");
  EXPECT_EQ(Msg(Apply(Req(overlap)).status), "etcdserver: duplicate key given in txn request");
  TxnRequest big;
  for (size_t i = 0; i <= Store::kTxnOpsMax; ++i) *big.add_success() = OpRange("a");
  EXPECT_EQ(Msg(Apply(Req(big)).status), "etcdserver: too many operations in txn request");
  EXPECT_EQ(Rev(), before);

  // A failure after writes: etcd's duplicate-key check does not give "\0" its "to the end"
  // meaning, so the delete of everything from "a" on passes it and removes "b" before the put
  // that keeps b's value finds b gone. Everything rolls back, the key index included.
  Put("b", "1");
  const int64_t before_late = Rev();
  TxnRequest late;
  *late.add_success() = OpDel("a", std::string(1, '\0'));
  *late.add_success() = OpPut("c", "1");
  RequestOp keep_b = OpPut("b", "");
  keep_b.mutable_request_put()->set_ignore_value(true);
  *late.add_success() = keep_b;
  r = Apply(Req(late));
  EXPECT_EQ(Msg(r.status), "etcdserver: key not found");
  EXPECT_EQ(Rev(), before_late);
  ASSERT_TRUE(store_->CheckKeyIndex().ok()) << store_->CheckKeyIndex();
  ASSERT_EQ(Get("a").kvs_size(), 1);
  EXPECT_EQ(Get("a").kvs(0).value(), "1");
  ASSERT_EQ(Get("b").kvs_size(), 1);
  EXPECT_EQ(Get("b").kvs(0).value(), "1");
  EXPECT_EQ(Get("c").kvs_size(), 0);
  // The next write sees the rolled-back index: b's version goes on from 1.
  EXPECT_EQ(Put("b", "2").events.at(0).kv().version(), 2);
  EXPECT_EQ(Get("c").kvs_size(), 0);
}

TEST_F(StoreTest, MalformedEntryFailsAloneAndTheBatchGoesOn) {
  const std::string put = Req(PutReq("a", "1")).SerializeAsString();
  const std::string garbage = "\xff\xff\xff";
  std::vector<Entry> entries = {{Index(1), Entry::Kind::kCommand, garbage},
                                {Index(2), Entry::Kind::kNoOp, ""},
                                {Index(3), Entry::Kind::kCommand, put},
                                {Index(4), Entry::Kind::kMembership, "m1"}};
  Result<std::vector<CommandResult>> results = store_->Apply(entries);
  ASSERT_TRUE(results.ok());
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*results)[1].status.ok());
  EXPECT_EQ(store_->applied_index(), Index(4));
  EXPECT_EQ(store_->membership(), "m1");
  // Replayed entries are skipped.
  results = store_->Apply(entries);
  ASSERT_TRUE(results.ok());
  EXPECT_TRUE(results->empty());
  EXPECT_EQ(Rev(), 2);
}

// --- Compaction -----------------------------------------------------------------------------

TEST_F(StoreTest, CompactionKeepsTheNewestRevisionAtOrBelowAndDropsTombstones) {
  Put("a", "1");            // 2
  Put("a", "2");            // 3
  Put("b", "1");            // 4
  Apply(Req(DelReq("b")));  // 5
  Put("c", "1");            // 6
  Put("a", "3");            // 7
  CommandResult r = Apply(CompactReq(5));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(std::get<etcdserverpb::CompactionResponse>(r.response).header().revision(), 7);
  EXPECT_EQ(store_->compact_revision(), Revision(5));

  // Exactly at the compacted revision: still readable.
  auto at5 = Get(std::string("\0", 1), std::string("\0", 1), 5);
  EXPECT_EQ(Keys(at5), (std::vector<std::string>{"a"}));
  EXPECT_EQ(at5.kvs(0).value(), "2");
  EXPECT_EQ(Get("a", "", 6).kvs(0).value(), "2");
  EXPECT_EQ(Get("a", "", 7).kvs(0).value(), "3");
  // Below it: compacted.
  Result<etcdserverpb::RangeResponse> old = store_->Range(RangeReq("a", "", 4));
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Msg(old.status()), "etcdserver: mvcc: required revision has been compacted");

  // History: from 5 on, the delete of b at 5 is gone with its tombstone (as in etcd).
  Result<Store::EventsPage> page =
      store_->EventsSince(std::string("\0", 1), std::string("\0", 1), Revision(5), 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].kv().key(), "c");
  EXPECT_EQ(page->events[1].kv().mod_revision(), 7);
  EXPECT_EQ(store_->EventsSince("a", "", Revision(4), 100).status().code(),
            absl::StatusCode::kOutOfRange);

  EXPECT_EQ(Msg(Apply(CompactReq(5)).status),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(Msg(Apply(CompactReq(8)).status),
            "etcdserver: mvcc: required revision is a future revision");
  EXPECT_EQ(store_->HashKV(Revision(4)).status().code(), absl::StatusCode::kOutOfRange);

  // Version and create revision survive compaction.
  Put("a", "4");
  EXPECT_EQ(Get("a").kvs(0).version(), 4);
  EXPECT_EQ(Get("a").kvs(0).create_revision(), 2);
  // Compacting everything leaves only the live keys' newest revisions.
  ASSERT_TRUE(Apply(CompactReq(Rev())).status.ok());
  page = store_->EventsSince(std::string("\0", 1), std::string("\0", 1), Revision(Rev()), 100);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 1u);
}

// --- Leases ---------------------------------------------------------------------------------

TEST_F(StoreTest, LeaseGrantRevokeAndExpire) {
  Lessor lessor;
  ASSERT_TRUE(store_->AttachLessor(&lessor).ok());
  CommandResult r = Apply(GrantReq(1, 60));
  auto grant = std::get<etcdserverpb::LeaseGrantResponse>(r.response);
  EXPECT_EQ(grant.id(), 1);
  EXPECT_EQ(grant.ttl(), 60);
  EXPECT_EQ(Rev(), 1);  // Grants do not bump the revision.
  EXPECT_EQ(lessor.size(), 1u);
  EXPECT_EQ(Msg(Apply(GrantReq(1, 60)).status), "etcdserver: lease already exists");
  EXPECT_EQ(Apply(GrantReq(0, 60)).status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Msg(Apply(GrantReq(3, Store::kLeaseTtlMax_s + 1)).status),
            "etcdserver: too large lease TTL");
  EXPECT_EQ(std::get<etcdserverpb::LeaseGrantResponse>(Apply(GrantReq(2, 1)).response).ttl(),
            2);  // Raised to the minimum.

  Put("x", "1", 1);  // 2
  Put("y", "1", 1);  // 3
  Put("z", "1", 2);  // 4
  Put("y", "2", 2);  // 5: moves y from lease 1 to lease 2
  Put("w", "1", 1);  // 6
  Result<LeaseInfo> info = store_->TimeToLive(1, true);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->keys, (std::vector<std::string>{"w", "x"}));
  EXPECT_EQ(info->granted_ttl_s, 60);
  EXPECT_EQ(info->remaining_ttl_s, 60);

  ASSERT_TRUE(Apply(CheckpointReq(1, 25)).status.ok());
  EXPECT_EQ(store_->TimeToLive(1, false)->remaining_ttl_s, 25);

  // Revoking deletes every attached key at one revision.
  r = Apply(RevokeReq(1));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(Rev(), 7);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].kv().key(), "w");
  EXPECT_EQ(r.events[1].kv().key(), "x");
  for (const auto& e : r.events) {
    EXPECT_EQ(e.type(), mvccpb::Event::DELETE);
    EXPECT_EQ(e.kv().mod_revision(), 7);
  }
  EXPECT_EQ(Keys(Get(std::string("\0", 1), std::string("\0", 1))),
            (std::vector<std::string>{"y", "z"}));
  EXPECT_EQ(store_->TimeToLive(1, false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Msg(Apply(RevokeReq(1)).status), "etcdserver: requested lease not found");
  EXPECT_EQ(lessor.size(), 1u);

  // Expiry: the same effect, and a no-op once the lease is gone.
  r = Apply(ExpireReq(2));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.events.size(), 2u);
  EXPECT_EQ(Rev(), 8);
  r = Apply(ExpireReq(2));
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(Rev(), 8);
  EXPECT_EQ(Get("y").kvs_size(), 0);
  EXPECT_EQ(lessor.size(), 0u);
  Result<std::vector<LeaseInfo>> leases = store_->Leases();
  ASSERT_TRUE(leases.ok());
  EXPECT_TRUE(leases->empty());
}

TEST_F(StoreTest, DeletingAKeyDetachesItFromItsLease) {
  Apply(GrantReq(1, 60));
  Put("a", "1", 1);
  Apply(Req(DelReq("a")));
  Put("a", "2");  // Re-created without a lease.
  EXPECT_TRUE(store_->TimeToLive(1, true)->keys.empty());
  Apply(RevokeReq(1));
  EXPECT_EQ(Get("a").kvs(0).value(), "2");  // Untouched by the revocation.
}

// --- Restart, crash and replay, determinism, snapshots ----------------------------------------

TEST(StoreLayout, OpenRefusesAStoreWithTheEarlierKeyOrderedTableAndLeavesItAsItWas) {
  TempDir tmp;
  const std::string dir = tmp.sub("old");
  {
    // The tables as builds up to 3ddedaf created them, with one row in kv.keys.
    auto old = storage::Backend::Open(
        dir, {"kv.keys", "kv.revs", "kv.leases", "kv.lease_keys", "kv.meta"});
    ASSERT_TRUE(old.ok()) << old.status();
    std::unique_ptr<storage::WriteBatch> batch = (*old)->NewBatch();
    batch->Put(storage::TableId{0}, "old row", "old value");
    ASSERT_TRUE((*old)->Commit(*batch, Index(7)).ok());
    ASSERT_TRUE((*old)->Sync().ok());
  }
  auto store = Store::Open(dir);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("unknown table \"kv.keys\""), std::string::npos)
      << store.status();
  auto again =
      storage::Backend::Open(dir, {"kv.keys", "kv.revs", "kv.leases", "kv.lease_keys", "kv.meta"});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->applied_index(), Index(7));
  EXPECT_EQ(*(*again)->Get(storage::TableId{0}, "old row"),
            std::optional<std::string>("old value"));
}

TEST_F(StoreTest, ReopenRestoresEverything) {
  Apply(GrantReq(9, 30));
  Put("a", "1", 9);
  Put("b", "1");
  Put("b", "2");
  Apply(CompactReq(3));
  Apply(CheckpointReq(9, 11));
  const Result<Store::Hash> hash = store_->HashKV(Revision(0));
  ASSERT_TRUE(hash.ok());
  const Index applied = store_->applied_index();
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_EQ(store_->applied_index(), applied);
  EXPECT_EQ(store_->current_revision(), Revision(4));
  EXPECT_EQ(store_->compact_revision(), Revision(3));
  EXPECT_EQ(store_->HashKV(Revision(0))->hash, hash->hash);
  Result<LeaseInfo> info = store_->TimeToLive(9, true);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->remaining_ttl_s, 11);
  EXPECT_EQ(info->keys, std::vector<std::string>{"a"});
  Lessor lessor;
  ASSERT_TRUE(store_->AttachLessor(&lessor).ok());
  lessor.Promote(0);
  EXPECT_EQ(lessor.RemainingMs(9, 0), 11'000);
}

// A random workload over few keys, so that versions, deletes, Txns, leases and compactions
// interact.
std::vector<std::string> RandomWorkload(uint64_t seed, size_t n) {
  base::Prng prng(seed);
  std::vector<std::string> out;
  int64_t revision_guess = 1;
  const auto key = [&] { return std::string(1, static_cast<char>('a' + prng.Below(6))); };
  for (size_t i = 0; i < n; ++i) {
    synodpb::Request q;
    q.set_id(i);
    switch (prng.Below(11)) {
      case 0:
      case 1:
      case 2:
        q = Req(PutReq(key(), fmt::format("v{}", i), prng.Chance(1, 4) ? 1 + prng.Below(3) : 0));
        break;
      case 3:
        q = Req(DelReq(key(), prng.Chance(1, 2) ? key() : ""));
        break;
      case 4: {
        TxnRequest t;
        *t.add_compare() = Cmp(key(), Compare::VERSION, Compare::GREATER, prng.Below(3));
        *t.add_success() = OpPut("t" + key(), fmt::format("s{}", i));
        *t.add_success() = OpRange("a", "z");
        *t.add_failure() = OpDel(key());
        q = Req(t);
        break;
      }
      case 5:
        q = GrantReq(1 + prng.Below(3), 10);
        break;
      case 6:
        q = prng.Chance(1, 2) ? RevokeReq(1 + prng.Below(3)) : ExpireReq(1 + prng.Below(3));
        break;
      case 7:
        q = CheckpointReq(1 + prng.Below(3), prng.Below(10));
        break;
      case 8:
        q = CompactReq(static_cast<int64_t>(prng.Below(static_cast<uint64_t>(i) + 2)));
        break;
      case 9: {
        // Deletes every key from one on, puts another, then fails when a key it needs is gone
        // (AFailingTxnLeavesNothingApplied), or succeeds when that key lies before the deletes.
        TxnRequest t;
        *t.add_success() = OpDel(key(), std::string(1, '\0'));
        *t.add_success() = OpPut("t" + key(), fmt::format("late{}", i));
        RequestOp keep = OpPut(key(), "");
        keep.mutable_request_put()->set_ignore_value(true);
        *t.add_success() = keep;
        q = Req(t);
        break;
      }
      default:
        q = Req(PutReq(key(), "", 0));
        q.mutable_put()->set_ignore_value(true);
        q.mutable_put()->set_prev_kv(true);
    }
    (void)revision_guess;
    out.push_back(q.SerializeAsString());
  }
  return out;
}

std::vector<Entry> Entries(const std::vector<std::string>& data, size_t from, size_t to) {
  std::vector<Entry> entries;
  for (size_t i = from; i < to; ++i) {
    entries.push_back({Index(i + 1), Entry::Kind::kCommand, data[i]});
  }
  return entries;
}

std::string Serialize(const CommandResult& r) {
  std::string out =
      fmt::format("{}|{}|{}|{}|", r.index, r.request_id, r.status.ToString(), r.revision);
  std::visit(
      [&](const auto& response) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(response)>, std::monostate>) {
          out += response.SerializeAsString();
        }
      },
      r.response);
  for (const auto& e : r.events) out += e.SerializeAsString();
  return out;
}

TEST(StoreDeterminism, TwoReplicasApplyingTheSameEntriesAgreeByteForByte) {
  const std::vector<std::string> data = RandomWorkload(42, 600);
  TempDir tmp;
  std::vector<std::string> answers[2];
  uint32_t hashes[2];
  for (int replica = 0; replica < 2; ++replica) {
    auto store = Store::Open(tmp.sub(fmt::format("r{}", replica)));
    ASSERT_TRUE(store.ok());
    // Different batching on each replica: the outcome must not depend on it.
    const size_t step = replica == 0 ? 1 : 37;
    for (size_t i = 0; i < data.size(); i += step) {
      auto results = (*store)->Apply(Entries(data, i, std::min(i + step, data.size())));
      ASSERT_TRUE(results.ok()) << results.status();
      for (const auto& r : *results) answers[replica].push_back(Serialize(r));
      ASSERT_TRUE((*store)->CheckKeyIndex().ok()) << (*store)->CheckKeyIndex() << " at " << i;
    }
    auto hash = (*store)->HashKV(Revision(0));
    ASSERT_TRUE(hash.ok());
    hashes[replica] = hash->hash;
    EXPECT_GT((*store)->current_revision(), Revision(50));
  }
  EXPECT_EQ(hashes[0], hashes[1]);
  ASSERT_EQ(answers[0].size(), answers[1].size());
  for (size_t i = 0; i < answers[0].size(); ++i) EXPECT_EQ(answers[0][i], answers[1][i]) << i;
}

// The reads at every revision the store still keeps, and its watch history, against a model
// built from the events each command reported: after every tenth entry of a random workload
// with compactions, Range over all keys at each revision from the compacted one to the current
// one must give the model's state at that revision, and EventsSince the events above the
// compacted revision.
TEST(StoreHistory, ReadsAtEveryKeptRevisionAndTheWatchHistoryMatchAModelOfTheEvents) {
  const std::vector<std::string> data = RandomWorkload(11, 600);
  TempDir tmp;
  auto store = Store::Open(tmp.sub("store"));
  ASSERT_TRUE(store.ok());
  std::map<std::string, mvccpb::KeyValue> live;
  std::map<int64_t, std::map<std::string, mvccpb::KeyValue>> state_at{
      {1, {}}};  // Revision -> state.
  std::vector<mvccpb::Event> history;
  size_t checked_reads = 0;
  int64_t highest_compaction = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    auto results = (*store)->Apply(Entries(data, i, i + 1), /*events_with_prev_kv=*/false);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const CommandResult& result : *results) {
      for (const mvccpb::Event& event : result.events) {
        if (event.type() == mvccpb::Event::PUT) {
          live[event.kv().key()] = event.kv();
        } else {
          live.erase(event.kv().key());
        }
        history.push_back(event);
      }
      state_at[static_cast<int64_t>(result.revision.value())] = live;
    }
    if (i % 10 != 9) continue;
    const int64_t compacted = static_cast<int64_t>((*store)->compact_revision().value());
    const int64_t current = static_cast<int64_t>((*store)->current_revision().value());
    highest_compaction = std::max(highest_compaction, compacted);
    for (int64_t rev = std::max<int64_t>(compacted, 1); rev <= current; ++rev) {
      auto range = (*store)->Range(RangeReq(std::string("\0", 1), std::string("\0", 1), rev));
      ASSERT_TRUE(range.ok()) << range.status() << " at " << rev;
      const std::map<std::string, mvccpb::KeyValue>& expected =
          std::prev(state_at.upper_bound(rev))->second;
      ASSERT_EQ(static_cast<size_t>(range->kvs_size()), expected.size()) << "at " << rev;
      size_t k = 0;
      for (const auto& [key, kv] : expected) {
        EXPECT_EQ(range->kvs(static_cast<int>(k++)).SerializeAsString(), kv.SerializeAsString())
            << key << " at " << rev << " after entry " << i;
      }
      ++checked_reads;
    }
    auto page = (*store)->EventsSince(std::string("\0", 1), std::string("\0", 1),
                                      Revision(static_cast<uint64_t>(compacted + 1)),
                                      Store::kEventsPerCallMax);
    ASSERT_TRUE(page.ok()) << page.status();
    std::vector<std::string> expected_events;
    for (const mvccpb::Event& event : history) {
      if (event.kv().mod_revision() > compacted)
        expected_events.push_back(event.SerializeAsString());
    }
    ASSERT_EQ(page->events.size(), expected_events.size()) << "after entry " << i;
    for (size_t e = 0; e < expected_events.size(); ++e) {
      EXPECT_EQ(page->events[e].SerializeAsString(), expected_events[e]) << e;
    }
  }
  // The workload compacted, and the reads covered many revisions.
  EXPECT_GT(highest_compaction, 20);
  EXPECT_GT(checked_reads, 500u);
}

TEST(StoreDeterminism, CrashLosingUnsyncedSuffixThenReplayConverges) {
  const std::vector<std::string> data = RandomWorkload(7, 400);
  TempDir tmp;
  // The reference replica applies everything without interruption.
  auto reference = Store::Open(tmp.sub("reference"));
  ASSERT_TRUE(reference.ok());
  std::vector<std::string> reference_answers;
  for (size_t i = 0; i < data.size(); i += 10) {
    auto results = (*reference)->Apply(Entries(data, i, std::min(i + 10, data.size())));
    ASSERT_TRUE(results.ok());
    for (const auto& r : *results) reference_answers.push_back(Serialize(r));
  }

  // The crashing replica: applies 250 entries, syncs after 150. The disk as a crash could leave
  // it holds exactly the synced prefix (simulated by copying the closed database at that point).
  {
    auto store = Store::Open(tmp.sub("node"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Apply(Entries(data, 0, 150)).ok());
    ASSERT_TRUE((*store)->Sync().ok());
  }
  fs::copy(tmp.sub("node"), tmp.sub("crashed"), fs::copy_options::recursive);
  {
    auto store = Store::Open(tmp.sub("node"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Apply(Entries(data, 150, 250)).ok());  // Lost in the crash.
  }
  auto store = Store::Open(tmp.sub("crashed"));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->applied_index(), Index(150));
  EXPECT_TRUE((*store)->CheckKeyIndex().ok()) << (*store)->CheckKeyIndex();
  // Replay from an older log position: entries up to 150 are skipped, the rest applied once.
  std::vector<std::string> answers;
  for (size_t i = 100; i < data.size(); i += 25) {
    auto results = (*store)->Apply(Entries(data, i, std::min(i + 25, data.size())));
    ASSERT_TRUE(results.ok());
    for (const auto& r : *results) answers.push_back(Serialize(r));
  }
  ASSERT_EQ(answers.size(), data.size() - 150);
  for (size_t i = 0; i < answers.size(); ++i) {
    EXPECT_EQ(answers[i], reference_answers[150 + i]) << i;
  }
  EXPECT_EQ((*store)->HashKV(Revision(0))->hash, (*reference)->HashKV(Revision(0))->hash);
}

TEST_F(StoreTest, SnapshotInstallsAnEqualStore) {
  const std::vector<std::string> data = RandomWorkload(99, 300);
  ASSERT_TRUE(store_->Apply(Entries(data, 0, data.size())).ok());
  Result<std::unique_ptr<storage::SnapshotReader>> reader = store_->ReadSnapshot(2048);
  ASSERT_TRUE(reader.ok());

  TempDir other;
  auto follower = Store::Open(other.sub("follower"));
  ASSERT_TRUE(follower.ok());
  Lessor lessor;
  ASSERT_TRUE((*follower)->AttachLessor(&lessor).ok());
  ASSERT_TRUE((*follower)->Apply(Entries(RandomWorkload(5, 20), 0, 20)).ok());  // Stale state.
  auto installer = storage::SnapshotInstaller::Start((*follower)->dir());
  ASSERT_TRUE(installer.ok());
  size_t chunks = 0;
  while (true) {
    auto chunk = (*reader)->Next();
    ASSERT_TRUE(chunk.ok());
    if (!chunk->has_value()) break;
    ASSERT_TRUE((*installer)->Add(**chunk).ok());
    ++chunks;
  }
  EXPECT_GT(chunks, 3u);
  ASSERT_TRUE((*installer)->Finish().ok());
  reader->reset();
  ASSERT_TRUE((*follower)->InstallSnapshot(std::move(*installer)).ok());

  EXPECT_EQ((*follower)->applied_index(), store_->applied_index());
  EXPECT_TRUE((*follower)->CheckKeyIndex().ok()) << (*follower)->CheckKeyIndex();
  EXPECT_EQ((*follower)->current_revision(), store_->current_revision());
  EXPECT_EQ((*follower)->compact_revision(), store_->compact_revision());
  EXPECT_EQ((*follower)->HashKV(Revision(0))->hash, store_->HashKV(Revision(0))->hash);
  RangeRequest all = RangeReq(std::string("\0", 1), std::string("\0", 1));
  EXPECT_EQ((*follower)->Range(all)->SerializeAsString(), store_->Range(all)->SerializeAsString());
  auto leases = store_->Leases();
  EXPECT_EQ(lessor.size(), leases->size());
  // Both go on identically.
  const std::vector<std::string> more = RandomWorkload(100, 50);
  std::vector<Entry> next;
  for (size_t i = 0; i < more.size(); ++i) {
    next.push_back({store_->applied_index().plus(i + 1), Entry::Kind::kCommand, more[i]});
  }
  auto a = store_->Apply(next);
  auto b = (*follower)->Apply(next);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ(Serialize((*a)[i]), Serialize((*b)[i]));
  EXPECT_EQ((*follower)->HashKV(Revision(0))->hash, store_->HashKV(Revision(0))->hash);
}

TEST_F(StoreTest, EventsSincePagesAtRevisionBoundariesAndCarriesPrevKv) {
  Put("a", "1");  // 2
  TxnRequest t;
  *t.add_success() = OpPut("a", "2");
  *t.add_success() = OpPut("b", "2");
  Apply(Req(t));  // 3: two events
  Put("c", "3");  // 4
  Result<Store::EventsPage> page =
      store_->EventsSince(std::string("\0", 1), std::string("\0", 1), Revision(2), 2, true);
  ASSERT_TRUE(page.ok());
  // Two events allowed, but revision 3 has two: it is not cut.
  ASSERT_EQ(page->events.size(), 3u);
  EXPECT_EQ(page->next_revision, Revision(4));
  EXPECT_EQ(page->events[1].prev_kv().value(), "1");
  EXPECT_FALSE(page->events[2].has_prev_kv());
  page = store_->EventsSince("b", "", Revision(1), 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].kv().key(), "b");
  EXPECT_EQ(page->next_revision, Revision(5));
}

}  // namespace
}  // namespace synod::kv

// --- Alarms ----------------------------------------------------------------------------------

namespace synod::kv {
namespace {

synodpb::Request AlarmReq(etcdserverpb::AlarmRequest::AlarmAction action, uint64_t member,
                          etcdserverpb::AlarmType type) {
  synodpb::Request q;
  q.mutable_alarm()->set_action(action);
  q.mutable_alarm()->set_memberid(member);
  q.mutable_alarm()->set_alarm(type);
  return q;
}

TEST_F(StoreTest, NoSpaceAlarmRefusesWritesButNotDeletesCompactionOrReadsUntilDisarmed) {
  Put("a", "1");
  Put("b", "2");
  CommandResult raised =
      Apply(AlarmReq(etcdserverpb::AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE));
  ASSERT_TRUE(raised.status.ok());
  EXPECT_EQ(std::get<etcdserverpb::AlarmResponse>(raised.response).alarms_size(), 1);
  // Raising it again changes nothing and answers with no alarm, as etcd does.
  EXPECT_EQ(std::get<etcdserverpb::AlarmResponse>(
                Apply(AlarmReq(etcdserverpb::AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE))
                    .response)
                .alarms_size(),
            0);
  const int64_t rev = Rev();
  EXPECT_EQ(Msg(Apply(Req(PutReq("c", "3"))).status), "etcdserver: mvcc: database space exceeded");
  TxnRequest writes;
  *writes.add_success() = OpPut("c", "3");
  EXPECT_TRUE(absl::IsResourceExhausted(Apply(Req(writes)).status));
  EXPECT_TRUE(absl::IsResourceExhausted(Apply(GrantReq(5, 60)).status));
  EXPECT_EQ(Rev(), rev);  // Nothing of them applied.
  TxnRequest read_only;
  *read_only.add_success() = OpRange("a");
  EXPECT_TRUE(Apply(Req(read_only)).status.ok());
  EXPECT_TRUE(Apply(Req(DelReq("a"))).status.ok());
  EXPECT_TRUE(Apply(CompactReq(Rev())).status.ok());

  // The alarm is replicated state: it survives a restart.
  Reopen();
  ASSERT_EQ(store_->alarms().size(), 1u);
  EXPECT_EQ(store_->alarms()[0].memberid(), 7u);
  CommandResult listed = Apply(AlarmReq(etcdserverpb::AlarmRequest::GET, 0, etcdserverpb::NONE));
  EXPECT_EQ(std::get<etcdserverpb::AlarmResponse>(listed.response).alarms_size(), 1);
  EXPECT_TRUE(absl::IsResourceExhausted(Apply(Req(PutReq("c", "3"))).status));

  CommandResult disarmed =
      Apply(AlarmReq(etcdserverpb::AlarmRequest::DEACTIVATE, 7, etcdserverpb::NOSPACE));
  EXPECT_EQ(std::get<etcdserverpb::AlarmResponse>(disarmed.response).alarms_size(), 1);
  EXPECT_TRUE(store_->alarms().empty());
  EXPECT_TRUE(Apply(Req(PutReq("c", "3"))).status.ok());
}

}  // namespace
}  // namespace synod::kv
