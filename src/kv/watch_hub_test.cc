#include "kv/watch_hub.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>

namespace synod::kv {
namespace {

namespace fs = std::filesystem;

// Records what the hub hands it; refuses deliveries while `full`.
class RecordingSink : public WatchSink {
 public:
  struct Delivery {
    int64_t watch_id;
    int64_t revision;
    std::vector<std::string> events;  // "PUT key=value" / "DELETE key"
    bool from_history;
  };

  bool Deliver(int64_t watch_id, Revision revision, std::vector<mvccpb::Event> events,
               bool from_history) override {
    if (full && !from_history) return false;
    Delivery& delivery = deliveries.emplace_back();
    delivery.watch_id = watch_id;
    delivery.revision = static_cast<int64_t>(revision.value());
    delivery.from_history = from_history;
    for (const mvccpb::Event& event : events) {
      std::string text = event.type() == mvccpb::Event::PUT
                             ? "PUT " + event.kv().key() + "=" + event.kv().value()
                             : "DELETE " + event.kv().key();
      text += "@" + std::to_string(event.kv().mod_revision());
      if (event.has_prev_kv()) text += " prev=" + event.prev_kv().value();
      delivery.events.push_back(text);
    }
    return true;
  }
  void Compacted(int64_t watch_id, Revision compact_revision) override {
    compacted[watch_id] = static_cast<int64_t>(compact_revision.value());
  }
  void CatchUpNeeded() override { ++catch_up_requests; }

  // Every event delivered to `watch_id`, in order.
  std::vector<std::string> EventsOf(int64_t watch_id) const {
    std::vector<std::string> all;
    for (const Delivery& d : deliveries) {
      if (d.watch_id == watch_id) all.insert(all.end(), d.events.begin(), d.events.end());
    }
    return all;
  }

  bool full = false;
  std::vector<Delivery> deliveries;
  std::map<int64_t, int64_t> compacted;
  int catch_up_requests = 0;
};

// A store plus a hub wired the way the server wires them: each applied command's events are
// notified right after the apply.
class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "synod-watch-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    Result<std::unique_ptr<Store>> store = Store::Open(dir_ + "/store");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  void Apply(synodpb::Request request) {
    std::string data = request.SerializeAsString();
    const Entry entry{index_ = index_.next(), Entry::Kind::kCommand, data};
    // As the server's applier: previous values only while a watcher asks for them.
    Result<std::vector<CommandResult>> results = store_->Apply({&entry, 1}, hub_.AnyWantsPrevKv());
    ASSERT_TRUE(results.ok()) << results.status();
    for (const CommandResult& result : *results) {
      ASSERT_TRUE(result.status.ok()) << result.status;
      hub_.Notify(result.revision, result.events);
    }
  }
  void Put(std::string key, std::string value) {
    synodpb::Request request;
    request.mutable_put()->set_key(std::move(key));
    request.mutable_put()->set_value(std::move(value));
    Apply(std::move(request));
  }
  void Delete(std::string key, std::string range_end = "") {
    synodpb::Request request;
    request.mutable_delete_range()->set_key(std::move(key));
    request.mutable_delete_range()->set_range_end(std::move(range_end));
    Apply(std::move(request));
  }
  void Compact(int64_t revision) {
    synodpb::Request request;
    request.mutable_compaction()->set_revision(revision);
    Apply(std::move(request));
  }
  void Watch(int64_t id, WatchSpec spec, int64_t start = 0) {
    const Revision current = store_->current_revision();
    hub_.Add(&sink_, id, std::move(spec),
             start == 0 ? current.next() : Revision(static_cast<uint64_t>(start)), current);
  }
  // Runs CatchUp until nothing is left, as a stream's sender does; returns the number of pages.
  int CatchUpAll() {
    int calls = 0;
    for (;;) {
      Result<bool> more = hub_.CatchUp(*store_, &sink_);
      EXPECT_TRUE(more.ok()) << more.status();
      ++calls;
      if (!more.ok() || !*more) return calls;
    }
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  Index index_;
  WatchHub hub_;
  RecordingSink sink_;
};

WatchSpec Key(std::string key) { return WatchSpec{.key = std::move(key)}; }
WatchSpec Prefix(std::string prefix) {
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  return WatchSpec{.key = std::move(prefix), .range_end = std::move(end)};
}

TEST_F(WatchHubTest, SyncedWatcherGetsEachNewRevisionOfItsRangeOnly) {
  Watch(0, Key("a"));
  Watch(1, Prefix("b/"));
  Put("a", "1");    // 2
  Put("b/x", "2");  // 3
  Put("c", "3");    // 4
  Delete("a");      // 5
  EXPECT_EQ(sink_.EventsOf(0), (std::vector<std::string>{"PUT a=1@2", "DELETE a@5"}));
  EXPECT_EQ(sink_.EventsOf(1), (std::vector<std::string>{"PUT b/x=2@3"}));
  ASSERT_EQ(sink_.deliveries.size(), 3u);
  EXPECT_EQ(sink_.deliveries[0].revision, 2);
  EXPECT_FALSE(sink_.deliveries[0].from_history);
  EXPECT_EQ(sink_.catch_up_requests, 0);
}

TEST_F(WatchHubTest, FiltersAndPrevKvAreHonoured) {
  Put("k", "old");  // 2
  WatchSpec no_put = Key("k");
  no_put.filter_put = true;
  WatchSpec no_delete = Key("k");
  no_delete.filter_delete = true;
  no_delete.prev_kv = true;
  Watch(0, no_put);
  Watch(1, no_delete);
  Watch(2, Key("k"));  // Without prev_kv, the store's prev_kv is stripped.
  Put("k", "new");  // 3
  Delete("k");      // 4
  EXPECT_EQ(sink_.EventsOf(0), (std::vector<std::string>{"DELETE k@4"}));
  EXPECT_EQ(sink_.EventsOf(1), (std::vector<std::string>{"PUT k=new@3 prev=old"}));
  EXPECT_EQ(sink_.EventsOf(2), (std::vector<std::string>{"PUT k=new@3", "DELETE k@4"}));
}

TEST_F(WatchHubTest, PreviousValuesAreAskedForWhileSomeWatcherWantsThem) {
  EXPECT_FALSE(hub_.AnyWantsPrevKv());
  Watch(0, Key("k"));
  EXPECT_FALSE(hub_.AnyWantsPrevKv());
  WatchSpec with_prev = Key("k");
  with_prev.prev_kv = true;
  Watch(1, with_prev);
  Watch(2, with_prev);
  EXPECT_TRUE(hub_.AnyWantsPrevKv());
  Put("k", "1");  // 2
  Put("k", "2");  // 3
  EXPECT_EQ(sink_.EventsOf(1), (std::vector<std::string>{"PUT k=1@2", "PUT k=2@3 prev=1"}));
  EXPECT_TRUE(hub_.Remove(&sink_, 1));
  EXPECT_TRUE(hub_.AnyWantsPrevKv());
  hub_.RemoveAll(&sink_);
  EXPECT_FALSE(hub_.AnyWantsPrevKv());

  // A watcher the hub drops because its history was compacted away counts no more.
  Put("k", "3");  // 4
  Compact(4);
  Watch(3, with_prev, /*start=*/2);
  EXPECT_TRUE(hub_.AnyWantsPrevKv());
  CatchUpAll();
  EXPECT_FALSE(hub_.Contains(&sink_, 3));
  EXPECT_FALSE(hub_.AnyWantsPrevKv());
}

TEST_F(WatchHubTest, WatcherFromThePastReplaysHistoryThenContinuesWithoutGapOrRepeat) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "x");  // 4
  Watch(7, Key("a"), /*start=*/3);
  EXPECT_EQ(sink_.catch_up_requests, 1);
  EXPECT_TRUE(sink_.deliveries.empty());
  Put("a", "3");  // 5: the watcher is unsynced, so nothing arrives yet.
  EXPECT_TRUE(sink_.deliveries.empty());
  CatchUpAll();
  Put("a", "4");  // 6: synced again.
  EXPECT_EQ(sink_.EventsOf(7), (std::vector<std::string>{"PUT a=2@3", "PUT a=3@5", "PUT a=4@6"}));
  EXPECT_TRUE(sink_.deliveries[0].from_history);
  EXPECT_EQ(sink_.deliveries[0].revision, 5);  // The store's revision when it was read.
  EXPECT_FALSE(sink_.deliveries.back().from_history);
  EXPECT_EQ(hub_.SyncedWatchers(&sink_), std::vector<int64_t>{7});
}

TEST_F(WatchHubTest, WatcherStartingInTheFutureSkipsEarlierRevisions) {
  Watch(0, Key("a"), /*start=*/4);
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  EXPECT_EQ(sink_.EventsOf(0), std::vector<std::string>{"PUT a=3@4"});
}

TEST_F(WatchHubTest, FullSinkMakesTheWatcherFallBehindAndCatchUpInOrder) {
  Watch(0, Key("a"));
  Put("a", "1");  // 2
  sink_.full = true;
  Put("a", "2");  // 3: refused, the watcher falls behind at 3.
  Put("a", "3");  // 4: not offered at all.
  EXPECT_EQ(sink_.catch_up_requests, 1);
  EXPECT_TRUE(hub_.SyncedWatchers(&sink_).empty());
  sink_.full = false;
  CatchUpAll();
  Put("a", "4");  // 5
  EXPECT_EQ(sink_.EventsOf(0),
            (std::vector<std::string>{"PUT a=1@2", "PUT a=2@3", "PUT a=3@4", "PUT a=4@5"}));
}

TEST_F(WatchHubTest, LongHistoryComesInPagesThatNeverSplitARevision) {
  for (int i = 0; i < 2500; ++i) Put("k", std::to_string(i));  // 2..2501
  Watch(0, Key("k"), /*start=*/2);
  EXPECT_EQ(CatchUpAll(), 3);
  std::vector<std::string> events = sink_.EventsOf(0);
  ASSERT_EQ(events.size(), 2500u);
  EXPECT_EQ(events.front(), "PUT k=0@2");
  EXPECT_EQ(events.back(), "PUT k=2499@2501");
  for (const RecordingSink::Delivery& d : sink_.deliveries) {
    EXPECT_LE(d.events.size(), WatchHub::kCatchUpEventsMax);
  }
}

TEST_F(WatchHubTest, CompactedHistoryCancelsTheWatcherWithTheCompactRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  Compact(3);
  Watch(0, Key("a"), /*start=*/2);  // Below the compacted revision: canceled.
  Watch(1, Key("a"), /*start=*/3);  // At it: served, as in etcd.
  CatchUpAll();
  EXPECT_EQ(sink_.compacted, (std::map<int64_t, int64_t>{{0, 3}}));
  EXPECT_FALSE(hub_.Contains(&sink_, 0));
  EXPECT_EQ(sink_.EventsOf(1), (std::vector<std::string>{"PUT a=2@3", "PUT a=3@4"}));
}

TEST_F(WatchHubTest, ReplacedStoreMakesEveryWatcherCatchUpFromIt) {
  Watch(0, Key("a"));
  Put("a", "1");  // 2
  hub_.MarkAllUnsynced();
  EXPECT_EQ(sink_.catch_up_requests, 1);
  Put("a", "2");  // 3: arrives through the catch-up, once.
  CatchUpAll();
  EXPECT_EQ(sink_.EventsOf(0), (std::vector<std::string>{"PUT a=1@2", "PUT a=2@3"}));
}

TEST_F(WatchHubTest, RemovedWatchersGetNothingMore) {
  Watch(0, Key("a"));
  Watch(1, Key("a"));
  EXPECT_TRUE(hub_.Remove(&sink_, 0));
  EXPECT_FALSE(hub_.Remove(&sink_, 0));
  Put("a", "1");
  EXPECT_TRUE(sink_.EventsOf(0).empty());
  EXPECT_EQ(sink_.EventsOf(1).size(), 1u);
  hub_.RemoveAll(&sink_);
  EXPECT_EQ(hub_.size(), 0u);
  Put("a", "2");
  EXPECT_EQ(sink_.deliveries.size(), 1u);
}

}  // namespace
}  // namespace synod::kv
