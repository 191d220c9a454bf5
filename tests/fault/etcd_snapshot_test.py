"""etcd snapshots both ways: synod -> etcd, synod -> synod, etcd -> synod (real processes).

A 3-member synod cluster gets puts, overwrites, deletes (one key and a range), a transaction, a
value big enough for bolt overflow pages, a lease-bound key and a compaction, then more writes.
Then:
  1. `etcdctl snapshot save` from synod; `etcdctl snapshot status` shows synod's revision and the
     key count the history implies (every revision kept by the compaction, plus etcd's meta,
     lease, member and cluster keys);
  2. `etcdctl snapshot restore` and a real etcd 3.4 started on it serve the same kvs (key, value,
     create/mod revision, version, lease) at the current revision and at an older one, refuse
     the compacted revisions, and list the lease with its key;
  3. `synod snapshot restore` for 3 new members, started as a new cluster, serve the same and
     accept writes at the next revision; and the same with `--engine multipaxos` (issue 7);
  4. a snapshot saved from that etcd, with one more key, restored into a new synod member, serves
     etcd's data;
  5. wrong files: a flipped byte fails the SHA-256 check (synod with etcdctl's message, as
     etcdctl does) and creates nothing; an existing data dir is refused untouched; and a value
     altered under --skip-hash-check is caught by the comparison this test relies on.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402

ETCD_CLIENT_PORT = 24790
ETCD_PEER_PORT = 24791
MARKER = "marker-value-0123456789"


def etcdctl(endpoint_port, *args, check=True, stdin=None):
    result = subprocess.run(["etcdctl", f"--endpoints=127.0.0.1:{endpoint_port}", *args],
                            env=dict(os.environ, ETCDCTL_API="3"), input=stdin,
                            capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def get_all(port, revision=None):
    """(header revision, kvs) of every key, as etcdctl get --prefix -w json prints them."""
    args = ["get", "", "--prefix", "-w", "json"]
    if revision is not None:
        args.append(f"--rev={revision}")
    out = json.loads(etcdctl(port, *args).stdout)
    kvs = [{"key": base64.b64decode(kv["key"]).decode(),
            "value": base64.b64decode(kv.get("value", "")).decode(),
            "create_revision": kv["create_revision"], "mod_revision": kv["mod_revision"],
            "version": kv["version"], "lease": kv.get("lease", 0)} for kv in out.get("kvs", [])]
    return out["header"]["revision"], kvs


def differences(expected, got):
    """What differs between two get_all results (ids in headers are never compared)."""
    problems = []
    if expected[0] != got[0]:
        problems.append(f"revision {got[0]}, expected {expected[0]}")
    expected_kvs = {kv["key"]: kv for kv in expected[1]}
    got_kvs = {kv["key"]: kv for kv in got[1]}
    for key in sorted(set(expected_kvs) | set(got_kvs)):
        if expected_kvs.get(key) != got_kvs.get(key):
            problems.append(f"{key}: {got_kvs.get(key)}, expected {expected_kvs.get(key)}")
    return problems


def wait_serving(port, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if etcdctl(port, "get", "probe", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing serves on port {port} after {timeout_s} s")


def expect_compacted(port, revision):
    result = etcdctl(port, "get", "k", f"--rev={revision}", check=False)
    assert result.returncode != 0 and "required revision has been compacted" in result.stderr, \
        (port, revision, result.stdout, result.stderr)


def expect_restored(port, original, older, compact_revision, lease):
    """The server on `port` serves the source's data: every key now and just after the
    compaction, nothing before it, and the lease with its key."""
    now = differences(original, get_all(port))
    assert not now, now
    then = differences(older, get_all(port, compact_revision + 1))
    assert not then, then
    expect_compacted(port, compact_revision - 1)
    ttl = etcdctl(port, "lease", "timetolive", lease, "--keys").stdout
    assert "attached keys([leased])" in ttl, ttl


def expected_key_rows(history, compact_revision):
    """The rows etcd's "key" bucket keeps: everything after the compaction, and each key's newest
    revision at or before it unless that is a delete (mvcc/key_index.go compact)."""
    rows = 0
    for revisions in history.values():
        kept_before = [r for r in revisions if r[0] <= compact_revision]
        rows += sum(1 for r in revisions if r[0] > compact_revision)
        if kept_before and not kept_before[-1][1]:
            rows += 1
    return rows


def synod_restore(binary, snapshot, cluster, member, *extra):
    return subprocess.run([binary, "snapshot", "restore", snapshot, "--name", member.name,
                           "--data-dir", member.data_dir,
                           "--initial-cluster", cluster.initial_cluster,
                           "--initial-advertise-peer-urls", member.peer_url, *extra],
                          capture_output=True, text=True, timeout=60)


def restored_cluster(binary, snapshot, base_dir, size, base_port, *extra, engine=None):
    cluster = Cluster(binary, base_dir, size, base_port=base_port, engine=engine)
    engine_flags = [] if engine is None else ["--engine", engine]
    for member in cluster.members:
        result = synod_restore(binary, snapshot, cluster, member, *extra, *engine_flags)
        assert result.returncode == 0, result.stdout + result.stderr
    print(f"etcd snapshot test: {result.stdout.strip()}")
    cluster.start_all()
    cluster.wait_for_leader()
    return cluster


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    parser.add_argument("--base-port", type=int, default=23790)
    args = parser.parse_args()
    started = time.monotonic()
    base_dir = tempfile.mkdtemp(prefix="synod-etcd-snapshot-")
    clusters = []
    etcd = None
    try:
        source = Cluster(args.binary, os.path.join(base_dir, "source"), 3,
                         base_port=args.base_port)
        os.makedirs(source.base_dir)
        clusters.append(source)
        source.start_all()
        port = source.wait_for_leader().client_port

        # The workload; `history` mirrors what the store keeps: key -> [(revision, deleted)].
        history = {}
        revision = 1

        def wrote(*changes):
            nonlocal revision
            revision += 1
            for key, deleted in changes:
                history.setdefault(key, []).append((revision, deleted))

        for i in range(30):
            etcdctl(port, "put", f"k/{i:02d}", f"v{i}")
            wrote((f"k/{i:02d}", False))
        for i in range(0, 30, 3):
            etcdctl(port, "put", f"k/{i:02d}", f"again{i}")
            wrote((f"k/{i:02d}", False))
        etcdctl(port, "del", "k/01")
        wrote(("k/01", True))
        etcdctl(port, "del", "k/20", "k/23")  # k/20, k/21, k/22 in one revision.
        wrote(("k/20", True), ("k/21", True), ("k/22", True))
        # Overflow pages in the bolt file; etcdctl reads a value this long from stdin.
        etcdctl(port, "put", "big", stdin=MARKER + "x" * 300000)
        wrote(("big", False))
        lease = etcdctl(port, "lease", "grant", "900").stdout.split()[1]
        etcdctl(port, "put", "leased", "held", f"--lease={lease}")
        wrote(("leased", False))
        compact_revision = revision
        etcdctl(port, "put", "k/05", "before-compaction")
        wrote(("k/05", False))
        etcdctl(port, "compact", str(compact_revision))
        # No compares; success: three changes in one revision; no failure branch.
        etcdctl(port, "txn", stdin="\nput t/a 1\nput t/b 2\ndel k/02\n\n\n")
        wrote(("t/a", False), ("t/b", False), ("k/02", True))
        etcdctl(port, "put", "k/10", "after-compaction")
        wrote(("k/10", False))
        original = get_all(port)
        assert original[0] == revision, (original[0], revision)
        older = get_all(port, compact_revision + 1)

        # 1. etcdctl snapshot save from synod, and status.
        snapshot = os.path.join(base_dir, "synod.db")
        etcdctl(port, "snapshot", "save", snapshot)
        status = json.loads(subprocess.run(["etcdctl", "snapshot", "status", "-w", "json",
                                            snapshot], capture_output=True, text=True,
                                           check=True).stdout)
        # key rows + lease + meta (consistent_index, finished/scheduledCompactRev) + 3 members
        # + clusterVersion.
        expected_keys = expected_key_rows(history, compact_revision) + 1 + 3 + 3 + 1
        assert status["revision"] == revision, status
        assert status["totalKey"] == expected_keys, (status, expected_keys)
        print(f"etcd snapshot test: etcdctl snapshot status: revision {status['revision']}, "
              f"{status['totalKey']} keys, {status['totalSize']} bytes")

        # 2. synod -> etcd.
        etcd_dir = os.path.join(base_dir, "e0.etcd")
        etcd_peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        result = subprocess.run(["etcdctl", "snapshot", "restore", snapshot, "--name", "e0",
                                 "--data-dir", etcd_dir, "--initial-cluster", f"e0={etcd_peer}",
                                 "--initial-advertise-peer-urls", etcd_peer],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        etcd_log = open(os.path.join(base_dir, "e0.log"), "wb")
        etcd = subprocess.Popen(
            [args.etcd, "--name", "e0", "--data-dir", etcd_dir,
             "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
             "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT_PORT}",
             "--listen-peer-urls", etcd_peer, "--initial-advertise-peer-urls", etcd_peer,
             "--initial-cluster", f"e0={etcd_peer}"], stdout=etcd_log, stderr=etcd_log)
        etcd_log.close()
        wait_serving(ETCD_CLIENT_PORT)
        expect_restored(ETCD_CLIENT_PORT, original, older, compact_revision, lease)
        print(f"etcd snapshot test: etcd restored from synod's snapshot serves the same "
              f"{len(original[1])} keys at revision {original[0]} and the leased key")

        # 3. synod -> synod, 3 new members, on each engine (the port of a follower, on
        # multipaxos, so the reads also go through a follower's ReadIndex).
        for engine, port_offset, through in (("raft", 10, 0), ("multipaxos", 40, 1)):
            restored = restored_cluster(args.binary, snapshot, os.path.join(base_dir, engine), 3,
                                        args.base_port + port_offset, engine=engine)
            clusters.append(restored)
            restored_port = restored.members[through].client_port
            expect_restored(restored_port, original, older, compact_revision, lease)
            put = json.loads(etcdctl(restored_port, "put", "new", "1", "-w", "json").stdout)
            assert put["header"]["revision"] == revision + 1, put
            print(f"etcd snapshot test: 3 synod members on {engine} restored from synod's "
                  "snapshot serve the same data and take writes")

        # 4. etcd -> synod.
        etcdctl(ETCD_CLIENT_PORT, "put", "from-etcd", "yes")
        etcd_data = get_all(ETCD_CLIENT_PORT)
        etcd_snapshot = os.path.join(base_dir, "etcd.db")
        etcdctl(ETCD_CLIENT_PORT, "snapshot", "save", etcd_snapshot)
        from_etcd = restored_cluster(args.binary, etcd_snapshot,
                                     os.path.join(base_dir, "from-etcd"), 1, args.base_port + 20)
        clusters.append(from_etcd)
        from_etcd_differences = differences(etcd_data, get_all(from_etcd.members[0].client_port))
        assert not from_etcd_differences, from_etcd_differences
        print(f"etcd snapshot test: a synod member restored from etcd's snapshot serves etcd's "
              f"{len(etcd_data[1])} keys at revision {etcd_data[0]}")

        # 5. Wrong files.
        with open(snapshot, "rb") as f:
            data = bytearray(f.read())
        marker_at = data.find(MARKER.encode())
        assert marker_at > 0
        data[marker_at] ^= 0x01  # "marker" -> "larker": a wrong value, a wrong hash.
        damaged = os.path.join(base_dir, "damaged.db")
        with open(damaged, "wb") as f:
            f.write(data)
        wrong = Cluster(args.binary, os.path.join(base_dir, "wrong"), 1,
                        base_port=args.base_port + 30)
        member = wrong.members[0]
        os.makedirs(wrong.base_dir)
        result = synod_restore(args.binary, damaged, wrong, member)
        assert result.returncode != 0 and "expected sha256" in result.stderr, result
        assert not os.listdir(wrong.base_dir), os.listdir(wrong.base_dir)
        etcd_result = subprocess.run(["etcdctl", "snapshot", "restore", damaged, "--data-dir",
                                      os.path.join(base_dir, "never.etcd")],
                                     capture_output=True, text=True)
        assert etcd_result.returncode != 0
        assert result.stderr.strip() in etcd_result.stderr, (result.stderr, etcd_result.stderr)
        print(f"etcd snapshot test: a flipped byte is refused, as etcdctl refuses it: "
              f"{result.stderr.strip()[:60]}...")
        result = synod_restore(args.binary, snapshot, restored, restored.members[0])
        assert result.returncode != 0 and "exists" in result.stderr, result
        assert not differences((0, original[1]), (0, get_all(restored_port, revision)[1])), \
            "the refused restore changed the data dir"
        result = synod_restore(args.binary, damaged, wrong, member, "--skip-hash-check")
        assert result.returncode == 0, result.stderr
        wrong.start_all()
        wrong.wait_for_leader()
        clusters.append(wrong)
        caught = differences(original, get_all(member.client_port))
        assert caught and all(line.startswith("big:") for line in caught), caught
        print("etcd snapshot test: the comparison catches the value altered under "
              "--skip-hash-check")
        print(f"etcd snapshot test: passed in {time.monotonic() - started:.1f} s")
    except Exception:
        for cluster in clusters:
            for member in cluster.members:
                print(f"--- {cluster.base_dir} {member.name} log tail:\n"
                      f"{cluster.log_tail(member)}")
        raise
    finally:
        for cluster in clusters:
            cluster.stop_all()
        if etcd is not None:
            etcd.terminate()
            etcd.wait(timeout=10)
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
