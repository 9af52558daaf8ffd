"""Detectors: plain classes with one interface, a FrameBatch in and one FrameResult per frame out.

They are chosen by name from `DETECTORS`, a table of import paths, so that naming a detector
never imports the heavy libraries of the others (torch for `clip`). Adding a detector is adding
a module with a `Detector` subclass and a line in the table.

A detector that looks at one frame at a time implements `detect_frame`, which returns what it
`Found` there; the base class's `detect` runs it over a batch and turns the findings into
`Detection`s. One that works on a whole batch at once overrides `detect` and builds its
detections with `Detector.detection`, as `detect` does: score clamped to 0..1, box clipped to
the frame, the detector's name written in.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from media_ray.boxes import Box, clip_box
from media_ray.catalog import BrandCatalog
from media_ray.model import Detection, FrameBatch, FrameResult, empty_results

log = logging.getLogger(__name__)


class DetectorError(ValueError):
    """A detector that cannot be created: unknown name, bad parameters, weights that won't load."""


class DetectorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Found(NamedTuple):
    """What a detector found in one frame, before it becomes a `Detection`."""

    label: str
    score: float  # clamped to 0..1 by `Detector.detection`
    box: Box | None = None  # source pixels, clipped to the frame by `Detector.detection`


class Detector:
    """Finds labels in frames. Instances load their models once and are reused for every batch.

    Subclasses implement `detect_frame` (one frame at a time) or override `detect` (a whole
    batch at once).
    """

    #: the registry name, written into each Detection's `detector` field
    name: ClassVar[str]
    Params: ClassVar[type[DetectorParams]] = DetectorParams
    #: whether the detector needs model weights (or a library) that may be missing on a machine
    needs_weights: ClassVar[bool] = False
    #: whether it runs when no detectors are named; a slow one is only run by name
    in_default_set: ClassVar[bool] = True

    def __init__(self, catalog: BrandCatalog, params: DetectorParams | None = None):
        self.catalog = catalog
        self.params = params if params is not None else self.Params()

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        """One result per frame of the batch, in the batch's order: `detect_frame`'s findings
        in each frame, as detections."""
        results = empty_results(batch)
        for rgb, result in zip(batch.frames, results):
            result.detections = [self.detection(f.label, f.score, f.box, batch.size) for f in self.detect_frame(rgb)]
        return results

    def detect_frame(self, rgb: np.ndarray) -> list[Found]:
        """What is found in one uint8 RGB frame (H, W, 3), boxes in its pixels."""
        raise NotImplementedError(f"{type(self).__name__} implements neither detect nor detect_frame")

    def detection(self, label: str, score: float, box: Box | None, size: tuple[int, int]) -> Detection:
        """A detection of this detector: `score` clamped to 0..1, `box` clipped to a frame of
        `size` (width, height)."""
        return Detection(
            label=label,
            score=float(min(max(score, 0.0), 1.0)),
            box=None if box is None else clip_box(box, *size),
            detector=self.name,
        )

    def set_catalog(self, catalog: BrandCatalog) -> None:
        """Look for a new set of brands from now on (derived features are rebuilt)."""
        self.catalog = catalog
        self._build(catalog)

    def _build(self, catalog: BrandCatalog) -> None:
        """Derive what the detector needs from a catalogue (reference features, name keys);
        called by `set_catalog`, and by a subclass's `__init__` once its models are loaded."""

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        """Why this detector cannot run on this machine, or None when it can."""
        return None


#: detector name -> "module:Class"
DETECTORS: dict[str, str] = {
    "reference": "media_ray.detectors.reference:ReferenceDetector",
    "shape": "media_ray.detectors.shape:ShapeDetector",
    "ocr": "media_ray.detectors.ocr:OcrDetector",
    "visual": "media_ray.detectors.visual:VisualDetector",
    "clip": "media_ray.detectors.clip:ClipDetector",
    # Google Cloud Vision's logo detection: paid per frame, so only by name (`in_default_set`)
    "cloud_vision": "media_ray.detectors.cloud_vision:CloudVisionDetector",
}


def usable_cores() -> list[int]:
    """The cores this process may run on: its CPU affinity where the system says, else all."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def set_compute_threads(threads: int) -> int:
    """Threads for the numeric libraries of this process (0: every core it may use); returns the number set.

    Ray sets OMP_NUM_THREADS to an actor's CPU reservation, which starves a detector reserved
    at a fraction of a CPU; a replica states its own.
    """
    import os
    import sys

    import cv2

    n = threads or len(usable_cores())
    os.environ["OMP_NUM_THREADS"] = str(n)
    cv2.setNumThreads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def detector_class(name: str) -> type[Detector]:
    """The class of a registered detector, or of one named by its import path `module:Class`
    (a detector of the user's own, with no change to the table)."""
    target = DETECTORS.get(name) or (name if ":" in name else None)
    if target is None:
        raise DetectorError(f"unknown detector {name!r} (known: {', '.join(sorted(DETECTORS))})")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise DetectorError(f"detector {name!r} cannot be imported: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise DetectorError(f"{target} is not a Detector")
    return cls


def parse_params(name: str, params: dict[str, Any] | None) -> DetectorParams:
    cls = detector_class(name)
    try:
        return cls.Params(**(params or {}))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DetectorError(f"detector {name!r}: parameter {where}: {first['msg']}") from None


def create(name: str, catalog: BrandCatalog, params: dict[str, Any] | None = None) -> Detector:
    """A ready detector, its model loaded."""
    return detector_class(name)(catalog, parse_params(name, params))


def default_set(params_for: Callable[[str], dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The detectors to run when none are named: every one that can run here.

    `params_for(name)` gives a detector's parameters (`MediaRayConfig.params_for`). Returns the
    names and, for each left out, the reason.
    """
    chosen, left_out = [], {}
    for name in DETECTORS:
        cls = detector_class(name)
        if not cls.in_default_set:
            continue
        reason = cls.unavailable_reason(parse_params(name, params_for(name))) if cls.needs_weights else None
        if reason is None:
            chosen.append(name)
        else:
            left_out[name] = reason
    return chosen, left_out
