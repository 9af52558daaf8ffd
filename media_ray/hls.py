"""HLS playback of a stream: `index.m3u8` and MPEG-TS segments in a folder, for the player page.

H.264 input is remuxed (packets copied, nothing re-encoded); anything else is transcoded to
H.264 with libx264 (veryfast, zerolatency). Either way the output's timeline is the stream time
`t` of media-ray's frames: the caller says how the input's timestamps map onto it, so a player's
`currentTime` and a detection's `t` name the same picture.

The playlist is an EVENT playlist that keeps every segment (or a sliding window of `list_size`
segments), with independent segments; `close()` ends it with `#EXT-X-ENDLIST`. FFmpeg's HLS
muxer keeps about 10 KB of memory for every segment it lists, so for an EVENT playlist it
writes only a short window (`.window.m3u8`) and this module carries each segment it adds into
`index.m3u8`: a live stream's memory stays flat however long it runs.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media_ray.hls_mirror import HlsMirror

log = logging.getLogger(__name__)

#: the encoder's clock: timestamps in milliseconds are fine enough for any frame rate we see
_ENCODER_TIME_BASE = Fraction(1, 1000)
#: a frame rate hint for the encoder where the input declares none
_DEFAULT_RATE = 25
#: segments in the muxer's own playlist when the EVENT playlist is kept here
_MUXER_WINDOW = 6


class HlsWriter:
    """Writes `out_dir/index.m3u8` and its segments from one stream.

    Feed it from a demux loop: `begin(stream)` at the start of each connection to the source,
    then `write_packet` for every packet and `write_frame` for every decoded frame; it uses
    whichever fits its mode (`remuxing`). `write_frame` alone, without `begin`, transcodes
    frames from any producer. Errors while writing are logged, never raised: playback must not
    stop the analysis. Not thread-safe: one producer thread.
    """

    def __init__(self, out_dir: str | Path, segment_s: float, list_size: int = 0, mirror: HlsMirror | None = None):
        """`mirror`: told of each change of the playlist, and closed after the last."""
        if segment_s <= 0:
            raise ValueError("segment_s must be positive")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.playlist = self.out_dir / "index.m3u8"
        self.segment_s = segment_s
        self.list_size = list_size
        self._out: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None  # the output video stream
        self._remuxing = False
        self._source_params: tuple | None = None  # what remuxed input must match
        self._session_ok = True  # whether this session's input can go into the output
        self._await_key = True
        self._splice = False
        self._session_start_t = 0.0
        self._last_t = -math.inf  # presentation time of the last picture written
        self._last_dts_t = -math.inf
        self._next_key_t = 0.0
        self._closed = False
        self._event = EventPlaylist(self.playlist, self.out_dir / ".window.m3u8") if list_size == 0 else None
        self.mirror = mirror

    @property
    def remuxing(self) -> bool:
        return self._remuxing

    def begin(self, stream: av.video.stream.VideoStream, replay: bool = False) -> None:
        """A new connection to the source starts; `stream` is its demuxed video stream.

        The first call picks the mode: remux if the input is H.264, transcode otherwise. With
        `replay`, the connection re-reads the bitstream already written (a reopened file, a
        rejoined HLS playlist): remuxing picks up after the last packet written, in decode
        order, so the seam loses nothing; otherwise output resumes at the next keyframe. A
        later connection whose H.264 differs from the first (codec, size or parameter sets)
        cannot be copied into the same output: it is left out of the playback, with a warning.
        """
        params = _params(stream)
        if self._out is None:
            out = self._open()
            if params[0] == "h264":
                self._stream = out.add_stream_from_template(stream)
                self._remuxing = True
                self._source_params = params
            else:
                self._add_encoder(params[1], params[2], stream.average_rate)
        self._session_ok = not self._remuxing or params == self._source_params
        if not self._session_ok:
            log.warning(
                "%s: the input changed (%s %dx%d); it is left out of the HLS playback",
                self.playlist,
                *params[:3],
            )
        self._splice = replay and self._last_dts_t > -math.inf
        self._await_key = not self._splice

    def write_packet(self, packet: av.Packet, shift_s: float) -> None:
        """Copy a demuxed packet (remux mode; ignored otherwise) whose stream time is its own
        time plus `shift_s` seconds. The packet's timestamps are changed in place, so decode it
        first. Output starts at a keyframe and leaves out what it already holds."""
        if not self._remuxing or not self._session_ok or self._closed:
            return
        if packet.pts is None or packet.size == 0:
            return
        tb = packet.time_base
        pts_t = float(packet.pts * tb) + shift_s
        dts = packet.dts if packet.dts is not None else packet.pts
        if self._splice:
            if float(dts * tb) + shift_s <= self._last_dts_t + 1e-6:
                return  # written before the connection dropped
            self._splice = False
            self._session_start_t = -math.inf
        elif self._await_key:
            if not packet.is_keyframe or pts_t < 0 or pts_t <= self._last_t:
                return
            self._await_key = False
            self._session_start_t = pts_t
        elif pts_t < self._session_start_t:
            return  # a leading picture that refers to what came before the keyframe
        offset = round(shift_s / tb)
        packet.pts += offset
        packet.dts = dts + offset
        dts_t = float(packet.dts * tb)
        if dts_t <= self._last_dts_t:  # the seam between two connections
            packet.dts = math.floor(self._last_dts_t / tb) + 1
            if packet.dts > packet.pts:
                return
            dts_t = float(packet.dts * tb)
        packet.stream = self._stream
        if self._mux(packet):
            self._last_t = max(self._last_t, pts_t)
            self._last_dts_t = dts_t

    def write_frame(self, frame: av.VideoFrame | np.ndarray, t: float) -> None:
        """Encode a picture (transcode mode; ignored when remuxing) shown at stream time `t`;
        an RGB uint8 array is accepted as well. Pictures must come in increasing `t`."""
        if self._remuxing or self._closed:
            return
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self._out is None:
            self._open()
            self._add_encoder(frame.width, frame.height, None)
        if t <= self._last_t:
            return
        assert self._stream is not None  # added with the output
        cc = self._stream.codec_context
        picture = frame.reformat(width=cc.width, height=cc.height, format="yuv420p")
        picture.pts = round(t / _ENCODER_TIME_BASE)
        picture.time_base = _ENCODER_TIME_BASE
        if t >= self._next_key_t:  # a keyframe at each segment boundary: segments cut on time
            picture.pict_type = av.video.frame.PictureType.I
            self._next_key_t = (math.floor(t / self.segment_s) + 1) * self.segment_s
        else:
            picture.pict_type = av.video.frame.PictureType.NONE
        try:
            packets = self._stream.encode(picture)
        except av.error.FFmpegError as e:
            log.warning("%s: cannot encode a frame at t=%.3f: %s", self.playlist, t, e)
            return
        self._last_t = t
        for packet in packets:
            self._mux(packet)

    def close(self) -> None:
        """Flush and finalise the playlist with #EXT-X-ENDLIST. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._out is None:
            if self.mirror is not None:
                self.mirror.close()
            return
        try:
            if not self._remuxing:
                assert self._stream is not None  # added with the output
                for packet in self._stream.encode(None):
                    self._mux(packet)
            self._out.close()
            if self._event is not None:
                self._event.sync()
        except (av.error.FFmpegError, OSError, ValueError) as e:
            log.warning("%s: cannot finalise: %s", self.playlist, e)
        finally:
            if self.mirror is not None:
                self.mirror.close()

    def __enter__(self) -> HlsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> av.container.OutputContainer:
        flags = "independent_segments+temp_file"
        options = {
            "hls_time": f"{self.segment_s:g}",
            "hls_list_size": str(self.list_size or _MUXER_WINDOW),
            "hls_segment_filename": str(self.out_dir / "segment_%05d.ts"),
        }
        if self.list_size:
            flags += "+delete_segments"
        options["hls_flags"] = flags
        target = self._event.window if self._event is not None else self.playlist
        self._out = av.open(str(target), "w", format="hls", options=options)
        return self._out

    def _add_encoder(self, width: int, height: int, rate) -> None:
        rate = rate or _DEFAULT_RATE
        assert self._out is not None  # opened first
        stream = self._out.add_stream("libx264", rate=rate)
        stream.width, stream.height = width - width % 2, height - height % 2  # 4:2:0 wants even sizes
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = _ENCODER_TIME_BASE
        # forced keyframes cut the segments; this only bounds a GOP when frames are sparse
        stream.codec_context.gop_size = max(1, round(4 * self.segment_s * float(rate)))
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        self._stream = stream
        self._remuxing = False

    def _mux(self, packet: av.Packet) -> bool:
        assert self._out is not None  # packets come once the output is open
        try:
            self._out.mux(packet)
        except (av.error.FFmpegError, ValueError) as e:
            log.warning("%s: cannot write a packet: %s", self.playlist, e)
            return False
        if self._event is not None and packet.is_keyframe:  # segments start at keyframes
            try:
                self._event.sync()
            except OSError as e:
                log.warning("%s: cannot update: %s", self.playlist, e)
        if self.mirror is not None and packet.is_keyframe:
            self.mirror.changed()
        return True


class EventPlaylist:
    """An EVENT playlist of every segment, kept from the muxer's short `window` playlist.

    `sync()` reads the window when it has changed and carries the segments it has not seen
    into the playlist, which is replaced whole (a temporary file renamed over it), so a
    player never reads half of it; the window's `#EXT-X-ENDLIST` ends it. Nothing is held in
    memory but the number of the last segment carried.
    """

    _HEADER = 6  # lines of the header written below, before the first segment

    def __init__(self, path: Path, window: Path):
        self.path, self.window = path, window
        self._last = -1  # media sequence number of the last segment carried
        self._stamp: tuple[int, int] | None = None
        self._ended = False

    def sync(self) -> None:
        try:
            st = self.window.stat()
        except FileNotFoundError:
            return
        if self._ended or (st.st_mtime_ns, st.st_size) == self._stamp:
            return
        self._stamp = (st.st_mtime_ns, st.st_size)
        version, target, first, entries, ended = _parse_window(self.window.read_text())
        new = [(n, lines) for n, lines in entries if n > self._last]
        if not new and not ended:
            return
        body: list[str] = []
        if self.path.exists():
            old = self.path.read_text().splitlines()
            target = max(target, int(old[2].partition(":")[2] or 0))
            first = int(old[3].partition(":")[2] or 0)
            body = old[self._HEADER :]
        elif new:
            first = new[0][0]
        for n, lines in new:
            body.extend(lines)
            self._last = n
        if ended:
            body.append("#EXT-X-ENDLIST")
            self._ended = True
        header = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            "#EXT-X-PLAYLIST-TYPE:EVENT",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(header + body) + "\n")
        tmp.replace(self.path)


def _parse_window(text: str) -> tuple[int, int, int, list[tuple[int, list[str]]], bool]:
    """The version, target duration, first media sequence number, segments (each its number and
    its lines) and whether it has ended, of a playlist the muxer wrote."""
    version, target, first = 3, 0, 0
    entries: list[tuple[int, list[str]]] = []
    lines: list[str] = []
    ended = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "#EXT-X-VERSION":
            version = int(value)
        elif key == "#EXT-X-TARGETDURATION":
            target = int(value)
        elif key == "#EXT-X-MEDIA-SEQUENCE":
            first = int(value)
        elif key in ("#EXTINF", "#EXT-X-DISCONTINUITY", "#EXT-X-PROGRAM-DATE-TIME"):
            lines.append(line)
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#"):
            entries.append((first + len(entries), [*lines, line]))
            lines = []
    return version, target, first, entries, ended


def _params(stream) -> tuple:
    cc = stream.codec_context
    return cc.name, cc.width, cc.height, bytes(cc.extradata or b"")
