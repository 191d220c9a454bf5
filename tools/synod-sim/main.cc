// synod-sim: runs the deterministic simulator over many seeds, or replays one with a trace.
//
//   synod-sim --seeds 10000 --faults all     one line per failing seed, a summary line last;
//                                            exit status 0 only if every seed passed
//   synod-sim --seed 42 --faults all --trace replays seed 42 and prints who sent what to whom
//
// Seeds run in parallel on --jobs threads; each seed's run is independent and deterministic, so
// the thread count changes only the wall time.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "sim/simulator.h"

namespace {

std::string ReplayCommand(const synod::sim::SimOptions& options, const std::string& faults) {
  return fmt::format("synod-sim --seed {} --faults {} --nodes {} --ticks {} --trace", options.seed,
                     faults, options.nodes, options.safety_ticks);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Deterministic simulator for Synod's Raft core"};
  uint64_t seeds = 0;
  uint64_t first_seed = 1;
  std::optional<uint64_t> single_seed;
  std::string faults_spec = "all";
  uint32_t nodes = 0;
  uint64_t ticks = 1000;
  uint64_t liveness_ticks = 500;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  bool trace = false;
  bool verbose = false;
  bool stop_on_failure = false;
  app.add_option("--seeds", seeds, "Run this many seeds, from --first-seed on");
  app.add_option("--first-seed", first_seed, "The first seed of --seeds")->default_val(1);
  app.add_option("--seed", single_seed, "Run (replay) just this seed");
  app.add_option("--faults", faults_spec,
                 "all, none, or a comma-separated list of: loss, duplicate, delay, partition, "
                 "crash, pause, slow, membership, transfer")
      ->default_val("all");
  app.add_option("--nodes", nodes, "Voters at start: 3, 5 or 7; 0 lets each seed choose")
      ->check(CLI::IsMember({0, 3, 5, 7}))
      ->default_val(0);
  app.add_option("--ticks", ticks, "Ticks of the safety phase (with faults)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}))
      ->default_val(1000);
  app.add_option("--liveness-ticks", liveness_ticks,
                 "Ticks the cluster may take to recover once faults stop")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}))
      ->default_val(500);
  app.add_option("--jobs", jobs, "Seeds run in parallel")->check(CLI::Range(1u, 256u));
  app.add_flag("--trace", trace, "Print a readable trace of the run (with --seed)");
  app.add_flag("--verbose", verbose, "Print one line per seed, passing or not");
  app.add_flag("--stop-on-failure", stop_on_failure, "Stop at the first failing seed");
  CLI11_PARSE(app, argc, argv);

  if (single_seed.has_value() == (seeds > 0)) {
    std::cerr << "synod-sim: give either --seeds N or --seed S\n";
    return 2;
  }
  if (trace && !single_seed.has_value()) {
    std::cerr << "synod-sim: --trace replays one seed; use it with --seed S\n";
    return 2;
  }
  synod::Result<synod::sim::FaultSet> faults = synod::sim::ParseFaults(faults_spec);
  if (!faults.ok()) {
    std::cerr << "synod-sim: " << faults.status().message() << "\n";
    return 2;
  }
  if (single_seed.has_value()) {
    first_seed = *single_seed;
    seeds = 1;
    jobs = 1;
  }

  const auto started = std::chrono::steady_clock::now();
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex output_mutex;
  uint64_t passed = 0;
  uint64_t failed = 0;
  synod::sim::SimStats totals;
  auto worker = [&] {
    for (;;) {
      const uint64_t i = next.fetch_add(1);
      if (i >= seeds || stop.load()) return;
      synod::sim::SimOptions options;
      options.seed = first_seed + i;
      options.faults = *faults;
      options.nodes = nodes;
      options.safety_ticks = ticks;
      options.liveness_ticks_max = liveness_ticks;
      options.trace = trace ? &std::cout : nullptr;
      const synod::sim::SimResult result = synod::sim::RunSimulation(options);
      std::lock_guard lock(output_mutex);
      const synod::sim::SimStats& s = result.stats;
      totals.Add(s);
      if (result.passed) {
        ++passed;
        if (verbose || single_seed.has_value()) {
          fmt::print(
              "ok   seed={} leaders={} committed={} applied_proposals={}/{} messages={} "
              "dropped={} duplicated={} crashes={} pauses={} partitions={} "
              "membership_changes={} transfers={} snapshots={} reads={} liveness_ticks={}\n",
              options.seed, s.leaders_elected, s.committed, s.proposals_applied, s.proposals,
              s.messages_sent, s.messages_dropped, s.messages_duplicated, s.crashes, s.pauses,
              s.partitions, s.membership_changes, s.transfers, s.snapshots_installed,
              s.reads_released, s.liveness_ticks);
        }
      } else {
        ++failed;
        fmt::print("FAIL seed={} {}\n     parameters: {}\n     replay: {}\n", options.seed,
                   result.failure, result.parameters, ReplayCommand(options, faults_spec));
        if (stop_on_failure) stop = true;
      }
      std::fflush(stdout);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 0; j < jobs; ++j) threads.emplace_back(worker);
  for (std::thread& thread : threads) thread.join();

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(
      "synod-sim: {} seeds, {} passed, {} failed (faults={}, ticks={}; {} leaders elected, {} "
      "entries committed, {} crashes, {} partitions, {} membership changes, {} snapshots "
      "installed, {} reads checked; disk: {} fsync failures, {} torn writes cut, {} kept whole, "
      "{} corruptions detected; slowest recovery {} ticks; {:.1f}s)\n",
      passed + failed, passed, failed, synod::sim::ToString(*faults), ticks, totals.leaders_elected,
      totals.committed, totals.crashes, totals.partitions, totals.membership_changes,
      totals.snapshots_installed, totals.reads_released, totals.fsync_failures,
      totals.torn_writes_cut, totals.torn_writes_kept_whole, totals.corruptions_detected,
      totals.liveness_ticks, seconds);
  return failed == 0 && passed == seeds ? 0 : 1;
}
