#include "check/random_history.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>

namespace synod::check {
namespace {

OperationKind RandomKind(base::Prng& prng) {
  const uint64_t roll = prng.Below(100);
  if (roll < 35) return OperationKind::kGet;
  if (roll < 65) return OperationKind::kPut;
  if (roll < 90) return OperationKind::kCompareAndSet;
  return OperationKind::kDelete;
}

// A planned operation: the point at which it takes effect, if it does.
struct Planned {
  Operation operation;
  std::optional<int64_t> effect_time;
};

// Executes `operation` on the store and records its answer.
void Execute(std::map<std::string, std::string>& store, Operation& operation) {
  const auto current = store.find(operation.key);
  switch (operation.kind) {
    case OperationKind::kPut:
      store[operation.key] = operation.value;
      break;
    case OperationKind::kDelete:
      if (current != store.end()) store.erase(current);
      break;
    case OperationKind::kGet:
      operation.found = current != store.end();
      operation.observed = operation.found ? current->second : "";
      break;
    case OperationKind::kCompareAndSet:
      operation.succeeded = current != store.end() && current->second == operation.expected;
      if (operation.succeeded) current->second = operation.value;
      break;
  }
}

}  // namespace

std::vector<Operation> RandomLinearizableHistory(base::Prng& prng,
                                                 const RandomHistoryOptions& options) {
  std::vector<int64_t> client_time(options.clients, 0);
  // What the generator last wrote per key, so that many compare-and-sets expect a value the
  // key may well hold.
  std::map<std::string, std::string> last_written;
  uint64_t unique_value = 0;
  std::vector<Planned> planned;
  for (uint64_t i = 0; i < options.operations; ++i) {
    const auto earliest = std::min_element(client_time.begin(), client_time.end());
    Operation operation;
    operation.client = static_cast<uint64_t>(earliest - client_time.begin());
    operation.kind = RandomKind(prng);
    operation.key = fmt::format("k{}", prng.Below(options.keys));
    const auto new_value = [&] {
      return options.values == 0 ? fmt::format("u{}", unique_value++)
                                 : fmt::format("v{}", prng.Below(options.values));
    };
    if (operation.kind == OperationKind::kPut || operation.kind == OperationKind::kCompareAndSet) {
      operation.value = new_value();
    }
    if (operation.kind == OperationKind::kCompareAndSet) {
      const auto last = last_written.find(operation.key);
      operation.expected =
          last != last_written.end() && prng.Chance(1, 2) ? last->second : new_value();
    }
    if (operation.kind == OperationKind::kPut || operation.kind == OperationKind::kCompareAndSet) {
      last_written[operation.key] = operation.value;
    }
    operation.invoke_time = *earliest + static_cast<int64_t>(prng.Below(options.gap_max + 1));
    operation.complete_time =
        operation.invoke_time + static_cast<int64_t>(prng.Below(options.duration_max + 1));
    *earliest = operation.complete_time;

    Planned plan{operation, std::nullopt};
    const uint64_t roll = prng.Below(100);
    const int64_t duration = operation.complete_time - operation.invoke_time;
    if (roll < options.unknown_percent) {
      plan.operation.outcome = Outcome::kUnknown;
      // Half take effect, at any time after invocation: even well after the client gave up.
      if (prng.Chance(1, 2)) {
        plan.effect_time =
            operation.invoke_time +
            static_cast<int64_t>(prng.Below(static_cast<uint64_t>(4 * duration) + 1));
      }
    } else if (roll < options.unknown_percent + options.failed_percent) {
      plan.operation.outcome = Outcome::kFailed;
    } else {
      plan.effect_time = operation.invoke_time +
                         static_cast<int64_t>(prng.Below(static_cast<uint64_t>(duration) + 1));
    }
    planned.push_back(std::move(plan));
  }

  std::vector<Planned*> by_effect;
  for (Planned& plan : planned) {
    if (plan.effect_time) by_effect.push_back(&plan);
  }
  std::stable_sort(by_effect.begin(), by_effect.end(), [](const Planned* a, const Planned* b) {
    return *a->effect_time < *b->effect_time;
  });
  std::map<std::string, std::string> store;
  for (Planned* plan : by_effect) Execute(store, plan->operation);

  std::vector<Operation> history;
  for (Planned& plan : planned) history.push_back(std::move(plan.operation));
  return history;
}

void MutateOne(base::Prng& prng, std::vector<Operation>& history) {
  if (history.empty()) return;
  Operation& operation = history[prng.Below(history.size())];
  switch (prng.Below(5)) {
    case 0:  // another answer: a get sees another value or none; a cas flips its result
      if (operation.kind == OperationKind::kGet) {
        operation.found = prng.Chance(3, 4);
        operation.observed = operation.found ? fmt::format("v{}", prng.Below(3)) : "";
      } else if (operation.kind == OperationKind::kCompareAndSet) {
        operation.succeeded = !operation.succeeded;
      }
      break;
    case 1:  // another outcome
      operation.outcome = static_cast<Outcome>(prng.Below(3));
      break;
    case 2:  // another value written or expected
      operation.value = fmt::format("v{}", prng.Below(3));
      operation.expected = fmt::format("v{}", prng.Below(3));
      break;
    case 3: {  // another time: the operation moves, keeping its duration
      const int64_t duration = operation.complete_time - operation.invoke_time;
      operation.invoke_time = static_cast<int64_t>(prng.Below(60));
      operation.complete_time = operation.invoke_time + duration;
      break;
    }
    case 4:  // another kind of operation, with the answers it already has
      operation.kind = RandomKind(prng);
      break;
  }
}

}  // namespace synod::check
