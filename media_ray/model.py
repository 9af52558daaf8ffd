"""The values every part of media-ray speaks: a batch of decoded frames and a frame's result.

`FrameBatch` is what travels through the Ray object store (numpy arrays, zero-copy on read);
`FrameResult` with its `Detection`s is what comes back, is stored, streamed and aggregated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from media_ray.boxes import Box


@dataclass(frozen=True)
class FrameBatch:
    """Frames sampled from one stream, in presentation order.

    `frames` is uint8 RGB, shape (N, H, W, 3), in source resolution; `times` are presentation
    times in seconds from the start of the stream; `indices` are source frame numbers.
    `seq` numbers the batches of a stream from 0, so results can be put back in order.
    `cuts` flags the frames that start a new shot (`media_ray.shots`); empty: not known.
    """

    stream_id: str
    seq: int
    frames: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    arrival: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: the brand catalogue the frames are to be matched against; "" for the one a detector has
    catalog_version: str = ""
    #: one flag per frame, True where a frame starts a new shot; empty when not known
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: frames of a live stream, sent batch after batch: a detector may carry what it saw in the
    #: stream's previous batch (`seq` - 1) into this one. A file's batches stand alone, so its
    #: results do not depend on which replica took which batch
    live: bool = False

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3), got {self.frames.shape}")
        if not (len(self.frames) == len(self.times) == len(self.indices)):
            raise ValueError("frames, times and indices differ in length")
        if len(self.cuts) and len(self.cuts) != len(self.frames):
            raise ValueError(f"{len(self.cuts)} cut flags for {len(self.frames)} frames")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @classmethod
    def stack(
        cls,
        stream_id: str,
        seq: int,
        frames: list[np.ndarray],
        times: list[float],
        indices: list[int],
        arrival: list[float] | None = None,
        catalog_version: str = "",
        live: bool = False,
    ) -> FrameBatch:
        return cls(
            stream_id=stream_id,
            seq=seq,
            frames=np.stack(frames),
            times=np.asarray(times, dtype=np.float64),
            indices=np.asarray(indices, dtype=np.int64),
            arrival=np.asarray(arrival if arrival is not None else [], dtype=np.float64),
            catalog_version=catalog_version,
            live=live,
        )


class Detection(BaseModel):
    """One brand (or other label) found in one frame."""

    label: str
    score: float = Field(ge=0.0, le=1.0)
    box: Box | None = None  # x0, y0, x1, y1 in source pixels; None when the detector has no box
    detector: str
    #: how sharp the mark is in its box, 0..1 (`media_ray.sharpness`), measured by the stage
    #: chain where the frame and the detection meet; None when not measured. Not in the record.
    sharpness: float | None = Field(None, ge=0.0, le=1.0)

    def share_of(self, width: int, height: int) -> float | None:
        """Fraction of the frame the box covers, or None without a box."""
        if self.box is None or width <= 0 or height <= 0:
            return None
        x0, y0, x1, y1 = self.box
        w = max(0.0, min(x1, width) - max(x0, 0.0))
        h = max(0.0, min(y1, height) - max(y0, 0.0))
        return (w * h) / float(width * height)


class FrameResult(BaseModel):
    """Everything found in one analysed frame.

    `signals` holds per-frame measurements that are not detections (the `visual` detector's
    colours and brightness, for one); it is kept out of the frame record of the output contract.
    """

    t: float
    frame: int
    width: int = 0
    height: int = 0
    detections: list[Detection] = Field(default_factory=list)
    signals: dict[str, Any] = Field(default_factory=dict)
    #: wall-clock time (time.time()) the frame reached the ingest, when known; live records
    #: carry it beside the output contract's fields
    arrival: float | None = None
    #: the frame starts a new shot (`media_ray.shots`): no track or appearance goes across it;
    #: the `StageChain` clears it on a stream's first frame, which follows no shot
    cut: bool = False

    def record(self) -> dict[str, Any]:
        """The frame record of the output contract (frames.jsonl, the live API); `"cut": true`
        is added on a frame that starts a new shot."""
        record: dict[str, Any] = {
            "t": round(self.t, 6),
            "frame": self.frame,
            "detections": [
                {
                    "label": d.label,
                    "score": round(d.score, 4),
                    "box": None if d.box is None else [round(v, 1) for v in d.box],
                    "detector": d.detector,
                }
                for d in self.detections
            ],
        }
        if self.cut:
            record["cut"] = True
        return record

    def merge(self, other: FrameResult) -> FrameResult:
        """This frame's result with another detector's findings for the same frame added."""
        return self.model_copy(
            update={
                "detections": self.detections + other.detections,
                "signals": {**self.signals, **other.signals},
                "cut": self.cut or other.cut,
            }
        )


def empty_results(batch: FrameBatch) -> list[FrameResult]:
    """One result without detections for each frame of the batch, with its cut flag."""
    w, h = batch.size
    cuts = batch.cuts if len(batch.cuts) else np.zeros(len(batch), bool)
    return [
        FrameResult(t=float(t), frame=int(i), width=w, height=h, cut=bool(c))
        for t, i, c in zip(batch.times, batch.indices, cuts)
    ]


def mark_cuts(results: list[FrameResult], cuts: np.ndarray | Sequence[bool]) -> list[FrameResult]:
    """A batch's results with the batch's cut flags (as they are when the flags are not known)."""
    if len(cuts) != len(results):
        return results
    return [r if r.cut == bool(c) else r.model_copy(update={"cut": bool(c)}) for r, c in zip(results, cuts)]
