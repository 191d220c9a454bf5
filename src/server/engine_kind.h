#pragma once

// Which consensus engine a member runs (`synod --engine raft|multipaxos`, issue 7 part 3). The
// engine is fixed when the member's data dir is created and recorded there (server/data_dir.h);
// server/consensus_engine.h is the boundary the event loop drives either engine through.

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "storage/wal.h"

namespace synod::server {

enum class EngineKind : uint8_t { kRaft, kMultiPaxos };

// The names of the --engine flag and of the data dir's record.
inline std::string_view ToString(EngineKind kind) {
  return kind == EngineKind::kRaft ? "raft" : "multipaxos";
}

// InvalidArgument for any other name.
inline Result<EngineKind> ParseEngineKind(std::string_view name) {
  if (name == "raft") return EngineKind::kRaft;
  if (name == "multipaxos") return EngineKind::kMultiPaxos;
  return absl::InvalidArgumentError(
      fmt::format("unknown engine {:?}: want raft or multipaxos", std::string(name)));
}

// What the engine's write-ahead log holds: Raft's contiguous entries or Multi-Paxos's slots.
inline storage::WalContent WalContentOf(EngineKind kind) {
  return kind == EngineKind::kRaft ? storage::WalContent::kEntries : storage::WalContent::kSlots;
}

}  // namespace synod::server
