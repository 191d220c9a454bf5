#include "server/worker_pool.h"

#include <utility>

#include "base/thread_name.h"

namespace synod::server {

WorkerPool::WorkerPool(size_t threads, std::string name) : name_(std::move(name)) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() {
  std::deque<absl::AnyInvocable<void()>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  changed_.notify_all();
  // Outside the lock, since dropping work may answer clients; before the join, so they are
  // answered without waiting for the work that is running.
  dropped.clear();
  for (std::thread& thread : threads_) thread.join();
}

void WorkerPool::Post(absl::AnyInvocable<void()> work) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // Dropped: see the header.
    queue_.push_back(std::move(work));
  }
  changed_.notify_one();
}

void WorkerPool::Run() {
  NameThisThread(name_);
  for (;;) {
    absl::AnyInvocable<void()> work;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace synod::server
