#include "sim/assertion_failure.h"

#include <fmt/format.h>

#include <mutex>

#include "base/assert.h"

namespace synod::sim {
namespace {

[[noreturn]] void ThrowAssertionFailure(const char* file, int line, const char* condition,
                                        const std::string& message) {
  throw AssertionFailure{fmt::format("assertion failed at {}:{}: {}{}{}", file, line, condition,
                                     message.empty() ? "" : ": ", message)};
}

}  // namespace

void ThrowAssertionFailures() {
  static std::once_flag install_handler;
  std::call_once(install_handler, [] { base::SetAssertHandler(&ThrowAssertionFailure); });
}

}  // namespace synod::sim
