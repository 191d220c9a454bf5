#include "storage/log_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace synod::storage {
namespace {

LogWrite OneEntry(uint64_t index) {
  LogWrite write;
  write.entries.push_back(raft::Entry{Term(1), Index(index), raft::EntryType::kNormal, "x", {}});
  return write;
}

// Writes queued while an fsync runs share the next one: the essence of group commit.
TEST(LogWriterTest, WritesQueuedDuringAnFsyncShareTheNext) {
  std::promise<void> first_sync_started;
  std::promise<void> release_first_sync;
  std::shared_future<void> released = release_first_sync.get_future().share();
  std::vector<size_t> group_sizes;
  std::vector<uint64_t> written_order;
  LogWriter writer([&](std::vector<LogWrite>& group) {
    group_sizes.push_back(group.size());
    for (const LogWrite& write : group) written_order.push_back(write.entries[0].index.value());
    if (group_sizes.size() == 1) {
      first_sync_started.set_value();
      released.wait();
    }
    return absl::OkStatus();
  });

  std::vector<uint64_t> completed_order;
  std::mutex completed_mutex;
  auto record = [&](uint64_t index) {
    return [&, index](Status status) {
      ASSERT_TRUE(status.ok());
      std::lock_guard lock(completed_mutex);
      completed_order.push_back(index);
    };
  };
  writer.Submit(OneEntry(1), record(1));
  first_sync_started.get_future().wait();
  for (uint64_t index = 2; index <= 11; ++index) writer.Submit(OneEntry(index), record(index));
  release_first_sync.set_value();
  std::promise<void> last_done;
  writer.Submit(OneEntry(12), [&](Status) { last_done.set_value(); });
  last_done.get_future().wait();

  ASSERT_GE(group_sizes.size(), 2u);
  EXPECT_EQ(group_sizes[0], 1u);
  EXPECT_GE(group_sizes[1], 10u);  // All ten waited behind the first fsync.
  std::lock_guard lock(completed_mutex);
  EXPECT_EQ(completed_order, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(written_order.size(), 12u);
  EXPECT_EQ(writer.stats().entries, 12u);
}

// After a failed fsync nothing later may be reported durable.
TEST(LogWriterTest, AFailureFailsEveryLaterWrite) {
  std::atomic<int> calls = 0;
  LogWriter writer([&](std::vector<LogWrite>&) {
    ++calls;
    return absl::InternalError("fdatasync: Input/output error");
  });
  std::vector<std::promise<Status>> results(5);
  for (size_t i = 0; i < results.size(); ++i) {
    writer.Submit(OneEntry(i + 1), [&, i](Status status) { results[i].set_value(status); });
  }
  for (auto& result : results) {
    const Status status = result.get_future().get();
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  }
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace synod::storage
