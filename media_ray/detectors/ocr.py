"""The `ocr` detector: a brand reported where its name (or an alias) is read in the frame.

Text is found and read by RapidOCR (`rapidocr-onnxruntime`: PP-OCR detection and recognition
models run by ONNX Runtime; the models ship inside the wheel, so nothing is downloaded at run
time). A line of text names a brand when, compared letters and digits only and case folded,
the brand's name or an alias is in it, or it is the name with a letter or two misread. The box
is the part of the line's box that the name takes (by its share of the line's characters),
grown to the brand's whole mark as its reference image lays it out around the name
(`mark_box`): the name under an emblem, the word inside a swoosh. Each reference is read once
when the detector is built; a brand whose name is not read there, or whose mark would grow
the word's box more than `max_mark_growth` times, keeps the word's box. A mark much larger
than its name (`layout_check_growth`) is boxed only where it is seen laid out so: its own
keypoints beyond the name found where the layout puts them (`media_ray.detectors.ocr_layout`);
elsewhere (another design, the name alone on a sign or a can) the name is reported without a
box, which counts for presence and exposure but claims no place on the screen.

Reading costs about 0.6 s a 1280x720 frame on two CPU cores, so a batch is read only on its
*key frames*: its first frame, the first frame of each shot (`FrameBatch.cuts`), and one
every `read_every_s` seconds of video (2 by default). On the frames between, each name read is followed by
template matching of its box (normalised cross-correlation in a window around it), and kept
only while it matches; a cut ends it. A live stream's batches (`FrameBatch.live`, one frame
each, for latency) go on from the stream's previous batch when this detector took it, so a
live stream is read every `read_every_s` too, not at every frame. So it is in the default set wherever RapidOCR is
installed (the `ocr` extra).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
from pydantic import Field

from media_ray.boxes import Box, clip_box, to_working
from media_ray.catalog import BrandCatalog
from media_ray.detectors import Detector, DetectorError, DetectorParams, Found
from media_ray.detectors.ocr_layout import LayoutCheck, MarkLayout
from media_ray.detectors.reference_views import foreground
from media_ray.model import FrameBatch, FrameResult, empty_results

log = logging.getLogger(__name__)

#: a reference image is read with its long side enlarged to this, inside a margin of this share
_READ_REFERENCE_AT = 480
_READ_REFERENCE_PAD = 0.15


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
    whole_words: bool = Field(
        True,
        description="a name is read only as whole words of a line ('Red Bull', 'RedBull'), not inside "
        "a longer word ('Intelligence' does not name Intel, 'Googleplex' not Google)",
    )
    min_name_length: int = Field(
        3,
        ge=1,
        description="names shorter than this (in letters and digits) are not looked for: "
        "they turn up inside too many words",
    )
    threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime threads; 0: as many as OpenCV has in this process, which a "
        "replica sets to its CPUs and a local run to the detectors' share of the cores",
    )
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
    mark_box: bool = Field(
        True,
        description="report the brand's whole mark, placed around the name read as in its reference "
        "image, rather than the word's own box",
    )
    max_mark_growth: float = Field(
        12.0,
        ge=1.0,
        description="largest area, in word boxes, of a mark grown from a name; beyond it the "
        "word's box is kept (a name that is a small part of its reference says little about the rest)",
    )
    follow_long_side: int = Field(
        640,
        ge=64,
        description="frames are followed (template matching) with their long side at most this; "
        "boxes are mapped back to source pixels",
    )
    follow_search: float = Field(
        0.5,
        ge=0.0,
        description="how far a followed box is searched for, as a share of its size on each side",
    )
    layout_check_growth: float = Field(
        1.5,
        ge=1.0,
        description="a mark laid out over more than this many name boxes is boxed only where "
        "the reference's own keypoints beyond the name are found where the layout puts them "
        "(`layout_min_points`); elsewhere the name is reported without a box",
    )
    layout_min_points: int = Field(
        2,
        ge=0,
        description="keypoints of the mark beyond its name (RootSIFT, ratio test) that must be "
        "found where the layout puts them; 0 trusts every layout",
    )
    layout_tolerance: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="how far from where the layout puts it a keypoint may be found, as a share of the mark's diagonal",
    )
    layout_long_side: int = Field(
        200, ge=32, description="the mark and the frame around it are compared with the mark's long side scaled to this"
    )


@dataclass(frozen=True)
class _Name:
    brand_id: str
    key: str  # letters and digits, case folded


class _Seen(NamedTuple):
    """A name read (or followed) in a frame: what is reported, and the box that is followed."""

    label: str
    score: float
    box: Box | None  # reported: the mark's, the name's, or None where the mark is not seen
    follow: Box  # the reported box, or the name's where none is reported


@dataclass
class _LiveState:
    """Where a live stream's last batch left its names: followed into the next batch."""

    seq: int
    read_at: float
    found: list[_Seen]
    gray: np.ndarray


#: live streams whose last names a detector keeps (the oldest forgotten first)
_LIVE_STREAMS_KEPT = 256


def _with_memory_arena(engine) -> None:
    """The engine's ONNX Runtime sessions made again with the CPU memory arena on.

    RapidOCR turns the arena off, so every run allocates its tensors afresh; with it on, the
    text detection model runs 17 % faster on one core (138 vs 167 ms at 960x544, the same
    outputs, measured side by side). A session whose model path is not known is left as it is.
    """
    import onnxruntime as ort

    for part in ("text_det", "text_cls", "text_rec"):
        component = getattr(engine, part, None)
        for attr in ("infer", "session"):
            holder = getattr(component, attr, None)
            if holder is None:
                continue
            session = getattr(holder, "session", None)
            path = getattr(session, "_model_path", None)
            if not isinstance(session, ort.InferenceSession) or not isinstance(path, str):
                continue
            options = session.get_session_options()
            if options.enable_cpu_mem_arena:
                continue
            options.enable_cpu_mem_arena = True
            providers = list(session.get_provider_options().items())
            holder.session = ort.InferenceSession(path, sess_options=options, providers=providers)


#: a word of a line read: letters and digits (of any script) between the rest
_WORD = re.compile(r"[^\W_]+")


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
        self._make_engine = RapidOCR
        self._engine = None
        self._engine_threads = 0
        self._build(catalog)

    def _reader(self):
        """The RapidOCR engine, made again when the threads it should use change: its ONNX
        Runtime threads are fixed when it is made, and two spinning pools on a few cores
        (detectors side by side) cost more than they give (set 9.8 -> 11.3 frames/s on 2 cores,
        measured)."""
        threads = self.params.threads or max(1, cv2.getNumThreads())
        if self._engine is None or threads != self._engine_threads:
            # text is found at the working resolution: the engine's own default enlarges every
            # picture to a short side of 736 first, which costs more than reading a 720p frame
            self._engine = self._make_engine(
                intra_op_num_threads=threads,
                inter_op_num_threads=threads,
                det_limit_side_len=self.params.working_long_side,
                det_limit_type="max",
            )
            _with_memory_arena(self._engine)
            self._engine_threads = threads
        return self._engine

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            return "rapidocr-onnxruntime is not installed (pip install rapidocr-onnxruntime)"
        return None

    def _build(self, catalog: BrandCatalog) -> None:
        p = self.params
        # names followed from a live stream's last batch are of the catalogue they were read with
        self._live: OrderedDict[str, _LiveState] = OrderedDict()
        self._names = [_Name(b.id, _key(n)) for b in catalog for n in b.names if len(_key(n)) >= p.min_name_length]
        #: the mark's bounds around its name, in units of the name's box: (left, top, right, bottom)
        self._layouts: dict[str, Box] = {}
        #: the marks whose layout is checked in the frame before their box is reported
        self._marks: dict[str, MarkLayout] = {}
        self._check = LayoutCheck(p.layout_tolerance, p.layout_long_side)
        if p.mark_box:
            for brand in catalog:
                laid_out = self._layout(brand)
                if laid_out is None:
                    continue
                layout, rgba = laid_out
                self._layouts[brand.id] = layout
                if p.layout_min_points > 0 and _growth(layout) > p.layout_check_growth:
                    checked = self._check.mark(rgba, layout)
                    if checked is not None:
                        self._marks[brand.id] = checked
        log.info(
            "ocr: %d names of %d brands; %d marks laid out around their names",
            len(self._names),
            len(catalog),
            len(self._layouts),
        )

    def _layout(self, brand) -> tuple[Box, np.ndarray] | None:
        """Where the brand's mark lies around its name in the first of its reference images
        that the name is read in, in units of the name's box, and that image; None where none
        is, or where the mark is more than `max_mark_growth` name boxes."""
        for rgba in brand.images:
            h, w = rgba.shape[:2]
            s = max(1.0, _READ_REFERENCE_AT / max(h, w))  # small references are read enlarged
            mask = foreground(rgba)
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            pad = round(_READ_REFERENCE_PAD * max(h, w) * s)
            bounds = (xs.min() * s + pad, ys.min() * s + pad, (xs.max() + 1) * s + pad, (ys.max() + 1) * s + pad)
            alpha = rgba[..., 3:].astype(np.float32) / 255.0
            for ground in (255, 0):  # a white mark is read on black
                flat = (rgba[..., :3] * alpha + ground * (1.0 - alpha)).astype(np.uint8)
                flat = cv2.resize(flat, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
                flat = cv2.copyMakeBorder(flat, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(ground,) * 3)
                found = [f for f in self._read(flat, mark=False) if f.label == brand.id]
                if not found:
                    continue
                x0, y0, x1, y1 = max(found, key=lambda f: f.score).follow
                ww, wh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
                layout = (
                    float((bounds[0] - x0) / ww),
                    float((bounds[1] - y0) / wh),
                    float((bounds[2] - x0) / ww),
                    float((bounds[3] - y0) / wh),
                )
                if _growth(layout) > self.params.max_mark_growth:
                    log.info("ocr: %s: its name is too small a part of its mark to place it", brand.id)
                    return None
                return layout, rgba
        log.info("ocr: %s: its name is not read in its reference images; the word's box is reported", brand.id)
        return None

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        """Names read on the batch's key frames, followed on the frames between."""
        results = empty_results(batch)
        # shots not known (`shots.enabled` off): every frame may be a new picture, and is read
        cuts = batch.cuts if len(batch.cuts) == len(batch) else np.ones(len(batch), bool)
        follow: list[_Seen] = []
        gray_before: np.ndarray | None = None
        read_at = -np.inf
        before = self._live.pop(batch.stream_id, None) if batch.live else None
        if before is not None and before.seq == batch.seq - 1:
            follow, gray_before, read_at = before.found, before.gray, before.read_at
        for k, (rgb, result) in enumerate(zip(batch.frames, results)):
            t = float(batch.times[k])
            gray, scale = to_working(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.params.follow_long_side)
            fresh = gray_before is None or gray_before.shape != gray.shape or cuts[k]
            if fresh or t - read_at >= self.params.read_every_s - 1e-6:
                found = self._read(rgb, mark=True)
                read_at = t
            else:
                assert gray_before is not None
                found = [f for f in (self._follow(f, gray_before, gray, scale) for f in follow) if f is not None]
            follow, gray_before = found, gray
            result.detections = [self.detection(f.label, f.score, f.box, batch.size) for f in found]
        if batch.live and gray_before is not None:
            self._live[batch.stream_id] = _LiveState(batch.seq, read_at, follow, gray_before)
            while len(self._live) > _LIVE_STREAMS_KEPT:
                self._live.popitem(last=False)
        return results

    def _follow(self, f: _Seen, before: np.ndarray, now: np.ndarray, scale: float) -> _Seen | None:
        """The name's box found again in the next frame by template matching, or None. The
        frames are grey, at `scale` of the source; boxes are in source pixels."""
        p = self.params
        h, w = now.shape
        x0, y0, x1, y1 = (int(round(v * scale)) for v in f.follow)
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
        # the box moves by what the template did; its size stays that of the box followed
        dx, dy = (sx0 + bx - x0) / scale, (sy0 + by - y0) / scale
        size = round(w / scale), round(h / scale)

        def moved(b: Box) -> Box:
            return clip_box((b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), *size)

        return _Seen(f.label, f.score * best, None if f.box is None else moved(f.box), moved(f.follow))

    def detect_frame(self, rgb: np.ndarray) -> list[Found]:
        """The brands named in one frame, with boxes in its pixels (None where the mark laid
        out around a name is not seen)."""
        return [Found(f.label, f.score, f.box) for f in self._read(rgb, mark=True)]

    def _read(self, rgb: np.ndarray, mark: bool) -> list[_Seen]:
        """The brands named in a picture, each with the box of its name, or of its mark (`mark`)
        where the mark's layout is known (and, for a mark much larger than its name, seen:
        `media_ray.detectors.ocr_layout`; without a box where it is not)."""
        if not self._names:
            return []
        p = self.params
        height, width = rgb.shape[:2]
        small, scale = to_working(rgb, p.working_long_side)
        lines, _ = self._reader()(np.ascontiguousarray(small[..., ::-1]))  # the engine wants BGR
        found: dict[tuple[str, tuple[int, ...]], _Seen] = {}
        gray: np.ndarray | None = None
        for quad, text, conf in lines or []:
            conf = float(conf)
            if conf < p.min_text_score:
                continue
            quad = np.asarray(quad, np.float32) / scale
            for brand_id, closeness, span in self._names_in(text):
                word = _span_box(quad, span)
                box: Box | None = word
                follow = word
                layout = self._layouts.get(brand_id) if mark else None
                if layout is not None:
                    grown = _grown(word, layout)
                    checked = self._marks.get(brand_id)
                    seen = p.layout_min_points
                    if checked is not None:
                        if gray is None:
                            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                        seen = self._check.points_seen(gray, checked, grown)
                    if seen >= p.layout_min_points:
                        box = follow = grown
                    else:  # the name is there; its mark, as the reference lays it out, is not
                        log.debug("read %r: %s's mark not seen around it (%d points)", text, brand_id, seen)
                        box = None
                follow = clip_box(follow, width, height)
                box = None if box is None else clip_box(box, width, height)
                f = _Seen(brand_id, conf * closeness, box, follow)
                key = (brand_id, tuple(round(v) for v in follow))
                if key not in found or found[key].score < f.score:
                    found[key] = f
                log.debug("read %r: %s (%.2f)", text, brand_id, f.score)
        return list(found.values())

    def _names_in(self, text: str) -> list[tuple[str, float, tuple[float, float]]]:
        """(brand id, closeness, (start, end) share of the line) for each brand the line names."""
        words = _WORD.findall(text.casefold())
        line = "".join(words)
        if not line:
            return []
        # where the line's words start and end, in its letters and digits: a name is a run of
        # whole words ("Red Bull", "RedBull"), not a part of one ("Intelligence", "Brand 10")
        ends = np.cumsum([0] + [len(w) for w in words]).tolist()
        runs = [(a, b) for i, a in enumerate(ends) for b in ends[i + 1 :]]
        spans = self._spans(line, runs)
        out: dict[str, tuple[float, tuple[float, float]]] = {}
        taken: list[tuple[int, int]] = []  # the spans that read a name exactly
        for name in self._names:
            exact = [(a, b) for a, b in spans[len(name.key)] if line[a:b] == name.key]
            if exact:
                a, b = exact[0]
                taken.append((a, b))
                self._keep(out, name.brand_id, 1.0, (a / len(line), b / len(line)))
        misread = self._misreads(line, spans, taken, set(out))
        for brand_id, closeness, (a, b) in misread:
            # a span as close to another brand's name says neither ("Brand" read for "Brand 1"..."Brand 9")
            rivals = [c for other, c, (oa, ob) in misread if other != brand_id and oa < b and a < ob]
            if all(closeness > c for c in rivals):
                self._keep(out, brand_id, closeness, (a / len(line), b / len(line)))
        return [(b, c, span) for b, (c, span) in out.items()]

    def _spans(self, line: str, runs: list[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
        """Per length of a name, the spans of the line it may be read in: runs of whole words
        about as long (`whole_words`), else every window of the line as long, or the whole line."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for n in {len(name.key) for name in self._names}:
            if self.params.whole_words:
                spans[n] = [(a, b) for a, b in runs if abs((b - a) - n) <= max(1, n // 4)]
            else:
                spans[n] = [(a, min(len(line), a + n)) for a in range(max(1, len(line) - n + 1))]
        return spans

    def _misreads(
        self, line: str, spans: dict[int, list[tuple[int, int]]], taken: list[tuple[int, int]], read: set[str]
    ) -> list[tuple[str, float, tuple[int, int]]]:
        """(brand id, closeness, span) of the names not read exactly (`read`) but misread: the
        span closest to each, among those that read no name exactly (`taken`: "Brand 10" is no
        misread "Brand 1"), where it is close enough."""
        misread: list[tuple[str, float, tuple[int, int]]] = []
        for name in self._names:
            if name.brand_id in read:
                continue
            best, where = 0.0, (0, len(line))
            for a, b in spans[len(name.key)]:
                if any(a < tb and ta < b for ta, tb in taken):
                    continue
                r = difflib.SequenceMatcher(None, line[a:b], name.key).ratio()
                if r > best:
                    best, where = r, (a, b)
            if best >= self.params.min_name_similarity:
                misread.append((name.brand_id, best, where))
        return misread

    @staticmethod
    def _keep(out: dict[str, tuple[float, tuple[float, float]]], brand_id: str, closeness: float, span) -> None:
        """A brand's name read in a span, kept where it is the closest reading of the brand."""
        if brand_id not in out or out[brand_id][0] < closeness:
            out[brand_id] = (closeness, span)


def _growth(layout: Box) -> float:
    """The area of a mark laid out around its name, in name boxes."""
    return float((layout[2] - layout[0]) * (layout[3] - layout[1]))


def _grown(box: Box, layout: Box) -> Box:
    """A name's box grown to its mark's, by the mark's layout in units of the name's box."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (x0 + layout[0] * w, y0 + layout[1] * h, x0 + layout[2] * w, y0 + layout[3] * h)


def _span_box(quad: np.ndarray, span: tuple[float, float]) -> Box:
    """The axis-aligned box of the part of a text line's quadrilateral (top-left, top-right,
    bottom-right, bottom-left) between two shares of its length."""
    tl, tr, br, bl = quad
    a, b = span
    pts = np.stack([tl + (tr - tl) * a, tl + (tr - tl) * b, bl + (br - bl) * a, bl + (br - bl) * b])
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return (float(x0), float(y0), float(x1), float(y1))
