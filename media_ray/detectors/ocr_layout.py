"""Whether a brand's mark is seen laid out around its name as its reference image lays it out.

The `ocr` detector grows the box of a name it reads to the brand's whole mark, placed around
the name as in the reference (an emblem above the word, an ellipse around it). That is a guess
wherever the footage shows the name without that mark: another design of the brand, the name
on a sign, a can or a button, a part of the mark. So where the mark is much larger than its
name, its box stands only when the mark itself is seen there: the reference, scaled to the
grown box, is matched into the frame around that box (RootSIFT, Lowe's ratio test), and a
match counts when it lies where the layout puts it (within a tolerance) and outside the
name. With too few of them the name is still reported, without a box: the brand is there,
where its mark is, is not known.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media_ray.boxes import Box
from media_ray.detectors.reference_views import foreground, root_sift


@dataclass(frozen=True)
class MarkLayout:
    """A mark and where its name lies in it."""

    #: the mark in grey, cut to its bounds, on a light and a dark ground (one for an opaque image)
    renders: tuple[np.ndarray, ...]
    #: the name's box in the mark, as shares of the mark's width and height
    word: Box


def mark_layout(rgba: np.ndarray, layout: Box) -> MarkLayout | None:
    """The mark of a reference image, given where the mark lies around its name in units of
    the name's box (`layout`: left, top, right, bottom); None for an image without a mark."""
    mask = foreground(rgba)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    alpha = rgba[y0:y1, x0:x1, 3:].astype(np.float32) / 255.0
    grounds = (255, 0) if (alpha < 1.0).any() else (255,)
    renders = tuple(
        cv2.cvtColor((rgba[y0:y1, x0:x1, :3] * alpha + g * (1.0 - alpha)).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        for g in grounds
    )
    left, top, right, bottom = layout
    w, h = max(right - left, 1e-6), max(bottom - top, 1e-6)
    word = (-left / w, -top / h, (1.0 - left) / w, (1.0 - top) / h)
    return MarkLayout(renders, word)


class LayoutCheck:
    """Counts the keypoints of a mark, beyond its name, found where a grown box puts them."""

    def __init__(self, tolerance: float, long_side: int, ratio: float = 0.8):
        self.tolerance = tolerance
        self.long_side = long_side
        self.ratio = ratio
        self._sift = cv2.SIFT_create()  # type: ignore[attr-defined]  # in cv2, not its stubs
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def _features(self, gray: np.ndarray) -> tuple[list, np.ndarray | None]:
        kps, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or len(kps) == 0:
            return [], None
        return list(kps), root_sift(desc)

    def points_seen(self, gray: np.ndarray, mark: MarkLayout, box: Box) -> int:
        """How many keypoints of the mark, outside its name, are matched into the grey frame
        where `box` (the mark's box the layout gives, in frame pixels, maybe beyond the
        frame) puts them; the best of the mark's renders."""
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        if bw < 4 or bh < 4:
            return 0
        z = min(1.0, self.long_side / max(bw, bh))  # both sides compared at this scale
        height, width = gray.shape[:2]
        m = self.tolerance
        cx0, cy0 = max(0, int(x0 - m * bw)), max(0, int(y0 - m * bh))
        cx1, cy1 = min(width, int(np.ceil(x1 + m * bw))), min(height, int(np.ceil(y1 + m * bh)))
        if cx1 - cx0 < 8 or cy1 - cy0 < 8:
            return 0
        crop = gray[cy0:cy1, cx0:cx1]
        if z < 1.0:
            crop = cv2.resize(crop, None, fx=z, fy=z, interpolation=cv2.INTER_AREA)
        frame_kps, frame_desc = self._features(crop)
        if frame_desc is None or len(frame_kps) < 2:
            return 0
        frame_pts = np.array([k.pt for k in frame_kps], np.float32)
        size = (max(8, round(bw * z)), max(8, round(bh * z)))
        offset = np.array([(x0 - cx0) * z, (y0 - cy0) * z], np.float32)
        reach = self.tolerance * float(np.hypot(*size))
        u0, v0, u1, v1 = mark.word
        best = 0
        for render in mark.renders:
            shrink = size[0] < render.shape[1]
            ref = cv2.resize(render, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            ref_kps, ref_desc = self._features(ref)
            if ref_desc is None:
                continue
            seen = 0
            for pair in self._matcher.knnMatch(ref_desc, frame_desc, k=2):
                if len(pair) < 2 or pair[0].distance >= self.ratio * pair[1].distance:
                    continue
                px, py = ref_kps[pair[0].queryIdx].pt
                if u0 <= px / size[0] <= u1 and v0 <= py / size[1] <= v1:
                    continue  # the name's own points: the name was read already
                where = np.array([px, py], np.float32) + offset
                if float(np.hypot(*(frame_pts[pair[0].trainIdx] - where))) <= reach:
                    seen += 1
            best = max(best, seen)
        return best
