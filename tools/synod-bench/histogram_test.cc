#include "histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "base/prng.h"

namespace synod::bench {
namespace {

constexpr double kQuantiles[] = {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0};

// Latency-like data over many orders of magnitude: a log-uniform spread from 1 ns to ~17 s,
// so every bucket width from 1 upwards is exercised.
std::vector<uint64_t> LogUniformValues(uint64_t seed, size_t count) {
  base::Prng prng(seed);
  std::vector<uint64_t> values;
  for (size_t i = 0; i < count; ++i) {
    const uint64_t bits = prng.Between(0, 34);
    values.push_back(prng.Between(uint64_t{1} << bits, (uint64_t{2} << bits) - 1));
  }
  return values;
}

uint64_t ExactQuantile(std::vector<uint64_t> values, double quantile) {
  std::sort(values.begin(), values.end());
  return values[LatencyHistogram::RankOfQuantile(quantile, values.size()) - 1];
}

TEST(LatencyHistogram, QuantilesAreWithinTheStatedRelativeErrorOfTheExactValues) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const std::vector<uint64_t> values = LogUniformValues(seed, 5000);
    LatencyHistogram histogram;
    for (uint64_t value : values) histogram.Record(value);
    for (double quantile : kQuantiles) {
      const double exact = static_cast<double>(ExactQuantile(values, quantile));
      const double reported = static_cast<double>(histogram.ValueAtQuantile(quantile));
      EXPECT_LE(std::abs(reported - exact), exact * LatencyHistogram::kRelativeErrorMax)
          << "seed " << seed << " quantile " << quantile << " exact " << exact;
    }
  }
}

TEST(LatencyHistogram, CountMinMaxMeanAndStddevAreExact) {
  const std::vector<uint64_t> values = LogUniformValues(7, 1000);
  LatencyHistogram histogram;
  long double sum = 0;
  for (uint64_t value : values) {
    histogram.Record(value);
    sum += value;
  }
  const long double mean = sum / values.size();
  long double squares = 0;
  for (uint64_t value : values) squares += (value - mean) * (value - mean);
  EXPECT_EQ(histogram.count(), values.size());
  EXPECT_EQ(histogram.min(), *std::min_element(values.begin(), values.end()));
  EXPECT_EQ(histogram.max(), *std::max_element(values.begin(), values.end()));
  EXPECT_NEAR(histogram.mean(), static_cast<double>(mean), 1e-6 * static_cast<double>(mean));
  const double stddev = std::sqrt(static_cast<double>(squares / values.size()));
  EXPECT_NEAR(histogram.stddev(), stddev, 1e-6 * stddev);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram histogram;
  for (uint64_t value = 0; value < 256; ++value) histogram.Record(value);
  for (uint64_t rank = 1; rank <= 256; ++rank) {
    EXPECT_EQ(histogram.ValueAtQuantile(static_cast<double>(rank) / 256), rank - 1);
  }
}

TEST(LatencyHistogram, BucketsTileTheValueRangeWithoutGapsOrOverlap) {
  for (size_t index = 0; index + 1 < LatencyHistogram::kBucketCount; ++index) {
    const uint64_t low = LatencyHistogram::BucketLow(index);
    const uint64_t width = LatencyHistogram::BucketWidth(index);
    ASSERT_EQ(LatencyHistogram::BucketLow(index + 1), low + width) << "index " << index;
    ASSERT_EQ(LatencyHistogram::BucketIndex(low), index);
    ASSERT_EQ(LatencyHistogram::BucketIndex(low + width - 1), index);
  }
  EXPECT_EQ(LatencyHistogram::BucketIndex(UINT64_MAX), LatencyHistogram::kBucketCount - 1);
}

TEST(LatencyHistogram, MergeEqualsTheHistogramOfTheUnion) {
  // Values below 2^20 keep every sum of squares exact in a long double, so the comparison of
  // the sums can be exact whatever the order of addition.
  base::Prng prng(42);
  LatencyHistogram first, second, union_of_both;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t value = prng.Below(uint64_t{1} << 20);
    (prng.Chance(1, 3) ? first : second).Record(value);
    union_of_both.Record(value);
  }
  LatencyHistogram merged = first;
  merged.Merge(second);
  EXPECT_EQ(merged, union_of_both);
  for (double quantile : kQuantiles) {
    EXPECT_EQ(merged.ValueAtQuantile(quantile), union_of_both.ValueAtQuantile(quantile));
  }
  // Merging an empty histogram changes nothing, and the check above can fail: it compares.
  LatencyHistogram unchanged = merged;
  unchanged.Merge(LatencyHistogram());
  EXPECT_EQ(unchanged, merged);
  unchanged.Record(1);
  EXPECT_FALSE(unchanged == merged);
}

TEST(LatencyHistogram, PowerOfTwoRowsCoverEveryValueOnce) {
  LatencyHistogram histogram;
  for (uint64_t value : {0, 1, 3, 3, 1000, 1023, 1024, 5'000'000}) histogram.Record(value);
  const std::vector<LatencyHistogram::Row> rows = histogram.PowerOfTwoRows();
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].low, 0u);
  EXPECT_EQ(rows[2].low, 2u);
  EXPECT_EQ(rows[2].high, 3u);
  EXPECT_EQ(rows[2].count, 2u);
  EXPECT_EQ(rows[3].low, 512u);
  EXPECT_EQ(rows[3].count, 2u);
  EXPECT_EQ(rows[4].low, 1024u);
  EXPECT_EQ(rows[5].low, uint64_t{1} << 22);
  uint64_t total = 0;
  for (const auto& row : rows) total += row.count;
  EXPECT_EQ(total, histogram.count());
}

}  // namespace
}  // namespace synod::bench
