#include "server/worker_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "server/completion.h"

namespace synod::server {
namespace {

TEST(WorkerPoolTest, OneThreadRunsWorkInOrderOfPosting) {
  std::vector<int> order;
  std::promise<void> finished;
  {
    WorkerPool pool(1, "test-pool");
    for (int i = 0; i < 100; ++i) pool.Post([&order, i] { order.push_back(i); });
    pool.Post([&finished] { finished.set_value(); });
    finished.get_future().wait();
  }
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

// Named, so that a profile or `top -H` tells the pool's threads from the member's others; a name
// longer than Linux keeps is cut to its first 15 bytes.
TEST(WorkerPoolTest, ItsThreadsCarryItsName) {
  WorkerPool pool(2, "reader-of-the-store");
  for (int i = 0; i < 2; ++i) {
    std::promise<std::string> name;
    pool.Post([&name] {
      char buffer[16] = {};
      pthread_getname_np(pthread_self(), buffer, sizeof(buffer));
      name.set_value(buffer);
    });
    EXPECT_EQ(name.get_future().get(), "reader-of-the-s");
  }
}

TEST(WorkerPoolTest, WorkQueuedAtDestructionIsDroppedAndItsClientAnsweredServerStopped) {
  auto pool = std::make_unique<WorkerPool>(1, "test-pool");
  std::promise<void> release_first;
  std::promise<void> first_started;
  pool->Post([&] {
    first_started.set_value();
    release_first.get_future().wait();
  });
  first_started.get_future().wait();
  // Queued behind the running work: it never runs.
  auto [done, outcome] = CompletionWithFuture<Status>();
  bool ran = false;
  pool->Post([&ran, done = std::move(done)]() mutable {
    ran = true;
    done.Complete(absl::OkStatus());
  });
  std::thread destroy([&pool] { pool.reset(); });
  // The destructor drops the queued work before it waits for the running one.
  EXPECT_EQ(outcome.get(), ServerStoppedError());
  release_first.set_value();
  destroy.join();
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace synod::server
