"""Live sources: one stream decoded in its own thread, sampled, and handed over through a bounded
buffer that drops the oldest frames when the consumer falls behind (`media_ray.buffering`).

A `LiveSource` opens its URI by the kind in `media_ray.sources.SOURCE_KINDS`, and reports its
state (`media_ray.streams.StreamState`) as it goes:

- `rtmp://HOST:PORT/live/KEY`: media-ray is the server, and admits only a publisher of KEY
  (`media_ray.rtmp`). When the publisher disconnects the stream goes `reconnecting` and waits
  up to `publisher_patience_s` for a publisher of the same key (`live` again when it sends);
  when none comes it has `ended` (at once with a patience of 0).
- pulled sources (`rtsp`, `http(s)` files and HLS playlists, `v4l2` devices): when one drops or
  cannot be opened the stream goes `reconnecting` and retries with `Backoff` until it comes back
  (`live` again) or `max_reconnects` consecutive tries have failed (`failed`). A finite source
  (one with a duration: a file, a VOD or finished HLS playlist) that reaches its end has `ended`;
  one that dropped part-way is reopened where it stopped.
- local files: read once, then `ended`; a read error is `failed`. With `realtime`, finite
  sources (local or http files, VOD playlists) are paced by presentation time, like `ffmpeg -re`.

Stream time: see `media_ray.live_timeline`. Frames are handed over upright (a rotated phone video).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

import av

from media_ray.buffering import Backoff, DropOldestBuffer
from media_ray.hls import HlsWriter
from media_ray.live_timeline import LiveSourceConfig, StreamClock
from media_ray.rtmp import RtmpPublishGate, free_loopback_port
from media_ray.sources import (
    DecodedFrame,
    FrameSampler,
    SourceError,
    flush_decoder,
    open_source,
    source_kind,
    upright_rgb,
)
from media_ray.streams import StreamState

log = logging.getLogger(__name__)

StateCallback = Callable[[StreamState, "str | None"], None]


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
    reason: starting, live (frames flow), reconnecting (reason: why; again when it changes), then
    ended (reason None for a source that finished, "stopped", or "publisher disconnected") or
    failed (reason). A finished live HLS playlist shows a last `reconnecting` before `ended`
    (FFmpeg reports its end like a dropped server; the reopened playlist tells them apart).
    Keep it short and thread-safe. When the thread ends the final state is set, then the buffer
    closed. The HlsWriter, if given, belongs to the source from then on and is closed by it.
    """

    def __init__(
        self,
        uri: str,
        config: LiveSourceConfig | None = None,
        on_state: StateCallback | None = None,
        hls: HlsWriter | None = None,
        publisher_patience_s: float = 0.0,
    ):
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
        self._clock = StreamClock(self.config.rejoin_behind_s, self.config.rejoin_ahead_s)
        self._sampler: FrameSampler | None = None
        self._index = -1
        self._live_in_session = False
        self._patience_s = publisher_patience_s
        self._publisher_deadline: float | None = None  # RTMP: waiting for a publisher to come back
        self._refused_before = 0  # refused by the gates before the current one
        #: the URI as logs show it: a stream key is a secret
        self.name = uri
        if self.kind.listens:
            u = urlparse(uri)
            self.key = u.path.rsplit("/", 1)[-1]
            if not self.key or u.port is None or not u.hostname:
                raise SourceError(f"{uri}: an RTMP listen URI is rtmp://HOST:PORT/APP/KEY")
            self.name = uri[: len(uri) - len(self.key)] + "***"

    def resume_after(self, t: float, index: int, source_s: float | None = None) -> LiveSource:
        """Continue a stream that another LiveSource delivered up to frame `index` at stream time
        `t` (source time `source_s`, where known): frames get later times and indices only. A
        finite source with `source_s` is read on from there; otherwise the first frame read comes
        just after `t`. Call it before `start`."""
        if self._thread is not None:
            raise RuntimeError("resume_after comes before start")
        self._index = index
        # without a known place in the source its timeline is taken as a new one, continuing t
        self._clock.shift = 0.0 if source_s is None else t - source_s
        self._clock.advance(t, -math.inf if source_s is None else source_s)
        return self

    def set_key(self, key: str) -> None:
        """RTMP: admit only publishers of `key` from the next connection on (a rotated key)."""
        if not self.kind.listens or not key or "/" in key:
            raise ValueError("only an RTMP listen source has a stream key, a plain name")
        self.uri = self.uri[: len(self.uri) - len(self.key)] + key
        self.key = key
        if self._gate is not None:
            self._gate.set_key(key)

    @property
    def shift(self) -> float | None:
        """Stream time minus source time in the current session (None before the first frame)."""
        return self._clock.shift

    def start(self) -> LiveSource:
        """Start reading. For RTMP the public port is bound here (OSError if it is taken)."""
        if self._thread is not None:
            raise RuntimeError("a LiveSource starts once")
        if self.kind.listens:
            u = urlparse(self.uri)
            assert u.hostname is not None and u.port is not None  # checked by __init__
            port = free_loopback_port()
            self._upstream = f"rtmp://127.0.0.1:{port}{u.path}"
            self._gate = RtmpPublishGate(u.hostname, u.port, self.key, port, self.config.open_timeout_s).start()
        self._thread = threading.Thread(target=self._run, name=f"live:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Ask the source to end and wait up to `timeout_s` for its thread; True if it ended. A
        pulled source blocked in a read ends when the read returns, within `read_timeout_s`
        (closing the container under FFmpeg's read from another thread would crash the process)."""
        self._stop.set()
        if self._gate is not None:
            self._gate.close()
        return self.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the source to end by itself; True if it has (never waits from its own thread)."""
        if self._thread is None:
            return True
        if self._thread is threading.current_thread():
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def __enter__(self) -> LiveSource:
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
    def dropped(self) -> int:  # frames dropped because the consumer fell behind
        return self.buffer.dropped

    @property
    def refused_publishers(self) -> int:
        return self._refused_before + (self._gate.refused if self._gate else 0)

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
                final = self._listener_final(end)
                if final is not None:
                    return final
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
                return StreamState.FAILED, (f"gave up after {self.config.max_reconnects} reconnects: {end.reason}")
            self.reconnects += 1
            self._set_state(StreamState.RECONNECTING, end.reason)
            if self._stop.wait(backoff.next_delay()):
                return StreamState.ENDED, "stopped"

    def _listener_final(self, end: _End) -> tuple[StreamState, str | None] | None:
        """An RTMP session ended: the stream's final state, or None to listen again."""
        assert self._gate is not None  # started with a listening source
        if self._gate.admitted.is_set():
            if end.how == "unopened":
                return StreamState.FAILED, end.reason
            if self._patience_s <= 0:
                return StreamState.ENDED, "publisher disconnected"
            return self._await_publisher()
        if self._gate.closed:
            return StreamState.FAILED, "the RTMP listener closed"
        if self._publisher_deadline is not None and time.monotonic() > self._publisher_deadline:
            log.info("%s: no publisher came back within %g s", self.name, self._patience_s)
            return StreamState.ENDED, "publisher disconnected"
        return None

    def _await_publisher(self) -> tuple[StreamState, str | None] | None:
        """The publisher left: a new gate on the same address waits for the next one."""
        old = self._gate
        assert old is not None
        old.close()
        self._refused_before += old.refused
        try:
            self._gate = RtmpPublishGate(old.host, old.port, old.key, old.upstream_port, old.admit_timeout_s).start()
        except OSError as e:
            log.warning("%s: cannot listen for a publisher again: %s", self.name, e)
            return StreamState.ENDED, "publisher disconnected"
        self._publisher_deadline = time.monotonic() + self._patience_s
        self._set_state(StreamState.RECONNECTING, "publisher disconnected")
        return None

    def _open(self):
        cfg = self.config
        if self.kind.listens:
            # FFmpeg's listener waits listen_poll_s for the gate, then the loop checks for a stop
            return open_source(self._upstream, {"timeout": str(cfg.listen_poll_s)}, timeout=(None, cfg.read_timeout_s))
        return open_source(self.uri, self.kind.live_options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s))

    def _session(self) -> None:
        """One connection to the source; returns when it finished, raises _End otherwise."""
        self._live_in_session = False
        if self._stop.is_set():
            raise _End("stopped")
        try:
            container = self._open()
        except SourceError as e:
            if self.kind.listens:  # FFmpeg's listener waits a poll at a time: no publisher yet
                log.debug("%s: no publisher yet: %s", self.name, e)
            else:
                log.warning("%s: cannot open: %s", self.name, str(e).split(": ", 1)[-1])
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
        assert self._clock.last_source is not None  # only a source that gave frames resumes
        for back_s in (0.0, 2.0, 10.0):
            target = max(0.0, self._clock.last_source - back_s)
            try:
                container.seek(int(target / vs.time_base), stream=vs, backward=True)
                return
            except (av.error.FFmpegError, OSError, ValueError) as e:
                error = e
        log.info(
            "%s: cannot seek to %.3f s (%s); reading from the start",
            self.name,
            self._clock.last_source,
            error,
        )

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
                    started = self._begin_at(packet, ts, waited, vs, finite)
                    if not started:
                        continue
                if paced and ts is not None:
                    pace = self._pace(float((packet.dts if packet.dts is not None else ts) * packet.time_base), pace)
                self._decode(packet, vs, rate)
                if self._hls is not None:
                    assert self._clock.shift is not None  # set when the session started
                    self._hls.write_packet(packet, self._clock.shift)
        except _End:
            raise
        except (av.error.FFmpegError, OSError) as e:
            raise self._read_failed(e, vs, rate) from None
        if not (finite or self.kind.is_file or self.kind.listens):
            # a live source never ends by itself: an end of input is a drop (FFmpeg's HLS
            # reader ends this way when the server goes away); reconnecting tells which
            raise _End("dropped", "the source stopped sending")

    def _begin_at(self, packet, ts, waited: int, vs, finite: bool) -> bool:
        """Whether the session starts at this packet (the `waited`th): a keyframe with a timestamp, or
        any packet with one after `keyframe_wait_packets`. If so the clock and the HLS copy begin."""
        if ts is None or not (packet.is_keyframe or waited > self.config.keyframe_wait_packets):
            return False
        replay = self._clock.begin_session(float(ts * packet.time_base), self.kind.replays, finite)
        if self._hls is not None:
            self._hls.begin(vs, replay=replay)
        return True

    def _read_failed(self, e: Exception, vs, rate) -> _End:
        """A read failed (a dropped network stream, or the publisher gone): keep what the
        decoder holds, and say how the session ended."""
        try:
            for frame in flush_decoder(vs):
                self._emit(frame, rate)
        except (av.error.FFmpegError, ValueError):
            pass
        if self.kind.is_file:
            return _End("fatal", f"read error: {e}")
        if self.kind.listens:
            return _End("finished")
        return _End("dropped", _describe(e))

    def _pace(self, source_s: float, pace):
        if pace is None:
            return source_s, time.monotonic()
        ahead = (source_s - pace[0]) - (time.monotonic() - pace[1])
        if ahead > 0 and self._stop.wait(ahead):
            raise _End("stopped")
        return pace

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
            self._publisher_deadline = None
            self._set_state(StreamState.LIVE)
        assert self._sampler is not None  # made when the source opened
        if self._sampler.keep(t):
            self.frames += 1
            rgb = upright_rgb(frame)  # a phone's rotated video, as its viewers see it
            self.buffer.put(DecodedFrame(t=t, index=self._index, rgb=rgb, arrival=time.time()))
            log.debug("%s: frame %d at t=%.3f", self.name, self._index, t)


def _describe(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)
