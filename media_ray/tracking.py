"""Detections over time: one stream's frame results linked into tracks, with hysteresis.

A logo seen in one analysed frame is very likely near the same place in the next, and a logo
seen only once among its neighbours is likely a false hit. `DetectionTracker` takes one
stream's `FrameResult`s in time order and gives them back a few frames later:

- a detection is linked to a track of the same label whose last box is near it;
- a track's detections are reported only once it has `confirm_hits` hits (confirmation), so
  a lone false hit is dropped;
- a confirmed track that misses at most `max_gap_frames` frames between two hits is reported
  on the missed frames too, with a box interpolated between the hits (bridging).

A result flagged `cut` (the first frame of a new shot, `media_ray.shots`) ends every track:
no detection is linked to a track of the shot before, and so no box is bridged across it.

The delay is bounded: a result leaves `delay` frames after it arrived (see `TrackingConfig`),
and `flush()` gives back the rest at the end of a stream. Detections without a box are
tracked per label. Signals and frame metadata pass through unchanged.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from media_ray.model import Box, Detection, FrameResult

log = logging.getLogger(__name__)


class TrackingConfig(BaseModel):
    """Hysteresis over analysed frames (counts are of analysed frames, not source frames)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run the temporal stage at all")
    live: bool = Field(
        False,
        description="run it on live streams too; it holds `delay` analysed frames "
        "back (1.5 s at 2 frames/s with the defaults) before a viewer "
        "sees them, so live results are otherwise untracked",
    )
    confirm_hits: int = Field(
        2,
        ge=1,
        description="hits a track needs before any of its detections is reported; 1 reports every detection",
    )
    max_gap_frames: int = Field(
        2,
        ge=0,
        description="missed frames between two hits of a track that are bridged; a track missed longer ends",
    )
    max_shift: float = Field(
        1.0,
        gt=0.0,
        description="largest move of a box's centre between a track's hits, in units "
        "of the track's box size (square root of its area) per frame",
    )
    max_scale_change: float = Field(
        2.0,
        ge=1.0,
        description="largest change of a box's area ratio between a track's hits, per frame, either way",
    )
    bridge_score_factor: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="a bridged detection's score: the lower of its two hits' scores times this",
    )
    bridge_detector: str = Field("tracking", description="the `detector` written on bridged detections")

    @property
    def delay(self) -> int:
        """Frames a result is held back: long enough to see a new track's confirming hit and
        the hit that closes a gap."""
        return max((self.confirm_hits - 1) * (self.max_gap_frames + 1), self.max_gap_frames)


@dataclass
class _Track:
    id: int
    label: str
    #: position in the stream (push count) -> the detection linked there, of the recent
    #: positions only (those a pending result can still be bridged from): a track that lasts
    #: the whole of a live stream must not keep every hit it ever had
    hits: dict[int, Detection] = field(default_factory=dict)
    #: position of the latest hit
    last: int = -1
    #: hits ever linked, those forgotten included
    confirmed_hits: int = 0

    def add(self, pos: int, detection: Detection) -> None:
        self.hits[pos] = detection
        self.last = pos
        self.confirmed_hits += 1

    def forget_before(self, pos: int) -> None:
        if self.hits and min(self.hits) < pos:
            self.hits = {k: d for k, d in self.hits.items() if k >= pos}


@dataclass
class _Pending:
    pos: int
    result: FrameResult
    tracks: list[int]  # the track of each detection, in order


class DetectionTracker:
    """Hysteresis over one stream's frame results; results must be pushed in time order."""

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()
        self._pending: deque[_Pending] = deque()
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0
        self._pos = 0
        #: position of the first frame of the current shot: no track of before it is linked to
        self._shot_start = 0

    def push(self, result: FrameResult) -> list[FrameResult]:
        """Take the next frame's result; returns the results now ready, oldest first."""
        if not self.config.enabled:
            return [result]
        if result.cut:
            self._shot_start = self._pos
        ids = self._link(result.detections)
        self._pending.append(_Pending(self._pos, result, ids))
        self._pos += 1
        ready = []
        while len(self._pending) > self.config.delay:
            ready.append(self._release(self._pending.popleft()))
        return ready

    def flush(self) -> list[FrameResult]:
        """The results still held back, at the end of the stream; the tracker starts afresh."""
        ready = [self._release(p) for p in self._pending]
        self._pending.clear()
        self._tracks.clear()
        return ready

    # linking --------------------------------------------------------------------------------

    def _link(self, detections: list[Detection]) -> list[int]:
        """Link each detection to a live track (or a new one); returns the track ids."""
        c = self.config
        # what the oldest pending result may still be bridged from: nothing before it is needed;
        # a track that ended (missed too long, or cut off) is kept while a pending result may
        # hold one of its detections, which its confirmation decides
        horizon = self._pos - c.delay - c.max_gap_frames - 2
        self._tracks = {t.id: t for t in self._tracks.values() if t.last >= horizon}
        for t in self._tracks.values():
            t.forget_before(horizon)
        live = [
            t
            for t in self._tracks.values()
            if self._pos - t.last <= c.max_gap_frames + 1 and t.last >= self._shot_start
        ]
        pairs = []
        for n, d in enumerate(detections):
            for t in live:
                if t.label != d.label:
                    continue
                cost = _distance(t.hits[t.last].box, d.box, self._pos - t.last, c)
                if cost is not None:
                    pairs.append((cost, n, t.id))
        assigned: dict[int, int] = {}
        taken: set[int] = set()
        for _cost, n, tid in sorted(pairs):
            if n in assigned or tid in taken:
                continue
            assigned[n] = tid
            taken.add(tid)
        ids = []
        for n, d in enumerate(detections):
            track_id = assigned.get(n)
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
                self._tracks[track_id] = _Track(track_id, d.label)
            self._tracks[track_id].add(self._pos, d)
            ids.append(track_id)
        return ids

    # releasing ------------------------------------------------------------------------------

    def _release(self, p: _Pending) -> FrameResult:
        c = self.config
        kept = [d for d, tid in zip(p.result.detections, p.tracks) if self._confirmed(tid)]
        present = set(p.tracks)
        for track in self._tracks.values():
            if track.id in present or not self._confirmed(track.id):
                continue
            before = [k for k in track.hits if k < p.pos]
            after = [k for k in track.hits if k > p.pos]
            if not before or not after:
                continue
            j, k = max(before), min(after)
            if k - j - 1 > c.max_gap_frames:
                continue
            a, b = track.hits[j], track.hits[k]
            u = (p.pos - j) / (k - j)
            kept.append(
                Detection(
                    label=track.label,
                    score=min(a.score, b.score) * c.bridge_score_factor,
                    box=_lerp_box(a.box, b.box, u),
                    detector=c.bridge_detector,
                )
            )
        dropped = len(p.result.detections) - sum(1 for tid in p.tracks if self._confirmed(tid))
        if dropped:
            log.debug("frame %d: %d unconfirmed detections dropped", p.result.frame, dropped)
        return p.result.model_copy(update={"detections": kept})

    def _confirmed(self, tid: int) -> bool:
        t = self._tracks.get(tid)
        return t is not None and t.confirmed_hits >= self.config.confirm_hits


def _distance(a: Box | None, b: Box | None, frames: int, c: TrackingConfig) -> float | None:
    """How far box b is from box a, `frames` analysed frames later, or None when too far."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else None
    area_a = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    area_b = max((b[2] - b[0]) * (b[3] - b[1]), 1e-6)
    if max(area_a / area_b, area_b / area_a) > c.max_scale_change**frames:
        return None
    shift = math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    d = shift / math.sqrt(max(area_a, area_b)) / frames
    return d if d <= c.max_shift else None


def _lerp_box(a: Box | None, b: Box | None, u: float) -> Box | None:
    if a is None or b is None:
        return None
    return tuple(x + (y - x) * u for x, y in zip(a, b))  # type: ignore[return-value]
