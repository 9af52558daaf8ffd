"""A multi-reference catalogue of annotated photographs, kept apart from the photos it is scored on.

    python -m media_ray.app.photo_catalog PHOTOS OUT_DIR [--limit 6] [--crops 3]

PHOTOS holds `images/`, `annotations.csv` (`filename,brand,x1,y1,x2,y2,img_w,img_h`, boxes in
the photo's own pixels) and `logos/` (`BRAND.png` and `brands.json`), as the shared
development photos do. OUT_DIR (new or empty) gets one folder per brand of `logos/`:
`BRAND/BRAND.png`, the given reference, then `--crops` crops of the brand's boxes
(`BRAND/BRAND_crop-PHOTO.png`, sorting after it), and a copy of `brands.json`.

The crops are honest: they come only from photos that are not in the scored clip. That clip is
made by the shared `photos_to_clip.py` with `--limit N`, which takes, per brand, the first N
photos in its order (photos sorted by their brand, lower-cased, then file name; a photo's brand
is that of its first annotation); `held_out` repeats that rule, and those photos are left out.
Of the remaining photos of a brand, the crops are those with the largest boxes (each photo's
largest box, so no photo gives two crops; ties by file name): a reference image must show the
mark's detail, and a small box is mostly blur and background, so the largest boxes make the
most useful references, and the choice is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
from pydantic import BaseModel, Field, ValidationError

from media_ray.catalog import IMAGE_SUFFIXES
from media_ray.references import crop

log = logging.getLogger(__name__)


class PhotoCatalogSettings(BaseModel):
    """How the photo catalogue is made."""

    limit: int = Field(6, ge=1, description="photos per brand in the scored clip (photos_to_clip.py --limit)")
    crops: int = Field(3, ge=0, description="crops of other photos added per brand")
    min_side: int = Field(24, ge=1, description="shortest box side a crop is taken from, photo pixels")


@dataclass(frozen=True)
class PhotoBox:
    photo: str
    brand: str
    box: tuple[float, float, float, float]
    size: tuple[int, int]  # img_w, img_h: the pixels the box is in

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def short_side(self) -> float:
        x0, y0, x1, y1 = self.box
        return min(x1 - x0, y1 - y0)


class PhotoCatalogError(ValueError):
    """The photo folder or the output folder cannot be used."""


def read_annotations(photos: Path) -> dict[str, list[PhotoBox]]:
    """Each photo's boxes, in the csv's order."""
    path = photos / "annotations.csv"
    rows: dict[str, list[PhotoBox]] = defaultdict(list)
    try:
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                box = (float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"]))
                rows[r["filename"]].append(
                    PhotoBox(r["filename"], r["brand"].lower(), box, (int(r["img_w"]), int(r["img_h"])))
                )
    except OSError as e:
        raise PhotoCatalogError(f"cannot read {path}: {e.strerror or e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise PhotoCatalogError(f"{path}: not filename,brand,x1,y1,x2,y2,img_w,img_h rows ({e})") from None
    return dict(rows)


def held_out(rows: dict[str, list[PhotoBox]], limit: int) -> set[str]:
    """The photos photos_to_clip.py --limit puts in the clip: per brand, the first `limit`
    by (brand, file name)."""
    taken: set[str] = set()
    per_brand: dict[str, int] = defaultdict(int)
    for f in sorted(rows, key=lambda f: (rows[f][0].brand, f)):
        b = rows[f][0].brand
        if per_brand[b] < limit:
            per_brand[b] += 1
            taken.add(f)
    return taken


def choose_crops(rows: dict[str, list[PhotoBox]], settings: PhotoCatalogSettings) -> dict[str, list[PhotoBox]]:
    """Per brand, the largest box of each photo outside the clip, the `crops` largest of them."""
    clip = held_out(rows, settings.limit)
    best: dict[str, list[PhotoBox]] = defaultdict(list)
    for f in sorted(set(rows) - clip):
        boxes = [b for b in rows[f] if b.short_side >= settings.min_side]
        if boxes:
            top = max(boxes, key=lambda b: b.area)
            best[top.brand].append(top)
    return {brand: sorted(boxes, key=lambda b: (-b.area, b.photo))[: settings.crops] for brand, boxes in best.items()}


def build(photos: str | Path, out: str | Path, settings: PhotoCatalogSettings) -> dict[str, list[Path]]:
    """Write the catalogue; the files written per brand (the given reference first)."""
    photos, out = Path(photos), Path(out)
    logos = photos / "logos"
    if not logos.is_dir():
        raise PhotoCatalogError(f"{logos}: no such folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PhotoCatalogError(f"{out}: exists and is not an empty folder")
    given = {p.stem: p for p in sorted(logos.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    if not given:
        raise PhotoCatalogError(f"{logos}: holds no reference images")
    chosen = choose_crops(read_annotations(photos), settings)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for brand, ref in given.items():
        folder = out / brand
        folder.mkdir()
        target = folder / ref.name
        shutil.copyfile(ref, target)
        written[brand] = [target]
        for b in chosen.get(brand.lower(), []):  # photos_to_clip.py lower-cases the csv's brands
            img = cv2.imread(str(photos / "images" / b.photo))
            if img is None:
                log.warning("cannot read %s; no crop from it", b.photo)
                continue
            h, w = img.shape[:2]
            sx, sy = w / b.size[0], h / b.size[1]
            x0, y0, x1, y1 = b.box
            part = crop(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (x0 * sx, y0 * sy, x1 * sx, y1 * sy), 0.0)
            if part is None:
                continue
            path = folder / f"{brand}_crop-{Path(b.photo).stem}.png"
            cv2.imwrite(str(path), cv2.cvtColor(part, cv2.COLOR_RGBA2BGRA))
            written[brand].append(path)
    if (logos / "brands.json").exists():
        shutil.copyfile(logos / "brands.json", out / "brands.json")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m media_ray.app.photo_catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("photos", help="folder with images/, annotations.csv and logos/")
    ap.add_argument("out", help="catalogue folder to write (new or empty)")
    for flag, field in (("--limit", "limit"), ("--crops", "crops")):
        spec = PhotoCatalogSettings.model_fields[field]
        ap.add_argument(flag, type=int, default=spec.default, help=f"{spec.description} (%(default)s)")
    args = ap.parse_args(argv)
    try:
        settings = PhotoCatalogSettings(limit=args.limit, crops=args.crops)
        written = build(args.photos, args.out, settings)
    except ValidationError as e:
        first = e.errors()[0]
        print(f"photo_catalog: error: --{first['loc'][0]}: {first['msg']}", file=sys.stderr)
        return 2
    except PhotoCatalogError as e:
        print(f"photo_catalog: error: {e}", file=sys.stderr)
        return 2
    for brand, paths in written.items():
        crops = [p.name for p in paths[1:]]
        print(f"{brand}: {paths[0].name} + {len(crops)} crop(s){': ' + ', '.join(crops) if crops else ''}")
    print(f"wrote {args.out}/ ({len(written)} brands, {sum(map(len, written.values()))} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
