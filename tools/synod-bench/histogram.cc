#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "base/assert.h"

namespace synod::bench {

LatencyHistogram::LatencyHistogram() : counts_(kBucketCount, 0) {}

// The bucket of `value`: with msb the index of its highest set bit and shift = max(0, msb -
// kPrecisionBits), value >> shift keeps the kPrecisionBits + 1 leading bits, which lie in
// [2^kPrecisionBits, 2^(kPrecisionBits+1)) once shift > 0. Consecutive shifts then occupy
// consecutive runs of 2^kPrecisionBits indexes.
size_t LatencyHistogram::BucketIndex(uint64_t value) {
  const int msb = 63 - std::countl_zero(value | 1);
  const int shift = std::max(0, msb - kPrecisionBits);
  const size_t index = (static_cast<size_t>(shift) << kPrecisionBits) + (value >> shift);
  SYNOD_ASSERT(index < kBucketCount);
  return index;
}

uint64_t LatencyHistogram::BucketWidth(size_t index) {
  SYNOD_ASSERT(index < kBucketCount);
  if (index < (size_t{2} << kPrecisionBits)) return 1;
  return uint64_t{1} << ((index >> kPrecisionBits) - 1);
}

uint64_t LatencyHistogram::BucketLow(size_t index) {
  if (index < (size_t{2} << kPrecisionBits)) return index;
  const size_t shift = (index >> kPrecisionBits) - 1;
  const uint64_t leading_bits = index - (shift << kPrecisionBits);
  SYNOD_ASSERT(leading_bits >= (uint64_t{1} << kPrecisionBits));
  return leading_bits << shift;
}

void LatencyHistogram::Record(uint64_t value) {
  ++counts_[BucketIndex(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
  sum_of_squares_ += static_cast<long double>(value) * value;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  sum_of_squares_ += other.sum_of_squares_;
}

double LatencyHistogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_);
}

double LatencyHistogram::stddev() const {
  if (count_ == 0) return 0.0;
  const long double mean = sum_ / count_;
  const long double variance = sum_of_squares_ / count_ - mean * mean;
  return variance <= 0 ? 0.0 : std::sqrt(static_cast<double>(variance));
}

uint64_t LatencyHistogram::RankOfQuantile(double quantile, uint64_t count) {
  SYNOD_ASSERT(quantile >= 0.0 && quantile <= 1.0);
  const auto rank = static_cast<uint64_t>(std::ceil(quantile * static_cast<double>(count)));
  return std::clamp<uint64_t>(rank, 1, std::max<uint64_t>(count, 1));
}

uint64_t LatencyHistogram::ValueAtQuantile(double quantile) const {
  if (count_ == 0) return 0;
  const uint64_t rank = RankOfQuantile(quantile, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      // The midpoint halves the worst-case error against reporting either edge; the exact
      // extremes are known and tighter still.
      const uint64_t midpoint = BucketLow(i) + BucketWidth(i) / 2;
      return std::clamp(midpoint, min_, max_);
    }
  }
  SYNOD_ASSERT_MSG(false, "histogram counts sum to less than count {}", count_);
  return 0;
}

std::vector<LatencyHistogram::Row> LatencyHistogram::PowerOfTwoRows() const {
  std::vector<Row> rows;
  for (size_t i = 0; i < kBucketCount; ++i) {
    if (counts_[i] == 0) continue;
    const uint64_t low = BucketLow(i);
    const int power = 63 - std::countl_zero(low | 1);
    const uint64_t row_low = low == 0 ? 0 : uint64_t{1} << power;
    if (rows.empty() || rows.back().low != row_low) {
      const uint64_t row_high = power == 63 ? UINT64_MAX : (uint64_t{2} << power) - 1;
      rows.push_back(Row{row_low, row_high, 0});
    }
    rows.back().count += counts_[i];
  }
  return rows;
}

bool LatencyHistogram::operator==(const LatencyHistogram& other) const {
  return counts_ == other.counts_ && count_ == other.count_ && min_ == other.min_ &&
         max_ == other.max_ && sum_ == other.sum_ && sum_of_squares_ == other.sum_of_squares_;
}

}  // namespace synod::bench
