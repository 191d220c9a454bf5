// Hand-made histories with a known verdict: ones that are linearizable although their
// operations overlap or their outcome is unknown, and the classic anomalies that are not.
#include "check/linearizability.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "base/prng.h"
#include "check/random_history.h"

namespace synod::check {
namespace {

Operation Make(OperationKind kind, int64_t invoke, int64_t complete, uint64_t client) {
  Operation operation;
  operation.kind = kind;
  operation.key = "k";
  operation.invoke_time = invoke;
  operation.complete_time = complete;
  operation.client = client;
  return operation;
}

Operation Put(int64_t invoke, int64_t complete, std::string value, uint64_t client = 1) {
  Operation operation = Make(OperationKind::kPut, invoke, complete, client);
  operation.value = std::move(value);
  return operation;
}

// A get that saw `observed`, or found the key absent when it is nullopt.
Operation Get(int64_t invoke, int64_t complete, std::optional<std::string> observed,
              uint64_t client = 2) {
  Operation operation = Make(OperationKind::kGet, invoke, complete, client);
  operation.found = observed.has_value();
  operation.observed = observed.value_or("");
  return operation;
}

Operation Delete(int64_t invoke, int64_t complete, uint64_t client = 1) {
  return Make(OperationKind::kDelete, invoke, complete, client);
}

Operation Cas(int64_t invoke, int64_t complete, std::string expected, std::string value,
              bool succeeded, uint64_t client = 3) {
  Operation operation = Make(OperationKind::kCompareAndSet, invoke, complete, client);
  operation.expected = std::move(expected);
  operation.value = std::move(value);
  operation.succeeded = succeeded;
  return operation;
}

Operation WithOutcome(Operation operation, Outcome outcome) {
  operation.outcome = outcome;
  return operation;
}
Operation Unknown(Operation operation) {
  return WithOutcome(std::move(operation), Outcome::kUnknown);
}
Operation Failed(Operation operation) {
  return WithOutcome(std::move(operation), Outcome::kFailed);
}

Operation OnKey(Operation operation, std::string key) {
  operation.key = std::move(key);
  return operation;
}

bool Linearizable(const std::vector<Operation>& history) {
  return CheckHistory(history).linearizable;
}

// --- Linearizable histories ---

TEST(Linearizable, EmptyHistory) {
  EXPECT_TRUE(Linearizable({}));
}

TEST(Linearizable, SequentialWritesAndReads) {
  EXPECT_TRUE(Linearizable({Get(0, 1, std::nullopt), Put(2, 3, "a"), Get(4, 5, "a"), Delete(6, 7),
                            Get(8, 9, std::nullopt)}));
}

TEST(Linearizable, OverlappingWritesMayTakeEffectInEitherOrder) {
  // b may take effect before a: both overlap, so either final value is explained.
  EXPECT_TRUE(Linearizable({Put(0, 10, "a"), Put(5, 15, "b", 2), Get(20, 21, "a", 3)}));
  EXPECT_TRUE(Linearizable({Put(0, 10, "a"), Put(5, 15, "b", 2), Get(20, 21, "b", 3)}));
}

TEST(Linearizable, ReadOverlappingAWriteMaySeeTheOldOrTheNewValue) {
  EXPECT_TRUE(Linearizable(
      {Put(0, 1, "a"), Put(2, 10, "b"), Get(3, 4, "a"), Get(5, 6, "b", 3), Get(11, 12, "b")}));
}

TEST(Linearizable, ReadsOverlappingEachOtherAndWritesInAChain) {
  // The reads' answers force b before c before a within one long stretch of overlap.
  EXPECT_TRUE(Linearizable({Put(0, 100, "a", 1), Put(0, 100, "b", 2), Put(0, 100, "c", 3),
                            Get(10, 20, "b", 4), Get(30, 40, "c", 5), Get(110, 120, "a", 6)}));
}

TEST(Linearizable, EqualTimesDoNotOrderOperations) {
  // The get completes at 5, when the put is invoked: they count as concurrent.
  EXPECT_TRUE(Linearizable({Get(0, 5, "a"), Put(5, 6, "a")}));
}

TEST(Linearizable, UnknownWriteThatTookEffect) {
  EXPECT_TRUE(Linearizable({Put(0, 1, "a"), Unknown(Put(2, 3, "b")), Get(10, 11, "b")}));
}

TEST(Linearizable, UnknownWriteThatDidNotTakeEffect) {
  EXPECT_TRUE(Linearizable({Put(0, 1, "a"), Unknown(Put(2, 3, "b")), Get(10, 11, "a")}));
}

TEST(Linearizable, UnknownWriteTakingEffectLongAfterItsClientGaveUp) {
  EXPECT_TRUE(
      Linearizable({Put(0, 1, "a"), Unknown(Put(2, 3, "b")), Get(10, 11, "a"), Get(20, 21, "b")}));
}

TEST(Linearizable, UnknownDeleteAndUnknownCas) {
  EXPECT_TRUE(
      Linearizable({Put(0, 1, "a"), Unknown(Delete(2, 3)), Get(4, 5, std::nullopt), Put(6, 7, "b"),
                    Unknown(Cas(8, 9, "b", "c", false)), Get(10, 11, "c")}));
}

TEST(Linearizable, FailedOperationsAndUnknownReadsAreLeftOut) {
  EXPECT_TRUE(Linearizable(
      {Put(0, 1, "a"), Failed(Put(2, 3, "b")), Unknown(Get(4, 5, "z")), Get(6, 7, "a")}));
}

TEST(Linearizable, CasChain) {
  EXPECT_TRUE(Linearizable({Put(0, 1, "0"), Cas(2, 3, "0", "1", true), Cas(4, 5, "1", "2", true),
                            Cas(6, 7, "1", "3", false), Get(8, 9, "2")}));
}

TEST(Linearizable, ConcurrentCasesOfWhichOneWins) {
  // Three clients race to move 0 to their own value; one wins, and the others saw its value.
  EXPECT_TRUE(
      Linearizable({Put(0, 1, "0"), Cas(2, 10, "0", "x", false, 1), Cas(2, 10, "0", "y", true, 2),
                    Cas(2, 10, "0", "z", false, 3), Get(11, 12, "y")}));
}

TEST(Linearizable, CasOnAnAbsentKeyDoesNotSucceed) {
  // As in etcd, comparing the value of a key that does not exist fails.
  EXPECT_TRUE(Linearizable({Cas(0, 1, "", "a", false), Get(2, 3, std::nullopt)}));
}

TEST(Linearizable, KeysAreIndependent) {
  EXPECT_TRUE(Linearizable({Put(0, 1, "a"), OnKey(Put(0, 1, "b"), "other"), Get(2, 3, "a"),
                            OnKey(Get(2, 3, "b"), "other")}));
}

// --- Histories that are not linearizable ---

TEST(NotLinearizable, StaleRead) {
  EXPECT_FALSE(Linearizable({Put(0, 1, "a"), Put(2, 3, "b"), Get(4, 5, "a")}));
}

TEST(NotLinearizable, LostWrite) {
  EXPECT_FALSE(Linearizable({Put(0, 1, "a"), Get(2, 3, std::nullopt)}));
}

TEST(NotLinearizable, WriteAppliedTwice) {
  // a reappears after b overwrote it, with nobody writing a again.
  EXPECT_FALSE(Linearizable({Put(0, 1, "a"), Put(2, 3, "b"), Get(4, 5, "b"), Get(6, 7, "a")}));
}

TEST(NotLinearizable, ReadOfAValueNeverWritten) {
  EXPECT_FALSE(Linearizable({Put(0, 1, "a"), Get(2, 3, "z")}));
}

TEST(NotLinearizable, CasSucceededTwiceFromTheSameExpectedValue) {
  EXPECT_FALSE(
      Linearizable({Put(0, 1, "0"), Cas(2, 10, "0", "x", true, 1), Cas(2, 10, "0", "y", true, 2)}));
}

TEST(NotLinearizable, CasThatDidNotSucceedAlthoughTheValueWasExpected) {
  EXPECT_FALSE(Linearizable({Put(0, 1, "a"), Cas(2, 3, "a", "b", false)}));
}

TEST(NotLinearizable, FailedWriteObserved) {
  EXPECT_FALSE(Linearizable({Failed(Put(0, 1, "a")), Get(2, 3, "a")}));
}

TEST(NotLinearizable, UnknownWriteObservedBeforeItsInvocation) {
  EXPECT_FALSE(Linearizable({Get(0, 1, "a"), Unknown(Put(5, 6, "a"))}));
}

TEST(NotLinearizable, ReadsDisagreeOnTheOrderOfConcurrentWrites) {
  // One reader saw a then b, the other b then a, at the same times: no single order fits.
  EXPECT_FALSE(Linearizable({Put(0, 10, "a", 1), Put(0, 10, "b", 2), Get(11, 12, "a", 3),
                             Get(11, 12, "a", 4), Get(13, 14, "b", 3), Get(15, 16, "a", 4)}));
}

TEST(NotLinearizable, ReportNamesTheViolatingKeysOnly) {
  const CheckReport report =
      CheckHistory({Put(0, 1, "a"), Get(2, 3, "a"), OnKey(Put(0, 1, "a"), "y"),
                    OnKey(Get(2, 3, "b"), "y"), OnKey(Get(2, 3, "c"), "z")});
  EXPECT_FALSE(report.linearizable);
  EXPECT_EQ(report.violating_keys, (std::vector<std::string>{"y", "z"}));
  EXPECT_EQ(report.violation.key, "y");
  EXPECT_EQ(report.keys, 3u);
}

// --- The search budget ---

TEST(Budget, SearchOutOfBudgetLeavesTheKeyUndecidedNotLinearizable) {
  // Three overlapping writes and a read: the search needs more than two configurations.
  const std::vector<Operation> history = {Put(0, 10, "a", 1), Put(0, 10, "b", 2),
                                          Put(0, 10, "c", 3), Get(11, 12, "a", 4)};
  EXPECT_EQ(DecideKey(history), Verdict::kLinearizable);
  EXPECT_EQ(DecideKey(history, 2), Verdict::kUndecided);
  const CheckReport report = CheckHistory(history, 2);
  EXPECT_FALSE(report.linearizable);
  EXPECT_EQ(report.undecided_keys, (std::vector<std::string>{"k"}));
  EXPECT_TRUE(report.violating_keys.empty());
}

// --- Symmetry among unknown operations ---

// Forty unknown deletes, all pending from the start, and twenty rounds that each need one of
// them: put v, read v, read absent. Which delete serves which round does not matter, but a
// search that tells them apart tries 40 x 39 x ... orders before it can conclude anything. The
// last read is stale (v0 after v19 was read), so the search must exhaust them all.
std::vector<Operation> RoundsServedByInterchangeableUnknownDeletes(bool stale_read_at_the_end) {
  std::vector<Operation> history;
  for (int i = 0; i < 40; ++i) history.push_back(Unknown(Delete(i, i, 10 + i)));
  int64_t time = 100;
  for (int round = 0; round < 20; ++round) {
    const std::string value = "v" + std::to_string(round);
    history.push_back(Put(time, time + 1, value, 1));
    history.push_back(Get(time + 2, time + 3, value, 2));
    history.push_back(Get(time + 4, time + 5, std::nullopt, 2));
    time += 10;
  }
  if (stale_read_at_the_end) history.push_back(Get(time, time + 1, "v0", 3));
  return history;
}

TEST(Symmetry, InterchangeableUnknownDeletesCostOneChoiceEach) {
  // A budget far below 40! / 20!: only the symmetry reduction decides within it.
  constexpr uint64_t kBudget = 100'000;
  EXPECT_EQ(DecideKey(RoundsServedByInterchangeableUnknownDeletes(false), kBudget),
            Verdict::kLinearizable);
  EXPECT_EQ(DecideKey(RoundsServedByInterchangeableUnknownDeletes(true), kBudget),
            Verdict::kNotLinearizable);
}

TEST(Symmetry, AnUnknownWriteInvokedTooLateIsNoTwinSubstitute) {
  // Two unknown deletes: the one invoked at 0 can explain the absent read at [5, 6]; the one
  // invoked at 10 cannot. Linearizable only through the first, which must not be skipped.
  EXPECT_EQ(DecideKey({Put(0, 1, "a", 1), Unknown(Delete(0, 0, 2)), Get(5, 6, std::nullopt, 3),
                       Unknown(Delete(10, 10, 4))}),
            Verdict::kLinearizable);
  // Unknown deletes invoked only after the absent read completed cannot explain it, however
  // many of them there are.
  EXPECT_EQ(DecideKey({Put(0, 1, "a", 1), Get(5, 6, std::nullopt, 3), Unknown(Delete(10, 10, 2)),
                       Unknown(Delete(11, 11, 4))}),
            Verdict::kNotLinearizable);
}

// --- The shrunk sub-history ---

// A long, busy history of one key with a single stale read in the middle, plus other keys.
std::vector<Operation> LongHistoryWithOneStaleRead() {
  std::vector<Operation> history;
  int64_t time = 0;
  for (int round = 0; round < 60; ++round) {
    const std::string value = "v" + std::to_string(round);
    history.push_back(Put(time, time + 5, value, 1));
    history.push_back(Get(time + 1, time + 4, std::nullopt, 2));  // before or after: fixed below
    history.back().found = true;
    history.back().observed = round == 0 ? value : "v" + std::to_string(round - 1);
    history.push_back(Get(time + 6, time + 7, value, 3));
    history.push_back(OnKey(Put(time, time + 2, value, 4), "other"));
    time += 10;
  }
  // At round 30 a reader sees the value of round 28, although round 29's was read after it.
  history.push_back(Get(305, 306, "v28", 5));
  return history;
}

TEST(Shrink, StaleReadShrinksToTheWritesAndTheReadThatShowIt) {
  const std::vector<Operation> history = LongHistoryWithOneStaleRead();
  const CheckReport report = CheckHistory(history);
  ASSERT_FALSE(report.linearizable);
  EXPECT_EQ(report.violation.key, "k");
  const std::vector<Operation>& shrunk = report.violation.operations;
  EXPECT_EQ(DecideKey(shrunk), Verdict::kNotLinearizable);
  // v28 written, v29 (or a later value) written after it completed, and the stale read.
  ASSERT_EQ(shrunk.size(), 3u) << FormatTable(shrunk);
  EXPECT_EQ(DescribeRequest(shrunk[0]), "put k = \"v28\"");
  EXPECT_EQ(shrunk[1].kind, OperationKind::kPut);
  EXPECT_EQ(DescribeRequest(shrunk[2]), "get k");
  EXPECT_EQ(DescribeResult(shrunk[2]), "found \"v28\"");
}

TEST(Shrink, KeepsTheWriteThatExplainsARead) {
  // Without "put a" the read of a alone would be a violation, but not this history's.
  const std::vector<Operation> shrunk = ShrinkViolation(
      {Put(0, 1, "a"), Put(2, 3, "b"), Get(4, 5, "b"), Get(6, 7, "a"), Put(8, 9, "c")});
  EXPECT_EQ(DecideKey(shrunk), Verdict::kNotLinearizable);
  EXPECT_EQ(shrunk.size(), 3u) << FormatTable(shrunk);
  EXPECT_EQ(shrunk[0].value, "a");
}

TEST(Shrink, ReadOfAValueNeverWrittenShrinksToTheRead) {
  const std::vector<Operation> shrunk =
      ShrinkViolation({Put(0, 1, "a"), Get(2, 3, "a"), Put(4, 5, "b"), Get(6, 7, "z")});
  ASSERT_EQ(shrunk.size(), 1u) << FormatTable(shrunk);
  EXPECT_EQ(DescribeResult(shrunk[0]), "found \"z\"");
}

TEST(Shrink, TableShowsTimesClientsOperationsAndResults) {
  std::vector<Operation> history = {Put(1000, 1001, "a"), Put(1002, 1003, "b"),
                                    Get(1004, 1005, "a")};
  for (size_t i = 0; i < history.size(); ++i) history[i].source_line = i + 1;
  EXPECT_EQ(FormatTable(ShrinkViolation(history)),
            "times are relative to 1000\n"
            "invoke  complete  client  operation    result     line\n"
            "+0      +1        1       put k = \"a\"  ok         1\n"
            "+2      +3        1       put k = \"b\"  ok         2\n"
            "+4      +5        2       get k        found \"a\"  3\n");
}

// --- Scale ---

// A history the size of a fault run: tens of thousands of operations over hundreds of keys by
// ten clients, with unknown and failed outcomes. It must check in seconds; the figures are
// printed for docs/check.md.
TEST(Scale, TensOfThousandsOfOperations) {
  base::Prng prng(7);
  RandomHistoryOptions options;
  options.operations = 40000;
  options.keys = 300;
  options.clients = 10;
  options.values = 0;
  options.unknown_percent = 2;
  options.failed_percent = 2;
  options.gap_max = 1000;
  options.duration_max = 5000;
  std::vector<Operation> history = RandomLinearizableHistory(prng, options);

  const auto start = std::chrono::steady_clock::now();
  const CheckReport report = CheckHistory(history);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(report.linearizable);
  EXPECT_EQ(report.keys, 300u);
  fmt::print("checked {} operations over {} keys in {:.3f} s, {} configurations\n", history.size(),
             report.keys, std::chrono::duration<double>(elapsed).count(), report.configurations);

  // The same history with one read answered from a stale copy: caught and shrunk.
  Operation stale =
      Get(history.back().complete_time + 1, history.back().complete_time + 2, "never written", 11);
  stale.key = "k17";
  history.push_back(stale);
  const CheckReport broken = CheckHistory(history);
  EXPECT_FALSE(broken.linearizable);
  EXPECT_EQ(broken.violating_keys, (std::vector<std::string>{"k17"}));
  EXPECT_EQ(broken.violation.operations.size(), 1u);
}

}  // namespace
}  // namespace synod::check
