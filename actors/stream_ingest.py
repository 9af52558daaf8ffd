"""StreamIngest: decodes one source into FrameBatches in the object store, sends them to the
detector deployments (a bounded number in flight), and passes what comes back through the
stream's `StageChain` (merge, tracking, exposure), the same chain every runner uses.

For files the ingest waits for the oldest batch in flight before decoding more: nothing is
dropped and nothing queues without bound. Results are yielded batch by batch in time order,
whatever order the detectors finish in; `report()` gives the exposure of what was yielded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import ray
from ray.serve.handle import DeploymentHandle

from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain, file_batches
from media_ray.config import MediaRayConfig
from media_ray.exposure import ExposureReport
from media_ray.model import FrameBatch, FrameResult

log = logging.getLogger(__name__)

_DONE = object()


@ray.remote
class StreamIngest:
    def __init__(
        self,
        stream_id: str,
        uri: str,
        config: MediaRayConfig,
        detectors: dict[str, DeploymentHandle],
        catalog: BrandCatalog | None = None,
    ):
        if not detectors:
            raise ValueError("StreamIngest needs at least one detector")
        self.stream_id = stream_id
        self.uri = uri
        self.sampling = config.sampling
        self.detectors = detectors
        self.max_in_flight = config.pipeline.max_in_flight
        self.chain = StageChain.for_files(config, catalog)
        self.frames_sent = 0
        self.frames_done = 0
        self.peak_in_flight = 0

    async def run(self):
        """Yields, per FrameBatch and in order, the list of FrameResults now ready (the
        tracker may hold a few back: they come with a later batch, or last)."""
        batches = file_batches(self.uri, self.stream_id, self.sampling)
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
        yield self.chain.finish()
        log.info("stream %s: %d frames analysed", self.stream_id, self.frames_sent)

    async def _next(self, in_flight: deque) -> list[FrameResult]:
        batch, per_detector = await in_flight.popleft()
        self.frames_done += len(batch)
        return self.chain.push(batch, per_detector)

    def status(self) -> dict:
        return {
            "stream_id": self.stream_id,
            "frames_sent": self.frames_sent,
            "frames_done": self.frames_done,
            "peak_in_flight": self.peak_in_flight,
            "max_in_flight": self.max_in_flight,
        }

    def report(self, video: str, duration_s: float | None = None) -> ExposureReport:
        """Exposure of the results yielded so far."""
        return self.chain.report(video, duration_s)

    async def _detect(self, batch: FrameBatch) -> tuple[FrameBatch, list[list[FrameResult]]]:
        ref = ray.put(batch)
        return batch, list(await asyncio.gather(*(h.remote(ref) for h in self.detectors.values())))
