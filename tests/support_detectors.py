"""Detectors for tests only, loaded by import path (`support_detectors:Name`)."""

from __future__ import annotations

import time

from pydantic import Field

from media_ray.detectors import Detector, DetectorParams
from media_ray.model import Detection, FrameBatch, FrameResult, empty_results


class DelayParams(DetectorParams):
    slow_seconds: float = Field(0.8, description="delay for even-numbered batches")


class DelayDetector(Detector):
    """Labels every frame with its own index; even-numbered batches take
    longer, so with two replicas later batches finish before earlier ones."""

    name = "delay"
    Params = DelayParams

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        if batch.seq % 2 == 0:
            time.sleep(self.params.slow_seconds)
        results = empty_results(batch)
        for r in results:
            r.detections.append(Detection(label=f"frame-{r.frame}", score=1.0, detector=self.name))
        return results


class WhereDetector(Detector):
    """Reports, on every frame, the Ray node its replica runs on (label `node:<id>`)."""

    name = "where"

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        results = empty_results(batch)
        for r in results:
            r.detections.append(Detection(label=f"node:{node}", score=1.0, detector=self.name))
        return results
