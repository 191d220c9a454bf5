// The simulated network both simulators share: directed links that partitions cut, each link
// a FIFO stream (like a TCP connection) except for the messages a fault holds up for long, which
// is where reordering comes from. Loss and duplication are decided by the caller per message,
// with the rates kept here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/ids.h"
#include "base/prng.h"

namespace synod::sim {

using Link = std::pair<NodeId, NodeId>;  // (from, to)

// A partition about to be started: the directed links it cuts, and what to call it in traces.
struct PartitionPlan {
  std::vector<Link> links;
  std::string description;
};

// A random partition of `ids`: a symmetric split into two random sides (half the time, when
// `preferred_victim` is given, that node alone against the rest), or a one-way cut of every
// link from or to one node (it can hear but not speak, or speak but not hear).
PartitionPlan ChoosePartition(const std::vector<NodeId>& ids,
                              std::optional<NodeId> preferred_victim, base::Prng& prng);
// Cuts every link to and from `id`.
PartitionPlan IsolationOf(NodeId id, const std::vector<NodeId>& ids);

// The fate of one message: lost (a cut link, or the loss rate), or delivered at each time of
// `arrivals` (twice when the duplicate rate struck).
struct Transmission {
  bool lost = false;
  bool duplicated = false;
  std::vector<uint64_t> arrivals;
};

class SimNetwork {
 public:
  // Per-message fault rates; all zero means a perfect network.
  uint32_t loss_percent = 0;
  uint32_t duplicate_percent = 0;
  uint32_t long_delay_percent = 0;
  uint64_t long_delay_units_max = 0;

  bool LinkCut(NodeId from, NodeId to) const;
  // When a message sent now from `from` to `to` arrives: 1-4 units times `slowness`, after the
  // link's previous in-order message, or, with long_delay_percent, much later and out of order.
  uint64_t DeliveryTime(NodeId from, NodeId to, uint64_t now, uint64_t slowness, base::Prng& prng);
  // Decides what happens to a message sent now from `from` to `to` at normal speed.
  Transmission Transmit(NodeId from, NodeId to, uint64_t now, base::Prng& prng);
  // Cuts the plan's links until HealPartition(id); returns the id.
  uint64_t AddPartition(std::vector<Link> links);
  // False if the partition was already healed (HealAll).
  bool HealPartition(uint64_t id);
  // The liveness phase: no partitions and no loss, duplication or long delays.
  void HealAll();

 private:
  std::map<uint64_t, std::vector<Link>> partitions_;
  uint64_t next_partition_id_ = 1;
  // How many partitions cut each link.
  std::map<Link, uint32_t> cut_links_;
  // When the last in-order message on each directed link arrives.
  std::map<Link, uint64_t> link_last_delivery_;
};

}  // namespace synod::sim
