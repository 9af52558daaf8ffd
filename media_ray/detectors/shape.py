"""The `shape` detector: flat, single-colour marks found by their colour and silhouette.

Keypoint matchers find little on a swoosh or three black stripes: a flat mark has no texture,
only an outline. This detector looks for each brand's main colour (the catalogue's `colour`)
and compares the silhouettes of the regions of that colour with the brand's own:

1. proposals: the frame, at a working resolution, in CIELAB; for each distinct brand colour
   the pixels within a few colour distances of it (for black and near-black marks: the pixels
   darker than a few lightness levels and nearly grey for their lightness), as masks;
2. regions: connected components of each mask (searched within the bounds of its pixels), and
   of the mask closed at a few radii so that a mark made of separate parts (stripes, letters)
   is also seen whole;
3. shape: each region's mask, cropped to its bounds and resized to a small square, is compared
   by normalised correlation with the brand's colour mask rendered at every rotation step and
   at a few keystones (cropped and resized the same way, so scale and aspect are normalised
   away);
4. refinement: the regions that correlate fairly well but not well enough, best first and a
   few per frame, have their alignment with their closest rendering refined (ECC, a small
   affine warp) and are compared again, against a higher bar: views between the rendered ones;
5. rejections: the mark must contrast with a thin ring around it (a region cut out of a larger
   area of nearly the same colour is no mark), and it must match its logo clearly better than
   a plain shape (its own moment ellipse or convex hull) does.

A brand whose reference is itself a plain shape (a disk, a square) or who has no colour is
not looked for: any blob of its colour would pass. Needs no model weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import cv2
import numpy as np
from pydantic import Field

from media_ray.boxes import nms, to_source, to_working
from media_ray.catalog import Brand, BrandCatalog
from media_ray.detectors import Detector, DetectorParams, Found
from media_ray.detectors.shape_silhouettes import (
    ColourMask,
    Silhouettes,
    colour_masks,
    crop_to_bounds,
    disk,
    normalised,
    plain_similarity,
    refined_similarity,
    to_lab,
)

log = logging.getLogger(__name__)


class ShapeParams(DetectorParams):
    """Lengths in pixels are at the working resolution; colour distances are CIE76 ΔE."""

    working_long_side: int = Field(
        640,
        ge=64,
        description="frames are resized so that their long side is this (never "
        "enlarged); boxes are mapped back to source pixels",
    )
    colour_tolerances: tuple[float, ...] = Field(
        (14.0, 26.0),
        min_length=1,
        description="colour distances from a brand colour within which a pixel may be part of its mark",
    )
    dark_lightness: float = Field(
        25.0,
        gt=0.0,
        le=100.0,
        description="a brand colour darker than this (L*) and nearly grey is a black mark, found by lightness levels",
    )
    dark_levels: tuple[float, ...] = Field(
        (4.0, 10.0, 20.0),
        min_length=1,
        description="L* below which a pixel may be part of a "
        "black mark (the lowest keeps a pure black "
        "mark apart from the shadows it lies on)",
    )
    dark_chroma_per_lightness: float = Field(
        1.0,
        ge=0.0,
        description="a pixel of a black mark is nearly grey for its lightness: its "
        "chroma is below this times its L* plus 2 (and below "
        "grey_chroma)",
    )
    grey_chroma: float = Field(14.0, gt=0.0, description="chroma below which a pixel (or brand colour) counts as grey")
    colour_merge: float = Field(8.0, ge=0.0, description="brand colours closer than this share one mask")
    open_radii: tuple[int, ...] = Field(
        (0, 3),
        min_length=1,
        description="radii a mask is opened with, so that a mark touching "
        "an area of its own colour through thin parts is cut "
        "free of it",
    )
    close_radii: tuple[int, ...] = Field(
        (0, 3, 8),
        min_length=1,
        description="radii a mask is closed with, so that separate "
        "parts of one mark are also taken together (for "
        "marks of several parts; others use the first)",
    )
    keystones: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], ...] = Field(
        (0.2, 0.4),
        description="the references are also seen turned away from the camera: for "
        "each value, one edge this much shorter, the opposite one this "
        "much longer (empty: rotations only)",
    )
    template_size: int = Field(32, ge=8, le=128, description="side of the square silhouettes are compared at")
    rotation_step_deg: float = Field(
        10.0, gt=0.0, le=90.0, description="step, in degrees, between the rotations of the references tried"
    )
    min_side_px: float = Field(
        12.0, ge=2.0, description="regions whose bounds have a side shorter than this are not compared"
    )
    min_area_px: int = Field(50, ge=1, description="regions of fewer pixels than this are not compared")
    max_frame_fraction: float = Field(
        0.6, gt=0.0, le=1.0, description="largest share of the frame a region's bounds may cover"
    )
    max_aspect_change: float = Field(
        1.6,
        ge=1.0,
        description="a region's aspect ratio may differ from the rotated "
        "reference's by this factor at most, either way",
    )
    max_fill_change: float = Field(
        1.6,
        ge=1.0,
        description="a region's share of its bounds may differ from the rotated "
        "reference's by this factor at most, either way",
    )
    max_regions: int = Field(120, ge=1, description="regions compared per mask at most, largest first")
    min_similarity: float = Field(
        0.82, gt=0.0, le=1.0, description="correlation with the brand's silhouette a region needs"
    )
    refine_floor: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="a region correlating at least this well (but below "
        "min_similarity) has its alignment with the best "
        "silhouettes refined (ECC, affine) and is compared again: "
        "views between the rotation and keystone steps",
    )
    refine_candidates: int = Field(
        1, ge=0, description="silhouettes (best first) a region's alignment is refined against"
    )
    max_refinements: int = Field(
        6,
        ge=0,
        description="regions whose alignment is refined per frame at most, those correlating best first",
    )
    refine_min_side_px: float = Field(
        24.0,
        ge=2.0,
        description="shortest side of a region whose alignment is refined (a small blob bends to too many shapes)",
    )
    refined_margin: float = Field(
        0.06,
        ge=0.0,
        description="a refined alignment must correlate this much better than "
        "min_similarity (it has six more degrees of freedom)",
    )
    refined_plain_gap: float = Field(
        0.05,
        ge=0.0,
        description="and this much better than the region matches a plain shape "
        "(a blob bent to fit a compact mark looks as much like its "
        "own hull)",
    )
    max_refine_warp: float = Field(
        0.25,
        ge=0.0,
        lt=1.0,
        description="a refined alignment may scale, shear or shift the normalised silhouette by this much at most",
    )
    plain_margin: float = Field(
        0.10,
        ge=0.0,
        description="how much more a region may look like a plain shape (its own "
        "moment ellipse or convex hull) than the brand's mark does",
    )
    plain_floor: float = Field(
        0.75, ge=0.0, le=1.0, description="a region may always look this much like a plain shape"
    )
    plain_reference: float = Field(
        0.90,
        gt=0.0,
        le=1.0,
        description="a reference that matches its own plain shape this well is not looked for",
    )
    ring_px: int = Field(3, ge=1, description="width of the ring around a region that its colour is compared with")
    min_ring_contrast: float = Field(
        20.0,
        ge=0.0,
        description="colour distance a region's mean colour must have from its "
        "ring's mean: a region cut out of a larger area of nearly its "
        "colour is no mark",
    )
    nms_iou: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="of two marks (of any brands) whose boxes overlap this "
        "much (intersection over union), only the better is kept",
    )
    nms_inside: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="of two marks (of any brands) one of whose boxes lies "
        "this much inside the other (intersection over the "
        "smaller box), only the better is kept: a part of a mark "
        "(one stripe, the tail of a swoosh) may look like a mark",
    )
    min_colour_coverage: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="a brand is looked for only when its colour covers at "
        "least this share of its reference's opaque pixels",
    )
    min_part_share: float = Field(
        0.02,
        gt=0.0,
        le=1.0,
        description="a reference's connected part of at least this share of "
        "its mark counts as a part: a mark of several (stripes, "
        "letters) also has its regions taken together "
        "(close_radii)",
    )


@dataclass(frozen=True)
class _Found:
    brand: Brand
    similarity: float
    box: tuple[float, float, float, float]  # working resolution


@dataclass(frozen=True)
class _Near:
    """A region that correlates fairly well with some brands' silhouettes, not well enough."""

    similarity: float  # the best correlation before refinement
    vector: np.ndarray  # the region's normalised silhouette
    crop: np.ndarray  # the region's mask, cropped to its bounds
    silhouettes: list[tuple[float, Silhouettes, np.ndarray]]  # (correlation, brand, vector)
    box: tuple[float, float, float, float]  # working resolution


class ShapeDetector(Detector):
    """Finds flat single-colour marks by colour proposals and silhouette correlation.

    Score of a detection: the silhouette correlation (0.8..1 with the defaults). Box: the
    bounds of the region, mapped to source pixels.
    """

    name = "shape"
    Params = ShapeParams
    params: ShapeParams

    def __init__(self, catalog: BrandCatalog, params: ShapeParams | None = None):
        super().__init__(catalog, params)
        self._build(catalog)

    def _build(self, catalog: BrandCatalog) -> None:
        self._masks: list[ColourMask] = colour_masks(catalog, self.params)

    # frames ---------------------------------------------------------------------------------

    def detect_frame(self, rgb: np.ndarray) -> list[Found]:
        if not self._masks:
            return []
        found, scale = self._find(rgb)
        return [Found(f.brand.id, f.similarity, to_source(f.box, scale)) for f in found]

    def _find(self, rgb: np.ndarray) -> tuple[list[_Found], float]:
        p = self.params
        rgb, scale = to_working(rgb, p.working_long_side)
        lab = to_lab(rgb)
        L, A, B = cv2.split(lab)
        grey = None
        found: list[_Found] = []
        near: list[_Near] = []
        margin = max(p.close_radii) + 1
        for m in self._masks:
            if m.dark:
                if grey is None:
                    # nearly grey for its lightness: a black mark's colour cast (grading,
                    # compression) shrinks with its lightness, a dark coloured shadow's does not
                    limit = np.minimum(p.grey_chroma, p.dark_chroma_per_lightness * L + 2.0)
                    grey = (A * A + B * B) < limit * limit
                masks = [(L < level) & grey for level in p.dark_levels]
            else:
                d2 = (L - m.lab[0]) ** 2 + (A - m.lab[1]) ** 2 + (B - m.lab[2]) ** 2
                masks = [d2 < tol * tol for tol in p.colour_tolerances]
            for mask in masks:
                mask = mask.astype(np.uint8)
                if cv2.countNonZero(mask) < p.min_area_px:
                    continue
                # the mask's pixels' bounds, with a margin that keeps closing exact: the
                # region search costs what this area does, not the frame's
                x, y, w, h = cv2.boundingRect(mask)
                x0, y0 = max(0, x - margin), max(0, y - margin)
                x1, y1 = min(mask.shape[1], x + w + margin), min(mask.shape[0], y + h + margin)
                mask = mask[y0:y1, x0:x1]
                for radius in p.open_radii:
                    opened = mask if radius == 0 else cv2.morphologyEx(mask, cv2.MORPH_OPEN, disk(radius))
                    self._regions(opened, (x0, y0), m, lab, found, near)
        # the near misses most like a mark, while the frame's refinements last
        for candidate in sorted(near, key=lambda n: -n.similarity)[: p.max_refinements]:
            hit = self._refine(candidate)
            if hit is not None:
                found.append(hit)
        # best first, without those overlapping a better one (of any brand) or lying inside it
        keep = nms([f.box for f in found], [f.similarity for f in found], iou=p.nms_iou, inside=p.nms_inside)
        return [found[i] for i in keep], scale

    def _regions(
        self,
        mask: np.ndarray,
        offset: tuple[int, int],
        m: ColourMask,
        lab: np.ndarray,
        found: list[_Found],
        near: list[_Near],
    ) -> None:
        """The marks among the regions of one mask (a window of the frame at `offset`), at
        every closing radius, added to `found`; the regions that are nearly a mark, to `near`."""
        p = self.params
        H, W = lab.shape[:2]
        ox, oy = offset
        seen: set[tuple[int, ...]] = set()
        for radius in p.close_radii if m.parted else p.close_radii[:1]:
            grouped = mask if radius == 0 else cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk(radius))
            # 16-bit labels where a window cannot hold more components (one in four pixels at
            # most, 8-connected): the labelling writes half the memory, the same labels
            ltype = cv2.CV_16U if grouped.size < 4 * 65535 else cv2.CV_32S
            n, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8, ltype=ltype)
            x, y, bw, bh, area = (stats[1:, i] for i in range(5))
            # a region cut by the frame's edge shows no whole silhouette to compare
            ok = (
                (np.minimum(bw, bh) >= p.min_side_px)
                & (area >= p.min_area_px)
                & (bw * bh <= p.max_frame_fraction * W * H)
                & (x + ox > 0)
                & (y + oy > 0)
                & (x + ox + bw < W)
                & (y + oy + bh < H)
            )
            ok[ok] = m.plausible(bw[ok] / bh[ok], area[ok] / (bw[ok] * bh[ok]), p.max_aspect_change, p.max_fill_change)
            for i in np.flatnonzero(ok)[np.argsort(-area[ok])][: p.max_regions] + 1:
                key = tuple(stats[i])
                if key in seen:  # the same region at another radius
                    continue
                seen.add(key)
                x0, y0 = stats[i, 0], stats[i, 1]
                x1, y1 = x0 + stats[i, 2], y0 + stats[i, 3]
                region = ((labels[y0:y1, x0:x1] == i) & (mask[y0:y1, x0:x1] > 0)).astype(np.uint8)
                x0, y0, x1, y1 = x0 + ox, y0 + oy, x1 + ox, y1 + oy
                box = (float(x0), float(y0), float(x1), float(y1))
                hit = self._match(region, m, box)
                if hit is None:
                    continue
                if not self._contrasts(lab, region, (x0, y0, x1, y1)):
                    log.debug("region at %d,%d matches (%.2f) but does not stand out", x0, y0, hit.similarity)
                    continue
                if isinstance(hit, _Found):
                    found.append(hit)
                elif min(x1 - x0, y1 - y0) >= p.refine_min_side_px:
                    near.append(hit)

    def _match(
        self, region: np.ndarray, m: ColourMask, box: tuple[float, float, float, float]
    ) -> _Found | _Near | None:
        """The brand whose silhouette the region matches; or, when it correlates fairly
        well with some silhouettes (`refine_floor`) but not well enough, those silhouettes;
        or None."""
        p = self.params
        crop = crop_to_bounds(region)
        if crop is None:
            return None
        vec = normalised(crop, p.template_size)
        if vec is None:
            return None
        aspect = crop.shape[1] / crop.shape[0]
        best, best_sim = None, p.min_similarity
        close: list[tuple[float, Silhouettes, np.ndarray]] = []
        for s in m.shapes:
            change = aspect / s.aspects
            ok = (change <= p.max_aspect_change) & (change >= 1.0 / p.max_aspect_change)
            if not ok.any():
                continue
            # every rendering correlated, those of an implausible aspect left out after: a
            # matrix-vector product costs less than copying the rows it would skip
            sims = np.where(ok, s.vectors @ vec, -np.inf)
            top = int(sims.argmax())
            if sims[top] >= best_sim:
                best, best_sim = s, float(sims[top])
            best_first = [top] if p.refine_candidates == 1 else np.argsort(-sims)[: p.refine_candidates]
            close += [(float(sims[i]), s, s.vectors[i]) for i in best_first if sims[i] >= p.refine_floor]
        if best is not None:
            # a blob that happens to correlate with a mark looks far plainer than the mark
            if plain_similarity(crop, p.template_size) > max(best.plain + p.plain_margin, p.plain_floor):
                return None
            return _Found(best.brand, best_sim, box)
        if not close:
            return None
        close.sort(key=lambda c: -c[0])
        return _Near(close[0][0], vec, crop, close[: p.refine_candidates], box)

    def _refine(self, near: _Near) -> _Found | None:
        """A near miss seen again after refining its alignment with each of its closest
        silhouettes: a view between the rendered rotations and keystones."""
        p = self.params
        best, best_sim = None, p.min_similarity + p.refined_margin
        plain = plain_similarity(near.crop, p.template_size)
        for _, s, template in near.silhouettes:
            sim = refined_similarity(template, near.vector, p.template_size, p.max_refine_warp)
            if (
                sim >= best_sim
                and sim >= plain + p.refined_plain_gap
                and plain <= max(s.plain + p.plain_margin, p.plain_floor)
            ):
                best, best_sim = s, sim
        return _Found(best.brand, best_sim, near.box) if best is not None else None

    def _contrasts(self, lab: np.ndarray, region: np.ndarray, box: tuple[int, int, int, int]) -> bool:
        """Whether the region's colour differs from that of a thin ring around it."""
        p = self.params
        H, W = lab.shape[:2]
        r = p.ring_px
        x0, y0, x1, y1 = box
        X0, Y0, X1, Y1 = max(0, x0 - 2 * r), max(0, y0 - 2 * r), min(W, x1 + 2 * r), min(H, y1 + 2 * r)
        inside = np.zeros((Y1 - Y0, X1 - X0), np.uint8)
        inside[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] = region
        kernel = disk(r)
        near = cv2.dilate(inside, kernel)
        ring = (cv2.dilate(near, kernel) > 0) & (near == 0)
        if not ring.any():
            return True
        patch = lab[Y0:Y1, X0:X1]
        mean_in = cv2.mean(patch, mask=inside)[:3]
        mean_ring = cv2.mean(patch, mask=ring.view(np.uint8))[:3]
        contrast = np.linalg.norm(np.subtract(mean_in, mean_ring))
        return bool(contrast >= p.min_ring_contrast)
