"""A full disk stops the member cleanly and loses no acknowledged write.

Run inside its own mount namespace (tests/CMakeLists.txt) with the member's data on a small tmpfs
at --mount. Puts of 64 KiB values fill it; the member must then stop (crash-only: it cannot know
what reached the disk) with a log line naming the storage failure, never acknowledging a write it
could not store. The tmpfs is then enlarged and the member restarted: every acknowledged put must
be there, and writes work again.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--mount", required=True, help="a small tmpfs for the data")
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    cluster = Cluster(args.binary, args.mount, 1, engine=args.engine)
    member = cluster.members[0]
    acked = {}
    failure = None
    try:
        cluster.start(member)
        cluster.wait_for_leader()
        value = os.urandom(32 * 1024).hex()  # 64 KiB of text
        errors = 0
        deadline = time.monotonic() + 60
        i = 0
        while member.running() and time.monotonic() < deadline:
            key = f"big{i:05d}"
            i += 1
            try:
                member.client.put(key, value)
                acked[key] = True
            except Exception:
                errors += 1
                time.sleep(0.05)
        if member.running():
            raise AssertionError(f"the member still runs after {len(acked)} puts of 64 KiB on a "
                                 "full disk")
        code = member.process.returncode
        with open(member.log_path, errors="replace") as log:
            text = log.read()
        if code == 0 or "storage failure" not in text:
            raise AssertionError(f"the member exited with {code} without reporting a storage "
                                 f"failure:\n{cluster.log_tail(member)}")
        reason = [line for line in text.splitlines() if "storage failure" in line][-1]
        member.process = None

        subprocess.run(["mount", "-o", "remount,size=512m", args.mount], check=True)
        cluster.start(member)
        cluster.wait_for_leader()
        response = member.client.get_prefix_response("big", keys_only=True)
        present = {kv.key.decode() for kv in response.kvs}
        missing = sorted(set(acked) - present)
        if missing:
            raise AssertionError(f"{len(missing)} acknowledged puts lost, first {missing[:3]}")
        member.client.put("after", "space")
        print(f"disk_full_test: {len(acked)} puts acknowledged before the disk filled, the member "
              f"stopped with exit code {code}: {reason.strip()[:200]}; after more space all "
              f"{len(acked)} were present ({len(present)} stored); PASS")
    except AssertionError as error:
        failure = str(error)
    finally:
        cluster.stop_all()
    if failure:
        print(f"FAIL: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
