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


class SlowParams(DetectorParams):
    seconds_per_batch: float = Field(0.3, description="time each batch takes")
    fail_at_frame: int = Field(-1, description="raise on a batch holding this frame; -1: never")


class SlowDetector(Detector):
    """A steady box on every frame but one in five at 5 frames/s (t*5 = 2 mod 5: a one-frame gap
    that tracking bridges), scored by the frame index; each batch takes `seconds_per_batch`. What it reports depends on
    the frame only, so a run that was disturbed must give exactly an undisturbed run's records."""

    name = "slow"
    Params = SlowParams

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        time.sleep(self.params.seconds_per_batch)
        if self.params.fail_at_frame in {int(i) for i in batch.indices}:
            raise ValueError(f"slow detector broken on purpose at frame {self.params.fail_at_frame}")
        results = empty_results(batch)
        for r in results:
            if round(r.t * 5) % 5 != 2:
                score = 0.5 + (r.frame % 7) / 20
                r.detections.append(Detection(label="steady", score=score, box=(10, 20, 50, 60), detector=self.name))
        return results
