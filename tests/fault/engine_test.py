"""The server on the multipaxos engine, as an etcdctl user sees it (issue 7 part 3), and the
refusal of a data dir made by the other engine.

1. Three members on --engine multipaxos: a put through every member, then a linearizable get of
   every key through every member (a follower asks the leader for its read index through the
   core's ReadIndex messages); member list through a follower shows every member's name and client URL (each
   publishes them through the engine's log); a lease granted through one follower, kept alive
   through another, attaching a key. (Member changes and move-leader on this engine:
   membership_test.py --engine multipaxos.)
2. A member stopped and started again with --engine raft refuses to start: it exits non-zero,
   says which engine made the dir and which was asked for, and leaves every file of its data dir
   as it was. Started again with --engine multipaxos, it rejoins and serves every key.
"""

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster, etcdctl  # noqa: E402

def tree_digest(directory):
    """A digest of every file's path and bytes under `directory`."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, directory).encode())
            with open(path, "rb") as data:
                digest.update(data.read())
    return digest.hexdigest()


def check_client_api(cluster):
    members = cluster.members
    for member in members:
        etcdctl([member], "put", f"key-{member.name}", f"value-{member.name}")
    for reader in members:
        for writer in members:
            _, output = etcdctl([reader], "get", "--consistency=l", "--print-value-only",
                                f"key-{writer.name}")
            assert output.strip() == f"value-{writer.name}", \
                f"linearizable get of key-{writer.name} through {reader.name}: {output!r}"
    print("engine test: put through every member, linearizable get of every key through every "
          "member: ok")

    leader = cluster.wait_for_leader()
    followers = [m for m in members if m is not leader]
    # Each member publishes its name and client URLs once it knows a leader.
    deadline = time.monotonic() + 10
    while True:
        _, listed = etcdctl([followers[0]], "member", "list")
        rows = [line.split(", ") for line in listed.strip().splitlines()]
        published = {row[2]: row[4] for row in rows}
        if published == {m.name: m.client_url for m in members}:
            break
        assert time.monotonic() < deadline, f"member list after 10 s: {listed}"
        time.sleep(0.1)
    print("engine test: member list shows every member's name and client URL")

    _, granted = etcdctl([followers[0]], "lease", "grant", "60")
    lease = granted.split()[1]
    etcdctl([followers[0]], "put", "--lease", lease, "leased", "yes")
    _, kept = etcdctl([followers[1]], "lease", "keep-alive", "--once", lease)
    assert "keepalived with TTL(60)" in kept, kept
    _, ttl = etcdctl([followers[1]], "lease", "timetolive", "--keys", lease)
    assert "leased" in ttl, ttl
    print("engine test: lease grant, keep-alive and time-to-live through followers: ok")


def check_other_engine_refused(cluster):
    member = cluster.members[-1]
    cluster.kill(member, signal.SIGTERM)
    before = tree_digest(member.data_dir)
    command = cluster.command(member)
    command[command.index("--engine") + 1] = "raft"
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"a multipaxos data dir started as raft: {output}"
    for expected in ("created by the multipaxos engine", "--engine raft", member.data_dir):
        assert expected in output, f"the refusal does not say {expected!r}: {output}"
    assert tree_digest(member.data_dir) == before, "the refused start changed the data dir"
    print(f"engine test: --engine raft on a multipaxos data dir refused (exit "
          f"{result.returncode}), data dir untouched")

    cluster.start(member)
    # Until an election settles (the stopped member led, so the others elect anew) and the
    # restarted member hears the leader's first heartbeat, it answers "no leader", as etcd
    # does between leaders; wait for that as a client would, then read.
    cluster.wait_for_leader()
    cluster.wait_until_knows_leader(member)
    for writer in cluster.members:
        _, output = etcdctl([member], "get", "--consistency=l", "--print-value-only",
                            f"key-{writer.name}")
        assert output.strip() == f"value-{writer.name}", output
    print("engine test: restarted with --engine multipaxos, it serves every key")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    args = parser.parse_args()
    base_dir = tempfile.mkdtemp(prefix="synod-engine-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port, engine="multipaxos")
    failure = None
    try:
        cluster.start_all()
        # The client API checks write through every member; one that has not heard the leader
        # within its wait (an election timeout) answers "no leader".
        cluster.wait_until_every_member_knows_leader()
        check_client_api(cluster)
        check_other_engine_refused(cluster)
    except (AssertionError, subprocess.SubprocessError) as error:
        failure = str(error)
    finally:
        cluster.stop_and_clean_up(failure)
    print("engine test: " + ("FAIL" if failure else "PASS"))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
