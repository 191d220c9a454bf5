"""`synod paxos` on real processes (src/server/paxos_demo.h): three members decide one value.

Four parts (--parts), each on fresh data dirs and ports:
  - dueling proposers: the three members propose red, green and blue at the same moment; each
    must print the same "chosen: VALUE", VALUE one of the three, and exit 0, and `--query` on
    every data dir must print it too;
  - a minority crashing at any moment: one member (the victim) is kill -9'd at random moments,
    one to three times a round, and restarted with the same data dir, or in some rounds left
    dead; every run that printed a decision, killed ones included, printed the same value, one of
    those proposed, every member still running decides it and exits 0, and a dead victim's data
    dir holds that value or none;
  - adopt: an acceptor that accepted red but never learned it was chosen makes the next
    proposer, who proposes blue, choose red (P2c); the broken build that ignores reported values
    fails here every time;
  - only a minority up: one member alone never decides (prints "not yet decided", exit 3, and
    --query agrees); once the others start, all three decide the same value.

Exit 0 when every check holds; with --expect-violation (a deliberately broken build), exit 0
only when some check fails. Logs of every run stay in --work-dir when given.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import terminate_together  # noqa: E402

PALETTE = ["red", "green", "blue", "yellow", "violet", "orange", "cyan"]
# Set by --members: the members' names and the value each proposes.
NAMES = []
VALUES = []
# Set by --tick: flags every member gets.
MEMBER_FLAGS = []
EXIT_DECIDED = 0
EXIT_UNDECIDED = 3


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


class Group:
    """The members (NAMES) on 127.0.0.1:base_port+1.. with data dirs under `directory`."""

    def __init__(self, binary, directory, base_port, linger_s):
        self.binary = binary
        self.directory = directory
        self.linger_s = linger_s
        os.makedirs(directory)
        self.peers = ",".join(f"{name}=127.0.0.1:{base_port + i + 1}"
                              for i, name in enumerate(NAMES))
        self.runs = []  # (name, process, stdout path), every run ever started

    def data_dir(self, name):
        return os.path.join(self.directory, f"{name}.paxos")

    def start(self, name, value, timeout_s=20):
        run = len(self.runs)
        out_path = os.path.join(self.directory, f"{name}.run{run}.out")
        command = [self.binary, "paxos", "--name", name, "--data-dir", self.data_dir(name),
                   "--peers", self.peers, "--timeout", f"{timeout_s}s",
                   "--linger", f"{self.linger_s}s"] + MEMBER_FLAGS
        if value is not None:
            command += ["--propose", value]
        with open(out_path, "w") as out, \
                open(os.path.join(self.directory, f"{name}.log"), "a") as log:
            process = subprocess.Popen(command, stdout=out, stderr=log)
        self.runs.append((name, process, out_path))
        return process

    def query(self, name):
        result = subprocess.run([self.binary, "paxos", "--query", "--data-dir", self.data_dir(name)],
                                capture_output=True, text=True, timeout=10)
        return result.returncode, result.stdout.strip()

    def stop_all(self):
        terminate_together([process for _, process, _ in self.runs])

    def printed_decisions(self):
        """Every "chosen: VALUE" any run printed, as (name, value)."""
        decisions = []
        for name, _, out_path in self.runs:
            with open(out_path) as out:
                for line in out.read().splitlines():
                    if line.startswith("chosen: "):
                        decisions.append((name, line[len("chosen: "):]))
        return decisions


def check_agreement(group, label):
    """All printed decisions agree on one proposed value; returns it."""
    decisions = group.printed_decisions()
    check(decisions, f"{label}: nobody printed a decision")
    values = {value for _, value in decisions}
    check(len(values) == 1, f"{label}: different values chosen: {sorted(decisions)}")
    value = values.pop()
    check(value in VALUES, f"{label}: chosen {value!r} was never proposed")
    return value


def finish(group, processes, label, deadline_s=30):
    """Waits for each (name, process); then requires one proposed value in every decision
    printed (before the exit statuses, since a member that sees a second value aborts) and exit 0
    from each. Returns the value."""
    codes = {}
    for name, process in processes:
        try:
            codes[name] = process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            codes[name] = f"no exit within {deadline_s} s"
    value = check_agreement(group, label)
    for name, code in codes.items():
        check(code == EXIT_DECIDED, f"{label}: {name} exited {code}, not {EXIT_DECIDED}")
    return value


def dueling_round(binary, directory, base_port, round_number):
    group = Group(binary, directory, base_port, linger_s=5)
    try:
        processes = [(name, group.start(name, value)) for name, value in zip(NAMES, VALUES)]
        value = finish(group, processes, f"dueling round {round_number}")
        check(len(group.printed_decisions()) == len(NAMES),
              f"dueling round {round_number}: {group.printed_decisions()}")
        for name in NAMES:
            code, out = group.query(name)
            check((code, out) == (EXIT_DECIDED, f"chosen: {value}"),
                  f"dueling round {round_number}: --query {name} gave {code} {out!r}")
        return value
    finally:
        group.stop_all()


def crash_round(binary, directory, base_port, seed):
    """One member killed at random moments and restarted (or, a quarter of the rounds, left dead
    after its last kill); returns (value, kills, victim left dead)."""
    rng = random.Random(seed)
    group = Group(binary, directory, base_port, linger_s=3)
    victim = rng.choice(NAMES)
    victim_value = VALUES[NAMES.index(victim)]
    leave_dead = rng.random() < 0.25
    try:
        processes = {name: group.start(name, value) for name, value in zip(NAMES, VALUES)}
        kills = 0
        for kill_number in range(rng.randint(1, 3)):
            # A decision takes about 100 ms from start-up: kill anywhere in start-up, phase 1
            # and 2, the fsyncs, and the hand-off.
            time.sleep(rng.uniform(0, 0.15))
            victim_process = processes[victim]
            if victim_process.poll() is None:
                victim_process.kill()
                victim_process.wait()
                kills += 1
            if leave_dead and kill_number > 0:
                break
            time.sleep(rng.uniform(0, 0.2))
            processes[victim] = group.start(victim, victim_value)
        if leave_dead and processes[victim].poll() is None:
            processes[victim].kill()
            processes[victim].wait()
            kills += 1
        survivors = [(name, process) for name, process in processes.items()
                     if name != victim or not leave_dead]
        value = finish(group, survivors, f"crash seed {seed}")
        for name in NAMES:
            code, out = group.query(name)
            if name == victim and leave_dead and not os.path.exists(group.data_dir(name)):
                continue  # Killed before it made its data dir: it learned nothing.
            if name == victim and leave_dead:
                check((code, out) in ((EXIT_DECIDED, f"chosen: {value}"),
                                      (EXIT_UNDECIDED, "not yet decided")),
                      f"crash seed {seed}: --query of dead {name} gave {code} {out!r}")
            else:
                check((code, out) == (EXIT_DECIDED, f"chosen: {value}"),
                      f"crash seed {seed}: --query {name} gave {code} {out!r}")
        return value, kills, leave_dead
    finally:
        group.stop_all()


def minority_run(binary, directory, base_port):
    group = Group(binary, directory, base_port, linger_s=5)
    try:
        alone = group.start("n1", "red", timeout_s=2)
        code = alone.wait(timeout=20)
        with open(group.runs[-1][2]) as out:
            printed = out.read().strip()
        check((code, printed) == (EXIT_UNDECIDED, "not yet decided"),
              f"minority: n1 alone exited {code} printing {printed!r}")
        check(group.query("n1") == (EXIT_UNDECIDED, "not yet decided"),
              f"minority: --query n1 gave {group.query('n1')}")
        processes = [(name, group.start(name, value)) for name, value in zip(NAMES, VALUES)]
        return finish(group, processes, "minority then majority")
    finally:
        group.stop_all()


def crc32c(data):
    """CRC-32C (Castagnoli), the checksum storage::ComputeCrc32c writes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def read_varint(data, offset):
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def forget_decision(state_path):
    """Rewrites a member's paxos-state (a CRC32C, little-endian, then a PaxosDemoState) without
    its decided fields (5 and 6 of proto/synod/paxos_demo.proto), keeping the promise and the
    accepted proposal: the state of an acceptor that accepted a value and crashed before its
    learner counted a majority."""
    with open(state_path, "rb") as f:
        contents = f.read()
    payload = contents[4:]
    check(int.from_bytes(contents[:4], "little") == crc32c(payload), f"{state_path}: bad CRC")
    kept = bytearray()
    offset = 0
    while offset < len(payload):
        start = offset
        key, offset = read_varint(payload, offset)
        wire_type = key & 7
        if wire_type == 0:
            _, offset = read_varint(payload, offset)
        elif wire_type == 1:
            offset += 8
        elif wire_type == 2:
            length, offset = read_varint(payload, offset)
            offset += length
        else:
            raise CheckFailed(f"{state_path}: unexpected wire type {wire_type}")
        if key >> 3 not in (5, 6):
            kept += payload[start:offset]
    check(len(kept) < len(payload), f"{state_path}: no decision to forget")
    with open(state_path, "wb") as f:
        f.write(crc32c(kept).to_bytes(4, "little") + bytes(kept))


def adopt_run(binary, directory, base_port):
    """P2c ("Paxos Made Simple" 2.2) across processes: n1 and n2 alone choose red, so both
    accepted it; n2 then forgets that it learned the decision (as if it had crashed between
    accepting and learning) and n1 stays down. n3, proposing blue with n2, must learn from n2's
    promise that red was accepted and propose red, not its own value; n1 restarted still says
    red. A proposer that ignores reported values chooses blue here, every time."""
    group = Group(binary, directory, base_port, linger_s=1)
    try:
        finish(group, [("n1", group.start("n1", "red")), ("n2", group.start("n2", None))],
               "adopt: n1 and n2")
        forget_decision(os.path.join(group.data_dir("n2"), "paxos-state"))
        check(group.query("n2") == (EXIT_UNDECIDED, "not yet decided"),
              f"adopt: --query n2 after forgetting gave {group.query('n2')}")
        finish(group, [("n2", group.start("n2", None)), ("n3", group.start("n3", "blue"))],
               "adopt: n2 and n3")
        finish(group, [("n1", group.start("n1", "red"))], "adopt: n1 again")
        value = check_agreement(group, "adopt")
        check(value == "red", f"adopt: {value} chosen, but red was chosen first")
        return value
    finally:
        group.stop_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the synod binary")
    parser.add_argument("--members", type=int, default=3, choices=range(3, len(PALETTE) + 1))
    parser.add_argument("--tick", help="the members' --tick (shorter: more dueling)")
    parser.add_argument("--parts", default="dueling,crash,minority,adopt",
                        help="which parts to run, of dueling,crash,minority,adopt")
    parser.add_argument("--dueling-rounds", type=int, default=3)
    parser.add_argument("--crash-seeds", type=int, default=8,
                        help="crash rounds, seeds first-seed .. first-seed + N - 1")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=7100)
    parser.add_argument("--work-dir", help="keep data dirs and logs here (default: a temp dir)")
    parser.add_argument("--expect-violation", action="store_true",
                        help="a broken build: pass only if some check fails")
    args = parser.parse_args()
    NAMES.extend(f"n{i + 1}" for i in range(args.members))
    VALUES.extend(PALETTE[:args.members])
    if args.tick:
        MEMBER_FLAGS.extend(["--tick", args.tick])
    parts = set(args.parts.split(","))
    if "adopt" in parts and args.members != 3:
        parser.error("the adopt part is written for 3 members (n1 and n2 are a majority)")

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="paxos-demo-test-")
    os.makedirs(work_dir, exist_ok=True)
    port = args.base_port
    started = time.monotonic()
    try:
        for round_number in range(args.dueling_rounds if "dueling" in parts else 0):
            port += 10
            value = dueling_round(args.binary, os.path.join(work_dir, f"dueling{round_number}"),
                                  port, round_number)
            print(f"dueling round {round_number}: all chose {value}", flush=True)
        for seed in range(args.first_seed,
                          args.first_seed + (args.crash_seeds if "crash" in parts else 0)):
            port += 10
            value, kills, left_dead = crash_round(
                args.binary, os.path.join(work_dir, f"crash{seed}"), port, seed)
            print(f"crash seed {seed}: {kills} kill(s), victim "
                  f"{'left dead' if left_dead else 'restarted'}; chose {value}", flush=True)
        if "adopt" in parts:
            port += 10
            value = adopt_run(args.binary, os.path.join(work_dir, "adopt"), port)
            print(f"adopt: n3 proposing blue adopted the {value} that n2 had accepted",
                  flush=True)
        if "minority" in parts:
            port += 10
            value = minority_run(args.binary, os.path.join(work_dir, "minority"), port)
            print(f"minority: n1 alone did not decide; with the others all chose {value}",
                  flush=True)
    except CheckFailed as failure:
        print(f"FAIL after {time.monotonic() - started:.1f} s: {failure}", flush=True)
        return finish_run(work_dir, args, as_expected=args.expect_violation)
    print(f"PASS in {time.monotonic() - started:.1f} s", flush=True)
    return finish_run(work_dir, args, as_expected=not args.expect_violation)


def finish_run(work_dir, args, as_expected):
    """The exit status; the logs are kept (and named) when the outcome is not the expected one
    or --work-dir asked for them."""
    if args.work_dir or not as_expected:
        print(f"logs in {work_dir}", flush=True)
    else:
        shutil.rmtree(work_dir)
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
