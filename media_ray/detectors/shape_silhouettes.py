"""The `shape` detector's references and silhouette arithmetic.

Each brand's reference image gives a colour mask (its pixels of the brand colour), which is
rendered at every rotation step and keystone and normalised into `Silhouettes`; brands of
nearly one colour share a `ColourMask`. The same normalisation (crop to the bounds, resize to a
small square, zero mean and unit norm) is what frame regions are compared by, in
`media_ray.detectors.shape`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from media_ray.catalog import Brand, BrandCatalog

if TYPE_CHECKING:
    from media_ray.detectors.shape import ShapeParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Silhouettes:
    """One brand's colour mask, rendered at every rotation step and normalised."""

    brand: Brand
    vectors: np.ndarray  # (R, S*S) float32, zero mean, unit norm
    aspects: np.ndarray  # (R,) width / height of the rotated mask's bounds
    fills: np.ndarray  # (R,) share of the rotated mask's bounds that the mask covers
    plain: float  # how much the mark looks like a plain shape (`plain_similarity`)
    parted: bool  # made of separate parts of some size (stripes, letters)


@dataclass(frozen=True)
class ColourMask:
    """Brands sharing one colour, and how pixels of that colour are picked."""

    lab: np.ndarray  # (3,) the colour, CIELAB
    dark: bool  # a black mark: lightness levels instead of colour distances
    shapes: list[Silhouettes]
    #: whether a mark of this colour is made of separate parts (so its regions are grouped)
    parted: bool

    def plausible(self, aspect: np.ndarray, fill: np.ndarray, max_aspect: float, max_fill: float) -> np.ndarray:
        """Which regions (by the aspect and fill of their bounds) some rotated silhouette of
        this colour could be; a cheap test before the correlation."""
        a = np.concatenate([s.aspects for s in self.shapes])
        f = np.concatenate([s.fills for s in self.shapes])
        ra = aspect[:, None] / a[None, :]
        rf = fill[:, None] / f[None, :]
        return ((ra <= max_aspect) & (ra >= 1 / max_aspect) & (rf <= max_fill) & (rf >= 1 / max_fill)).any(1)


def colour_masks(catalog: BrandCatalog, p: ShapeParams) -> list[ColourMask]:
    """The catalogue's brands that the shape detector looks for, grouped by colour."""
    masks: list[ColourMask] = []
    for brand in catalog.with_images():
        if brand.colour is None:
            log.info("brand %s has no colour: not looked for by shape", brand.id)
            continue
        lab = to_lab(np.array([[brand.colour]], np.uint8))[0, 0]
        mask = reference_mask(brand, lab, p)
        if mask is None:
            continue
        plain = plain_similarity(mask, p.template_size)
        if plain >= p.plain_reference:
            log.info("brand %s: its mark is a plain shape (%.2f): not looked for by shape", brand.id, plain)
            continue
        shapes = silhouettes(brand, mask, plain, p)
        for n, m in enumerate(masks):
            if float(np.linalg.norm(m.lab - lab)) <= p.colour_merge:
                masks[n] = ColourMask(m.lab, m.dark, m.shapes + [shapes], m.parted or shapes.parted)
                break
        else:
            dark = lab[0] < p.dark_lightness and np.hypot(lab[1], lab[2]) < p.grey_chroma
            masks.append(ColourMask(lab, bool(dark), [shapes], shapes.parted))
    log.info("shape references: %d brands in %d colour masks", sum(len(m.shapes) for m in masks), len(masks))
    return masks


def reference_mask(brand: Brand, lab: np.ndarray, p: ShapeParams) -> np.ndarray | None:
    """The reference's pixels of the brand colour (opaque ones), as a 0/1 mask."""
    rgba = brand.image
    assert rgba is not None  # a brand of `catalog.with_images()`
    h, w = rgba.shape[:2]
    s = 256 / max(h, w)
    rgba = cv2.resize(rgba, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    opaque = rgba[..., 3] >= 128
    near = np.linalg.norm(to_lab(rgba[..., :3]) - lab, axis=2) <= max(p.colour_tolerances)
    mask = (opaque & near).astype(np.uint8)
    if mask.sum() < p.min_colour_coverage * max(1, opaque.sum()):
        log.info("brand %s: its colour covers too little of its mark: not looked for by shape", brand.id)
        return None
    return mask


def silhouettes(brand: Brand, mask: np.ndarray, plain: float, p: ShapeParams) -> Silhouettes:
    """The mask seen at every rotation step, each also with the keystone of a mark turned
    away from the camera about its vertical or horizontal axis."""
    h, w = mask.shape
    side = int(np.ceil(np.hypot(h, w) * (1 + max(p.keystones, default=0.0)))) + 4
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    views = [src]
    for k in p.keystones:
        for s in (k, -k):  # one edge shorter by k, the opposite one longer by k
            views.append(
                np.array([[0, h * s / 2], [w, -h * s / 2], [w, h + h * s / 2], [0, h - h * s / 2]], np.float32)
            )
            views.append(
                np.array([[w * s / 2, 0], [w - w * s / 2, 0], [w + w * s / 2, h], [-w * s / 2, h]], np.float32)
            )
    vectors, aspects, fills = [], [], []
    for dst in views:
        dst = dst + np.array([(side - w) / 2, (side - h) / 2], np.float32)
        canvas = cv2.warpPerspective(
            mask.astype(np.float32),
            cv2.getPerspectiveTransform(src, dst),
            (side, side),
            flags=cv2.INTER_LINEAR,
        )
        for angle in np.arange(0.0, 360.0, p.rotation_step_deg):
            m = cv2.getRotationMatrix2D((side / 2, side / 2), float(angle), 1.0)
            rotated = cv2.warpAffine(canvas, m, (side, side), flags=cv2.INTER_LINEAR) >= 0.5
            crop = crop_to_bounds(rotated.astype(np.uint8))
            if crop is None:
                continue
            vec = normalised(crop, p.template_size)
            if vec is None:
                continue
            vectors.append(vec)
            aspects.append(crop.shape[1] / crop.shape[0])
            fills.append(crop.mean())
    return Silhouettes(
        brand,
        np.stack(vectors),
        np.array(aspects, np.float32),
        np.array(fills, np.float32),
        plain,
        parts(mask, p.min_part_share) > 1,
    )


def parts(mask: np.ndarray, share: float) -> int:
    """The mask's connected parts of at least `share` of its pixels."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= share * max(1, stats[1:, cv2.CC_STAT_AREA].sum())).sum())


@functools.lru_cache(maxsize=32)
def disk(radius: int) -> np.ndarray:
    """A filled disk of the radius, as a structuring element (made once a radius: OpenCV
    only reads it)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0..100) of uint8 RGB, float32."""
    return cv2.cvtColor(rgb.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def crop_to_bounds(mask: np.ndarray) -> np.ndarray | None:
    """The mask cut to the bounds of its nonzero pixels (None when it has none)."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == np.bool_ else mask)
    if w == 0 or h == 0:
        return None
    return mask[y : y + h, x : x + w]


def normalised(crop: np.ndarray, size: int) -> np.ndarray | None:
    """A 0/1 mask cropped to its bounds as a zero-mean, unit-norm vector of a size x size square."""
    v = cv2.resize(crop.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    v = cv2.GaussianBlur(v, (0, 0), size / 32.0).ravel()
    v -= v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-6 else None


def refined_similarity(template: np.ndarray, vec: np.ndarray, size: int, max_warp: float) -> float:
    """The correlation of a region's normalised silhouette with a reference's after the
    affine alignment that maximises it (ECC), or 0 when the alignment does not converge or
    needs more than `max_warp` of scale, shear or shift (a different shape, not a view)."""
    t = template.reshape(size, size).astype(np.float32)
    r = vec.reshape(size, size).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    try:
        # the stubs want an inputMask array with gaussFiltSize; OpenCV takes None (no mask)
        _, warp = cv2.findTransformECC(t, r, warp, cv2.MOTION_AFFINE, criteria, None, 1)  # type: ignore[call-overload]
    except cv2.error:  # did not converge
        return 0.0
    linear = np.linalg.svd(warp[:, :2], compute_uv=False)
    if (abs(linear - 1.0) > max_warp).any() or (np.abs(warp[:, 2]) > max_warp * size).any():
        return 0.0
    aligned = cv2.warpAffine(
        r,
        warp,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float(r.min()),
    )
    aligned = aligned.ravel() - aligned.mean()
    norm = float(np.linalg.norm(aligned))
    return float(aligned @ template) / norm if norm > 1e-6 else 0.0


def plain_similarity(crop: np.ndarray, size: int) -> float:
    """How well the mask matches a plain shape: the better of its moment ellipse and its
    convex hull, compared as the silhouettes are (1 for a mask that is itself plain)."""
    bounds = crop_to_bounds(crop)
    if bounds is None:
        return 1.0
    crop = bounds
    vec = normalised(crop, size)
    if vec is None:
        return 1.0
    plains = []
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        hull = np.zeros_like(crop)
        cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
        plains.append(hull)
    mo = cv2.moments(crop, binaryImage=True)
    if mo["m00"] > 0:
        cx, cy = mo["m10"] / mo["m00"], mo["m01"] / mo["m00"]
        cov = np.array([[mo["mu20"], mo["mu11"]], [mo["mu11"], mo["mu02"]]]) / mo["m00"]
        vals, vecs = np.linalg.eigh(cov)
        axes = 2.0 * np.sqrt(np.maximum(vals, 1e-6))  # a uniform ellipse's semi-axes
        angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
        ellipse = np.zeros_like(crop)
        cv2.ellipse(
            ellipse,
            (round(cx), round(cy)),
            (max(1, round(axes[1])), max(1, round(axes[0]))),
            angle,
            0,
            360,
            1,
            -1,
        )
        plains.append(ellipse)
    best = 0.0
    for plain in plains:
        pc = crop_to_bounds(plain)
        pv = normalised(pc, size) if pc is not None else None
        if pv is not None:
            best = max(best, float(pv @ vec))
    return best
