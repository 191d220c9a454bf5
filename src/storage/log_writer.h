#pragma once

// The storage thread (ARCHITECTURE.md, "Threads"): it owns the durable log, takes every write
// queued since its previous fsync, performs them as one write and one fsync (group commit),
// then reports completion. Callers never wait on the disk themselves; the event loop submits
// a Ready's writes and goes on stepping messages until the completion arrives.
//
// Ownership: Submit may be called from any thread. The write function and every completion run
// on the storage thread, in submission order.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/status.h"
#include "consensus/multipaxos/types.h"
#include "consensus/raft/types.h"

namespace synod::storage {

// The durable part of one Ready, in the order it must reach the log.
struct LogWrite {
  std::optional<raft::SnapshotMeta> installed_snapshot;
  std::vector<raft::Entry> entries;
  // A Multi-Paxos log's accepted or learned slots (Wal::SaveSlots); empty for Raft.
  std::vector<multipaxos::Slot> slots;
  std::optional<raft::HardState> hard_state;
  // The state machine is durable up to this snapshot, so the log may drop what it covers
  // (Wal::CompactTo); it goes last because it depends on nothing above.
  std::optional<raft::SnapshotMeta> compacted_to;
};

class LogWriter {
 public:
  // Buffers every write of one group and makes them durable with one fsync; called on the
  // storage thread only. An error fails the whole group and every later one.
  using WriteAndSync = std::function<Status(std::vector<LogWrite>& group)>;
  using Done = std::function<void(Status)>;

  // The queue is bounded: a caller that outruns the disk waits in Submit (back-pressure)
  // rather than growing memory without limit.
  static constexpr size_t kQueuedWritesMax = 4096;

  explicit LogWriter(WriteAndSync write_and_sync);
  // Finishes every queued write, then stops the thread.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Queues a write; `done` runs on the storage thread after the fsync that covers it.
  void Submit(LogWrite write, Done done);

  struct Stats {
    uint64_t groups = 0;
    uint64_t writes = 0;
    uint64_t entries = 0;
  };
  Stats stats() const;

 private:
  struct Queued {
    LogWrite write;
    Done done;
  };
  void Run();

  const WriteAndSync write_and_sync_;
  mutable std::mutex mutex_;
  std::condition_variable queue_changed_;
  std::deque<Queued> queue_;  // Guarded by mutex_.
  bool stopping_ = false;     // Guarded by mutex_.
  Stats stats_;               // Guarded by mutex_.
  Status failure_;            // Storage thread only.
  std::thread thread_;
};

}  // namespace synod::storage
