"""How sharp a detected mark is, measured in the frame it was found in.

The measure is the blur effect of Crete, Dolmiere, Ladret and Nicolas (SPIE 2007), taken as
sharpness (1 - blur): the box's grey levels are blurred again (a 9-pixel mean along rows, then
along columns) and the sum of the differences between neighbours that the re-blur takes away
is set against the sum there was. A sharp mark loses most of its neighbour differences to the
re-blur; a blurred one has little left to lose. It is a ratio, so it does not depend on the
mark's contrast, and it is measured on the box reduced to `sharpness_side` pixels on its
short side, so that a mark's blur counts relative to its size and sensor or codec noise is
averaged away. (The variance of the Laplacian, the usual figure, depends on how much detail a
mark has and rises with noise; normalised by its own value after a re-blur it was not even
monotone in the blur of a rendered mark.) A crisp rendered mark measures 0.8-0.87, one blurred
by a tenth of its height about 0.3.

The stage chain measures every detection with a box when a batch's frames and its detectors'
results meet (`StageChain.measure`), before the results leave the frames behind; detections
the tracker bridges over missed frames have no pixels measured (`sharpness` None).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from media_ray.boxes import Box
from media_ray.model import FrameResult
from media_ray.valuation import QualityParams

#: the re-blur of the blur-effect measure, in pixels (Crete et al.)
_REBLUR = 9


def box_sharpness(rgb: np.ndarray, box: Box, params: QualityParams | None = None) -> float | None:
    """Sharpness, 0..1, of what `box` covers in an (H, W, 3) uint8 RGB frame; None when the box,
    clipped to the frame, is shorter than `sharpness_min_side` on a side."""
    p = params or QualityParams()
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if min(x1 - x0, y1 - y0) < p.sharpness_min_side:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    scale = p.sharpness_side / min(grey.shape)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    g = grey.astype(np.float32)
    blur = max(_blur_along(g, 0), _blur_along(g, 1))
    return round(float(1.0 - blur), 4)


def _blur_along(g: np.ndarray, axis: int) -> float:
    kernel = (1, _REBLUR) if axis == 0 else (_REBLUR, 1)
    reblurred = cv2.blur(g, kernel)
    d = np.abs(np.diff(g, axis=axis))
    d_reblurred = np.abs(np.diff(reblurred, axis=axis))
    total = float(d.sum())
    if total <= 0:  # a flat box: nothing to see sharply
        return 1.0
    kept = float(np.maximum(0.0, d - d_reblurred).sum())
    return (total - kept) / total


def with_sharpness(
    frames: np.ndarray, results: Sequence[FrameResult], params: QualityParams | None = None
) -> list[FrameResult]:
    """One detector's results for a batch's frames (`frames[i]` is the frame of `results[i]`),
    with every boxed detection's `sharpness` measured (left as it is where already set)."""
    out = []
    for rgb, r in zip(frames, results):
        if not any(d.box is not None and d.sharpness is None for d in r.detections):
            out.append(r)
            continue
        measured: dict[tuple, float | None] = {}
        detections = []
        for d in r.detections:
            if d.box is None or d.sharpness is not None:
                detections.append(d)
                continue
            key = tuple(round(v) for v in d.box)
            if key not in measured:
                measured[key] = box_sharpness(rgb, d.box, params)
            detections.append(d.model_copy(update={"sharpness": measured[key]}))
        out.append(r.model_copy(update={"detections": detections}))
    return out
