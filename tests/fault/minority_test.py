"""A member cut off from the majority never acknowledges a write and never serves a stale
linearizable read (no split brain), on 3 real members. SIGSTOP freezes members, which to the
others is the same as a network partition around them.

1. Minority: both followers are frozen, so the leader is alone. A put and a linearizable get
   sent to it must fail (etcd's errors, within the request timeout), never succeed; a
   serializable get may answer from its local (possibly stale) state, which is what
   serializable means. After the followers resume, the cluster serves writes again.
2. Deposed leader: the leader is frozen while the other two elect a new leader and overwrite a
   key. When the old leader resumes it still believes it leads; a linearizable get sent to it at
   that moment must not return the old value: ReadIndex needs a quorum's heartbeat answers,
   which depose it instead.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402
import grpc  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402

# Generous: the member's request timeout is 5 s plus two election timeouts.
CLIENT_TIMEOUT_S = 12


def put(member, key, value):
    return member.client.kvstub.Put(etcdrpc.PutRequest(key=key, value=value), CLIENT_TIMEOUT_S)


def get(member, key, serializable=False):
    return member.client.kvstub.Range(etcdrpc.RangeRequest(key=key, serializable=serializable),
                                      CLIENT_TIMEOUT_S)


def expect_failure(call, what):
    started = time.monotonic()
    try:
        response = call()
    except grpc.RpcError as error:
        print(f"minority test: {what} failed after {time.monotonic() - started:.1f} s: "
              f"{error.code().name} {error.details()}")
        assert error.code() != grpc.StatusCode.DEADLINE_EXCEEDED, \
            f"{what}: no answer at all within {CLIENT_TIMEOUT_S} s"
        return
    raise AssertionError(f"{what} succeeded on a member without a quorum after "
                         f"{time.monotonic() - started:.1f} s: {response}")


def wait_until_stopped(member):
    """SIGSTOP takes effect asynchronously; /proc says when every thread has stopped."""
    for _ in range(200):
        with open(f"/proc/{member.process.pid}/stat") as stat:
            if stat.read().split(") ", 1)[1].startswith("T"):
                return
        time.sleep(0.01)
    raise AssertionError(f"{member.name} did not stop")


def wait_for_new_leader(cluster, old, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for member in cluster.members:
            if member is old:
                continue
            try:
                status = cluster.status(member)
            except Exception:
                continue
            if status.leader not in (0, old.member_id):
                return next(m for m in cluster.members if m.member_id == status.leader)
        time.sleep(0.05)
    raise AssertionError("the majority elected no new leader")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    base_dir = tempfile.mkdtemp(prefix="synod-minority-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port, engine=args.engine)
    frozen = []
    try:
        cluster.start_all()
        leader = cluster.wait_for_leader()
        for member in cluster.members:
            member.member_id = cluster.status(member).header.member_id
        put(leader, b"x", b"1")

        # 1. The leader alone.
        followers = [m for m in cluster.members if m is not leader]
        for member in followers:
            member.process.send_signal(signal.SIGSTOP)
            frozen.append(member)
        for member in followers:
            wait_until_stopped(member)
        print(f"minority test: {leader.name} (term {cluster.status(leader).raftTerm}) isolated")
        expect_failure(lambda: put(leader, b"x", b"lost"), "a put to the isolated leader")
        expect_failure(lambda: get(leader, b"x"), "a linearizable get on the isolated leader")
        local = get(leader, b"x", serializable=True)
        assert local.kvs[0].value == b"1", local
        for member in followers:
            member.process.send_signal(signal.SIGCONT)
        frozen.clear()
        leader = cluster.wait_for_leader()
        put(leader, b"x", b"2")
        value = get(leader, b"x").kvs[0].value
        # The failed put's outcome was unknown to its client; it may have been applied before
        # the put of "2" but never after it.
        assert value == b"2", value
        print("minority test: the isolated leader refused both; the cluster works again")

        # 2. A deposed leader that does not know it yet.
        old = cluster.wait_for_leader()
        old.process.send_signal(signal.SIGSTOP)
        frozen.append(old)
        wait_until_stopped(old)
        new = wait_for_new_leader(cluster, old)
        put(new, b"x", b"3")
        results = []

        def read_on_old():
            try:
                results.append(get(old, b"x").kvs[0].value)
            except grpc.RpcError as error:
                results.append(error)

        reader = threading.Thread(target=read_on_old)
        reader.start()  # Queued in the frozen member's socket until it resumes.
        time.sleep(0.2)
        old.process.send_signal(signal.SIGCONT)
        frozen.clear()
        reader.join()
        result = results[0]
        if isinstance(result, grpc.RpcError):
            print(f"minority test: the deposed leader answered the read with an error: "
                  f"{result.code().name} {result.details()}")
        else:
            assert result == b"3", f"stale read from a deposed leader: x={result!r}, not b'3'"
            print("minority test: the deposed leader's linearizable read saw the new value")

        # 3. A member that has just restarted has not heard the leader yet: a write and a
        # linearizable read sent to it at once wait for the leader (as etcd's do) and succeed.
        leader = cluster.wait_for_leader()
        restarted = next(m for m in cluster.members if m is not leader)
        for round_number in range(3):
            cluster.kill(restarted)
            restarted.client.close()
            cluster.start(restarted)
            value = f"restart-{round_number}".encode()
            put(restarted, b"x", value)
            got = get(restarted, b"x").kvs[0].value
            assert got == value, f"read {got!r} through {restarted.name} after writing {value!r}"
        print(f"minority test: writes and reads through {restarted.name} right after each of 3 "
              "restarts succeeded")
        print("minority test: passed")
    except Exception:
        for member in cluster.members:
            print(f"--- {member.name} log tail:\n{cluster.log_tail(member)}")
        raise
    finally:
        for member in frozen:
            member.process.send_signal(signal.SIGCONT)
        cluster.stop_all()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
