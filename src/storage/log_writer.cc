#include "storage/log_writer.h"

#include "base/assert.h"
#include "base/thread_name.h"

namespace synod::storage {

LogWriter::LogWriter(WriteAndSync write_and_sync)
    : write_and_sync_(std::move(write_and_sync)), thread_([this] { Run(); }) {}

LogWriter::~LogWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  queue_changed_.notify_all();
  thread_.join();
  SYNOD_ASSERT(queue_.empty());
}

void LogWriter::Submit(LogWrite write, Done done) {
  SYNOD_ASSERT(done != nullptr);
  {
    std::unique_lock lock(mutex_);
    SYNOD_ASSERT(!stopping_);
    queue_changed_.wait(lock, [this] { return queue_.size() < kQueuedWritesMax; });
    queue_.push_back(Queued{std::move(write), std::move(done)});
  }
  queue_changed_.notify_all();
}

LogWriter::Stats LogWriter::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void LogWriter::Run() {
  NameThisThread("log-writer");
  std::vector<LogWrite> group;
  std::vector<Done> completions;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      queue_changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        SYNOD_ASSERT(stopping_);
        return;
      }
      // Group commit: everything that arrived while the previous fsync ran shares this one.
      for (Queued& queued : queue_) {
        stats_.entries += queued.write.entries.size() + queued.write.slots.size();
        group.push_back(std::move(queued.write));
        completions.push_back(std::move(queued.done));
      }
      stats_.writes += queue_.size();
      ++stats_.groups;
      queue_.clear();
    }
    queue_changed_.notify_all();
    if (failure_.ok()) failure_ = write_and_sync_(group);
    for (Done& done : completions) done(failure_);
    group.clear();
    completions.clear();
  }
}

}  // namespace synod::storage
