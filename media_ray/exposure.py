"""Brand exposure: per-frame detections turned into appearances and per-brand totals.

A brand is on screen in an analysed frame when any detector reports it there; that frame
stands for the interval up to the next sampling instant (1/fps). Detected frames separated by
less than `merge_gap_s` of undetected time form one appearance; appearances shorter than
`min_duration_s` are dropped. Share of screen is the union of the brand's boxes in a frame
over the frame's area (frames whose detections carry no box do not count towards it).
An appearance also ends at a shot cut (a result flagged `cut`): two shots that show a brand
are two appearances. The report counts the cuts (the first analysed frame starts the video's
first shot, and is not one).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass

from pydantic import BaseModel

from media_ray.boxes import union_area
from media_ray.catalog import BrandCatalog
from media_ray.config import ExposureConfig
from media_ray.model import FrameResult


class Appearance(BaseModel):
    start: float
    end: float
    max_score: float
    mean_share: float | None


class BrandExposure(BaseModel):
    name: str
    exposure_s: float
    appearances: list[Appearance]
    max_share: float | None
    mean_score: float


class ExposureReport(BaseModel):
    video: str
    duration_s: float | None
    fps_analysed: float
    frames_analysed: int
    brands: dict[str, BrandExposure]
    cuts: int = 0


@dataclass
class _Sighting:
    t: float
    score: float
    share: float | None


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
        self._sightings: dict[str, list[_Sighting]] = defaultdict(list)

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.last_t = max(self.last_t, result.t)
        self.first_t = result.t if self.first_t is None else min(self.first_t, result.t)
        if result.cut:
            self._cuts.append(result.t)
        by_label: dict[str, list] = defaultdict(list)
        for d in result.detections:
            by_label[d.label].append(d)
        area = result.width * result.height
        for label, dets in by_label.items():
            boxes = [d.box for d in dets if d.box is not None]
            share = union_area(boxes, result.width, result.height) / area if boxes and area else None
            self._sightings[label].append(_Sighting(result.t, max(d.score for d in dets), share))

    def report(self, video: str, duration_s: float | None = None) -> ExposureReport:
        end_of_video = duration_s if duration_s is not None else self.last_t + self.step
        self._cuts.sort()
        brands = {}
        for label in sorted(self._sightings):
            appearances = self._appearances(sorted(self._sightings[label], key=lambda s: s.t), end_of_video)
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
            )
        return ExposureReport(
            video=video,
            duration_s=duration_s,
            fps_analysed=self.fps,
            frames_analysed=self.frames,
            brands=brands,
            cuts=sum(1 for t in self._cuts if self.first_t is not None and t > self.first_t),
        )

    def _appearances(self, sightings: list[_Sighting], end_of_video: float):
        runs: list[list[_Sighting]] = []
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
                    ),
                    run,
                )
            )
        return out

    def _cut_between(self, a: float, b: float) -> bool:
        """Whether a shot starts after time a and at or before time b (cuts sorted)."""
        i = bisect_right(self._cuts, a)
        return i < len(self._cuts) and self._cuts[i] <= b
