"""How a reference image becomes what the `reference` detector matches: keypoints and parts.

A reference is rendered on each background grey (when it has transparency), and each
rendering is also seen through affine-simulated views (ASIFT: the image tilted by `t` along
directions `phi`, as a camera off the mark's axis sees it), so a mark photographed at a slant
still finds keypoints of its own shape. Every view's keypoints are mapped back into the
reference's pixels, so one homography explains them all. SIFT descriptors are turned into
RootSIFT (L1-normalised, square-rooted), whose Euclidean distance is the Hellinger kernel:
it weighs a descriptor's many small bins fairly against its few large ones, which survives
real light and print better (Arandjelovic and Zisserman, 2012).

A mark is often a symbol and a word set apart (a peacock over "NBC", an emblem beside
"vodafone"), and photographs show one or both. The reference's *parts* are its groups of
foreground pixels that lie close together; a found instance's box covers the parts its
inliers fall on, not the whole reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Rect = tuple[float, float, float, float]

#: a group of foreground pixels smaller than this share of the mark's is no part (a dot, a (R))
PART_MIN_SHARE = 0.04


@dataclass(frozen=True)
class Described:
    """One reference image's keypoints (reference pixels), descriptors, bounds and parts."""

    points: np.ndarray  # (K, 2) float32
    descriptors: np.ndarray  # (K, D)
    bounds: Rect  # the mark's bounds
    parts: tuple[Rect, ...]  # each a group of foreground pixels, within the bounds


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT of SIFT descriptors (float32)."""
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def affine_views(tilts: tuple[float, ...]) -> list[tuple[float, float]]:
    """(tilt, angle in degrees) of ASIFT's sampling: no tilt, then for each tilt `t` the
    directions 0, 72/t, 144/t, ... degrees below 180."""
    views = [(1.0, 0.0)]
    for t in tilts:
        if t <= 1.0:
            continue
        step = 72.0 / t
        views += [(t, a) for a in np.arange(0.0, 180.0, step)]
    return views


def tilt(image: np.ndarray, t: float, angle: float, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """The image rotated by `angle` and squeezed by `t` across, and the 2x3 affine map from
    its pixels back to the image's."""
    h, w = image.shape[:2]
    A = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if angle:
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) @ np.array([[c, -s], [s, c]])
        x0, y0 = corners.min(0)
        x1, y1 = corners.max(0)
        A = np.array([[c, s, -x0], [-s, c, -y0]])
        w, h = int(np.ceil(x1 - x0)), int(np.ceil(y1 - y0))
        image = cv2.warpAffine(image, A, (w, h), flags=cv2.INTER_LINEAR, borderValue=(fill, fill, fill))
    if t > 1.0:
        # anti-aliased along x before squeezing, as ASIFT does
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=0.8 * np.sqrt(t * t - 1.0), sigmaY=0.01)
        image = cv2.resize(image, (max(1, round(w / t)), h), interpolation=cv2.INTER_LINEAR)
        A = np.array([[1.0 / t, 0.0], [0.0, 1.0]]) @ A
    back = cv2.invertAffineTransform(A.astype(np.float64))
    return image, back


def foreground(rgba: np.ndarray) -> np.ndarray:
    """The mark's pixels: opaque ones, or for an image without transparency those that differ
    from the colour of its border (a mark printed on a plain card)."""
    alpha = rgba[..., 3]
    if (alpha < 255).any():
        return alpha >= 128
    rgb = rgba[..., :3].astype(np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    ground = np.median(border, axis=0)
    return np.abs(rgb - ground).max(axis=2) > 48


def parts(mask: np.ndarray, gap: float, min_share: float) -> tuple[Rect, ...]:
    """Bounds of the groups of foreground pixels closer than `gap` (a share of the long
    side) to each other; groups under `min_share` of the foreground are left out."""
    h, w = mask.shape
    if not mask.any():
        return ((0.0, 0.0, float(w), float(h)),)
    k = max(3, int(round(gap * max(h, w))) | 1)
    joined = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels = cv2.connectedComponents(joined)
    total = int(mask.sum())
    out = []
    for i in range(1, n):
        own = mask & (labels == i)
        if own.sum() < min_share * total:
            continue
        ys, xs = np.nonzero(own)
        out.append((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
    return tuple(out) or ((0.0, 0.0, float(w), float(h)),)


def describe(
    rgba: np.ndarray,
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    channels: list[tuple[Callable[[np.ndarray], np.ndarray], bool]],
    backgrounds: tuple[int, ...],
    tilts: tuple[float, ...],
    pad: int,
    part_gap: float,
    part_min_share: float,
) -> Described:
    """Keypoints of every rendering, channel and affine view of one reference (already at
    the reference resolution), in its pixels.

    `detect(gray) -> (points (K, 2), descriptors)`; `channels`: (convert RGB -> one channel,
    whether it sees grey levels); `pad`: background margin around a transparent mark.
    """
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32)
    transparent = bool((alpha < 1.0).any())
    pad = pad if transparent else 0
    levels = backgrounds if transparent else backgrounds[:1]
    points, descs = [], []
    for n, level in enumerate(levels):
        view = (rgb * alpha + level * (1.0 - alpha)).round().astype(np.uint8)
        view = cv2.copyMakeBorder(view, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(level, level, level))
        for t, angle in affine_views(tilts):
            seen, back = tilt(view, t, angle, level)
            for convert, sees_grey in channels:
                if n > 0 and not sees_grey:
                    continue  # the same picture on every grey background
                pts, desc = detect(convert(seen))
                if not len(pts):
                    continue
                pts = cv2.transform(pts.reshape(-1, 1, 2).astype(np.float64), back).reshape(-1, 2)
                points.append(pts.astype(np.float32) - pad)
                descs.append(desc)
    mask = foreground(rgba)
    ys, xs = np.nonzero(mask) if mask.any() else (np.array([0, rgba.shape[0] - 1]), np.array([0, rgba.shape[1] - 1]))
    bounds = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    pts_all = np.concatenate(points) if points else np.zeros((0, 2), np.float32)
    desc_all = np.concatenate(descs) if descs else np.zeros((0, 0), np.float32)
    return Described(pts_all, desc_all, bounds, parts(mask, part_gap, part_min_share))


# geometry of a found view ---------------------------------------------------------------


def seen_parts_box(
    parts: tuple[Rect, ...], corners: np.ndarray, H: np.ndarray, inliers: np.ndarray, min_share: float
) -> Rect:
    """Bounds of the projected parts of the reference that hold at least `min_share` of the
    inliers (all of the mark when none does)."""
    chosen = []
    for x0, y0, x1, y1 in parts if min_share > 0 else ():
        inside = (inliers[:, 0] >= x0) & (inliers[:, 0] <= x1) & (inliers[:, 1] >= y0) & (inliers[:, 1] <= y1)
        if inside.sum() >= max(1.0, min_share * len(inliers)):
            chosen.append([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    corners = np.array(chosen, np.float32).reshape(-1, 1, 2) if chosen else corners
    quad = cv2.perspectiveTransform(corners, H).reshape(-1, 2)
    (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
    return (float(x0), float(y0), float(x1), float(y1))


def finite(H: np.ndarray) -> bool:
    return bool(np.isfinite(H).all()) and abs(float(np.linalg.det(H))) > 1e-12


def inside(corners: np.ndarray, H: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Which frame points lie on the mark that H projects (mapped back into the reference)."""
    back = cv2.perspectiveTransform(dst.reshape(-1, 1, 2), np.linalg.inv(H)).reshape(-1, 2)
    (x0, y0), (x1, y1) = corners[0, 0], corners[2, 0]
    return (back[:, 0] >= x0) & (back[:, 0] <= x1) & (back[:, 1] >= y0) & (back[:, 1] <= y1)


def convex(quad: np.ndarray) -> bool:
    """Whether the quadrilateral turns the same way at every corner (so is convex, not crossed)."""
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool((turns > 0).all() or (turns < 0).all())


def polygon_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
