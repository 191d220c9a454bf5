// How a server process waits for SIGINT or SIGTERM: the signals are blocked in every thread
// and one thread takes them with sigwait, so no handler ever runs in the middle of gRPC's or the
// event loop's code, and the stop happens in ordinary code that can shut things down in order.
#pragma once

namespace synod::base {

// Blocks SIGINT and SIGTERM in the calling thread and in every thread it starts afterwards.
// Call it first thing in main, before any library starts a thread that would otherwise take
// the signal and end the process without the orderly stop.
void BlockStopSignals();

// Waits until SIGINT or SIGTERM arrives and returns its number. Precondition: BlockStopSignals
// ran before any thread started.
int WaitForStopSignal();

}  // namespace synod::base
