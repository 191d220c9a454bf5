// The end-of-run report (text for people, JSON for scripts) and the live progress display.
#pragma once

#include <absl/synchronization/notification.h>

#include <cstdio>
#include <string>
#include <thread>

#include "load.h"

namespace synod::bench {

struct RunReport {
  const Options& options;
  const LoadResult& result;
  double duration_s = 0;
};

std::string FormatText(const RunReport& report);
std::string FormatJson(const RunReport& report);

// Shows progress on `stream` until Stop(): a bar redrawn in place when the stream is a
// terminal, otherwise a plain line every few seconds (for CI logs).
class ProgressDisplay {
 public:
  ProgressDisplay(const Progress* progress, std::FILE* stream);
  ~ProgressDisplay();
  void Stop();

 private:
  void Run();
  std::string Line() const;

  const Progress* progress_;
  std::FILE* stream_;
  const bool terminal_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace synod::bench
