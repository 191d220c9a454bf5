"""Cluster membership end to end, as an etcdctl user runs it (etcd 3.4's runtime reconfiguration).

Three members start; `etcdctl member list` shows every member's name and client URLs (each
member publishes them through the log). A learner is added with `etcdctl member add --learner`
and started with the --initial-cluster that command printed and --initial-cluster-state
existing: it learns its id and the cluster's from the running cluster, then the configuration
and the member records from the leader (with --join-by snapshot the leader has compacted its log,
so they come in the snapshot it sends). Promotion is refused while the learner lags and succeeds
once it has caught up. The new member serves the keys, and comes back after a SIGKILL with the
identity in its data dir. An old member is removed: its process exits, and when started again it
exits again, refused by the others. Writes still work, and `etcdctl move-leader` hands
leadership to a chosen member, which `etcdctl endpoint status` then shows as leader, and every
remaining member holds the same data (`etcdctl endpoint hashkv` at the last write's revision).
etcd's errors are checked along the way. With --engine multipaxos the same holds on the
Multi-Paxos engine (issue 7), whose configuration changes take effect α slots after their own.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster, Member, etcdctl, log_shows_within  # noqa: E402

def etcdctl_json(endpoints, *args):
    _, output = etcdctl(endpoints, "-w", "json", *args)
    # etcdctl may log warnings (JSON lines) before the answer; the answer is the last line.
    return json.loads(output.strip().splitlines()[-1])


def expect_error(endpoints, message, *args):
    code, output = etcdctl(endpoints, *args, check=False)
    if code == 0 or message not in output:
        raise AssertionError(f"etcdctl {' '.join(args)}: expected {message!r}, got ({code}) "
                             f"{output}")


def wait_until(what, condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last})")


def members_by_name(endpoints):
    listed = etcdctl_json(endpoints, "member", "list")["members"]
    return {m.get("name", ""): m for m in listed}, listed


def leader_id(endpoints):
    statuses = etcdctl_json(endpoints, "endpoint", "status")
    leaders = {s["Status"]["leader"] for s in statuses}
    if len(leaders) != 1 or 0 in leaders:
        raise AssertionError(f"the members do not agree on a leader: {statuses}")
    return leaders.pop()


def check_same_data(members, key):
    """Every member holds the same keyspace at the revision of `key`'s last write."""
    revision = etcdctl_json(members[:1], "get", key)["header"]["revision"]

    def hashes():
        statuses = etcdctl_json(members, "endpoint", "hashkv", "--rev", str(revision))
        if any(s["HashKV"]["header"]["revision"] < revision for s in statuses):
            return False
        return {s["Endpoint"]: s["HashKV"]["hash"] for s in statuses}
    got = wait_until(f"every member reaches revision {revision}", hashes, 10)
    if len(set(got.values())) != 1 or len(got) != len(members):
        raise AssertionError(f"the members disagree at revision {revision}: {got}")
    return revision


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    parser.add_argument("--join-by", choices=["log", "snapshot"], default="log")
    parser.add_argument("--engine", choices=["raft", "multipaxos"], default="raft")
    args = parser.parse_args()
    base_dir = tempfile.mkdtemp(prefix="synod-membership-")
    extra = ["--engine", args.engine]
    if args.join_by == "snapshot":
        extra += ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"]
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port, extra_flags=extra)
    started = time.monotonic()
    failure = None
    try:
        cluster.start_all()
        cluster.wait_for_leader()
        old = list(cluster.members)

        # 1. Every member's name and client URLs, on every member.
        def all_published():
            for member in old:
                by_name, listed = members_by_name([member])
                if len(listed) != 3:
                    return False
                for m in old:
                    if by_name.get(m.name, {}).get("clientURLs") != [m.client_url]:
                        return False
                    if by_name[m.name]["peerURLs"] != [m.peer_url]:
                        return False
            return True
        wait_until("every member lists every name and client URL", all_published, 10)

        if args.join_by == "snapshot":
            # Enough writes that the leader compacts what the new member would need.
            for i in range(150):
                old[i % 3].client.put(f"before{i:03d}", f"value{i}")

        # 2. Add a learner; etcd's errors for a taken URL and a second learner.
        new = Member(3, "m3", args.base_port + 6, args.base_port + 7,
                     os.path.join(base_dir, "m3.synod"), os.path.join(base_dir, "m3.log"))
        expect_error(old, "etcdserver: Peer URLs already exists",
                     "member", "add", "x", f"--peer-urls={old[1].peer_url}")
        _, added = etcdctl(old, "member", "add", new.name, "--learner",
                           f"--peer-urls={new.peer_url}")
        settings = dict(line.split("=", 1) for line in added.splitlines()
                        if line.startswith("ETCD_"))
        initial_cluster = json.loads(settings["ETCD_INITIAL_CLUSTER"])
        if settings["ETCD_INITIAL_CLUSTER_STATE"] != '"existing"':
            raise AssertionError(f"member add printed {added}")
        expect_error(old, "etcdserver: too many learner members in cluster",
                     "member", "add", "y", "--learner", f"--peer-urls=http://127.0.0.1:1")
        by_name, _ = members_by_name(old)
        learner = by_name[""]
        new_id = f"{learner['ID']:x}"
        if not learner.get("isLearner") or learner["peerURLs"] != [new.peer_url]:
            raise AssertionError(f"the added member is listed as {learner}")
        # Not started, so not in sync: etcd refuses the promotion.
        expect_error(old, "etcdserver: can only promote a learner member which is in sync with "
                     "leader", "member", "promote", new_id)

        # 3. Start it as etcdctl said, joining the running cluster.
        command = [args.binary, "--name", new.name, "--data-dir", new.data_dir,
                   "--listen-client-urls", new.client_url,
                   "--advertise-client-urls", new.client_url,
                   "--listen-peer-urls", new.peer_url,
                   "--initial-advertise-peer-urls", new.peer_url,
                   "--initial-cluster", initial_cluster,
                   "--initial-cluster-state", "existing",
                   "--heartbeat-interval", "100", "--election-timeout", "1000"] + extra

        def start_new():
            log = open(new.log_path, "ab")
            new.process = subprocess.Popen(command, stdout=log, stderr=log)
            log.close()
        start_new()
        cluster.members.append(new)
        # Until promoted, a learner serves only Status and serializable reads (etcd 3.4).
        wait_until("the learner serves serializable reads",
                   lambda: etcdctl([new], "get", "--consistency=s", "k", check=False)[0] == 0, 15)
        expect_error([new], "etcdserver: rpc not supported for learner", "put", "k", "v")
        expect_error([new], "etcdserver: rpc not supported for learner", "get", "k")

        def promoted():
            code, output = etcdctl(old, "member", "promote", new_id, check=False)
            if code == 0:
                return True
            if "in sync with leader" not in output:
                raise AssertionError(f"member promote: {output}")
            return False
        wait_until("the learner catches up and is promoted", promoted, 15)
        expect_error(old, "etcdserver: can only promote a learner member",
                     "member", "promote", new_id)
        if args.join_by == "snapshot":
            if not log_shows_within(new.log_path, "installed a snapshot", 5):
                raise AssertionError("the new member joined without a snapshot; the test "
                                     "did not exercise what it is for")

        # 4. It serves writes made through the others, and lists itself with its name.
        for i in range(20):
            etcdctl([old[i % 3]], "put", f"key{i:02d}", f"value{i}")
        _, got = etcdctl([new], "get", "key", "--prefix", "--print-value-only")
        if got.split() != [f"value{i}" for i in range(20)]:
            raise AssertionError(f"the new member serves {got!r}")
        # It publishes its name and client URLs once its own record has reached it.
        def new_listed():
            by_name, listed = members_by_name([new])
            return len(listed) == 4 and \
                by_name.get(new.name, {}).get("clientURLs") == [new.client_url] and \
                not by_name[new.name].get("isLearner")
        wait_until("the new member lists itself, published and promoted", new_listed, 5)

        # 5. A SIGKILL and restart: the data dir's identity says who it is.
        new.process.kill()
        new.process.wait()
        start_new()
        wait_until("the restarted new member serves a later write",
                   lambda: etcdctl(old, "put", "after-restart", "yes")[0] == 0 and
                   etcdctl([new], "get", "after-restart", "--print-value-only")[1].strip() == "yes",
                   10)

        # 6. Remove an old member: it exits, and exits again when restarted. With --join-by log
        # it is the leader (it steps down when its removal commits, thesis 4.2.2, and must still
        # answer the client), otherwise a follower.
        by_name, _ = members_by_name(old)
        current = leader_id(old + [new])
        leading = [m for m in old if by_name[m.name]["ID"] == current]
        following = [m for m in old if by_name[m.name]["ID"] != current]
        removed = (leading or following)[0] if args.join_by == "log" else following[0]
        removed_id = f"{by_name[removed.name]['ID']:x}"
        asked = next(m for m in old if m is not removed)
        etcdctl([asked], "member", "remove", removed_id)
        try:
            code = removed.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{removed.name} still runs 10 s after its removal")
        removed.process = None
        with open(removed.log_path) as log:
            if "the member has been permanently removed from the cluster" not in log.read():
                raise AssertionError(f"{removed.name} exited ({code}) without saying why")
        cluster.start(removed)
        try:
            removed.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{removed.name}, removed and restarted, keeps running")
        removed.process = None
        remaining = [m for m in old if m is not removed] + [new]
        expect_error(remaining, "etcdserver: member not found", "member", "remove", removed_id)
        etcdctl(remaining, "put", "after-remove", "yes")
        by_name, listed = members_by_name(remaining)
        if sorted(by_name) != sorted(m.name for m in remaining):
            raise AssertionError(f"after the removal the members are {listed}")

        # 7. Move the leadership to a chosen member that does not lead.
        current = leader_id(remaining)
        ids = {m.name: by_name[m.name]["ID"] for m in remaining}
        target = next(m for m in [new] + remaining if ids[m.name] != current)
        expect_error(remaining, "etcdserver: bad leader transferee", "move-leader", removed_id)
        _, moved = etcdctl(remaining, "move-leader", f"{ids[target.name]:x}")
        if "Leadership transferred" not in moved:
            raise AssertionError(f"move-leader printed {moved}")
        wait_until(f"endpoint status shows {target.name} as leader",
                   lambda: leader_id(remaining) == ids[target.name], 5)
        etcdctl(remaining, "put", "after-move", "yes")
        _, got = etcdctl([target], "get", "after-move", "--print-value-only")
        if got.strip() != "yes":
            raise AssertionError(f"{target.name} serves after-move={got!r}")
        revision = check_same_data(remaining, "after-move")
        print(f"membership_test ({args.engine}, {args.join_by}): every member holds the same "
              f"data at revision {revision}")
        print(f"membership_test ({args.engine}, {args.join_by}): added, promoted and restarted {new.name}, "
              f"removed {removed.name}{' (the leader)' if leading and removed is leading[0] else ''}, moved leadership to {target.name} in "
              f"{time.monotonic() - started:.1f} s")
    except Exception as error:  # noqa: BLE001
        failure = error
    finally:
        cluster.stop_all()
    if failure is not None:
        for member in cluster.members:
            print(f"--- {member.name} log tail ---\n{cluster.log_tail(member, 30)}",
                  file=sys.stderr)
        print(f"membership_test FAILED: {failure}; data in {base_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(base_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
