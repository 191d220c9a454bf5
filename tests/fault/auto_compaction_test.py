"""Automatic compaction on 3 real members (etcd's --auto-compaction-retention, periodic mode).

With a retention of 2 s, the leader compacts by itself about every 2 s, at the revision of about
2 s before. Checks, while a writer puts a key every 100 ms for 8 s:
- a revision written 1 s ago is still readable on every member (compaction keeps the whole
  retention period);
- by the end, the first revisions are compacted on every member: a Range at revision 2 fails
  with etcd's OUT_OF_RANGE "etcdserver: mvcc: required revision has been compacted", and the
  history still holds the newest value.
- A bad flag value is refused at start with etcd's message.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402
import grpc  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402

COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE = "etcdserver: mvcc: required revision is a future revision"
RETENTION_S = 2.0


def range_at(member, key, revision):
    return member.client.kvstub.Range(
        etcdrpc.RangeRequest(key=key, revision=revision, serializable=True), 5)


def compacted_at(member, revision):
    """True when `member` refuses a read at `revision` as compacted."""
    try:
        range_at(member, b"k", revision)
        return False
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE, error
        if error.details() == FUTURE:
            return False  # A follower that has not applied it yet (serializable read).
        assert error.details() == COMPACTED, error.details()
        return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    args = parser.parse_args()

    refused = subprocess.run([args.binary, "--auto-compaction-mode", "daily",
                              "--auto-compaction-retention", "1"],
                             capture_output=True, text=True, timeout=10)
    assert refused.returncode != 0, refused
    assert 'unknown auto-compaction-mode "daily"' in refused.stderr + refused.stdout, refused

    base_dir = tempfile.mkdtemp(prefix="synod-autocompact-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port,
                      extra_flags=["--auto-compaction-retention", f"{RETENTION_S:g}s"])
    try:
        cluster.start_all()
        cluster.wait_until_every_member_knows_leader()
        writes = []  # (send time, revision)
        checked_recent = 0
        end = time.monotonic() + 8
        i = 0
        while time.monotonic() < end:
            sent = time.monotonic()
            member = cluster.members[i % 3]
            response = member.client.kvstub.Put(
                etcdrpc.PutRequest(key=b"k", value=f"v{i}".encode()), 10)
            writes.append((sent, response.header.revision))
            i += 1
            # Every revision sent less than a second ago stays readable everywhere: the
            # compaction is at a revision sampled at least 2 s before it is proposed.
            now = time.monotonic()
            for sent_at, revision in writes:
                if now - sent_at < RETENTION_S / 2 and sent_at < now - 0.5:
                    for m in cluster.members:
                        assert not compacted_at(m, revision), (
                            f"revision {revision}, sent {now - sent_at:.2f} s ago, compacted "
                            f"on {m.name} with a {RETENTION_S} s retention")
                    checked_recent += 1
                    break
            time.sleep(0.1)
        assert checked_recent > 10, checked_recent

        # By now the leader has compacted at least once, past the first writes.
        deadline = time.monotonic() + 10
        while not all(compacted_at(m, 2) for m in cluster.members):
            assert time.monotonic() < deadline, "revision 2 is still readable after 18 s"
            time.sleep(0.2)
        newest = writes[-1][1]
        for m in cluster.members:
            response = range_at(m, b"k", 0)
            assert response.kvs and response.header.revision >= newest, (m.name, response)
        first_readable = next(r for _, r in writes if not compacted_at(cluster.members[0], r))
        print(f"auto-compaction test: {len(writes)} puts, revisions {writes[0][1]}-{newest}; "
              f"{checked_recent} recent revisions checked readable; revision 2 compacted on "
              f"every member; the oldest readable is {first_readable}")
    finally:
        cluster.stop_all()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
