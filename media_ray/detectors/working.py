"""Frames matched at a working resolution, boxes mapped back to source pixels."""
from __future__ import annotations

import cv2
import numpy as np

from media_ray.model import Box


def to_working(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """The frame with its long side at most `long_side` (never enlarged), and the scale used."""
    h, w = rgb.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return rgb, scale


def to_source(box: Box, scale: float, width: int, height: int) -> Box:
    """A box at the working resolution in source pixels, clipped to the frame."""
    x0, y0, x1, y1 = (v / scale for v in box)
    return (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
