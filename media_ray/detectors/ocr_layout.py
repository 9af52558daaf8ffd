"""Whether a brand's mark is seen laid out around its name as its reference image lays it out.

The `ocr` detector grows the box of a name it reads to the brand's whole mark, placed around
the name as in the reference (an emblem above the word, an ellipse around it). That is a guess
wherever the footage shows the name without that mark: another design of the brand, the name
on a sign, a can or a button, a part of the mark. So where the mark is much larger than its
name, its box stands only when the mark itself is seen there: the reference, scaled to the
grown box, is matched into the frame around that box (RootSIFT, Lowe's ratio test), and a
match counts when it lies where the layout puts it (within a tolerance) and outside the
name. With too few of them the name is still reported, without a box: the brand is there,
where its mark is, is not known. The mark's keypoints are found once per catalogue; a check
costs one SIFT of the frame around the grown box, scaled to the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media_ray.boxes import Box
from media_ray.detectors.reference_views import foreground, root_sift


@dataclass(frozen=True)
class MarkLayout:
    """A mark's keypoints, and where its name lies in it."""

    #: per rendering of the mark (on a light and a dark ground; one for an opaque image), cut
    #: to its bounds and scaled to the check's long side: its keypoints' places, as shares of
    #: the mark's width and height, and their RootSIFT descriptors
    views: tuple[tuple[np.ndarray, np.ndarray], ...]
    #: the name's box in the mark, as shares of the mark's width and height
    word: Box


class LayoutCheck:
    """Counts the keypoints of a mark, beyond its name, found where a grown box puts them.

    The mark's keypoints are found once, with its long side at `long_side`; a frame is looked
    at around the grown box, scaled so that the box's long side is the same."""

    def __init__(self, tolerance: float, long_side: int, ratio: float = 0.8):
        self.tolerance = tolerance
        self.long_side = long_side
        self.ratio = ratio
        self._sift = cv2.SIFT_create()  # type: ignore[attr-defined]  # in cv2, not its stubs
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def _features(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        kps, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or len(kps) == 0:
            return np.zeros((0, 2), np.float32), None
        return np.array([k.pt for k in kps], np.float32), root_sift(desc)

    def mark(self, rgba: np.ndarray, layout: Box) -> MarkLayout | None:
        """The mark of a reference image, given where it lies around its name in units of the
        name's box (`layout`: left, top, right, bottom); None for an image without a mark or
        without keypoints."""
        mask = foreground(rgba)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        alpha = rgba[y0:y1, x0:x1, 3:].astype(np.float32) / 255.0
        grounds = (255, 0) if (alpha < 1.0).any() else (255,)
        s = self.long_side / max(x1 - x0, y1 - y0)
        size = (max(8, round((x1 - x0) * s)), max(8, round((y1 - y0) * s)))
        views = []
        for g in grounds:
            flat = (rgba[y0:y1, x0:x1, :3] * alpha + g * (1.0 - alpha)).astype(np.uint8)
            gray = cv2.resize(
                cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY),
                size,
                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
            )
            pts, desc = self._features(gray)
            if desc is not None:
                views.append((pts / np.array(size, np.float32), desc))
        if not views:
            return None
        left, top, right, bottom = layout
        w, h = max(right - left, 1e-6), max(bottom - top, 1e-6)
        word = (-left / w, -top / h, (1.0 - left) / w, (1.0 - top) / h)
        return MarkLayout(tuple(views), word)

    def points_seen(self, gray: np.ndarray, mark: MarkLayout, box: Box) -> int:
        """How many keypoints of the mark, outside its name, are matched into the grey frame
        where `box` (the mark's box the layout gives, in frame pixels, maybe beyond the
        frame) puts them; the best of the mark's renderings."""
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        if bw < 4 or bh < 4:
            return 0
        z = self.long_side / max(bw, bh)  # the frame scaled as the mark's keypoints were found
        height, width = gray.shape[:2]
        m = self.tolerance
        cx0, cy0 = max(0, int(x0 - m * bw)), max(0, int(y0 - m * bh))
        cx1, cy1 = min(width, int(np.ceil(x1 + m * bw))), min(height, int(np.ceil(y1 + m * bh)))
        if cx1 - cx0 < 8 or cy1 - cy0 < 8:
            return 0
        crop = cv2.resize(
            gray[cy0:cy1, cx0:cx1], None, fx=z, fy=z, interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR
        )
        frame_pts, frame_desc = self._features(crop)
        if frame_desc is None or len(frame_pts) < 2:
            return 0
        size = np.array([bw * z, bh * z], np.float32)
        offset = np.array([(x0 - cx0) * z, (y0 - cy0) * z], np.float32)
        reach = self.tolerance * float(np.hypot(*size))
        u0, v0, u1, v1 = mark.word
        best = 0
        for shares, desc in mark.views:
            beyond = ~((shares[:, 0] >= u0) & (shares[:, 0] <= u1) & (shares[:, 1] >= v0) & (shares[:, 1] <= v1))
            if beyond.sum() == 0:
                continue
            pairs = [p for p in self._matcher.knnMatch(desc[beyond], frame_desc, k=2) if len(p) == 2]
            good = [p[0] for p in pairs if p[0].distance < self.ratio * p[1].distance]
            if not good:
                continue
            where = shares[beyond][[g.queryIdx for g in good]] * size + offset
            found = frame_pts[[g.trainIdx for g in good]]
            best = max(best, int((np.hypot(*(found - where).T) <= reach).sum()))
        return best
