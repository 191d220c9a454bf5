#pragma once

// etcd's automatic compaction (--auto-compaction-mode, --auto-compaction-retention;
// etcdserver/api/v3compactor): the leader proposes a Compaction now and then, so that the kept
// history, which the store holds on disk and its key index in memory (one entry per change,
// kv/key_index.h), stops growing with every write.
//
// - periodic, retention P: keep about P of history. The revision is sampled every P/10 (at most
//   every 6 minutes); the first compaction comes P after start, at the revision of P ago, and
//   the next ones every min(P, 1 hour).
// - revision, retention N: every 5 minutes, compact at current revision - N.
//
// Every member samples, so a new leader knows the revisions of the last period; only the
// leader proposes (etcd pauses the compactor on followers). A compaction that fails is tried
// again at the next check; one that finds the revision compacted already counts as done.
//
// Not thread-safe: the member's loop drives it. It reads no clock; the caller passes the time.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "base/status.h"

namespace synod::server {

struct AutoCompactionPolicy {
  enum class Mode { kPeriodic, kRevision };
  Mode mode = Mode::kPeriodic;
  int64_t retention_ms = 0;         // kPeriodic: positive.
  int64_t retention_revisions = 0;  // kRevision: positive.
};

// etcd's flags: mode "periodic" (the default when empty) or "revision"; retention "0" is off
// (nullopt), a bare number is hours (periodic) or revisions (revision), and periodic also takes
// a Go duration ("30m", "1.5h"). InvalidArgument naming the flag otherwise.
Result<std::optional<AutoCompactionPolicy>> ParseAutoCompaction(const std::string& mode,
                                                                const std::string& retention);

class AutoCompactor {
 public:
  static constexpr int64_t kRevisionModeInterval_ms = 5 * 60 * 1000;  // etcd's revInterval
  static constexpr int64_t kPeriodicCheckCap_ms = 60 * 60 * 1000;     // etcd: an hour at most
  static constexpr int64_t kPeriodicChecksPerPeriod = 10;             // etcd's retryDivisor

  AutoCompactor(AutoCompactionPolicy policy, int64_t now_ms, int64_t current_revision);

  // Called at every tick of every member. Returns the revision to compact at when a compaction
  // is due, this member leads and no compaction it proposed is still out; the caller proposes
  // it and reports the outcome to Finished.
  std::optional<int64_t> Due(int64_t now_ms, int64_t current_revision, int64_t compacted_revision,
                             bool leader);
  // The outcome of the compaction Due returned.
  void Finished(int64_t revision, const Status& status, int64_t now_ms);

 private:
  std::optional<int64_t> DuePeriodic(int64_t now_ms, int64_t current_revision,
                                     int64_t compacted_revision, bool leader);
  std::optional<int64_t> DueRevision(int64_t current_revision, int64_t compacted_revision,
                                     bool leader);

  const AutoCompactionPolicy policy_;
  const int64_t check_interval_ms_;
  int64_t next_check_ms_;
  bool in_flight_ = false;
  // Periodic: revisions sampled at each check, oldest first; the front is the one of about a
  // period ago once the deque is full.
  std::deque<int64_t> samples_;
  size_t samples_max_ = 0;
  int64_t last_success_ms_;
  int64_t wait_ms_;  // Since last_success_ms_: the period at first, then the compact interval.
  // Revision: the last revision compacted at.
  int64_t last_compacted_ = 0;
};

}  // namespace synod::server
