#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace synod::base {
namespace {

AssertHandler assert_handler = nullptr;

}  // namespace

void SetAssertHandler(AssertHandler handler) {
  assert_handler = handler;
}

void AssertFail(const char* file, int line, const char* condition, const std::string& message) {
  if (assert_handler != nullptr) {
    assert_handler(file, line, condition, message);
    std::abort();  // A handler that returns breaks the contract.
  }
  std::fprintf(stderr, "%s:%d: assertion failed: %s%s%s\n", file, line, condition,
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace synod::base
