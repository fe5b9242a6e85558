"""Our own connection to Yahoo's live price stream, with yfinance's protobuf decoding.

yfinance 1.x ships a client for ``wss://streamer.finance.yahoo.com/?version=2``
(``yfinance/live.py``) whose reconnect does not work: after the socket dies
``_connect()`` is a no-op while the dead socket is still stored, the 15 s
re-subscribe task ends on its first error, and the sync client just stops. So
the loop is ours (the ``websockets`` library, which yfinance depends on) and only
the decoding is yfinance's:

* a frame is JSON ``{"type": "pricing", "message": "<base64>"}`` (version=2; a
  bare base64 text, version=1, is accepted too); the base64 is a protobuf
  ``yfinance.pricing_pb2.PricingData`` (a private module: ``tests/test_internals.py``
  fails loudly if it or its field names change);
* we send ``{"subscribe": [...]}`` with the whole list on connect, whenever the
  set changes (:meth:`YahooStreamer.resubscribe`) and every 15 s, because Yahoo
  drops idle subscriptions; symbols that left the set get ``{"unsubscribe": [...]}``;
* watchdog: no frame for ``silence`` seconds while ``market_open()`` says a
  subscribed market is open -> reconnect (a closed market is silent for hours);
* reconnects wait ``backoff.next_delay()`` (jittered); the backoff is reset by the
  first frame that decodes, so a server that accepts and hangs up at once is not
  hammered. Each condition is logged once when it starts (and once when frames
  flow again), never once per retry; undecodable frames and frames for symbols we
  did not subscribe are ignored, counted per kind, and logged the first time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from tickerhub_yahoo.pricing import Tick, tick_from_pricing

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://streamer.finance.yahoo.com/?version=2"
RESEND_EVERY = 15.0
# A frame is one quote (~100-300 bytes); anything near this is not Yahoo's.
MAX_FRAME = 1 << 16


class Delays(Protocol):
    """The backoff the loop needs (``tickerhub_core.backoff.Backoff`` is one)."""

    def next_delay(self) -> float: ...

    def reset(self) -> None: ...


@dataclass
class StreamState:
    """The stream's health as plain values (metrics and ``/status`` read these)."""

    connected: bool = False  # handshake done and subscribed; False while reconnecting
    ticks: int = 0  # frames that became ticks
    last_tick_at: float | None = None  # time.time() of the last tick
    last_error: str | None = None  # why the last connection ended (no secrets: URL-free)
    consecutive_failures: int = 0  # connections that ended since frames last flowed
    connects: int = 0  # handshakes completed
    ignored: dict[str, int] = field(default_factory=dict)  # ignored frames by kind


class FrameError(Exception):
    """A frame we cannot use; ``kind`` groups them for counting and logging once."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class StreamSilentError(Exception):
    """The watchdog fired."""


def pricing_data_class() -> Any:
    """yfinance's generated ``PricingData`` message class (imports yfinance once)."""
    from tickerhub_yahoo.client import load

    load()  # the package first, under its lock (see client.py: the import race)
    from yfinance.pricing_pb2 import PricingData

    return PricingData


def decode_frame(raw: str | bytes, message_class: Any) -> Any:
    """A frame's ``PricingData``; raises :class:`FrameError` for anything else."""
    from google.protobuf.message import DecodeError

    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    if text.startswith("{"):
        try:
            envelope = json.loads(text)
        except ValueError as exc:
            raise FrameError("not_json", f"{exc}; frame {text[:60]!r}") from None
        payload = envelope.get("message") if isinstance(envelope, dict) else None
        if not isinstance(payload, str) or not payload:
            raise FrameError("no_message", f"frame {text[:60]!r}")
    else:
        payload = text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FrameError("not_base64", f"{exc}; frame {text[:60]!r}") from None
    message = message_class()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError) as exc:  # truncated or not protobuf at all
        raise FrameError("not_pricing_data", f"{exc}; {len(data)} bytes") from None
    return message


def _describe(exc: BaseException) -> tuple[str, str]:
    """(condition, text) of why a connection ended; the condition decides logging."""
    if isinstance(exc, StreamSilentError):
        return "silent", str(exc)
    if isinstance(exc, ConnectionClosed):
        return "closed", f"connection closed ({exc})"
    if isinstance(exc, TimeoutError):
        return "timeout", "no handshake in time"
    if isinstance(exc, OSError):
        return "unreachable", f"{type(exc).__name__}: {exc}"
    return type(exc).__name__, f"{type(exc).__name__}: {exc}"


class YahooStreamer:
    """Keeps one connection to the streamer up and turns its frames into :class:`Tick` s.

    ``symbols()`` is read on every (re)subscribe, so the set may change at any
    time; call :meth:`resubscribe` to send the change at once rather than within
    ``resend`` seconds. ``on_tick`` runs in the event loop for every tick of a
    subscribed symbol; ``on_connected(bool)`` when the connection comes or goes;
    ``on_failure(text)`` for every connection that failed or ended (URL-free text).
    """

    def __init__(
        self,
        symbols: Callable[[], Collection[str]],
        on_tick: Callable[[Tick], object],
        backoff: Delays,
        *,
        url: str = DEFAULT_URL,
        silence: float = 60.0,
        resend: float = RESEND_EVERY,
        market_open: Callable[[], bool] = lambda: True,
        on_connected: Callable[[bool], object] | None = None,
        on_failure: Callable[[str], object] | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.state = StreamState()
        self._symbols = symbols
        self._on_tick = on_tick
        self._backoff = backoff
        self._silence = silence
        self._resend = resend
        self._market_open = market_open
        self._on_connected = on_connected
        self._on_failure = on_failure
        self._open_timeout = open_timeout
        self._wake = asyncio.Event()
        self._subscribed: frozenset[str] = frozenset()
        self._logged_kinds: set[str] = set()
        self._condition: str | None = None  # the failure being reported, if any
        self._message_class: Any = None

    def resubscribe(self) -> None:
        """The symbol set changed: send the new list now."""
        self._wake.set()

    async def run(self) -> None:
        """Connect, read, reconnect; forever (until cancelled)."""
        self._message_class = pricing_data_class()
        while True:
            try:
                await self._session()
                reason: tuple[str, str] = ("closed", "connection closed by the server")
            except (StreamSilentError, WebSocketException, OSError, TimeoutError) as exc:
                reason = _describe(exc)
            except Exception as exc:  # never let the stream take the poller down
                log.exception("stream: unexpected error; reconnecting")
                reason = _describe(exc)
            finally:
                self._set_connected(False)
            self._failed(*reason)
            await asyncio.sleep(self._backoff.next_delay())

    # -- one connection ------------------------------------------------------------

    async def _session(self) -> None:
        async with connect(
            self.url, open_timeout=self._open_timeout, max_size=MAX_FRAME, close_timeout=2
        ) as ws:
            self.state.connects += 1
            self._subscribed = frozenset()  # a new connection starts with none
            await self._send_subscribe(ws)
            self._set_connected(True)
            sender = asyncio.create_task(self._keep_subscribed(ws), name="stream:subscribe")
            try:
                await self._read(ws)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    async def _keep_subscribed(self, ws: ClientConnection) -> None:
        while True:
            try:
                async with asyncio.timeout(self._resend):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._send_subscribe(ws)
            except ConnectionClosed:
                return  # the reader sees it too and reconnects
            except Exception as exc:  # e.g. symbols() raised: drop the connection, retry
                log.warning("stream: cannot resubscribe (%s); reconnecting", exc)
                await ws.close()
                return

    async def _send_subscribe(self, ws: ClientConnection) -> None:
        wanted = frozenset(s.upper() for s in self._symbols())
        gone = self._subscribed - wanted
        if gone:
            await ws.send(json.dumps({"unsubscribe": sorted(gone)}))
        if wanted:
            await ws.send(json.dumps({"subscribe": sorted(wanted)}))
        self._subscribed = wanted

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            try:
                async with asyncio.timeout(self._silence):
                    raw = await ws.recv()  # cancelling recv() loses no data
            except TimeoutError:
                if self._market_open():
                    raise StreamSilentError(
                        f"no frame for {self._silence:g}s while a market is open"
                    ) from None
                continue
            self._frame(raw)

    # -- frames --------------------------------------------------------------------

    def _frame(self, raw: str | bytes) -> None:
        try:
            message = decode_frame(raw, self._message_class)
        except FrameError as exc:
            self._ignore(exc.kind, exc.detail)
            return
        self._flowing()
        tick = tick_from_pricing(message)
        if tick is None:
            self._ignore("no_price", f"frame for {getattr(message, 'id', '')!r:.40}")
            return
        if tick.symbol not in self._subscribed:
            self._ignore("unknown_symbol", f"{tick.symbol!r:.40} is not subscribed")
            return
        self.state.ticks += 1
        self.state.last_tick_at = time.time()
        try:
            self._on_tick(tick)
        except Exception:
            if "handler" not in self._logged_kinds:
                self._logged_kinds.add("handler")
                log.exception("stream: tick handler failed (further failures not logged)")
            self.state.ignored["handler"] = self.state.ignored.get("handler", 0) + 1

    def _ignore(self, kind: str, detail: str) -> None:
        self.state.ignored[kind] = self.state.ignored.get(kind, 0) + 1
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.warning(
                "stream: ignoring a frame (%s: %s); further %s frames are counted, not logged",
                kind,
                detail,
                kind,
            )

    # -- state ---------------------------------------------------------------------

    def _flowing(self) -> None:
        """A frame decoded: the stream works. Ends a reported condition."""
        if self.state.consecutive_failures:
            if self._condition is not None:
                log.info(
                    "stream: receiving again after %d failed connections",
                    self.state.consecutive_failures,
                )
            self.state.consecutive_failures = 0
            self._condition = None
        self._backoff.reset()

    def _failed(self, condition: str, text: str) -> None:
        self.state.consecutive_failures += 1
        self.state.last_error = text
        if self._on_failure is not None:
            self._on_failure(text)
        if condition != self._condition:
            self._condition = condition
            log.warning("stream: %s; reconnecting with backoff", text)
        else:
            log.debug("stream: %s (again); reconnecting", text)

    def _set_connected(self, connected: bool) -> None:
        if self.state.connected == connected:
            return
        self.state.connected = connected
        if connected:
            # While a failure is being reported, a reconnect is not news: the first
            # frame that decodes ends the condition (logged then).
            level = logging.INFO if self._condition is None else logging.DEBUG
            log.log(level, "stream: connected, %d symbols subscribed", len(self._subscribed))
        if self._on_connected is not None:
            self._on_connected(connected)
