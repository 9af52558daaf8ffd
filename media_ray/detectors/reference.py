"""The `reference` detector: each brand's reference image found in frames by local features.

Keypoints (SIFT, or ORB) of every reference image are computed once per catalogue. A frame's
keypoints are matched against all brands at once, filtered by Lowe's ratio test, and grouped
by brand; a RANSAC homography from the reference onto the frame then gives each instance,
which is reported only when the projected reference is a plausible view of a flat mark. After
an instance is accepted its matches are taken out and the search repeats, so one brand may be
found several times in a frame. Needs no model weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import cv2
import numpy as np
from pydantic import Field

from media_ray.boxes import clip_box, nms, to_source, to_working
from media_ray.catalog import Brand, BrandCatalog
from media_ray.detectors import Detector, DetectorParams, Found
from media_ray.detectors import reference_views as views

log = logging.getLogger(__name__)


class ReferenceParams(DetectorParams):
    """How references are prepared, frames matched and homographies accepted.

    Lengths in pixels are at the working resolution (frames) or the reference resolution.
    """

    seed: int = Field(
        0,
        description="seed of the matcher's randomised k-d trees, so that every process finds the same matches",
    )

    features: Literal["sift", "orb"] = Field("sift", description="keypoint detector and descriptor")
    working_long_side: int = Field(
        512,
        ge=64,
        description="frames are resized so that their long side is this for matching "
        "(never enlarged); boxes are mapped back to source pixels",
    )
    reference_long_side: int = Field(
        400, ge=64, description="reference images are resized so that their long side is this"
    )
    reference_backgrounds: tuple[int, ...] = Field(
        (255, 0, 128),
        min_length=1,
        description="grey levels a reference with transparency is rendered on; the features of "
        "all renderings are pooled, so a mark is found on light and dark scenes alike",
    )
    channels: tuple[Literal["gray", "a", "b"], ...] = Field(
        ("gray", "a"),
        min_length=1,
        description="pictures keypoints are found on, from CHANNELS: brightness, and the red-green "
        "and blue-yellow axes of CIELAB, which show a mark whose brightness is the "
        "scene's (each costs as much as the first; b found nothing more on the "
        "measured clips)",
    )
    root_sift: bool = Field(True, description="compare SIFT descriptors as RootSIFT (Hellinger distance)")
    affine_tilts: tuple[float, ...] = Field(
        (),
        description="tilts of the affine-simulated views of each reference (ASIFT; for each tilt "
        "t, views every 72/t degrees), for marks seen at a slant; none by default: a tilt of 2 "
        "found nothing more on the development photos, and costs references 5x the keypoints",
    )
    part_gap: float = Field(
        0.03,
        gt=0.0,
        le=1.0,
        description="foreground pieces of a reference closer than this share of its long side "
        "form one part (the letters of a word, the pieces of a symbol)",
    )
    part_min_inliers: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of an instance's inliers a part must hold to be in its box, so that "
        "the box covers the parts seen (the symbol alone, when only it is in the picture); 0, "
        "the default, boxes the whole mark: the parts' boxes cut marks short where inliers "
        "bunch (own-park box P 1.00 to 0.90 at 0.15) and gained nothing on the photos",
    )
    max_frame_features: int = Field(
        1000,
        ge=0,
        description="keypoints kept per frame and channel, strongest first; 0 keeps "
        "all (a cluttered scene gives thousands, and matching them all "
        "costs more than finding them)",
    )
    ratio: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Lowe's ratio (0.8, his paper's): a match counts when its distance is below "
        "this times the distance to the nearest keypoint of another brand; the homography "
        "checks, not a stricter ratio, keep the precision",
    )
    neighbours: int = Field(4, ge=1, description="nearest reference keypoints searched for the ratio test's rival")
    ransac_reproj_px: float = Field(5.0, gt=0.0, description="RANSAC reprojection threshold at the working resolution")
    ransac_method: Literal["ransac", "usac"] = Field(
        "usac",
        description="robust estimator of the homography: plain RANSAC, or USAC "
        "(OpenCV's RANSAC with SPRT model checks and local optimisation, "
        "which gives up early on match sets with few inliers)",
    )
    ransac_iters: int = Field(2000, ge=10, description="RANSAC iterations at most")
    ransac_confidence: float = Field(
        0.995, gt=0.0, lt=1.0, description="RANSAC stops early once this sure of its best model"
    )
    min_inliers: int = Field(8, ge=4, description="homography inliers an instance needs to be reported")
    min_inlier_spread: float = Field(
        0.04,
        ge=0.0,
        le=1.0,
        description="area of the inliers' convex hull in the reference over "
        "the mark's area: matches bunched on one spot are no view",
    )
    max_instances: int = Field(4, ge=1, description="instances of one brand reported per frame at most")
    min_box_side_px: float = Field(10.0, ge=1.0, description="shortest side of a projected box, working resolution")
    max_frame_fraction: float = Field(
        0.9, gt=0.0, le=1.0, description="largest share of the frame a projected mark may cover"
    )
    max_aspect_change: float = Field(
        2.5,
        ge=1.0,
        description="the projected mark's aspect ratio may differ from the reference's "
        "by this factor at most, either way",
    )
    max_perspective: float = Field(
        2.0,
        ge=1.0,
        description="largest ratio between the homography's scale at two corners of the mark (1 = no perspective)",
    )
    score_half_inliers: float = Field(
        15.0, gt=0.0, description="the inlier count that scores 0.5; score = n / (n + this)"
    )
    cross_brand_iou: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="of two boxes of different brands overlapping this much, only the higher-scoring one is kept",
    )


@dataclass(frozen=True)
class _Feature:
    """A keypoint detector and how its descriptors are compared."""

    create: Callable[[int], cv2.Feature2D]  # argument: number of features, 0 = all
    matcher: Callable[[], cv2.DescriptorMatcher]


FEATURES: dict[str, _Feature] = {
    # approximate nearest neighbours (randomised k-d trees): exact search costs as much as SIFT
    "sift": _Feature(
        create=lambda n: cv2.SIFT_create(nfeatures=n),  # type: ignore[attr-defined]  # in cv2, not its stubs
        matcher=lambda: cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64}),
    ),
    "orb": _Feature(
        create=lambda n: cv2.ORB_create(nfeatures=n or 100_000),  # type: ignore[attr-defined]  # in cv2, not its stubs
        matcher=lambda: cv2.BFMatcher(cv2.NORM_HAMMING),
    ),
}


ROBUST_METHODS: dict[str, int] = {"ransac": cv2.RANSAC, "usac": cv2.USAC_DEFAULT}


@dataclass(frozen=True)
class _Channel:
    """One single-channel picture of an RGB image that keypoints are found on."""

    convert: Callable[[np.ndarray], np.ndarray]  # uint8 RGB (H, W, 3) -> uint8 (H, W)
    #: whether a mark on different grey backgrounds looks different in it (brightness does;
    #: colour axes see every grey as the same neutral)
    sees_grey: bool


CHANNELS: dict[str, _Channel] = {
    "gray": _Channel(convert=lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), sees_grey=True),
    "a": _Channel(convert=lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 1], sees_grey=False),
    "b": _Channel(convert=lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 2], sees_grey=False),
}


@dataclass(frozen=True)
class _Reference:
    """One reference image's pooled keypoints (a brand may have several images)."""

    brand: Brand
    brand_index: int  # the same for every image of one brand
    points: np.ndarray  # (K, 2) float32, reference pixels
    corners: np.ndarray  # (4, 1, 2) float32: the mark's bounds in reference pixels, clockwise
    area: float  # of the mark's bounds, reference pixels
    parts: tuple[views.Rect, ...]  # groups of the mark's pixels, reference pixels


@dataclass(frozen=True)
class _Instance:
    brand: Brand
    inliers: int
    box: tuple[float, float, float, float]  # working resolution


class ReferenceDetector(Detector):
    """Finds brands by matching their reference images' keypoints into each frame.

    Score of a detection: n / (n + `score_half_inliers`) for n homography inliers, so it rises
    with the evidence from 0 towards 1 (10 inliers give 0.4 with the default, 45 give 0.75).
    Box: the axis-aligned bounds of the projected reference corners, clipped to the frame.
    """

    name = "reference"
    Params = ReferenceParams
    params: ReferenceParams

    def __init__(self, catalog: BrandCatalog, params: ReferenceParams | None = None):
        super().__init__(catalog, params)
        feature = FEATURES[self.params.features]
        self._frame_features = feature.create(self.params.max_frame_features)
        self._reference_features = feature.create(0)
        self._new_matcher = feature.matcher
        self._build(catalog)

    # references -----------------------------------------------------------------------------

    def _build(self, catalog: BrandCatalog) -> None:
        """Compute every reference's features and one matcher over them all."""
        p = self.params
        self._refs: list[_Reference] = []
        descriptors, owner = [], []
        for b, brand in enumerate(catalog.with_images()):
            for rgba in brand.images:
                ref, desc = self._describe(brand, b, rgba)
                if len(desc) < p.min_inliers:
                    log.warning("brand %s: a reference gives %d keypoints, too few to be found", brand.id, len(desc))
                    continue
                owner.append(np.full(len(desc), len(self._refs), dtype=np.int32))
                descriptors.append(desc)
                self._refs.append(ref)
        skipped = len(catalog) - len(catalog.with_images())
        if skipped:
            log.info("%d brands have no reference image and are not looked for", skipped)
        self._owner = np.concatenate(owner) if owner else np.zeros(0, np.int32)
        self._owner_brand = np.array([r.brand_index for r in self._refs], np.int32)[self._owner]
        self._ref_points = (
            np.concatenate([r.points for r in self._refs]) if self._refs else np.zeros((0, 2), np.float32)
        )
        self._matcher = self._new_matcher()
        if descriptors:
            self._matcher.add([np.concatenate(descriptors)])
            # the k-d trees are randomised from OpenCV's RNG: seeded, every process (a Ray
            # replica, this one) builds the same index and finds the same matches
            cv2.setRNGSeed(p.seed)
            self._matcher.train()
        log.info(
            "reference features: %d brands, %d images, %d keypoints (%s)",
            len({r.brand.id for r in self._refs}),
            len(self._refs),
            len(self._owner),
            p.features,
        )

    def _keypoints(self, detector: cv2.Feature2D, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kps, desc = detector.detectAndCompute(gray, None)
        if desc is None or not kps:  # a blank picture: None (OpenCV 4) or an empty array (5)
            return np.zeros((0, 2), np.float32), np.zeros((0, 0), np.float32)
        if self.params.root_sift and self.params.features == "sift":
            desc = views.root_sift(desc)
        return np.array([k.pt for k in kps], np.float32), desc

    def _describe(self, brand: Brand, brand_index: int, rgba: np.ndarray) -> tuple[_Reference, np.ndarray]:
        p = self.params
        h, w = rgba.shape[:2]
        s = p.reference_long_side / max(h, w)
        rgba = cv2.resize(
            rgba,
            (max(1, round(w * s)), max(1, round(h * s))),
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
        )
        d = views.describe(
            rgba,
            lambda gray: self._keypoints(self._reference_features, gray),
            [(CHANNELS[c].convert, CHANNELS[c].sees_grey) for c in p.channels],
            p.reference_backgrounds,
            p.affine_tilts,
            # a margin of background lets the keypoints on the mark's outline be detected
            max(8, p.reference_long_side // 10),
            p.part_gap,
            views.PART_MIN_SHARE,
        )
        x0, y0, x1, y1 = d.bounds
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32).reshape(4, 1, 2)
        ref = _Reference(brand, brand_index, d.points, corners, float((x1 - x0) * (y1 - y0)), d.parts)
        return ref, d.descriptors

    # frames ---------------------------------------------------------------------------------

    def detect_frame(self, rgb: np.ndarray) -> list[Found]:
        if not self._refs:
            return []
        found, scale = self._find(rgb)
        return [Found(inst.brand.id, self._score(inst.inliers), to_source(inst.box, scale)) for inst in found]

    def _score(self, inliers: int) -> float:
        return inliers / (inliers + self.params.score_half_inliers)

    def _find(self, rgb: np.ndarray) -> tuple[list[_Instance], float]:
        """The instances in one frame, boxes at the working resolution, and that scale."""
        p = self.params
        rgb, scale = to_working(rgb, p.working_long_side)
        points, descs = [], []
        for name in p.channels:
            pts, desc = self._keypoints(self._frame_features, CHANNELS[name].convert(rgb))
            if len(pts):
                points.append(pts)
                descs.append(desc)
        if sum(len(d) for d in descs) < p.min_inliers:
            return [], scale
        frame_pts, desc = np.concatenate(points), np.concatenate(descs)
        shape = rgb.shape[:2]
        query, train = self._ratio_matches(desc)
        found: list[_Instance] = []
        owners = self._owner[train]
        for r in np.unique(owners):
            sel = owners == r
            if sel.sum() >= p.min_inliers:
                found += self._instances(self._refs[r], self._ref_points[train[sel]], frame_pts[query[sel]], shape)
        # strongest first, without those overlapping a stronger one of another brand
        keep = nms(
            [i.box for i in found],
            [i.inliers for i in found],
            [i.brand.id for i in found],
            iou=p.cross_brand_iou,
            same_label=False,
        )
        return [found[i] for i in keep], scale

    def _ratio_matches(self, desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame keypoint and reference keypoint indices of the matches passing the ratio test.

        Lowe's test is taken between brands: a frame keypoint's nearest reference keypoint
        counts when it is nearer than `ratio` times the nearest keypoint of another brand
        among the `neighbours` nearest (the farthest of them when all are of one brand). The
        rival is not the same brand's second best, because marks repeat their own shapes
        (stripes, arches, letters) and every reference is rendered several times: those are
        left to RANSAC.
        """
        p = self.params
        k = min(p.neighbours, len(self._owner))
        knn = [m for m in self._matcher.knnMatch(desc, k=k) if len(m) == k]
        if not knn:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        query = np.array([m[0].queryIdx for m in knn], dtype=np.int64)
        train = np.array([[n.trainIdx for n in m] for m in knn], dtype=np.int64)
        dist = np.array([[n.distance for n in m] for m in knn], dtype=np.float32)
        other = self._owner_brand[train] != self._owner_brand[train[:, :1]]
        rival = np.where(other.any(1), dist[np.arange(len(dist)), other.argmax(1)], dist[:, -1])
        ok = dist[:, 0] < p.ratio * rival if k > 1 else np.ones(len(query), bool)
        return query[ok], train[ok, 0]

    def _instances(self, ref: _Reference, src: np.ndarray, dst: np.ndarray, shape: tuple[int, int]) -> list[_Instance]:
        """Every plausible instance of one brand among its matches, strongest first."""
        p = self.params
        found: list[_Instance] = []
        # a rejected consensus is taken out too, so a spurious one can't hide a real instance
        for _ in range(2 * p.max_instances):
            if len(found) == p.max_instances or len(src) < p.min_inliers:
                break
            H, mask = cv2.findHomography(
                src,
                dst,
                ROBUST_METHODS[p.ransac_method],
                p.ransac_reproj_px,
                maxIters=p.ransac_iters,
                confidence=p.ransac_confidence,
            )
            if H is None or mask is None:
                break
            inl = mask.ravel().astype(bool)
            n = int(inl.sum())
            if n < p.min_inliers:
                break
            quad = cv2.perspectiveTransform(ref.corners, H).reshape(4, 2) if views.finite(H) else None
            reason = self._implausible(ref, H, quad, src[inl], shape)
            keep = ~inl
            if reason is None:
                assert quad is not None  # a None quad is implausible
                box = clip_box(
                    views.seen_parts_box(ref.parts, ref.corners, H, src[inl], p.part_min_inliers), shape[1], shape[0]
                )
                found.append(_Instance(ref.brand, n, box))
                # matches inside an accepted mark belong to it, inliers or not
                keep &= ~views.inside(ref.corners, H, dst)
            else:
                log.debug("brand %s: %d inliers rejected: %s", ref.brand.id, n, reason)
            src, dst = src[keep], dst[keep]
        return found

    def _implausible(
        self,
        ref: _Reference,
        H: np.ndarray,
        quad: np.ndarray | None,
        inlier_src: np.ndarray,
        shape: tuple[int, int],
    ) -> str | None:
        """Why a homography is no view of the flat mark, or None when it is plausible."""
        p = self.params
        if quad is None or not np.isfinite(quad).all():
            return "degenerate homography"
        # the homogeneous scale at the corners: positive for a view in front of the camera,
        # and its spread measures perspective
        c = ref.corners.reshape(4, 2)
        wz = H[2, 0] * c[:, 0] + H[2, 1] * c[:, 1] + H[2, 2]
        if not ((wz > 0).all() or (wz < 0).all()):
            return "mark crosses the horizon"
        wz = np.abs(wz)
        if wz.max() > p.max_perspective * wz.min():
            return "too much perspective"
        if not views.convex(quad):
            return "not a convex quadrilateral"
        x0, y0 = quad.min(0)
        x1, y1 = quad.max(0)
        if min(x1 - x0, y1 - y0) < p.min_box_side_px:
            return "too small"
        area = views.polygon_area(quad)
        if area > p.max_frame_fraction * shape[0] * shape[1]:
            return "too large"
        ref_aspect = (c[1, 0] - c[0, 0]) / (c[3, 1] - c[0, 1])
        top, right, bottom, left = (np.linalg.norm(quad[(i + 1) % 4] - quad[i]) for i in range(4))
        aspect = (top + bottom) / cast(float, max(left + right, 1e-6))  # a numpy float or 1e-6
        change = aspect / ref_aspect
        if not (1.0 / p.max_aspect_change <= change <= p.max_aspect_change):
            return "aspect ratio changed"
        hull = cv2.convexHull(inlier_src.reshape(-1, 1, 2))
        if cv2.contourArea(hull) < p.min_inlier_spread * ref.area:
            return "inliers bunched together"
        return None
