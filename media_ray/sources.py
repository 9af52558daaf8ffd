"""Video sources and decoding with PyAV.

A source is named by a URI: a file path, `file://`, an `http(s)://` URL (files and HLS
playlists alike; FFmpeg follows the playlist), `rtsp://`, `rtmp://HOST:PORT/live/KEY` (media-ray
listens for a publisher), or a capture device (`v4l2:///dev/video0`, or a plain `/dev/videoN`
path). The scheme picks a `SourceKind` from a table, which holds the FFmpeg options for it and
the FFmpeg protocols it may use (`protocol_whitelist`, passed on every open, so a playlist or a
file cannot lead FFmpeg to other protocols). Which sources a user of the API may name is
`media_ray.source_policy`'s business.
Frames are sampled at a chosen rate by presentation time and converted to RGB once, upright: a
rotation in the video's display matrix (phone videos) is applied, so boxes are in displayed
pixels; models that want other sizes make their own copies. A `DecodedTimeline` tells how much
of the video decoding really covered (a truncated file claims more than it holds). Live
sources (reconnection, HLS playback) build on this in `media_ray.live`, and RTMP stream-key
checks in `media_ray.rtmp`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import av
import numpy as np

from media_ray.model import FrameBatch

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot be opened or holds no video."""


@dataclass(frozen=True)
class SourceKind:
    """How to open one family of URIs."""

    options: dict[str, str] = field(default_factory=dict)
    #: a local file: a read error is a broken file, not the end of a network stream
    is_file: bool = False
    #: the URI names a local path (a file or a capture device) that must exist
    local: bool = False
    #: FFmpeg input format to use instead of probing (`v4l2` for capture devices)
    format: str | None = None
    #: media-ray is the server: opening waits for a publisher to connect (RTMP push)
    listens: bool = False
    #: a pulled source that may drop and come back; a LiveSource reconnects to it with backoff
    reconnects: bool = False
    #: a reconnect may serve again what was already read (an HLS server keeps its last
    #: segments); a LiveSource recognises those frames by their times and skips them
    replays: bool = False
    #: options a LiveSource adds: it reconnects by itself, with visible state, so FFmpeg's own
    #: silent retries are turned off where they exist
    live_options: dict[str, str] = field(default_factory=dict)
    #: FFmpeg's `protocol_whitelist` for the kind: the protocols opening it (and whatever it
    #: leads to: HLS segments, RTP channels) may use; always passed, never overridden
    protocols: str = "file"
    #: "module:function" that opens the URI as a seekable binary file for FFmpeg to read
    #: (objects in cloud storage, read through their store's client); None: FFmpeg opens the URI
    opener: str | None = None


_HTTP = SourceKind(
    options={"reconnect": "1", "reconnect_streamed": "1", "rw_timeout": "15000000"},
    reconnects=True,
    replays=True,
    live_options={"reconnect": "0", "reconnect_streamed": "0"},
    # HLS: segments over http(s), AES-128 segments through `crypto`
    protocols="http,https,tcp,tls,crypto",
)
_RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "10000000"}

SOURCE_KINDS: dict[str, SourceKind] = {
    "file": SourceKind(is_file=True, local=True),
    "http": _HTTP,
    "https": _HTTP,
    # RTP over the RTSP connection (tcp), or over udp where a server insists
    "rtsp": SourceKind(options=_RTSP_OPTIONS, reconnects=True, protocols="rtsp,rtp,udp,tcp"),
    "rtsps": SourceKind(options=_RTSP_OPTIONS, reconnects=True, protocols="rtsp,rtp,udp,tcp,tls"),
    # a short analysis window: FLV announces audio that a video-only publisher never sends,
    # and FFmpeg would otherwise wait its default 5 s for it before the first frame
    "rtmp": SourceKind(options={"listen": "1", "analyzeduration": "1000000"}, listens=True, protocols="rtmp,tcp"),
    "v4l2": SourceKind(local=True, format="v4l2", reconnects=True),
    # Google Cloud Storage: an authorised ranged read of the object (media_ray.cloud_storage)
    "gs": SourceKind(is_file=True, opener="media_ray.cloud_storage:open_object"),
}

#: plain paths under here are capture devices, not files
_DEVICE_PREFIX = "/dev/video"


def source_kind(uri: str) -> tuple[str, SourceKind]:
    """The scheme of a URI (`file` for plain paths, `v4l2` for /dev/videoN) and its kind;
    unknown schemes raise."""
    scheme = urlparse(uri).scheme.lower()
    if len(scheme) <= 1:  # a plain path, or a Windows drive letter
        scheme = "v4l2" if uri.startswith(_DEVICE_PREFIX) else "file"
    try:
        return scheme, SOURCE_KINDS[scheme]
    except KeyError:
        raise SourceError(
            f"{uri}: unsupported source scheme {scheme!r} (supported: {', '.join(sorted(SOURCE_KINDS))})"
        ) from None


def _local_path(uri: str) -> str:
    return urlparse(uri).path if "://" in uri else uri


@dataclass(frozen=True)
class VideoInfo:
    uri: str
    width: int
    height: int
    fps: float | None  # the source's own frame rate, where known
    duration_s: float | None  # what the container claims; a truncated file holds less
    #: counter-clockwise degrees the frames are turned to be upright (`width`, `height` are upright)
    rotation: int = 0

    def expected_frames(self, sample_fps: float) -> int | None:
        if not self.duration_s:
            return None
        rate = min(sample_fps, self.fps) if self.fps else sample_fps
        return max(1, int(round(self.duration_s * rate)))

    @property
    def name(self) -> str:
        path = urlparse(self.uri).path or self.uri
        return Path(path).stem or "stream"


def open_source(
    uri: str,
    options: dict[str, str] | None = None,
    timeout: float | tuple[float | None, float | None] | None = 20.0,
) -> av.container.InputContainer:
    """Open a source with its kind's FFmpeg options, `options` on top, and always the kind's
    `protocol_whitelist` (`options` cannot widen it).

    `timeout` is PyAV's: seconds for the open and for each read, or an (open, read) pair where
    None waits without limit. Failures raise SourceError.
    """
    _, kind = source_kind(uri)
    target: Any = uri
    if kind.opener is not None:
        module, _, attr = kind.opener.partition(":")
        target = getattr(importlib.import_module(module), attr)(uri)  # raises SourceError
    elif kind.local:
        target = _local_path(uri)
        p = Path(target)
        if not p.exists():
            raise SourceError(f"{target}: no such file")
        if p.is_dir():
            raise SourceError(f"{target}: is a folder, not a video")
    try:
        opts = {**kind.options, **(options or {}), "protocol_whitelist": kind.protocols}
        return av.open(target, format=kind.format, options=opts, timeout=timeout)
    except av.error.FFmpegError as e:
        raise SourceError(f"{_named(uri, target)}: cannot open as video ({e.strerror or e})") from e
    except OSError as e:
        raise SourceError(f"{_named(uri, target)}: cannot open ({e.strerror or e})") from e


def _named(uri: str, target: Any) -> str:
    """How an error names what was opened: the path or URL, or the URI of an opened object."""
    return target if isinstance(target, str) else uri


def probe(uri: str) -> VideoInfo:
    """Open a source, check that it has a video stream, and describe it."""
    with open_source(uri) as container:
        if not container.streams.video:
            raise SourceError(f"{uri}: holds no video stream")
        vs = container.streams.video[0]
        fps = float(vs.average_rate) if vs.average_rate else None
        duration = None
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        width, height = vs.codec_context.width, vs.codec_context.height
        if not width or not height:
            raise SourceError(f"{uri}: the video stream has no picture size")
        rotation = _first_rotation(container, vs)
        if rotation % 180:
            width, height = height, width
        return VideoInfo(uri=uri, width=width, height=height, fps=fps, duration_s=duration, rotation=rotation)


def _first_rotation(container, stream) -> int:
    """The display rotation of a stream, read from its first decoded frame (PyAV exposes the
    display matrix on frames only); 0 when none decodes."""
    try:
        for frame in container.decode(stream):
            return quarter_turns(frame) * 90
    except (av.error.FFmpegError, OSError) as e:
        log.debug("no frame to read the rotation from: %s", e)
    return 0


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that make a decoded frame upright, from its display
    matrix (`rotate` metadata of phone videos). Mirroring in the matrix is not applied."""
    rotation = frame.rotation or 0
    return int(round(rotation / 90.0)) % 4


def upright_rgb(frame: av.VideoFrame, turns: int | None = None) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, turned upright as its display matrix says."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame) if turns is None else turns
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


@dataclass
class DecodedTimeline:
    """How far decoding got: filled in by `decode` as it goes."""

    #: seconds from the first frame to the end of the last decoded frame
    end_s: float = 0.0
    #: source frames decoded
    frames: int = 0


def analysed_duration(claimed_s: float | None, decoded: DecodedTimeline | None) -> float | None:
    """The duration a report states: what the container claims, but no more than decoding
    covered (a truncated file claims its whole length)."""
    if decoded is None or decoded.frames == 0:
        return claimed_s
    if claimed_s is None:
        return round(decoded.end_s, 6)
    return min(claimed_s, round(decoded.end_s, 6))


@dataclass(frozen=True)
class DecodedFrame:
    t: float  # seconds from the first frame
    index: int  # source frame number, from 0
    rgb: np.ndarray  # (H, W, 3) uint8
    arrival: float  # wall-clock time.time() when decoded


def decode(
    uri: str,
    fps: float,
    threads: int = 0,
    options: dict[str, str] | None = None,
    *,
    skip: int = 0,
    timeline: DecodedTimeline | None = None,
) -> Iterator[DecodedFrame]:
    """Decode a source, yielding frames sampled at `fps` by presentation time, upright.

    A frame is kept when its time reaches the next sampling instant, so the kept frames are
    the first at or after each multiple of 1/fps. A network stream that ends with a read error
    is flushed and treated as ended. The first `skip` sampled frames are decoded (the sampling
    depends on every frame before) but not converted nor yielded: a resumed analysis goes on
    with exactly the frames an uninterrupted one would have had. `timeline`, when given, is
    kept up to date with how far decoding got.
    """
    _, kind = source_kind(uri)
    with open_source(uri, options) as container:
        if not container.streams.video:
            raise SourceError(f"{uri}: holds no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        if threads:
            vs.codec_context.thread_count = threads
        rate = float(vs.average_rate) if vs.average_rate else None
        sampler = FrameSampler(fps, rate)
        timeline = timeline if timeline is not None else DecodedTimeline()
        t0: float | None = None
        index = -1
        kept = 0
        turns: int | None = None
        for frame in _frames(container, vs, kind):
            index += 1
            if frame.time is not None:
                ft = float(frame.time)
            elif rate:
                ft = index / rate
            else:
                continue
            if t0 is None:
                t0 = ft
            t = ft - t0
            timeline.frames += 1
            timeline.end_s = max(timeline.end_s, t + (1.0 / rate if rate else 0.0))
            if not sampler.keep(t):
                continue
            kept += 1
            if kept <= skip:
                continue
            if turns is None or frame.rotation:  # flushed frames may come without the matrix
                turns = quarter_turns(frame)
            yield DecodedFrame(t=t, index=index, rgb=upright_rgb(frame, turns), arrival=time.time())


class FrameSampler:
    """Picks frames at `fps` from a timeline in seconds: the first frame at or after each
    multiple of 1/fps is kept, and a gap in the timeline restarts the grid after it."""

    def __init__(self, fps: float, source_rate: float | None = None):
        self.step = 1.0 / fps
        # half a source frame of tolerance absorbs timestamp rounding
        self.slack = 0.5 / source_rate if source_rate else 1e-3
        self.next_t = 0.0

    def keep(self, t: float) -> bool:
        if t + self.slack < self.next_t:
            return False
        self.next_t = max(self.next_t + self.step, t + self.step - self.slack)
        return True


def _frames(container, stream, kind: SourceKind) -> Iterator[av.VideoFrame]:
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.EOFError:
            break
        except OSError as e:  # a network stream that dropped: keep what the decoder holds
            if kind.is_file:
                raise SourceError(f"read error: {e}") from e
            log.info("stream ended with a read error (%s); flushing the decoder", e)
            break
        try:
            yield from packet.decode()
        except av.error.InvalidDataError as e:
            log.debug("skipping a corrupt packet: %s", e)
    yield from flush_decoder(stream)


def flush_decoder(stream) -> Iterator[av.VideoFrame]:
    """The frames a stream's decoder still holds. They come without a time base (PyAV leaves it
    unset when decoding without a packet), so the stream's is set for `frame.time`."""
    try:
        for frame in stream.codec_context.decode(None):
            if frame.time_base is None:
                frame.time_base = stream.time_base
            yield frame
    except av.error.EOFError:
        pass


def batched(
    frames: Iterable[DecodedFrame], stream_id: str, batch_size: int, first_seq: int = 0
) -> Iterator[FrameBatch]:
    """Group decoded frames into FrameBatches numbered from `first_seq` (0)."""
    pending: list[DecodedFrame] = []
    seq = first_seq
    for f in frames:
        pending.append(f)
        if len(pending) == batch_size:
            yield _stack(stream_id, seq, pending)
            seq += 1
            pending = []
    if pending:
        yield _stack(stream_id, seq, pending)


def _stack(stream_id: str, seq: int, frames: list[DecodedFrame]) -> FrameBatch:
    return FrameBatch.stack(
        stream_id,
        seq,
        [f.rgb for f in frames],
        [f.t for f in frames],
        [f.index for f in frames],
        [f.arrival for f in frames],
    )


#: what a folder of recordings is taken to hold (`analyze FOLDER`, `eval FOLDER`)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".ts", ".m4v", ".flv", ".mpg", ".mpeg")


def videos_in(folder: str | Path) -> list[Path]:
    """The videos of a folder, by suffix (`VIDEO_SUFFIXES`), in name order."""
    return sorted(f for f in Path(folder).iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
