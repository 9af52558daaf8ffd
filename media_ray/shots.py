"""Shot cuts: where one stream's sampled frames jump from one shot to another.

A logo seen before a cut and one seen after it are not the same sighting, however close
their boxes: the tracker ends every track at a cut, and exposure ends every appearance there.
`ShotCutFinder` finds cuts cheaply, frame against the previous *sampled* frame of the same
stream (it remembers that frame across batches):

- each frame is shrunk to a thumbnail (`ShotParams.size`, area averaging);
- two distances to the previous thumbnail: of colour (half the L1 distance of the
  normalised hue-saturation and value histograms, 0..1) and of place (the share of the cells
  of a `grid` over the thumbnail whose mean absolute grey difference is `cell_change` or more);
- a cut is where both reach their thresholds: a pan or a moving object keeps the colours, a
  logo or a caption that pops in changes a few cells only, and a brightness change spreads
  over many frames, each step small. The colour distance must also be `contrast` times the
  median of the last `window` ones, so footage that changes fast all the time (a shaky
  camera, confetti) does not cut at every frame.

The very first frame of a stream starts a shot. `with_cuts` gives batches of one stream their
`cuts`.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections import deque
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from media_ray.model import FrameBatch

log = logging.getLogger(__name__)


class ShotParams(BaseModel):
    """Shot cuts found between sampled frames; a cut ends every track and every appearance."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="look for shot cuts at all; off, nothing is ever a cut")
    size: tuple[int, int] = Field((64, 36), description="width and height of the thumbnail a frame is compared by")
    hue_bins: int = Field(16, ge=2, le=180, description="hue bins of the colour histogram")
    sat_bins: int = Field(4, ge=1, le=256, description="saturation bins of the colour histogram")
    value_bins: int = Field(8, ge=1, le=256, description="bins of the separate brightness histogram")
    colour_threshold: float = Field(
        0.15,
        gt=0,
        le=1,
        description="least colour distance (half the L1 distance of the normalised histograms, 0..1) "
        "of a cut from the previous sampled frame",
    )
    grid: tuple[int, int] = Field((4, 4), description="columns and rows of cells the thumbnail is compared by")
    cell_change: float = Field(
        0.1, gt=0, le=1, description="mean absolute grey difference (0..1) of a cell that changed"
    )
    changed_share: float = Field(
        0.3, gt=0, le=1, description="least share of the cells that changed, of a cut: most of the picture"
    )
    contrast: float = Field(
        3.0,
        ge=1,
        description="a cut's colour distance is also this many times the median of the recent ones",
    )
    window: int = Field(5, ge=1, description="recent colour distances (of sampled frames) `contrast` compares with")

    @model_validator(mode="after")
    def _cells_of_pixels(self) -> ShotParams:
        (w, h), (gx, gy) = self.size, self.grid
        if min(gx, gy) < 1 or w < gx or h < gy:
            raise ValueError(f"a {w}x{h} thumbnail cannot be cut into {gx}x{gy} cells of pixels")
        return self


class ShotCutFinder:
    """Cut flags of one stream's sampled frames, fed in order, batch after batch."""

    def __init__(self, params: ShotParams | None = None):
        self.params = params or ShotParams()
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._recent: deque[float] = deque(maxlen=self.params.window)
        self.cuts = 0

    def flags(self, frames: np.ndarray) -> np.ndarray:
        """One flag per frame (N, H, W, 3) uint8 RGB: True where a frame starts a new shot."""
        out = np.zeros(len(frames), dtype=bool)
        if not self.params.enabled:
            return out
        for n, frame in enumerate(frames):
            out[n] = self._step(frame)
        return out

    def distances(self, frame: np.ndarray) -> tuple[float, float] | None:
        """Colour distance and changed share of a frame from the previous one; None for the first.
        The finder's state is left as it was."""
        if self._previous is None:
            return None
        return self._distances(self._previous, self._signature(frame))

    def _step(self, frame: np.ndarray) -> bool:
        p = self.params
        signature = self._signature(frame)
        previous, self._previous = self._previous, signature
        if previous is None:
            return True
        colour, changed = self._distances(previous, signature)
        recent = statistics.median(self._recent) if self._recent else 0.0
        self._recent.append(colour)
        cut = colour >= p.colour_threshold and changed >= p.changed_share and colour >= p.contrast * recent
        if cut:
            self.cuts += 1
            log.debug("shot cut: colour %.3f, changed %.3f, recent %.3f", colour, changed, recent)
        return cut

    def _signature(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        small = cv2.resize(frame, p.size, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hs = cv2.calcHist([hsv], [0, 1], None, [p.hue_bins, p.sat_bins], [0, 180, 0, 256]).ravel()
        v = cv2.calcHist([hsv], [2], None, [p.value_bins], [0, 256]).ravel()
        hist = np.concatenate([hs, v]) / float(small.shape[0] * small.shape[1])
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return hist, grey

    def _distances(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        # two histograms that each sum to 1: half the L1 distance of each, averaged
        colour = float(np.abs(a[0] - b[0]).sum()) / 4.0
        (gx, gy), diff = self.params.grid, np.abs(a[1] - b[1]) / 255.0
        h, w = diff.shape[0] // gy * gy, diff.shape[1] // gx * gx
        cells = diff[:h, :w].reshape(gy, h // gy, gx, w // gx).mean(axis=(1, 3))
        return colour, float((cells >= self.params.cell_change).mean())


def with_cuts(batches: Iterable[FrameBatch], params: ShotParams | None = None) -> Iterator[FrameBatch]:
    """One stream's batches, in order, each with its `cuts` (unchanged when finding is off)."""
    params = params or ShotParams()
    if not params.enabled:
        yield from batches
        return
    finder = ShotCutFinder(params)
    for batch in batches:
        yield dataclasses.replace(batch, cuts=finder.flags(batch.frames))
