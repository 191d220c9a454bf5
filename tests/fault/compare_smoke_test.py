"""bench/compare --quick runs end to end: it exits 0, and its results have a non-zero throughput
for etcd and synod on each engine (Raft: "synod", Multi-Paxos: "synod-multipaxos") in every workload at every client count, for the empty server's put at every
client count, and server CPU time for both systems' writes; its table names every workload and
it draws the plot. (The figures of a quick run mean nothing; that they exist is the point.)"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

SYSTEMS = ("etcd", "synod", "synod-multipaxos")
WORKLOADS = ("put", "range-l", "range-s", "txn-put")
CLIENT_COUNTS = (1, 16, 128, 1000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", required=True)
    parser.add_argument("--synod", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--empty-server", required=True)
    args = parser.parse_args()
    results_dir = tempfile.mkdtemp(prefix="synod-compare-smoke-")
    command = [sys.executable, args.compare, "--quick", "--results-dir", results_dir,
               "--synod-engines", "raft,multipaxos",
               "--synod", args.synod, "--bench", args.bench, "--empty-server", args.empty_server]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=150)
    print(done.stdout, done.stderr, sep="\n", flush=True)
    assert done.returncode == 0, f"bench/compare exited {done.returncode}"

    with open(os.path.join(results_dir, "results.json")) as results_file:
        results = json.load(results_file)
    medians = {(m["system"], m["workload"], m["clients"]): m for m in results["medians"]}
    expected = [(system, workload, clients) for system in SYSTEMS for workload in WORKLOADS
                for clients in CLIENT_COUNTS]
    expected += [("empty-server", "put", clients) for clients in CLIENT_COUNTS]
    for key in expected:
        assert key in medians, f"no figures for {key}"
        assert medians[key]["requests_per_s"] > 0, f"zero throughput for {key}: {medians[key]}"
    for system in SYSTEMS:
        cpu_s = sum(run["servers_cpu_s"] for run in results["runs"]
                    if run["system"] == system and run["workload"] == "put")
        assert cpu_s > 0, f"no server CPU time measured for {system}'s puts"
    for workload in WORKLOADS:
        assert f"\n{workload} " in done.stdout, f"the table has no row for {workload}"
    for plot in ("compare.png", "compare.svg"):
        assert os.path.getsize(os.path.join(results_dir, plot)) > 0, f"{plot} is empty"
    shutil.rmtree(results_dir)
    print("compare smoke test: figures for etcd, synod on both engines and the empty server",
          flush=True)


if __name__ == "__main__":
    main()
