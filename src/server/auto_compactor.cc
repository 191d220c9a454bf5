#include "server/auto_compactor.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "absl/time/time.h"
#include "base/assert.h"
#include "kv/errors.h"

namespace synod::server {

namespace {

// etcd: a bare non-negative integer (strconv.Atoi).
std::optional<int64_t> BareNumber(const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || ptr != end || value < 0) return std::nullopt;
  return value;
}

}  // namespace

Result<std::optional<AutoCompactionPolicy>> ParseAutoCompaction(const std::string& mode,
                                                                const std::string& retention) {
  AutoCompactionPolicy policy;
  if (mode.empty() || mode == "periodic") {
    policy.mode = AutoCompactionPolicy::Mode::kPeriodic;
  } else if (mode == "revision") {
    policy.mode = AutoCompactionPolicy::Mode::kRevision;
  } else {
    return absl::InvalidArgumentError(fmt::format("unknown auto-compaction-mode {:?}", mode));
  }
  const std::string text = retention.empty() ? "0" : retention;
  if (std::optional<int64_t> number = BareNumber(text); number.has_value()) {
    if (*number == 0) return std::optional<AutoCompactionPolicy>();
    if (policy.mode == AutoCompactionPolicy::Mode::kRevision) {
      policy.retention_revisions = *number;
    } else {
      constexpr int64_t kHour_ms = 60 * 60 * 1000;
      if (*number > INT64_MAX / kHour_ms) {
        return absl::InvalidArgumentError(
            fmt::format("error parsing CompactionRetention: {:?} hours is too long", text));
      }
      policy.retention_ms = *number * kHour_ms;
    }
    return std::optional<AutoCompactionPolicy>(policy);
  }
  absl::Duration duration;
  if (policy.mode == AutoCompactionPolicy::Mode::kRevision) {
    return absl::InvalidArgumentError(
        fmt::format("error parsing CompactionRetention: {:?} is not a number of revisions", text));
  }
  if (!absl::ParseDuration(text, &duration) || duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(fmt::format(
        "error parsing CompactionRetention: {:?} is neither a number of hours nor a duration "
        "such as \"30m\"",
        text));
  }
  const int64_t ms = absl::ToInt64Milliseconds(duration);
  if (ms == 0) return std::optional<AutoCompactionPolicy>();
  policy.retention_ms = ms;
  return std::optional<AutoCompactionPolicy>(policy);
}

AutoCompactor::AutoCompactor(AutoCompactionPolicy policy, int64_t now_ms, int64_t current_revision)
    : policy_(policy),
      check_interval_ms_(
          policy.mode == AutoCompactionPolicy::Mode::kRevision
              ? kRevisionModeInterval_ms
              : std::max<int64_t>(1, std::min(policy.retention_ms, kPeriodicCheckCap_ms) /
                                         kPeriodicChecksPerPeriod)),
      next_check_ms_(now_ms + check_interval_ms_),
      last_success_ms_(now_ms),
      wait_ms_(policy.retention_ms) {
  if (policy_.mode == AutoCompactionPolicy::Mode::kRevision) {
    SYNOD_ASSERT(policy_.retention_revisions > 0);
    return;
  }
  SYNOD_ASSERT(policy_.retention_ms > 0);
  samples_max_ = static_cast<size_t>(policy_.retention_ms / check_interval_ms_) + 1;
  samples_.push_back(current_revision);
}

std::optional<int64_t> AutoCompactor::Due(int64_t now_ms, int64_t current_revision,
                                          int64_t compacted_revision, bool leader) {
  if (now_ms < next_check_ms_) return std::nullopt;
  next_check_ms_ = now_ms + check_interval_ms_;
  if (policy_.mode == AutoCompactionPolicy::Mode::kRevision) {
    return DueRevision(current_revision, compacted_revision, leader);
  }
  return DuePeriodic(now_ms, current_revision, compacted_revision, leader);
}

std::optional<int64_t> AutoCompactor::DuePeriodic(int64_t now_ms, int64_t current_revision,
                                                  int64_t compacted_revision, bool leader) {
  std::optional<int64_t> due;
  if (leader && !in_flight_ && now_ms - last_success_ms_ >= wait_ms_) {
    // After the first period, compact every period, or every hour for longer ones.
    wait_ms_ = std::min(policy_.retention_ms, kPeriodicCheckCap_ms);
    const int64_t revision = samples_.front();
    if (revision <= compacted_revision) {
      last_success_ms_ = now_ms;  // etcd counts "already compacted" as done.
    } else {
      in_flight_ = true;
      due = revision;
    }
  }
  // Sampled after the decision, so that the front stays the revision of a period ago.
  samples_.push_back(current_revision);
  if (samples_.size() > samples_max_) samples_.pop_front();
  return due;
}

std::optional<int64_t> AutoCompactor::DueRevision(int64_t current_revision,
                                                  int64_t compacted_revision, bool leader) {
  if (!leader || in_flight_) return std::nullopt;
  const int64_t revision = current_revision - policy_.retention_revisions;
  if (revision <= 0 || revision == last_compacted_) return std::nullopt;
  if (revision <= compacted_revision) {
    last_compacted_ = revision;
    return std::nullopt;
  }
  in_flight_ = true;
  return revision;
}

void AutoCompactor::Finished(int64_t revision, const Status& status, int64_t now_ms) {
  in_flight_ = false;
  if (!status.ok() && status != kv::CompactedError()) return;  // Tried again at the next check.
  if (policy_.mode == AutoCompactionPolicy::Mode::kRevision) {
    last_compacted_ = revision;
  } else {
    last_success_ms_ = now_ms;
  }
}

}  // namespace synod::server
