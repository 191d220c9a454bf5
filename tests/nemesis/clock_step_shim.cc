// Preloaded with libfaketime, makes a wall-clock jump look to the process like a real clock step
// (NTP's `step`): every absolute CLOCK_REALTIME futex wait is moved by the faked offset.
//
// Why: libfaketime fakes what clock_gettime(CLOCK_REALTIME) returns, but not the kernel's
// realtime clock. Abseil (the version gRPC and synod link) implements every timed wait as a
// futex wait until an absolute CLOCK_REALTIME instant computed from the faked clock, issued
// through syscall(2), which libfaketime does not intercept. With the clock jumped forward by J,
// every timed wait in gRPC (its timers: reconnect backoff, deadlines) and in Abseil's CondVar
// then slept J too long, for as long as the offset lasted: a member stopped reconnecting, and
// the nemesis saw minute-long windows without a leader that no real clock step causes (after a
// real step the kernel and the process agree on the time again). The clock fault is meant to
// show that nothing in synod's correctness hangs on the wall clock, not to test this artefact.
//
// The translation: kernel deadline = faked deadline - (faked now - kernel now).

#include <dlfcn.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdint>

namespace {

using SyscallFunction = long (*)(long, ...);

constexpr int64_t kNanosPerSecond = 1'000'000'000;

SyscallFunction RealSyscall() {
  // Benign race: every thread that sees null stores the same pointer.
  static SyscallFunction real = nullptr;
  SyscallFunction found = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
  if (found == nullptr) {
    found = reinterpret_cast<SyscallFunction>(dlsym(RTLD_NEXT, "syscall"));
    __atomic_store_n(&real, found, __ATOMIC_RELEASE);
  }
  return found;
}

int64_t Nanos(const timespec& time) { return time.tv_sec * kNanosPerSecond + time.tv_nsec; }

timespec FromNanos(int64_t nanos) {
  timespec time{};
  time.tv_sec = nanos / kNanosPerSecond;
  time.tv_nsec = nanos % kNanosPerSecond;
  if (time.tv_nsec < 0) {
    time.tv_nsec += kNanosPerSecond;
    time.tv_sec -= 1;
  }
  return time;
}

bool IsAbsoluteRealtimeWait(long operation) {
  const long command = operation & FUTEX_CMD_MASK;
  return (operation & FUTEX_CLOCK_REALTIME) != 0 &&
         (command == FUTEX_WAIT_BITSET || command == FUTEX_WAIT_REQUEUE_PI);
}

}  // namespace

extern "C" long syscall(long number, ...) noexcept {
  va_list list;
  va_start(list, number);
  long arguments[6];
  for (long& argument : arguments) argument = va_arg(list, long);
  va_end(list);

  timespec kernel_deadline{};
  if (number == SYS_futex && IsAbsoluteRealtimeWait(arguments[1]) && arguments[3] != 0) {
    timespec faked_now{};
    timespec kernel_now{};
    clock_gettime(CLOCK_REALTIME, &faked_now);  // Resolves to libfaketime's.
    RealSyscall()(SYS_clock_gettime, CLOCK_REALTIME, &kernel_now);
    const auto* faked_deadline = reinterpret_cast<const timespec*>(arguments[3]);
    kernel_deadline =
        FromNanos(Nanos(*faked_deadline) - (Nanos(faked_now) - Nanos(kernel_now)));
    arguments[3] = reinterpret_cast<long>(&kernel_deadline);
  }
  return RealSyscall()(number, arguments[0], arguments[1], arguments[2], arguments[3],
                       arguments[4], arguments[5]);
}
