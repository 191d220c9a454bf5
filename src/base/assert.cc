#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace synod::base {

void AssertFail(const char* file, int line, const char* condition, const std::string& message) {
  std::fprintf(stderr, "%s:%d: assertion failed: %s%s%s\n", file, line, condition,
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace synod::base
