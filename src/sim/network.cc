#include "sim/network.h"

#include <fmt/format.h>

#include <algorithm>

namespace synod::sim {

PartitionPlan ChoosePartition(const std::vector<NodeId>& ids,
                              std::optional<NodeId> preferred_victim, base::Prng& prng) {
  PartitionPlan plan;
  const uint64_t kind = prng.Below(3);
  if (kind == 0) {
    std::vector<bool> side(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) side[i] = prng.Chance(1, 2);
    if (preferred_victim.has_value() && prng.Chance(1, 2)) {
      for (size_t i = 0; i < ids.size(); ++i) side[i] = ids[i] == *preferred_victim;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      for (size_t j = 0; j < ids.size(); ++j) {
        if (side[i] != side[j]) plan.links.emplace_back(ids[i], ids[j]);
      }
    }
    std::vector<NodeId> one_side;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (side[i]) one_side.push_back(ids[i]);
    }
    plan.description = fmt::format("splits {{{}}} from the rest", fmt::join(one_side, ","));
    return plan;
  }
  const NodeId victim = ids[prng.Below(ids.size())];
  const bool outgoing = kind == 1;
  for (NodeId other : ids) {
    if (other == victim) continue;
    if (outgoing) {
      plan.links.emplace_back(victim, other);
    } else {
      plan.links.emplace_back(other, victim);
    }
  }
  plan.description = fmt::format("cuts every link {} n{}", outgoing ? "from" : "to", victim);
  return plan;
}

PartitionPlan IsolationOf(NodeId id, const std::vector<NodeId>& ids) {
  PartitionPlan plan;
  for (NodeId other : ids) {
    if (other == id) continue;
    plan.links.emplace_back(id, other);
    plan.links.emplace_back(other, id);
  }
  plan.description = fmt::format("isolates n{}", id);
  return plan;
}

bool SimNetwork::LinkCut(NodeId from, NodeId to) const {
  auto it = cut_links_.find({from, to});
  return it != cut_links_.end() && it->second > 0;
}

uint64_t SimNetwork::DeliveryTime(NodeId from, NodeId to, uint64_t now, uint64_t slowness,
                                  base::Prng& prng) {
  if (long_delay_percent > 0 && prng.Chance(long_delay_percent, 100)) {
    // A message held up arbitrarily long (a retransmission, a reconnect) overtakes nothing but
    // may be overtaken: this is where reordering comes from.
    return now + (prng.Between(1, 4) + prng.Between(1, long_delay_units_max)) * slowness;
  }
  // Otherwise a link is a stream, as a TCP connection is: messages arrive in the order sent.
  uint64_t& last = link_last_delivery_[{from, to}];
  last = std::max(last, now + prng.Between(1, 4) * slowness);
  return last;
}

uint64_t SimNetwork::AddPartition(std::vector<Link> links) {
  const uint64_t id = next_partition_id_++;
  for (const Link& link : links) ++cut_links_[link];
  partitions_.emplace(id, std::move(links));
  return id;
}

bool SimNetwork::HealPartition(uint64_t id) {
  auto it = partitions_.find(id);
  if (it == partitions_.end()) return false;
  for (const Link& link : it->second) --cut_links_[link];
  partitions_.erase(it);
  return true;
}

void SimNetwork::HealAll() {
  loss_percent = 0;
  duplicate_percent = 0;
  long_delay_percent = 0;
  partitions_.clear();
  cut_links_.clear();
}

Transmission SimNetwork::Transmit(NodeId from, NodeId to, uint64_t now, base::Prng& prng) {
  Transmission transmission;
  if (LinkCut(from, to) || (loss_percent > 0 && prng.Chance(loss_percent, 100))) {
    transmission.lost = true;
    return transmission;
  }
  if (duplicate_percent > 0 && prng.Chance(duplicate_percent, 100)) {
    transmission.duplicated = true;
    transmission.arrivals.push_back(DeliveryTime(from, to, now, 1, prng));
  }
  transmission.arrivals.push_back(DeliveryTime(from, to, now, 1, prng));
  return transmission;
}

}  // namespace synod::sim
