// A history of client operations on a key-value store, as a fault test records it: what each
// client asked, what it was told, and when it asked and was told. The linearizability checker
// (linearizability.h) decides whether some order of these operations explains every answer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace synod::check {

enum class OperationKind {
  kPut,     // sets the key's value
  kGet,     // observes the key's value, or that it is absent
  kDelete,  // makes the key absent
  // etcd's Txn "if value(key) == expected then put(key, value)". As in etcd, the comparison fails
  // on an absent key: an absent key has no value to equal `expected`.
  kCompareAndSet,
};

enum class Outcome {
  kOk,      // the client got an answer: the operation took effect once, between invoke and complete
  kFailed,  // the operation definitely did not take effect (the request was refused)
  // The client got no answer (timeout, lost connection): the operation may have taken effect at
  // any time after its invocation, even after the client gave up, or never.
  kUnknown,
};

struct Operation {
  uint64_t client = 0;
  OperationKind kind = OperationKind::kGet;
  std::string key;
  // kPut: the value written. kCompareAndSet: the value written when the comparison holds.
  std::string value;
  // kCompareAndSet: the value the key must have for the write to happen.
  std::string expected;
  // kGet with kOk: whether the key was present, and its value if so.
  bool found = false;
  std::string observed;
  // kCompareAndSet with kOk: whether the comparison held and the value was written.
  bool succeeded = false;
  // Times in any integer unit that all clients share (the fault harness uses nanoseconds).
  // Operation a precedes b in real time only if a.complete_time < b.invoke_time: equal times
  // count as concurrent, since two clocks readings that equal each other cannot order events.
  // Invariant: complete_time >= invoke_time when outcome is kOk.
  int64_t invoke_time = 0;
  // Meaningful only for kOk; an unknown operation's completion is taken as +infinity.
  int64_t complete_time = 0;
  Outcome outcome = Outcome::kOk;
  // Where the operation came from (the line of a history file), to point a person at it; 0 when
  // it did not come from a file.
  uint64_t source_line = 0;
};

// Whether the operation writes when it takes effect (a compare-and-set may write).
bool MayWrite(const Operation& operation);

// InvalidArgument naming the inconsistency (for example an ok operation that completes before it
// is invoked), or Ok.
Status Validate(const Operation& operation);

// "put k = "v"", "get k", "cas k "a" -> "b"", "delete k".
std::string DescribeRequest(const Operation& operation);
// "ok", "found "v"", "absent", "succeeded", "did not succeed", "failed", "unknown".
std::string DescribeResult(const Operation& operation);

// A readable table of the operations, one line each, in order of invocation: times (relative to
// the first invocation, whose absolute time heads the table), client, request, result and the
// source line.
std::string FormatTable(const std::vector<Operation>& operations);

}  // namespace synod::check
