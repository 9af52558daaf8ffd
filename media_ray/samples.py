"""Sample material made on the spot: brand marks, and clips in which they appear at known times
and places, with per-frame ground truth in the shared format (`NAME.gt.json`).

`media-ray sample DIR` writes a catalogue and a clip to try the product on without any data;
the tests use the same functions for their fixtures. Nothing here is a real brand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

SAMPLE_BRANDS = {
    "acme": ("Acme", (220, 40, 30)),
    "globex": ("Globex", (20, 90, 200)),
    "initech": ("Initech", (30, 150, 60)),
}


def make_mark(text: str, colour: tuple[int, int, int], seed: int, size: int = 240) -> np.ndarray:
    """An RGBA brand mark: a coloured badge with geometric details and lettering.

    Detailed enough for keypoint matchers; transparent outside the badge.
    """
    rng = np.random.default_rng(seed)
    h, w = size, int(size * 1.6)
    rgb = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.rectangle(alpha, (4, 4), (w - 5, h - 5), 255, -1)
    rgb[:] = colour
    dark = tuple(int(c * 0.35) for c in colour)
    light = tuple(int(160 + c * 0.35) for c in colour)
    for _ in range(6):  # a seeded pattern of rings and bars makes each mark distinct
        cx, cy = int(rng.integers(20, w - 20)), int(rng.integers(20, h // 2))
        r = int(rng.integers(8, h // 5))
        cv2.circle(rgb, (cx, cy), r, light if rng.random() < 0.5 else dark, int(rng.integers(3, 8)))
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 20))
        cv2.line(
            rgb,
            (x0, y0),
            (x0 + int(rng.integers(20, 80)), y0 + int(rng.integers(-30, 30))),
            dark,
            int(rng.integers(3, 7)),
        )
    scale = (w - 30) / max(1, cv2.getTextSize(text.upper(), cv2.FONT_HERSHEY_DUPLEX, 1.0, 3)[0][0])
    cv2.putText(
        rgb,
        text.upper(),
        (15, h - 30),
        cv2.FONT_HERSHEY_DUPLEX,
        scale,
        (255, 255, 255),
        max(2, int(3 * scale)),
        cv2.LINE_AA,
    )
    cv2.rectangle(rgb, (4, 4), (w - 5, h - 5), dark, 6)
    return np.dstack([rgb, alpha])


def numbered_brands(n: int) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """n made-up brands with distinct hues, for catalogues of a chosen size."""
    out = {}
    for i in range(n):
        hue = np.array([[[int(180 * i / n), 200, 200]]], np.uint8)
        r, g, b = cv2.cvtColor(hue, cv2.COLOR_HSV2RGB)[0, 0]
        out[f"brand{i + 1:02d}"] = (f"Brand {i + 1}", (int(r), int(g), int(b)))
    return out


def write_catalog(folder: str | Path, brands: dict[str, tuple[str, tuple[int, int, int]]] = SAMPLE_BRANDS) -> Path:
    """Write BRAND.png marks and a brands.json; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = []
    for n, (bid, (name, colour)) in enumerate(brands.items()):
        cv2.imwrite(str(folder / f"{bid}.png"), cv2.cvtColor(make_mark(name, colour, seed=n + 1), cv2.COLOR_RGBA2BGRA))
        meta.append({"id": bid, "name": name, "hex": "{:02X}{:02X}{:02X}".format(*colour)})
    (folder / "brands.json").write_text(json.dumps(meta, indent=1))
    return folder


@dataclass(frozen=True)
class Track:
    """One logo on screen from t0 to t1 (seconds), moving from p0 to p1 (top-left, pixels),
    `width` pixels wide."""

    brand: str
    t0: float
    t1: float
    p0: tuple[int, int]
    p1: tuple[int, int]
    width: int

    def box_at(self, t: float, mark: np.ndarray) -> tuple[int, int, int, int] | None:
        if not (self.t0 <= t < self.t1):
            return None
        u = (t - self.t0) / max(1e-9, self.t1 - self.t0)
        x = int(round(self.p0[0] + u * (self.p1[0] - self.p0[0])))
        y = int(round(self.p0[1] + u * (self.p1[1] - self.p0[1])))
        h = int(round(mark.shape[0] * self.width / mark.shape[1]))
        return x, y, x + self.width, y + h


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A large, smooth, textured RGB canvas the camera pans across."""
    rng = np.random.default_rng(seed)
    W, H = int(width * 1.5), int(height * 1.5)
    canvas = np.zeros((H, W, 3), np.float32)
    for scale, weight in ((64, 0.6), (16, 0.3), (4, 0.1)):
        noise = rng.random((H // scale + 2, W // scale + 2, 3)).astype(np.float32)
        canvas += weight * cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    canvas = (np.clip(canvas, 0, 1) * 180 + 40).astype(np.uint8)
    return cv2.GaussianBlur(canvas, (0, 0), 1.0)


def _scenery(width: int, height: int, seed: int) -> np.ndarray:
    """A large canvas more like filmed scenery than `_background`'s colour noise: brightness
    texture at several scales under a slowly varying, muted tint, with some flat blocks of
    colour (walls, signs, vehicles) standing in it."""
    rng = np.random.default_rng(seed)
    W, H = int(width * 1.5), int(height * 1.5)
    lum = np.zeros((H, W), np.float32)
    for scale, weight in ((96, 0.5), (24, 0.3), (6, 0.2)):
        noise = rng.random((H // scale + 2, W // scale + 2)).astype(np.float32)
        lum += weight * cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    tint = cv2.resize(rng.random((4, 6, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(lum, 0, 1)[..., None] * (0.75 + 0.5 * np.clip(tint, 0, 1)) * 170 + 30
    for _ in range(40):
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        w, h = int(rng.integers(30, 260)), int(rng.integers(30, 200))
        colour = rng.integers(40, 220, 3).astype(np.float32)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), tuple(float(c) for c in colour), -1)
    return cv2.GaussianBlur(np.clip(canvas, 0, 255).astype(np.uint8), (0, 0), 1.2)


#: backgrounds a generated clip can be rendered on
BACKGROUNDS = {"noise": _background, "scenery": _scenery}


def render_clip(
    path: str | Path,
    marks: dict[str, np.ndarray],
    tracks: list[Track],
    seconds: float,
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    crf: int = 20,
    background: str = "noise",
) -> dict:
    """Encode an H.264 clip with the marks pasted along their tracks, on a background from
    `BACKGROUNDS`; returns the ground truth (the shared `gt.json` format) and writes it beside
    the clip as NAME.gt.json."""
    path = Path(path)
    width, height = size
    bg = BACKGROUNDS[background](width, height, seed)
    n_frames = int(round(seconds * fps))
    frames_gt = []
    # faststart: the index first, so the clip also plays from a server without range requests
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.codec_context.gop_size = fps  # a keyframe a second: short HLS segments when remuxed
        for i in range(n_frames):
            t = i / fps
            ox = int((bg.shape[1] - width) * (0.5 + 0.5 * np.sin(t * 0.7)))
            oy = int((bg.shape[0] - height) * (0.5 + 0.5 * np.cos(t * 0.5)))
            frame = bg[oy : oy + height, ox : ox + width].copy()
            objects = []
            for tr in tracks:
                box = tr.box_at(t, marks[tr.brand])
                if box is None:
                    continue
                visible = _paste(frame, marks[tr.brand], box)
                if visible is not None:
                    objects.append(
                        {
                            "brand": tr.brand,
                            "bbox_xyxy": list(visible[0]),
                            "visible_frac": visible[1],
                            "distractor": False,
                        }
                    )
            frames_gt.append({"objects": objects})
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    gt = {
        "video": path.name,
        "width": width,
        "height": height,
        "fps": fps,
        "n_frames": n_frames,
        "frames": frames_gt,
    }
    path.with_name(path.stem + ".gt.json").write_text(json.dumps(gt))
    return gt


def _paste(frame: np.ndarray, mark: np.ndarray, box: tuple[int, int, int, int]):
    """Alpha-blend the mark into box; returns (visible bbox of alpha >= 0.5, visible fraction)."""
    x0, y0, x1, y1 = box
    scaled = cv2.resize(mark, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    H, W = frame.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    part = scaled[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    a = part[..., 3:4].astype(np.float32) / 255.0
    region = frame[cy0:cy1, cx0:cx1].astype(np.float32)
    frame[cy0:cy1, cx0:cx1] = (a * part[..., :3] + (1 - a) * region).astype(np.uint8)
    full = int((scaled[..., 3] >= 128).sum())
    ys, xs = np.nonzero(part[..., 3] >= 128)
    if not len(xs):
        return None
    bbox = (cx0 + int(xs.min()), cy0 + int(ys.min()), cx0 + int(xs.max()) + 1, cy0 + int(ys.max()) + 1)
    return bbox, round(len(xs) / max(1, full), 4)


def write_sample(folder: str | Path, seconds: float = 12.0) -> tuple[Path, Path]:
    """A catalogue (folder/logos) and a clip (folder/sample.mp4) in which two of its brands appear."""
    folder = Path(folder)
    logos = write_catalog(folder / "logos")
    marks = {bid: make_mark(name, colour, seed=n + 1) for n, (bid, (name, colour)) in enumerate(SAMPLE_BRANDS.items())}
    tracks = [
        Track("acme", 1.0, 6.0, (40, 40), (200, 60), 200),
        Track("globex", 4.0, 10.0, (400, 200), (420, 190), 160),
        Track("acme", 8.0, 11.0, (40, 220), (60, 200), 150),
    ]
    clip = folder / "sample.mp4"
    render_clip(clip, marks, tracks, seconds=seconds, fps=25, size=(640, 360), seed=7)
    return logos, clip
