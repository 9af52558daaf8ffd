#!/usr/bin/env python3
"""Make the project's own quality clips: brands, distractors and backgrounds that are not in
the development set, so that `media-ray eval` figures do not come from tuning to two clips.

    python tests/quality_clips/make_clips.py --out quality-clips [--shared ../shared]
    media-ray eval quality-clips/clips --brands quality-clips/logos

Needs `npm` (simple-icons, CC0-1.0, is fetched into OUT/npm unless --simple-icons names a
copy), `pip install cairosvg` to render its SVGs, and the shared `tools/make_clip.py`, which
composes each scene and writes its per-frame ground truth. Renders are deterministic: the
catalogue is 10 brands (OUT/logos, with brands.json), 4 distractors are drawn but never in the
catalogue, and the four backgrounds (a park, a city at night, a cluttered market, a stadium
whose crowd is a field of small coloured blocks) are procedural. This is a measuring
instrument, not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SIMPLE_ICONS = "simple-icons@16.37.0"
CATALOGUE = [
    "puma",
    "shell",
    "ferrari",
    "audi",
    "visa",
    "underarmour",
    "mitsubishi",
    "airbnb",
    "twitch",
    "chevrolet",
]
DISTRACTORS = ["apple", "nvidia", "jordan", "honda"]
H, W = 1000, 1800  # background canvas; the clips are 1280x720 views that pan across it

SCENES = [
    {
        "name": "own-park",
        "seconds": 10,
        "fps": 30,
        "size": [1280, 720],
        "seed": 1,
        "background": "park",
        "tracks": [
            {
                "brand": "puma",
                "t0": 0.5,
                "t1": 6.5,
                "p0": [300, 250],
                "p1": [700, 420],
                "w0": 220,
                "w1": 300,
                "rot0": -10,
                "rot1": 15,
                "yaw0": 0.0,
                "yaw1": 0.3,
            },
            {
                "brand": "shell",
                "t0": 3.0,
                "t1": 10.0,
                "p0": [950, 300],
                "p1": [850, 380],
                "w0": 90,
                "w1": 240,
                "anchored": True,
            },
            {
                "brand": "visa",
                "t0": 0.0,
                "t1": 10.0,
                "p0": [1160, 660],
                "p1": [1160, 660],
                "w0": 120,
                "w1": 120,
            },
            {
                "brand": "apple",
                "t0": 2.0,
                "t1": 8.0,
                "p0": [200, 550],
                "p1": [450, 500],
                "w0": 110,
                "w1": 140,
                "distractor": True,
            },
        ],
    },
    {
        "name": "own-night",
        "seconds": 10,
        "fps": 30,
        "size": [1280, 720],
        "seed": 2,
        "background": "night",
        "tracks": [
            {
                "brand": "underarmour",
                "t0": 0.0,
                "t1": 5.5,
                "p0": [400, 300],
                "p1": [600, 260],
                "w0": 240,
                "w1": 200,
                "rot0": 0,
                "rot1": -20,
            },
            {
                "brand": "mitsubishi",
                "t0": 4.0,
                "t1": 10.0,
                "p0": [900, 450],
                "p1": [700, 350],
                "w0": 150,
                "w1": 230,
                "rot0": 10,
                "rot1": -10,
                "blur0": 1.5,
                "blur1": 0.0,
            },
            {
                "brand": "twitch",
                "t0": 1.0,
                "t1": 9.0,
                "p0": [180, 160],
                "p1": [220, 200],
                "w0": 110,
                "w1": 130,
                "opacity": 0.85,
            },
            {
                "brand": "jordan",
                "t0": 5.0,
                "t1": 10.0,
                "p0": [350, 480],
                "p1": [420, 450],
                "w0": 160,
                "w1": 180,
                "distractor": True,
            },
        ],
        "grade": {"gain": [1.0, 0.97, 1.05], "gamma": 1.05, "noise": 2.0},
    },
    {
        "name": "own-market",
        "seconds": 10,
        "fps": 30,
        "size": [1280, 720],
        "seed": 3,
        "background": "market",
        "tracks": [
            {
                "brand": "ferrari",
                "t0": 0.0,
                "t1": 6.0,
                "p0": [300, 360],
                "p1": [420, 300],
                "w0": 130,
                "w1": 170,
                "rot0": 0,
                "rot1": 10,
            },
            {
                "brand": "airbnb",
                "t0": 2.0,
                "t1": 9.0,
                "p0": [850, 250],
                "p1": [800, 420],
                "w0": 160,
                "w1": 200,
                "yaw0": 0.3,
                "yaw1": -0.2,
                "rot0": 5,
                "rot1": -15,
            },
            {
                "brand": "chevrolet",
                "t0": 5.0,
                "t1": 10.0,
                "p0": [400, 580],
                "p1": [600, 560],
                "w0": 260,
                "w1": 300,
                "blur0": 0.0,
                "blur1": 1.5,
                "anchored": True,
            },
            {
                "brand": "audi",
                "t0": 0.0,
                "t1": 4.0,
                "p0": [1050, 600],
                "p1": [1000, 560],
                "w0": 200,
                "w1": 220,
            },
            {
                "brand": "nvidia",
                "t0": 3.0,
                "t1": 8.0,
                "p0": [150, 120],
                "p1": [250, 150],
                "w0": 140,
                "w1": 160,
                "distractor": True,
            },
        ],
    },
    {
        "name": "own-stadium",
        "seconds": 10,
        "fps": 30,
        "size": [1280, 720],
        "seed": 4,
        "background": "stadium",
        "tracks": [
            {
                "brand": "visa",
                "t0": 0.0,
                "t1": 10.0,
                "p0": [1190, 50],
                "p1": [1190, 50],
                "w0": 90,
                "w1": 90,
                "opacity": 0.7,
            },
            {
                "brand": "shell",
                "t0": 0.0,
                "t1": 7.0,
                "p0": [500, 330],
                "p1": [500, 330],
                "w0": 110,
                "w1": 110,
                "anchored": True,
                "yaw0": 0.4,
                "yaw1": 0.4,
            },
            {
                "brand": "chevrolet",
                "t0": 2.0,
                "t1": 9.0,
                "p0": [200, 560],
                "p1": [900, 520],
                "w0": 180,
                "w1": 260,
                "rot0": -5,
                "rot1": 10,
                "blur0": 0.0,
                "blur1": 1.2,
            },
            {
                "brand": "ferrari",
                "t0": 1.0,
                "t1": 8.0,
                "p0": [950, 600],
                "p1": [800, 640],
                "w0": 60,
                "w1": 70,
                "rot0": 0,
                "rot1": 20,
            },
            {
                "brand": "puma",
                "t0": 4.0,
                "t1": 10.0,
                "p0": [350, 420],
                "p1": [420, 440],
                "w0": 150,
                "w1": 170,
                "yaw0": -0.3,
                "yaw1": 0.1,
            },
            {
                "brand": "honda",
                "t0": 0.0,
                "t1": 10.0,
                "p0": [900, 330],
                "p1": [900, 330],
                "w0": 150,
                "w1": 150,
                "anchored": True,
                "distractor": True,
            },
        ],
        "grade": {"gain": [1.03, 1.0, 0.97], "gamma": 1.0, "noise": 1.5},
    },
]


def render_icons(icons: Path, logos: Path, extra: Path) -> None:
    """Each brand's simple-icons SVG in its own colour, 512 px wide, cropped to the mark."""
    import cairosvg

    data = json.loads((icons / "data" / "simple-icons.json").read_text())
    data = data if isinstance(data, list) else data["icons"]
    by_slug = {x.get("slug") or re.sub(r"[^a-z0-9]", "", x["title"].lower()): x for x in data}

    def render(slug: str, out: Path) -> dict:
        icon = by_slug[slug]
        svg = (icons / "icons" / f"{slug}.svg").read_text().replace("<svg ", f'<svg fill="#{icon["hex"]}" ', 1)
        rgba = np.asarray(
            Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode(), output_width=512))).convert("RGBA")
        )
        ys, xs = np.nonzero(rgba[..., 3] > 0)
        Image.fromarray(rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]).save(out)
        return icon

    meta = [{"id": s, "name": (icon := render(s, logos / f"{s}.png"))["title"], "hex": icon["hex"]} for s in CATALOGUE]
    (logos / "brands.json").write_text(json.dumps(meta, indent=1))
    for s in DISTRACTORS:
        render(s, extra / f"{s}.png")


def backgrounds(folder: Path) -> None:
    rng = np.random.default_rng(5)

    def fractal(h: int, w: int, octaves: int = 6) -> np.ndarray:
        out = np.zeros((h, w), np.float32)
        for o in range(octaves):
            s = 2 ** (o + 2)
            n = rng.random((s * h // w + 2, s + 2)).astype(np.float32)
            out += cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC) / (1.6**o)
        out -= out.min()
        return out / out.max()

    def save(img: np.ndarray, name: str) -> None:
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{name}.png")

    # park: sky over textured green hills with bushes
    n = fractal(H, W)
    img = np.zeros((H, W, 3), np.float32)
    horizon = (0.45 + 0.1 * fractal(1, W, 4)[0])[None, :] * H
    yy = np.arange(H)[:, None]
    img[..., 0] = np.where(yy < horizon, 110 + 90 * (yy / H), 50 + 80 * n)
    img[..., 1] = np.where(yy < horizon, 160 + 60 * (yy / H), 100 + 90 * n)
    img[..., 2] = np.where(yy < horizon, 230 - 30 * (yy / H), 40 + 50 * n)
    for _ in range(40):
        c = (int(rng.integers(30, 90)), int(rng.integers(60, 130)), int(rng.integers(20, 60)))
        cv2.circle(img, (int(rng.integers(0, W)), int(rng.integers(H // 2, H))), int(rng.integers(20, 90)), c, -1)
    save(cv2.GaussianBlur(img, (0, 0), 2) + rng.normal(0, 6, img.shape), "park")
    # night: dark buildings with lit windows
    img = (fractal(H, W) * 40).astype(np.float32)[..., None] * np.float32([0.8, 0.8, 1.0])
    for _ in range(60):
        x, y = int(rng.integers(0, W)), int(rng.integers(H // 4, H))
        w, h = int(rng.integers(60, 220)), int(rng.integers(150, 600))
        v = float(rng.integers(10, 45))
        cv2.rectangle(img, (x, y), (x + w, y + h), (v, v, v * 1.1), -1)
        for _ in range(int(rng.integers(5, 30))):
            wx, wy = x + int(rng.integers(0, w)), y + int(rng.integers(0, h))
            cv2.rectangle(img, (wx, wy), (wx + 8, wy + 12), (230, 200, 120), -1)
    save(cv2.GaussianBlur(img, (0, 0), 1.2) + rng.normal(0, 4, img.shape), "night")
    # market: colourful clutter
    img = np.zeros((H, W, 3), np.float32) + fractal(H, W)[..., None] * np.float32([180, 150, 120])
    for _ in range(250):
        c = tuple(float(v) for v in rng.integers(30, 230, 3))
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 160)), y + int(rng.integers(20, 160))), c, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(8, 70)), c, -1)
    save(cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(0, 5, img.shape), "market")
    # stadium: sky, a crowd of small colourful blobs, a band of flat advertising boards, a
    # mown pitch
    img = np.zeros((H, W, 3), np.float32)
    img[:150] = (150, 185, 225)
    crowd = rng.integers(20, 235, (34, W // 8, 3)).astype(np.float32)
    crowd = 0.6 * crowd.mean(2, keepdims=True) + 0.4 * crowd  # muted clothes and faces
    img[150:490] = cv2.resize(crowd, (W, 340), interpolation=cv2.INTER_NEAREST) * 0.7
    x = 0
    while x < W:
        w = int(rng.integers(180, 420))
        img[490:580, x : x + w] = rng.integers(30, 230, 3)
        x += w
    stripes = ((np.arange(W)[None, :] + np.arange(H - 580)[:, None] * 0.3) // 120) % 2
    img[580:] = np.float32([60, 140, 60])[None, None, :] * (0.9 + 0.15 * stripes[..., None])
    img[580:] *= (0.9 + 0.2 * fractal(H - 580, W, 5))[..., None]
    save(cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 4, img.shape), "stadium")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="quality-clips", help="where logos/, clips/ and the rest go")
    ap.add_argument(
        "--shared",
        default=str(Path(__file__).resolve().parents[3] / "shared"),
        help="the shared folder holding tools/make_clip.py",
    )
    ap.add_argument("--simple-icons", help="a simple-icons package folder (default: npm install one)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    logos, every, bg, scenes, clips = (out / d for d in ("logos", "all-logos", "bg", "scenes", "clips"))
    for d in (logos, every, bg, scenes, clips):
        d.mkdir(parents=True, exist_ok=True)
    icons = Path(args.simple_icons) if args.simple_icons else out / "npm" / "node_modules" / "simple-icons"
    if not icons.exists():
        subprocess.run(["npm", "install", "--silent", "--prefix", str(out / "npm"), SIMPLE_ICONS], check=True)
    render_icons(icons, logos, every)
    for png in logos.glob("*.png"):
        shutil.copy(png, every / png.name)
    backgrounds(bg)
    make_clip = Path(args.shared) / "tools" / "make_clip.py"
    for scene in SCENES:
        spec = {**scene, "background": {"image": str(bg / f"{scene['background']}.png")}}
        path = scenes / f"{scene['name']}.json"
        path.write_text(json.dumps(spec, indent=1))
        subprocess.run(
            [sys.executable, str(make_clip), str(path), "--logos", str(every), "--out", str(clips)],
            check=True,
        )
    print(f"clips in {clips}; catalogue in {logos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
