"""A follower too far behind for the leader's log catches up from a snapshot (Raft 7).

With --snapshot-count 100 and --experimental-snapshot-catchup-entries 20, a member that is down
while 1,000 puts happen finds the entries it needs compacted away; the leader sends an
InstallSnapshot, the follower pulls the leader's store in checksummed chunks and installs it.
Checks: the member logs the install, then holds exactly the leader's data (HashKV at the same
revision) and serves the latest key. It is then killed with SIGKILL right away and restarted, and
must come back with the same data (its store may be ahead of its log after the install).
With --engine multipaxos the same holds: the leader's catch-up (or its phase 1's promise from the
lagging member) carries its snapshot, which the member pulls the same way. A Multi-Paxos leader
keeps sending accepts to a member that is down, and its transport queues up to 4,096 messages
for it, which a restarted member would receive and so catch up from the log; and a Multi-Paxos
leader keeps at least 8,192 slots behind its snapshot (docs/multipaxos.md): there 10,000 puts
happen, more than either holds.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster, log_shows_within  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402


def hash_at(member, revision, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = member.client.maintenancestub.HashKV(etcdrpc.HashKVRequest(revision=revision), 2)
            if got.header.revision >= revision:
                return got.hash
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{member.name} did not reach revision {revision} in {timeout_s} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    base_dir = tempfile.mkdtemp(prefix="synod-snapshot-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port,
                      extra_flags=["--snapshot-count", "100",
                                   "--experimental-snapshot-catchup-entries", "20"],
                      engine=args.engine)
    failure = None
    try:
        cluster.start_all()
        leader = cluster.wait_for_leader()
        lagging = next(m for m in cluster.members if m is not leader)
        cluster.kill(lagging)
        writer = next(m for m in cluster.members if m.running())
        puts = 10000 if args.engine == "multipaxos" else 1000
        last_key, last_value = f"key{puts - 1:04d}", f"value{puts - 1}"
        for i in range(puts):
            writer.client.put(f"key{i:04d}", f"value{i}")
        revision = writer.client.get_response(last_key).header.revision
        expected = hash_at(writer, revision)

        cluster.start(lagging)
        got = hash_at(lagging, revision)
        if got != expected:
            raise AssertionError(f"after catching up, {lagging.name} hashes {got}, the others "
                                 f"{expected}")
        # The member logs the install just after the new store becomes readable, so a HashKV
        # may answer from it a moment before the line is written.
        if not log_shows_within(lagging.log_path, "installed a snapshot", 5):
            raise AssertionError(f"{lagging.name} caught up without a snapshot; the test "
                                 "did not exercise what it is for")
        value, _ = lagging.client.get(last_key, serializable=True)
        if value != last_value.encode():
            raise AssertionError(f"{lagging.name} serves {last_key}={value!r}")

        cluster.kill(lagging)
        cluster.start(lagging)
        got = hash_at(lagging, revision)
        if got != expected:
            raise AssertionError(f"after a restart, {lagging.name} hashes {got}, expected "
                                 f"{expected}")
        writer.client.put("after", "restart")
        cluster.wait_until_knows_leader(lagging)
        value, _ = lagging.client.get("after")
        if value != b"restart":
            raise AssertionError(f"{lagging.name} did not see a later write: {value!r}")
        print(f"snapshot_catchup_test: {lagging.name} caught up from a snapshot at revision "
              f"{revision} and survived SIGKILL; PASS")
    except Exception as error:  # noqa: BLE001
        # A client's error as well as a failed check: either way the logs are kept and shown.
        failure = f"{type(error).__name__}: {error}"
    finally:
        cluster.stop_and_clean_up(failure, tail_lines=30)
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
