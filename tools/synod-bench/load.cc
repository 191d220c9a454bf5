#include "load.h"

#include <fmt/format.h>

#include "base/assert.h"

namespace synod::bench {

const char* OperationName(Operation operation) {
  switch (operation) {
    case Operation::kPut:
      return "put";
    case Operation::kRange:
      return "range";
    case Operation::kTxn:
      return "txn";
    case Operation::kWatchEvent:
      return "watch-event";
    case Operation::kKeepAlive:
      return "keepalive";
  }
  SYNOD_ASSERT_MSG(false, "unknown operation {}", static_cast<int>(operation));
  return "";
}

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::DO_NOT_USE:
      break;
  }
  return "INVALID_CODE";
}

void LoadResult::RecordSuccess(Operation operation, Nanos latency) {
  SYNOD_ASSERT(latency >= 0);
  ++succeeded;
  latency_ns.Record(static_cast<uint64_t>(latency));
  by_operation[static_cast<size_t>(operation)].Record(static_cast<uint64_t>(latency));
}

void LoadResult::RecordError(const grpc::Status& status) {
  SYNOD_ASSERT(!status.ok());
  ++errors[status.error_code()];
  if (first_error.empty()) {
    first_error =
        fmt::format("{}: {}", StatusCodeName(status.error_code()), status.error_message());
  }
}

void LoadResult::Merge(const LoadResult& other) {
  latency_ns.Merge(other.latency_ns);
  for (int i = 0; i < kOperationCount; ++i) by_operation[i].Merge(other.by_operation[i]);
  succeeded += other.succeeded;
  for (const auto& [code, count] : other.errors) errors[code] += count;
  if (first_error.empty()) first_error = other.first_error;
  txn_compare_succeeded += other.txn_compare_succeeded;
  txn_compare_failed += other.txn_compare_failed;
  watch_events_expected += other.watch_events_expected;
  watch_delivery.Add(other.watch_delivery);
}

uint64_t LoadResult::error_count() const {
  uint64_t total = 0;
  for (const auto& [code, count] : errors) total += count;
  return total;
}

std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const Options& options) {
  SYNOD_ASSERT(!options.endpoints.empty());
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (uint32_t i = 0; i < options.conns; ++i) {
    std::string target = options.endpoints[i % options.endpoints.size()];
    for (const char* scheme : {"http://", "https://"}) {
      if (target.starts_with(scheme)) target = target.substr(std::string(scheme).size());
    }
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    arguments.SetInt("synod.bench.connection", static_cast<int>(i));
    // etcd's clients accept responses of any size (clientv3's MaxCallRecvMsgSize).
    arguments.SetMaxReceiveMessageSize(-1);
    channels.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments));
  }
  return channels;
}

void RunCompletionLoop(grpc::CompletionQueue* queue, const Clock& clock,
                       const std::function<std::optional<Nanos>()>& pump) {
  while (true) {
    const std::optional<Nanos> wake_ns = pump();
    if (!wake_ns.has_value()) break;
    const Nanos wait_ns = std::max<Nanos>(0, *wake_ns - clock.Now());
    const auto deadline = std::chrono::system_clock::now() + std::chrono::nanoseconds(wait_ns);
    void* tag = nullptr;
    bool ok = false;
    const grpc::CompletionQueue::NextStatus status = queue->AsyncNext(&tag, &ok, deadline);
    SYNOD_ASSERT_MSG(status != grpc::CompletionQueue::SHUTDOWN,
                     "completion queue shut down while the load was running");
    if (status == grpc::CompletionQueue::GOT_EVENT) static_cast<Completion*>(tag)->OnComplete(ok);
  }
  queue->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue->Next(&tag, &ok)) {
    SYNOD_ASSERT_MSG(false, "an operation completed after its load thread finished");
  }
}

std::string MakeKey(const Options& options, uint64_t index) {
  SYNOD_ASSERT(options.key_size >= options.key_prefix.size());
  const size_t digits = options.key_size - options.key_prefix.size();
  std::string key = fmt::format("{}{:0{}}", options.key_prefix, index, digits);
  SYNOD_ASSERT_MSG(key.size() == options.key_size, "key {} does not fit --key-size {}", key,
                   options.key_size);
  return key;
}

std::string MakeValue(const Options& options) {
  // Printable, so etcdctl shows it; varied, so no layer can compress it to nothing.
  std::string value(options.val_size, 'a');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>('a' + (i * 7) % 26);
  return value;
}

}  // namespace synod::bench
