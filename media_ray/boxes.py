"""Axis-aligned boxes: overlap measures, clipping, working-resolution mapping and suppression.

A `Box` is (x0, y0, x1, y1) in pixels, x1/y1 exclusive. Detectors match frames at a working
resolution (`to_working`) and map their boxes back to source pixels (`to_source`); every box
they report is clipped to the frame (`clip_box`). Overlapping boxes are thinned by one greedy
non-maximum suppression, `nms`, whose options cover the detectors' own suppression (any two
boxes, or only boxes of different labels) and the merge of several detectors' results (only
boxes of the same label).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def containment(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: 1 when one box holds the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def clip_box(box: Box, width: float, height: float) -> Box:
    """The box cut to a width x height frame (it may come out empty: x1 <= x0 or y1 <= y0)."""
    x0, y0, x1, y1 = box
    return (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))


def union_area(boxes: list[Box], width: int, height: int) -> float:
    """Area covered by a few axis-aligned boxes, clipped to the frame."""
    clipped = [clip_box(b, width, height) for b in boxes]
    clipped = [b for b in clipped if b[2] > b[0] and b[3] > b[1]]
    xs = sorted({v for b in clipped for v in (b[0], b[2])})
    area = 0.0
    for xa, xb in zip(xs, xs[1:]):
        spans = sorted((b[1], b[3]) for b in clipped if b[0] <= xa and b[2] >= xb)
        covered, bottom = 0.0, 0.0  # bottom is read only once top is set
        top: float | None = None
        for y0, y1 in spans:
            if top is None or y0 > bottom:
                if top is not None:
                    covered += bottom - top
                top, bottom = y0, y1
            else:
                bottom = max(bottom, y1)
        if top is not None:
            covered += bottom - top
        area += covered * (xb - xa)
    return area


def to_working(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """The frame with its long side at most `long_side` (never enlarged), and the scale used."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return rgb, scale


def to_source(box: Box, scale: float) -> Box:
    """A box at the working resolution (`to_working`'s scale) in source pixels, not clipped."""
    x0, y0, x1, y1 = (v / scale for v in box)
    return (x0, y0, x1, y1)


_iou = iou  # `nms` names its threshold `iou`


def nms(
    boxes: Sequence[Box | None],
    scores: Sequence[float],
    labels: Sequence[str] | None = None,
    iou: float = 0.5,
    inside: float | None = None,
    same_label: bool | None = None,
) -> list[int]:
    """Greedy non-maximum suppression: the indices of the boxes kept, highest score first.

    The boxes are taken in order of falling score (equal scores in the order given). Each is
    kept unless a box kept before it suppresses it. A kept box A suppresses a box B when

    * the pair may suppress: with `same_label` None any two boxes may; with True only boxes
      of the same label; with False only boxes of different labels (`labels` is then needed);
    * and they overlap: `iou(A, B) >= iou`, or, with `inside` given, `containment(A, B) >=
      inside` (intersection over the smaller box: one lies, mostly, inside the other).

    A box that is None (a detection without a box) is always kept and suppresses nothing.
    """
    if same_label is not None and labels is None:
        raise ValueError("nms: same_label needs labels")
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        b = boxes[i]
        if b is None or not any(
            _suppresses(boxes[k], b, iou, inside)
            for k in kept
            if same_label is None or (labels is not None and (labels[k] == labels[i]) == same_label)
        ):
            kept.append(i)
    return kept


def _suppresses(a: Box | None, b: Box, iou: float, inside: float | None) -> bool:
    if a is None:
        return False
    # kept unless both measures are below their thresholds, as the copies this replaced were
    return not (_iou(a, b) < iou and (inside is None or containment(a, b) < inside))
