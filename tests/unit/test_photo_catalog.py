"""The photo catalogue recipe: references cropped from photos outside the scored clip."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from media_ray.app.photo_catalog import PhotoCatalogSettings, build, held_out, main, read_annotations
from media_ray.catalog import BrandCatalog

BRANDS = ("acme", "globex")
PER_BRAND = 5


@pytest.fixture
def photos(tmp_path):
    """Photos of two brands, file names interleaved between them, box sizes varied; each box
    filled with a grey level that names its photo, one photo annotated at half its pixels, and
    one with a second, small box."""
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "logos").mkdir()
    rows, meta = [], {}
    n = 0
    for k in range(PER_BRAND):
        for b, brand in enumerate(BRANDS):
            n += 1
            name = f"{n:03d}.png"
            side = 30 + 17 * ((k * 3 + b) % PER_BRAND)  # sizes not in name order
            img = np.full((200, 240, 3), 250, np.uint8)
            img[10 : 10 + side, 20 : 20 + side] = n * 5
            cv2.imwrite(str(root / "images" / name), img)
            scale = 2 if n == 4 else 1  # annotated in half the pixels: boxes scale
            rows.append(
                [
                    name,
                    brand.upper() if n == 3 else brand,
                    20 // scale,
                    10 // scale,
                    (20 + side) // scale,
                    (10 + side) // scale,
                    240 // scale,
                    200 // scale,
                ]
            )
            if n == 5:
                rows.append([name, brand, 200, 150, 230, 190, 240, 200])
            meta[name] = (brand, side, n * 5)
    with (root / "annotations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "brand", "x1", "y1", "x2", "y2", "img_w", "img_h"])
        w.writerows(rows)
    for b, brand in enumerate(BRANDS):
        mark = np.zeros((16, 24, 4), np.uint8)
        mark[..., b] = mark[..., 3] = 255
        cv2.imwrite(str(root / "logos" / f"{brand}.png"), mark)
    (root / "logos" / "brands.json").write_text(json.dumps([{"id": b, "name": b.title()} for b in BRANDS]))
    return root, meta


def test_the_clip_photos_are_the_first_of_each_brand(photos):
    root, meta = photos
    clip = held_out(read_annotations(root), 2)
    for brand in BRANDS:
        mine = sorted(f for f, (b, _, _) in meta.items() if b == brand)
        assert clip & set(mine) == set(mine[:2])


def test_crops_are_the_largest_boxes_outside_the_clip(photos, tmp_path, capsys):
    root, meta = photos
    out = tmp_path / "catalogue"
    assert main([str(root), str(out), "--limit", "2", "--crops", "2"]) == 0
    printed = capsys.readouterr().out
    assert all(b in printed for b in BRANDS) and str(out) in printed
    assert json.loads((out / "brands.json").read_text()) == json.loads((root / "logos" / "brands.json").read_text())
    cat = BrandCatalog.from_folder(out)
    assert cat.ids == list(BRANDS)
    clip = held_out(read_annotations(root), 2)
    for brand in BRANDS:
        given = cv2.imread(str(root / "logos" / f"{brand}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.cvtColor(given, cv2.COLOR_BGRA2RGBA), cat[brand].image)
        files = sorted(p.name for p in (out / brand).iterdir())
        sources = {f.split("crop-")[1].rsplit(".", 1)[0] for f in files if "crop-" in f}
        assert len(sources) == 2 and not sources & {c.rsplit(".", 1)[0] for c in clip}
        rest = sorted((side for f, (b, side, _) in meta.items() if b == brand and f not in clip), reverse=True)
        crops = cat[brand].images[1:]
        assert sorted((c.shape[0] for c in crops), reverse=True) == rest[:2]  # the largest, whole
        for c in crops:
            grey = int(np.median(c[..., 0]))
            assert meta[next(f for f, (_, _, g) in meta.items() if g == grey)][0] == brand


def test_a_used_output_folder_or_missing_logos_are_errors(photos, tmp_path, capsys):
    root, _ = photos
    out = tmp_path / "used"
    out.mkdir()
    (out / "x.txt").write_text("keep me")
    assert main([str(root), str(out)]) == 2
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
    assert main([str(root), str(tmp_path / "o"), "--limit", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("photo_catalog: error: ") for line in err)
    assert (out / "x.txt").read_text() == "keep me"


def test_no_crops_leaves_the_given_references(photos, tmp_path):
    root, _ = photos
    written = build(root, tmp_path / "o", PhotoCatalogSettings(limit=2, crops=0))
    assert {b: len(p) for b, p in written.items()} == {b: 1 for b in BRANDS}
