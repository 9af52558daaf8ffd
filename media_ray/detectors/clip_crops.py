"""The `clip` detector's pixels: a frame cut into crops, crops and reference images fitted to
the model's square input."""

from __future__ import annotations

import cv2
import numpy as np

#: backgrounds the reference images are rendered on, RGB
EXEMPLAR_BACKGROUNDS = ((255, 255, 255), (0, 0, 0))
#: share of the square the rendered reference image fills
EXEMPLAR_FILL = 0.8


def crop_boxes(
    width: int, height: int, tiles: tuple[int, int], overlap: float, whole_frame: bool = True
) -> list[tuple[int, int, int, int]]:
    """The crops of a frame, x0, y0, x1, y1 in pixels: the whole frame first, then the grid."""
    boxes: list[tuple[int, int, int, int]] = []
    if whole_frame:
        boxes.append((0, 0, width, height))
    cols, rows = tiles
    if (cols, rows) == (1, 1) and whole_frame:
        return boxes

    def spans(length: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, length)]
        size = length / (n - (n - 1) * overlap)
        step = size * (1 - overlap)
        out = []
        for i in range(n):
            a = int(round(i * step))
            b = length if i == n - 1 else int(round(i * step + size))
            out.append((a, max(b, a + 1)))
        return out

    for y0, y1 in spans(height, rows):
        for x0, x1 in spans(width, cols):
            boxes.append((x0, y0, x1, y1))
    return boxes


def fit_image(img: np.ndarray, size: tuple[int, int], mode: str, fill: tuple[int, ...]) -> np.ndarray:
    """An RGB uint8 image brought to `size` (height, width): pad, squash or centre-crop."""
    th, tw = size
    h, w = img.shape[:2]
    if mode == "squash":
        scale_x, scale_y = tw / w, th / h
        interp = cv2.INTER_AREA if scale_x * scale_y < 1 else cv2.INTER_CUBIC
        return cv2.resize(img, (tw, th), interpolation=interp)
    scale = min(tw / w, th / h) if mode == "pad" else max(tw / w, th / h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(img, (nw, nh), interpolation=interp)
    if mode == "pad":
        out = np.empty((th, tw, 3), np.uint8)
        out[:] = fill
        y, x = (th - nh) // 2, (tw - nw) // 2
        out[y : y + nh, x : x + nw] = resized
        return out
    y, x = (nh - th) // 2, (nw - tw) // 2
    return np.ascontiguousarray(resized[y : y + th, x : x + tw])


def render_exemplar(
    rgba: np.ndarray, background: tuple[int, int, int], size: tuple[int, int], fill: float = EXEMPLAR_FILL
) -> np.ndarray:
    """A reference image (RGBA or RGB) over a plain background, centred, filling `fill` of the square."""
    if rgba.ndim == 2:
        rgba = np.repeat(rgba[..., None], 3, axis=2)
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 if rgba.shape[2] == 4 else np.ones_like(rgb[..., :1])
    bg = np.asarray(background, np.float32)
    flat = (rgb * alpha + bg * (1 - alpha)).round().clip(0, 255).astype(np.uint8)
    th, tw = size
    inner = (max(1, int(th * fill)), max(1, int(tw * fill)))
    mark = fit_image(flat, inner, "pad", background)
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = background
    y, x = (th - inner[0]) // 2, (tw - inner[1]) // 2
    out[y : y + inner[0], x : x + inner[1]] = mark
    return out
