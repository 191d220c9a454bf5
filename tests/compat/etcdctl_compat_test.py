#!/usr/bin/env python3
"""etcdctl compatibility: the same etcdctl command sequence against real etcd 3.4 and synod.

For every etcdctl v3 command family the test starts a fresh 3-member cluster of real etcd, runs a
scripted sequence of etcdctl invocations (stdout, stderr and exit code captured), stops it, then
does the same against a fresh 3-member synod cluster started with the identical command lines (only
the binary differs; same ports, one kind after the other). Both transcripts are normalised (member,
cluster and lease ids, timings, and a few implementation-specific figures; see `Normaliser`, every
rule says why it is legitimate) and compared; on a difference a unified diff per family is printed.

    etcdctl_compat_test.py --synod BINARY [--etcd /usr/bin/etcd] [--etcdctl /usr/bin/etcdctl]
                           [--families put,get,...] [--work-dir DIR]

Run it inside `tests/fault/in_private_network` (fixed ports on loopback). Every family gets fresh
clusters, so a family that synod does not support yet cannot shift the revisions of the next one.
The normalised transcripts are kept in the work directory (<family>.etcd.txt, <family>.synod.txt)
next to the members' logs.
"""

import argparse
import base64
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fault"))
from synod_cluster import Cluster, Member, terminate_together  # noqa: E402

BASE_PORT = 23790  # m0 client 23790, peer 23791; m1 23792/23793; ...
HEARTBEAT_MS = 100
ELECTION_MS = 1000
CLUSTER_TOKEN = "synod-compat"


# ------------------------------------------------------------------------------------------------
# Clusters


class CompatCluster(Cluster):
    """A 3-member cluster of either kind, plus members added at runtime (which join "existing").

    When `prefer_m0` is set, the followers' election timeout is three times m0's, so that m0 almost
    always wins the first election; `start_cluster` restarts from scratch until it does. Families
    whose output depends on the leader (endpoint status and move-leader name it; etcd sorts
    `lease list` by expiry only on the leader) need a known leader; which member wins an
    election is otherwise a race of randomised timers.
    """

    def __init__(self, binary, base_dir, prefer_m0=False, flags=(), engine=None):
        super().__init__(binary, base_dir, 3, base_port=BASE_PORT, heartbeat_ms=HEARTBEAT_MS,
                         election_ms=ELECTION_MS,
                         extra_flags=["--initial-cluster-token", CLUSTER_TOKEN] + list(flags),
                         engine=engine)
        self.prefer_m0 = prefer_m0

    def command(self, member):
        command = super().command(member)
        if getattr(member, "joins", None):
            command[command.index("--initial-cluster") + 1] = member.joins
            command[command.index("--initial-cluster-state") + 1] = "existing"
        if self.prefer_m0 and member.index != 0:
            command[command.index("--election-timeout") + 1] = str(3 * ELECTION_MS)
        return command

    def stop_all(self):
        """SIGTERM the followers together, then the leader; wait for each. (An etcd leader
        stopped while followers still run first hands leadership to one of them, which then
        spends seconds trying to do the same with followers that are stopping too. A leader
        whose followers are gone stops at once.)"""
        try:
            leader = self.leader()
        except Exception:  # noqa: BLE001
            leader = None
        self.close_clients()
        running = [m for m in self.members if m.process is not None]
        for batch in ([m for m in running if m is not leader], [m for m in running if m is leader]):
            terminate_together([member.process for member in batch])
            for member in batch:
                member.process = None

    def new_member(self, name, index):
        """A member not in the initial cluster, with the next ports (not started, not added)."""
        return Member(index, name, BASE_PORT + 2 * index, BASE_PORT + 2 * index + 1,
                      os.path.join(self.base_dir, name + ".data"),
                      os.path.join(self.base_dir, name + ".log"))

    def wait_until_ready(self, timeout_s=20, publish_timeout_s=0):
        """A leader; every member answers a linearizable read; every member has published its
        name and client URLs (etcd members publish them through Raft right after starting).
        Raises when there is no leader; returns notes on what else did not happen in time."""
        self.wait_for_leader(timeout_s)
        notes = []
        for what, check, limit in (("reads", self._reads_pending, timeout_s),
                                   ("published client URLs", self._publish_pending,
                                    publish_timeout_s)):
            if limit == 0:
                continue
            deadline = time.monotonic() + limit
            pending = check()
            while pending and time.monotonic() < deadline:
                time.sleep(0.05)
                pending = check()
            if pending:
                notes.append(f"{what} not ready after {limit} s: {pending}")
        return notes

    def _reads_pending(self):
        pending = {}
        for member in self.members:
            try:
                self.status(member)
                member.client.get("compat-ready-probe")
            except Exception as error:  # noqa: BLE001
                pending[member.name] = f"read failed: {error}"
        return pending

    def _publish_pending(self):
        try:
            listed = {m.name: list(m.client_urls) for m in self.members[0].client.members}
        except Exception as error:  # noqa: BLE001
            return {"member list": str(error)}
        if all(listed.get(m.name) == [m.client_url] for m in self.members):
            return {}
        return {"m0's member list": listed}


def start_cluster(binary, base_dir, prefer_m0, wait_publish, flags=(), engine=None):
    """A fresh, ready cluster; with prefer_m0, one whose leader is m0; with wait_publish, up to
    5 s more until m0's member list shows every member's client URL. Returns (cluster, notes)."""
    for attempt in range(12):
        shutil.rmtree(base_dir, ignore_errors=True)
        os.makedirs(base_dir)
        cluster = CompatCluster(binary, base_dir, prefer_m0, flags, engine)
        try:
            cluster.start_all()
            leader = cluster.wait_for_leader()
            if prefer_m0 and leader is not cluster.members[0]:
                cluster.stop_all()
                continue
            return cluster, cluster.wait_until_ready(publish_timeout_s=5 if wait_publish else 0)
        except BaseException:
            cluster.stop_all()
            raise
    cluster, notes = start_cluster(binary, base_dir, False, wait_publish, flags, engine)
    return cluster, notes + ["m0 did not win the first election in 12 fresh clusters"]


# ------------------------------------------------------------------------------------------------
# Running etcdctl and recording what it prints


class Record:
    def __init__(self, command, stdout="", stderr="", rc=None, note=None, sort_stderr=False):
        self.command = command
        self.stdout = stdout
        self.stderr = stderr
        self.rc = rc
        self.note = note
        self.sort_stderr = sort_stderr


class Background:
    """An etcdctl process left running (watch, lock, elect); its output goes to files."""

    def __init__(self, session, display, argv, out_path, err_path):
        self.session = session
        self.display = display
        self.out_path = out_path
        self.err_path = err_path
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=err, env=session.env)

    def output(self):
        with open(self.out_path, "rb") as out:
            return out.read().decode(errors="replace")

    def wait_for(self, text, timeout_s=5.0):
        """Until stdout contains `text` or the process exits; bounded. True when it appeared."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                return text in self.output()
            time.sleep(0.05)
        return False

    def wait_exit(self, timeout_s=5.0):
        try:
            self.process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, sig=signal.SIGINT):
        """Signals it (unless it already exited), waits, and records everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with open(self.err_path, "rb") as err:
            stderr = err.read().decode(errors="replace")
        self.session.records.append(Record(self.display + "   # in the background", self.output(),
                                           stderr, self.process.returncode))
        self.session.background.remove(self)


# Stands for an id that etcdctl did not print (the command that makes it failed).
NO_ID = "0badbad"


class Session:
    """One family against one cluster: etcdctl invocations, their records and the ids to hide."""

    def __init__(self, kind, cluster, etcdctl, work_dir):
        self.kind = kind
        self.cluster = cluster
        self.etcdctl = etcdctl
        self.work_dir = work_dir
        self.records = []
        self.background = []
        self.counter = 0
        # id value -> placeholder. Members by name, the cluster, leases by order of appearance
        # in the script (the same order for both kinds, since the script decides it).
        self.ids = {}
        self.lease_count = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        self.env["ETCDCTL_API"] = "3"
        self.added_members = []  # placeholders of members added at runtime
        self.ready_at = time.monotonic()
        for member in cluster.members:
            try:
                status = cluster.status(member)
            except Exception as error:  # noqa: BLE001
                self.note(f"setup: {member.name} does not answer Status: {error}")
                continue
            self.ids[status.header.member_id] = f"<member-{member.name}>"
            self.ids[status.header.cluster_id] = "<cluster>"

    # Endpoints
    def url(self, index):
        return self.cluster.members[index].client_url

    def all_urls(self):
        return ",".join(self.url(i) for i in range(3))

    def _argv(self, args, endpoints):
        endpoints = endpoints or self.url(0)
        argv = [self.etcdctl, f"--endpoints={endpoints}", "--dial-timeout=3s",
                "--command-timeout=10s"] + [str(a) for a in args]
        shown = ["etcdctl"] + ([f"--endpoints={endpoints}"] if endpoints != self.url(0) else [])
        return argv, shlex.join(shown + [str(a) for a in args])

    def ctl(self, *args, stdin=None, endpoints=None, timeout=30, sort_stderr=False):
        """Runs etcdctl to completion and records it. Default endpoint: m0 only, so that the
        member answering (shown in -w json headers) is always the same one."""
        argv, display = self._argv(args, endpoints)
        try:
            done = subprocess.run(argv, input=(stdin or "").encode(), capture_output=True,
                                  env=self.env, timeout=timeout)
            record = Record(display, done.stdout.decode(errors="replace"),
                            done.stderr.decode(errors="replace"), done.returncode,
                            sort_stderr=sort_stderr)
        except subprocess.TimeoutExpired as expired:
            record = Record(display, (expired.stdout or b"").decode(errors="replace"),
                            (expired.stderr or b"").decode(errors="replace"),
                            f"killed after {timeout} s")
        self.records.append(record)
        self.harvest(record.stdout)
        return record

    def run(self, args, stdin=None, endpoints=None):
        """Runs etcdctl without recording it (for harness probes); the CompletedProcess."""
        return subprocess.run(self._argv(args, endpoints)[0], input=(stdin or "").encode(),
                              capture_output=True, env=self.env, timeout=60)

    # Keys of etcdctl lock and elect end in the hex id of the session's lease.
    SESSION_KEY = re.compile(r"(?:mylock|myelection)/([0-9a-f]+)")

    def harvest(self, text):
        """Registers the lease ids in lock and election keys that `text` shows."""
        for match in self.SESSION_KEY.finditer(text):
            self.lease(match.group(1))

    def bg(self, *args, endpoints=None):
        argv, display = self._argv(args, endpoints)
        self.counter += 1
        base = os.path.join(self.work_dir, f"bg{self.counter}")
        process = Background(self, display, argv, base + ".out", base + ".err")
        self.background.append(process)
        return process

    def note(self, text):
        """An observation of the harness, compared like output (e.g. 'the waiter printed nothing
        while the lock was held: True')."""
        self.records.append(Record(None, note=text))

    def lease(self, hex_or_dec, base=16):
        """Registers a lease id (from etcdctl output) to be shown as <lease-N>; returns its hex."""
        value = int(hex_or_dec, base)
        if value not in self.ids:
            self.lease_count += 1
            self.ids[value] = f"<lease-{self.lease_count}>"
        return f"{value:x}"

    def granted_lease(self, record):
        """The lease id of a `lease grant` output (simple or json), registered; or NO_ID."""
        match = re.search(r"lease ([0-9a-f]+) granted", record.stdout)
        if match:
            return self.lease(match.group(1))
        match = re.search(r'"ID":(\d+)', record.stdout)
        if match:
            return self.lease(match.group(1), 10)
        return NO_ID  # the grant failed; later commands then fail too (and differ)

    def member_id(self, record, name):
        """The member id in `member add` output, registered as <member-NAME>; hex."""
        match = re.search(r"Member\s+([0-9a-f]+) added", record.stdout)
        if not match:
            return NO_ID
        value = int(match.group(1), 16)
        self.ids[value] = f"<member-{name}>"
        return f"{value:x}"

    def hex_id(self, index):
        try:
            return f"{self.cluster.status(self.cluster.members[index]).header.member_id:x}"
        except Exception:  # noqa: BLE001
            return NO_ID

    def stop_background(self):
        for process in list(self.background):
            process.stop(signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# Normalisation. Everything not rewritten here must be byte-for-byte equal: keys, values,
# revisions, versions, counts, error messages, exit codes, order of lines.

DURATION = r"(?:\d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h))+"
SLACK_S = 3  # a remaining TTL may be this much lower than the granted one (see below)


class Normaliser:
    def __init__(self, ids, work_dir, added_members):
        self.ids = ids
        self.work_dir = work_dir
        self.added = added_members  # placeholders of members added at runtime

    # Ids: member and cluster ids are hashes of URLs, token and (for members added at runtime)
    # the time; lease ids come from a per-member generator seeded by the clock in etcd. The brief
    # allows normalising them: they are opaque to clients. Both the hex forms (%x, %016x, %16x)
    # and the decimal forms (-w json, -w fields) are replaced, as whole tokens only.
    def ids_(self, text):
        for value, label in sorted(self.ids.items(), key=lambda kv: -kv[0]):
            text = re.sub(rf"(?<![0-9a-zA-Z])0*{value:x}(?![0-9a-zA-Z])", label, text)
            text = re.sub(rf"(?<![0-9]){value}(?![0-9])", label, text)
        # etcdctl prints member ids in "Member %16x added/removed/promoted" padded with spaces
        # to 16 characters: the padding belongs to the id.
        return re.sub(r"^Member +<member-", "Member <member-", text, flags=re.M)

    @staticmethod
    def zap_line(line):
        """etcdctl's client library logs (zap JSON on stderr): timestamps, source lines of the Go
        client, the client's random connection uuid, durations and byte sizes (the snapshot size
        is the size of the server's own database file) say nothing about the server's API, and a
        retried call logs once per attempt (how many depends on timing): kept are the level, the
        message and the other fields."""
        try:
            entry = json.loads(line)
        except ValueError:
            return line
        if not isinstance(entry, dict) or "level" not in entry or "msg" not in entry:
            return line
        fields = []
        for key, value in entry.items():
            if key in ("level", "msg", "ts", "caller", "attempt"):
                continue
            if key == "took":
                value = "<duration>"
            if key == "size":
                value = "<size>"
            if key == "target":
                value = re.sub(r"client-[0-9a-f-]+", "client-<uuid>", str(value))
            fields.append(f"{key}={value}")
        return f"[log {entry['level']}] {entry['msg']} " + " ".join(fields)

    def json_value(self, obj):
        """-w json: raft term and indexes, database sizes and durations are implementation
        specific (etcd counts its own config-change and no-op entries and sizes its bbolt file;
        the term depends on how many elections it took); remaining TTLs are timings."""
        if isinstance(obj, list):
            return [self.json_value(v) for v in obj]
        if type(obj) is int and obj in self.ids:
            return self.ids[obj]  # as a string, so that the line stays JSON
        if not isinstance(obj, dict):
            return obj
        out = {}
        for key, value in obj.items():
            if key in ("raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "dbSize",
                       "dbSizeInUse"):
                value = f"<{key}>"
            elif key == "took" and isinstance(value, str):
                value = "<duration>"
            elif key in ("key", "value") and isinstance(value, str):
                value = self.base64_ids(value)
            elif key in ("hash", "totalSize", "totalKey") and "revision" in obj:
                # snapshot status: the hash and size of the database file, and its key count,
                # which includes etcd's internal buckets (members, meta); the revision stays.
                value = f"<{key}>"
            else:
                value = self.json_value(value)
            out[key] = value
        if isinstance(out.get("keys"), list) and "granted-ttl" in out:
            out["keys"] = sorted(out["keys"])  # etcd lists a lease's keys from a Go map
        if isinstance(out.get("ttl"), int) and isinstance(out.get("granted-ttl"), int):
            out["ttl"] = Normaliser.remaining(out["granted-ttl"], out["ttl"])
        return out

    def base64_ids(self, value):
        """-w json shows keys and values in base64; a lock's or an election's key ends in the
        hex lease id of its session (the id rule above, inside the base64 text). Only values
        that change are shown decoded, as base64(<text with placeholders>)."""
        try:
            text = base64.b64decode(value, validate=True).decode()
        except ValueError:
            return value
        replaced = self.ids_(text)
        return value if replaced == text else f"base64({replaced})"

    @staticmethod
    def remaining(granted, remaining):
        """A lease's remaining TTL right after it was granted or renewed is the granted TTL less
        the time taken by the commands in between (and rounding): within SLACK_S it is shown as
        <remaining~granted>. Anything else stays, so a wrong TTL still shows."""
        if granted > 0 and int(remaining) >= 0 and 0 <= granted - int(remaining) <= SLACK_S:
            return "<remaining~granted>"
        return remaining

    def table(self, lines):
        """ASCII tables: cells are compared stripped (column widths follow the normalised
        contents); columns that hold implementation-specific figures or timings are replaced."""
        header = None
        out = []
        for line in lines:
            if line.startswith("+"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            else:
                for i, name in enumerate(header):
                    if i < len(cells) and name in ("DB SIZE", "RAFT TERM", "RAFT INDEX",
                                                   "RAFT APPLIED INDEX", "TOOK", "HASH",
                                                   "TOTAL SIZE", "TOTAL KEYS"):
                        cells[i] = f"<{name.lower()}>"
            out.append("| " + " | ".join(cells) + " |")
        return out

    def stream(self, text):
        lines = text.split("\n")
        out = []
        table = []
        for line in lines:
            if line.startswith("+-") or (line.startswith("|") and table):
                table.append(line)
                continue
            if table:
                out += self.table(table)
                table = []
            stripped = line.strip()
            if stripped.startswith("{") or stripped.startswith("["):
                try:
                    obj = json.loads(stripped)
                    if isinstance(obj, dict) and "level" in obj and "msg" in obj:
                        line = self.zap_line(stripped)
                    else:
                        line = json.dumps(self.json_value(obj), separators=(",", ":"))
                except ValueError:
                    pass
            out.append(line)
        if table:
            out += self.table(table)
        text = "\n".join(out)
        # Collapse consecutive identical log lines (retries).
        text = re.sub(r"^(\[log [^\n]*\n)(?:\1)+", r"\1", text, flags=re.M)
        # -w fields: the same figures as in -w json.
        text = re.sub(r'^"(RaftTerm|RaftIndex|RaftAppliedIndex|DBSize|Hash|Size|Keys)" : .*$',
                      r'"\1" : <\1>', text, flags=re.M)
        text = re.sub(r'^"Took" : .*$', '"Took" : <duration>', text, flags=re.M)
        text = re.sub(r'^("TTL" : )(-?\d+)\n("GrantedTTL" : )(\d+)$',
                      lambda m: m.group(1) + str(self.remaining(int(m.group(4)), m.group(2)))
                      + "\n" + m.group(3) + m.group(4), text, flags=re.M)
        # Simple endpoint status rows: endpoint, id, version, db size, is leader, is learner,
        # raft term, raft index, raft applied index, errors; the same figures as in -w json.
        text = re.sub(r"^(http://[^,\s]+), ([^,]+), ([^,]+), [^,]+, (true|false), (true|false), "
                      r"\d+, \d+, \d+, ",
                      r"\1, \2, \3, <db size>, \4, \5, <raft term>, <raft index>, "
                      r"<raft applied index>, ", text, flags=re.M)
        # Timings: endpoint health, check perf measurements, lease remaining TTLs.
        text = re.sub(rf"took = {DURATION}", "took = <duration>", text)
        text = re.sub(r"granted with TTL\((\d+)s\), remaining\((-?\d+)s\)",
                      lambda m: f"granted with TTL({m.group(1)}s), remaining("
                      f"{self.remaining(int(m.group(1)), m.group(2))}s)", text)
        # etcd lists a lease's attached keys by iterating a Go map: in random order.
        text = re.sub(r"attached keys\(\[([^\]\n]*)\]\)",
                      lambda m: f"attached keys([{' '.join(sorted(m.group(1).split(' ')))}])", text)
        # check perf prints measurements of its own run (rate, slowest request, deviation);
        # whether each passed (PASS / FAIL lines, exit code) is still compared.
        text = re.sub(r"(Throughput is|Throughput too low:) \d+ writes/s", r"\1 <N> writes/s",
                      text)
        text = re.sub(r"(Slowest request took|Slowest request took too long:|Stddev is"
                      r"|Stddev too high:) [0-9.]+s", r"\1 <seconds>", text)
        # check perf's progress bar: redrawn with \r every second, its last state (counts,
        # percentage, elapsed time) followed on the same line by the first result line.
        text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
        text = re.sub(r"^ *\d+ / \d+ +[0-9.]+% +[0-9hms.]+ *", "<progress bar>\n", text,
                      flags=re.M)
        return text

    def members_last(self, text):
        """A member added at runtime gets an id hashed from the time, and etcd lists members
        sorted by id: its position among the others is random. Its rows (table, simple, and
        its entry in ETCD_INITIAL_CLUSTER or a json members array) are moved after the others,
        in the order the script added them; the order of the initial members, whose ids are
        fixed, is still compared."""
        if not self.added:
            return text
        names = [label[len("<member-"):-1] for label in self.added]

        def rank(line):  # which added member a row is about, in the order they were added
            return min((i for i, label in enumerate(self.added) if label in line), default=-1)

        def is_added(line):
            return rank(line) >= 0
        lines = text.split("\n")
        out, block, moved = [], [], []
        for line in lines + [None]:
            if line is not None and re.match(r"^(\| |<member-|http://)", line):
                (moved if is_added(line) else block).append(line)
                continue
            out += block + sorted(moved, key=rank)
            block, moved = [], []
            if line is not None:
                out.append(line)
        text = "\n".join(out)

        def reorder_cluster(m):
            entries = m.group(2).split(",")
            keep = [e for e in entries if e.split("=")[0] not in names]
            last = sorted((e for e in entries if e.split("=")[0] in names),
                          key=lambda e: names.index(e.split("=")[0]))
            return m.group(1) + ",".join(keep + last) + '"'
        text = re.sub(r'^(ETCD_INITIAL_CLUSTER=")([^"]*)"', reorder_cluster, text, flags=re.M)

        def reorder_json(line):
            try:
                obj = json.loads(line)
            except ValueError:
                return line
            if isinstance(obj, dict) and isinstance(obj.get("members"), list):
                ms = obj["members"]
                obj["members"] = ([m for m in ms if str(m.get("ID")) not in self.added]
                                  + sorted((m for m in ms if str(m.get("ID")) in self.added),
                                           key=lambda m: self.added.index(m["ID"])))
                return json.dumps(obj, separators=(",", ":"))
            if isinstance(obj, list):  # endpoint status/health --cluster: one entry a member

                def added(entry):
                    text = json.dumps(entry, separators=(",", ":"))
                    return min((i for i, label in enumerate(self.added)
                                if f'"member_id":"{label}"' in text), default=-1)
                obj = ([e for e in obj if added(e) < 0]
                       + sorted((e for e in obj if added(e) >= 0), key=added))
                return json.dumps(obj, separators=(",", ":"))
            return line
        return "\n".join(reorder_json(line) for line in text.split("\n"))

    def record(self, record):
        if record.note is not None:
            return "# " + self.ids_(record.note.replace(self.work_dir, "<dir>")) + "\n"
        parts = ["$ " + record.command]
        stdout = self.stream(record.stdout)
        stderr = self.stream(record.stderr)
        if record.sort_stderr:
            # endpoint health prints one line per endpoint in the order its goroutines finish.
            stderr = "\n".join(sorted(line for line in stderr.split("\n") if line))
        if stdout.strip():
            parts.append(stdout.rstrip("\n"))
        if stderr.strip():
            parts.append("\n".join("stderr| " + line for line in stderr.rstrip("\n").split("\n")))
        parts.append(f"[exit {record.rc}]")
        # Each kind runs in its own work directory (to keep both kinds' logs): the paths of
        # snapshot files differ by that prefix only.
        text = "\n".join(parts).replace(self.work_dir, "<dir>")
        # endpoint health -w json/table: the same completion order.
        if record.sort_stderr:
            text = self.sort_health(text)
        return self.members_last(self.ids_(text)) + "\n"

    @staticmethod
    def sort_health(text):
        """endpoint health (-w json / table / simple) lists endpoints in the order their checks
        finished, a race: sort the json array and the table rows."""
        out = []
        for line in text.split("\n"):
            try:
                obj = json.loads(line)
                if isinstance(obj, list):
                    obj.sort(key=lambda h: str(h.get("endpoint")))
                    line = json.dumps(obj, separators=(",", ":"))
            except ValueError:
                pass
            out.append(line)
        lines = out
        rows = [i for i, line in enumerate(lines) if line.startswith("| http")]
        if rows:
            ordered = sorted(lines[i] for i in rows)
            for i, line in zip(rows, ordered):
                lines[i] = line
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The families. Each is a function of a Session; revisions start at 1 on the fresh cluster.

# etcdctl txn reads compares, success ops and failure ops from stdin, each section ended by an
# empty line.
TXN_SUCCESS = """value("t1") = "v1"
version("t1") = "1"
create("t1") = "2"
mod("t1") > "1"

put t2 "success value"
get t1
get --prefix t

put t2 failure

"""

TXN_FAILURE = """value("t1") = "nope"
version("t2") < "5"

put t2 unused

put t3 "from failure"
del t1 --prev-kv
get t --prefix --keys-only

"""


def family_put(s):
    s.ctl("put", "foo", "bar")
    s.ctl("put", "foo", "bar2", "--prev-kv")
    s.ctl("put", "foo", "bar3", "--prev-kv", "-w", "json")
    s.ctl("put", "foo", "bar4", "-w", "fields")
    s.ctl("put", "foo", "--ignore-value", "-w", "json")
    s.ctl("put", "nokey", "--ignore-value")
    s.ctl("put", "foo", "bar5", "--ignore-lease")
    s.ctl("put", "nokey", "v", "--ignore-lease")
    s.ctl("put", "", "empty key")
    s.ctl("put", "from-stdin", stdin="value from stdin\nsecond line\n")
    s.ctl("put", "leased", "v", "--lease=1234abcd")
    s.ctl("put", "--", "-dash", "-value")
    s.ctl("put", "spaces key", "value with spaces")
    s.ctl("put", "big", stdin="x" * (1600 * 1024))  # over 1.5 MiB
    s.ctl("put", "empty-value", "")
    s.ctl("get", "", "--prefix", "-w", "json")


def put_get_fixture(s):
    for key, value in (("a", "1"), ("b", "2"), ("c", "3"), ("d/1", "x"), ("d/2", "y"),
                       ("d/3", "z"), ("e", "5"), ("b", "22"), ("d/2", "yy")):
        s.ctl("put", key, value)


def family_get(s):
    put_get_fixture(s)  # revisions 2..10
    s.ctl("get", "a")
    s.ctl("get", "a", "-w", "json")
    s.ctl("get", "b", "-w", "fields")
    s.ctl("get", "a", "--hex")
    s.ctl("get", "missing")
    s.ctl("get", "missing", "-w", "json")
    s.ctl("get", "")
    s.ctl("get", "a", "c")
    s.ctl("get", "--prefix", "d/")
    s.ctl("get", "--prefix", "d/", "-w", "json")
    s.ctl("get", "--from-key", "c")
    s.ctl("get", "--from-key", "", "--keys-only")
    s.ctl("get", "--prefix", "", "--print-value-only")
    s.ctl("get", "--prefix", "", "--limit", "3", "-w", "json")
    s.ctl("get", "--prefix", "", "--limit", "2", "--keys-only")
    for sort_by in ("CREATE", "KEY", "MODIFY", "VALUE", "VERSION"):
        for order in ("ASCEND", "DESCEND"):
            s.ctl("get", "--prefix", "", "--sort-by", sort_by, "--order", order, "--keys-only")
    s.ctl("get", "--prefix", "", "--order", "DESCEND", "--limit", "2")
    # (etcdctl 3.4 has no --count-only or --min/max-*-revision filters; the count shows in the
    # json and fields output, with "more" when --limit cut the answer.)
    s.ctl("get", "--prefix", "", "--limit", "1", "-w", "fields")
    s.ctl("get", "--prefix", "d/", "-w", "fields")
    s.ctl("get", "--prefix", "", "--keys-only", "-w", "json")
    s.ctl("get", "--prefix", "", "--sort-by", "MODIFY", "--order", "DESCEND", "--limit", "3",
          "-w", "json")
    s.ctl("get", "b", "--rev", "3")
    s.ctl("get", "b", "--rev", "9", "-w", "json")
    s.ctl("get", "b", "--rev", "2")
    s.ctl("get", "--prefix", "d/", "--rev", "6")
    s.ctl("get", "a", "--rev", "100")
    s.ctl("get", "b", "--print-value-only")
    s.ctl("get", "a", "--consistency", "s", "-w", "json")
    # A follower: a linearizable read first (it waits for the follower to catch up), then a
    # serializable one, which answers from the follower's own state.
    s.ctl("get", "d/2", "-w", "json", endpoints=s.url(2))
    s.ctl("get", "d/2", "--consistency", "s", endpoints=s.url(2))
    s.ctl("get", "d/", "--from-key", "--rev", "7", "--keys-only")
    s.ctl("get", "--prefix", "", "--rev", "5", "--limit", "2", "-w", "json")


def family_del(s):
    for key in ("a", "b", "c", "d/1", "d/2", "d/3", "e", "f"):
        s.ctl("put", key, "v-" + key)  # revisions 2..9
    s.ctl("del", "a")
    s.ctl("del", "a")
    s.ctl("del", "b", "--prev-kv")
    s.ctl("del", "--prefix", "d/", "--prev-kv", "-w", "json")
    s.ctl("del", "c", "e")
    s.ctl("del", "--from-key", "e", "-w", "fields")
    s.ctl("get", "", "--prefix", "-w", "json")
    s.ctl("del", "--prefix", "")
    s.ctl("del", "")
    s.ctl("put", "g", "again")
    s.ctl("del", "--prefix", "", "--prev-kv", "-w", "json")


def family_txn(s):
    s.ctl("put", "t1", "v1")  # revision 2
    s.ctl("put", "t2", "0")   # revision 3
    s.ctl("txn", stdin=TXN_SUCCESS)
    s.ctl("txn", "-w", "json", stdin=TXN_FAILURE)
    s.ctl("txn", "-w", "fields", stdin=TXN_SUCCESS)  # t1 is gone now: failure branch
    s.ctl("txn", stdin='version("missing") = "0"\n\nput t4 created\n\n\n')
    s.ctl("txn", "-w", "json", stdin="\nget t --prefix --keys-only\n\n\n")  # no compares
    s.ctl("txn", stdin='val("t2") < "z"\n\ndel t4 --prev-kv\nput t5 x --prev-kv\n'
          'put t2 y --prev-kv\n\n\n')
    s.ctl("txn", stdin='mod("t2") > "8"\n\nput d1 a\nput d1 b\n\n\n')  # duplicate key
    s.ctl("txn", stdin='val("t2") < "z"\n\ndel t --prefix\nput t5 x\n\n\n')  # overlap
    s.ctl("txn", stdin='value("t2") = "a" junk\n\n\n\n')
    s.ctl("txn", stdin='value("t2") = "y"\n\nput t6\n\n\n')
    s.ctl("txn", stdin='value("t2") = "y"\n\nput t6 v\n')  # input ends early
    s.ctl("txn", "--interactive", stdin='create("t5") > "0"\n\nget t5\n\nget none\n\n')
    s.ctl("get", "", "--prefix", "-w", "json")


def family_compaction(s):
    for i in range(1, 6):
        s.ctl("put", "c", f"v{i}")  # revisions 2..6
    s.ctl("put", "d", "x")  # revision 7
    s.ctl("compaction", "4")
    s.ctl("get", "c", "--rev", "3")
    s.ctl("get", "c", "--rev", "4")
    s.ctl("get", "c", "--rev", "5", "-w", "json")
    s.ctl("compaction", "4")
    s.ctl("compaction", "3")
    s.ctl("compaction", "100")
    s.ctl("compaction", "--physical", "6")
    s.ctl("get", "c", "--rev", "5")
    s.ctl("get", "c", "-w", "json")
    s.ctl("put", "c", "after")
    s.ctl("get", "c", "--rev", "6", "-w", "json")


def family_watch(s):
    s.ctl("put", "w/a", "1")  # 2
    s.ctl("put", "w/b", "1")  # 3
    s.ctl("put", "x", "1")    # 4
    s.ctl("put", "w/a", "2")  # 5
    s.ctl("del", "w/b")       # 6
    # History replay from revision 2, then live events on top (--rev makes registration timing
    # irrelevant: every event from revision 2 on is delivered, whenever the watch registered).
    watcher = s.bg("watch", "--prefix", "w/", "--prev-kv", "--rev", "2")
    s.note(f"history delivered: {watcher.wait_for('DELETE')}")
    s.ctl("put", "w/c", "3")  # 7
    s.ctl("del", "w/a")       # 8
    s.ctl("put", "x", "2")    # 9 (not watched)
    s.ctl("put", "w/end", "done")  # 10
    s.note(f"live events delivered: {watcher.wait_for('w/end')}")
    watcher.stop()
    # A live watch (from the next revision) on a key range [w/a, w/c).
    ranged = s.bg("watch", "w/a", "w/c", "--rev", "11")
    s.ctl("put", "w/b", "in range")  # 11
    s.ctl("put", "w/c", "not in range")  # 12
    s.ctl("put", "w/a", "last")  # 13
    s.note(f"range events delivered: {ranged.wait_for('last')}")
    ranged.stop()
    # Pure history (nothing is written while these run): -w json shows the response headers.
    history = s.bg("watch", "w/a", "--rev", "2", "-w", "json")
    history.wait_for('"mod_revision":13')
    history.stop()
    execs = s.bg("watch", "--prefix", "w/", "--rev", "7", "--", "sh", "-c",
                 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE '
                 '$ETCD_WATCH_REVISION"')
    execs.wait_for('"w/a" "last"')
    execs.stop()
    s.ctl("watch")
    s.ctl("watch", "k", "--")
    # Watching from a compacted revision: the server cancels the watch.
    s.ctl("compaction", "10")
    compacted = s.bg("watch", "w/a", "--rev", "3")
    s.note(f"watch on a compacted revision ended by itself: {compacted.wait_exit(5)}")
    compacted.stop()
    # A watch that starts exactly at the compacted revision still works.
    at_compact = s.bg("watch", "--prefix", "w/", "--rev", "10")
    at_compact.wait_for("last")
    at_compact.stop()


def family_lease(s):
    l1 = s.granted_lease(s.ctl("lease", "grant", "600"))
    l2 = s.granted_lease(s.ctl("lease", "grant", "300", "-w", "json"))
    s.ctl("put", "lk1", "v1", f"--lease={l1}")
    s.ctl("put", "lk2", "v2", f"--lease={l1}")
    s.ctl("put", "lk3", "v3", f"--lease={l2}")
    s.ctl("get", "lk1", "-w", "json")
    s.ctl("lease", "timetolive", l1)
    s.ctl("lease", "timetolive", l1, "--keys")
    s.ctl("lease", "timetolive", l1, "--keys", "-w", "json")
    s.ctl("lease", "timetolive", l2, "-w", "fields")
    s.ctl("lease", "list")  # sorted by expiry: l2 (300 s) before l1 (600 s)
    s.ctl("lease", "list", "-w", "json")
    s.ctl("lease", "keep-alive", "--once", l1)
    s.ctl("lease", "keep-alive", "--once", l2, "-w", "json")
    s.ctl("put", "lk1", "v1b", "--ignore-lease")
    s.ctl("get", "lk1", "-w", "json")
    s.ctl("lease", "revoke", l1)
    s.ctl("get", "lk", "--prefix", "-w", "json")
    s.ctl("lease", "timetolive", l1)
    s.ctl("lease", "timetolive", l1, "-w", "json")
    s.ctl("lease", "revoke", l1)
    s.ctl("lease", "keep-alive", "--once", l1)
    s.ctl("lease", "revoke", "1234abcd")
    s.ctl("lease", "timetolive", "1234abcd")
    s.ctl("lease", "list")
    s.ctl("put", "lk4", "v4", f"--lease={l1}")
    s.ctl("lease", "grant", "9000000001")
    # A short lease expires by itself (etcd raises a TTL below its minimum, 1.5 election
    # timeouts rounded up, to that minimum; here 2 s).
    l3 = s.granted_lease(s.ctl("lease", "grant", "1"))
    s.ctl("put", "short", "lived", f"--lease={l3}")
    deadline = time.monotonic() + 10
    expired = False
    while time.monotonic() < deadline and not expired:
        time.sleep(0.2)
        probe = subprocess.run(s._argv(["get", "short", "--print-value-only"], None)[0],
                               capture_output=True, env=s.env)
        expired = probe.stdout == b"" and probe.returncode == 0
    s.note(f"the key attached to the 1 s lease disappeared within 10 s: {expired}")
    s.ctl("get", "short", "-w", "json")
    s.ctl("lease", "timetolive", l3)
    s.ctl("lease", "list")
    # keep-alive (not --once) renews every TTL/3 s until the lease is gone; the server then
    # answers a renewal with TTL 0 and etcdctl prints "expired or revoked" and exits.
    l4 = s.granted_lease(s.ctl("lease", "grant", "9"))
    keeper = s.bg("lease", "keep-alive", l4)
    s.note(f"keep-alive printed its first renewal: {keeper.wait_for('keepalived')}")
    s.ctl("lease", "revoke", l4)
    s.note(f"keep-alive ended by itself within 8 s of the revoke: {keeper.wait_exit(8)}")
    keeper.stop()


def family_lock(s):
    s.ctl("lock", "mylock", "--", "echo", "hi")
    s.ctl("lock", "mylock", "--", "sh", "-c", 'echo "key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV"')
    s.ctl("lock", "mylock", "--", "sh", "-c", "exit 3")
    holder = s.bg("lock", "mylock")
    held = holder.wait_for("mylock/")
    s.note(f"the first locker printed its key: {held}")
    s.harvest(holder.output())
    waiter = s.bg("lock", "--ttl", "30", "mylock", "--", "echo", "second got the lock")
    time.sleep(1.0)
    s.note(f"the second locker is still waiting after 1 s: {waiter.process.poll() is None} "
           f"and printed: {waiter.output()!r}")
    s.ctl("get", "mylock", "--prefix", "--keys-only")
    s.ctl("get", "mylock", "--prefix", "-w", "json")
    holder.stop(signal.SIGINT)  # etcdctl unlocks on SIGINT
    s.note(f"the second locker ran its command and exited: {waiter.wait_exit(10)}")
    waiter.stop()
    s.ctl("get", "mylock", "--prefix", "--keys-only")
    s.ctl("lock")


def family_elect(s):
    first = s.bg("elect", "myelection", "p1")
    s.note(f"the first candidate was elected: {first.wait_for('p1')}")
    s.harvest(first.output())
    observer = s.bg("elect", "-l", "myelection")
    s.note(f"the observer saw the first leader: {observer.wait_for('p1')}")
    second = s.bg("elect", "myelection", "p2")
    time.sleep(1.0)
    s.note(f"the second candidate is still waiting after 1 s: {second.process.poll() is None} "
           f"and printed: {second.output()!r}")
    s.ctl("get", "myelection", "--prefix", "--keys-only")
    s.ctl("get", "myelection", "--prefix", "-w", "json")
    first.stop(signal.SIGINT)  # resigns
    s.note(f"the second candidate was elected: {second.wait_for('p2')}")
    s.note(f"the observer saw the second leader: {observer.wait_for('p2')}")
    observer.stop()
    second.stop(signal.SIGINT)
    s.ctl("get", "myelection", "--prefix", "--keys-only")
    s.ctl("elect", "myelection")


def family_member(s):
    cluster = s.cluster
    s.ctl("member", "list")
    s.ctl("member", "list", "-w", "json")
    s.ctl("member", "list", "-w", "table")
    s.ctl("member", "list", "-w", "fields", endpoints=s.url(1))
    # etcd (--strict-reconfig-check, on by default) refuses membership changes until the
    # members have been connected for 5 s ("etcdserver: unhealthy cluster").
    time.sleep(max(0.0, s.ready_at + 5.5 - time.monotonic()))
    m3 = cluster.new_member("m3", 3)
    s.added_members.append("<member-m3>")
    added = s.ctl("member", "add", "m3", f"--peer-urls={m3.peer_url}", "--learner")
    m3_id = s.member_id(added, "m3")
    s.ctl("member", "list")
    s.ctl("member", "list", "-w", "json")
    s.ctl("member", "promote", m3_id)  # not started: not in sync with the leader
    # Start it as etcd's member add output says (same flags, joining the existing cluster).
    m3.joins = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members + [m3])
    if m3_id != NO_ID:
        cluster.members.append(m3)
        cluster.start(m3)
    m3_started = time.monotonic()
    deadline = time.monotonic() + 30
    promoted = False
    while time.monotonic() < deadline and not promoted and m3_id != NO_ID:
        probe = subprocess.run(s._argv(["member", "promote", m3_id], None)[0],
                               capture_output=True, env=s.env)
        promoted = probe.returncode == 0
        if not promoted:
            time.sleep(0.3)
    s.note(f"the started learner could be promoted within 30 s: {promoted}")
    published = False
    while time.monotonic() < deadline and not published and promoted:
        probe = subprocess.run(s._argv(["member", "list"], None)[0], capture_output=True,
                               env=s.env)
        published = m3.client_url.encode() in probe.stdout
        if not published:
            time.sleep(0.2)
    s.note(f"m3 published its client URL: {published}")
    s.ctl("member", "list")
    s.ctl("member", "promote", m3_id)
    s.ctl("member", "promote", s.hex_id(1))
    s.ctl("endpoint", "status", "--cluster", "-w", "json")
    if m3_id != NO_ID:
        time.sleep(max(0.0, m3_started + 5.5 - time.monotonic()))  # the reconfiguration check
    m4 = cluster.new_member("m4", 4)
    s.added_members.append("<member-m4>")
    m4_id = s.member_id(s.ctl("member", "add", "m4", f"--peer-urls={m4.peer_url}", "-w", "json"),
                        "m4")
    if m4_id == NO_ID:
        match = re.search(r'"member":\{"ID":(\d+)', s.records[-1].stdout)
        if match:
            s.ids[int(match.group(1))] = "<member-m4>"
            m4_id = f"{int(match.group(1)):x}"
    s.ctl("member", "list")
    s.ctl("member", "remove", m4_id)
    s.ctl("member", "remove", m3_id)
    s.ctl("member", "remove", m3_id)
    s.ctl("member", "remove", "1234abcd")
    s.ctl("member", "list", "-w", "json")
    s.ctl("member", "add", "bad", "--peer-urls=not-a-url")
    s.ctl("member", "add", "m1-again", f"--peer-urls={cluster.members[1].peer_url}")
    s.ctl("put", "after-membership", "changes")
    s.ctl("get", "after-membership", "-w", "json", endpoints=s.url(2))


def family_endpoint(s):
    s.ctl("put", "k", "v")
    s.ctl("endpoint", "status")
    s.ctl("endpoint", "status", "-w", "json")
    s.ctl("endpoint", "status", "-w", "fields", endpoints=s.url(1))
    s.ctl("endpoint", "status", "-w", "table", endpoints=s.all_urls())
    s.ctl("endpoint", "status", "--cluster")
    s.ctl("endpoint", "status", "--cluster", "-w", "json")
    s.ctl("endpoint", "health", sort_stderr=True)
    s.ctl("endpoint", "health", endpoints=s.all_urls(), sort_stderr=True)
    s.ctl("endpoint", "health", "--cluster", sort_stderr=True)
    s.ctl("endpoint", "health", "--cluster", "-w", "json", sort_stderr=True)
    s.ctl("endpoint", "health", "--cluster", "-w", "table", sort_stderr=True)
    s.ctl("endpoint", "status", "--command-timeout=1s", endpoints="http://127.0.0.1:23799")


def family_snapshot(s):
    s.ctl("put", "snap-key", "snap-value")
    s.ctl("put", "snap-key", "snap-value-2")
    path = os.path.join(s.work_dir, "snap.db")
    s.ctl("snapshot", "save", path)
    size = os.path.getsize(path) if os.path.exists(path) else -1
    s.note(f"the snapshot file is not empty: {size > 0}")
    s.ctl("snapshot", "status", path, "-w", "json")
    s.ctl("snapshot", "save", os.path.join(s.work_dir, "multi.db"), endpoints=s.all_urls())
    s.ctl("snapshot", "save", os.path.join(s.work_dir, "missing-dir", "snap.db"))


def family_move_leader(s):
    m1 = s.hex_id(1)
    s.ctl("endpoint", "status", endpoints=s.all_urls())
    s.ctl("move-leader", m1, endpoints=s.all_urls())
    s.ctl("endpoint", "status", endpoints=s.all_urls())
    s.ctl("move-leader", m1, endpoints=s.url(0))  # m0 is a follower now
    s.ctl("move-leader", m1, endpoints=s.all_urls())  # to itself
    s.ctl("move-leader", "1234abcd", endpoints=s.all_urls())
    s.ctl("move-leader", "not-hex", endpoints=s.all_urls())
    s.ctl("move-leader", s.hex_id(0), endpoints=s.all_urls())
    s.ctl("put", "after-move", "v", endpoints=s.url(2))
    s.ctl("get", "after-move", "-w", "json", endpoints=s.url(1))


def family_defrag(s):
    for i in range(20):
        s.ctl("put", f"k{i % 5}", f"v{i}")
    s.ctl("compaction", "15")
    s.ctl("defrag")
    s.ctl("defrag", endpoints=s.all_urls())
    s.ctl("defrag", "--cluster")
    s.ctl("get", "", "--prefix", "-w", "json")
    s.ctl("defrag", "--command-timeout=1s", endpoints="http://127.0.0.1:23799")


def alarm_lines(output):
    """The lines of `alarm list` or `alarm disarm` output, sorted (members print in map order)."""
    return sorted(line for line in output.split("\n") if line)


def nospace_alarm_of_member(s, line):
    """Whether an `alarm list`/`alarm disarm` line is a NOSPACE alarm of one of the members."""
    match = re.fullmatch(r"memberID:([0-9]+) alarm:NOSPACE ", line)
    return match is not None and int(match.group(1)) in s.ids


def alarms_when_settled(s):
    """The alarms m0 and m2 both list once their lists agree for a second (within 10 s), or None
    when they never do or list anything but members' NOSPACE alarms."""
    previous = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lists = [alarm_lines(s.run(["alarm", "list"], endpoints=s.url(index)).stdout.decode())
                 for index in (0, 2)]
        agreed = lists[0] if lists[0] == lists[1] and lists[0] else None
        if agreed is not None and agreed == previous:
            valid = all(nospace_alarm_of_member(s, line) for line in agreed)
            return agreed if valid else None
        previous = agreed
        time.sleep(1)
    return None


def family_alarm(s):
    # The members run with --quota-backend-bytes=4194304 (see FAMILIES).
    s.ctl("alarm", "list")
    s.ctl("alarm", "list", "-w", "json")
    s.ctl("alarm", "disarm")
    # Fill the database until the quota refuses a put. How many 200 kB values fit is a matter
    # of each implementation's storage, so these puts are not recorded, and nothing after them
    # shows a revision or a count of them.
    value = "x" * 200_000
    refused = False
    for i in range(100):
        done = s.run(["put", f"fill/{i:03}"], stdin=value)
        if done.returncode != 0:
            refused = b"database space exceeded" in done.stderr
            break
    s.note(f"a put was refused with 'database space exceeded' within 100 puts: {refused}")
    s.ctl("put", "small", "v")
    # Which members raise NOSPACE is a race in etcd: the member that refuses a put raises its own
    # alarm only if its own file passed the quota; every member that applies a put beyond its own
    # quota raises one too, proposed in the background. So the check is what holds whatever the
    # race: once the members stop raising, m0 and m2 list the same alarms, at least one, each a
    # member's NOSPACE, and every member's status errors name exactly those.
    alarms = alarms_when_settled(s)
    s.note(f"m0 and m2 agree on a non-empty list of members' NOSPACE alarms: {alarms is not None}")
    status = s.run(["endpoint", "status", "-w", "json"], endpoints=s.all_urls()).stdout.decode()
    try:
        errors = [sorted(entry["Status"].get("errors", [])) for entry in json.loads(status)]
    except (ValueError, KeyError, TypeError):
        errors = []
    s.note(f"endpoint status on every member lists those alarms in its errors: "
           f"{alarms is not None and errors == [alarms] * 3}")
    s.ctl("get", "fill/000", "--keys-only")
    s.ctl("del", "fill/000")
    s.run(["del", "--prefix", "fill/"])
    s.ctl("put", "small", "v")
    # Compact away the history (at a revision the harness reads, not shown), defragment.
    probe = s.run(["get", "small", "-w", "json"])
    try:
        revision = json.loads(probe.stdout)["header"]["revision"]
    except (ValueError, KeyError):
        revision = 1
    s.run(["compaction", "--physical", str(revision)])
    s.ctl("defrag", endpoints=s.all_urls())
    disarmed = alarm_lines(s.run(["alarm", "disarm"]).stdout.decode())
    # Not necessarily the settled list: etcd may still raise a member's NOSPACE in the
    # background after the lists agreed (an apply beyond that member's quota), so disarm can
    # print more alarms, or a different member's, than were listed.
    s.note(f"alarm disarm printed members' NOSPACE alarms, at least one: "
           f"{bool(disarmed) and all(nospace_alarm_of_member(s, line) for line in disarmed)}")
    s.ctl("alarm", "list")
    s.ctl("alarm", "list", endpoints=s.url(2))
    s.ctl("endpoint", "status", endpoints=s.all_urls())
    s.ctl("put", "small", "v")
    s.ctl("get", "small", "--print-value-only")


def family_check_perf(s):
    s.ctl("check", "perf", "--load=s", timeout=120)
    s.ctl("get", "/etcdctl-check-perf/", "--prefix", "--keys-only")
    s.ctl("check", "perf", "--load=nonsense")


class Family:
    def __init__(self, function, leader_m0=False, published=False, flags=()):
        self.function = function
        # Needs m0 to be the leader (its output depends on which member leads).
        self.leader_m0 = leader_m0
        # Waits until m0's member list shows every member's client URL (its commands find
        # endpoints through the member list).
        self.published = published
        # More flags for every member (the same for both kinds).
        self.flags = flags


FAMILIES = {
    "put": Family(family_put),
    "get": Family(family_get),
    "del": Family(family_del),
    "txn": Family(family_txn),
    "compaction": Family(family_compaction),
    "watch": Family(family_watch),
    # etcd sorts `lease list` by expiry only on the leader (followers hold leases forever).
    "lease": Family(family_lease, leader_m0=True),
    "lock": Family(family_lock),
    "elect": Family(family_elect),
    # Its endpoint status shows the leader.
    "member": Family(family_member, leader_m0=True, published=True),
    "endpoint": Family(family_endpoint, leader_m0=True, published=True),
    "snapshot": Family(family_snapshot),
    "move-leader": Family(family_move_leader, leader_m0=True),
    "defrag": Family(family_defrag, published=True),
    "alarm": Family(family_alarm, leader_m0=True, flags=("--quota-backend-bytes", "4194304")),
    "check-perf": Family(family_check_perf),
}


# ------------------------------------------------------------------------------------------------


def run_family(kind, binary, etcdctl, name, work_root, engine=None):
    """Runs one family against a fresh cluster of one kind; returns the normalised transcript.
    A cluster that does not start or a script that stops half-way is part of the transcript."""
    family = FAMILIES[name]
    kind_dir = os.path.join(work_root, kind)
    work_dir = os.path.join(kind_dir, name)
    cluster_dir = os.path.join(work_dir, "cluster")
    os.makedirs(work_dir, exist_ok=True)
    started = time.monotonic()
    try:
        cluster, notes = start_cluster(binary, cluster_dir, family.leader_m0, family.published,
                                       family.flags, engine)
    except Exception as error:  # noqa: BLE001
        text = f"# setup failed: {error}\n".replace(kind_dir, "<dir>")
        return text, time.monotonic() - started
    session = None
    try:
        session = Session(kind, cluster, etcdctl, work_dir)
        for note in notes:
            session.note("setup: " + note)
        try:
            family.function(session)
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            session.note(f"the script stopped: {type(error).__name__}: {error}")
    finally:
        if session is not None:
            session.stop_background()
        cluster.stop_all()
    normaliser = Normaliser(session.ids, kind_dir, session.added_members)
    text = "".join(normaliser.record(r) for r in session.records)
    with open(os.path.join(work_root, f"{name}.{kind}.txt"), "w") as out:
        out.write(text)
    return text, time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synod", required=True)
    parser.add_argument("--etcd", default="/usr/bin/etcd")
    parser.add_argument("--etcdctl", default="/usr/bin/etcdctl")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated; default: all of " + ",".join(FAMILIES))
    parser.add_argument("--work-dir", help="kept; default: a temporary directory, removed when "
                        "every family matched")
    parser.add_argument("--synod-engine", choices=["raft", "multipaxos"], default=None,
                        help="synod's --engine (default: the binary's default, raft)")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {','.join(FAMILIES)}")
    work_root = args.work_dir or tempfile.mkdtemp(prefix="synod-compat-")
    os.makedirs(work_root, exist_ok=True)

    results = {}
    for name in families:
        etcd_text, etcd_s = run_family("etcd", args.etcd, args.etcdctl, name, work_root)
        synod_text, synod_s = run_family("synod", args.synod, args.etcdctl, name, work_root,
                                         args.synod_engine)
        same = etcd_text == synod_text
        results[name] = same
        if not same:
            diff = difflib.unified_diff(etcd_text.splitlines(), synod_text.splitlines(),
                                        f"{name} (etcd 3.4)", f"{name} (synod)", lineterm="", n=3)
            print("\n".join(diff))
        print(f"family {name}: {'same' if same else 'DIFFERS'} "
              f"({etcd_text.count(chr(10) + '$ ') + etcd_text.startswith('$ ')} etcdctl commands;"
              f" etcd {etcd_s:.1f} s, synod {synod_s:.1f} s)", flush=True)

    print("summary: " + ", ".join(f"{n} {'same' if ok else 'DIFFERS'}"
                                  for n, ok in results.items()))
    if all(results.values()):
        if not args.work_dir:
            shutil.rmtree(work_root, ignore_errors=True)
        return 0
    print(f"normalised transcripts and member logs kept in {work_root}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
