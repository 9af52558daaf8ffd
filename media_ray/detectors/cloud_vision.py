"""The `cloud_vision` detector: logos found by Google Cloud Vision (LOGO_DETECTION), kept where
they name a brand of the catalogue.

Each frame the request budget allows is sent, as a JPEG with its long side at most `max_side`,
in calls of up to `images_per_call` images (`images:annotate`, the REST transport of
`google-cloud-vision`, the `gcp` extra). A logo Vision names is a brand of the catalogue when
its description is the brand's name or one of its aliases, compared letters and digits only and
case folded; any other logo is dropped. Its box is the bounding polygon's vertices, from the
sent image's pixels to the source's.

It costs money per image, so it is not in the default set (`--detectors cloud_vision`) and
it has a budget: `frames_per_minute` (a sliding minute of wall-clock time) and
`frames_per_day` (a UTC day), per replica. A frame over budget is not sent: it is counted
(`skipped`), logged, and its result carries `signals["cloud_vision"] = {"skipped": "minute" |
"day"}`, which `analyze` writes to signals.jsonl. Its placement is the cloud tier's by default
(`MediaRayConfig.detector_tiers`).

Credentials are Application Default Credentials (`credentials: default`), or none
(`anonymous`, for a local endpoint); `endpoint` (config or
`MEDIA_RAY_DETECTORS__CLOUD_VISION__ENDPOINT`) replaces Google's.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from media_ray.boxes import Box, to_source, to_working
from media_ray.catalog import BrandCatalog
from media_ray.detectors import Detector, DetectorError, DetectorParams
from media_ray.model import Detection, FrameBatch, FrameResult, empty_results

log = logging.getLogger(__name__)

_NO_CREDENTIALS = (
    "no Google Cloud credentials (set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth "
    "application-default login`; `detectors.cloud_vision.credentials: anonymous` for a local endpoint)"
)


class CloudVisionParams(DetectorParams):
    endpoint: str | None = Field(
        None,
        description="the Vision API endpoint, `host:port` or a URL (a regional endpoint, a local "
        "fake); unset: Google's",
    )
    credentials: Literal["default", "anonymous"] = Field(
        "default",
        description="`default`: Application Default Credentials; `anonymous`: none (a local endpoint)",
    )
    max_results: int = Field(10, ge=1, le=100, description="logos Vision returns a frame at most")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="score a logo needs to be reported")
    max_side: int = Field(1280, ge=64, description="frames are sent with their long side at most this (never enlarged)")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the frames sent")
    images_per_call: int = Field(16, ge=1, le=16, description="frames sent in one call (Vision takes 16)")
    frames_per_minute: int = Field(
        60, ge=0, description="frames sent in any minute (wall clock) at most; more are skipped"
    )
    frames_per_day: int = Field(2000, ge=0, description="frames sent in a UTC day at most; more are skipped")
    timeout_s: float = Field(30.0, gt=0, description="time a call may take")


class RequestBudget:
    """How many frames may be sent: at most `per_minute` in any 60 s and `per_day` in a UTC day.

    `take()` is None when a frame may be sent (and counts it), else which limit it is over:
    `"minute"` or `"day"`. `clock()` gives seconds since the epoch.
    """

    def __init__(self, per_minute: int, per_day: int, clock: Callable[[], float] = time.time):
        self.per_minute = per_minute
        self.per_day = per_day
        self.clock = clock
        self._minute: deque[float] = deque()
        self._day = -1
        self._today = 0

    def take(self) -> Literal["minute", "day"] | None:
        now = self.clock()
        day = int(now // 86_400)
        if day != self._day:
            self._day, self._today = day, 0
        while self._minute and self._minute[0] <= now - 60.0:
            self._minute.popleft()
        if self._today >= self.per_day:
            return "day"
        if len(self._minute) >= self.per_minute:
            return "minute"
        self._minute.append(now)
        self._today += 1
        return None


def brand_key(text: str) -> str:
    """A name as it is compared: letters and digits only, case folded."""
    return re.sub(r"[\W_]+", "", text.casefold())


def polygon_box(vertices, scale: float) -> Box | None:
    """The box around a bounding polygon's vertices (a missing coordinate is 0, as Vision omits
    zeros) at `scale` of the source, in source pixels; None without vertices."""
    points = [(float(v.x or 0), float(v.y or 0)) for v in vertices]
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return to_source((min(xs), min(ys), max(xs), max(ys)), scale)


class CloudVisionDetector(Detector):
    name = "cloud_vision"
    Params = CloudVisionParams
    params: CloudVisionParams
    needs_weights = True  # a library and credentials
    in_default_set = False  # it costs money: only when named

    def __init__(
        self,
        catalog: BrandCatalog,
        params: CloudVisionParams | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(catalog, params)
        reason = self.unavailable_reason(self.params)
        if reason:
            raise DetectorError(f"detector 'cloud_vision' cannot run: {reason}")
        from google.cloud import vision

        self._vision = vision
        self.client = vision.ImageAnnotatorClient(
            transport="rest",
            client_options={"api_endpoint": self.params.endpoint} if self.params.endpoint else None,
            credentials=_credentials(self.params),
        )
        self.budget = RequestBudget(self.params.frames_per_minute, self.params.frames_per_day, clock)
        #: frames sent, and frames skipped by the limit they were over
        self.sent = 0
        self.skipped = {"minute": 0, "day": 0}
        self._brands: dict[str, str] = {}
        self._build(catalog)

    def _build(self, catalog: BrandCatalog) -> None:
        self._brands = {}
        for brand in catalog:
            for name in brand.names:
                self._brands.setdefault(brand_key(name), brand.id)

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        try:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import vision  # noqa: F401
        except ImportError:
            return "google-cloud-vision is not installed: pip install 'media-ray[gcp]'"
        if getattr(params, "credentials", "default") == "anonymous":
            return None
        try:
            google.auth.default()
        except DefaultCredentialsError:
            return _NO_CREDENTIALS
        return None

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        results = empty_results(batch)
        chosen = []
        for i, result in enumerate(results):
            over = self.budget.take()
            if over is None:
                chosen.append(i)
            else:
                self._skip(result, over)
        step = self.params.images_per_call
        for start in range(0, len(chosen), step):
            self._annotate(batch, chosen[start : start + step], results)
        return results

    def _skip(self, result: FrameResult, over: Literal["minute", "day"]) -> None:
        self.skipped[over] += 1
        result.signals[self.name] = {"skipped": over}
        limit = self.params.frames_per_minute if over == "minute" else self.params.frames_per_day
        first = self.skipped[over] == 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "cloud_vision: frame at %.2f s skipped, over the budget of %d frames a %s (%d skipped so far)",
            result.t,
            limit,
            over,
            self.skipped[over],
        )

    def _annotate(self, batch: FrameBatch, indices: list[int], results: list[FrameResult]) -> None:
        """One call for the frames at `indices`; their detections into `results`."""
        vision = self._vision
        feature = vision.Feature(type_=vision.Feature.Type.LOGO_DETECTION, max_results=self.params.max_results)
        requests, scales = [], []
        for i in indices:
            content, scale = self._jpeg(batch.frames[i])
            requests.append(vision.AnnotateImageRequest(image=vision.Image(content=content), features=[feature]))
            scales.append(scale)
        try:
            answer = self.client.batch_annotate_images(requests=requests, timeout=self.params.timeout_s)
        except Exception as e:  # google.api_core's errors: the run fails with Vision's own line
            raise RuntimeError(f"cloud_vision: the Vision API call failed: {_first_line(e)}") from None
        self.sent += len(indices)
        for i, scale, response in zip(indices, scales, answer.responses):
            if response.error.message:
                log.warning("cloud_vision: frame at %.2f s: %s", results[i].t, response.error.message)
                continue
            results[i].detections = self._found(response.logo_annotations, scale, batch.size)

    def _found(self, logos, scale: float, size: tuple[int, int]) -> list[Detection]:
        found = []
        for logo in logos:
            brand = self._brands.get(brand_key(logo.description))
            if brand is None:
                log.debug("cloud_vision: %r is no brand of the catalogue", logo.description)
                continue
            if logo.score < self.params.min_score:
                continue
            box = polygon_box(logo.bounding_poly.vertices, scale)
            found.append(self.detection(brand, logo.score, box, size))
        return found

    def _jpeg(self, rgb: np.ndarray) -> tuple[bytes, float]:
        small, scale = to_working(rgb, self.params.max_side)
        ok, data = cv2.imencode(
            ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.params.jpeg_quality]
        )
        if not ok:
            raise RuntimeError("cloud_vision: a frame could not be encoded as JPEG")
        return data.tobytes(), scale


def _credentials(params: CloudVisionParams):
    if params.credentials == "anonymous":
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    return None  # the client finds the Application Default Credentials


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
