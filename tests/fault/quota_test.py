"""The space quota on 3 real members (etcd's --quota-backend-bytes and NOSPACE alarm).

Puts of 64 KiB fill a 3 MiB quota. Checks: the put that would pass the quota fails with etcd's
RESOURCE_EXHAUSTED "etcdserver: mvcc: database space exceeded"; `etcdctl alarm list` on every
member shows the replicated NOSPACE alarm; every member then refuses puts and lease grants but
serves reads, deletes and compaction; no acknowledged put is lost; after deleting, compacting,
defragmenting and `etcdctl alarm disarm`, puts work again.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402
import grpc  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402

NO_SPACE = "etcdserver: mvcc: database space exceeded"


def etcdctl(cluster, *args, member=None):
    members = [member] if member else cluster.members
    endpoints = ",".join(f"127.0.0.1:{m.client_port}" for m in members)
    result = subprocess.run(["etcdctl", f"--endpoints={endpoints}", *args],
                            env=dict(os.environ, ETCDCTL_API="3"),
                            capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def put(member, key, value):
    return member.client.kvstub.Put(etcdrpc.PutRequest(key=key.encode(), value=value), 10)


def expect_no_space(call, what):
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (what, error)
        assert error.details() == NO_SPACE, (what, error.details())
        return
    raise AssertionError(f"{what} succeeded while NOSPACE is raised")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    quota = 3 << 20
    base_dir = tempfile.mkdtemp(prefix="synod-quota-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port,
                      extra_flags=["--quota-backend-bytes", str(quota)], engine=args.engine)
    try:
        cluster.start_all()
        # The puts go to every member in turn; one that has not heard the leader within its
        # wait (an election timeout) answers "no leader" instead of the quota's error.
        cluster.wait_until_every_member_knows_leader()
        value = b"v" * (64 << 10)
        acknowledged = []
        refused = None
        for i in range(200):
            key = f"fill/{i:04d}"
            try:
                put(cluster.members[i % 3], key, value)
                acknowledged.append(key)
            except grpc.RpcError as error:
                refused = error
                break
        assert refused is not None, "200 puts of 64 KiB never reached a 3 MiB quota"
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
        assert refused.details() == NO_SPACE, refused.details()
        print(f"quota test: {len(acknowledged)} puts of 64 KiB acknowledged, then: "
              f"{refused.details()}")

        for member in cluster.members:
            code, out = etcdctl(cluster, "alarm", "list", member=member)
            assert code == 0 and "alarm:NOSPACE" in out, (member.name, out)
        print(f"quota test: every member lists the alarm: {out.strip()}")
        for member in cluster.members:
            expect_no_space(lambda: put(member, "more", b"x"), f"put on {member.name}")
            expect_no_space(lambda: member.client.leasestub.LeaseGrant(
                etcdrpc.LeaseGrantRequest(TTL=60), 10), f"lease grant on {member.name}")
        for key in acknowledged:
            got = cluster.members[0].client.kvstub.Range(etcdrpc.RangeRequest(key=key.encode()), 10)
            assert len(got.kvs) == 1 and got.kvs[0].value == value, f"{key} lost"

        # Free space: delete, compact, defragment every member, then disarm.
        deleted = cluster.members[1].client.kvstub.DeleteRange(
            etcdrpc.DeleteRangeRequest(key=b"fill/", range_end=b"fill0"), 10)
        assert deleted.deleted == len(acknowledged), deleted
        cluster.members[2].client.kvstub.Compact(
            etcdrpc.CompactionRequest(revision=deleted.header.revision, physical=True), 10)
        code, out = etcdctl(cluster, "defrag")
        assert code == 0, out
        code, out = etcdctl(cluster, "alarm", "disarm")
        assert code == 0 and "alarm:NOSPACE" in out, out
        code, out = etcdctl(cluster, "alarm", "list")
        assert code == 0 and out.strip() == "", out
        put(cluster.members[0], "after", b"disarmed")
        print("quota test: after delete, compact, defrag and disarm, puts work again")
        print("quota test: passed")
    except Exception:
        for member in cluster.members:
            print(f"--- {member.name} log tail:\n{cluster.log_tail(member)}")
        raise
    finally:
        cluster.stop_all()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
