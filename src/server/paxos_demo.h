#pragma once

// `synod paxos`: a one-shot decision among real processes with single-decree Paxos (issue 7,
// part 1), for example who gets a lock, or red versus blue.
//
//   synod paxos --name n1 --data-dir n1.paxos --peers n1=127.0.0.1:7001,n2=...,n3=...
//               --propose red [--timeout 30s] [--linger 10s]
//   synod paxos --query --data-dir n1.paxos
//
// Each process is a proposer, an acceptor and a learner of the pure core in
// src/consensus/paxos (paxos.h), driven the way its Ready contract asks:
//   - one thread (the event loop) owns the core; it ticks it on a steady clock every --tick;
//     gRPC threads only decode peer messages and queue them for the loop (bounded; Paxos
//     tolerates the loss of what does not fit);
//   - the acceptor's state (promise, accepted proposal, decided value) is written to
//     <data-dir>/paxos-state with storage::ReplaceFileDurably (temporary file, fsync, rename,
//     fsync of the directory) BEFORE any message of the same Ready leaves ("Paxos Made Simple"
//     2.3: "an acceptor must remember this information even if it fails and then restarts");
//     a failed write stops the process (exit 1), because after a failed fsync nothing says what
//     the disk holds;
//   - messages go to peers as unary gRPC calls of proto/synod/paxos_demo.proto, sent without
//     waiting; a peer that is down just loses them, and the core's timeouts retry.
// A restarted process (same --data-dir) builds its core from that file, so it keeps every
// promise, and its own proposal numbers start above them.
//
// Output: stdout gets exactly one line, "chosen: VALUE" once this process has learned the
// decision (and made it durable), or "not yet decided" when --timeout passes first. Logs go to
// stderr. Exit status: 0 decided, 3 not yet decided, 2 bad flags, 1 an operating error (a data
// dir of another group or member, a port in use, a failed write).
//
// Hand-off: a process that has decided does not exit at once. A process that exits takes away
// an acceptor that can answer, and a peer that is down (crashed, or not started yet) could be
// left with fewer than a majority of processes to learn the decision from. So a decided process
// keeps serving (its core answers prepare, accept and learn requests with the decision) and
// asks each peer not yet known to hold the decision, every few ticks, whether it is in its data
// dir (Probe, which carries the asker's decision, so the asked learns the same of the asker); it
// exits once every peer is known to hold it, or once --linger has passed since it decided. A
// peer that holds another value is a broken safety property: the process reports it and
// aborts.
//
// Without --propose a process is an acceptor and a learner only: it helps the others decide and
// prints the decision it learns. --query reads only the data dir and prints what this process
// has learned, the query() of the issue: "chosen: VALUE" (exit 0) or "not yet decided" (exit 3).
//
// Identity: the members are numbered 1..n in the order of their names; every message carries
// the group id (a hash of the sorted --peers list), and a receiver refuses another group's. The
// data dir records the group id and the member name, and a process refuses a data dir of
// another group or member.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/ids.h"
#include "base/status.h"
#include "consensus/paxos/types.h"
#include "storage/file_system.h"
#include "synod/paxos_demo.pb.h"

namespace synod::server {

// Exit statuses of `synod paxos` (above).
inline constexpr int kPaxosDemoExitDecided = 0;
inline constexpr int kPaxosDemoExitError = 1;
inline constexpr int kPaxosDemoExitUsage = 2;
inline constexpr int kPaxosDemoExitUndecided = 3;

// The file in the data dir that holds the acceptor's state.
inline constexpr std::string_view kPaxosDemoStateFile = "paxos-state";

struct PaxosDemoPeer {
  std::string name;
  // "host:port", the gRPC target.
  std::string address;
};

struct PaxosDemoOptions {
  std::string name;
  std::string data_dir;
  // Every member, this one included, sorted by name. Its position + 1 is a member's NodeId.
  std::vector<PaxosDemoPeer> peers;
  std::optional<std::string> propose;
  bool query = false;
  std::chrono::milliseconds timeout{30'000};
  std::chrono::milliseconds linger{10'000};
  std::chrono::milliseconds tick{20};
  // The seed of the core's backoff generator; drawn at random when absent (and logged), so that
  // two proposers do not back off in step.
  std::optional<uint64_t> seed;
  std::string log_level = "info";
  // Set by --help: print it and exit 0.
  std::optional<std::string> print_and_exit;
};

// Parses the flags after `synod paxos`. InvalidArgument with the reason for a bad command line:
// unknown flags, a malformed --peers, a --name not among them, --query with --propose.
Result<PaxosDemoOptions> ParsePaxosDemoFlags(int argc, const char* const* argv);

// The id every message of the group carries: a 64-bit FNV-1a hash of "name=address" of every
// member, sorted by name and joined with commas, so every process given the same members (in any
// order) computes the same id.
uint64_t PaxosDemoGroupId(const std::vector<PaxosDemoPeer>& peers);

// NodeId of the member called `name`: its position among the sorted names, plus one. kNoNode when
// there is no such member.
NodeId PaxosDemoNodeId(const std::vector<PaxosDemoPeer>& peers, std::string_view name);

// The wire form of a core message and back. Decoding refuses (InvalidArgument) an unknown type;
// the core's Step checks the rest.
synodpb::PaxosMessage EncodePaxosMessage(const paxos::Message& message, uint64_t group_id);
Result<paxos::Message> DecodePaxosMessage(const synodpb::PaxosMessage& encoded);

// What <data-dir>/paxos-state records.
struct PaxosDemoStateFile {
  uint64_t group_id = 0;
  std::string name;
  paxos::PersistentState state;
};

// Writes the file durably (storage::ReplaceFileDurably): returns OK only once it would survive
// a crash.
Status SavePaxosDemoState(storage::FileSystem& fs, const std::string& data_dir,
                          const PaxosDemoStateFile& file);
// Reads the file; nullopt when there is none (a process that never persisted anything).
// DataLoss for a file whose checksum does not match or that does not parse.
Result<std::optional<PaxosDemoStateFile>> LoadPaxosDemoState(storage::FileSystem& fs,
                                                             const std::string& data_dir);

// `synod paxos ...`: runs the demo with the arguments after "paxos" and returns the exit status.
int RunPaxosDemo(int argc, const char* const* argv);

}  // namespace synod::server
