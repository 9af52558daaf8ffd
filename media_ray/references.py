"""More reference images for a brand catalogue, cropped from footage.

`media-ray add-references VIDEO FRAMES_JSONL --brands DIR` takes the boxes of detections a run
found (frame records of `frames.jsonl`: `{"t", "detections": [{"label", "score", "box"}]}`),
or boxes a user drew (a JSON list of `{"t", "brand", "box"}`), crops them out of the video and
writes them as further references of their brands: `DIR/BRAND/`, a brand given as a single
`DIR/BRAND.png` first becoming a folder with that file moved inside (it keeps its name, which
sorts before the crops' `BRAND_...` names, so it stays the brand's first image).

Which boxes: those of a brand of the catalogue, scoring at least `min_score`, at least
`min_side` pixels on their short side; of those, at most `per_brand` per brand, spread over
the video: the best-scoring box first, then each time the box farthest in time from those
already taken (ties: the better score), never two closer than `min_gap_s`, so the crops are
different moments rather than nearly identical consecutive frames. Files are never
overwritten: a name that exists gets a numbered variant.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, Field

from media_ray.catalog import IMAGE_SUFFIXES, BrandCatalog, CatalogError
from media_ray.sources import decode

log = logging.getLogger(__name__)

#: a decoding rate above any video's, so that every frame is seen
_EVERY_FRAME_FPS = 1000.0


class ReferenceInputError(ValueError):
    """The footage or the boxes cannot give references (unreadable, malformed, unknown brand)."""


class ReferenceSettings(BaseModel):
    """Which boxes of footage become reference images, and how they are cropped."""

    min_score: float = Field(0.5, ge=0.0, le=1.0, description="lowest detection score taken")
    per_brand: int = Field(5, ge=1, description="most crops added per brand")
    margin: float = Field(0.1, ge=0.0, le=1.0, description="share of the box's side added around it")
    min_side: int = Field(24, ge=1, description="shortest box side taken, pixels")
    min_gap_s: float = Field(1.0, ge=0.0, description="least time between two crops of a brand, seconds")
    max_offset_s: float = Field(0.5, ge=0.0, description="farthest a frame may lie from a box's time")


@dataclass(frozen=True)
class Candidate:
    """A box of a brand at a time of the video."""

    t: float
    brand: str
    box: tuple[float, float, float, float]
    score: float = 1.0

    @property
    def short_side(self) -> float:
        x0, y0, x1, y1 = self.box
        return min(x1 - x0, y1 - y0)


def _box(value, where: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ReferenceInputError(f"{where}: a box is [x0, y0, x1, y1], not {value!r}") from None
    return x0, y0, x1, y1


def from_frames(path: str | Path, min_score: float) -> list[Candidate]:
    """The boxed detections of a frames.jsonl scoring at least `min_score`."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ReferenceInputError(f"cannot read {path}: {e.strerror or e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            t, detections = float(record["t"]), record.get("detections", [])
            for d in detections:
                if d.get("box") is not None and float(d.get("score", 0.0)) >= min_score:
                    out.append(Candidate(t, str(d["label"]), _box(d["box"], f"{path}:{n}"), float(d["score"])))
        except ReferenceInputError:
            raise
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ReferenceInputError(f"{path}:{n}: not a frame record ({e})") from None
    return out


def from_boxes(path: str | Path) -> list[Candidate]:
    """Boxes a user drew: a JSON list of {"t", "brand", "box"}."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReferenceInputError(f"cannot read {path}: {e}") from e
    if not isinstance(raw, list):
        raise ReferenceInputError(f"{path}: expected a list of {{'t', 'brand', 'box'}}")
    try:
        return [Candidate(float(b["t"]), str(b["brand"]), _box(b["box"], str(path))) for b in raw]
    except ReferenceInputError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ReferenceInputError(f"{path}: every entry needs 't', 'brand' and 'box' ({e})") from None


def choose(candidates: list[Candidate], settings: ReferenceSettings) -> list[Candidate]:
    """At most `per_brand` boxes per brand, large enough, spread over time (module docstring)."""
    by_brand: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.short_side >= settings.min_side:
            by_brand.setdefault(c.brand, []).append(c)
    chosen = []
    for brand in sorted(by_brand):
        pool = sorted(by_brand[brand], key=lambda c: (-c.score, c.t))
        taken = [pool.pop(0)]
        while pool and len(taken) < settings.per_brand:
            gaps = [min(abs(c.t - k.t) for k in taken) for c in pool]
            best = max(range(len(pool)), key=lambda i: (gaps[i], pool[i].score))
            if gaps[best] < settings.min_gap_s:
                break
            taken.append(pool.pop(best))
        chosen.extend(sorted(taken, key=lambda c: c.t))
    return chosen


def frames_at(video: str | Path, times: list[float], max_offset_s: float) -> dict[float, np.ndarray]:
    """The decoded frame (RGB, upright) nearest each time, decoding only as far as needed;
    a time with no frame within `max_offset_s` is left out."""
    pending = sorted(set(times))
    found: dict[float, np.ndarray] = {}
    prev = None
    for frame in decode(str(video), _EVERY_FRAME_FPS):
        while pending and frame.t >= pending[0]:
            t = pending.pop(0)
            near = frame if prev is None or frame.t - t <= t - prev.t else prev
            if abs(near.t - t) <= max_offset_s:
                found[t] = near.rgb
        if not pending:
            break
        prev = frame
    if pending and prev is not None:  # times past the last frame
        for t in pending:
            if abs(prev.t - t) <= max_offset_s:
                found[t] = prev.rgb
    return found


def crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray | None:
    """A box of a frame with `margin` of its sides around it, clipped to the frame, as RGBA
    (opaque); None when nothing of it lies in the frame."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    a, b = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    c, d = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
    if c <= a or d <= b:
        return None
    part = rgb[b:d, a:c]
    return np.dstack([part, np.full(part.shape[:2], 255, np.uint8)])


def brand_folder(catalog_dir: Path, brand: str) -> Path:
    """`DIR/BRAND/`, made from a single-file `DIR/BRAND.png` (moved inside) where there is one."""
    folder = catalog_dir / brand
    if folder.is_dir():
        return folder
    single = [
        p for p in catalog_dir.iterdir() if p.is_file() and p.stem == brand and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    folder.mkdir()
    for p in single:
        p.rename(folder / p.name)
        log.info("brand %s: %s moved into %s/", brand, p.name, folder)
    return folder


def _free_name(folder: Path, stem: str) -> Path:
    path, n = folder / f"{stem}.png", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.png"
    return path


def add_references(
    video: str | Path,
    candidates: list[Candidate],
    catalog_dir: str | Path,
    settings: ReferenceSettings | None = None,
) -> dict[str, list[Path]]:
    """Crop the chosen candidates out of the video into the catalogue; the files written, per brand."""
    settings = settings or ReferenceSettings()
    catalog_dir = Path(catalog_dir)
    known = set(BrandCatalog.from_folder(catalog_dir).ids)
    unknown = sorted({c.brand for c in candidates} - known)
    if unknown:
        raise CatalogError(f"not brands of the catalogue {catalog_dir}: {', '.join(unknown)}")
    chosen = choose(candidates, settings)
    frames = frames_at(video, [c.t for c in chosen], settings.max_offset_s)
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(video).stem) or "video"
    written: dict[str, list[Path]] = {}
    for c in chosen:
        rgb = frames.get(c.t)
        image = None if rgb is None else crop(rgb, c.box, settings.margin)
        if image is None:
            log.warning("brand %s: no frame or nothing of the box at %.3f s; skipped", c.brand, c.t)
            continue
        path = _free_name(brand_folder(catalog_dir, c.brand), f"{c.brand}_{tag}_{int(round(c.t * 1000)):08d}ms")
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)):
            raise ReferenceInputError(f"cannot write {path}")
        written.setdefault(c.brand, []).append(path)
    log.info("%d references added to %s", sum(map(len, written.values())), catalog_dir)
    return written
