"""Exposure valued as sponsorship analysts value it: position, clarity, solus time, a quality
index and a media value from a rate card.

Each analysed frame in which a brand is seen is a `Sighting`: the brand's main box there (the
largest; the best-scoring detection where none has a box), its share of the screen, its
sharpness (`media_ray.sharpness`, measured where frames and detections meet) and how many
brands were on screen with it. A sighting stands for the time until the next sighting of its
appearance (the last one: until the appearance ends), so an appearance's figures are
time-weighted means of its sightings' and its seconds add up to its duration.

Components of a sighting, each in 0..1 (`QualityParams` holds every constant):

- size: `min(1, sqrt(share / full_size_share))`, the box's side against a full-size mark's;
- sharpness: `min(1, blur_effect_sharpness / full_sharpness)`;
- clarity: the weighted mean of size and sharpness (weights `size`, `sharpness`);
- position: the score of the box centre's cell on a 3 x 3 grid of the frame (thirds of its
  width and height): `centre` (the middle cell), `edge` (the middle cell of a side),
  `corner` (a corner cell);
- solus: `1 / brands on screen`, 1 when the brand is alone (its share of voice).

    quality = (w_size*size + w_sharpness*sharpness + w_position*position + w_solus*solus)
              / (w_size + w_sharpness + w_position + w_solus)

A component that cannot be measured (no box: no size nor position; a box too small, or a
bridged box, which has no pixels measured: no sharpness) counts as `unknown`.
`quality_s = sum(seconds x quality)` is the appearance's time at full quality, and

    media_value = quality_s x per_30s / 30

with `per_30s` the rate card's price of 30 s at full quality (the brand's own rate where the
card has one), rounded to cents. A brand's media value and `quality_s` are the sums of its
appearances', its quality their time-weighted mean. Without a rate the media value is null;
`quality_s` is always there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from media_ray.boxes import Box

#: how many of a box centre's coordinates lie in an outer third of the frame -> its position
POSITION_BY_OUTER_THIRDS = {0: "centre", 1: "edge", 2: "corner"}


class QualityWeights(BaseModel):
    """Weights of the quality index's components (any non-negative numbers; they are normalised)."""

    model_config = ConfigDict(extra="forbid")

    size: float = Field(0.3, ge=0, description="weight of the box's size (its share of the screen)")
    sharpness: float = Field(0.25, ge=0, description="weight of the mark's sharpness")
    position: float = Field(0.25, ge=0, description="weight of where the box centre is in the frame")
    solus: float = Field(0.2, ge=0, description="weight of being alone on screen (1 / brands on screen)")


class PositionScores(BaseModel):
    """What each place of the box centre is worth, on a 3 x 3 grid of the frame's thirds."""

    model_config = ConfigDict(extra="forbid")

    centre: float = Field(1.0, ge=0, le=1, description="the middle cell")
    edge: float = Field(0.6, ge=0, le=1, description="the middle cell of a side (top, bottom, left, right)")
    corner: float = Field(0.4, ge=0, le=1, description="a corner cell")


class QualityParams(BaseModel):
    """How a sighting of a brand is scored: the quality index's weights and constants."""

    model_config = ConfigDict(extra="forbid")

    weights: QualityWeights = Field(default_factory=QualityWeights, description="weights of the components")
    positions: PositionScores = Field(default_factory=PositionScores, description="score of each position")
    full_size_share: float = Field(
        0.05, gt=0, le=1, description="share of the screen at which a mark counts as full size (size score 1)"
    )
    full_sharpness: float = Field(
        0.8,
        gt=0,
        le=1,
        description="blur-effect sharpness at which a mark counts as fully sharp (a crisp rendered mark "
        "measures 0.8-0.87)",
    )
    unknown: float = Field(
        0.5, ge=0, le=1, description="score of a component that cannot be measured (no box, no pixels measured)"
    )
    sharpness_side: int = Field(
        64, ge=8, description="a box is measured at this short side (larger boxes are reduced to it first)"
    )
    sharpness_min_side: int = Field(8, ge=3, description="boxes with a shorter side are not measured")


class Rate(BaseModel):
    """A price: what 30 s on screen at full quality costs."""

    currency: str
    per_30s: float


class RateCard(BaseModel):
    """Prices of exposure, for the media value (price per 30 s at full quality)."""

    model_config = ConfigDict(extra="forbid")

    currency: str = Field("USD", min_length=1, max_length=8, description="currency of the prices")
    per_30s: float | None = Field(
        None, ge=0, description="price of 30 s at full quality; unset: no media value is reported"
    )
    brands: dict[str, float] = Field(
        default_factory=dict, description="price of 30 s at full quality for particular brands, by brand id"
    )

    def rate_for(self, brand: str) -> Rate | None:
        price = self.brands.get(brand, self.per_30s)
        return None if price is None else Rate(currency=self.currency, per_30s=price)


@dataclass(frozen=True)
class Sighting:
    """One brand in one analysed frame."""

    t: float
    frame: int
    score: float
    share: float | None  # union of the brand's boxes over the frame's area
    box: Box | None  # the main box
    position: str | None
    sharpness: float | None  # blur-effect sharpness of the main box, 0..1
    solus: float  # 1 / brands on screen


class BestFrame(BaseModel):
    """The sighting of an appearance with the highest quality (then score): its thumbnail."""

    t: float
    frame: int
    box: list[float] | None


def position_of(box: Box | None, width: int, height: int) -> str | None:
    """`centre`, `edge` or `corner`: the cell of the 3 x 3 grid of thirds the box centre is in."""
    if box is None or width <= 0 or height <= 0:
        return None
    cx = (box[0] + box[2]) / 2 / width
    cy = (box[1] + box[3]) / 2 / height
    outer = sum(1 for c in (cx, cy) if c < 1 / 3 or c > 2 / 3)
    return POSITION_BY_OUTER_THIRDS[outer]


@dataclass(frozen=True)
class _Scored:
    s: Sighting
    seconds: float
    size: float
    sharpness: float
    clarity: float
    position: float
    quality: float


def _score(s: Sighting, seconds: float, p: QualityParams) -> _Scored:
    w = p.weights
    size = p.unknown if s.share is None else min(1.0, math.sqrt(s.share / p.full_size_share))
    sharp = p.unknown if s.sharpness is None else min(1.0, s.sharpness / p.full_sharpness)
    pos = p.unknown if s.position is None else getattr(p.positions, s.position)
    clarity_w = w.size + w.sharpness
    clarity = (w.size * size + w.sharpness * sharp) / clarity_w if clarity_w else (size + sharp) / 2
    total = w.size + w.sharpness + w.position + w.solus
    if total:
        quality = (w.size * size + w.sharpness * sharp + w.position * pos + w.solus * s.solus) / total
    else:
        quality = (size + sharp + pos + s.solus) / 4
    return _Scored(s, seconds, size, sharp, clarity, pos, quality)


def _weighted(values: Sequence[tuple[float, float]]) -> float | None:
    seconds = sum(w for w, _ in values)
    if not values:
        return None
    if seconds <= 0:
        return sum(v for _, v in values) / len(values)
    return sum(w * v for w, v in values) / seconds


def appraise(run: Sequence[Sighting], end: float, params: QualityParams, rate: Rate | None) -> dict:
    """The valuation fields of one appearance: its sightings in time order, ending at `end`."""
    times = [s.t for s in run] + [max(end, run[-1].t)]
    scored = [_score(s, max(0.0, times[i + 1] - s.t), params) for i, s in enumerate(run)]
    by_position: dict[str, float] = {}
    for x in scored:
        if x.s.position is not None:
            by_position[x.s.position] = by_position.get(x.s.position, 0.0) + x.seconds
    best = max(scored, key=lambda x: (x.quality, x.s.score))
    quality_s = sum(x.seconds * x.quality for x in scored)
    measured_size = [(x.seconds, x.size) for x in scored if x.s.share is not None]
    measured_sharp = [(x.seconds, x.s.sharpness) for x in scored if x.s.sharpness is not None]
    return {
        "solus_s": round(sum(x.seconds for x in scored if x.s.solus >= 1.0), 3),
        "position": max(by_position, key=lambda k: by_position[k]) if by_position else None,
        "position_s": {k: round(v, 3) for k, v in sorted(by_position.items())},
        "size": _rounded(_weighted(measured_size)),
        "sharpness": _rounded(_weighted(measured_sharp)),
        "clarity": _rounded(_weighted([(x.seconds, x.clarity) for x in scored])),
        "quality": _rounded(_weighted([(x.seconds, x.quality) for x in scored])),
        "quality_s": round(quality_s, 4),
        "media_value": None if rate is None else round(quality_s * rate.per_30s / 30.0, 2),
        "best": BestFrame(
            t=round(best.s.t, 6),
            frame=best.s.frame,
            box=None if best.s.box is None else [round(v, 1) for v in best.s.box],
        ),
    }


def roll_up(appearances: Sequence, rate: Rate | None) -> dict:
    """A brand's valuation fields from its appearances' (`Appearance` values)."""
    rated = [a.media_value for a in appearances if a.media_value is not None]
    by_position: dict[str, float] = {}
    for a in appearances:
        for k, v in a.position_s.items():
            by_position[k] = by_position.get(k, 0.0) + v
    return {
        "solus_s": round(sum(a.solus_s for a in appearances), 3),
        "position_s": {k: round(v, 3) for k, v in sorted(by_position.items())},
        "quality": _rounded(_weighted([(a.end - a.start, a.quality) for a in appearances if a.quality is not None])),
        "quality_s": round(sum(a.quality_s for a in appearances), 4),
        # the appearances' values add up to the brand's
        "media_value": None if rate is None else round(sum(rated), 2),
        "rate": rate,
    }


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
