// The checker against a brute-force one that shares no code with it: every order of the
// operations consistent with real time, with every subset of the unknown writes, replayed on a
// map. They must agree on every history, linearizable or not.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

#include "base/prng.h"
#include "check/linearizability.h"
#include "check/random_history.h"

namespace synod::check {
namespace {

bool Precedes(const Operation& a, const Operation& b) {
  return a.outcome == Outcome::kOk && a.complete_time < b.invoke_time;
}

// Replays `order` on a map from key to value; false at the first answer the map does not give.
bool Replays(const std::vector<const Operation*>& order) {
  std::map<std::string, std::string> store;
  for (const Operation* operation : order) {
    const auto current = store.find(operation->key);
    const bool present = current != store.end();
    const bool known = operation->outcome == Outcome::kOk;
    switch (operation->kind) {
      case OperationKind::kPut:
        store[operation->key] = operation->value;
        break;
      case OperationKind::kDelete:
        store.erase(operation->key);
        break;
      case OperationKind::kGet:
        if (present != operation->found) return false;
        if (present && current->second != operation->observed) return false;
        break;
      case OperationKind::kCompareAndSet: {
        const bool holds = present && current->second == operation->expected;
        if (known && holds != operation->succeeded) return false;
        if (holds) current->second = operation->value;
        break;
      }
    }
  }
  return true;
}

// Whether some order of `chosen` that respects real time replays.
bool SomeOrderReplays(const std::vector<const Operation*>& chosen) {
  std::vector<const Operation*> order;
  std::vector<bool> placed(chosen.size(), false);
  const std::function<bool()> extend = [&] {
    if (order.size() == chosen.size()) return Replays(order);
    for (size_t next = 0; next < chosen.size(); ++next) {
      if (placed[next]) continue;
      // `next` may come now only if nothing still unplaced completed before it began.
      bool ready = true;
      for (size_t other = 0; other < chosen.size(); ++other) {
        if (!placed[other] && other != next && Precedes(*chosen[other], *chosen[next])) {
          ready = false;
        }
      }
      if (!ready) continue;
      placed[next] = true;
      order.push_back(chosen[next]);
      const bool found = extend();
      order.pop_back();
      placed[next] = false;
      if (found) return true;
    }
    return false;
  };
  return extend();
}

bool BruteForceLinearizable(const std::vector<Operation>& history) {
  std::vector<const Operation*> required;
  std::vector<const Operation*> optional;
  for (const Operation& operation : history) {
    if (operation.outcome == Outcome::kOk) required.push_back(&operation);
    if (operation.outcome == Outcome::kUnknown && operation.kind != OperationKind::kGet) {
      optional.push_back(&operation);
    }
  }
  for (uint64_t subset = 0; subset < (uint64_t{1} << optional.size()); ++subset) {
    std::vector<const Operation*> chosen = required;
    for (size_t i = 0; i < optional.size(); ++i) {
      if ((subset >> i) & 1) chosen.push_back(optional[i]);
    }
    if (SomeOrderReplays(chosen)) return true;
  }
  return false;
}

struct Agreement {
  uint64_t linearizable = 0;
  uint64_t not_linearizable = 0;
};

// Checks `histories` seeded histories with both checkers; fails on the first disagreement.
Agreement CompareOn(uint64_t first_seed, uint64_t histories, const RandomHistoryOptions& options,
                    uint64_t mutations) {
  Agreement agreement;
  for (uint64_t seed = first_seed; seed < first_seed + histories; ++seed) {
    base::Prng prng(seed);
    std::vector<Operation> history = RandomLinearizableHistory(prng, options);
    for (uint64_t i = 0; i < mutations; ++i) MutateOne(prng, history);
    const bool expected = BruteForceLinearizable(history);
    const CheckReport report = CheckHistory(history);
    EXPECT_EQ(report.linearizable, expected) << "seed " << seed << "\n" << FormatTable(history);
    if (report.linearizable != expected) break;
    (expected ? agreement.linearizable : agreement.not_linearizable) += 1;
  }
  return agreement;
}

TEST(BruteForceComparison, GeneratedHistoriesAreLinearizableToBoth) {
  RandomHistoryOptions options;
  options.operations = 7;
  options.unknown_percent = 25;
  const Agreement agreement = CompareOn(1, 5000, options, 0);
  EXPECT_EQ(agreement.linearizable, 5000u);
}

TEST(BruteForceComparison, MutatedHistoriesAgreeWithOneKey) {
  RandomHistoryOptions options;
  options.operations = 7;
  options.unknown_percent = 25;
  const Agreement agreement = CompareOn(10001, 10000, options, 2);
  // The comparison means something only if both verdicts occur often.
  EXPECT_GT(agreement.linearizable, 2000u);
  EXPECT_GT(agreement.not_linearizable, 1500u);
}

TEST(BruteForceComparison, MutatedHistoriesAgreeWithTwoKeysAndFourClients) {
  RandomHistoryOptions options;
  options.operations = 8;
  options.keys = 2;
  options.clients = 4;
  options.unknown_percent = 20;
  const Agreement agreement = CompareOn(30001, 5000, options, 2);
  EXPECT_GT(agreement.linearizable, 1000u);
  EXPECT_GT(agreement.not_linearizable, 1000u);
}

// The shrunk sub-history of every violation is itself not linearizable to the brute force,
// and made of operations of the original.
TEST(BruteForceComparison, ShrunkViolationsAreViolationsToTheBruteForce) {
  RandomHistoryOptions options;
  options.operations = 8;
  options.unknown_percent = 25;
  uint64_t violations = 0;
  for (uint64_t seed = 40001; seed < 43001; ++seed) {
    base::Prng prng(seed);
    std::vector<Operation> history = RandomLinearizableHistory(prng, options);
    MutateOne(prng, history);
    MutateOne(prng, history);
    const CheckReport report = CheckHistory(history);
    if (report.linearizable) continue;
    ++violations;
    const std::vector<Operation>& shrunk = report.violation.operations;
    EXPECT_FALSE(BruteForceLinearizable(shrunk)) << "seed " << seed << "\n" << FormatTable(shrunk);
    EXPECT_LE(shrunk.size(), history.size());
  }
  EXPECT_GT(violations, 500u);
}

// The rule that lets the shrinking remove an operation: whenever it allows a removal from a
// linearizable history, the rest is linearizable to the brute force.
TEST(BruteForceComparison, RemovalsTheShrinkingMakesKeepLinearizableHistoriesLinearizable) {
  RandomHistoryOptions options;
  options.operations = 7;
  options.unknown_percent = 20;
  uint64_t removals = 0;
  for (uint64_t seed = 50001; seed < 53001; ++seed) {
    base::Prng prng(seed);
    std::vector<Operation> history = RandomLinearizableHistory(prng, options);
    if (prng.Chance(1, 2)) MutateOne(prng, history);
    if (!BruteForceLinearizable(history)) continue;
    for (size_t index = 0; index < history.size(); ++index) {
      if (!RemovalKeepsLinearizable(history, index)) continue;
      ++removals;
      std::vector<Operation> rest = history;
      rest.erase(rest.begin() + static_cast<ptrdiff_t>(index));
      EXPECT_TRUE(BruteForceLinearizable(rest))
          << "seed " << seed << " without operation " << index << "\n"
          << FormatTable(history);
    }
  }
  EXPECT_GT(removals, 6000u);
}

}  // namespace
}  // namespace synod::check
