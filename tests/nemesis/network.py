"""The nemesis's network: each member in a network namespace of its own, and the faults on it.

Layout (created inside the harness's own private namespace, see scripts/nemesis):

    harness namespace: bridge 10.77.0.254/24, the clients, and one peer proxy per member
      member i: namespace with veth 10.77.0.(i+1), synod listening there on :2379 and :2380

Members advertise their peer URL as the proxy of theirs (10.77.0.254:24000+i), so every peer
connection runs member -> proxy -> member. A proxy knows the sending member from the source
address, so it can delay each directed link on its own, and the packets of a directed link are
the ones from the sender's address to the receiver's proxy port, so iptables in the harness
namespace cuts or thins exactly that link:
- partition: DROP on a directed link (a one-way partition is one direction only);
- loss: DROP with `-m statistic --mode random` (TCP retransmits: loss shows as delay and stalls);
- delay: the proxy holds each chunk for a delay, keeping the stream's order.
Clients reach members directly, so a cut-off member still answers (or refuses) its clients, as
the minority side of a real partition does.

Without namespaces (no root), members run on 127.0.0.1 with distinct ports and only the process
faults (kill, pause) are available.
"""

import asyncio
import os
import random
import subprocess
import threading
import time

SUBNET = "10.77.0"
BRIDGE_ADDRESS = f"{SUBNET}.254"
PROXY_PORT_BASE = 24000
CHAIN = "NEMESIS"


def run(argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def namespaces_available():
    try:
        run(["ip", "netns", "add", f"synod-probe-{os.getpid()}"])
        run(["ip", "netns", "del", f"synod-probe-{os.getpid()}"])
        run(["iptables", "-L", "INPUT", "-n"])
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


class Network:
    """Namespaces, bridge, proxies and iptables rules for `size` members."""

    def __init__(self, size, seed):
        self.size = size
        self.namespaces = [f"synod-nemesis-{os.getpid()}-{i}" for i in range(size)]
        self.random = random.Random(seed)
        # delay_ms[(src, dst)]: (base, jitter) added to every chunk from src to dst.
        self.delay_ms = {}
        self.cut_links = set()
        self.loss = 0.0
        self.loop = None
        self.thread = None

    # --- addresses ----------------------------------------------------------------------------
    def member_ip(self, i):
        return f"{SUBNET}.{i + 1}"

    def client_url(self, i):
        return f"http://{self.member_ip(i)}:2379"

    def client_address(self, i):
        return f"{self.member_ip(i)}:2379"

    def listen_peer_url(self, i):
        return f"http://{self.member_ip(i)}:2380"

    def advertised_peer_url(self, i):
        return f"http://{BRIDGE_ADDRESS}:{PROXY_PORT_BASE + i}"

    def command_prefix(self, i):
        return ["ip", "netns", "exec", self.namespaces[i]]

    def member_of_address(self, address):
        if not address.startswith(SUBNET + "."):
            return None
        index = int(address.rsplit(".", 1)[1]) - 1
        return index if 0 <= index < self.size else None

    # --- setup and teardown -------------------------------------------------------------------
    def setup(self):
        run(["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", "nemesis-br", "type", "bridge"])
        run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", "nemesis-br"])
        run(["ip", "link", "set", "nemesis-br", "up"])
        for i, namespace in enumerate(self.namespaces):
            outside, inside = f"nem{i}", f"nem{i}m"
            run(["ip", "netns", "add", namespace])
            run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
            run(["ip", "link", "set", inside, "netns", namespace])
            run(["ip", "link", "set", outside, "master", "nemesis-br", "up"])
            inner = ["ip", "netns", "exec", namespace]
            run(inner + ["ip", "addr", "add", f"{self.member_ip(i)}/24", "dev", inside])
            run(inner + ["ip", "link", "set", inside, "up"])
            run(inner + ["ip", "link", "set", "lo", "up"])
            run(inner + ["ip", "route", "add", "default", "via", BRIDGE_ADDRESS])
        run(["iptables", "-N", CHAIN])
        run(["iptables", "-I", "INPUT", "-j", CHAIN])
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait()

    def teardown(self):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", "nemesis-br"], stderr=subprocess.DEVNULL)

    # --- the proxies --------------------------------------------------------------------------
    def _serve(self, started):
        asyncio.set_event_loop(self.loop)
        for i in range(self.size):
            self.loop.run_until_complete(asyncio.start_server(
                lambda r, w, dst=i: self._relay(r, w, dst), BRIDGE_ADDRESS, PROXY_PORT_BASE + i))
        started.set()
        self.loop.run_forever()

    async def _relay(self, reader, writer, dst):
        src = self.member_of_address(writer.get_extra_info("peername")[0])
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.member_ip(dst), 2380)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, upstream_writer, (src, dst)),
                             self._pump(upstream_reader, writer, (dst, src)),
                             return_exceptions=True)

    async def _pump(self, reader, writer, link):
        # Chunks leave in order, each no earlier than its arrival plus the link's delay.
        pending = asyncio.Queue()

        async def deliver():
            while True:
                due, chunk = await pending.get()
                if chunk is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        last_due = 0.0
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                base, jitter = self.delay_ms.get(link, (0, 0))
                due = time.monotonic() + (base + self.random.uniform(0, jitter)) / 1000
                last_due = max(last_due, due)
                pending.put_nowait((last_due, chunk))
        finally:
            pending.put_nowait((0, None))
            try:
                await delivering
            finally:
                writer.close()

    # --- faults -------------------------------------------------------------------------------
    def _rule(self, src, dst, extra=()):
        return ["-s", self.member_ip(src), "-p", "tcp", "--dport", str(PROXY_PORT_BASE + dst),
                *extra, "-j", "DROP"]

    def cut(self, src, dst):
        """Drops every packet of the directed link src -> dst."""
        if (src, dst) not in self.cut_links:
            run(["iptables", "-A", CHAIN, *self._rule(src, dst)])
            self.cut_links.add((src, dst))

    def set_loss(self, probability):
        """Drops each packet on every peer link with `probability`."""
        for src in range(self.size):
            for dst in range(self.size):
                if src != dst:
                    run(["iptables", "-A", CHAIN, *self._rule(
                        src, dst, ("-m", "statistic", "--mode", "random",
                                   "--probability", f"{probability:.3f}"))])
        self.loss = probability

    def set_delay(self, links, base_ms, jitter_ms):
        for link in links:
            self.delay_ms[link] = (base_ms, jitter_ms)

    def heal(self):
        run(["iptables", "-F", CHAIN])
        self.cut_links.clear()
        self.loss = 0.0
        self.delay_ms.clear()


class Loopback:
    """The fallback without namespaces: members on 127.0.0.1, process faults only."""

    def __init__(self, size, base_port=23790):
        self.size = size
        self.base_port = base_port

    def setup(self):
        pass

    def teardown(self):
        pass

    def client_url(self, i):
        return f"http://{self.client_address(i)}"

    def client_address(self, i):
        return f"127.0.0.1:{self.base_port + 2 * i}"

    def listen_peer_url(self, i):
        return f"http://127.0.0.1:{self.base_port + 2 * i + 1}"

    def advertised_peer_url(self, i):
        return self.listen_peer_url(i)

    def command_prefix(self, i):
        return []

    def heal(self):
        pass
