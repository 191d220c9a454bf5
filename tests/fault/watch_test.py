"""Watch on a real 3-member cluster: every watcher sees exactly the acknowledged changes of its
range, in revision order, once each, whichever member it is connected to.

Writes (puts, deletes, transactions) go through random members; the ground truth is what each
write's response says (its revision). Checked against it:
- a live watcher on every member (prefix, prev_kv): exactly the expected events, and each put's
  prev_kv is the key's previous value;
- a watcher that starts at revision 1 midway (history replay, then live events, no gap or
  repeat at the switch), and a NOPUT-filtered one;
- a slow consumer that does not read while 16 MiB of events pile up: it later gets every event
  in order (the server let it fall behind and caught it up from history);
- a progress request answers with the current revision; a cancel ends the watcher; a quiet
  watcher created with progress_notify is told the current revision every interval;
- a watcher starting below the compacted revision is canceled with the compact revision.
"""

import argparse
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synod_cluster import Cluster  # noqa: E402
import etcd3  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402


class WatchStream:
    """One Watch stream; requests are sent on demand, responses collected by a thread."""

    def __init__(self, member, read=True):
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        # etcd's own client accepts messages of any size (clientv3's MaxCallRecvMsgSize); a
        # history page of 1,000 events of 8 KiB is larger than gRPC's default 4 MiB.
        self.client = etcd3.client("127.0.0.1", member.client_port, grpc_options=[
            ("grpc.max_receive_message_length", -1)])
        self.stub = etcdrpc.WatchStub(self.client.channel)
        self.call = self.stub.Watch(iter(self.requests.get, None))
        self.reader = None
        if read:
            self.start_reading()

    def start_reading(self):
        def read():
            try:
                for response in self.call:
                    self.responses.put(response)
            except Exception as error:  # The call ends with CANCELLED when we close it.
                self.responses.put(error)
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def create(self, key, range_end=b"", start_revision=0, prev_kv=False, filters=(),
               progress_notify=False):
        self.requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
            filters=list(filters), progress_notify=progress_notify)))

    def next(self, timeout_s=10):
        response = self.responses.get(timeout=timeout_s)
        if isinstance(response, Exception):
            raise AssertionError(f"watch stream failed: {response}")
        return response

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def expect_created(stream):
    response = stream.next()
    assert response.created and not response.canceled, response
    return response.watch_id


def collect_until(stream, watch_id, last_revision, timeout_s=30):
    """Events for `watch_id` until one at `last_revision` (or later) arrives."""
    events = []
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"watcher {watch_id} stopped at {events[-1:]}, "
                                 f"expected up to revision {last_revision}")
        response = stream.next(remaining)
        assert not response.canceled, response
        if response.watch_id != watch_id:
            continue
        for event in response.events:
            events.append(event)
        if events and events[-1].kv.mod_revision >= last_revision:
            return events


def describe(event):
    kind = "PUT" if event.type == 0 else "DELETE"
    text = f"{kind} {event.kv.key.decode()}@{event.kv.mod_revision}"
    if event.type == 0:
        text += f"={abbreviate(event.kv.value.decode())}"
    return text


def abbreviate(value):
    return value if len(value) <= 16 else f"{value[:8]}...({len(value)} bytes)"


def check_events(name, events, expected, prev_values=None):
    got = [describe(e) for e in events]
    want = [text for _, text, _ in expected]
    if got != want:
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                raise AssertionError(f"{name}: event {i} is {g}, expected {w}")
        raise AssertionError(f"{name}: {len(got)} events, expected {len(want)}")
    if prev_values is not None:
        for event, (_, _, prev) in zip(events, expected):
            if event.type != 0:
                continue
            got_prev = event.prev_kv.value.decode() if event.HasField("prev_kv") else None
            if got_prev != prev:
                raise AssertionError(f"{name}: {describe(event)} prev_kv {got_prev}, "
                                     f"expected {prev}")


def run_writes(cluster, rng, count, expected, values):
    """Random puts, deletes and txns on keys k00..k19 through random members; appends
    (revision, event text, previous value) for every change to `expected`."""
    for i in range(count):
        member = rng.choice(cluster.members)
        key = f"k{rng.randrange(20):02d}"
        roll = rng.random()
        if roll < 0.7:
            value = f"v{i}"
            response = member.client.kvstub.Put(
                etcdrpc.PutRequest(key=key.encode(), value=value.encode()), 5)
            revision = response.header.revision
            expected.append((revision, f"PUT {key}@{revision}={value}", values.get(key)))
            values[key] = value
        elif roll < 0.85:
            response = member.client.kvstub.DeleteRange(
                etcdrpc.DeleteRangeRequest(key=key.encode()), 5)
            if response.deleted:
                revision = response.header.revision
                expected.append((revision, f"DELETE {key}@{revision}", None))
                values.pop(key)
        else:
            # Two puts in one transaction: one revision, two events in request order.
            other = f"k{(int(key[1:]) + 1) % 20:02d}"
            txn = etcdrpc.TxnRequest(success=[
                etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key.encode(),
                                                                 value=f"t{i}".encode())),
                etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=other.encode(),
                                                                 value=f"u{i}".encode()))])
            response = member.client.kvstub.Txn(txn, 5)
            revision = response.header.revision
            expected.append((revision, f"PUT {key}@{revision}=t{i}", values.get(key)))
            values[key] = f"t{i}"
            expected.append((revision, f"PUT {other}@{revision}=u{i}", values.get(other)))
            values[other] = f"u{i}"
        # Something outside the watched prefix now and then: must not show up.
        if i % 10 == 0:
            member.client.kvstub.Put(etcdrpc.PutRequest(key=b"other", value=b"x"), 5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--base-port", type=int, default=23790)
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", default="raft", choices=["raft", "multipaxos"])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"watch test: seed {args.seed}, {args.writes} writes per phase")

    base_dir = tempfile.mkdtemp(prefix="synod-watch-")
    cluster = Cluster(args.binary, base_dir, 3, base_port=args.base_port,
                      extra_flags=["--experimental-watch-progress-notify-interval", "500ms"],
                      engine=args.engine)
    streams = []
    try:
        cluster.start_all()
        # The writes go through random members; one that has not heard the leader within its
        # wait (an election timeout) answers "no leader".
        cluster.wait_until_every_member_knows_leader()
        expected, values = [], {}

        # Live prefix watchers with prev_kv on every member, and a NOPUT one.
        live = []
        for member in cluster.members:
            stream = WatchStream(member)
            streams.append(stream)
            stream.create(b"k", b"l", prev_kv=True)
            live.append((member, stream, expect_created(stream)))
        no_put = WatchStream(cluster.members[0])
        streams.append(no_put)
        no_put.create(b"k", b"l", filters=[etcdrpc.WatchCreateRequest.NOPUT])
        no_put_id = expect_created(no_put)
        # A slow consumer: created, then not read at all during the next phases.
        slow = WatchStream(cluster.members[1], read=False)
        streams.append(slow)
        slow.create(b"k", b"l")

        run_writes(cluster, rng, args.writes, expected, values)
        # From revision 1 midway: history, then live events.
        replay = WatchStream(cluster.members[2])
        streams.append(replay)
        replay.create(b"k", b"l", start_revision=1)
        replay_id = expect_created(replay)
        run_writes(cluster, rng, args.writes, expected, values)
        # 16 MiB for the slow consumer to fall behind on: more than the connection's flow-control
        # windows and the server's outbox (WatchService::kOutboxResponsesMax) hold together.
        big = "x" * 8192
        for i in range(2048):
            response = cluster.members[i % 3].client.kvstub.Put(
                etcdrpc.PutRequest(key=b"k-big", value=big.encode()), 5)
            revision = response.header.revision
            expected.append((revision, f"PUT k-big@{revision}={abbreviate(big)}",
                             values.get("k-big")))
            values["k-big"] = big
        last = expected[-1][0]

        for member, stream, watch_id in live:
            check_events(f"live watcher on {member.name}",
                         collect_until(stream, watch_id, last), expected, prev_values=True)
        check_events("watcher replaying from revision 1", collect_until(replay, replay_id, last),
                     expected)
        deletes = [e for e in expected if e[1].startswith("DELETE")]
        check_events("NOPUT watcher", collect_until(no_put, no_put_id, deletes[-1][0]), deletes)
        slow.start_reading()
        slow_id = expect_created(slow)
        check_events("slow consumer", collect_until(slow, slow_id, last, timeout_s=60), expected)
        print(f"watch test: {len(expected)} events seen in order by 6 watchers on 3 members "
              f"(last revision {last})")

        # Progress request: the current revision, watch id -1.
        stream = live[0][1]
        # python3-etcd3's protos predate progress_request (field 3, an empty message); protobuf
        # keeps it as an unknown field and sends it as is.
        stream.requests.put(etcdrpc.WatchRequest.FromString(b"\x1a\x00"))
        response = stream.next()
        assert response.watch_id == -1 and not response.events, response
        current = cluster.members[0].client.kvstub.Range(
            etcdrpc.RangeRequest(key=b"k00"), 5).header.revision
        assert response.header.revision == current, (response.header.revision, current)
        # Cancel: acknowledged, then silence for that watcher.
        stream.requests.put(etcdrpc.WatchRequest(
            cancel_request=etcdrpc.WatchCancelRequest(watch_id=live[0][2])))
        response = stream.next()
        assert response.canceled and response.watch_id == live[0][2], response
        cluster.members[0].client.kvstub.Put(etcdrpc.PutRequest(key=b"k00", value=b"after"), 5)
        try:
            response = stream.next(timeout_s=1)
            raise AssertionError(f"canceled watcher still got {response}")
        except queue.Empty:
            pass

        # A quiet watcher with progress_notify hears the current revision every interval.
        quiet = WatchStream(cluster.members[2])
        streams.append(quiet)
        quiet.create(b"quiet/", b"quiet0", progress_notify=True)
        quiet_id = expect_created(quiet)
        response = quiet.next(timeout_s=5)
        assert response.watch_id == quiet_id and not response.events, response
        current = cluster.members[2].client.kvstub.Range(
            etcdrpc.RangeRequest(key=b"k00"), 5).header.revision
        assert response.header.revision == current, (response.header.revision, current)

        # Compaction overtakes a watcher that starts below it.
        compact_at = last - 10
        cluster.members[0].client.kvstub.Compact(etcdrpc.CompactionRequest(revision=compact_at), 5)
        old = WatchStream(cluster.members[1])
        streams.append(old)
        old.create(b"k", b"l", start_revision=2)
        expect_created(old)
        response = old.next()
        assert response.canceled and response.compact_revision == compact_at, response
        print(f"watch test: progress, cancel and compaction ({compact_at}) answered as etcd does")
        print("watch test: passed")
    except Exception:
        for member in cluster.members:
            print(f"--- {member.name} log tail:\n{cluster.log_tail(member)}")
        raise
    finally:
        for stream in streams:
            stream.close()
        cluster.stop_all()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
