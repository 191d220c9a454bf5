"""Unit tests of the liveness check (tests/nemesis/liveness.py): it must flag an outage with
healed time beyond the bound, and must not flag one explained by faults."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import liveness  # noqa: E402

S = 1_000_000_000


def ok(at_s):
    return {"outcome": "ok", "complete": int(at_s * S)}


def failed(at_s):
    return {"outcome": "failed", "complete": int(at_s * S)}


def fault(start_s, end_s):
    return {"start": int(start_s * S), "end": int(end_s * S)}


class LivenessTest(unittest.TestCase):
    def test_steady_progress_passes(self):
        operations = [ok(t / 10) for t in range(1000)]
        self.assertEqual(liveness.outages(operations, [], 0, 100 * S, 5 * S), [])

    def test_outage_with_every_fault_healed_is_flagged(self):
        # Progress until 20 s, then only failures for 40 s with no fault in force: the kind of
        # window the 30-minute run showed (no leader although everything was healed).
        operations = [ok(t) for t in range(21)] + [failed(t) for t in range(21, 60)] + \
            [ok(t) for t in range(60, 80)]
        found = liveness.outages(operations, [fault(18, 22)], 0, 80 * S, 5 * S)
        self.assertEqual(len(found), 1)
        start, end, healed = found[0]
        self.assertEqual((start, end), (20 * S, 60 * S))
        self.assertEqual(healed, 38 * S)  # 40 s minus the 2 s the fault still covered

    def test_outage_under_faults_is_not_flagged(self):
        # 30 s without success, but faults covered all of it except 3 s of quiet spells.
        operations = [ok(10), ok(40)]
        faults = [fault(10, 19), fault(20, 29), fault(30, 39)]
        self.assertEqual(liveness.outages(operations, faults, 10 * S, 40 * S, 5 * S), [])

    def test_cycling_faults_do_not_hide_a_stuck_cluster(self):
        # Faults keep coming, but the quiet spells between them add up past the bound.
        operations = [ok(0), ok(60)]
        faults = [fault(t, t + 4) for t in range(2, 58, 6)]
        found = liveness.outages(operations, faults, 0, 60 * S, 5 * S)
        self.assertEqual(len(found), 1)
        self.assertGreater(found[0][2], 15 * S)

    def test_silence_at_the_end_of_the_window_counts(self):
        operations = [ok(1)]
        found = liveness.outages(operations, [], 0, 30 * S, 5 * S)
        self.assertEqual([(s, e) for s, e, _ in found], [(1 * S, 30 * S)])

    def test_overlapping_faults_are_counted_once(self):
        self.assertEqual(liveness.healed_time_ns(0, 10 * S, [fault(1, 5), fault(3, 7)]), 4 * S)


if __name__ == "__main__":
    unittest.main()
