// The history file the fault harness writes and synod-check reads: JSON lines, one operation
// per line. docs/check.md documents the schema for the writers.
#pragma once

#include <istream>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "check/history.h"

namespace synod::check {

// One operation from one line of JSON. InvalidArgument says what is wrong with it.
Result<Operation> ParseOperation(std::string_view json);

// Every operation of a JSON-lines history; blank lines are skipped. Each operation's
// source_line is its line number. InvalidArgument names the first bad line: "line 12: ...".
Result<std::vector<Operation>> ReadHistory(std::istream& input);

}  // namespace synod::check
