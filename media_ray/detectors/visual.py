"""Per-frame visual measurements: dominant colours, brightness, contrast, saturation.

These are signals, not detections: they go into `FrameResult.signals["visual"]`.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from media_ray.detectors import Detector, DetectorParams
from media_ray.model import FrameBatch, FrameResult, empty_results


class VisualParams(DetectorParams):
    colours: int = Field(5, ge=1, le=16, description="dominant colours reported per frame")
    work_width: int = Field(160, ge=16, description="frames are measured at this width")
    seed: int = Field(0, description="k-means seed, for repeatable colours")


class VisualDetector(Detector):
    """Measures every frame; reports no detections, so it runs over the batch itself and puts
    its measurements in each result's `signals` instead of implementing `detect_frame`."""

    name = "visual"
    Params = VisualParams
    params: VisualParams

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        results = empty_results(batch)
        for frame, result in zip(batch.frames, results):
            result.signals["visual"] = self.measure(frame)
        return results

    def measure(self, rgb: np.ndarray) -> dict:
        p = self.params
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (p.work_width, max(1, round(h * p.work_width / w))), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        return {
            "brightness": round(float(gray.mean()), 4),
            "contrast": round(float(gray.std()), 4),
            "saturation": round(float(hsv[..., 1].mean()) / 255.0, 4),
            "dominant_colours": self._dominant(small),
        }

    def _dominant(self, small: np.ndarray) -> list[dict]:
        p = self.params
        pixels = small.reshape(-1, 3).astype(np.float32)
        k = min(p.colours, len(pixels))
        cv2.setRNGSeed(p.seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        # some OpenCV stubs want a bestLabels array; OpenCV takes None (no initial labels)
        kmeans = cv2.kmeans(pixels, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload, unused-ignore]
        _, labels, centres = kmeans
        counts = np.bincount(labels.ravel(), minlength=k)
        order = np.argsort(-counts)
        return [
            {
                "hex": "".join(f"{int(round(c)):02x}" for c in centres[i]),
                "share": round(float(counts[i]) / len(pixels), 4),
            }
            for i in order
        ]
