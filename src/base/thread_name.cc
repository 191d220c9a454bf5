#include "base/thread_name.h"

#include <pthread.h>

#include <string>

namespace synod {

void NameThisThread(std::string_view name) {
  constexpr size_t kLinuxNameBytesMax = 15;
  const std::string truncated(name.substr(0, kLinuxNameBytesMax));
  // Fails only for a name that is too long, which the truncation rules out.
  pthread_setname_np(pthread_self(), truncated.c_str());
}

}  // namespace synod
