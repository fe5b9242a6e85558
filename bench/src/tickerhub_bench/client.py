"""Client worker processes: many picows WebSocket clients on one uvloop loop each.

The parent forks ``workers`` of these before it starts anything else and talks
to each over a pipe (one command, one reply). Every client keeps a merged
:class:`~tickerhub_bench.view.ClientView`, counts the updates it receives and
records each one's latency: receipt time (taken when the frame arrives, before
parsing) minus the publish time the injector wrote for that ``seq`` into a
shared array before publishing it. So latency does not depend on the server
forwarding ``ts``, only on the per-symbol ``seq`` the protocol guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tickerhub_bench.stats import Histogram
from tickerhub_bench.tickclock import record_volume_clock, sample_staleness
from tickerhub_bench.view import ClientView, converged, mismatches
from tickerhub_core.gcpolicy import settle_heap

# Ring of publish times (ns) indexed by ``seq & PUB_MASK``, shared with the injector.
PUB_SLOTS = 1 << 20
PUB_MASK = PUB_SLOTS - 1

# Counters shared with the parent for the progress line, per worker.
CTR_CONNECTED, CTR_UPDATES, CTR_FRAMES, CTR_CLOSED = range(4)
CTR_WIDTH = 4


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Group:
    """Latency and counts for one group of clients (normal or stalled)."""

    hist: Histogram = field(default_factory=Histogram)
    updates: int = 0
    frames: int = 0


class Client(WSListener):
    def __init__(
        self,
        worker: Worker,
        index: int,
        watch: list[str] | None,
        stalled: bool,
        url_watch: bool = False,
        view: ClientView | None = None,
    ):
        self.worker = worker
        self.index = index
        self.watch = watch
        self.view = view if view is not None else ClientView(watch)
        self.stalled = stalled
        # The watchlist went on the URL (?symbols=): the first snapshot is already
        # filtered, and no {"watchlist"} message is sent.
        self.url_watch = url_watch
        self.url = ""
        self.received = 0  # payload bytes received on this connection
        self.seq = 0
        self.epoch: str | None = None
        self.resumed: bool | None = None
        # Diff frames while measuring, and when the first and last arrived (ns): the
        # max_rate scenario's rate is (count - 1) / (last - first) per client.
        self.measured_diffs = 0
        self.first_diff_ns = self.last_diff_ns = 0
        self.transport: WSTransport | None = None
        self.snapshots = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.parts: list[bytes] = []
        self.other = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.watch is not None and not self.url_watch:
            transport.send(WSMsgType.TEXT, orjson.dumps({"watchlist": self.watch}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if frame.fin:
                self.on_message(frame.get_payload_as_bytes(), now)
            else:
                self.parts = [frame.get_payload_as_bytes()]
        elif kind is WSMsgType.CONTINUATION:
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload = b"".join(self.parts)
                self.parts = []
                self.on_message(payload, now)
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())

    def on_message(self, payload: bytes, now: int) -> None:
        worker = self.worker
        worker.frames += 1
        self.received += len(payload)
        if (
            self.watch is not None
            and not self.url_watch
            and self.snapshots == 0
            and payload.startswith(b'{"type":"snapshot"')
        ):
            # The snapshot sent on connect, before our watchlist: the next one replaces it.
            self.snapshots = 1
            return
        msg = orjson.loads(payload)
        kind = msg.get("type")
        self.seq = max(self.seq, msg.get("seq") or 0)
        if kind == "diff":
            if worker.measuring:
                self.measured_diffs += 1
                self.last_diff_ns = now
                if not self.first_diff_ns:
                    self.first_diff_ns = now
            applied = self.view.apply_diff(msg)
            if not applied:
                return
            if worker.volume_clock and worker.measuring:  # scenario S: see tickclock.py
                record_volume_clock(msg, now, worker.group.hist)
            worker.updates += len(applied)
            if worker.measuring:
                group = worker.stalled_group if self.stalled else worker.group
                group.frames += 1
                pub = worker.pub
                record = group.hist.record
                since = worker.since_seq
                for seq in applied:
                    if seq > since:
                        group.updates += 1
                        published = pub[seq & PUB_MASK]
                        if published:
                            record((now - published) / 1e6)
        elif kind == "snapshot":
            self.snapshots += 1
            if "epoch" in msg:
                self.epoch = msg["epoch"]
            if "resumed" in msg:
                self.resumed = msg["resumed"]
            self.view.apply_snapshot(msg)  # a partial one (a resume answer) merges
            wanted = 2 if self.watch is not None and not self.url_watch else 1
            if self.snapshots >= wanted and not self.ready.done():
                self.ready.set_result(None)
        else:
            self.other += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.worker.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready ({self.close_code})"))


class Worker:
    def __init__(self, wid: int, conn: Connection, pub: Any, counters: Any) -> None:
        self.wid = wid
        self.conn = conn
        self.pub = pub
        self.counters = counters
        self.clients: list[Client] = []
        self.group = Group()
        self.stalled_group = Group()
        self.measuring = False
        self.since_seq = 0
        self.updates = 0
        self.frames = 0
        self.closed = 0
        self.volume_clock = False  # scenario S: latency from the quote's volume (tickclock.py)

    # -- commands ---------------------------------------------------------------
    async def cmd_connect(
        self, specs: list[tuple[str, list[str] | None, bool]], concurrency: int, limit: float
    ) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        t0 = time.monotonic()

        async def one(i: int, url: str, watch: list[str] | None, stalled: bool) -> None:
            async with sem:
                try:
                    transport, client = await ws_connect(
                        lambda: Client(self, i, watch, stalled),
                        url,
                        websocket_handshake_timeout=limit,
                        max_frame_size=64 * 1024 * 1024,
                    )
                    assert isinstance(client, Client)
                    client.url = url.split("?", 1)[0]
                    self.clients.append(client)
                    if stalled:
                        sock = transport.underlying_transport.get_extra_info("socket")
                        with contextlib.suppress(Exception):
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                    await asyncio.wait_for(client.ready, limit)
                    self.counters[self.wid * CTR_WIDTH + CTR_CONNECTED] += 1
                except Exception as exc:  # a failed connect is a result, not a crash
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        base = len(self.clients)
        await asyncio.gather(*(one(base + i, *spec) for i, spec in enumerate(specs)))
        return {"seconds": time.monotonic() - t0, "errors": errors, "connected": len(self.clients)}

    async def cmd_reconnect(self, resume: bool, concurrency: int, limit: float) -> dict[str, Any]:
        """Reconnect every client (their api was killed) at once, keeping each view.

        The watchlist goes on the URL, and with ``resume`` the view's ``seq`` and
        ``epoch`` too. Returns the bytes received on the new connections so far
        (the storm's cost; read again after convergence with ``received``).
        """
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        old, self.clients = self.clients, []
        t0 = time.monotonic()

        async def one(prev: Client) -> None:
            params = {} if prev.watch is None else {"symbols": ",".join(prev.watch)}
            if resume and prev.epoch is not None:
                # The view merges partial snapshots: only the changed fields are needed.
                params.update(since=str(prev.seq), epoch=prev.epoch, fields="changed")
            url = prev.url + ("?" + urlencode(params, safe=",") if params else "")
            async with sem:
                try:
                    _, client = await ws_connect(
                        lambda: Client(self, prev.index, prev.watch, False, True, prev.view),
                        url,
                        websocket_handshake_timeout=limit,
                        max_frame_size=64 * 1024 * 1024,
                    )
                    assert isinstance(client, Client)
                    client.url, client.seq, client.epoch = prev.url, prev.seq, prev.epoch
                    self.clients.append(client)
                    await asyncio.wait_for(client.ready, limit)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(*(one(c) for c in old))
        return {
            "seconds": time.monotonic() - t0,
            "errors": errors,
            "connected": len(self.clients),
            "resumed": sum(c.resumed is True for c in self.clients),
        }

    def cmd_paced(self) -> dict[str, Any]:
        """Diff frames per client while measuring: the max_rate scenario's figure."""
        rates = [
            (c.measured_diffs - 1) * 1e9 / (c.last_diff_ns - c.first_diff_ns)
            for c in self.clients
            if c.measured_diffs >= 2 and c.last_diff_ns > c.first_diff_ns
        ]
        return {"max": max(rates, default=0.0), "total": sum(rates), "clients": len(rates)}

    def cmd_volume_clock(self, on: bool) -> dict[str, Any]:
        self.volume_clock = on
        return {}

    async def cmd_staleness(self, seconds: float, every: float, clients: int) -> dict[str, Any]:
        """Scenario S: sample how old the values some clients hold are (tickclock.py)."""
        hist = Histogram()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for c in self.clients[:clients]:
                sample_staleness(c.view.quotes, time.time_ns(), hist)
            await asyncio.sleep(every)
        return hist.to_state()

    def cmd_received(self) -> dict[str, Any]:
        return {"bytes": sum(c.received for c in self.clients), "clients": len(self.clients)}

    def cmd_measure(self, on: bool, since_seq: int = 0) -> dict[str, Any]:
        """Start (or stop) counting updates whose ``seq`` is above ``since_seq``."""
        if on:
            for c in self.clients:
                c.measured_diffs = c.first_diff_ns = c.last_diff_ns = 0
            self.since_seq = since_seq
            self.group = Group()
            self.stalled_group = Group()
        self.measuring = on
        return {}

    async def cmd_stall(self, seconds: float) -> dict[str, Any]:
        stalled = [c for c in self.clients if c.stalled and c.transport is not None]
        for c in stalled:
            c.transport.underlying_transport.pause_reading()  # type: ignore[union-attr]

        async def resume() -> None:
            await asyncio.sleep(seconds)
            for c in stalled:
                if c.transport is not None and not c.transport.is_disconnected:
                    with contextlib.suppress(Exception):
                        c.transport.underlying_transport.resume_reading()

        self._resume_task = asyncio.create_task(resume())
        return {"stalled": len(stalled)}

    def cmd_stats(self) -> dict[str, Any]:
        cpu = os.times()
        return {
            "normal": {
                "hist": self.group.hist.to_state(),
                "updates": self.group.updates,
                "frames": self.group.frames,
            },
            "stalled": {
                "hist": self.stalled_group.hist.to_state(),
                "updates": self.stalled_group.updates,
                "frames": self.stalled_group.frames,
            },
            "cpu": cpu.user + cpu.system,
        }

    async def cmd_converge(self, final_seqs: dict[str, int], limit: float) -> dict[str, Any]:
        t0 = time.monotonic()
        live = [
            c for c in self.clients if c.transport is not None and not c.transport.is_disconnected
        ]
        while True:
            pending = [c for c in live if not converged(c.view, final_seqs)]
            if not pending or time.monotonic() - t0 > limit:
                break
            await asyncio.sleep(0.05)
            live = [c for c in pending if not c.transport.is_disconnected]  # type: ignore[union-attr]
        return {"seconds": time.monotonic() - t0, "pending": len(pending)}

    def cmd_check(self, expected: dict[str, Any]) -> dict[str, Any]:
        wrong_clients = {"normal": 0, "stalled": 0}
        wrong_symbols = 0
        dropped: dict[str, int] = {}
        sample: list[str] = []
        extra = skipped = 0
        for c in self.clients:
            extra += c.view.extra
            skipped += c.view.skipped
            if c.transport is None or c.transport.is_disconnected:
                key = f"{c.close_code}"
                dropped[key] = dropped.get(key, 0) + 1
                continue
            wrong = mismatches(c.view.quotes, expected, c.watch)
            if wrong:
                wrong_clients["stalled" if c.stalled else "normal"] += 1
                wrong_symbols += len(wrong)
                if len(sample) < 3:
                    sym = wrong[0]
                    sample.append(
                        f"{sym}: client={c.view.quotes.get(sym)} server={expected.get(sym)}"
                    )
        return {
            "wrong_clients": wrong_clients,
            "wrong_symbols": wrong_symbols,
            "dropped": dropped,
            "sample": sample,
            "extra": extra,
            "skipped": skipped,
        }

    async def cmd_close(self) -> dict[str, Any]:
        for c in self.clients:
            if c.transport is not None and not c.transport.is_disconnected:
                with contextlib.suppress(Exception):
                    c.transport.send_close()
                    c.transport.disconnect()
        await asyncio.sleep(0.2)
        self.clients = []
        self.counters[self.wid * CTR_WIDTH + CTR_CONNECTED] = 0
        return {}

    # -- loop --------------------------------------------------------------------
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def read_commands() -> None:
            # A blocking reader thread: the pipe must stay blocking for multi-chunk messages.
            while True:
                try:
                    item = self.conn.recv()
                except (EOFError, OSError):
                    item = ("exit", ())
                loop.call_soon_threadsafe(inbox.put_nowait, item)
                if item[0] == "exit":
                    return

        threading.Thread(target=read_commands, daemon=True).start()
        publish = loop.create_task(self.publish_counters())
        try:
            while True:
                name, args = await inbox.get()
                if name == "exit":
                    break
                handler = getattr(self, f"cmd_{name}")
                try:
                    result = handler(*args)
                    if asyncio.iscoroutine(result):
                        result = await result
                    self.conn.send(("ok", result))
                except Exception as exc:
                    self.conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            publish.cancel()

    async def publish_counters(self) -> None:
        base = self.wid * CTR_WIDTH
        while True:
            self.counters[base + CTR_UPDATES] = self.updates
            self.counters[base + CTR_FRAMES] = self.frames
            self.counters[base + CTR_CLOSED] = self.closed
            await asyncio.sleep(0.25)


def worker_main(wid: int, conn: Connection, pub: Any, counters: Any) -> None:
    raise_fd_limit()
    # As the api and poller do: thousands of clients' objects, out of full collections'
    # way (their pauses would count as the hub's latency).
    settle_heap()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(Worker(wid, conn, pub, counters).serve())
