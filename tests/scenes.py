"""Test scenes: marks pasted into generated frames at known places."""

from __future__ import annotations

import cv2
import numpy as np


def paste(
    frame: np.ndarray,
    rgba: np.ndarray,
    centre: tuple[float, float],
    scale: float,
    angle: float,
    shear: float = 0.0,
) -> tuple[float, float, float, float]:
    """Blend a rotated, scaled (and sheared: x += shear * y) mark into the frame; returns the
    box of its alpha >= 0.5."""
    h, w = rgba.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m = m @ np.float64([[1, shear, -shear * h / 2], [0, 1, 0], [0, 0, 1]])
    m[:, 2] += np.array(centre) - np.array([w / 2, h / 2])
    warped = cv2.warpAffine(
        rgba,
        m,
        (frame.shape[1], frame.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    a = warped[..., 3:].astype(np.float32) / 255.0
    frame[:] = (warped[..., :3] * a + frame * (1 - a)).round().astype(np.uint8)
    ys, xs = np.nonzero(warped[..., 3] >= 128)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
