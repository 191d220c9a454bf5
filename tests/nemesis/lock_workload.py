#!/usr/bin/python3
"""The nemesis's lock workload: etcd's Lock service with fenced writes, and its offline check.

Why: a lock served by a consensus system does not by itself give mutual exclusion. A holder can
pause (a garbage-collection stall, SIGSTOP, a slow network) past its lease, lose the lock to
the next client and then, still believing it holds it, write. Kleppmann ("How to do distributed
locking", 2016) names the cure: every write under the lock carries a fencing token that grows
with each grant, and the store refuses a token older than one it has seen. In etcd the token is
the lock key's create_revision (the Lock service's queue is ordered by it, see
src/server/recipes.h), and the store can check it itself: a Txn that compares the lock key's
create_revision with the token and only then writes.

Workload (LockWorkload): each client takes a lease (LEASE_TTL_S, the store's minimum, kept alive
every KEEPALIVE_INTERVAL_S by a thread of its own through the client's member), calls
Lock(LOCK_NAME, lease), reads the lock key's create_revision (its fencing revision), and while
holding the lock increments a protected counter a few times, each after some work (WORK_S):
read the resource, then a Txn "if the lock key still has that create_revision then put
resource = previous + 1, naming the client, fencing revision and write id". The read is not
part of the Txn: mutual exclusion alone must make read-then-write safe, which is what the fence
is there to guarantee. Then it lets go: Unlock mostly, sometimes it revokes the lease, sometimes
it walks away and lets the lease expire. Some holds stall: the client stops its keepalives and
sleeps past the lease TTL before its next write (the pause of Kleppmann's example), so the lock
is lost mid-hold on purpose. The nemesis loses it by accident: a member paused or cut off
while a holder's request waits in it gets no keepalives either, the lease runs out, a waiter
takes the lock, and the request is served after the member comes back (REQUEST_TIMEOUT_S
outlasts most pauses). With `--unfenced` the Txn has no comparison (a deliberately broken
client), so such a late write lands while another client holds the lock.

History (one JSON object per line, written by the nemesis as lock-history.jsonl):
- client events, "source": "client": "lock" (the Lock call: lease, key, fencing revision or
  null when the key was gone by the time it was read, the response's header revision), "write"
  (write id, fencing revision, count written, outcome, whether the Txn's comparison held, the
  revision it made), "release" and "stall" (for the reader);
- store events, "source": "store", read after the run by replaying a watch from revision 1 over
  PREFIX: every put and delete of the lock keys and the resource with its revision.
Outcomes are the linearizability history's (docs/check.md): "ok" answered, "failed" certainly
not applied, "unknown" may or may not have been applied.

Check (check(), also `lock_workload.py HISTORY`):
1. holder: every version of the resource was written under the fencing revision of the lock's
   holder at that revision (the oldest live lock key, as the Lock service's queue defines it);
2. fence order: the resource's versions in revision order have non-decreasing fencing
   revisions, so no two holders' writes interleave (once r2 > r1 wrote, r1 never writes again);
3. counter: version k of the resource holds count k, so no increment was lost or applied twice,
   and acknowledged increments <= final count <= acknowledged + unknown increments;
4. the clients and the store agree: every acknowledged successful write is the version at its
   revision; every version is a write that was acknowledged as successful or left unknown;
5. Lock itself: a Lock answer whose key was still live at the answer's revision made it the
   oldest live key there.
Exit status of the command: 0 no violation, 1 violations (listed with the offending events),
2 the file is unreadable or malformed.
"""

import json
import random
import sys
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from etcd3 import etcdrpc

PREFIX = b"nemesis-lock/"
LOCK_NAME = PREFIX + b"lock"
RESOURCE_KEY = PREFIX + b"resource"
END_MARKER_KEY = PREFIX + b"end"
# The store's minimum lease TTL (kv/store.cc, lease_ttl_min_s): the shortest a lock can outlive
# a holder that stopped renewing.
LEASE_TTL_S = 2
KEEPALIVE_INTERVAL_S = 0.5
# A waiter can queue behind every other client's hold, stalls included.
LOCK_TIMEOUT_S = 15
# Longer than the lease TTL and most pauses: a request stuck in a paused member is then still
# answered after its SIGCONT, when the lock may have moved on (the case fencing is for).
REQUEST_TIMEOUT_S = 5
WRITES_PER_HOLD_MAX = 3
# The work a holder does before each write: holding the lock most of the time, clients are
# often mid-hold when a fault freezes or cuts off their member.
WORK_S = (0.1, 0.4)
# Past the TTL, with room for the leader's expiry check and the revoke to commit.
STALL_S = LEASE_TTL_S + 1.5
RELEASES = ["unlock"] * 8 + ["revoke", "expire"]
STORE_READ_TIMEOUT_S = 30


def _lock_service_messages():
    """LockRequest and LockResponse of etcd's v3lockpb (proto/etcd/v3lockpb/v3lock.proto), built
    at run time: python3-etcd3 ships no stubs for the Lock service, and its own rpc.proto
    (ResponseHeader) is already in the default descriptor pool to refer to."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="synod_nemesis/v3lock.proto", package="v3lockpb", syntax="proto3",
        dependency=["rpc.proto"])
    request = proto.message_type.add(name="LockRequest")
    request.field.add(name="name", number=1, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    request.field.add(name="lease", number=2, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    response = proto.message_type.add(name="LockResponse")
    response.field.add(name="header", number=1, type=field.TYPE_MESSAGE,
                       type_name=".etcdserverpb.ResponseHeader", label=field.LABEL_OPTIONAL)
    response.field.add(name="key", number=2, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.Default()
    pool.Add(proto)
    factory = message_factory.MessageFactory(pool)
    return (factory.GetPrototype(pool.FindMessageTypeByName("v3lockpb.LockRequest")),
            factory.GetPrototype(pool.FindMessageTypeByName("v3lockpb.LockResponse")))


LockRequest, LockResponse = _lock_service_messages()


def lock_call(channel):
    return channel.unary_unary("/v3lockpb.Lock/Lock",
                               request_serializer=LockRequest.SerializeToString,
                               response_deserializer=LockResponse.FromString)


def unlock_call(channel):
    # UnlockRequest {bytes key = 1} is wire-identical to DeleteRangeRequest's first field, and
    # UnlockResponse {ResponseHeader header = 1} to DeleteRangeResponse's.
    return channel.unary_unary("/v3lockpb.Lock/Unlock",
                               request_serializer=etcdrpc.DeleteRangeRequest.SerializeToString,
                               response_deserializer=etcdrpc.DeleteRangeResponse.FromString)


def now_ns():
    return time.monotonic_ns()


class Connection:
    """A channel to one member, moved to the next member after an error."""

    def __init__(self, net, size, member):
        self.net = net
        self.size = size
        self.member = member
        self.channel = None
        self.connect()

    def connect(self):
        self.channel = grpc.insecure_channel(self.net.client_address(self.member))
        self.kv = etcdrpc.KVStub(self.channel)
        self.lease = etcdrpc.LeaseStub(self.channel)
        self.lock = lock_call(self.channel)
        self.unlock = unlock_call(self.channel)

    def move_on(self):
        self.move_to((self.member + 1) % self.size)

    def move_to(self, member):
        self.channel.close()
        self.member = member
        self.connect()

    def close(self):
        self.channel.close()


class KeepAlive(threading.Thread):
    """Renews the client's current lease until told to stop (etcd's session keepalive), through
    the member the client uses, as one etcd client does: when that member is paused or cut off,
    the lease runs out while the client's own request to it waits."""

    def __init__(self, net, size, member, stop):
        super().__init__(daemon=True)
        self.connection = Connection(net, size, member)
        self.stop_event = stop
        self.mutex = threading.Lock()
        self.lease = None
        self.member = member

    def keep(self, lease):
        """Renews `lease` from now on (None: none)."""
        with self.mutex:
            self.lease = lease

    def follow(self, member):
        with self.mutex:
            self.member = member

    def run(self):
        while not self.stop_event.wait(KEEPALIVE_INTERVAL_S):
            with self.mutex:
                lease, member = self.lease, self.member
            if lease is None:
                continue
            if member != self.connection.member:
                self.connection.move_to(member)
            try:
                for _ in self.connection.lease.LeaseKeepAlive(
                        iter([etcdrpc.LeaseKeepAliveRequest(ID=lease)]),
                        timeout=KEEPALIVE_INTERVAL_S * 2):
                    break
            except grpc.RpcError:
                pass  # the client moves to another member when its own requests fail
        self.connection.close()


class LockClient(threading.Thread):
    """One client of the lock: lease, Lock, fenced increments, release; again until stopped."""

    def __init__(self, number, net, size, history, stop, seed, classify, fenced,
                 stall_probability):
        super().__init__(daemon=True)
        self.number = number
        self.net = net
        self.size = size
        self.history = history
        self.stop_event = stop
        self.random = random.Random(seed)
        self.classify = classify
        self.fenced = fenced
        self.stall_probability = stall_probability
        self.writes = 0

    def run(self):
        self.connection = Connection(self.net, self.size, self.number % self.size)
        self.keepalive = KeepAlive(self.net, self.size, self.connection.member,
                                   self.stop_event)
        self.keepalive.start()
        try:
            while not self.stop_event.is_set():
                self.hold_once()
        finally:
            self.keepalive.keep(None)
            self.keepalive.join()
            self.connection.close()

    def call(self, method, request, timeout=REQUEST_TIMEOUT_S):
        """Sends one request; returns (response, None) or (None, outcome of the error). The end
        of the run cancels a request still waiting (a Lock call queued behind others)."""
        answer = method.future(request, timeout=timeout)
        while not answer.done() and not self.stop_event.wait(0.05):
            pass
        answer.cancel()
        try:
            return answer.result(), None
        except (grpc.RpcError, grpc.FutureCancelledError) as error:
            outcome = self.classify(error)
            self.connection.move_on()
            self.keepalive.follow(self.connection.member)
            return None, outcome

    def event(self, kind, invoke, **fields):
        self.history.add({"source": "client", "client": self.number, "event": kind,
                          "invoke": invoke, "complete": now_ns(), **fields})

    def hold_once(self):
        granted, _ = self.call(self.connection.lease.LeaseGrant,
                               etcdrpc.LeaseGrantRequest(TTL=LEASE_TTL_S))
        if granted is None:
            self.stop_event.wait(0.1)
            return
        lease = granted.ID
        self.keepalive.keep(lease)
        invoke = now_ns()
        locked, outcome = self.call(self.connection.lock,
                                    LockRequest(name=LOCK_NAME, lease=lease), LOCK_TIMEOUT_S)
        if locked is None:
            self.event("lock", invoke, lease=lease, outcome=outcome)
            self.release(lease, None, "revoke")
            return
        key = locked.key
        # The fencing token: the lock key's create_revision, read after the grant. None when
        # the key is gone, the lease having expired while waiting (Lock still answers then, as
        # etcd 3.4's does), or when the read failed: the client then lets go without writing.
        found, outcome = self.call(self.connection.kv.Range, etcdrpc.RangeRequest(key=key))
        fence = found.kvs[0].create_revision if found is not None and found.kvs else None
        self.event("lock", invoke, lease=lease, key=key.decode(), outcome="ok",
                   revision=locked.header.revision, fence=fence)
        if fence is not None:
            writes = self.random.randint(1, WRITES_PER_HOLD_MAX)
            stall_before = (self.random.randrange(writes)
                            if self.random.random() < self.stall_probability else None)
            for number in range(writes):
                if number == stall_before:
                    self.stall()
                if (self.stop_event.wait(self.random.uniform(*WORK_S))
                        or not self.write(key, fence)):
                    break
        self.release(lease, key, self.random.choice(RELEASES))

    def stall(self):
        """A pause of the holder (Kleppmann's GC pause): no keepalives, past the lease TTL."""
        self.keepalive.keep(None)
        start = now_ns()
        self.stop_event.wait(STALL_S)
        self.event("stall", start)

    def write(self, key, fence):
        """One fenced increment of the resource; True if the client may go on writing."""
        # A read changes nothing, so a failed one is tried again on the next member (call()
        # moved there), once per member: a holder whose member died still holds the lock.
        for _ in range(self.size):
            current, _ = self.call(self.connection.kv.Range,
                                   etcdrpc.RangeRequest(key=RESOURCE_KEY))
            if current is not None:
                break
        else:
            return False
        count = json.loads(current.kvs[0].value)["count"] if current.kvs else 0
        self.writes += 1
        write_id = f"c{self.number}-{self.writes}"
        value = json.dumps({"count": count + 1, "client": self.number, "fence": fence,
                            "write": write_id}, sort_keys=True)
        compare = []
        if self.fenced:
            compare = [etcdrpc.Compare(key=key, result=etcdrpc.Compare.EQUAL,
                                       target=etcdrpc.Compare.CREATE, create_revision=fence)]
        request = etcdrpc.TxnRequest(compare=compare, success=[etcdrpc.RequestOp(
            request_put=etcdrpc.PutRequest(key=RESOURCE_KEY, value=value.encode()))])
        invoke = now_ns()
        answer, outcome = self.call(self.connection.kv.Txn, request)
        fields = {"write": write_id, "fence": fence, "count": count + 1,
                  "fenced": self.fenced}
        if answer is None:
            self.event("write", invoke, outcome=outcome, **fields)
            return False
        self.event("write", invoke, outcome="ok", succeeded=answer.succeeded,
                   revision=answer.header.revision, **fields)
        return answer.succeeded

    def release(self, lease, key, how):
        self.keepalive.keep(None)
        invoke = now_ns()
        if how == "unlock" and key is not None:
            _, outcome = self.call(self.connection.unlock, etcdrpc.DeleteRangeRequest(key=key))
        elif how == "revoke":
            _, outcome = self.call(self.connection.lease.LeaseRevoke,
                                   etcdrpc.LeaseRevokeRequest(ID=lease))
        else:
            how, outcome = "expire", None
        self.event("release", invoke, lease=lease, how=how, outcome=outcome or "ok")


def add_arguments(parser):
    """The nemesis's options for this workload (its --workload chooses whether it runs)."""
    parser.add_argument("--lock-clients", type=int, default=5)
    parser.add_argument("--lock-stall-probability", type=float, default=0.15,
                        help="share of lock holds that stall past the lease TTL before a write")
    parser.add_argument("--unfenced", action="store_true",
                        help="lock writes without the fencing comparison (a broken client)")
    parser.add_argument("--lock-min-refused", type=int, default=0,
                        help="no verdict unless the fence refused at least this many writes "
                        "(proof that the run lost locks mid-hold)")


class LockWorkload:
    """The lock clients of one nemesis run, and the store's side of their history. `history`
    collects the events: add(event), operations (the list), write(path) as JSON lines."""

    def __init__(self, net, size, args, seed, classify, history):
        self.net = net
        self.size = size
        self.history = history
        self.min_refused = args.lock_min_refused
        self.stop_event = threading.Event()
        clients = args.lock_clients if args.workload != "kv" else 0
        self.clients = [LockClient(n, net, size, self.history, self.stop_event, seed + 7919 * n,
                                   classify, not args.unfenced, args.lock_stall_probability)
                        for n in range(clients)]

    def start(self):
        for client in self.clients:
            client.start()

    def stop(self):
        self.stop_event.set()
        for client in self.clients:
            client.join(timeout=LOCK_TIMEOUT_S + 5)

    def check(self, path):
        """After healing: reads the store's side, writes the history to `path` and checks it.
        Returns (summary lines, violations, why there is no verdict or None)."""
        no_verdict = self.record_store(0)
        self.history.write(path)
        if no_verdict is not None:
            return [], [], no_verdict
        problems, figures = check(self.history.operations)
        refused = figures["writes refused by the fence"]
        if not problems and refused < self.min_refused:
            no_verdict = (f"the fence refused {refused} writes, fewer than --lock-min-refused "
                          f"{self.min_refused}: this run did not show the fence at work")
        return report(problems, figures), problems, no_verdict

    def record_store(self, member):
        """Adds every change under PREFIX, from revision 1 on, as the store events; after
        healing. Returns a problem message or None."""
        channel = grpc.insecure_channel(self.net.client_address(member))
        done = threading.Event()
        try:
            # A put after everything else: the replay is complete when its event arrives.
            marker = etcdrpc.KVStub(channel).Put(etcdrpc.PutRequest(key=END_MARKER_KEY),
                                                 timeout=STORE_READ_TIMEOUT_S)
            end = marker.header.revision

            def requests():
                yield etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                    key=PREFIX, range_end=PREFIX[:-1] + bytes([PREFIX[-1] + 1]),
                    start_revision=1))
                done.wait()

            for answer in etcdrpc.WatchStub(channel).Watch(requests(),
                                                           timeout=STORE_READ_TIMEOUT_S):
                if answer.compact_revision or answer.canceled:
                    return (f"the store's history of {PREFIX.decode()} is not whole "
                            f"(compacted at {answer.compact_revision}): no lock verdict")
                for event in answer.events:
                    kv = event.kv
                    if kv.mod_revision >= end:
                        return None
                    self.history.add({
                        "source": "store", "key": kv.key.decode(),
                        "type": "delete" if event.type == event.DELETE else "put",
                        "revision": kv.mod_revision, "create_revision": kv.create_revision,
                        "value": kv.value.decode()})
            return "the watch over the lock keys ended before the end marker"
        except grpc.RpcError as error:
            return f"reading the store's lock history failed: {error.code().name} {error.details()}"
        finally:
            done.set()
            channel.close()


# ---- The check -----------------------------------------------------------------------------

def show(event):
    return "    " + json.dumps(event, sort_keys=True)


class StoreState:
    """The store's lock keys over time, from the store events: who held the lock when."""

    def __init__(self, store_events):
        lock_prefix = LOCK_NAME.decode() + "/"
        # key -> list of [create_revision, delete_revision or None], in revision order.
        self.lives = {}
        for event in sorted(store_events, key=lambda e: e["revision"]):
            if not event["key"].startswith(lock_prefix):
                continue
            lives = self.lives.setdefault(event["key"], [])
            if event["type"] == "put":
                if not lives or lives[-1][1] is not None:
                    lives.append([event["revision"], None])
            elif lives and lives[-1][1] is None:
                lives[-1][1] = event["revision"]

    def live_at(self, revision):
        """(create_revision, key) of every lock key that exists at `revision`."""
        return sorted((created, key) for key, lives in self.lives.items()
                      for created, deleted in lives
                      if created <= revision and (deleted is None or deleted > revision))

    def holder_at(self, revision):
        """The lock's holder at `revision`: the oldest live key (recipes.h), or None."""
        live = self.live_at(revision)
        return live[0] if live else None


def check(events):
    """Violations of the lock properties in a lock history (see the module's docstring), each a
    message followed by the offending events; and figures for the summary."""
    problems = []
    store = [e for e in events if e["source"] == "store"]
    clients = [e for e in events if e["source"] == "client"]
    writes = [e for e in clients if e["event"] == "write"]
    state = StoreState(store)
    versions = sorted((e for e in store if e["key"] == RESOURCE_KEY.decode()),
                      key=lambda e: e["revision"])
    written = []  # (store event, the value it holds)
    for version in versions:
        if version["type"] != "put":
            problems.append("the resource was deleted, which no client does:\n" + show(version))
            continue
        written.append((version, json.loads(version["value"])))

    # 1. Each version was written by the holder of that moment.
    for version, value in written:
        holder = state.holder_at(version["revision"])
        if holder is None or holder[0] != value["fence"]:
            held = (f"the lock was held by {holder[1]} (fencing revision {holder[0]})"
                    if holder else "nobody held the lock")
            problems.append(
                f"write {value['write']} of client {value['client']} took effect at revision "
                f"{version['revision']} under fencing revision {value['fence']}, but {held}:\n"
                + show(version))

    # 2. Fencing revisions never go back: holders' writes do not interleave.
    for (before, value_before), (after, value_after) in zip(written, written[1:]):
        if value_after["fence"] < value_before["fence"]:
            problems.append(
                f"overlapping holders: write {value_after['write']} under fencing revision "
                f"{value_after['fence']} took effect after write {value_before['write']} under "
                f"the newer fencing revision {value_before['fence']}:\n"
                + show(before) + "\n" + show(after))

    # 3. The counter: each version adds exactly one.
    for position, (version, value) in enumerate(written, start=1):
        if value["count"] != position:
            previous = written[position - 2][0] if position > 1 else None
            problems.append(
                f"increment lost or doubled: version {position} of the resource (revision "
                f"{version['revision']}, write {value['write']}) holds count {value['count']}:\n"
                + (show(previous) + "\n" if previous else "") + show(version))
            break  # every later version is off by the same amount; one report is enough
    acknowledged = [w for w in writes if w["outcome"] == "ok" and w["succeeded"]]
    unknown = [w for w in writes if w["outcome"] == "unknown"]
    final = written[-1][1]["count"] if written else 0
    if not len(acknowledged) <= final <= len(acknowledged) + len(unknown):
        problems.append(f"final count {final} is outside [{len(acknowledged)} acknowledged, "
                        f"{len(acknowledged) + len(unknown)} acknowledged + unknown] increments")

    # 4. The clients' answers agree with the store.
    by_id = {value["write"]: version for version, value in written}
    by_revision = {version["revision"]: value for version, value in written}
    for write in acknowledged:
        value = by_revision.get(write["revision"])
        if value is None or (value["write"], value["count"], value["fence"]) != (
                write["write"], write["count"], write["fence"]):
            problems.append(f"acknowledged write {write['write']} is not the resource's version "
                            f"at its revision {write['revision']}:\n" + show(write))
    writes_by_id = {w["write"]: w for w in writes}
    for write_id, version in by_id.items():
        write = writes_by_id.get(write_id)
        if write is None or write["outcome"] == "failed" or (
                write["outcome"] == "ok" and not write["succeeded"]):
            problems.append(f"the resource holds write {write_id}, which "
                            + ("no client made" if write is None else
                               "its client was told did not happen") + ":\n"
                            + show(version) + ("\n" + show(write) if write else ""))

    # 5. Lock granted only to the oldest live key.
    locks = [e for e in clients if e["event"] == "lock" and e["outcome"] == "ok"]
    for lock in locks:
        live = state.live_at(lock["revision"])
        mine = [created for created, key in live if key == lock["key"]]
        if mine and live[0][1] != lock["key"]:
            problems.append(f"Lock answered client {lock['client']} with {lock['key']} at revision "
                            f"{lock['revision']}, while the older key {live[0][1]} (created at "
                            f"{live[0][0]}) still held the lock:\n" + show(lock))

    figures = {
        "holds": sum(1 for lock in locks if lock.get("fence") is not None),
        "lost before use": sum(1 for lock in locks if lock.get("fence") is None),
        "lock calls unanswered": sum(1 for e in clients
                                     if e["event"] == "lock" and e["outcome"] != "ok"),
        "stalls": sum(1 for e in clients if e["event"] == "stall"),
        "writes acknowledged": len(acknowledged),
        "writes refused by the fence": sum(1 for w in writes
                                           if w["outcome"] == "ok" and not w["succeeded"]),
        "writes unknown": len(unknown),
        "final count": final,
    }
    return problems, figures


def report(problems, figures):
    """The lines for the nemesis summary."""
    lines = ["locks: " + ", ".join(f"{name} {count}" for name, count in figures.items()),
             "lock fencing: " + ("ok" if not problems else f"VIOLATION ({len(problems)})")]
    lines.extend(problems)
    return lines


CLIENT_FIELDS = {"lock": {"client", "invoke", "complete", "outcome"},
                 "write": {"client", "invoke", "complete", "outcome", "write", "fence", "count"},
                 "release": {"client", "how"}, "stall": {"client"}}
# What an answered ("ok") Lock or write carries besides.
ANSWER_FIELDS = {"lock": {"key", "revision", "fence"}, "write": {"succeeded", "revision"}}
STORE_FIELDS = {"key", "type", "revision", "create_revision", "value"}


def read_history(path):
    """The events of a lock history file; raises ValueError naming the line that is wrong."""
    events = []
    with open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if event["source"] == "store":
                    missing = STORE_FIELDS - event.keys()
                else:
                    missing = CLIENT_FIELDS[event["event"]] - event.keys()
                    if not missing and event["event"] in ("lock", "write") and \
                            event["outcome"] == "ok":
                        missing = ANSWER_FIELDS[event["event"]] - event.keys()
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"{path}: line {number}: not a lock event ({error})") from error
            if missing:
                raise ValueError(f"{path}: line {number}: missing {', '.join(sorted(missing))}")
            events.append(event)
    return events


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} LOCK_HISTORY.jsonl", file=sys.stderr)
        return 2
    try:
        events = read_history(argv[1])
    except (OSError, ValueError) as error:
        print(f"lock_workload: {error}", file=sys.stderr)
        return 2
    problems, figures = check(events)
    print("\n".join(report(problems, figures)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
