"""A wall-clock step on one member must not stall it: its timeouts run on the monotonic clock.

libfaketime steps m0's CLOCK_REALTIME (CLOCK_MONOTONIC untouched, as NTP leaves it), and the
clock-step shim (tests/nemesis/clock_step_shim.cc) moves the process's absolute realtime futex
waits with it, so that m0 sees what a real step shows a process. Without the shim this test
fails: Abseil's timed waits, which gRPC's timers use, then sleep the whole jump too long. That
artefact, not synod, was behind the leaderless windows of a 30-minute nemesis run.

Scenario: m1 and m2 are killed, so m0's senders to them sit in reconnect backoff; m0's wall
clock jumps forward by JUMP_S; m1 restarts. m0 and m1 form a majority only if m0 reconnects to
m1, which must take about the reconnect backoff, not the jump. A put must succeed within
PROGRESS_BOUND_S of m1's restart. Then the same with a backward jump.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402

FAKETIME_PRELOAD = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
JUMP_S = 120
# Election timeout 1 s, reconnect backoff of at most a few seconds: 20 s is generous, and far
# below the jump.
PROGRESS_BOUND_S = 20


class ClockJumpCluster(Cluster):
    """m0 runs under libfaketime, its wall-clock offset read from a file we rewrite."""

    def __init__(self, binary, shim, base_dir, engine=None):
        super().__init__(binary, base_dir, 3, engine=engine)
        self.shim = shim
        self.clock_file = os.path.join(base_dir, "m0.clock")
        self.set_m0_clock_offset(0)

    def set_m0_clock_offset(self, offset_s):
        with open(self.clock_file, "w") as out:
            out.write(f"{offset_s:+d}s\n" if offset_s else "+0\n")

    def command(self, member):
        command = super().command(member)
        if member.index != 0:
            return command
        return ["env", f"LD_PRELOAD={self.shim} {FAKETIME_PRELOAD}",
                f"FAKETIME_TIMESTAMP_FILE={self.clock_file}", "FAKETIME_DONT_FAKE_MONOTONIC=1",
                "FAKETIME_CACHE_DURATION=1"] + command


def put_within(member, key, value, bound_s):
    """Retries the put until it succeeds; returns how long that took, or fails at the bound."""
    started = time.monotonic()
    last_error = None
    while time.monotonic() - started < bound_s:
        try:
            member.client.kvstub.Put(etcdrpc.PutRequest(key=key, value=value), 2)
            return time.monotonic() - started
        except Exception as error:  # noqa: BLE001 - any failure is retried until the bound
            last_error = error
            time.sleep(0.1)
    raise AssertionError(f"no put succeeded within {bound_s} s of the restart "
                         f"(last error: {last_error})")


def run_round(cluster, offset_s, round_name):
    m0, m1, m2 = cluster.members
    cluster.kill(m1)
    cluster.kill(m2)
    # Let m0's senders to m1 and m2 fail and enter reconnect backoff before the clock moves.
    time.sleep(3)
    cluster.set_m0_clock_offset(offset_s)
    # libfaketime rereads the file at most once a second (FAKETIME_CACHE_DURATION=1).
    time.sleep(2)
    cluster.start(m1)
    took = put_within(m0, b"clock-jump/" + round_name.encode(), b"v", PROGRESS_BOUND_S)
    print(f"clock jump test: {round_name} ({offset_s:+d} s on m0): a put through m0 succeeded "
          f"{took:.1f} s after m1 restarted")
    cluster.start(m2)
    cluster.wait_for_leader()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--clock-step-shim", required=True, help="synod-clock-step-shim's .so")
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    if not os.path.exists(FAKETIME_PRELOAD):
        sys.exit(f"clock jump test: {FAKETIME_PRELOAD} is missing (Debian package faketime)")
    base_dir = tempfile.mkdtemp(prefix="synod-clock-jump-")
    cluster = ClockJumpCluster(args.binary, args.clock_step_shim, base_dir, args.engine)
    passed = False
    try:
        cluster.start_all()
        cluster.wait_for_leader()
        put_within(cluster.members[0], b"clock-jump/start", b"v", PROGRESS_BOUND_S)
        run_round(cluster, JUMP_S, "forward")
        run_round(cluster, -JUMP_S, "backward")
        passed = True
    finally:
        cluster.stop_all()
        if passed:
            shutil.rmtree(base_dir, ignore_errors=True)
        else:
            print(f"clock jump test: logs kept in {base_dir}")
    print("clock jump test: passed")


if __name__ == "__main__":
    main()
