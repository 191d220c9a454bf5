// Always-on assertions for programmer errors (TigerBeetle: assert the expected and the
// impossible). They stay enabled in release builds: a consensus node that continues after its
// own state is known to be wrong can break agreement, so crashing is the safe outcome.
#pragma once

#include <fmt/format.h>

namespace synod::base {

[[noreturn]] void AssertFail(const char* file, int line, const char* condition,
                             const std::string& message);

// What happens on a failed assertion. The default prints and aborts. The simulator installs one
// that throws, so that a seed which trips an assertion inside the core is reported as a failing
// seed (and the other seeds still run) instead of ending the process; production never does.
// The handler must not return. Install it once, before any thread starts.
using AssertHandler = void (*)(const char* file, int line, const char* condition,
                               const std::string& message);
void SetAssertHandler(AssertHandler handler);

}  // namespace synod::base

#define SYNOD_ASSERT(condition)                                                 \
  do {                                                                          \
    if (!(condition)) [[unlikely]] {                                            \
      ::synod::base::AssertFail(__FILE__, __LINE__, #condition, std::string{}); \
    }                                                                           \
  } while (false)

// SYNOD_ASSERT_MSG(cond, "fmt {}", args...) adds a formatted explanation to the crash report.
#define SYNOD_ASSERT_MSG(condition, ...)                                                   \
  do {                                                                                     \
    if (!(condition)) [[unlikely]] {                                                       \
      ::synod::base::AssertFail(__FILE__, __LINE__, #condition, fmt::format(__VA_ARGS__)); \
    }                                                                                      \
  } while (false)
