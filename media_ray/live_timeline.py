"""How a live stream is read (`LiveSourceConfig`) and timed (`StreamClock`).

`StreamClock` maps each connection's presentation times onto the stream time `t` that a
`LiveSource` reports (see `media_ray.live`): re-based so the first frame is at 0, kept where a
reconnect continues the same timeline, resumed from the last frame plus the outage where the
timeline restarted; `t` never goes backwards.
"""

from __future__ import annotations

import logging
import math
import time

from pydantic import BaseModel, Field

from media_ray.buffering import BackoffConfig

log = logging.getLogger(__name__)


class LiveSourceConfig(BaseModel):
    """How a live stream is read. A server sets `fps`, `buffer_size` and `realtime` per stream (from
    the stream's fps, `live.queue_frames` and `live.paced_schemes`)."""

    fps: float = Field(2.0, gt=0, description="frames analysed per second of stream time")
    buffer_size: int = Field(
        8,
        ge=1,
        description="decoded frames waiting for the consumer; when full, the oldest is dropped and counted",
    )
    open_timeout_s: float = Field(
        10.0,
        gt=0,
        description="how long opening a pulled source may take, and "
        "how long an RTMP publisher has to announce its stream",
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a read that waits longer is a dropped source; keep it above the segment length of HLS sources",
    )
    max_reconnects: int = Field(
        0, ge=0, description="failed reconnects in a row before the stream fails; 0 retries forever"
    )
    backoff: BackoffConfig = Field(default_factory=BackoffConfig, description="waits between reconnects")
    realtime: bool = Field(
        False,
        description="pace finite sources (local or http files, VOD playlists) by "
        "presentation time, like ffmpeg -re; live sources are never held back",
    )
    decode_threads: int = Field(0, ge=0, description="PyAV decoder threads; 0 lets FFmpeg choose")
    rejoin_behind_s: float = Field(
        60.0,
        ge=0,
        description="after a reconnect, an http(s) source (HLS) "
        "continues its timeline if it starts up to this many seconds behind where "
        "it was (FFmpeg rejoins a live playlist 3 segments back; others: 1 s)",
    )
    rejoin_ahead_s: float = Field(
        30.0,
        ge=0,
        description="after a reconnect, a source also continues the "
        "same timeline if it starts up to the outage's length plus this many "
        "seconds ahead; beyond, t goes on from the last frame (a new timeline)",
    )
    listen_poll_s: int = Field(
        1,
        ge=1,
        description="RTMP: seconds FFmpeg's listener waits for the gate to "
        "relay a publisher before it is started again, so that a stop is seen",
    )
    keyframe_wait_packets: int = Field(
        600,
        ge=0,
        description="each connection starts at a keyframe; where "
        "a codec never marks one, it starts after this many packets",
    )


class StreamClock:
    """Maps each connection's presentation times onto the stream time t (see the module doc)."""

    def __init__(self, rejoin_behind_s: float, rejoin_ahead_s: float) -> None:
        self.rejoin_behind_s, self.rejoin_ahead_s = rejoin_behind_s, rejoin_ahead_s
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
            behind = self.rejoin_behind_s if replays else 1.0
            ahead = outage + self.rejoin_ahead_s
        if self.last_source - behind <= first_source_s <= self.last_source + ahead:
            return (replays or finite) and first_source_s <= self.last_source
        self.shift = self.last_t + max(outage, 1e-3) - first_source_s
        log.info("the source's timeline restarted; t resumes at %.3f", self.last_t + outage)
        return False

    def advance(self, t: float, source_s: float) -> None:
        self.last_t, self.last_source, self._last_wall = t, source_s, time.monotonic()
