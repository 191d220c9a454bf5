#pragma once

#include <string_view>

namespace synod {

// Names the calling thread as `top -H`, `perf --sort comm` and /proc/PID/task/TID/comm show it,
// so that a profile or a per-thread CPU count says which of a member's threads did the work.
// Linux keeps the first 15 bytes.
void NameThisThread(std::string_view name);

}  // namespace synod
