"""Starts, kills and restarts real synod processes on loopback for the fault tests.

Each member gets a client and a peer port on 127.0.0.1. The tests run inside a private network
namespace (`unshare -n`, see tests/CMakeLists.txt), so fixed ports never collide with anything
else on the machine; outside one, pass another base port.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

import etcd3
from etcd3 import etcdrpc


def terminate_together(processes, grace_s=10):
    """SIGTERMs every process still running, then waits for each, SIGKILLing one that has not
    stopped within `grace_s`: all stop in parallel, none is left behind."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_listening(port, process, timeout_s=10):
    """Returns once something accepts TCP connections on 127.0.0.1:`port`, `process` has exited,
    or `timeout_s` has passed; whichever comes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)


def log_shows_within(path, text, timeout_s):
    """Whether the file at `path` contains `text` within `timeout_s` (a member logs an event
    just after it takes effect, so a client may see the effect before the line)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open(path) as log:
            if text in log.read():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


ETCDCTL = "/usr/bin/etcdctl"


def etcdctl(endpoints, *args, check=True, timeout_s=15):
    """Runs etcdctl against `endpoints` (members); returns (exit code, stdout + stderr)."""
    command = [ETCDCTL, "--endpoints", ",".join(m.client_url for m in endpoints),
               "--command-timeout", "5s", "--dial-timeout", "2s", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                            env=dict(os.environ, ETCDCTL_API="3"))
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[3:])} failed ({result.returncode}): {output}")
    return result.returncode, output


class Member:
    def __init__(self, index, name, client_port, peer_port, data_dir, log_path):
        self.index = index
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.process = None
        self.client = None

    @property
    def client_url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self):
        return self.process is not None and self.process.poll() is None


class Cluster:
    def __init__(self, binary, base_dir, size, base_port=23790, heartbeat_ms=100,
                 election_ms=1000, extra_flags=(), engine=None):
        self.binary = binary
        # The consensus engine (synod --engine; None: the binary's default, and no flag, so the
        # same command lines start etcd). A data dir keeps the engine it was created with.
        self.engine = engine
        self.base_dir = base_dir
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_flags = list(extra_flags)
        self.members = []
        for i in range(size):
            name = f"m{i}"
            self.members.append(Member(i, name, base_port + 2 * i, base_port + 2 * i + 1,
                                       os.path.join(base_dir, name + ".synod"),
                                       os.path.join(base_dir, name + ".log")))
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def command(self, member):
        return [self.binary,
                "--name", member.name,
                "--data-dir", member.data_dir,
                "--listen-client-urls", member.client_url,
                "--advertise-client-urls", member.client_url,
                "--listen-peer-urls", member.peer_url,
                "--initial-advertise-peer-urls", member.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms)] + \
            ([] if self.engine is None else ["--engine", self.engine]) + self.extra_flags

    def start(self, member):
        assert not member.running()
        log = open(member.log_path, "ab")
        member.process = subprocess.Popen(self.command(member), stdout=log, stderr=log)
        log.close()
        # A gRPC channel whose first connection attempt is refused backs off for seconds before
        # it tries again, so the client is made once the member listens (or has exited: some
        # tests start a member that must refuse to run).
        wait_until_listening(member.client_port, member.process)
        member.client = etcd3.client("127.0.0.1", member.client_port, timeout=3)

    def start_all(self):
        for member in self.members:
            self.start(member)

    def kill(self, member, sig=signal.SIGKILL):
        if member.running():
            member.process.send_signal(sig)
            member.process.wait()
        member.process = None

    def stop_all(self):
        # The clients go first: a member's gRPC server, told to stop, waits up to a second for
        # connected clients to hang up, idle ones included.
        self.close_clients()
        terminate_together([m.process for m in self.members if m.process is not None])
        for member in self.members:
            member.process = None

    def close_clients(self):
        for member in self.members:
            if member.client is not None:
                member.client.close()
                member.client = None

    @staticmethod
    def status(member):
        """The member's Maintenance.Status response (raises when it does not answer)."""
        return member.client.maintenancestub.Status(etcdrpc.StatusRequest(), 2)

    def leader(self):
        """The running member that itself reports being the leader, or None."""
        for member in self.members:
            if not member.running():
                continue
            try:
                status = self.status(member)
            except Exception:
                continue
            if status.leader != 0 and status.leader == status.header.member_id:
                return member
        return None

    def wait_for_leader(self, timeout_s=20):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise AssertionError(f"no leader within {timeout_s} s; logs in {self.base_dir}")

    def wait_until_knows_leader(self, member, timeout_s=20):
        """Waits until `member` names a leader. A member that has just started holds requests
        for up to one election timeout until it hears one (as etcd does), then answers "no
        leader"; on a loaded machine its first connection may take longer than that."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.status(member).leader != 0:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{member.name} knew no leader within {timeout_s} s; logs in "
                             f"{self.base_dir}")

    def wait_until_every_member_knows_leader(self, timeout_s=20):
        """Waits for a leader and then until every running member names it, for tests that
        write through every member right after the cluster starts."""
        leader = self.wait_for_leader(timeout_s)
        for member in self.members:
            if member.running():
                self.wait_until_knows_leader(member, timeout_s)
        return leader

    def stop_and_clean_up(self, failure, tail_lines=20):
        """Stops every member; after a failure prints each log's tail and keeps the data and
        logs (saying where), else removes them."""
        self.stop_all()
        if not failure:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            return
        for member in self.members:
            print(f"--- log tail of {member.name}:\n{self.log_tail(member, tail_lines)}")
        print(f"data and logs kept in {self.base_dir}\nFAIL: {failure}")

    def log_tail(self, member, lines=20):
        try:
            with open(member.log_path, "rb") as log:
                return b"".join(log.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""
