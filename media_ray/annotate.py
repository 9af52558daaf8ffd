"""Pixels for people: boxes drawn on frames, the thumbnails of report.html and the annotated
video of `analyze --annotate`.

Both are made after the analysis, from the video again (PyAV) and the frame records: the best
frame of an appearance is known only once the appearance has ended, and the frames are by then
gone from the pipeline (decoded in an ingest actor, maybe on another node), so a thumbnail is
grabbed by seeking to its time, a seek and a few frames' decoding per appearance, instead of
shipping candidate frames to the driver during the analysis. The annotated video decodes the
source with the analysis' own decoder (`media_ray.sources.decode`, every frame kept), so frame
numbers and upright turns are the analysis'; a record's boxes are drawn from its frame to the
frame of the next record (the time an analysed frame stands for in the exposure).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from media_ray.config_report import AnnotateParams
from media_ray.sources import decode, open_source, probe, upright_rgb

log = logging.getLogger(__name__)

#: box colours, RGB, given to brands in turn: saturated, far from each other and from skin and sky
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (0, 255, 0),
    (255, 128, 0),
    (128, 0, 255),
    (255, 0, 96),
    (0, 160, 255),
)


def brand_colours(brand_ids: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """A colour a brand, from `PALETTE` in the order given."""
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(dict.fromkeys(brand_ids))}


def css_colour(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def draw_boxes(
    rgb: np.ndarray,
    boxes: Sequence[tuple[str, Sequence[float] | None, str]],
    colours: Mapping[str, tuple[int, int, int]],
    thickness: int,
) -> np.ndarray:
    """`rgb` (H, W, 3) with each (label, box, caption) drawn: the box's outline in the label's
    colour, its caption on a band of that colour above it. Boxless detections are not drawn."""
    out = np.ascontiguousarray(rgb).copy()
    for label, box, caption in boxes:
        if box is None:
            continue
        colour = colours.get(label, PALETTE[0])
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        if caption:
            scale = max(0.4, thickness / 8)
            (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = y0 - thickness if y0 - thickness - th - base >= 0 else y1 + thickness + th + base
            cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 4, ty), colour, -1)
            cv2.putText(out, caption, (x0 + 2, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def grab_frames(uri: str, times: Iterable[float]) -> dict[float, np.ndarray]:
    """The upright RGB frames at the given times (seconds from the first frame, as the frame
    records count them): for each, the first frame at or after the time (half a frame's
    tolerance), found by seeking to the keyframe before it. Times past the end are left out."""
    wanted = sorted(set(times))
    out: dict[float, np.ndarray] = {}
    if not wanted:
        return out
    with open_source(uri) as container:
        vs = container.streams.video[0]
        rate = float(vs.average_rate) if vs.average_rate else 25.0
        t0 = _first_time(container, vs)
        time_base = float(vs.time_base or Fraction(1, av.time_base))
        for t in wanted:
            target = t0 + t - 0.5 / rate
            container.seek(max(0, math.floor(target / time_base)), stream=vs, backward=True)
            for frame in container.decode(vs):
                if frame.time is not None and frame.time >= target:
                    out[t] = upright_rgb(frame)
                    break
    return out


def _first_time(container, stream) -> float:
    for frame in container.decode(stream):
        if frame.time is not None:
            return float(frame.time)
    return 0.0


def thumbnail(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> Path:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"{path}: cannot encode JPEG")
    path.write_bytes(data.tobytes())
    return path


def read_records(frames_jsonl: Path) -> list[dict]:
    """The frame records of an analysis (frames.jsonl), in frame order."""
    with open(frames_jsonl) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return sorted(records, key=lambda r: r["frame"])


def annotate_video(
    uri: str,
    records: Sequence[dict],
    out_path: Path,
    colours: Mapping[str, tuple[int, int, int]],
    names: Mapping[str, str],
    params: AnnotateParams | None = None,
) -> tuple[Path, str, int]:
    """Write `uri`'s frames, every one, with the boxes of `records` (frame records, in frame
    order) drawn, to `out_path`: (the path, the encoder used, frames written). Audio is not
    copied. Odd sizes are padded by a black row or column (H.264 wants even ones)."""
    p = params or AnnotateParams()
    codec = _encoder(p.codecs)
    info = probe(uri)
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps else Fraction(25)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    nxt = 0
    current: list[tuple[str, Sequence[float] | None, str]] = []
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)  # a video encoder's
        stream.width, stream.height = info.width + info.width % 2, info.height + info.height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 90000)
        if codec == "libx264":
            stream.options = {"crf": str(p.crf), "preset": p.preset}
        else:
            stream.bit_rate = p.bitrate
        last_pts = -1
        for f in decode(uri, fps=1e6):
            while nxt < len(records) and records[nxt]["frame"] <= f.index:
                current = _captioned(records[nxt], names)
                nxt += 1
            rgb = draw_boxes(f.rgb, current, colours, p.thickness) if current else f.rgb
            frame = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")
            frame.pts = max(last_pts + 1, round(f.t * 90000))
            frame.time_base = stream.time_base
            last_pts = frame.pts
            container.mux(stream.encode(frame))
            written += 1
        container.mux(stream.encode(None))
    log.info("%s: %d frames written with %s", out_path, written, codec)
    return out_path, codec, written


def _captioned(record: dict, names: Mapping[str, str]) -> list[tuple[str, Sequence[float] | None, str]]:
    return [
        (d["label"], d["box"], f"{names.get(d['label'], d['label'])} {d['score']:.2f}") for d in record["detections"]
    ]


def _encoder(names: Sequence[str]) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except ValueError:  # av.codec.codec.UnknownCodecError
            log.debug("no %s encoder here", name)
    raise ValueError(f"none of the encoders {', '.join(names)} is available in this PyAV")


def _even(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))
