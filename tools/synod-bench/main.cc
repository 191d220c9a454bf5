// synod-bench: a load generator for any etcd v3 endpoint (synod or etcd), speaking the v3 gRPC
// API through gRPC's asynchronous client (a completion queue per thread, many outstanding
// calls per connection). Flags are named as in etcd's own benchmark tool where it has them.
//
//   synod-bench put --endpoints 127.0.0.1:2379 --conns 100 --clients 1000 --val-size 256
//     --total 100000
//   synod-bench range --consistency s --key-space-size 1000 --duration 10 --rate 5000
//   synod-bench txn-put | mixed --read-ratio 0.9 | watch --watchers 100 --rate 200 |
//     lease-keepalive --leases 100
//
// Exit status: 0 when the run completed (errors are counted and shown), 1 when every request
// failed or a watcher missed an event, 2 for invalid flags.

#include <fmt/format.h>

#include <absl/synchronization/mutex.h>

#include <CLI/CLI.hpp>
#include <cmath>

#include "load.h"
#include "summary.h"

namespace synod::bench {
namespace {

// Rejects what cannot give a meaningful run, at start-up, instead of adjusting it silently.
std::string Validate(const Options& options) {
  if (options.endpoints.empty()) return "--endpoints is empty";
  if (options.conns == 0 || options.clients == 0 || options.threads == 0) {
    return "--conns, --clients and --threads must be at least 1";
  }
  if (options.total == 0 && options.duration_s <= 0) return "give --total or --duration";
  if (options.rate_per_s < 0) return "--rate must not be negative";
  if (options.key_space_size == 0) return "--key-space-size must be at least 1";
  if (options.read_ratio < 0 || options.read_ratio > 1) return "--read-ratio must be in [0, 1]";
  const size_t digits = fmt::format("{}", options.key_space_size - 1).size();
  if (options.key_size < options.key_prefix.size() + digits) {
    return fmt::format("--key-size {} cannot hold the prefix \"{}\" and {} digits of key index",
                       options.key_size, options.key_prefix, digits);
  }
  if (options.workload == Workload::kWatch && (options.watchers == 0 || options.streams == 0)) {
    return "--watchers and --streams must be at least 1";
  }
  if (options.workload == Workload::kLeaseKeepAlive &&
      (options.leases == 0 || options.streams == 0 || options.lease_ttl_s <= 0)) {
    return "--leases, --streams and --lease-ttl must be at least 1";
  }
  return "";
}

LoadResult RunWorkload(const Options& options,
                       const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                       Progress* progress) {
  switch (options.workload) {
    case Workload::kPut:
    case Workload::kRange:
    case Workload::kTxnPut:
    case Workload::kMixed:
      return RunUnaryLoad(options, channels, progress);
    case Workload::kWatch:
      return RunWatchLoad(options, channels, progress);
    case Workload::kLeaseKeepAlive:
      return RunLeaseKeepAliveLoad(options, channels, progress);
  }
  return LoadResult{};
}

int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"synod-bench: load generator for etcd v3 endpoints (synod, etcd)"};
  app.require_subcommand(1);
  std::string endpoints = "127.0.0.1:2379";
  app.add_option("--endpoints", endpoints, "comma-separated host:port list; clients round-robin");
  app.add_option("--conns", options.conns, "gRPC connections (channels)");
  app.add_option("--clients", options.clients, "concurrent outstanding requests");
  app.add_option("--threads", options.threads, "load threads, one completion queue each");
  auto* total = app.add_option("--total", options.total, "requests in all (default 10000)");
  app.add_option("--duration", options.duration_s, "seconds to run (instead of --total)");
  app.add_option("--rate", options.rate_per_s,
                 "open loop: requests per second at fixed intended times, latency from the "
                 "intended time; 0 = closed loop");
  app.add_option("--key-space-size", options.key_space_size, "number of distinct keys");
  app.add_option("--key-size", options.key_size, "key bytes (prefix + zero-padded index)");
  app.add_option("--val-size", options.val_size, "value bytes");
  app.add_option("--key-prefix", options.key_prefix, "prefix of every key");
  app.add_flag("--sequential-keys", options.sequential_keys, "keys in order, not random");
  app.add_option("--seed", options.seed, "seed of key choice and read/write mix");
  app.add_option("--request-timeout", options.request_timeout_s, "seconds per unary request");
  app.add_flag("--json", options.json, "write the summary as JSON to stdout");
  app.fallthrough();

  app.add_subcommand("put", "puts");
  std::string consistency = "l";
  auto* range = app.add_subcommand("range", "single-key ranges");
  range->add_option("--consistency", consistency, "l (linearizable) or s (serializable)")
      ->check(CLI::IsMember({"l", "s"}));
  app.add_subcommand("txn-put", "compare-and-swap: Txn on the key's mod_revision, then put");
  auto* mixed = app.add_subcommand("mixed", "ranges and puts");
  mixed->add_option("--read-ratio", options.read_ratio, "fraction of ranges, 0..1");
  mixed->add_option("--consistency", consistency, "of the ranges: l or s")
      ->check(CLI::IsMember({"l", "s"}));
  auto* watch = app.add_subcommand(
      "watch", "watchers on the key prefix; a writer puts (--rate, --clients); checks delivery");
  watch->add_option("--watchers", options.watchers, "watchers in all");
  watch->add_option("--streams", options.streams, "watch streams the watchers share");
  watch->add_option("--drain-timeout", options.drain_timeout_s,
                    "seconds to wait for events after the last put");
  auto* lease = app.add_subcommand("lease-keepalive", "leases kept alive over keepalive streams");
  lease->add_option("--leases", options.leases, "leases granted and kept alive");
  lease->add_option("--streams", options.streams, "keepalive streams the leases share");
  lease->add_option("--lease-ttl", options.lease_ttl_s, "TTL of each lease in seconds");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  const std::string name = app.get_subcommands().front()->get_name();
  static const std::map<std::string, Workload> kWorkloads = {
      {"put", Workload::kPut},        {"range", Workload::kRange},
      {"txn-put", Workload::kTxnPut}, {"mixed", Workload::kMixed},
      {"watch", Workload::kWatch},    {"lease-keepalive", Workload::kLeaseKeepAlive}};
  options.workload = kWorkloads.at(name);
  options.workload_name = name;
  options.linearizable = consistency == "l";
  options.endpoints.clear();
  for (const auto& endpoint : CLI::detail::split(endpoints, ',')) {
    if (!endpoint.empty()) options.endpoints.push_back(endpoint);
  }
  if (total->count() == 0 && options.duration_s <= 0) options.total = 10000;
  if (const std::string invalid = Validate(options); !invalid.empty()) {
    fmt::print(stderr, "synod-bench: {}\n", invalid);
    return 2;
  }

  const std::vector<std::shared_ptr<grpc::Channel>> channels = OpenChannels(options);
  Progress progress;
  progress.planned = options.total;
  progress.start_ns = SteadyClock().Now();
  progress.duration_ns = static_cast<Nanos>(options.duration_s * 1e9);
  ProgressDisplay display(&progress, stderr);
  const LoadResult result = RunWorkload(options, channels, &progress);
  const double duration_s = (SteadyClock().Now() - progress.start_ns) / 1e9;
  display.Stop();

  const RunReport report{options, result, duration_s};
  if (options.json) {
    fmt::print(stderr, "{}", FormatText(report));
    fmt::print("{}", FormatJson(report));
  } else {
    fmt::print("{}", FormatText(report));
  }
  if (result.succeeded == 0 && result.error_count() > 0) {
    fmt::print(stderr, "synod-bench: every request failed; the first: {}\n", result.first_error);
    return 1;
  }
  if (options.workload == Workload::kWatch &&
      !result.watch_delivery.Complete(result.watch_events_expected)) {
    fmt::print(stderr, "synod-bench: watchers did not see exactly the acknowledged puts\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace synod::bench

int main(int argc, char** argv) {
  // As in the member (src/server/main.cc): Debian's Abseil, built without NDEBUG, records every
  // absl::Mutex lock (gRPC's included) in a global lock-order graph, 1.1% of the machine's CPU
  // under 128 clients of puts. The load generator shares the machine with the servers it
  // measures, so its overhead is theirs to lose.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return synod::bench::Main(argc, argv);
}
