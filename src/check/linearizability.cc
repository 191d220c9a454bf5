#include "check/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "base/assert.h"
#include "base/prng.h"

namespace synod::check {
namespace {

// The register's state: kAbsent, or a value interned per key (see ValueIds).
using State = uint32_t;
constexpr State kAbsent = 0;

// An unknown write's completion: it may take effect at any time after its invocation.
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

class ValueIds {
 public:
  State Of(const std::string& value) {
    return ids_.try_emplace(value, static_cast<State>(ids_.size() + 1)).first->second;
  }

 private:
  std::unordered_map<std::string, State> ids_;
};

// An operation as the register model sees it.
struct ModelOp {
  enum class Kind {
    kWrite,               // put (value) or delete (kAbsent)
    kRead,                // a get that saw `value`
    kCompareAndSet,       // a cas that succeeded: state was `expected`, became `value`
    kCompareFails,        // a cas that did not succeed: state was not `expected`
    kCompareAndMaybeSet,  // an unknown cas: writes `value` if the state is `expected`
  };
  Kind kind = Kind::kRead;
  State value = kAbsent;
  State expected = kAbsent;
  // False for unknown writes: they may stay out of the linearization.
  bool required = true;
  int64_t invoke_time = 0;
  int64_t complete_time = 0;
  // Index of the operation in the key's sub-history.
  size_t source = 0;
};

bool Writes(const ModelOp& op) {
  return op.kind == ModelOp::Kind::kWrite || op.kind == ModelOp::Kind::kCompareAndSet ||
         op.kind == ModelOp::Kind::kCompareAndMaybeSet;
}

// The value whose presence the operation needs in order to behave as recorded, if any.
std::optional<State> Observed(const ModelOp& op) {
  switch (op.kind) {
    case ModelOp::Kind::kRead:
      return op.value;
    case ModelOp::Kind::kCompareAndSet:
    case ModelOp::Kind::kCompareAndMaybeSet:
      return op.expected;
    case ModelOp::Kind::kWrite:
    case ModelOp::Kind::kCompareFails:
      return std::nullopt;
  }
  SYNOD_ASSERT_MSG(false, "unknown model kind {}", static_cast<int>(op.kind));
}

// The register's sequential specification: the state after `op`, or nullopt if `op` cannot
// have given its recorded answer in `state`.
std::optional<State> Step(const ModelOp& op, State state) {
  switch (op.kind) {
    case ModelOp::Kind::kWrite:
      return op.value;
    case ModelOp::Kind::kRead:
      if (state != op.value) return std::nullopt;
      return state;
    case ModelOp::Kind::kCompareAndSet:
      if (state != op.expected) return std::nullopt;
      return op.value;
    case ModelOp::Kind::kCompareFails:
      if (state == op.expected) return std::nullopt;
      return state;
    case ModelOp::Kind::kCompareAndMaybeSet:
      return state == op.expected ? op.value : state;
  }
  SYNOD_ASSERT_MSG(false, "unknown model kind {}", static_cast<int>(op.kind));
}

// The key's operations for the model, in order of invocation. Failed operations and unknown
// reads are left out: neither can explain nor contradict any answer.
std::vector<ModelOp> Compile(const std::vector<Operation>& operations) {
  ValueIds ids;
  std::vector<ModelOp> ops;
  for (size_t source = 0; source < operations.size(); ++source) {
    const Operation& operation = operations[source];
    SYNOD_ASSERT_MSG(Validate(operation).ok(), "{}", Validate(operation).ToString());
    SYNOD_ASSERT(operation.key == operations.front().key);
    if (operation.outcome == Outcome::kFailed) continue;
    const bool known = operation.outcome == Outcome::kOk;
    if (!known && operation.kind == OperationKind::kGet) continue;
    ModelOp op;
    op.required = known;
    op.invoke_time = operation.invoke_time;
    op.complete_time = known ? operation.complete_time : kNever;
    op.source = source;
    switch (operation.kind) {
      case OperationKind::kPut:
        op.kind = ModelOp::Kind::kWrite;
        op.value = ids.Of(operation.value);
        break;
      case OperationKind::kDelete:
        op.kind = ModelOp::Kind::kWrite;
        op.value = kAbsent;
        break;
      case OperationKind::kGet:
        op.kind = ModelOp::Kind::kRead;
        op.value = operation.found ? ids.Of(operation.observed) : kAbsent;
        break;
      case OperationKind::kCompareAndSet:
        op.kind = !known                ? ModelOp::Kind::kCompareAndMaybeSet
                  : operation.succeeded ? ModelOp::Kind::kCompareAndSet
                                        : ModelOp::Kind::kCompareFails;
        op.value = ids.Of(operation.value);
        op.expected = ids.Of(operation.expected);
        break;
    }
    ops.push_back(op);
  }
  std::stable_sort(ops.begin(), ops.end(), [](const ModelOp& a, const ModelOp& b) {
    return a.invoke_time < b.invoke_time;
  });
  return ops;
}

// Which values a set of operations reads and writes, to decide whether a write may leave the
// set without turning a linearizable history into one that is not.
//
// The argument: let L linearize history H, and let w write v. Remove w from L. Only the
// operations between w and the next write that takes effect see a different state: the value
// u before w instead of v. None of them reads v (the rule below), so each is a write that ends
// the stretch, an unknown cas that did nothing in L and can be left out of it (it is optional;
// it would otherwise write if u is its expected value), or a cas that did not succeed, which
// saw a value other than its expected one. That last one, f, breaks only if its expected value
// is u, which an operation of H other than w wrote (absent is expected by no cas). And f can
// be in the stretch only if it does not precede w in real time, and no write that always takes
// effect (a put, a delete, a cas that succeeded) lies between w and f in real time.
// So: if no other operation reads v, and no such f expects a value another operation writes,
// H without w is linearizable too.
class ValueUse {
 public:
  // The operations in [candidates_begin, candidates_end) may be removed; the others stay, so
  // only they can separate a write from a later cas.
  ValueUse(const std::vector<ModelOp>& ops, size_t candidates_begin, size_t candidates_end) {
    for (size_t i = 0; i < ops.size(); ++i) {
      const ModelOp& op = ops[i];
      if (const std::optional<State> observed = Observed(op)) readers_[*observed] += 1;
      if (Writes(op)) writers_[op.value] += 1;
      if (op.kind == ModelOp::Kind::kCompareFails) unsuccessful_.push_back(&op);
      const bool stays = i < candidates_begin || i >= candidates_end;
      const bool always_takes_effect = op.required && (op.kind == ModelOp::Kind::kWrite ||
                                                       op.kind == ModelOp::Kind::kCompareAndSet);
      if (stays && always_takes_effect) separators_.push_back({op.invoke_time, op.complete_time});
    }
    std::sort(separators_.begin(), separators_.end());
    // Suffix minimum of completion times: the earliest completion of a separator invoked at
    // or after a given one.
    for (size_t i = separators_.size(); i-- > 1;) {
      separators_[i - 1].complete_time =
          std::min(separators_[i - 1].complete_time, separators_[i].complete_time);
    }
  }

  // Whether `write`, one of the operations counted, may leave them (see above).
  bool MayRemoveWrite(const ModelOp& write) const {
    SYNOD_ASSERT(Writes(write));
    const std::optional<State> own_observation = Observed(write);
    const int64_t readers_of_value =
        CountOf(readers_, write.value) - (own_observation == write.value ? 1 : 0);
    if (readers_of_value > 0) return false;
    const int64_t separated_from = EarliestSeparatorCompletionAfter(write.complete_time);
    for (const ModelOp* unsuccessful : unsuccessful_) {
      if (unsuccessful->complete_time < write.invoke_time) continue;
      if (separated_from < unsuccessful->invoke_time) continue;
      const int64_t other_writers = CountOf(writers_, unsuccessful->expected) -
                                    (write.value == unsuccessful->expected ? 1 : 0);
      if (other_writers > 0) return false;
    }
    return true;
  }

  // `op` must be one of the operations counted, by reference.
  void Remove(const ModelOp& op) {
    if (const std::optional<State> observed = Observed(op)) readers_[*observed] -= 1;
    if (Writes(op)) writers_[op.value] -= 1;
    if (op.kind == ModelOp::Kind::kCompareFails) {
      unsuccessful_.erase(std::find(unsuccessful_.begin(), unsuccessful_.end(), &op));
    }
  }

 private:
  struct Interval {
    int64_t invoke_time = 0;
    int64_t complete_time = 0;
    auto operator<=>(const Interval&) const = default;
  };

  static int64_t CountOf(const std::unordered_map<State, int64_t>& counts, State value) {
    const auto found = counts.find(value);
    return found == counts.end() ? 0 : found->second;
  }

  // The earliest completion of a separator invoked after `time`; kNever if none.
  int64_t EarliestSeparatorCompletionAfter(int64_t time) const {
    const auto first = std::upper_bound(
        separators_.begin(), separators_.end(), time,
        [](int64_t value, const Interval& interval) { return value < interval.invoke_time; });
    return first == separators_.end() ? kNever : first->complete_time;
  }

  std::unordered_map<State, int64_t> readers_;
  std::unordered_map<State, int64_t> writers_;
  std::vector<const ModelOp*> unsuccessful_;
  // Invoke times ascending, each with the suffix minimum of completion times.
  std::vector<Interval> separators_;
};

// Leaves out the unknown writes that cannot matter: H with such a write is linearizable iff H
// without it is (ValueUse gives one direction; the other holds because an unknown write may
// stay out of a linearization). A write that no one reads only multiplies the search, since
// an unknown write can be linearized anywhere after its invocation.
std::vector<ModelOp> WithoutIrrelevantUnknownWrites(const std::vector<ModelOp>& ops) {
  // Unknown writes never separate (they need not take effect), so every operation may stay
  // a separator while they leave.
  ValueUse use(ops, 0, 0);
  std::vector<bool> irrelevant(ops.size(), false);
  bool progress = true;
  while (progress) {
    progress = false;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].required || irrelevant[i] || !use.MayRemoveWrite(ops[i])) continue;
      use.Remove(ops[i]);
      irrelevant[i] = true;
      progress = true;
    }
  }
  std::vector<ModelOp> relevant;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!irrelevant[i]) relevant.push_back(ops[i]);
  }
  return relevant;
}

// Lowe's memoisation: the configurations (linearized set, state) already explored. The search
// from a configuration does not depend on how it was reached, so each is explored once.
//
// A configuration is stored compactly and exactly. Operations are numbered in order of
// invocation; let `first` be the lowest-numbered required operation not yet linearized. Every
// required operation before it is linearized, so the set is `first` plus its exceptions: the
// unknown operations before `first` that are not linearized, and the operations after `first`
// that are. Those after `first` were all invoked before `first` completed (the search only
// linearizes calls ahead of the first pending return), so the exceptions are few: pending
// unknown writes and one window of concurrency. A bitset of every operation, Lowe's and
// Porcupine's representation, costs memory in the length of the history per configuration,
// which for one busy key of 30,000 operations was gigabytes.
class ConfigurationSet {
 public:
  // Adds the configuration; false if it was already present. `hash` must be a function of the
  // linearized set alone.
  bool Insert(uint64_t hash, State state, uint32_t first, const std::vector<uint32_t>& exceptions) {
    Entry entry{hash, state, first, static_cast<uint32_t>(exceptions_.size()),
                static_cast<uint32_t>(exceptions.size())};
    exceptions_.insert(exceptions_.end(), exceptions.begin(), exceptions.end());
    if (entries_.insert(entry).second) return true;
    exceptions_.resize(entry.offset);
    return false;
  }

  uint64_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t hash = 0;
    State state = kAbsent;
    uint32_t first = 0;
    // The exceptions are exceptions_[offset, offset + length), in increasing order.
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct EntryHash {
    size_t operator()(const Entry& entry) const {
      return entry.hash ^ (uint64_t{entry.state} * 0x9e3779b97f4a7c15ULL);
    }
  };
  struct EntryEqual {
    const std::vector<uint32_t>* exceptions;
    bool operator()(const Entry& a, const Entry& b) const {
      if (a.hash != b.hash || a.state != b.state || a.first != b.first || a.length != b.length) {
        return false;
      }
      return std::equal(exceptions->begin() + a.offset, exceptions->begin() + a.offset + a.length,
                        exceptions->begin() + b.offset);
    }
  };

  std::vector<uint32_t> exceptions_;
  std::unordered_set<Entry, EntryHash, EntryEqual> entries_{0, EntryHash{},
                                                            EntryEqual{&exceptions_}};
};

// Wing & Gong's search with Lowe's memoisation (Lowe 2017, section 4, "the JIT tree search"
// without its just-in-time step). The calls and returns of the operations form one list in
// time order. Walking the list, a call is a candidate: if the model accepts the operation in
// the current state and the configuration it leads to is new, the operation is linearized, its
// call and return leave the list, and the walk restarts at the head. Reaching the return of an
// operation not yet linearized means the current order cannot be extended: undo the last
// linearization and try the candidates after it.
class Search {
 public:
  // Precondition: `ops` are in order of invocation.
  Search(const std::vector<ModelOp>& ops, uint64_t configurations_max)
      : ops_(ops), configurations_max_(configurations_max) {
    SYNOD_ASSERT(ops_.size() < std::numeric_limits<uint32_t>::max());
    BuildEventList();
    // Zobrist hashing keeps the hash of the linearized set current in O(1) per step. A fixed
    // seed: the hash only spreads configurations, so any seed is correct and runs repeat.
    base::Prng prng(0x6c696e6561726973ULL);
    for (size_t op = 0; op < ops_.size(); ++op) {
      op_hash_.push_back(prng.NextU64());
      SYNOD_ASSERT(op == 0 || ops_[op - 1].invoke_time <= ops_[op].invoke_time);
      // The operations invoked no later than this one completes: ties count as concurrent.
      const auto after_window = std::upper_bound(
          ops_.begin(), ops_.end(), ops_[op].complete_time,
          [](int64_t time, const ModelOp& other) { return time < other.invoke_time; });
      window_end_.push_back(static_cast<uint32_t>(after_window - ops_.begin()));
    }
    linearized_.assign((ops_.size() + 63) / 64, 0);
    FindEarlierTwins();
  }

  Verdict Run() {
    for (const ModelOp& op : ops_) required_left_ += op.required ? 1 : 0;
    if (required_left_ == 0) return Verdict::kLinearizable;
    size_t event = next_[kHead()];
    while (true) {
      // A required operation is not yet linearized, so its return is still in the list ahead.
      SYNOD_ASSERT(event != kHead());
      const Event& current = events_[event];
      if (current.is_call) {
        if (seen_.size() >= configurations_max_) return Verdict::kUndecided;
        switch (TryLinearize(event)) {
          case Attempt::kLinearized:
            if (required_left_ == 0) return Verdict::kLinearizable;
            event = next_[kHead()];
            break;
          case Attempt::kNotHere:
            event = next_[event];
            break;
          case Attempt::kDeadEnd:
            if (!Backtrack(&event)) return Verdict::kNotLinearizable;
            break;
        }
        continue;
      }
      // Unknown writes return at +infinity, after every required return.
      SYNOD_ASSERT(ops_[current.op].required);
      if (!Backtrack(&event)) return Verdict::kNotLinearizable;
    }
  }

  uint64_t configurations() const { return seen_.size(); }

 private:
  struct Event {
    size_t op = 0;
    bool is_call = false;
    int64_t time = 0;
    size_t match = 0;  // a call's return event
  };
  struct Frame {
    size_t call = 0;
    State state_before = kAbsent;
    // A read linearized as soon as it was a candidate (see TryLinearize): not a choice.
    bool forced = false;
  };
  enum class Attempt {
    kLinearized,
    kNotHere,  // the model refuses it here, or it leads to an explored configuration
    kDeadEnd,  // the current configuration cannot be completed
  };

  size_t kHead() const { return events_.size(); }

  // Symmetry reduction over interchangeable unknown operations: two unknown operations with
  // the same effect (an unknown delete and another, or unknown puts or cases of one value and
  // expectation) differ only in their invocation, and neither has a completion that orders
  // it. In any linearization, the k of them that it includes can be swapped for the k invoked
  // first, in order of invocation, at the same points: the i-th earliest of all is invoked no
  // later than the i-th earliest of those k, which is invoked no later than the i-th of their
  // linearization points. The states along the order stay the same. So the search linearizes
  // such an operation only after its earlier twin, and a crowd of k unknown deletes costs k + 1
  // choices instead of 2^k.
  void FindEarlierTwins() {
    constexpr uint32_t kNoTwin = std::numeric_limits<uint32_t>::max();
    earlier_twin_.assign(ops_.size(), kNoTwin);
    std::map<std::tuple<ModelOp::Kind, State, State>, uint32_t> latest;
    for (size_t op = 0; op < ops_.size(); ++op) {
      if (ops_[op].required) continue;
      const auto [entry, inserted] = latest.try_emplace(
          std::tuple{ops_[op].kind, ops_[op].value, ops_[op].expected}, static_cast<uint32_t>(op));
      if (!inserted) {
        earlier_twin_[op] = entry->second;
        entry->second = static_cast<uint32_t>(op);
      }
    }
  }

  bool EarlierTwinPending(size_t op) const {
    return earlier_twin_[op] != std::numeric_limits<uint32_t>::max() &&
           !IsLinearized(earlier_twin_[op]);
  }

  void BuildEventList() {
    for (size_t op = 0; op < ops_.size(); ++op) {
      events_.push_back({op, true, ops_[op].invoke_time, 0});
      events_.push_back({op, false, ops_[op].complete_time, 0});
    }
    // Calls before returns at equal times: equal readings do not order two operations. The
    // sort is stable, so calls stay in the order of the operations' numbers.
    std::stable_sort(events_.begin(), events_.end(), [](const Event& a, const Event& b) {
      if (a.time != b.time) return a.time < b.time;
      return a.is_call && !b.is_call;
    });
    std::vector<size_t> call_of(ops_.size());
    for (size_t event = 0; event < events_.size(); ++event) {
      if (events_[event].is_call) {
        call_of[events_[event].op] = event;
      } else {
        events_[call_of[events_[event].op]].match = event;
      }
    }
    // A circular doubly-linked list through every event, with a head sentinel.
    const size_t size = events_.size() + 1;
    next_.resize(size);
    previous_.resize(size);
    for (size_t node = 0; node < size; ++node) {
      next_[node] = (node + 1) % size;
      previous_[node] = (node + size - 1) % size;
    }
  }

  void Unlink(size_t node) {
    next_[previous_[node]] = next_[node];
    previous_[next_[node]] = previous_[node];
  }
  // Knuth's dancing links: a node unlinked last is relinked first, from its own pointers.
  void Relink(size_t node) {
    next_[previous_[node]] = node;
    previous_[next_[node]] = node;
  }

  void Flip(size_t op) {
    linearized_[op / 64] ^= uint64_t{1} << (op % 64);
    hash_ ^= op_hash_[op];
  }
  bool IsLinearized(size_t op) const { return (linearized_[op / 64] >> (op % 64)) & 1; }

  // Records the current linearized set with `state` (see ConfigurationSet); false if known.
  bool Remember(State state) {
    exceptions_.clear();
    uint32_t first = static_cast<uint32_t>(ops_.size());
    // The list holds exactly the calls not linearized, in order of their operations' numbers:
    // unknown ones up to the first required one.
    for (size_t event = next_[kHead()]; event != kHead() && events_[event].is_call;
         event = next_[event]) {
      const size_t op = events_[event].op;
      if (ops_[op].required) {
        first = static_cast<uint32_t>(op);
        break;
      }
      exceptions_.push_back(static_cast<uint32_t>(op));
    }
    if (first < ops_.size()) {
      for (uint32_t op = first + 1; op < window_end_[first]; ++op) {
        if (IsLinearized(op)) exceptions_.push_back(op);
      }
    }
    return seen_.Insert(hash_, state, first, exceptions_);
  }

  // A read (a get, or a cas that did not succeed) changes no state, so when the model accepts
  // it here, linearizing it here loses nothing: every op that must precede it in real time is
  // already linearized (its return would otherwise have ended the walk), and moving a read
  // earlier in a linearization breaks no later operation. So the configuration with the read
  // completes exactly when the current one does; the read is no choice to backtrack over, and
  // if that configuration was explored before, the current one is a dead end. This partial-order
  // reduction spares the search the orders of reads among themselves and among the writes
  // they do not depend on.
  Attempt TryLinearize(size_t call) {
    const size_t op = events_[call].op;
    const std::optional<State> after = Step(ops_[op], state_);
    if (!after) return Attempt::kNotHere;
    // An unknown write that would leave the state as it is need not be linearized here:
    // whatever completes the configuration with it completes the one without it, where it
    // is still optional.
    if (!ops_[op].required && *after == state_) return Attempt::kNotHere;
    if (EarlierTwinPending(op)) return Attempt::kNotHere;
    const bool read =
        ops_[op].kind == ModelOp::Kind::kRead || ops_[op].kind == ModelOp::Kind::kCompareFails;
    Flip(op);
    Unlink(call);
    Unlink(events_[call].match);
    if (!Remember(*after)) {
      Relink(events_[call].match);
      Relink(call);
      Flip(op);
      return read ? Attempt::kDeadEnd : Attempt::kNotHere;
    }
    stack_.push_back({call, state_, read});
    state_ = *after;
    if (ops_[op].required) --required_left_;
    return Attempt::kLinearized;
  }

  // Undoes linearizations up to and including the latest choice, and points `event` at the
  // candidate after it; false when there is no choice left. Undoing a forced read leaves a
  // configuration that fails as well (see TryLinearize), so it is undone too.
  bool Backtrack(size_t* event) {
    while (!stack_.empty()) {
      const bool forced = stack_.back().forced;
      const size_t call = Undo();
      if (!forced) {
        *event = next_[call];
        return true;
      }
    }
    return false;
  }

  // Undoes the latest linearization; returns its call event.
  size_t Undo() {
    const Frame frame = stack_.back();
    stack_.pop_back();
    const size_t op = events_[frame.call].op;
    Flip(op);
    state_ = frame.state_before;
    Relink(events_[frame.call].match);
    Relink(frame.call);
    if (ops_[op].required) ++required_left_;
    return frame.call;
  }

  const std::vector<ModelOp>& ops_;
  const uint64_t configurations_max_;
  std::vector<Event> events_;
  std::vector<size_t> next_;
  std::vector<size_t> previous_;
  std::vector<uint64_t> op_hash_;
  // window_end_[op]: the first operation invoked after `op` completes.
  std::vector<uint32_t> window_end_;
  // earlier_twin_[op]: the latest unknown operation invoked before `op` with the same effect,
  // or the maximum uint32_t (see FindEarlierTwins).
  std::vector<uint32_t> earlier_twin_;
  // Invariant: bit i is set iff ops_[i] is on stack_; hash_ is the XOR of their op_hash_.
  std::vector<uint64_t> linearized_;
  uint64_t hash_ = 0;
  State state_ = kAbsent;
  std::vector<Frame> stack_;
  size_t required_left_ = 0;
  ConfigurationSet seen_;
  // Scratch space for Remember.
  std::vector<uint32_t> exceptions_;
};

Verdict Decide(const std::vector<ModelOp>& ops, uint64_t configurations_max,
               uint64_t* configurations) {
  const std::vector<ModelOp> relevant = WithoutIrrelevantUnknownWrites(ops);
  Search search(relevant, configurations_max);
  const Verdict verdict = search.Run();
  *configurations += search.configurations();
  return verdict;
}

// The operations of [begin, end) that may leave `ops` while keeping the proof (see ValueUse),
// by position: all reads, and each write once the operations still present do not read its
// value.
std::vector<size_t> RemovableWithin(const std::vector<ModelOp>& ops, size_t begin, size_t end) {
  ValueUse use(ops, begin, end);
  std::vector<size_t> removable;
  std::vector<size_t> writes;
  for (size_t i = begin; i < end; ++i) {
    if (Writes(ops[i])) {
      writes.push_back(i);
    } else {
      use.Remove(ops[i]);
      removable.push_back(i);
    }
  }
  // Latest first: a cas reading an earlier write's value leaves before that write is tried.
  bool progress = true;
  while (progress) {
    progress = false;
    for (size_t i = writes.size(); i-- > 0;) {
      if (!use.MayRemoveWrite(ops[writes[i]])) continue;
      use.Remove(ops[writes[i]]);
      removable.push_back(writes[i]);
      writes.erase(writes.begin() + static_cast<ptrdiff_t>(i));
      progress = true;
    }
  }
  std::sort(removable.begin(), removable.end());
  return removable;
}

std::vector<ModelOp> Without(const std::vector<ModelOp>& ops, const std::vector<size_t>& sorted) {
  std::vector<ModelOp> rest;
  size_t next = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (next < sorted.size() && sorted[next] == i) {
      ++next;
    } else {
      rest.push_back(ops[i]);
    }
  }
  return rest;
}

// The operations `ops` stand for, in order of invocation.
std::vector<Operation> InOrder(const std::vector<Operation>& operations,
                               const std::vector<ModelOp>& ops) {
  std::vector<Operation> in_order;
  for (const ModelOp& op : ops) in_order.push_back(operations[op.source]);
  return in_order;
}

}  // namespace

Verdict DecideKey(const std::vector<Operation>& operations, uint64_t configurations_max) {
  if (operations.empty()) return Verdict::kLinearizable;
  uint64_t configurations = 0;
  return Decide(Compile(operations), configurations_max, &configurations);
}

bool RemovalKeepsLinearizable(const std::vector<Operation>& operations, size_t index) {
  SYNOD_ASSERT(index < operations.size());
  const std::vector<ModelOp> ops = Compile(operations);
  const auto found = std::find_if(ops.begin(), ops.end(),
                                  [index](const ModelOp& op) { return op.source == index; });
  // Failed operations and unknown reads are not part of the model at all.
  if (found == ops.end()) return true;
  const size_t position = static_cast<size_t>(found - ops.begin());
  return !RemovableWithin(ops, position, position + 1).empty();
}

std::vector<Operation> ShrinkViolation(std::vector<Operation> operations,
                                       uint64_t configurations_max) {
  std::vector<ModelOp> ops = Compile(operations);
  uint64_t configurations = 0;
  SYNOD_ASSERT(Decide(ops, std::numeric_limits<uint64_t>::max(), &configurations) ==
               Verdict::kNotLinearizable);
  // Delta debugging (Zeller): try removing runs of operations close in time, halving the run
  // length down to single operations, which are retried until none can go. From each run only
  // what keeps the proof leaves. Runs go from the latest backwards, so a read leaves before
  // the write it reads is tried. All the searches share `configurations_max`: when it is spent,
  // what is left is still a proof, only a larger one.
  configurations = 0;
  for (size_t run = std::max<size_t>(ops.size() / 2, 1); run >= 1; run /= 2) {
    bool removed = true;
    while (removed) {
      removed = false;
      for (size_t end = ops.size(); end > 0;) {
        if (configurations >= configurations_max) return InOrder(operations, ops);
        const size_t begin = end > run ? end - run : 0;
        const std::vector<size_t> removable = RemovableWithin(ops, begin, end);
        if (!removable.empty()) {
          std::vector<ModelOp> rest = Without(ops, removable);
          // A search that runs out of budget proves nothing: the run stays.
          if (Decide(rest, configurations_max - configurations, &configurations) ==
              Verdict::kNotLinearizable) {
            ops = std::move(rest);
            removed = true;
          }
        }
        // Removing from [begin, end) moved only the operations after it.
        end = begin;
      }
      if (run > 1) break;
    }
  }
  return InOrder(operations, ops);
}

CheckReport CheckHistory(const std::vector<Operation>& history, uint64_t configurations_max) {
  std::map<std::string, std::vector<Operation>> by_key;
  for (const Operation& operation : history) by_key[operation.key].push_back(operation);
  CheckReport report;
  report.keys = by_key.size();
  for (const auto& [key, operations] : by_key) {
    const std::vector<ModelOp> ops = Compile(operations);
    report.operations_checked += ops.size();
    switch (Decide(ops, configurations_max, &report.configurations)) {
      case Verdict::kLinearizable:
        break;
      case Verdict::kUndecided:
        report.linearizable = false;
        report.undecided_keys.push_back(key);
        break;
      case Verdict::kNotLinearizable:
        report.linearizable = false;
        report.violating_keys.push_back(key);
        if (report.violating_keys.size() == 1) {
          report.violation = Violation{key, ShrinkViolation(operations, configurations_max)};
        }
        break;
    }
  }
  return report;
}

}  // namespace synod::check
