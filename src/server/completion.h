#pragma once

// The answer to a client request that the Node's loop finishes later: a callback that runs
// exactly once. Handlers on gRPC's callback API (services.h) hand one to the Node and return at
// once, so no thread waits per request in flight; the loop runs it when the entry is applied or
// the read is confirmed.
//
// A Completion dropped without having run (the request was still queued when the node stopped)
// runs with etcd's "server stopped" error, so no client is left without an answer and no gRPC
// call without a Finish.

#include <future>
#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "base/status.h"

namespace synod::server {

// etcd's "etcdserver: server stopped" (defined in node.cc).
Status ServerStoppedError();

template <typename Outcome>
class Completion {
 public:
  Completion() = default;
  explicit Completion(absl::AnyInvocable<void(Outcome)> callback)
      : callback_(std::move(callback)) {}
  Completion(Completion&& other) noexcept : callback_(std::exchange(other.callback_, nullptr)) {}
  Completion& operator=(Completion&& other) noexcept {
    if (this != &other) {
      Drop();
      callback_ = std::exchange(other.callback_, nullptr);
    }
    return *this;
  }
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  ~Completion() { Drop(); }

  // Runs the callback with `outcome`; later calls do nothing.
  void Complete(Outcome outcome) {
    if (!callback_) return;
    auto callback = std::exchange(callback_, nullptr);
    callback(std::move(outcome));
  }

 private:
  void Drop() {
    if (callback_) Complete(Outcome(ServerStoppedError()));
  }

  absl::AnyInvocable<void(Outcome)> callback_;
};

// A Completion whose outcome a thread that waits for it collects from the returned future.
template <typename Outcome>
std::pair<Completion<Outcome>, std::future<Outcome>> CompletionWithFuture() {
  auto promise = std::make_shared<std::promise<Outcome>>();
  std::future<Outcome> future = promise->get_future();
  return {Completion<Outcome>([promise](Outcome outcome) { promise->set_value(std::move(outcome)); }),
          std::move(future)};
}

}  // namespace synod::server
