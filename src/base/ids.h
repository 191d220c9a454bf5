// Strong identifier types: a Term is not an Index is not a NodeId. Mixing them up is a classic
// consensus bug (comparing a term with an index compiles fine with plain integers).
#pragma once

#include <fmt/format.h>

#include <compare>
#include <cstdint>
#include <functional>

namespace synod {

template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }
  constexpr auto operator<=>(const StrongId&) const = default;

  // Terms, indexes, ballots and revisions advance one at a time; these keep that readable.
  constexpr StrongId next() const { return StrongId(value_ + 1); }
  constexpr StrongId prev() const { return StrongId(value_ - 1); }
  constexpr StrongId plus(uint64_t delta) const { return StrongId(value_ + delta); }
  constexpr StrongId minus(uint64_t delta) const { return StrongId(value_ - delta); }
  // The number of steps from `earlier` to this; precondition: earlier <= *this.
  constexpr uint64_t distance_from(StrongId earlier) const { return value_ - earlier.value_; }

 private:
  uint64_t value_ = 0;
};

struct TermTag {};
struct IndexTag {};
struct NodeIdTag {};
struct BallotTag {};
struct RevisionTag {};

// Raft 5.1: terms act as a logical clock; 0 means "before any election".
using Term = StrongId<TermTag>;
// Raft 5.3: log positions start at 1; index 0 is the empty prefix.
using Index = StrongId<IndexTag>;
// Node ids are never 0: NodeId() means "no node" (no vote cast, no known leader).
using NodeId = StrongId<NodeIdTag>;
using Ballot = StrongId<BallotTag>;
using Revision = StrongId<RevisionTag>;

inline constexpr NodeId kNoNode{};

}  // namespace synod

template <typename Tag>
struct std::hash<synod::StrongId<Tag>> {
  size_t operator()(const synod::StrongId<Tag>& id) const noexcept {
    return std::hash<uint64_t>{}(id.value());
  }
};

template <typename Tag>
struct fmt::formatter<synod::StrongId<Tag>> : fmt::formatter<uint64_t> {
  auto format(const synod::StrongId<Tag>& id, fmt::format_context& ctx) const {
    return fmt::formatter<uint64_t>::format(id.value(), ctx);
  }
};
