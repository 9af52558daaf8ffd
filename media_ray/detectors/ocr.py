"""The `ocr` detector: a brand reported where its name (or an alias) is read in the frame.

Text is found and read by RapidOCR (`rapidocr-onnxruntime`: PP-OCR detection and recognition
models run by ONNX Runtime; the models ship inside the wheel, so nothing is downloaded at run
time). A line of text names a brand when, compared letters and digits only and case folded,
the brand's name or an alias is in it, or it is the name with a letter or two misread. The box
is the part of the line's box that the name takes (by its share of the line's characters).

Reading costs about 0.6 s a 1280x720 frame on two CPU cores, so a batch is read only on its
*key frames*: its first frame, the first frame of each shot (`FrameBatch.cuts`), and one
every `read_every_s` seconds of video (2 by default). On the frames between, each name read is followed by
template matching of its box (normalised cross-correlation in a window around it), and kept
only while it matches; a cut ends it. So it is in the default set wherever RapidOCR is
installed (the `ocr` extra).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import Field

from media_ray.boxes import Box, clip_box, to_working
from media_ray.catalog import BrandCatalog
from media_ray.detectors import Detector, DetectorError, DetectorParams, Found
from media_ray.model import FrameBatch, FrameResult, empty_results

log = logging.getLogger(__name__)


class OcrParams(DetectorParams):
    working_long_side: int = Field(
        960,
        ge=64,
        description="frames are resized so that their long side is this for reading "
        "(never enlarged); boxes are mapped back to source pixels",
    )
    min_text_score: float = Field(0.7, ge=0.0, le=1.0, description="recognition confidence a line of text needs")
    min_name_similarity: float = Field(
        0.85, gt=0.0, le=1.0, description="how close (difflib ratio) a misread name must be"
    )
    min_name_length: int = Field(
        3,
        ge=1,
        description="names shorter than this (in letters and digits) are not looked for: "
        "they turn up inside too many words",
    )
    threads: int = Field(0, ge=0, description="ONNX Runtime threads; 0 lets it choose")
    read_every_s: float = Field(
        2.0,
        gt=0.0,
        description="seconds of video between two readings within a shot; the frames between "
        "follow the names read by template matching",
    )
    follow_min_similarity: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="normalised cross-correlation a name's box needs to be followed into the next frame",
    )
    follow_search: float = Field(
        0.5,
        ge=0.0,
        description="how far a followed box is searched for, as a share of its size on each side",
    )


@dataclass(frozen=True)
class _Name:
    brand_id: str
    key: str  # letters and digits, case folded


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


class OcrDetector(Detector):
    """Reads text and reports the brands it names.

    Score of a detection: the recognition confidence times how closely the name was read
    (1 for an exact match).
    """

    name = "ocr"
    Params = OcrParams
    params: OcrParams
    # RapidOCR is an optional extra: in the default set where it is installed
    needs_weights = True

    def __init__(self, catalog: BrandCatalog, params: OcrParams | None = None):
        super().__init__(catalog, params)
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:
            raise DetectorError(f"the ocr detector needs rapidocr-onnxruntime: {e}") from None
        threads = self.params.threads or -1
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)
        self._build(catalog)

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            return "rapidocr-onnxruntime is not installed (pip install rapidocr-onnxruntime)"
        return None

    def _build(self, catalog: BrandCatalog) -> None:
        p = self.params
        self._names = [_Name(b.id, _key(n)) for b in catalog for n in b.names if len(_key(n)) >= p.min_name_length]
        log.info("ocr: %d names of %d brands", len(self._names), len(catalog))

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        """Names read on the batch's key frames, followed on the frames between."""
        results = empty_results(batch)
        # shots not known (`shots.enabled` off): every frame may be a new picture, and is read
        cuts = batch.cuts if len(batch.cuts) == len(batch) else np.ones(len(batch), bool)
        follow: list[Found] = []
        gray_before: np.ndarray | None = None
        read_at = -np.inf
        for k, (rgb, result) in enumerate(zip(batch.frames, results)):
            t = float(batch.times[k])
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if k == 0 or cuts[k] or t - read_at >= self.params.read_every_s - 1e-6:
                found = self.detect_frame(rgb)
                read_at = t
            else:
                assert gray_before is not None
                found = [f for f in (self._follow(f, gray_before, gray) for f in follow) if f is not None]
            follow, gray_before = found, gray
            result.detections = [self.detection(f.label, f.score, f.box, batch.size) for f in found]
        return results

    def _follow(self, f: Found, before: np.ndarray, now: np.ndarray) -> Found | None:
        """The name's box found again in the next frame by template matching, or None."""
        if f.box is None:
            return None
        p = self.params
        h, w = now.shape
        x0, y0, x1, y1 = (int(round(v)) for v in f.box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        bw, bh = x1 - x0, y1 - y0
        if bw < 4 or bh < 4:
            return None
        mx, my = int(bw * p.follow_search) + 1, int(bh * p.follow_search) + 1
        sx0, sy0, sx1, sy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
        template = before[y0:y1, x0:x1]
        if float(template.std()) < 1.0:
            return None  # a flat patch matches anything
        scores = cv2.matchTemplate(now[sy0:sy1, sx0:sx1], template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < p.follow_min_similarity:
            return None
        nx, ny = sx0 + bx, sy0 + by
        return Found(f.label, f.score * best, (float(nx), float(ny), float(nx + bw), float(ny + bh)))

    def detect_frame(self, rgb: np.ndarray) -> list[Found]:
        """The brands named in one frame, with boxes in its pixels."""
        if not self._names:
            return []
        p = self.params
        height, width = rgb.shape[:2]
        small, scale = to_working(rgb, p.working_long_side)
        lines, _ = self._engine(np.ascontiguousarray(small[..., ::-1]))  # the engine wants BGR
        found: dict[tuple[str, tuple[int, ...]], Found] = {}
        for quad, text, conf in lines or []:
            conf = float(conf)
            if conf < p.min_text_score:
                continue
            quad = np.asarray(quad, np.float32) / scale
            for brand_id, closeness, span in self._names_in(text):
                box = clip_box(_span_box(quad, span), width, height)
                f = Found(brand_id, conf * closeness, box)
                key = (brand_id, tuple(round(v) for v in box))
                if key not in found or found[key].score < f.score:
                    found[key] = f
                log.debug("read %r: %s (%.2f)", text, brand_id, f.score)
        return list(found.values())

    def _names_in(self, text: str) -> list[tuple[str, float, tuple[float, float]]]:
        """(brand id, closeness, (start, end) share of the line) for each brand the line names."""
        p = self.params
        line = _key(text)
        if not line:
            return []
        out: dict[str, tuple[float, tuple[float, float]]] = {}
        for name in self._names:
            at = line.find(name.key)
            if at >= 0:
                hit = (1.0, (at / len(line), (at + len(name.key)) / len(line)))
            else:
                # a misread name: the whole line, or a window of the line as long as the name
                best, where = 0.0, (0.0, 1.0)
                n = len(name.key)
                for start in range(0, max(1, len(line) - n + 1)):
                    window = line[start : start + n] if len(line) > n else line
                    r = difflib.SequenceMatcher(None, window, name.key).ratio()
                    if r > best:
                        best, where = r, (start / len(line), min(1.0, (start + n) / len(line)))
                if best < p.min_name_similarity:
                    continue
                hit = (best, where)
            if name.brand_id not in out or out[name.brand_id][0] < hit[0]:
                out[name.brand_id] = hit
        return [(b, c, span) for b, (c, span) in out.items()]


def _span_box(quad: np.ndarray, span: tuple[float, float]) -> Box:
    """The axis-aligned box of the part of a text line's quadrilateral (top-left, top-right,
    bottom-right, bottom-left) between two shares of its length."""
    tl, tr, br, bl = quad
    a, b = span
    pts = np.stack([tl + (tr - tl) * a, tl + (tr - tl) * b, bl + (br - bl) * a, bl + (br - bl) * b])
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return (float(x0), float(y0), float(x1), float(y1))
