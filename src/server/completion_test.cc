#include "server/completion.h"

#include <gtest/gtest.h>

#include <chrono>

namespace synod::server {
namespace {

TEST(CompletionTest, RunsOnceWithTheFirstOutcome) {
  int calls = 0;
  Status seen;
  Completion<Status> done([&](Status status) {
    ++calls;
    seen = std::move(status);
  });
  done.Complete(absl::NotFoundError("first"));
  done.Complete(absl::OkStatus());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, absl::NotFoundError("first"));
}

TEST(CompletionTest, DroppedUnrunItAnswersServerStopped) {
  int calls = 0;
  Status seen;
  {
    Completion<Status> done([&](Status status) {
      ++calls;
      seen = std::move(status);
    });
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, ServerStoppedError());
  EXPECT_EQ(seen.message(), "etcdserver: server stopped");
}

TEST(CompletionTest, OnlyTheMovedToCompletionRuns) {
  int calls = 0;
  Completion<Status> first([&](Status) { ++calls; });
  Completion<Status> second(std::move(first));
  first.Complete(absl::OkStatus());
  EXPECT_EQ(calls, 0);
  Completion<Status> third;
  third = std::move(second);
  third.Complete(absl::OkStatus());
  EXPECT_EQ(calls, 1);
}

TEST(CompletionTest, AssigningOverAnUnrunCompletionAnswersItServerStopped) {
  Status seen;
  Completion<Status> replaced([&](Status status) { seen = std::move(status); });
  replaced = Completion<Status>([](Status) {});
  EXPECT_EQ(seen, ServerStoppedError());
}

TEST(CompletionTest, WithFutureTheWaiterGetsTheOutcome) {
  auto [done, future] = CompletionWithFuture<Result<int>>();
  done.Complete(7);
  ASSERT_EQ(future.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  Result<int> outcome = future.get();
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, 7);
}

}  // namespace
}  // namespace synod::server
