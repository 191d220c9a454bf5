#!/usr/bin/python3
"""The lock-fencing check (lock_workload.check) on hand-made histories: a correct run with a
lock lost mid-hold passes, and each kind of violation (overlapping holders, an increment lost,
the store and the clients disagreeing, Lock granted too early) is reported with its events."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lock_workload  # noqa: E402

LOCK = lock_workload.LOCK_NAME.decode() + "/"
RESOURCE = lock_workload.RESOURCE_KEY.decode()


def lock_key(client):
    return f"{LOCK}{client:x}"


def store_put(key, revision, create_revision, value=""):
    return {"source": "store", "key": key, "type": "put", "revision": revision,
            "create_revision": create_revision, "value": value}


def store_delete(key, revision):
    return {"source": "store", "key": key, "type": "delete", "revision": revision,
            "create_revision": 0, "value": ""}


def lock_created(client, revision):
    return store_put(lock_key(client), revision, revision)


def resource_version(revision, count, client, fence, write_id):
    value = json.dumps({"count": count, "client": client, "fence": fence, "write": write_id})
    return store_put(RESOURCE, revision, 0, value)


def granted(client, revision, fence):
    return {"source": "client", "client": client, "event": "lock", "key": lock_key(client),
            "outcome": "ok", "revision": revision, "fence": fence, "invoke": 0, "complete": 1}


def write(client, write_id, fence, count, outcome="ok", succeeded=True, revision=None):
    event = {"source": "client", "client": client, "event": "write", "write": write_id,
             "fence": fence, "count": count, "outcome": outcome, "invoke": 0, "complete": 1}
    if outcome == "ok":
        event["succeeded"] = succeeded
        event["revision"] = revision
    return event


def two_holders():
    """Client 1 holds the lock (key created at 10) and writes twice; its lease expires (the key
    is deleted at 14) while client 2, queued since 11, waits; client 2 then holds it and writes.
    Client 1's late write is refused by the fence. One write of client 2 is unknown but took
    effect."""
    return [
        lock_created(1, 10), granted(1, 10, 10),
        lock_created(2, 11),
        resource_version(12, 1, 1, 10, "c1-1"), write(1, "c1-1", 10, 1, revision=12),
        resource_version(13, 2, 1, 10, "c1-2"), write(1, "c1-2", 10, 2, revision=13),
        store_delete(lock_key(1), 14), granted(2, 14, 11),
        resource_version(15, 3, 2, 11, "c2-1"), write(2, "c2-1", 11, 3, outcome="unknown"),
        write(1, "c1-3", 10, 3, succeeded=False, revision=16),
        resource_version(17, 4, 2, 11, "c2-2"), write(2, "c2-2", 11, 4, revision=17),
        store_delete(lock_key(2), 18),
    ]


class CheckTest(unittest.TestCase):
    def assert_violation(self, events, *phrases):
        problems, _ = lock_workload.check(events)
        self.assertTrue(problems, "the check found nothing wrong")
        text = "\n".join(problems)
        for phrase in phrases:
            self.assertIn(phrase, text)
        return problems

    def test_holders_one_after_another_pass(self):
        problems, figures = lock_workload.check(two_holders())
        self.assertEqual(problems, [])
        self.assertEqual(figures["final count"], 4)
        self.assertEqual(figures["writes acknowledged"], 3)
        self.assertEqual(figures["writes refused by the fence"], 1)
        self.assertEqual(figures["writes unknown"], 1)

    def test_overlapping_holders_are_reported(self):
        # Unfenced: client 1, stalled past its lease, still believes it holds the lock. Its
        # late write lands at 16 while client 2 holds it; client 2, which read count 3 before,
        # writes 4 over client 1's 4.
        events = [
            lock_created(1, 10), granted(1, 10, 10),
            lock_created(2, 11),
            resource_version(12, 1, 1, 10, "c1-1"), write(1, "c1-1", 10, 1, revision=12),
            store_delete(lock_key(1), 14), granted(2, 14, 11),
            resource_version(15, 2, 2, 11, "c2-1"), write(2, "c2-1", 11, 2, revision=15),
            resource_version(16, 3, 1, 10, "c1-2"), write(1, "c1-2", 10, 3, revision=16),
            resource_version(17, 3, 2, 11, "c2-2"), write(2, "c2-2", 11, 3, revision=17),
        ]
        problems = self.assert_violation(
            events,
            "write c1-2 of client 1 took effect at revision 16 under fencing revision 10, but "
            f"the lock was held by {lock_key(2)} (fencing revision 11)",
            "overlapping holders: write c1-2 under fencing revision 10 took effect after write "
            "c2-1 under the newer fencing revision 11",
            "increment lost or doubled: version 4 of the resource (revision 17, write c2-2) "
            "holds count 3",
            "final count 3 is outside [4 acknowledged, 4 acknowledged + unknown] increments")
        self.assertEqual(len(problems), 4, "\n".join(problems))
        # The offending events follow each message.
        self.assertIn(json.dumps(events[9], sort_keys=True), problems[0])

    def test_write_without_any_holder_is_reported(self):
        events = two_holders() + [resource_version(19, 5, 2, 11, "c2-3"),
                                  write(2, "c2-3", 11, 5, revision=19)]
        self.assert_violation(events, "write c2-3 of client 2 took effect at revision 19 under "
                              "fencing revision 11, but nobody held the lock")

    def test_lost_increment_is_reported(self):
        # Client 2 read count 2 (a stale read) and wrote 3 over the 3 already there.
        events = [e for e in two_holders() if e.get("write") != "c2-2" and (
            e.get("key") != RESOURCE or e["revision"] != 17)]
        events += [resource_version(17, 3, 2, 11, "c2-2"), write(2, "c2-2", 11, 3, revision=17)]
        self.assert_violation(events, "increment lost or doubled: version 4 of the resource "
                              "(revision 17, write c2-2) holds count 3")

    def test_acknowledged_write_missing_from_the_store_is_reported(self):
        events = [e for e in two_holders() if e.get("key") != RESOURCE or e["revision"] != 17]
        self.assert_violation(events, "acknowledged write c2-2 is not the resource's version at "
                              "its revision 17")

    def test_final_count_below_the_acknowledged_increments_is_reported(self):
        events = [e for e in two_holders() if e.get("key") != RESOURCE or e["revision"] < 15]
        self.assert_violation(events, "final count 2 is outside [3 acknowledged, 4 acknowledged "
                              "+ unknown] increments")

    def test_refused_write_found_in_the_store_is_reported(self):
        events = [e for e in two_holders() if e.get("write") != "c2-1"]
        events.append(write(2, "c2-1", 11, 3, outcome="failed"))
        self.assert_violation(events, "the resource holds write c2-1, which its client was told "
                              "did not happen")

    def test_write_nobody_made_is_reported(self):
        events = [e for e in two_holders() if e.get("write") != "c2-1" or e["source"] == "store"]
        self.assert_violation(events, "the resource holds write c2-1, which no client made")

    def test_lock_granted_while_an_older_key_lives_is_reported(self):
        events = [e for e in two_holders() if not (e["source"] == "client" and e["client"] == 2
                                                   and e["event"] == "lock")]
        events.append(granted(2, 12, 11))
        self.assert_violation(events, f"Lock answered client 2 with {lock_key(2)} at revision 12,"
                              f" while the older key {lock_key(1)} (created at 10)")


class CommandTest(unittest.TestCase):
    def run_command(self, events):
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
            for event in events:
                out.write((event if isinstance(event, str) else json.dumps(event)) + "\n")
        try:
            return subprocess.run([sys.executable, lock_workload.__file__, out.name],
                                  capture_output=True, text=True)
        finally:
            os.unlink(out.name)

    def test_exit_status(self):
        passed = self.run_command(two_holders())
        self.assertEqual(passed.returncode, 0, passed.stdout + passed.stderr)
        self.assertIn("lock fencing: ok", passed.stdout)
        caught = self.run_command(two_holders() + [resource_version(19, 5, 2, 11, "c2-3"),
                                                   write(2, "c2-3", 11, 5, revision=19)])
        self.assertEqual(caught.returncode, 1)
        self.assertIn("lock fencing: VIOLATION (1)", caught.stdout)
        malformed = self.run_command(two_holders() + ['{"source": "client", "event": "write"}'])
        self.assertEqual(malformed.returncode, 2)
        self.assertIn("line 16: missing client, complete, count, fence, invoke, outcome, write",
                      malformed.stderr)


if __name__ == "__main__":
    unittest.main()
