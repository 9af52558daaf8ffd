"""StreamIngest: decodes one source into FrameBatches in the object store and sends them to
the detector deployments, keeping a bounded number in flight.

For files the ingest waits for the oldest batch in flight before decoding more: nothing is
dropped and nothing queues without bound. Results are yielded batch by batch in time order,
whatever order the detectors finish in.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

import ray
from ray.serve.handle import DeploymentHandle

from media_ray.config import SamplingConfig
from media_ray.tracking import DetectionTracker, TrackingConfig
from media_ray.model import FrameBatch, FrameResult
from media_ray.pipeline import merge_results
from media_ray.sources import batched, decode

log = logging.getLogger(__name__)

_DONE = object()


@ray.remote
class StreamIngest:
    def __init__(self, stream_id: str, uri: str, sampling: SamplingConfig,
                 detectors: dict[str, DeploymentHandle], max_in_flight: int,
                 tracking: TrackingConfig | None = None):
        if not detectors:
            raise ValueError("StreamIngest needs at least one detector")
        self.stream_id = stream_id
        self.uri = uri
        self.sampling = sampling
        self.detectors = detectors
        self.max_in_flight = max_in_flight
        self.frames_sent = 0
        self.frames_done = 0
        self.peak_in_flight = 0
        # results in time order pass through the tracker, which may hold a few frames back
        self.tracker = DetectionTracker(tracking) if tracking is not None and tracking.enabled else None

    async def run(self):
        """Yields, per FrameBatch and in order, the list of merged FrameResults."""
        batches = batched(decode(self.uri, self.sampling.fps, self.sampling.decode_threads),
                          self.stream_id, self.sampling.batch_size)
        in_flight: deque[asyncio.Future] = deque()
        while True:
            # decoding blocks; a worker thread keeps the actor's event loop free
            batch = await asyncio.to_thread(next, batches, _DONE)
            if batch is _DONE:
                break
            in_flight.append(asyncio.ensure_future(self._detect(batch)))
            self.frames_sent += len(batch)
            self.peak_in_flight = max(self.peak_in_flight, len(in_flight))
            if len(in_flight) >= self.max_in_flight:
                yield await self._next(in_flight)
        while in_flight:
            yield await self._next(in_flight)
        if self.tracker is not None:
            yield self.tracker.flush()
        log.info("stream %s: %d frames analysed", self.stream_id, self.frames_sent)

    async def _next(self, in_flight: deque) -> list[FrameResult]:
        results = await in_flight.popleft()
        self.frames_done += len(results)
        if self.tracker is None:
            return results
        return [ready for r in results for ready in self.tracker.push(r)]

    def status(self) -> dict:
        return {"stream_id": self.stream_id, "frames_sent": self.frames_sent,
                "frames_done": self.frames_done, "peak_in_flight": self.peak_in_flight,
                "max_in_flight": self.max_in_flight}

    async def _detect(self, batch: FrameBatch) -> list[FrameResult]:
        ref = ray.put(batch)
        per_detector = await asyncio.gather(*(h.remote(ref) for h in self.detectors.values()))
        return merge_results(per_detector)
