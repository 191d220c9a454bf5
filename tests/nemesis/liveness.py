"""The nemesis's liveness check: a cluster whose faults are healed makes progress.

Safety alone passes a cluster that stops answering. Raft promises progress whenever a majority
can talk for long enough (Raft paper §5.2 and §9.3: an election takes a few election timeouts),
so the check looks at every outage, a stretch with no successful client operation, and measures
how much of it had every fault healed. A healthy cluster recovers within a few election
timeouts of a heal; more healed time than the bound inside one outage means it did not.

Time spent under a fault does not count: a partition of the leader legitimately stalls writes
until the majority elects a new one, and a fault may end before that.
"""


def healed_time_ns(start_ns, end_ns, faults):
    """How much of [start_ns, end_ns] no fault covered (faults: {"start", "end"} in ns)."""
    covered = 0
    cursor = start_ns
    for fault in sorted(faults, key=lambda f: f["start"]):
        begin, finish = max(fault["start"], cursor), min(fault["end"], end_ns)
        if finish > begin:
            covered += finish - begin
            cursor = finish
    return (end_ns - start_ns) - covered


def outages(operations, faults, window_start_ns, window_end_ns, bound_ns):
    """The outages inside the window that had more than bound_ns of healed time, longest first,
    as (start_ns, end_ns, healed_ns). An outage runs from one successful completion (or the
    window's start) to the next (or the window's end)."""
    successes = sorted(op["complete"] for op in operations
                       if op["outcome"] == "ok"
                       and window_start_ns <= op["complete"] <= window_end_ns)
    points = [window_start_ns] + successes + [window_end_ns]
    found = []
    for start, end in zip(points, points[1:]):
        if end - start <= bound_ns:
            continue
        healed = healed_time_ns(start, end, faults)
        if healed > bound_ns:
            found.append((start, end, healed))
    return sorted(found, key=lambda outage: outage[1] - outage[0], reverse=True)


def longest_gap_ns(operations, window_start_ns, window_end_ns):
    """The longest stretch without a successful operation, for the summary."""
    successes = sorted(op["complete"] for op in operations
                       if op["outcome"] == "ok"
                       and window_start_ns <= op["complete"] <= window_end_ns)
    points = [window_start_ns] + successes + [window_end_ns]
    return max(end - start for start, end in zip(points, points[1:]))
