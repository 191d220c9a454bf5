// A latency histogram with logarithmic buckets and a bounded relative error, in the manner of
// Gil Tene's HdrHistogram: every power-of-two range of values is split into the same number of
// equal sub-buckets, so a bucket's width is a fixed fraction of its values. Memory is fixed
// (it does not grow with the number of recorded values), recording is an index computation and
// an increment, and two histograms merge by adding their counts, so each load thread records
// into its own and the summary merges them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace synod::bench {

class LatencyHistogram {
 public:
  // Sub-buckets per power of two are 2^kPrecisionBits. Values below 2^(kPrecisionBits + 1)
  // have buckets of width 1 (exact); above, a bucket [low, low + width) has low >= 2^kPrecisionBits
  // * width, and it is reported by its midpoint.
  static constexpr int kPrecisionBits = 7;
  // Invariant: |ValueAtQuantile(q) - exact q-quantile| <= kRelativeErrorMax * exact.
  static constexpr double kRelativeErrorMax = 1.0 / (1 << (kPrecisionBits + 1));
  // Enough buckets for every uint64_t value: 2^(kPrecisionBits + 1) exact ones, then
  // 2^kPrecisionBits for each of the shifts 1 .. 63 - kPrecisionBits.
  static constexpr size_t kBucketCount =
      (2 << kPrecisionBits) + ((63 - kPrecisionBits) << kPrecisionBits);

  LatencyHistogram();

  void Record(uint64_t value);
  // Adds every value recorded in `other`, as if they had been recorded here.
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  // Exact, not bucketed: tracked beside the buckets.
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const;
  double stddev() const;

  // The value at rank ceil(quantile * count) (1-based; rank 1 for quantile 0) of the recorded
  // values in sorted order, within kRelativeErrorMax. 0 for an empty histogram.
  uint64_t ValueAtQuantile(double quantile) const;
  // The rank ValueAtQuantile reports, shared with tests that compute the exact value.
  static uint64_t RankOfQuantile(double quantile, uint64_t count);

  // One row per non-empty range of a coarse view (power-of-two ranges), for the text histogram.
  struct Row {
    uint64_t low = 0;   // inclusive
    uint64_t high = 0;  // inclusive
    uint64_t count = 0;
  };
  std::vector<Row> PowerOfTwoRows() const;

  bool operator==(const LatencyHistogram& other) const;

  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLow(size_t index);
  static uint64_t BucketWidth(size_t index);

 private:
  std::vector<uint64_t> counts_;  // kBucketCount entries
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  // Sums for mean and standard deviation; long double keeps the sum of squares of nanosecond
  // latencies exact enough over millions of values.
  long double sum_ = 0;
  long double sum_of_squares_ = 0;
};

}  // namespace synod::bench
