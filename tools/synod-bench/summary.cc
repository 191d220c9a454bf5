#include "summary.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace synod::bench {
namespace {

constexpr double kNanosPerMilli = 1e6;

struct LatencyFigures {
  double mean_ms, stddev_ms, p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
};

LatencyFigures FiguresOf(const LatencyHistogram& histogram) {
  auto ms = [&](double quantile) { return histogram.ValueAtQuantile(quantile) / kNanosPerMilli; };
  return LatencyFigures{histogram.mean() / kNanosPerMilli,
                        histogram.stddev() / kNanosPerMilli,
                        ms(0.5),
                        ms(0.9),
                        ms(0.99),
                        ms(0.999),
                        histogram.max() / kNanosPerMilli};
}

std::string JsonString(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      quoted += fmt::format("\\u{:04x}", c);
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

std::string LatencyJson(const LatencyHistogram& histogram) {
  const LatencyFigures f = FiguresOf(histogram);
  return fmt::format(
      R"({{"mean":{:.4f},"stddev":{:.4f},"p50":{:.4f},"p90":{:.4f},"p99":{:.4f},"p99.9":{:.4f},)"
      R"("max":{:.4f}}})",
      f.mean_ms, f.stddev_ms, f.p50_ms, f.p90_ms, f.p99_ms, f.p999_ms, f.max_ms);
}

std::string LatencyLine(const LatencyHistogram& histogram) {
  const LatencyFigures f = FiguresOf(histogram);
  return fmt::format(
      "mean {:.3f}  stddev {:.3f}  p50 {:.3f}  p90 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}",
      f.mean_ms, f.stddev_ms, f.p50_ms, f.p90_ms, f.p99_ms, f.p999_ms, f.max_ms);
}

uint64_t Attempted(const LoadResult& result) {
  return result.succeeded + result.error_count();
}

double PerSecond(uint64_t count, double seconds) {
  return seconds > 0 ? count / seconds : 0.0;
}

}  // namespace

std::string FormatText(const RunReport& report) {
  const LoadResult& result = report.result;
  const Options& options = report.options;
  std::string text = fmt::format(
      "Summary: {} against {} ({} conns, {} clients, {})\n", options.workload_name,
      fmt::join(options.endpoints, ","), options.conns, options.clients,
      options.rate_per_s > 0 ? fmt::format("open loop at {} requests/s", options.rate_per_s)
                             : std::string("closed loop"));
  text += fmt::format("  Total:       {} requests, {} succeeded, {} failed\n", Attempted(result),
                      result.succeeded, result.error_count());
  for (const auto& [code, count] : result.errors) {
    text += fmt::format("  Error:       {} x {}\n", count, StatusCodeName(code));
  }
  if (!result.first_error.empty()) text += fmt::format("  First error: {}\n", result.first_error);
  text += fmt::format("  Duration:    {:.3f} s\n", report.duration_s);
  text += fmt::format("  Requests/s:  {:.1f}\n", PerSecond(result.succeeded, report.duration_s));
  text += fmt::format("  Latency ms:  {}\n", LatencyLine(result.latency_ns));
  int kinds = 0;
  for (const LatencyHistogram& histogram : result.by_operation) kinds += histogram.count() > 0;
  if (kinds > 1) {
    for (int i = 0; i < kOperationCount; ++i) {
      const LatencyHistogram& histogram = result.by_operation[i];
      if (histogram.count() == 0) continue;
      text += fmt::format("  {:<12} {:>9} x  {}\n", OperationName(static_cast<Operation>(i)),
                          histogram.count(), LatencyLine(histogram));
    }
  }
  if (options.workload == Workload::kTxnPut) {
    text += fmt::format("  Txn:         {} compares held (put done), {} failed\n",
                        result.txn_compare_succeeded, result.txn_compare_failed);
  }
  if (options.workload == Workload::kWatch) {
    text += fmt::format(
        "  Watch:       {} events expected, {} delivered, {} unexpected, {} before the put's "
        "answer\n",
        result.watch_events_expected, result.watch_delivery.delivered,
        result.watch_delivery.unexpected, result.watch_delivery.before_ack);
  }
  const std::vector<LatencyHistogram::Row> rows = result.latency_ns.PowerOfTwoRows();
  uint64_t widest = 1;
  for (const auto& row : rows) widest = std::max(widest, row.count);
  if (!rows.empty()) text += "  Histogram (ms):\n";
  constexpr int kBarWidth = 40;
  for (const auto& row : rows) {
    const auto bar = static_cast<size_t>((row.count * kBarWidth + widest - 1) / widest);
    text += fmt::format("    {:>10.3f} - {:>10.3f} [{:>9}] {}\n", row.low / kNanosPerMilli,
                        row.high / kNanosPerMilli, row.count, std::string(bar, '#'));
  }
  return text;
}

std::string FormatJson(const RunReport& report) {
  const LoadResult& result = report.result;
  const Options& options = report.options;
  std::vector<std::string> endpoints;
  for (const std::string& endpoint : options.endpoints) endpoints.push_back(JsonString(endpoint));
  std::vector<std::string> errors;
  for (const auto& [code, count] : result.errors) {
    errors.push_back(fmt::format("{}:{}", JsonString(StatusCodeName(code)), count));
  }
  std::vector<std::string> operations;
  for (int i = 0; i < kOperationCount; ++i) {
    const LatencyHistogram& histogram = result.by_operation[i];
    if (histogram.count() == 0) continue;
    operations.push_back(fmt::format(R"({}:{{"count":{},"latency_ms":{}}})",
                                     JsonString(OperationName(static_cast<Operation>(i))),
                                     histogram.count(), LatencyJson(histogram)));
  }
  return fmt::format(
      R"({{"workload":{},"endpoints":[{}],"conns":{},"clients":{},"rate":{},"total":{},)"
      R"("succeeded":{},"failed":{},"errors":{{{}}},"first_error":{},"duration_s":{:.6f},)"
      R"("requests_per_s":{:.3f},"latency_ms":{},"operations":{{{}}},)"
      R"("txn":{{"compare_succeeded":{},"compare_failed":{}}},)"
      R"("watch":{{"events_expected":{},"events_delivered":{},"events_unexpected":{},)"
      R"("events_before_ack":{}}}}})"
      "\n",
      JsonString(options.workload_name), fmt::join(endpoints, ","), options.conns, options.clients,
      options.rate_per_s, Attempted(result), result.succeeded, result.error_count(),
      fmt::join(errors, ","), JsonString(result.first_error), report.duration_s,
      PerSecond(result.succeeded, report.duration_s), LatencyJson(result.latency_ns),
      fmt::join(operations, ","), result.txn_compare_succeeded, result.txn_compare_failed,
      result.watch_events_expected, result.watch_delivery.delivered,
      result.watch_delivery.unexpected, result.watch_delivery.before_ack);
}

ProgressDisplay::ProgressDisplay(const Progress* progress, std::FILE* stream)
    : progress_(progress), stream_(stream), terminal_(isatty(fileno(stream)) == 1) {
  thread_ = std::thread([this] { Run(); });
}

ProgressDisplay::~ProgressDisplay() {
  Stop();
}

void ProgressDisplay::Stop() {
  if (stop_.HasBeenNotified()) return;
  stop_.Notify();
  thread_.join();
  if (terminal_) {
    fmt::print(stream_, "\r{}\n", Line());
    std::fflush(stream_);
  }
}

std::string ProgressDisplay::Line() const {
  const uint64_t completed = progress_->completed.load(std::memory_order_relaxed);
  const double elapsed_s = (SteadyClock().Now() - progress_->start_ns) / 1e9;
  double fraction = 0;
  if (progress_->planned > 0) {
    fraction = static_cast<double>(completed) / progress_->planned;
  } else if (progress_->duration_ns > 0) {
    fraction = elapsed_s * 1e9 / progress_->duration_ns;
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int kBarWidth = 30;
  const int filled = static_cast<int>(fraction * kBarWidth);
  return fmt::format("[{}{}] {:3.0f}%  {} done  {:.1f} s  {:.0f}/s", std::string(filled, '#'),
                     std::string(kBarWidth - filled, ' '), fraction * 100, completed, elapsed_s,
                     PerSecond(completed, elapsed_s));
}

void ProgressDisplay::Run() {
  // A terminal gets a smooth bar; a log gets a line every few seconds, not a wall of them.
  const auto interval = terminal_ ? std::chrono::milliseconds(200) : std::chrono::seconds(5);
  while (!stop_.WaitForNotificationWithTimeout(absl::FromChrono(interval))) {
    if (terminal_) {
      fmt::print(stream_, "\r{}", Line());
    } else {
      fmt::print(stream_, "{}\n", Line());
    }
    std::fflush(stream_);
  }
}

}  // namespace synod::bench
