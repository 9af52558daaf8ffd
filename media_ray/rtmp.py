"""RTMP publishing with a stream key: admit only the publisher of the issued key.

FFmpeg's own RTMP listener merely warns about a publisher of another stream name, and would take
its stream. `RtmpPublishGate` holds the public HOST:PORT in its place and relays each connection
to FFmpeg's listener on a private loopback port while `RtmpPublishInspector` reads the
publisher's side up to its `publish` command:

- only a publisher whose stream name is the key is admitted (`admitted` is set); the bytes that
  complete `publish` reach FFmpeg only after the verdict, so FFmpeg never sees another stream;
- another name, a malformed or non-RTMP start, or no publish within `admit_timeout_s` closes
  both sides and counts in `refused`; the gate then waits for the next connection;
- one publisher at a time: connections that arrive while one is relayed are closed at once;
- when the admitted publisher's connection ends the gate closes (`closed`): a new publish needs
  a new gate.

Stream keys are secrets: a refused name is not logged.
"""

from __future__ import annotations

import hmac
import logging
import select
import socket
import threading
import time

log = logging.getLogger(__name__)


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
            return bytes(b[p - n : p])

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
        n, p = int.from_bytes(b[p + 1 : p + 3], "big"), p + 3
    elif marker == 0x0C:
        n, p = int.from_bytes(b[p + 1 : p + 5], "big"), p + 5
    else:
        raise ValueError(f"AMF marker {marker} is not a string")
    if p + n > len(b):
        raise ValueError("truncated string")
    return b[p : p + n].decode("utf-8", "replace"), p + n


class _Link:
    """A publisher's connection and its relay to FFmpeg's listener."""

    def __init__(self, client: socket.socket, upstream: socket.socket, key: str, deadline: float):
        self.client, self.upstream = client, upstream
        self.inspector = RtmpPublishInspector(key)
        self.deadline = deadline
        #: what went upstream before FFmpeg said anything, to send again if the listener
        #: closed just as the connection arrived (its wait for the gate timed out)
        self.unanswered: bytearray | None = bytearray()
        self.peer = "?"  # the publisher's address, for the logs

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

    def __init__(self, host: str, port: int, key: str, upstream_port: int, admit_timeout_s: float = 10.0):
        self.host, self.port, self.key = host, port, key
        self.upstream_port = upstream_port
        self.admit_timeout_s = admit_timeout_s
        self.admitted = threading.Event()
        self.refused = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RtmpPublishGate:
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
        self._thread = threading.Thread(target=self._serve, name=f"rtmp-gate:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def closed(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def set_key(self, key: str) -> None:
        """Admit publishers of `key` from the next connection on (a rotated stream key)."""
        self.key = key

    def _serve(self) -> None:
        assert self._sock is not None  # bound by start()
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
                        log.info(
                            "rtmp %s: closing a second connection from %s while one is relayed",
                            self.port,
                            addr[0],
                        )
                        conn.close()
                        continue
                    deadline = time.monotonic() + self.admit_timeout_s
                    upstream = self._connect(deadline)
                    if upstream is None:
                        conn.close()
                    else:
                        link = _Link(conn, upstream, self.key, deadline)
                        link.peer = str(addr[0])
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
            if s is not link.client and s is not link.upstream:
                continue  # an upstream replaced by a reconnection earlier in this pass
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
        assert link.unanswered is not None  # only a link FFmpeg has not answered reconnects
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
        # the peer's address, never the stream name it asked for (it may be another stream's key)
        log.warning("rtmp %s: refused publisher %s (%d so far): %s", self.port, link.peer, self.refused, reason)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now, for FFmpeg's listener behind a gate."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
