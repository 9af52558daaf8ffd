"""Brand exposure: per-frame detections turned into appearances and per-brand totals.

A brand is on screen in an analysed frame when any detector reports it there; that frame
stands for the interval up to the next sampling instant (1/fps). Detected frames separated by
less than `merge_gap_s` of undetected time form one appearance; appearances shorter than
`min_duration_s` are dropped. Share of screen is the union of the brand's boxes in a frame
over the frame's area (frames whose detections carry no box do not count towards it).
An appearance also ends at a shot cut (a result flagged `cut`): two shots that show a brand
are two appearances. The report counts the cuts (the first analysed frame starts the video's
first shot, and is not one).

Each appearance and each brand is also valued as sponsorship analysts value exposure
(`media_ray.valuation`: position, size and sharpness, solus time, a quality index in 0..1 and a
media value from `exposure.rate_card`). These fields are added to the report's; none of the
fields above changes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict

from pydantic import BaseModel, Field

from media_ray.boxes import union_area
from media_ray.catalog import BrandCatalog
from media_ray.config import ExposureConfig
from media_ray.model import Detection, FrameResult
from media_ray.valuation import BestFrame, Rate, Sighting, appraise, position_of, roll_up


class Appearance(BaseModel):
    start: float
    end: float
    max_score: float
    mean_share: float | None
    #: seconds the brand was the only brand on screen
    solus_s: float = 0.0
    #: where the box centre was longest: `centre`, `edge` or `corner` (None: no boxes)
    position: str | None = None
    #: seconds in each position
    position_s: dict[str, float] = Field(default_factory=dict)
    #: size score (from the share of screen), sharpness and clarity, time-weighted, 0..1
    size: float | None = None
    sharpness: float | None = None
    clarity: float | None = None
    #: the quality index, time-weighted over the appearance, 0..1
    quality: float | None = None
    #: seconds at full quality: the sum of seconds x quality
    quality_s: float = 0.0
    #: quality_s x the rate card's price per 30 s / 30; None without a rate
    media_value: float | None = None
    #: the sighting of highest quality: the frame its thumbnail shows
    best: BestFrame | None = None


class BrandExposure(BaseModel):
    name: str
    exposure_s: float
    appearances: list[Appearance]
    max_share: float | None
    mean_score: float
    solus_s: float = 0.0
    position_s: dict[str, float] = Field(default_factory=dict)
    quality: float | None = None
    quality_s: float = 0.0
    media_value: float | None = None
    #: the rate card's price the media value is reckoned at
    rate: Rate | None = None


class ExposureReport(BaseModel):
    video: str
    duration_s: float | None
    fps_analysed: float
    frames_analysed: int
    brands: dict[str, BrandExposure]
    cuts: int = 0


class ExposureAggregator:
    """Collects frame results (in any order) and reports exposure so far."""

    def __init__(self, catalog: BrandCatalog | None, fps: float, config: ExposureConfig | None = None):
        self.names = {b.id: b.name for b in catalog} if catalog is not None else {}
        self.step = 1.0 / fps
        self.fps = fps
        self.config = config or ExposureConfig()
        self.frames = 0
        self.last_t = 0.0
        self.first_t: float | None = None
        #: times of the frames flagged as starting a shot, sorted when reported
        self._cuts: list[float] = []
        self._sightings: dict[str, list[Sighting]] = defaultdict(list)

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.last_t = max(self.last_t, result.t)
        self.first_t = result.t if self.first_t is None else min(self.first_t, result.t)
        if result.cut:
            self._cuts.append(result.t)
        by_label: dict[str, list[Detection]] = defaultdict(list)
        for d in result.detections:
            by_label[d.label].append(d)
        area = result.width * result.height
        for label, dets in by_label.items():
            boxes = [d.box for d in dets if d.box is not None]
            share = union_area(boxes, result.width, result.height) / area if boxes and area else None
            main = _main_detection(dets)
            self._sightings[label].append(
                Sighting(
                    t=result.t,
                    frame=result.frame,
                    score=max(d.score for d in dets),
                    share=share,
                    box=main.box,
                    position=position_of(main.box, result.width, result.height),
                    sharpness=main.sharpness,
                    solus=1.0 / len(by_label),
                )
            )

    def report(self, video: str, duration_s: float | None = None) -> ExposureReport:
        end_of_video = duration_s if duration_s is not None else self.last_t + self.step
        self._cuts.sort()
        brands = {}
        for label in sorted(self._sightings):
            rate = self.config.rate_card.rate_for(label)
            appearances = self._appearances(sorted(self._sightings[label], key=lambda s: s.t), end_of_video, rate)
            if not appearances:
                continue
            seen = [s for a in appearances for s in a[1]]
            shares = [s.share for s in seen if s.share is not None]
            brands[label] = BrandExposure(
                name=self.names.get(label, label),
                exposure_s=round(sum(a[0].end - a[0].start for a in appearances), 3),
                appearances=[a[0] for a in appearances],
                max_share=round(max(shares), 5) if shares else None,
                mean_score=round(sum(s.score for s in seen) / len(seen), 4),
                **roll_up([a[0] for a in appearances], rate),
            )
        return ExposureReport(
            video=video,
            duration_s=duration_s,
            fps_analysed=self.fps,
            frames_analysed=self.frames,
            brands=brands,
            cuts=sum(1 for t in self._cuts if self.first_t is not None and t > self.first_t),
        )

    def _appearances(self, sightings: list[Sighting], end_of_video: float, rate: Rate | None):
        runs: list[list[Sighting]] = []
        for s in sightings:
            # neighbouring samples always join (sampling instants jitter by a source frame)
            last = runs[-1][-1] if runs else None
            if (
                last is not None
                and s.t - (last.t + self.step) < self.config.merge_gap_s + self.step / 2
                and not self._cut_between(last.t, s.t)
            ):
                runs[-1].append(s)
            else:
                runs.append([s])
        out = []
        for run in runs:
            start, end = run[0].t, min(run[-1].t + self.step, max(end_of_video, run[-1].t))
            i = bisect_right(self._cuts, run[-1].t)
            if i < len(self._cuts):  # a shot that ends sooner ends the appearance with it
                end = min(end, self._cuts[i])
            if end - start < self.config.min_duration_s:
                continue
            shares = [s.share for s in run if s.share is not None]
            out.append(
                (
                    Appearance(
                        start=round(start, 3),
                        end=round(end, 3),
                        max_score=round(max(s.score for s in run), 4),
                        mean_share=round(sum(shares) / len(shares), 5) if shares else None,
                        **appraise(run, end, self.config.quality, rate),
                    ),
                    run,
                )
            )
        return out

    def _cut_between(self, a: float, b: float) -> bool:
        """Whether a shot starts after time a and at or before time b (cuts sorted)."""
        i = bisect_right(self._cuts, a)
        return i < len(self._cuts) and self._cuts[i] <= b


def _main_detection(dets: list[Detection]) -> Detection:
    """The detection a brand's position and sharpness in a frame are taken from: its largest
    box, or its best score where none has a box."""
    boxed = [d for d in dets if d.box is not None]
    if not boxed:
        return max(dets, key=lambda d: d.score)
    return max(boxed, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))  # type: ignore[index]
