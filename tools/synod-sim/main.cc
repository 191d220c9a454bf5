// synod-sim: runs the deterministic simulators over many seeds, or replays one with a trace.
//
//   synod-sim --seeds 10000 --faults all     one line per failing seed, a summary line last;
//                                            exit status 0 only if every seed passed
//   synod-sim --seed 42 --faults all --trace replays seed 42 and prints who sent what to whom
//   synod-sim --protocol paxos --seeds 500    the same for the single-decree Paxos core
//   synod-sim --protocol multipaxos --seeds 500   the same for the Multi-Paxos engine
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

#include "sim/multipaxos_simulator.h"
#include "sim/paxos_simulator.h"
#include "sim/simulator.h"

namespace {

struct Settings {
  std::string protocol = "raft";
  uint64_t seeds = 0;
  uint64_t first_seed = 1;
  bool single_seed = false;
  std::string faults_spec = "all";
  synod::sim::FaultSet faults;
  uint32_t nodes = 0;
  uint64_t ticks = 1000;
  uint64_t liveness_ticks = 500;
  unsigned jobs = 1;
  bool trace = false;
  bool verbose = false;
  bool stop_on_failure = false;
};

std::string ReplayCommand(const Settings& settings, uint64_t seed) {
  return fmt::format("synod-sim --protocol {} --seed {} --faults {} --nodes {} --ticks {} --trace",
                     settings.protocol, seed, settings.faults_spec, settings.nodes, settings.ticks);
}

// Runs the seeds on settings.jobs threads: `run(seed, trace)` returns a result with passed,
// failure, parameters and stats (whose Add folds runs together); `describe(stats)` is the
// figures of one passing seed, `summarize(totals)` those of the whole run. Returns the exit
// status: 0 only if every seed passed.
template <typename Run, typename Describe, typename Summarize>
int RunSeeds(const Settings& settings, Run run, Describe describe, Summarize summarize) {
  using Result = decltype(run(uint64_t{}, static_cast<std::ostream*>(nullptr)));
  const auto started = std::chrono::steady_clock::now();
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex output_mutex;
  uint64_t passed = 0;
  uint64_t failed = 0;
  decltype(Result{}.stats) totals;
  auto worker = [&] {
    for (;;) {
      const uint64_t i = next.fetch_add(1);
      if (i >= settings.seeds || stop.load()) return;
      const uint64_t seed = settings.first_seed + i;
      const Result result = run(seed, settings.trace ? &std::cout : nullptr);
      std::lock_guard lock(output_mutex);
      totals.Add(result.stats);
      if (result.passed) {
        ++passed;
        if (settings.verbose || settings.single_seed) {
          fmt::print("ok   seed={} {}\n", seed, describe(result.stats));
        }
      } else {
        ++failed;
        fmt::print("FAIL seed={} {}\n     parameters: {}\n     replay: {}\n", seed, result.failure,
                   result.parameters, ReplayCommand(settings, seed));
        if (settings.stop_on_failure) stop = true;
      }
      std::fflush(stdout);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 0; j < settings.jobs; ++j) threads.emplace_back(worker);
  for (std::thread& thread : threads) thread.join();

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(
      "synod-sim: {} seeds, {} passed, {} failed (protocol={}, faults={}, ticks={}; {}; "
      "{:.1f}s)\n",
      passed + failed, passed, failed, settings.protocol, synod::sim::ToString(settings.faults),
      settings.ticks, summarize(totals), seconds);
  return failed == 0 && passed == settings.seeds ? 0 : 1;
}

synod::sim::SimOptions OptionsFor(const Settings& settings, uint64_t seed, std::ostream* trace) {
  synod::sim::SimOptions options;
  options.seed = seed;
  options.faults = settings.faults;
  options.nodes = settings.nodes;
  options.safety_ticks = settings.ticks;
  options.liveness_ticks_max = settings.liveness_ticks;
  options.trace = trace;
  return options;
}

int RunRaft(const Settings& settings) {
  auto run = [&](uint64_t seed, std::ostream* trace) {
    return synod::sim::RunSimulation(OptionsFor(settings, seed, trace));
  };
  auto describe = [](const synod::sim::SimStats& s) {
    return fmt::format(
        "leaders={} committed={} applied_proposals={}/{} messages={} dropped={} duplicated={} "
        "crashes={} pauses={} partitions={} membership_changes={} transfers={} snapshots={} "
        "reads={} liveness_ticks={}",
        s.leaders_elected, s.committed, s.proposals_applied, s.proposals, s.messages_sent,
        s.messages_dropped, s.messages_duplicated, s.crashes, s.pauses, s.partitions,
        s.membership_changes, s.transfers, s.snapshots_installed, s.reads_released,
        s.liveness_ticks);
  };
  auto summarize = [](const synod::sim::SimStats& totals) {
    return fmt::format(
        "{} leaders elected, {} entries committed, {} crashes, {} partitions, {} membership "
        "changes, {} snapshots installed, {} reads checked; disk: {} fsync failures, {} torn "
        "writes cut, {} kept whole, {} corruptions detected; slowest recovery {} ticks",
        totals.leaders_elected, totals.committed, totals.crashes, totals.partitions,
        totals.membership_changes, totals.snapshots_installed, totals.reads_released,
        totals.fsync_failures, totals.torn_writes_cut, totals.torn_writes_kept_whole,
        totals.corruptions_detected, totals.liveness_ticks);
  };
  return RunSeeds(settings, run, describe, summarize);
}

int RunPaxos(const Settings& settings) {
  auto run = [&](uint64_t seed, std::ostream* trace) {
    return synod::sim::RunPaxosSimulation(OptionsFor(settings, seed, trace));
  };
  auto describe = [](const synod::sim::PaxosSimStats& s) {
    return fmt::format(
        "proposers={} prepares={} chosen_under_faults={} messages={} dropped={} duplicated={} "
        "crashes={} pauses={} partitions={} liveness_ticks={}",
        s.proposers, s.prepares, s.chosen_under_faults, s.messages_sent, s.messages_dropped,
        s.messages_duplicated, s.crashes, s.pauses, s.partitions, s.liveness_ticks);
  };
  auto summarize = [](const synod::sim::PaxosSimStats& totals) {
    return fmt::format(
        "{} proposers, {} prepares, chosen under faults in {} runs, {} crashes, {} pauses, {} "
        "partitions; slowest decision after healing {} ticks",
        totals.proposers, totals.prepares, totals.chosen_under_faults, totals.crashes,
        totals.pauses, totals.partitions, totals.liveness_ticks);
  };
  return RunSeeds(settings, run, describe, summarize);
}

int RunMultiPaxos(const Settings& settings) {
  auto run = [&](uint64_t seed, std::ostream* trace) {
    return synod::sim::RunMultiPaxosSimulation(OptionsFor(settings, seed, trace));
  };
  auto describe = [](const synod::sim::MultiPaxosSimStats& s) {
    return fmt::format(
        "leaders={} chosen={} proposals={} reads={} follower_reads={} snapshots={} "
        "membership_changes={} transfers={} transfers_completed={} "
        "messages={} dropped={} duplicated={} crashes={} pauses={} partitions={} "
        "liveness_ticks={}",
        s.leaders_elected, s.chosen, s.proposals, s.reads_released, s.follower_reads_released,
        s.snapshots_installed, s.membership_changes, s.transfers, s.transfers_completed,
        s.messages_sent, s.messages_dropped, s.messages_duplicated, s.crashes, s.pauses,
        s.partitions, s.liveness_ticks);
  };
  auto summarize = [](const synod::sim::MultiPaxosSimStats& totals) {
    return fmt::format(
        "{} leaders elected, {} slots chosen, {} reads checked ({} by followers), {} snapshots "
        "installed, {} membership changes, {} leadership transfers ({} completed), {} crashes, "
        "{} pauses, {} partitions; slowest recovery {} ticks",
        totals.leaders_elected, totals.chosen, totals.reads_released,
        totals.follower_reads_released, totals.snapshots_installed,
        totals.membership_changes, totals.transfers, totals.transfers_completed,
        totals.crashes, totals.pauses, totals.partitions, totals.liveness_ticks);
  };
  return RunSeeds(settings, run, describe, summarize);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Deterministic simulator for Synod's Raft, single-decree Paxos and Multi-Paxos cores"};
  Settings settings;
  settings.jobs = std::max(1u, std::thread::hardware_concurrency());
  std::optional<uint64_t> single_seed;
  std::optional<uint64_t> ticks;
  std::optional<uint64_t> liveness_ticks;
  app.add_option("--protocol", settings.protocol,
                 "raft, paxos (single-decree) or multipaxos")
      ->check(CLI::IsMember({"raft", "paxos", "multipaxos"}))
      ->default_val("raft");
  app.add_option("--seeds", settings.seeds, "Run this many seeds, from --first-seed on");
  app.add_option("--first-seed", settings.first_seed, "The first seed of --seeds")->default_val(1);
  app.add_option("--seed", single_seed, "Run (replay) just this seed");
  app.add_option("--faults", settings.faults_spec,
                 "all, none, or a comma-separated list of: loss, duplicate, delay, partition, "
                 "crash, pause, slow, membership, transfer, disk (paxos uses the first six, "
                 "multipaxos those and membership)")
      ->default_val("all");
  app.add_option("--nodes", settings.nodes,
                 "Voters (raft) or nodes (paxos, multipaxos) at start: 3, 5 or 7; 0 lets each seed choose")
      ->check(CLI::IsMember({0, 3, 5, 7}))
      ->default_val(0);
  app.add_option("--ticks", ticks,
                 "Ticks of the safety phase (with faults); default 1000 for raft, 300 for paxos, "
                 "500 for multipaxos")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--liveness-ticks", liveness_ticks,
                 "Ticks the cluster may take to recover once faults stop; default 500 for raft, "
                 "300 for paxos and multipaxos")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--jobs", settings.jobs, "Seeds run in parallel")->check(CLI::Range(1u, 256u));
  app.add_flag("--trace", settings.trace, "Print a readable trace of the run (with --seed)");
  app.add_flag("--verbose", settings.verbose, "Print one line per seed, passing or not");
  app.add_flag("--stop-on-failure", settings.stop_on_failure, "Stop at the first failing seed");
  CLI11_PARSE(app, argc, argv);

  if (single_seed.has_value() == (settings.seeds > 0)) {
    std::cerr << "synod-sim: give either --seeds N or --seed S\n";
    return 2;
  }
  if (settings.trace && !single_seed.has_value()) {
    std::cerr << "synod-sim: --trace replays one seed; use it with --seed S\n";
    return 2;
  }
  synod::Result<synod::sim::FaultSet> faults = synod::sim::ParseFaults(settings.faults_spec);
  if (!faults.ok()) {
    std::cerr << "synod-sim: " << faults.status().message() << "\n";
    return 2;
  }
  settings.faults = *faults;
  const bool paxos = settings.protocol == "paxos";
  const bool multipaxos = settings.protocol == "multipaxos";
  settings.ticks = ticks.value_or(paxos ? 300 : multipaxos ? 500 : 1000);
  settings.liveness_ticks = liveness_ticks.value_or(paxos || multipaxos ? 300 : 500);
  if (single_seed.has_value()) {
    settings.single_seed = true;
    settings.first_seed = *single_seed;
    settings.seeds = 1;
    settings.jobs = 1;
  }
  if (paxos) return RunPaxos(settings);
  if (multipaxos) return RunMultiPaxos(settings);
  return RunRaft(settings);
}
