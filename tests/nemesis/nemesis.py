#!/usr/bin/python3
"""Nemesis: real synod processes under injected faults, checked for linearizability.

Runs a cluster of 3 or 5 synod members (each in its own network namespace, see network.py),
drives concurrent clients doing put, get, delete and compare-and-set on a few keys for a set
duration, and injects faults on a schedule: kill -9 and restart (of the leader or another
member), SIGSTOP/SIGCONT pauses longer than the election timeout, partitions (halves, leader
isolated, bridge, ring, one-way), packet loss and delay on peer links, and, with the power-loss
model (--powerloss-shim), power cuts of the whole cluster. Every client operation is
recorded with its invocation and completion time (one monotonic clock, this process's) and
outcome. Afterwards it heals everything and checks:
- linearizability of the whole history (synod-check: per-key Wing & Gong search with Lowe's
  memoisation); reads after healing are in the history, so a lost acknowledged write shows up
  as a read that no order explains;
- that every member reaches the same revision with the same HashKV (replicas agree);
- liveness (liveness.py): no outage, a stretch without any successful operation, holds more
  than --liveness-bound seconds during which every fault was healed.
- with --workload lock or both, that lock holders never overlap when each write under etcd's
  Lock is fenced by the lock key's revision (lock_workload.py, lock-history.jsonl).
Results go to a folder: history.jsonl, faults.json, summary.txt, timeline.svg.

Exit status: 0 when the run found no anomaly, 1 when it found one, 2 when the harness itself
failed (cluster never healthy, bad arguments). With --expect-anomaly the first two swap, for the
tests that show a deliberately broken build is caught; there only the history's checks count
(synod-check's linearizability, the lock check), since a liveness or replica problem can come
from a loaded machine rather than from the broken code.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The fault tests' helpers (tests/fault/synod_cluster.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fault"))
import etcd3  # noqa: E402  (python3-etcd3)
from etcd3 import etcdrpc  # noqa: E402
import liveness  # noqa: E402
import lock_workload  # noqa: E402
import network  # noqa: E402
import powerloss  # noqa: E402  (tests/fault/powerloss.py)
from synod_cluster import terminate_together  # noqa: E402
import timeline  # noqa: E402

FAULT_KINDS = ["kill", "pause", "partition-halves", "partition-leader", "partition-bridge",
               "partition-ring", "partition-one-way", "loss", "delay", "fsync", "clock",
               "powerloss", "stale-leader"]
PROCESS_FAULTS = {"kill", "pause", "fsync", "clock", "powerloss"}
# Fault kinds that need --powerloss-shim (a power cut is kill -9 plus the model's restore).
POWERLOSS_FAULTS = {"powerloss"}
# libfiu's preloads (fiu-utils): fsync and fdatasync fail on command (fiu-ctrl), through a FIFO
# named after the process id.
FIU_PRELOADS = ["/usr/lib/fiu/fiu_run_preload.so", "/usr/lib/fiu/fiu_posix_preload.so"]
FIU_FIFO_PREFIX = "/tmp/fiu-ctrl"
# libfaketime: the wall clock (CLOCK_REALTIME) jumps to the offset in a file the nemesis writes;
# the monotonic clock, which timeouts use, is left alone, as an NTP step leaves it. The
# clock-step shim (clock_step_shim.cc, --clock-step-shim) moves the process's realtime futex
# waits with it, which libfaketime alone leaves behind.
FAKETIME_PRELOAD = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
CLIENT_TIMEOUT_S = 3
CHECKER_TIMEOUT_S = 600
# Answers after which a request certainly did not take effect: the member refused it before
# proposing it (server/node.cc: no leader to forward to, proposal queue full), or the connection
# was refused so the request never left the client. Every other error leaves it unknown.
DEFINITE_FAILURES = ("etcdserver: no leader", "etcdserver: too many requests",
                     "Connection refused")


def parse_duration(text):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: want e.g. 90s, 30m")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def now_ns():
    return time.monotonic_ns()


class Members:
    """The synod processes: start, kill -9, pause, resume, restart; who leads."""

    def __init__(self, binary, net, size, work_dir, heartbeat_ms, election_ms, clock_step_shim,
                 powerloss_shim=None, engine="raft"):
        self.binary = binary
        self.engine = engine  # synod --engine
        self.clock_step_shim = clock_step_shim
        # With the power-loss model (tests/fault/powerloss_shim.cc) every kill -9 is a power
        # cut: before a member starts again, what it wrote but did not fsync is cut away.
        self.powerloss_shim = powerloss_shim
        self.net = net
        self.size = size
        self.work_dir = work_dir
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.processes = [None] * size
        self.paused = set()
        self.fsync_failing = set()
        self.initial_cluster = ",".join(
            f"m{i}={net.advertised_peer_url(i)}" for i in range(size))
        self.ids = {}  # member id -> index, learned from Status answers

    def clock_file(self, i):
        return os.path.join(self.work_dir, f"m{i}.clock")

    def set_clock_offset(self, i, offset_s):
        with open(self.clock_file(i), "w") as out:
            out.write(f"{offset_s:+d}s\n" if offset_s else "+0\n")

    def data_dir(self, i):
        return os.path.join(self.work_dir, f"m{i}")

    def powerloss_log(self, i):
        return os.path.join(self.work_dir, f"m{i}.powerloss")

    def command(self, i):
        # The preloads go through `env` so that only synod gets them, not `ip netns exec`.
        preloads = FIU_PRELOADS + ([self.clock_step_shim] if self.clock_step_shim else []) + \
            [FAKETIME_PRELOAD]
        powerloss_env = []
        if self.powerloss_shim:
            # First, so that its fsync sees libfiu's injected failures as failures.
            model = powerloss.environment(self.powerloss_shim, self.data_dir(i),
                                          self.powerloss_log(i))
            preloads = [model.pop("LD_PRELOAD")] + preloads
            powerloss_env = [f"{name}={value}" for name, value in model.items()]
        if not os.path.exists(self.clock_file(i)):
            self.set_clock_offset(i, 0)
        return self.net.command_prefix(i) + [
            "env", f"LD_PRELOAD={' '.join(preloads)}", *powerloss_env,
            f"FIU_CTRL_FIFO={FIU_FIFO_PREFIX}",
            "FIU_ENABLE=", f"FAKETIME_TIMESTAMP_FILE={self.clock_file(i)}",
            "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_CACHE_DURATION=1",
            self.binary, "--name", f"m{i}", "--data-dir", self.data_dir(i),
            "--listen-client-urls", self.net.client_url(i),
            "--advertise-client-urls", self.net.client_url(i),
            "--listen-peer-urls", self.net.listen_peer_url(i),
            "--initial-advertise-peer-urls", self.net.advertised_peer_url(i),
            "--initial-cluster", self.initial_cluster,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--snapshot-count", "2000",
            "--engine", self.engine,
            "--log-level", "info"]

    def start(self, i):
        if self.powerloss_shim:
            lost = powerloss.restore(self.data_dir(i), self.powerloss_log(i))
            if lost:
                print(f"nemesis: m{i} lost {lost} unsynced bytes to the power cut", flush=True)
        log = open(os.path.join(self.work_dir, f"m{i}.log"), "ab")
        self.processes[i] = subprocess.Popen(self.command(i), stdout=log, stderr=log)
        log.close()

    def running(self, i):
        return self.processes[i] is not None and self.processes[i].poll() is None

    def kill(self, i):
        if self.running(i):
            self.processes[i].send_signal(signal.SIGKILL)
            self.processes[i].wait()
        self.paused.discard(i)

    def power_cut(self):
        """kill -9 of every member at once; under the model, their unsynced writes are lost
        when they start again."""
        running = [i for i in range(self.size) if self.running(i)]
        for i in running:
            self.processes[i].send_signal(signal.SIGKILL)
        for i in running:
            self.processes[i].wait()
            self.paused.discard(i)

    def fail_fsync(self, i, enable):
        """Makes fsync and fdatasync fail (or work again) in member i."""
        if enable:
            self.fsync_failing.add(i)
        elif i in self.fsync_failing:
            self.fsync_failing.discard(i)
        else:
            return
        if not self.running(i):
            return
        command = "enable" if enable else "disable"
        subprocess.run(["fiu-ctrl", "-c", f"{command} name=posix/io/sync/fsync",
                        "-c", f"{command} name=posix/io/sync/fdatasync",
                        "-f", FIU_FIFO_PREFIX, str(self.processes[i].pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)

    def reap(self, i):
        """Removes the control FIFOs of member i's last process once it is gone."""
        if self.processes[i] is not None and not self.running(i):
            for suffix in (".in", ".out"):
                try:
                    os.unlink(f"{FIU_FIFO_PREFIX}-{self.processes[i].pid}{suffix}")
                except FileNotFoundError:
                    pass

    def pause(self, i):
        if self.running(i):
            self.processes[i].send_signal(signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i):
        if i in self.paused and self.running(i):
            self.processes[i].send_signal(signal.SIGCONT)
        self.paused.discard(i)

    def heal(self):
        for i in range(self.size):
            self.resume(i)
            self.fail_fsync(i, False)
            self.set_clock_offset(i, 0)
            if not self.running(i):
                self.reap(i)
                self.start(i)

    def stop_all(self):
        for i in range(self.size):
            self.resume(i)
        terminate_together([p for p in self.processes if p is not None])
        for i in range(self.size):
            self.reap(i)

    def status(self, i, timeout=0.5):
        channel = grpc.insecure_channel(self.net.client_address(i))
        try:
            return etcdrpc.MaintenanceStub(channel).Status(etcdrpc.StatusRequest(),
                                                           timeout=timeout)
        finally:
            channel.close()

    def leader(self):
        """The index of the member that some reachable member names as leader, or None."""
        for i in range(self.size):
            if i in self.paused or not self.running(i):
                continue
            try:
                status = self.status(i)
            except grpc.RpcError:
                continue
            self.ids[status.header.member_id] = i
            if status.leader != 0 and status.leader in self.ids:
                return self.ids[status.leader]
            if status.leader == status.header.member_id:
                return i
        return None

    def learn_ids(self):
        for i in range(self.size):
            try:
                self.ids[self.status(i).header.member_id] = i
            except grpc.RpcError:
                pass

    def wait_healthy(self, timeout_s):
        """Waits until a linearizable read succeeds on every member; prints what failed last
        when that does not happen in time."""
        deadline = time.monotonic() + timeout_s
        problems = {}
        while time.monotonic() < deadline:
            problems = {}
            for i in range(self.size):
                channel = grpc.insecure_channel(self.net.client_address(i))
                try:
                    etcdrpc.KVStub(channel).Range(etcdrpc.RangeRequest(key=b"health"),
                                                  timeout=1)
                except grpc.RpcError as error:
                    problems[i] = f"{error.code().name} {error.details()}"
                finally:
                    channel.close()
            if not problems:
                return True
            time.sleep(0.3)
        for i, problem in sorted(problems.items()):
            state = "running" if self.running(i) else f"exited {self.processes[i].returncode}"
            print(f"nemesis: m{i} ({state}): {problem}", file=sys.stderr)
        return False


class History:
    """Every client operation, in the JSON-lines format synod-check reads (docs/check.md)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.operations = []

    def add(self, operation):
        with self.lock:
            self.operations.append(operation)

    def write(self, path):
        with open(path, "w") as out:
            for operation in self.operations:
                out.write(json.dumps(operation, sort_keys=True) + "\n")


def key_name(generation, index):
    return f"nemesis/{generation:05}/k{index}"


class Client(threading.Thread):
    """One client: a random operation at a time on a random key, on one member until an error
    sends it to another one, chosen at random so that clients do not pile up on one member.

    Keys live for a while and are then replaced by fresh ones (Jepsen's independent keys): the
    checker's search is exponential in the operations of one key whose outcome is unknown, so
    each key must see only a bounded number of them, however long the run."""

    WRITES = (["put"] * 3) + (["cas"] * 2) + ["delete"]

    def __init__(self, number, net, size, keys, history, stop, seed, started_ns, key_life_s,
                 read_fraction):
        super().__init__(daemon=True)
        self.read_fraction = read_fraction
        self.started_ns = started_ns
        self.key_life_ns = int(key_life_s * 1e9)
        self.number = number
        self.net = net
        self.size = size
        self.keys = keys
        self.history = history
        self.stop_event = stop
        self.random = random.Random(seed)
        self.member = number % size
        self.sequence = 0
        self.client = None
        self.last_seen = {}

    def connect(self):
        url = self.net.client_address(self.member)
        host, port = url.rsplit(":", 1)
        self.client = etcd3.client(host=host, port=int(port), timeout=CLIENT_TIMEOUT_S)

    def run(self):
        self.connect()
        while not self.stop_event.is_set():
            key = key_name((now_ns() - self.started_ns) // self.key_life_ns,
                           self.random.randrange(self.keys))
            kind = ("get" if self.random.random() < self.read_fraction
                    else self.random.choice(self.WRITES))
            self.sequence += 1
            # A compare-and-set expects the value this client last saw in the key, so that
            # some succeed and some fail.
            record = perform(self.client, self.number, kind, key,
                             f"c{self.number}-{self.sequence}", self.last_seen.get(key, ""))
            self.history.add(record)
            if record["outcome"] == "ok" and kind == "get":
                self.last_seen[key] = record["value"] or ""
            if record["outcome"] != "ok":
                self.client.close()
                self.member = self.random.choice(
                    [m for m in range(self.size) if m != self.member])
                self.connect()
        self.client.close()


def perform(client, number, kind, key, value, expected=""):
    """Runs one operation and returns its history record."""
    record = {"client": number, "op": kind, "key": key}
    if kind == "put":
        record["value"] = value
    elif kind == "cas":
        record["expected"] = expected
        record["value"] = value
    record["invoke"] = now_ns()
    try:
        if kind == "put":
            client.put(key, value)
        elif kind == "get":
            observed, _ = client.get(key)
            record["value"] = None if observed is None else observed.decode()
        elif kind == "delete":
            client.delete(key)
        elif kind == "cas":
            succeeded, _ = client.transaction(
                compare=[client.transactions.value(key) == record["expected"]],
                success=[client.transactions.put(key, value)], failure=[])
            record["succeeded"] = bool(succeeded)
        record["outcome"] = "ok"
    except Exception as error:  # noqa: BLE001 (grpc, etcd3 and socket errors alike)
        record["outcome"] = outcome_of(error)
    record["complete"] = now_ns()
    return record


def outcome_of(error):
    """What a request that ended in `error` did: "failed" (certainly nothing) or "unknown";
    counted for the summary."""
    # python-etcd3 raises its own exceptions while handling grpc's (so grpc's is the context),
    # and grpc's carries the server's message.
    cause = error.__context__ if isinstance(error.__context__, grpc.RpcError) else error
    details = cause.details() if isinstance(cause, grpc.RpcError) else str(error)
    # Otherwise no answer, or an error after which the request may still commit (a forwarded
    # proposal, a leader that changed): it may or may not have taken effect.
    outcome = "failed" if any(text in (details or "") for text in DEFINITE_FAILURES) else "unknown"
    errors.note(cause, outcome)
    return outcome


class ErrorCounts:
    """How many operations ended in which error (for the summary; the history has no room)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def note(self, error, outcome):
        if isinstance(error, grpc.RpcError):
            text = f"{error.code().name} {error.details()}"
        else:
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
        # Addresses and errno details vary from call to call; the kind of error is what counts.
        text = f"{outcome}: {re.sub(r'ipv4:[0-9.:]+', 'ADDRESS', text)[:120]}"
        with self.lock:
            self.counts[text] = self.counts.get(text, 0) + 1


errors = ErrorCounts()


class Nemesis(threading.Thread):
    """Injects one fault at a time: a quiet spell, a fault for a few seconds, heal."""

    def __init__(self, members, net, kinds, seed, stop, election_ms, quiet_s, fault_s):
        super().__init__(daemon=True)
        self.members = members
        self.net = net
        self.kinds = kinds
        self.random = random.Random(seed)
        self.stop_event = stop
        self.election_s = election_ms / 1000
        self.quiet_s = quiet_s
        self.fault_s = fault_s
        self.faults = []  # {"kind", "start", "end", "detail"}
        self.stale_leader = None  # the member a stale-leader fault paused
        self.error = None

    def run(self):
        try:
            while not self.stop_event.wait(self.random.uniform(*self.quiet_s)):
                kind = self.random.choice(self.kinds)
                start = now_ns()
                detail = self.inject(kind)
                length = self.random.uniform(*self.fault_s)
                if kind == "stale-leader":
                    # Paused for all but the last election timeout, so that the others elect a
                    # leader and write; then running but still cut off. Its ticks stopped with
                    # it, so it wakes believing it leads for up to an election timeout: the
                    # window in which a leader that skips the read's quorum round answers from
                    # stale state (thesis 6.4; why 6.4.1's leases need bounded clock drift).
                    self.stop_event.wait(max(length - self.election_s, 0))
                    self.members.resume(self.stale_leader)
                    self.stop_event.wait(min(length, self.election_s))
                else:
                    self.stop_event.wait(length)
                self.heal()
                self.faults.append({"kind": kind, "start": start, "end": now_ns(),
                                    "detail": detail})
        except Exception as error:  # noqa: BLE001 (reported by the main thread)
            self.error = error

    def pick_target(self):
        leader = self.members.leader()
        if leader is not None and self.random.random() < 0.5:
            return leader, "leader"
        target = self.random.randrange(self.members.size)
        return target, "leader" if target == leader else "follower"

    def cut_between(self, groups):
        """Cuts every link between members of different groups, both ways."""
        for a in range(self.members.size):
            for b in range(self.members.size):
                if a != b and groups[a] != groups[b]:
                    self.net.cut(a, b)

    def inject(self, kind):
        size = self.members.size
        everyone = list(range(size))
        if kind == "kill":
            target, role = self.pick_target()
            self.members.kill(target)
            return f"kill -9 m{target} ({role})"
        if kind == "pause":
            target, role = self.pick_target()
            self.members.pause(target)
            return f"SIGSTOP m{target} ({role})"
        if kind == "partition-halves":
            shuffled = self.random.sample(everyone, size)
            minority = set(shuffled[:size // 2])
            self.cut_between([i in minority for i in everyone])
            return f"partition {sorted(minority)} | {sorted(set(everyone) - minority)}"
        if kind == "partition-leader":
            leader = self.members.leader()
            target = leader if leader is not None else self.random.randrange(size)
            self.cut_between([i == target for i in everyone])
            return f"isolate m{target} ({'leader' if target == leader else 'no leader known'})"
        if kind == "stale-leader":
            leader = self.members.leader()
            target = leader if leader is not None else self.random.randrange(size)
            # Paused before it is cut off, so that it never sees the cut while it runs.
            self.members.pause(target)
            self.cut_between([i == target for i in everyone])
            self.stale_leader = target
            role = "leader" if target == leader else "no leader known"
            return f"SIGSTOP m{target} ({role}), isolated, SIGCONT one election timeout before heal"
        if kind == "partition-bridge":
            # Two sides that cannot talk, and one member that talks to both (bridge).
            order = self.random.sample(everyone, size)
            bridge, rest = order[0], order[1:]
            left = set(rest[:len(rest) // 2])
            for a in rest:
                for b in rest:
                    if (a in left) != (b in left):
                        self.net.cut(a, b)
            return f"bridge m{bridge} between {sorted(left)} and {sorted(set(rest) - left)}"
        if kind == "partition-ring":
            # Each member talks only to its two neighbours on a random ring (with 3 members,
            # everyone is a neighbour, so one link of the ring is cut instead).
            order = self.random.sample(everyone, size)
            neighbours = {(order[i], order[(i + 1) % size]) for i in range(size)}
            neighbours |= {(b, a) for a, b in neighbours}
            if size == 3:
                neighbours -= {(order[0], order[2]), (order[2], order[0])}
            for a in everyone:
                for b in everyone:
                    if a != b and (a, b) not in neighbours:
                        self.net.cut(a, b)
            return f"ring {' - '.join(f'm{i}' for i in order)}"
        if kind == "partition-one-way":
            target, role = self.pick_target()
            for other in everyone:
                if other != target:
                    self.net.cut(target, other)
            return f"m{target} ({role}) cannot send, still receives"
        if kind == "fsync":
            # The member must stop rather than acknowledge what it could not make durable.
            target, role = self.pick_target()
            self.members.fail_fsync(target, True)
            return f"fsync fails on m{target} ({role})"
        if kind == "powerloss":
            self.members.power_cut()
            return "power cut: kill -9 of every member, unsynced writes lost"
        if kind == "clock":
            target, role = self.pick_target()
            offset = self.random.choice([-1, 1]) * self.random.choice([5, 60, 3600, 86400])
            self.members.set_clock_offset(target, offset)
            return f"wall clock of m{target} ({role}) jumps {offset:+d} s"
        if kind == "loss":
            probability = self.random.choice([0.05, 0.1, 0.2, 0.3])
            self.net.set_loss(probability)
            return f"loss {probability:.0%} on every peer link"
        if kind == "delay":
            base = self.random.choice([20, 50, 100, 200])
            links = [(a, b) for a in everyone for b in everyone if a != b]
            self.net.set_delay(links, base, base)
            return f"delay {base}-{2 * base} ms on every peer link"
        raise ValueError(kind)

    def heal(self):
        self.net.heal()
        self.members.heal()


def check_replicas(members, timeout_s=30):
    """Every member at the same revision with the same HashKV; a problem message or None."""
    deadline = time.monotonic() + timeout_s
    channels = [grpc.insecure_channel(members.net.client_address(i))
                for i in range(members.size)]
    try:
        target = None
        while target is None and time.monotonic() < deadline:
            try:
                target = etcdrpc.KVStub(channels[0]).Range(
                    etcdrpc.RangeRequest(key=b"nemesis/"), timeout=2).header.revision
            except grpc.RpcError:
                time.sleep(0.3)
        if target is None:
            return "no linearizable read succeeded after healing"
        hashes = {}
        for i, channel in enumerate(channels):
            while time.monotonic() < deadline:
                try:
                    revision = etcdrpc.KVStub(channel).Range(etcdrpc.RangeRequest(
                        key=b"nemesis/", serializable=True), timeout=2).header.revision
                    if revision >= target:
                        answer = etcdrpc.MaintenanceStub(channel).HashKV(
                            etcdrpc.HashKVRequest(revision=target), timeout=5)
                        hashes[i] = (answer.hash, answer.compact_revision)
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
            if i not in hashes:
                return f"m{i} did not reach revision {target} within {timeout_s} s"
        if len(set(hashes.values())) != 1:
            return f"members disagree at revision {target}: " + ", ".join(
                f"m{i} hash {h} compacted at {c}" for i, (h, c) in sorted(hashes.items()))
        return None
    finally:
        for channel in channels:
            channel.close()


def final_reads(net, size, history):
    """A linearizable read of every key used, on every member, after healing: a lost write
    shows up here. A member whose read fails is asked nothing more: it is one the cluster did
    not recover, and would time out on every key."""
    keys = sorted({operation["key"] for operation in history.operations})
    for member in range(size):
        host, port = net.client_address(member).rsplit(":", 1)
        client = etcd3.client(host=host, port=int(port), timeout=CLIENT_TIMEOUT_S)
        try:
            for key in keys:
                read = perform(client, 1000 + member, "get", key, "")
                history.add(read)
                if read["outcome"] != "ok":
                    break
        finally:
            client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", required=True, help="the synod binary")
    parser.add_argument("--checker", required=True, help="the synod-check binary")
    parser.add_argument("--members", type=int, default=3, choices=(3, 5))
    parser.add_argument("--engine", choices=("raft", "multipaxos"), default="raft",
                        help="the members' consensus engine (synod --engine)")
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("60s"))
    parser.add_argument("--faults", default="all",
                        help="comma-separated of " + ",".join(FAULT_KINDS) + ", or all")
    parser.add_argument("--workload", choices=("kv", "lock", "both"), default="kv",
                        help="kv: put/get/delete/cas, checked for linearizability; lock: etcd "
                        "Lock with fenced writes (lock_workload.py); both at once")
    lock_workload.add_arguments(parser)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=6, help="keys in use at any time")
    parser.add_argument("--read-fraction", type=float, default=0.4,
                        help="share of operations that are reads (the rest: put, cas, delete)")
    parser.add_argument("--key-life", type=parse_duration, default=parse_duration("5s"),
                        help="how long keys are used before fresh ones replace them")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quiet", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                        help="seconds between faults")
    parser.add_argument("--fault-length", type=float, nargs=2, default=(2.0, 6.0),
                        metavar=("MIN", "MAX"), help="seconds each fault lasts")
    parser.add_argument("--heartbeat-interval", type=int, default=100)
    parser.add_argument("--election-timeout", type=int, default=1000)
    parser.add_argument("--clock-step-shim", default=None,
                        help="synod-clock-step-shim's .so (needed by the clock fault)")
    parser.add_argument("--liveness-bound", type=float, default=None, metavar="SECONDS",
                        help="most healed time one outage may hold (default: 8 election "
                             "timeouts)")
    parser.add_argument("--results", default=None, help="folder for the results (kept)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the members' data and logs even when no anomaly is found")
    parser.add_argument("--powerloss-shim", default=None,
                        help="the power-loss model's library (synod_powerloss_shim): every kill "
                             "-9 loses what was not fsynced, and the powerloss fault is possible")
    parser.add_argument("--expect-anomaly", action="store_true",
                        help="for a broken build: succeed only if the history's checks "
                             "(linearizability, lock fencing) find an anomaly")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)

    kinds = FAULT_KINDS if args.faults == "all" else args.faults.split(",")
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {','.join(FAULT_KINDS)}")
    if not args.powerloss_shim:
        if args.faults != "all" and POWERLOSS_FAULTS & set(kinds):
            parser.error(f"faults {','.join(sorted(POWERLOSS_FAULTS))} need --powerloss-shim")
        kinds = [k for k in kinds if k not in POWERLOSS_FAULTS]
    if network.namespaces_available():
        net = network.Network(args.members, seed)
    else:
        print("nemesis: no network namespaces here; members on loopback, process faults only",
              file=sys.stderr)
        net = network.Loopback(args.members)
        kinds = [k for k in kinds if k in PROCESS_FAULTS]
    if not kinds:
        parser.error("no fault kind left to inject")
    if "clock" in kinds and not args.clock_step_shim:
        parser.error("the clock fault needs --clock-step-shim (see clock_step_shim.cc)")
    liveness_bound_s = (args.liveness_bound if args.liveness_bound is not None
                        else 8 * args.election_timeout / 1000)

    results = args.results or tempfile.mkdtemp(prefix="nemesis-")
    os.makedirs(results, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix="nemesis-data-")
    print(f"nemesis: seed {seed}, {args.members} members on {args.engine}, {args.duration:.0f} s, "
          f"faults {','.join(kinds)}, results in {results}", flush=True)

    # SIGTERM (a test runner's timeout, a user's kill) stops the run through the cleanup below:
    # members stopped, namespaces removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    net.setup()
    members = Members(args.binary, net, args.members, work_dir, args.heartbeat_interval,
                      args.election_timeout, args.clock_step_shim, args.powerloss_shim,
                      args.engine)
    history = History()
    stop_clients, stop_nemesis = threading.Event(), threading.Event()
    verdict = 2
    try:
        for i in range(args.members):
            members.start(i)
        if not members.wait_healthy(30):
            print("nemesis: the cluster did not become healthy", file=sys.stderr)
            return 2
        members.learn_ids()
        started = now_ns()
        clients = [Client(n, net, args.members, args.keys, history, stop_clients, seed + n,
                          started, args.key_life, args.read_fraction)
                   for n in range(args.clients if args.workload != "lock" else 0)]
        for client in clients:
            client.start()
        locks = lock_workload.LockWorkload(net, args.members, args, seed, outcome_of, History())
        locks.start()
        nemesis = Nemesis(members, net, kinds, seed, stop_nemesis, args.election_timeout,
                          tuple(args.quiet), tuple(args.fault_length))
        nemesis.start()
        while time.monotonic_ns() - started < args.duration * 1e9:
            time.sleep(min(5.0, args.duration))
            print(f"nemesis: {(now_ns() - started) / 1e9:5.0f} s, {len(history.operations)} "
                  f"operations, {len(nemesis.faults)} faults", flush=True)
        stop_nemesis.set()
        nemesis.join()
        nemesis.heal()
        faults_ended = now_ns()
        if nemesis.error is not None:
            raise nemesis.error
        healed = members.wait_healthy(60)
        stop_clients.set()
        for client in clients:
            client.join(timeout=CLIENT_TIMEOUT_S + 5)
        locks.stop()
        # A cluster that does not recover is an anomaly of what is under test (see liveness
        # below), not of the harness: its history is still checked, and the members that answer
        # still get the final reads (a build that loses acknowledged writes can also wedge a
        # member whose log the others no longer match).
        final_reads(net, args.members, history)
        lock_lines, lock_problems = [], []
        if args.workload != "kv":
            lock_lines, lock_problems, no_verdict = locks.check(
                os.path.join(results, "lock-history.jsonl"))
            if no_verdict is not None:
                print(f"nemesis: {no_verdict}", file=sys.stderr)
                return 2
        replica_problem = "not compared: the cluster did not recover"
        if healed:
            replica_problem = check_replicas(members)

        history_path = os.path.join(results, "history.jsonl")
        history.write(history_path)
        with open(os.path.join(results, "faults.json"), "w") as out:
            json.dump(nemesis.faults, out, indent=1)
        try:
            checked = subprocess.run([args.checker, history_path], capture_output=True,
                                     text=True, timeout=CHECKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"nemesis: synod-check did not finish within {CHECKER_TIMEOUT_S} s",
                  file=sys.stderr)
            return 2
        if checked.returncode == 3:
            # The search ran out of its budget on some key: no verdict, which is not a pass.
            print(f"nemesis: synod-check reached no verdict: {checked.stdout}", file=sys.stderr)
            return 2
        if checked.returncode not in (0, 1):
            print(f"nemesis: synod-check failed (exit {checked.returncode}): {checked.stderr}",
                  file=sys.stderr)
            return 2
        liveness_problems = []
        longest_gap_s = None
        # Progress is measured on the key-value clients' operations (lock clients wait on
        # purpose: a Lock call blocks while another client holds it).
        if args.workload != "lock":
            stuck = liveness.outages(history.operations, nemesis.faults, started, faults_ended,
                                     int(liveness_bound_s * 1e9))
            longest_gap_s = liveness.longest_gap_ns(history.operations, started,
                                                    faults_ended) / 1e9
            if stuck:
                liveness_problems.append("NO PROGRESS: " + "; ".join(
                    f"nothing succeeded from {(a - started) / 1e9:.1f} s to "
                    f"{(b - started) / 1e9:.1f} s although every fault was healed for "
                    f"{healed_ns / 1e9:.1f} s of it" for a, b, healed_ns in stuck[:5]))
        if not healed:
            liveness_problems.append("NO RECOVERY: some member answered no linearizable read "
                                     "within 60 s after every fault was healed")
        liveness_problem = "; ".join(liveness_problems) or None
        summary = summarize(args, seed, kinds, history, nemesis.faults, checked, replica_problem,
                            liveness_problem, longest_gap_s, liveness_bound_s, lock_lines,
                            lock_problems)
        with open(os.path.join(results, "summary.txt"), "w") as out:
            out.write(summary)
        timeline.draw(os.path.join(results, "timeline.svg"), history.operations,
                      nemesis.faults, started)
        print(summary, flush=True)
        history_anomaly = checked.returncode == 1 or bool(lock_problems)
        if args.expect_anomaly:
            print("expected anomaly: " + ("found by the history's checks" if history_anomaly
                                          else "NOT found by the history's checks"), flush=True)
            verdict = 1 if history_anomaly else 0
        else:
            verdict = 1 if (history_anomaly or replica_problem or liveness_problem) else 0
    finally:
        stop_nemesis.set()
        stop_clients.set()
        members.stop_all()
        net.teardown()
        # The data of a run that went as expected (a broken build caught) is not needed.
        if verdict == (1 if args.expect_anomaly else 0) and not args.keep_data:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"nemesis: member data and logs kept in {work_dir}", file=sys.stderr)
    if args.expect_anomaly:
        return {0: 1, 1: 0}.get(verdict, verdict)
    return verdict


def summarize(args, seed, kinds, history, faults, checked, replica_problem, liveness_problem,
              longest_gap_s, liveness_bound_s, lock_lines, lock_problems):
    outcomes = {}
    for operation in history.operations:
        key = (operation["op"], operation["outcome"])
        outcomes[key] = outcomes.get(key, 0) + 1
    lines = [f"seed {seed}, {args.members} members on {args.engine}, {args.clients} clients, "
             f"{args.keys} keys at a time (fresh ones every {args.key_life:.0f} s), "
             f"{args.duration:.0f} s, faults: {','.join(kinds)}",
             f"operations: {len(history.operations)} ("
             + ", ".join(f"{kind} {outcome} {count}"
                         for (kind, outcome), count in sorted(outcomes.items())) + ")",
             f"faults injected: {len(faults)}"]
    if errors.counts:
        lines.append("errors (and the outcome they left):")
        for text, count in sorted(errors.counts.items(), key=lambda item: -item[1]):
            lines.append(f"  {count:6} {text}")
    for fault in faults:
        lines.append(f"  {fault['kind']:<18} {fault['detail']} "
                     f"({(fault['end'] - fault['start']) / 1e9:.1f} s)")
    lines.append("linearizability: " + ("ok" if checked.returncode == 0 else "VIOLATION"))
    if checked.returncode != 0:
        lines.append(checked.stdout.rstrip())
    lines.append("replicas: " + (replica_problem or "agree (same HashKV at the same revision)"))
    if longest_gap_s is None and not liveness_problem:
        lines.append("liveness: not measured (no key-value clients)")
    else:
        lines.append("liveness: " + (liveness_problem or
                                     f"ok (no outage held more than {liveness_bound_s:.0f} s of "
                                     f"healed time; the longest stretch without a successful "
                                     f"operation was {longest_gap_s:.1f} s)"))
    lines.extend(lock_lines)
    anomaly = checked.returncode != 0 or replica_problem or liveness_problem or lock_problems
    lines.append("verdict: " + ("ANOMALY" if anomaly else "no anomaly"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
