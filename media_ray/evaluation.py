"""`media-ray eval`: detectors run over clips with ground truth, and scored.

A clip is `NAME.mp4` (any video suffix) with `NAME.gt.json` beside it, in the format that
`make_clip.py` writes: per source frame, every logo's `brand`, `bbox_xyxy` (pixels, x1/y1
exclusive), `visible_frac` and `distractor`. Each clip is analysed in this process (no Ray)
by `run_local` through the same stage chain as `media-ray analyze` (tracking, exposure),
and scored by these rules (those of the project's scoring instrument):

- a logo is *required* when it is of the catalogue, at least half visible and at least 24 px
  on its short side; other catalogue logos may be found or missed freely; a distractor (a
  logo outside the catalogue) must never be reported;
- box scores: detections, highest score first, are matched to unmatched logos of the same
  label at IoU >= 0.5; a match to a required logo is a true positive, a match to an optional
  one counts neither way, no match is a false positive (a *distractor hit* when it lies on a
  distractor at IoU >= 0.5); required logos left unmatched are false negatives;
- presence scores compare the set of labels reported on a frame with the labels present;
- exposure error: the sum over brands of |reported - true seconds on screen| over the total
  true seconds (true seconds counted at the clip's full frame rate, from required logos).

Box and presence counts are also kept per brand (a true positive or a false negative is the
logo's brand, a false positive the reported label's), printed as a table after the clips'
and, with `--out`, written with the clips' figures to `OUT/eval.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from media_ray.boxes import iou as box_iou
from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain, file_batches, run_local
from media_ray.config import MediaRayConfig
from media_ray.detectors import Detector, create, default_set
from media_ray.model import FrameBatch
from media_ray.sources import probe, videos_in

log = logging.getLogger(__name__)

MIN_SIDE_PX = 24
MIN_VISIBLE = 0.5
MATCH_IOU = 0.5


class _Tally(BaseModel):
    """Box and presence counts, and their ratios."""

    box_tp: int = 0
    box_fp: int = 0
    box_fn: int = 0
    presence_tp: int = 0
    presence_fp: int = 0
    presence_fn: int = 0

    @property
    def box_precision(self) -> float | None:
        return _ratio(self.box_tp, self.box_tp + self.box_fp)

    @property
    def box_recall(self) -> float | None:
        return _ratio(self.box_tp, self.box_tp + self.box_fn)

    @property
    def presence_precision(self) -> float | None:
        return _ratio(self.presence_tp, self.presence_tp + self.presence_fp)

    @property
    def presence_recall(self) -> float | None:
        return _ratio(self.presence_tp, self.presence_tp + self.presence_fn)

    def ratios(self) -> dict[str, float | None]:
        return {
            "box_precision": self.box_precision,
            "box_recall": self.box_recall,
            "presence_precision": self.presence_precision,
            "presence_recall": self.presence_recall,
        }


class BrandCounts(_Tally):
    """One brand's box and presence counts; they add up over clips."""

    def __add__(self, other: BrandCounts) -> BrandCounts:
        return BrandCounts(**{k: getattr(self, k) + getattr(other, k) for k in BrandCounts.model_fields})

    def figures(self) -> dict[str, Any]:
        return {**self.model_dump(), **self.ratios()}


class Counts(_Tally):
    """Counts that add up over clips, a brand's and the clip's own; the figures are ratios of them."""

    frames: int = 0
    distractor_hits: int = 0
    exposure_abs_error_s: float = 0.0
    exposure_true_s: float = 0.0
    analysis_s: float = 0.0  # time in the detectors and the temporal stage, decoding excluded
    #: the box and presence counts of each brand (logos' brands and reported labels)
    brands: dict[str, BrandCounts] = {}

    def __add__(self, other: Counts) -> Counts:
        brands = dict(self.brands)
        for b, c in other.brands.items():
            brands[b] = brands[b] + c if b in brands else c
        summed = {k: getattr(self, k) + getattr(other, k) for k in Counts.model_fields if k != "brands"}
        return Counts(**summed, brands=brands)

    def brand(self, brand_id: str) -> BrandCounts:
        """The counts of one brand, made on first use."""
        return self.brands.setdefault(brand_id, BrandCounts())

    @property
    def exposure_error(self) -> float:
        return self.exposure_abs_error_s / (self.exposure_true_s or 1.0)

    @property
    def frames_per_s(self) -> float | None:
        return self.frames / self.analysis_s if self.analysis_s > 0 else None

    def figures(self) -> dict[str, Any]:
        return {
            **self.ratios(),
            "distractor_hits": self.distractor_hits,
            "exposure_error": self.exposure_error,
            "frames_per_s": self.frames_per_s,
        }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def required(obj: dict) -> bool:
    """Whether a ground-truth logo must be found."""
    x0, y0, x1, y1 = obj["bbox_xyxy"]
    return not obj.get("distractor") and obj["visible_frac"] >= MIN_VISIBLE and min(x1 - x0, y1 - y0) >= MIN_SIDE_PX


def score(gt: dict, records: list[dict], exposure_s: dict[str, float]) -> Counts:
    """Count one clip's frame records (the output contract's) against its ground truth."""
    fps, n = gt["fps"], gt["n_frames"]
    c = Counts()
    seen: set[int] = set()
    for r in records:
        i = min(max(int(round(float(r["t"]) * fps)), 0), n - 1)
        if i in seen:
            continue
        seen.add(i)
        objs = gt["frames"][i]["objects"]
        req = [o for o in objs if required(o)]
        opt = [o for o in objs if not required(o) and not o.get("distractor")]
        dets = sorted(r["detections"], key=lambda d: -float(d.get("score", 0)))
        used: set[int] = set()
        for d in (d for d in dets if d.get("box") is not None):
            best, best_j = 0.0, None
            for j, o in enumerate(req + opt):
                if j not in used and o["brand"] == d["label"]:
                    v = box_iou(d["box"], o["bbox_xyxy"])
                    if v > best:
                        best, best_j = v, j
            if best >= MATCH_IOU:
                assert best_j is not None  # set with any best above 0
                used.add(best_j)
                c.box_tp += best_j < len(req)
                c.brand(d["label"]).box_tp += best_j < len(req)
            else:
                c.box_fp += 1
                c.brand(d["label"]).box_fp += 1
                if any(o.get("distractor") and box_iou(d["box"], o["bbox_xyxy"]) >= MATCH_IOU for o in objs):
                    c.distractor_hits += 1
        missed = [o["brand"] for j, o in enumerate(req) if j not in used]
        c.box_fn += len(missed)
        for b in missed:
            c.brand(b).box_fn += 1
        _count_presence(c, {d["label"] for d in dets}, {o["brand"] for o in req}, {o["brand"] for o in opt})
    c.frames = len(seen)
    true_s: dict[str, float] = {}
    for f in gt["frames"]:
        for b in {o["brand"] for o in f["objects"] if required(o)}:
            true_s[b] = true_s.get(b, 0.0) + 1.0 / fps
    c.exposure_abs_error_s = sum(
        abs(exposure_s.get(b, 0.0) - true_s.get(b, 0.0)) for b in set(true_s) | set(exposure_s)
    )
    c.exposure_true_s = sum(true_s.values())
    return c


def _count_presence(c: Counts, said: set[str], want: set[str], may: set[str]) -> None:
    """A frame's presence counts: labels reported (`said`), required (`want`), optional (`may`)."""
    for kind, brands in (("tp", said & want), ("fp", said - want - may), ("fn", want - said)):
        field = f"presence_{kind}"
        setattr(c, field, getattr(c, field) + len(brands))
        for b in brands:
            bc = c.brand(b)
            setattr(bc, field, getattr(bc, field) + 1)


def find_clips(paths: Iterable[str]) -> list[tuple[Path, Path]]:
    """(video, ground truth) pairs: clips named directly, or every clip in named folders."""
    out = []
    for p in map(Path, paths):
        videos = videos_in(p) if p.is_dir() else [p]
        for v in videos:
            gt = v.with_name(v.stem + ".gt.json")
            if gt.exists():
                out.append((v, gt))
            elif not p.is_dir():
                raise FileNotFoundError(f"{v}: no ground truth {gt.name} beside it")
    if not out:
        raise FileNotFoundError(f"no clips with ground truth in {', '.join(map(str, paths))}")
    return out


class _Timed:
    """An iterator whose own time (decoding) is measured, so it can be taken out."""

    def __init__(self, it: Iterator[FrameBatch]):
        self.it, self.seconds = it, 0.0

    def __iter__(self):
        return self

    def __next__(self) -> FrameBatch:
        start = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.seconds += time.perf_counter() - start


def evaluate_clip(
    video: Path,
    gt_path: Path,
    detectors: list[Detector],
    catalog: BrandCatalog,
    config: MediaRayConfig,
    out: Path | None = None,
) -> Counts:
    """Analyse one clip in this process, through the stage chain as `analyze` runs it, and
    score it; with `out`, keep its frames.jsonl and report.json there."""
    from media_ray.output import AnalysisWriter

    info = probe(str(video))
    batches = _Timed(file_batches(str(video), video.stem, config.sampling, shots=config.shots))
    chain = StageChain.for_files(config, catalog)
    records = []
    writer = AnalysisWriter(out) if out is not None else None
    start = time.perf_counter()
    for r in run_local(batches, detectors, chain, in_flight=config.pipeline.max_in_flight):
        records.append(r.record())
        if writer is not None:
            writer.write(r)
    elapsed = time.perf_counter() - start
    report = chain.report(str(video), info.duration_s)
    if writer is not None:
        writer.finish(report)
    counts = score(json.loads(gt_path.read_text()), records, {b: e.exposure_s for b, e in report.brands.items()})
    counts.analysis_s = elapsed - batches.seconds
    return counts


def _fmt(v: float | int | None) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.3f}"


def format_table(rows: list[tuple[str, Counts]]) -> str:
    head = ("clip", "frames", "box P", "box R", "pres P", "pres R", "distr", "exp err", "frames/s")
    lines: list[tuple[str, ...]] = [head]
    for name, c in rows:
        f = c.figures()
        lines.append(
            (
                name,
                str(c.frames),
                *(
                    _fmt(f[k])
                    for k in (
                        "box_precision",
                        "box_recall",
                        "presence_precision",
                        "presence_recall",
                        "distractor_hits",
                        "exposure_error",
                        "frames_per_s",
                    )
                ),
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_brand_table(counts: Counts) -> str:
    """One row per brand, pooled over the clips: box and presence counts and their P/R."""
    head = ("brand", "box TP", "FP", "FN", "box P", "box R", "pres TP", "FP", "FN", "pres P", "pres R")
    keys: tuple[str, ...] = ("box_tp", "box_fp", "box_fn", "box_precision", "box_recall")
    keys += tuple(k.replace("box", "presence") for k in keys)
    lines: list[tuple[str, ...]] = [head]
    for brand in sorted(counts.brands):
        f = counts.brands[brand].figures()
        lines.append((brand, *(_fmt(f[k]) for k in keys)))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def results_json(rows: list[tuple[str, Counts]], total: Counts) -> dict[str, Any]:
    """What `--out` keeps in eval.json: each clip's and the pooled counts and figures, and the
    pooled figures of each brand."""

    def entry(c: Counts) -> dict[str, Any]:
        return {
            **c.model_dump(exclude={"brands"}),
            **c.figures(),
            "brands": {b: bc.figures() for b, bc in sorted(c.brands.items())},
        }

    return {
        "clips": {name: entry(c) for name, c in rows},
        "overall": entry(total),
        "brands": {b: bc.figures() for b, bc in sorted(total.brands.items())},
    }


def run_eval(args: argparse.Namespace) -> int:
    """The `eval` command: prints one row per clip and an overall row (counts pooled)."""
    config = MediaRayConfig.load(args.config)
    config.sampling.fps = args.fps
    tracking = config.tracking
    catalog = BrandCatalog.from_folder(args.brands)
    if args.detectors:
        names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    else:
        names, left_out = default_set(config.params_for)
        for name, reason in left_out.items():
            print(f"note: {name} is not used: {reason}")
    detectors = [create(n, catalog, config.params_for(n)) for n in names]
    clips = find_clips(args.clips)
    print(
        f"{len(clips)} clip(s), detectors {', '.join(names)}, {args.fps:g} frames/s, "
        f"tracking {'on' if tracking.enabled else 'off'}"
    )
    rows = []
    for video, gt in clips:
        out = Path(args.out) / video.stem if args.out else None
        rows.append((video.stem, evaluate_clip(video, gt, detectors, catalog, config, out)))
    total = sum((c for _, c in rows), Counts())
    print(format_table(rows + ([("overall", total)] if len(rows) > 1 else [])))
    if total.brands:
        print("\nper brand" + (" (all clips)" if len(rows) > 1 else ""))
        print(format_brand_table(total))
    if args.out:
        path = Path(args.out) / "eval.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results_json(rows, total), indent=1))
        print(f"wrote {path}")
    return 0
