"""synod-bench against a real 1-member synod: every workload runs briefly with --json, and the
counts it reports agree with what the server holds afterwards (checked with etcdctl 3.4).

- put: --total N gives N successes, no errors, and the N keys exist;
- range l and s: all succeed; an open-loop run (--rate) cannot end before its last intended time;
- txn-put: successes + compare failures == total, and the keys' versions add up to the
  successful compare-and-swaps (each made exactly one put);
- mixed: ranges and puts add up to the total;
- watch: every watcher saw every acknowledged put;
- lease-keepalive: every keepalive answered, and the leases are revoked afterwards;
- a run where every request fails (nothing listening) exits non-zero naming the error.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402


class Bench:
    def __init__(self, binary, endpoint):
        self.binary = binary
        self.endpoint = endpoint

    def run(self, workload, *flags, expect_exit=0, endpoint=None):
        command = [self.binary, workload, "--endpoints", endpoint or self.endpoint, "--json",
                   *flags]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == expect_exit, (command, result.returncode, result.stderr)
        summary = json.loads(result.stdout)
        print(f"{workload} {' '.join(flags)}: {summary['succeeded']} succeeded, "
              f"{summary['failed']} failed, {summary['requests_per_s']:.0f}/s", flush=True)
        return summary, result.stderr


def etcdctl_json(endpoint, *args):
    command = ["etcdctl", f"--endpoints={endpoint}", "-w", "json", *args]
    result = subprocess.run(command, env=dict(os.environ, ETCDCTL_API="3"), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return json.loads(result.stdout)


def expect_clean(summary, total):
    assert summary["total"] == total, summary
    assert summary["succeeded"] == total, summary
    assert summary["failed"] == 0 and summary["errors"] == {}, summary
    assert summary["latency_ms"]["max"] > 0, summary


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    args = parser.parse_args()
    base_dir = tempfile.mkdtemp(prefix="synod-bench-")
    cluster = Cluster(args.binary, base_dir, 1, base_port=args.base_port)
    try:
        cluster.start_all()
        cluster.wait_for_leader()
        endpoint = f"127.0.0.1:{cluster.members[0].client_port}"
        bench = Bench(args.bench, endpoint)

        summary, _ = bench.run("put", "--total", "2000", "--conns", "4", "--clients", "50",
                               "--sequential-keys", "--key-space-size", "2000",
                               "--key-prefix", "put/", "--key-size", "12", "--val-size", "64")
        expect_clean(summary, 2000)
        # etcdctl 3.4 has no --count-only; the JSON of a keys-only range carries the count.
        assert etcdctl_json(endpoint, "get", "put/", "--prefix", "--keys-only")["count"] == 2000

        for consistency in ("l", "s"):
            summary, _ = bench.run("range", "--consistency", consistency, "--total", "1000",
                                   "--clients", "20", "--key-space-size", "2000",
                                   "--key-prefix", "put/", "--key-size", "12")
            expect_clean(summary, 1000)
        # Open loop: 400 requests intended over 0.8 s (the last at 0.7975 s).
        summary, _ = bench.run("range", "--rate", "500", "--total", "400", "--clients", "10",
                               "--key-prefix", "put/", "--key-size", "12")
        expect_clean(summary, 400)
        assert summary["duration_s"] >= 0.79, summary

        summary, _ = bench.run("txn-put", "--total", "1000", "--clients", "20",
                               "--key-space-size", "10", "--key-prefix", "cas/", "--key-size", "6")
        expect_clean(summary, 1000)
        swaps = summary["txn"]["compare_succeeded"]
        assert swaps + summary["txn"]["compare_failed"] == 1000, summary
        assert swaps > 0, summary
        kvs = etcdctl_json(endpoint, "get", "cas/", "--prefix")["kvs"]
        assert sum(kv["version"] for kv in kvs) == swaps, (kvs, summary)

        summary, _ = bench.run("mixed", "--read-ratio", "0.5", "--total", "1000",
                               "--clients", "20", "--key-space-size", "100",
                               "--key-prefix", "mix/", "--key-size", "8")
        expect_clean(summary, 1000)
        operations = summary["operations"]
        assert operations["put"]["count"] + operations["range"]["count"] == 1000, summary
        assert operations["put"]["count"] > 0 and operations["range"]["count"] > 0, summary

        summary, _ = bench.run("watch", "--watchers", "20", "--streams", "4", "--total", "300",
                               "--rate", "300", "--clients", "4", "--key-prefix", "watch/",
                               "--key-space-size", "300", "--key-size", "10")
        expect_clean(summary, 300)
        assert summary["watch"]["events_expected"] == 20 * 300, summary
        assert summary["watch"]["events_delivered"] == 20 * 300, summary
        assert summary["watch"]["events_unexpected"] == 0, summary

        summary, _ = bench.run("lease-keepalive", "--leases", "20", "--streams", "4",
                               "--total", "500")
        expect_clean(summary, 500)
        assert etcdctl_json(endpoint, "lease", "list").get("leases", []) == [], "leases left"

        # Nothing listens on the peer port's neighbour: every request fails.
        dead = f"127.0.0.1:{args.base_port + 10}"
        summary, stderr = bench.run("put", "--total", "50", "--clients", "5", endpoint=dead,
                                    expect_exit=1)
        assert summary["succeeded"] == 0 and summary["failed"] == 50, summary
        assert "UNAVAILABLE" in summary["errors"], summary
        assert "every request failed" in stderr and "UNAVAILABLE" in stderr, stderr
        print("bench_test: passed")
    finally:
        cluster.stop_all()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
