"""Live sources: one stream decoded in its own thread, sampled, and handed over through a bounded
buffer that drops the oldest frames when the consumer falls behind.

A `LiveSource` opens its URI by the kind in `media_ray.sources.SOURCE_KINDS`:

- `rtmp://HOST:PORT/live/KEY`: media-ray is the server. An `RtmpPublishGate` holds HOST:PORT and
  admits only a publisher whose stream name is KEY (FFmpeg's own listener merely warns about
  another name, and would take the stream); the admitted connection is relayed to FFmpeg's
  listener on a private loopback port. When the publisher disconnects the stream has `ended`;
  a new publish needs a new LiveSource (with the same key if you like).
- pulled sources (`rtsp`, `http(s)` files and HLS playlists, `v4l2` devices): when one drops or
  cannot be opened the stream goes `reconnecting` and retries with `Backoff` until it comes back
  (`live` again) or `max_reconnects` consecutive tries have failed (`failed`). A finite source
  (one with a duration: a file, a VOD or finished HLS playlist) that reaches its end has `ended`;
  one that dropped part-way is reopened where it stopped.
- local files: read once, then `ended`; a read error is `failed`. With `realtime`, finite
  sources (local or http files, VOD playlists) are paced by presentation time, like `ffmpeg -re`.

Stream time `t` is the source's own presentation time, re-based so that the first frame of the
stream is at 0. After a reconnect the source's timestamps are kept where they continue the same
timeline (a live HLS playlist rejoined, a file reopened, a server whose clock ran on through the
outage), and frames already delivered are skipped; where the timeline restarted (an RTSP
session starting again from 0), `t` resumes from the last frame plus the wall-clock length of
the outage. `t` never goes backwards, and an HLS copy written on the side (`HlsWriter`) has the
same timeline.
"""
from __future__ import annotations

import hmac
import logging
import math
import random
import select
import socket
import threading
import time
from collections import deque
from enum import Enum
from typing import Any, Callable
from urllib.parse import urlparse

import av
from pydantic import BaseModel, Field

from media_ray.hls import HlsWriter
from media_ray.sources import (DecodedFrame, FrameSampler, SourceError, flush_decoder,
                               open_source, source_kind)

log = logging.getLogger(__name__)


class StreamState(str, Enum):
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


StateCallback = Callable[[StreamState, "str | None"], None]


# ---------------------------------------------------------------------------------------------
# Buffer and backoff


class DropOldestBuffer:
    """A bounded, thread-safe FIFO. `put` never blocks: when full, the oldest item is dropped
    and counted in `dropped`. After `close()`, `put` is ignored and `get_batch` hands out what
    is left, then empty lists without waiting."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get_batch(self, max_items: int, timeout_s: float | None = None) -> list:
        """Up to `max_items` items, oldest first; waits up to `timeout_s` (None: without limit)
        for the first one. Empty on timeout, or when closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout_s)
            n = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class BackoffConfig(BaseModel):
    initial_s: float = Field(0.5, gt=0, description="first delay before reconnecting")
    factor: float = Field(2.0, ge=1, description="each further delay is this many times longer")
    max_s: float = Field(30.0, gt=0, description="longest delay")
    jitter: float = Field(0.1, ge=0, lt=1, description="delays vary by up to this fraction")


class Backoff:
    """Exponential delays: initial, initial*factor, ... capped at max_s, each varied by up to
    +-jitter of itself (0: exact, for tests)."""

    def __init__(self, initial_s: float = 0.5, factor: float = 2.0, max_s: float = 30.0,
                 jitter: float = 0.0):
        self.initial_s, self.factor, self.max_s, self.jitter = initial_s, factor, max_s, jitter
        self._n = 0

    @classmethod
    def from_config(cls, c: BackoffConfig) -> "Backoff":
        return cls(c.initial_s, c.factor, c.max_s, c.jitter)

    def next_delay(self) -> float:
        delay = min(self.max_s, self.initial_s * self.factor ** self._n)
        self._n += 1
        if self.jitter:
            delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return delay

    def reset(self) -> None:
        self._n = 0


# ---------------------------------------------------------------------------------------------
# RTMP: admit only the issued stream key


class _Incomplete(Exception):
    """More bytes are needed."""


class _ChunkStream:
    __slots__ = ("length", "type", "extended", "remaining", "payload")

    def __init__(self) -> None:
        self.length = self.type = self.remaining = 0
        self.extended = False
        self.payload = bytearray()


class RtmpPublishInspector:
    """Follows the publisher's side of an RTMP connection (handshake, then chunks) up to its
    `publish` command and compares the published stream name with the key.

    `feed(data)` returns the bytes that may be passed on to the server now: everything up to
    the last complete chunk, but never the chunk that completes `publish` before the verdict.
    `verdict` is None until then, True for the key, False for another name or a malformed or
    non-RTMP start (`reason` says which); after True everything passes unread.
    """

    HANDSHAKE = 1 + 1536 + 1536  # C0, C1, C2

    def __init__(self, key: str, max_bytes: int = 1 << 20):
        self._key = key.encode()
        self._max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf read and complete
        self._handshake_left = self.HANDSHAKE
        self._seen = 0
        self._chunk_size = 128
        self._streams: dict[int, _ChunkStream] = {}
        self.verdict: bool | None = None
        self.name: str | None = None
        self.reason: str | None = None

    def feed(self, data: bytes) -> bytes:
        if self.verdict is not None:
            return data if self.verdict else b""
        if self._seen == 0 and data and data[0] != 3:
            return self._refuse(f"not a plain RTMP handshake (version {data[0]})")
        self._seen += len(data)
        if self._seen > self._max_bytes:
            return self._refuse("no publish command")
        self._buf += data
        while self.verdict is None:
            if self._handshake_left:
                n = min(self._handshake_left, len(self._buf) - self._pos)
                self._pos += n
                self._handshake_left -= n
                if self._handshake_left:
                    break
                continue
            try:
                self._read_chunk()
            except _Incomplete:
                break
        if self.verdict is False:
            self._buf.clear()
            return b""
        upto = len(self._buf) if self.verdict else self._pos
        out = bytes(self._buf[:upto])
        del self._buf[:upto]
        self._pos -= min(self._pos, upto)
        return out

    def _refuse(self, reason: str) -> bytes:
        self.verdict, self.reason = False, reason
        self._buf.clear()
        return b""

    def _read_chunk(self) -> None:
        b, p = self._buf, self._pos

        def take(n: int) -> bytes:
            nonlocal p
            if p + n > len(b):
                raise _Incomplete
            p += n
            return bytes(b[p - n:p])

        first = take(1)[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + take(1)[0]
        elif csid == 1:
            lo, hi = take(2)
            csid = 64 + lo + (hi << 8)
        st = self._streams.get(csid) or _ChunkStream()
        length, mtype, extended = st.length, st.type, st.extended
        if fmt <= 2:
            extended = int.from_bytes(take(3), "big") == 0xFFFFFF
        if fmt <= 1:
            header = take(4)
            length, mtype = int.from_bytes(header[:3], "big"), header[3]
        if fmt == 0:
            take(4)  # message stream id
        if extended:
            take(4)
        remaining = st.remaining or length
        body = take(min(self._chunk_size, remaining))
        # the chunk is whole: commit it
        if not st.remaining:
            st.payload = bytearray()
        st.payload += body
        st.remaining = remaining - len(body)
        st.length, st.type, st.extended = length, mtype, extended
        self._streams[csid] = st
        self._pos = p
        if not st.remaining:
            self._message(mtype, bytes(st.payload))

    def _message(self, mtype: int, payload: bytes) -> None:
        if mtype == 1 and len(payload) >= 4:  # Set Chunk Size
            self._chunk_size = max(1, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif mtype == 2 and len(payload) >= 4:  # Abort Message
            st = self._streams.get(int.from_bytes(payload[:4], "big"))
            if st:
                st.remaining = 0
        elif mtype in (17, 20):  # command, AMF3 (a leading format byte) or AMF0
            self._command(payload[1:] if mtype == 17 else payload)

    def _command(self, amf: bytes) -> None:
        try:
            name, p = _amf_string(amf, 0)
            if name != "publish":
                return
            if amf[p] != 0x00:  # transaction id: a number
                raise ValueError("no transaction id")
            p += 9
            if amf[p] not in (0x05, 0x06):  # command object: null or undefined
                raise ValueError("unexpected command object")
            stream, _ = _amf_string(amf, p + 1)
        except (ValueError, IndexError) as e:
            self._refuse(f"malformed publish command ({e})")
            return
        self.name = stream
        if hmac.compare_digest(stream.encode(), self._key):
            self.verdict = True
        else:
            self._refuse("unknown stream key")  # not logged: it may be another stream's


def _amf_string(b: bytes, p: int) -> tuple[str, int]:
    marker = b[p]
    if marker == 0x02:
        n, p = int.from_bytes(b[p + 1:p + 3], "big"), p + 3
    elif marker == 0x0C:
        n, p = int.from_bytes(b[p + 1:p + 5], "big"), p + 5
    else:
        raise ValueError(f"AMF marker {marker} is not a string")
    if p + n > len(b):
        raise ValueError("truncated string")
    return b[p:p + n].decode("utf-8", "replace"), p + n


class _Link:
    """A publisher's connection and its relay to FFmpeg's listener."""

    def __init__(self, client: socket.socket, upstream: socket.socket, key: str, deadline: float):
        self.client, self.upstream = client, upstream
        self.inspector = RtmpPublishInspector(key)
        self.deadline = deadline
        #: what went upstream before FFmpeg said anything, to send again if the listener
        #: closed just as the connection arrived (its wait for the gate timed out)
        self.unanswered: bytearray | None = bytearray()

    def close(self) -> None:
        _close(self.client, self.upstream)


class RtmpPublishGate:
    """Holds the public RTMP address and relays one admitted publisher to FFmpeg's listener.

    Each connection is relayed to 127.0.0.1:`upstream_port` while its publisher's side is read
    up to `publish`: another stream name, or no publish within `admit_timeout_s`, closes both
    sides (the publisher sees its connection reset; FFmpeg's listener fails to open and is
    started again), and the gate waits for the next connection. Connections that arrive while
    a publisher is being relayed are closed at once. When the admitted publisher's connection
    ends, the gate closes.
    """

    def __init__(self, host: str, port: int, key: str, upstream_port: int,
                 admit_timeout_s: float = 10.0):
        self.host, self.port, self.key = host, port, key
        self.upstream_port = upstream_port
        self.admit_timeout_s = admit_timeout_s
        self.admitted = threading.Event()
        self.refused = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "RtmpPublishGate":
        """Bind the public address now (an address in use raises OSError here) and serve."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(4)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name=f"rtmp-gate:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def closed(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _serve(self) -> None:
        link: _Link | None = None
        try:
            while not self._stop.is_set():
                socks = [self._sock] + ([link.client, link.upstream] if link else [])
                readable, _, _ = select.select(socks, [], [], 0.2)
                if link and link.inspector.verdict is None and time.monotonic() > link.deadline:
                    self._refuse(link, f"no publish within {self.admit_timeout_s:g} s")
                    link = None
                    continue
                if self._sock in readable:
                    conn, addr = self._sock.accept()
                    if link:
                        log.info("rtmp %s: closing a second connection from %s while one is "
                                 "relayed", self.port, addr[0])
                        conn.close()
                        continue
                    deadline = time.monotonic() + self.admit_timeout_s
                    upstream = self._connect(deadline)
                    if upstream is None:
                        conn.close()
                    else:
                        link = _Link(conn, upstream, self.key, deadline)
                    continue
                if link and not self._pump(link, readable):
                    link.close()
                    if link.inspector.verdict:
                        log.info("rtmp %s: the publisher disconnected", self.port)
                        return
                    if link.inspector.verdict is False:
                        self._refuse(link, link.inspector.reason or "refused")
                    link = None
        except OSError as e:
            if not self._stop.is_set():
                log.warning("rtmp %s: gate stopped: %s", self.port, e)
        finally:
            if link:
                link.close()
            self._sock.close()

    def _connect(self, deadline: float) -> socket.socket | None:
        # FFmpeg's listener may be starting again (after a refused publisher, or after its wait
        # for the gate timed out): retry until the deadline
        while not self._stop.is_set():
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=1.0)
                upstream.settimeout(None)
                return upstream
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        log.warning("rtmp %s: FFmpeg's listener did not answer; closing the publisher", self.port)
        return None

    def _pump(self, link: _Link, readable) -> bool:
        """Move what is readable across the link; False when it is over."""
        for s in readable:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if s is link.upstream and not data and link.unanswered is not None:
                if self._reconnect(link):
                    continue
            if not data:
                return False
            try:
                if s is link.client:
                    was = link.inspector.verdict
                    out = link.inspector.feed(data)
                    if link.inspector.verdict is False:
                        return False
                    if link.inspector.verdict and not was:
                        log.info("rtmp %s: publisher admitted", self.port)
                        self.admitted.set()
                    if out:
                        self._send_upstream(link, out)
                else:
                    link.unanswered = None
                    link.client.sendall(data)
            except OSError:
                return False
        return True

    def _send_upstream(self, link: _Link, data: bytes) -> None:
        if link.unanswered is None:
            link.upstream.sendall(data)
            return
        link.unanswered += data
        try:
            link.upstream.sendall(data)
        except OSError:
            if not self._reconnect(link):
                raise

    def _reconnect(self, link: _Link) -> bool:
        """FFmpeg's listener closed without answering: connect again and repeat what was sent."""
        _close(link.upstream)
        upstream = self._connect(link.deadline)
        if upstream is None:
            return False
        try:
            upstream.sendall(link.unanswered)
        except OSError:
            _close(upstream)
            return False
        link.upstream = upstream
        return True

    def _refuse(self, link: _Link, reason: str) -> None:
        link.close()
        self.refused += 1
        log.warning("rtmp %s: refused a publisher: %s", self.port, reason)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The live source


class LiveSourceConfig(BaseModel):
    """How a live stream is read."""

    fps: float = Field(2.0, gt=0, description="frames analysed per second of stream time")
    buffer_size: int = Field(8, ge=1, description="decoded frames waiting for the consumer; when "
                                                  "full, the oldest is dropped and counted")
    open_timeout_s: float = Field(10.0, gt=0, description="how long opening a pulled source may "
                                  "take, and how long an RTMP publisher has to announce its stream")
    read_timeout_s: float = Field(10.0, gt=0, description="a read that waits longer is a dropped "
                                  "source; keep it above the segment length of HLS sources")
    max_reconnects: int = Field(0, ge=0, description="failed reconnects in a row before the stream "
                                                     "fails; 0 retries forever")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    realtime: bool = Field(False, description="pace finite sources (files, local or over http, VOD "
                           "playlists) by presentation time, as if live (like ffmpeg -re); live "
                           "sources are paced by their producer and are never held back")
    decode_threads: int = Field(0, ge=0, description="PyAV decoder threads; 0 lets FFmpeg choose")


#: after a reconnect, a source that replays (HLS) continues the same timeline when its first
#: timestamp is up to this far behind the last one seen (FFmpeg rejoins a live playlist three
#: segments back); any source continues it from up to a second behind ...
_REJOIN_BEHIND_S = 60.0
#: ... to the outage's length plus this far ahead of it
_REJOIN_AHEAD_S = 30.0
#: how long FFmpeg's RTMP listener waits for the gate before it is restarted, so a stop is seen
_LISTEN_POLL_S = 1
#: a session starts at a keyframe; where a codec never marks one, start after this many packets
_KEYFRAME_WAIT_PACKETS = 600


class _StreamClock:
    """Maps each connection's presentation times onto the stream time t (see the module doc)."""

    def __init__(self) -> None:
        self.shift: float | None = None  # t = source time + shift
        self.last_t = -math.inf
        self.last_source: float | None = None
        self._last_wall = 0.0

    def begin_session(self, first_source_s: float, replays: bool, finite: bool) -> bool:
        """A connection starts with a frame at `first_source_s`. True if it re-reads the
        bitstream already delivered (a reopened file, a rejoined HLS playlist)."""
        if self.shift is None or self.last_source is None:
            self.shift = -first_source_s
            return False
        outage = max(0.0, time.monotonic() - self._last_wall)
        if finite:  # the same file again
            behind = ahead = math.inf
        else:
            behind, ahead = (_REJOIN_BEHIND_S if replays else 1.0), outage + _REJOIN_AHEAD_S
        if self.last_source - behind <= first_source_s <= self.last_source + ahead:
            return (replays or finite) and first_source_s <= self.last_source
        self.shift = self.last_t + max(outage, 1e-3) - first_source_s
        log.info("the source's timeline restarted; t resumes at %.3f", self.last_t + outage)
        return False

    def advance(self, t: float, source_s: float) -> None:
        self.last_t, self.last_source, self._last_wall = t, source_s, time.monotonic()


class _End(Exception):
    """How a connection to the source ended: `how` is one of stopped, finished, dropped,
    unopened, fatal."""

    def __init__(self, how: str, reason: str | None = None):
        super().__init__(reason)
        self.how, self.reason = how, reason


class LiveSource:
    """Decodes one live source in a thread of its own into `buffer` (DecodedFrames, sampled at
    `config.fps`), optionally writing an HLS copy, and reports its state.

    `on_state(state, reason)` is called from the source's thread on each change of state or
    reason: starting, live (frames flow), reconnecting (reason: why; again when the reason
    changes), then ended (reason None for a source that finished, "stopped", or "publisher
    disconnected") or failed (reason). A live HLS playlist that the producer finishes shows
    a last `reconnecting` before `ended`: FFmpeg reports its end like a dropped server, and
    the reopened playlist, now finished, tells the two apart.
    Keep it short and thread-safe. When the thread ends the final state is set first, then the
    buffer is closed, so a consumer that drains a closed buffer finds the final `state`.
    The HlsWriter, if given, belongs to the source from then on and is closed by it.
    """

    def __init__(self, uri: str, config: LiveSourceConfig | None = None,
                 on_state: StateCallback | None = None, hls: HlsWriter | None = None):
        self.uri = uri
        self.config = config or LiveSourceConfig()
        self.scheme, self.kind = source_kind(uri)
        self.buffer = DropOldestBuffer(self.config.buffer_size)
        self.frames = 0  # frames put into the buffer
        self.reconnects = 0
        self._on_state = on_state
        self._hls = hls
        self._state = StreamState.STARTING
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gate: RtmpPublishGate | None = None
        self._clock = _StreamClock()
        self._sampler: FrameSampler | None = None
        self._index = -1
        self._live_in_session = False
        #: the URI as logs show it: a stream key is a secret
        self.name = uri
        if self.kind.listens:
            u = urlparse(uri)
            self.key = u.path.rsplit("/", 1)[-1]
            if not self.key or u.port is None or not u.hostname:
                raise SourceError(f"{uri}: an RTMP listen URI is rtmp://HOST:PORT/APP/KEY")
            self.name = uri[:len(uri) - len(self.key)] + "***"

    # -- control ----------------------------------------------------------------------------

    def start(self) -> "LiveSource":
        """Start reading. For RTMP the public port is bound here (OSError if it is taken)."""
        if self._thread is not None:
            raise RuntimeError("a LiveSource starts once")
        if self.kind.listens:
            u = urlparse(self.uri)
            port = _free_port()
            self._upstream = f"rtmp://127.0.0.1:{port}{u.path}"
            self._gate = RtmpPublishGate(u.hostname, u.port, self.key, port,
                                         self.config.open_timeout_s).start()
        self._thread = threading.Thread(target=self._run, name=f"live:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Ask the source to end and wait up to `timeout_s` for its thread; True if it ended.

        An RTMP source or one between reads ends at once; a pulled source blocked in a read
        ends when the read returns, within `read_timeout_s` (FFmpeg offers no safe way to abort
        a read from another thread: closing the container under it would crash the process).
        """
        self._stop.set()
        if self._gate is not None:
            self._gate.close()
        return self.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the source to end by itself; True if it has. From the source's own thread
        (a state callback) it does not wait."""
        if self._thread is None:
            return True
        if self._thread is threading.current_thread():
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def __enter__(self) -> "LiveSource":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- status -----------------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        with self._lock:
            return self._state

    @property
    def reason(self) -> str | None:
        with self._lock:
            return self._reason

    @property
    def dropped(self) -> int:
        """Frames dropped because the consumer fell behind."""
        return self.buffer.dropped

    @property
    def refused_publishers(self) -> int:
        return self._gate.refused if self._gate else 0

    def _set_state(self, state: StreamState, reason: str | None = None) -> None:
        with self._lock:
            if (state, reason) == (self._state, self._reason):
                return
            self._state, self._reason = state, reason
        self._notify(state, reason)

    def _notify(self, state: StreamState, reason: str | None) -> None:
        log.info("%s: %s%s", self.name, state.value, f" ({reason})" if reason else "")
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:  # the callback is the caller's; the stream goes on
                log.exception("%s: the state callback failed", self.name)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        self._notify(StreamState.STARTING, None)
        try:
            final, reason = self._loop()
        except Exception as e:  # a thread's exception would otherwise vanish
            log.exception("%s: the source failed", self.name)
            final, reason = StreamState.FAILED, f"internal error: {e}"
        finally:
            if self._hls is not None:
                self._hls.close()
            if self._gate is not None:
                self._gate.close()
        self._set_state(final, reason)
        self.buffer.close()

    def _loop(self) -> tuple[StreamState, str | None]:
        backoff = Backoff.from_config(self.config.backoff)
        failures = 0
        while True:
            try:
                self._session()
                end = _End("finished")
            except _End as e:
                end = e
            if end.how == "stopped" or self._stop.is_set():
                return StreamState.ENDED, "stopped"
            if end.how == "fatal":
                return StreamState.FAILED, end.reason
            if self.kind.listens:
                if self._gate.admitted.is_set():
                    if end.how == "unopened":
                        return StreamState.FAILED, end.reason
                    return StreamState.ENDED, "publisher disconnected"
                if self._gate.closed:
                    return StreamState.FAILED, "the RTMP listener closed"
                self._stop.wait(0.05)  # no publisher yet, or a refused one: listen again
                continue
            if end.how == "finished" or not self.kind.reconnects:
                return StreamState.ENDED, None
            # a pulled source that dropped, or could not be opened
            if self._live_in_session:
                failures = 0
                backoff.reset()
            failures += 1
            if self.config.max_reconnects and failures > self.config.max_reconnects:
                return StreamState.FAILED, (f"gave up after {self.config.max_reconnects} "
                                            f"reconnects: {end.reason}")
            self.reconnects += 1
            self._set_state(StreamState.RECONNECTING, end.reason)
            if self._stop.wait(backoff.next_delay()):
                return StreamState.ENDED, "stopped"

    def _open(self):
        cfg = self.config
        if self.kind.listens:
            # FFmpeg's listener waits _LISTEN_POLL_S for the gate, then the loop checks for a stop
            return open_source(self._upstream, {"timeout": str(_LISTEN_POLL_S)},
                               timeout=(None, cfg.read_timeout_s))
        return open_source(self.uri, self.kind.live_options,
                           timeout=(cfg.open_timeout_s, cfg.read_timeout_s))

    def _session(self) -> None:
        """One connection to the source; returns when it finished, raises _End otherwise."""
        self._live_in_session = False
        if self._stop.is_set():
            raise _End("stopped")
        try:
            container = self._open()
        except SourceError as e:
            raise _End("unopened", str(e).split(": ", 1)[-1]) from None
        with container:
            if not container.streams.video:
                raise _End("fatal", "the source holds no video stream")
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            if self.config.decode_threads:
                vs.codec_context.thread_count = self.config.decode_threads
            rate = float(vs.average_rate) if vs.average_rate else None
            if self._sampler is None:
                self._sampler = FrameSampler(self.config.fps, rate)
            finite = bool(container.duration) and not self.kind.listens
            if finite and self._clock.last_source is not None:
                self._resume(container, vs)
            self._demux(container, vs, rate, finite)

    def _resume(self, container, vs) -> None:
        """Reopened a finite source: seek back to where it dropped (frames before are skipped).
        FFmpeg's HLS reader refuses a seek to the very end, so a little before is tried too."""
        for back_s in (0.0, 2.0, 10.0):
            target = max(0.0, self._clock.last_source - back_s)
            try:
                container.seek(int(target / vs.time_base), stream=vs, backward=True)
                return
            except (av.error.FFmpegError, OSError, ValueError) as e:
                error = e
        log.info("%s: cannot seek to %.3f s (%s); reading from the start", self.name,
                 self._clock.last_source, error)

    def _demux(self, container, vs, rate: float | None, finite: bool) -> None:
        started = False
        waited = 0
        # a live source must not be held back: FFmpeg joins a live playlist a few segments
        # behind its end and catches up by reading them at once
        paced = self.config.realtime and (finite or self.kind.is_file)
        pace: tuple[float, float] | None = None  # (source time, wall time) of the first packet
        packets = container.demux(vs)
        try:
            for packet in packets:
                if self._stop.is_set():
                    raise _End("stopped")
                if packet.size == 0:  # the flush packets at the end of a demux
                    self._decode(packet, vs, rate)
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if not started:
                    waited += 1
                    if ts is None or not (packet.is_keyframe or waited > _KEYFRAME_WAIT_PACKETS):
                        continue
                    started = True
                    replay = self._clock.begin_session(float(ts * packet.time_base),
                                                       self.kind.replays, finite)
                    if self._hls is not None:
                        self._hls.begin(vs, replay=replay)
                if paced and ts is not None:
                    pace = self._pace(float((packet.dts if packet.dts is not None else ts)
                                            * packet.time_base), pace)
                self._decode(packet, vs, rate)
                if self._hls is not None:
                    self._hls.write_packet(packet, self._clock.shift)
        except _End:
            raise
        except (av.error.FFmpegError, OSError) as e:
            # a dropped network stream, or the publisher gone: keep what the decoder holds
            self._flush(vs, rate)
            if self.kind.is_file:
                raise _End("fatal", f"read error: {e}") from None
            if self.kind.listens:
                raise _End("finished") from None
            raise _End("dropped", _describe(e)) from None
        if not (finite or self.kind.is_file or self.kind.listens):
            # a live source never ends by itself: an end of input is a drop (FFmpeg's HLS
            # reader ends this way when the server goes away); reconnecting tells which
            raise _End("dropped", "the source stopped sending")

    def _pace(self, source_s: float, pace):
        if pace is None:
            return source_s, time.monotonic()
        ahead = (source_s - pace[0]) - (time.monotonic() - pace[1])
        if ahead > 0 and self._stop.wait(ahead):
            raise _End("stopped")
        return pace

    def _flush(self, vs, rate) -> None:
        try:
            for frame in flush_decoder(vs):
                self._emit(frame, rate)
        except (av.error.FFmpegError, ValueError):
            pass

    def _decode(self, packet, vs, rate) -> None:
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as e:
            log.debug("%s: skipping a corrupt packet: %s", self.name, e)
            return
        for frame in frames:
            self._emit(frame, rate)

    def _emit(self, frame: av.VideoFrame, rate: float | None) -> None:
        clock = self._clock
        if frame.time is not None and math.isfinite(frame.time) and clock.shift is not None:
            source_s = float(frame.time)
        elif rate and clock.last_source is not None:
            source_s = clock.last_source + 1.0 / rate
        else:
            return
        t = source_s + (clock.shift or 0.0)
        if t < 0 or t <= clock.last_t:
            return  # before the first keyframe, or already delivered before a reconnect
        clock.advance(t, source_s)
        self._index += 1
        if self._hls is not None:
            self._hls.write_frame(frame, t)
        if not self._live_in_session:
            self._live_in_session = True
            self._set_state(StreamState.LIVE)
        if self._sampler.keep(t):
            self.frames += 1
            self.buffer.put(DecodedFrame(t=t, index=self._index,
                                         rgb=frame.to_ndarray(format="rgb24"),
                                         arrival=time.time()))
            log.debug("%s: frame %d at t=%.3f", self.name, self._index, t)


def _describe(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)
