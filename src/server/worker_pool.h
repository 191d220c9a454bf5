#pragma once

// A few threads that run posted work in order of posting. The node's loop hands them what must
// not run on the loop (a linearizable read of the store once its read index is applied: the
// loop never waits on disk), and gRPC's callback threads must not block either.
//
// Work still queued when the pool is destroyed is dropped unrun; work that answers a client
// holds a Completion (server/completion.h), which then answers "server stopped".

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace synod::server {

class WorkerPool {
 public:
  // The threads are named `name` (base/thread_name.h).
  WorkerPool(size_t threads, std::string name);
  // Finishes the work running now, drops the rest, joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Any thread. The queue is unbounded: callers bound what they post (the node bounds the
  // reads waiting for it).
  void Post(absl::AnyInvocable<void()> work);

 private:
  void Run();

  const std::string name_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<absl::AnyInvocable<void()>> queue_;  // Guarded by mutex_.
  bool stopping_ = false;                         // Guarded by mutex_.
  std::vector<std::thread> threads_;
};

}  // namespace synod::server
