"""StreamIngest: decodes one source into FrameBatches in the object store, sends them to the
detector deployments (a bounded number in flight), and passes what comes back through the
stream's `StageChain` (merge, tracking, exposure), the same chain every runner uses.

For files the ingest waits for the oldest batch in flight before decoding more: nothing is
dropped and nothing queues without bound. Results are yielded batch by batch in time order,
whatever order the detectors finish in; `report()` gives the exposure of what was yielded.

Faults. A detector replica that dies while it has a batch (killed, its process gone) makes the
call raise `ActorDiedError`; Serve starts a new replica, and the batch is sent again, up to
`pipeline.batch_retries` times with a doubling backoff (each retry is logged). Only the
death of the replica itself is retried: an error the detector raises fails the run with its
message. For the death of the ingest itself, `run(raw=True)` yields each batch's unmerged
results (`DetectedBatch`) to a driver that runs the chain on its side (`FileAnalysis`): the
chain's state never dies with the actor, and a restarted actor resumes with `first_seq`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle

from actors.metrics import StreamMetrics
from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain, file_batches
from media_ray.config import MediaRayConfig
from media_ray.exposure import ExposureReport
from media_ray.model import FrameBatch, FrameResult, mark_cuts
from media_ray.sources import DecodedTimeline, analysed_duration

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class DetectedBatch:
    """One batch's detector results, not merged yet, as `run(raw=True)` yields them; the last
    item of a run has no results and carries how far decoding got (`decoded`)."""

    seq: int
    per_detector: list[list[FrameResult]]
    arrival: np.ndarray
    decoded: DecodedTimeline | None = None


def replica_died(e: BaseException) -> bool:
    """Whether a call failed because the actor serving it died (worth retrying elsewhere), not
    because its code raised (a RayTaskError, which may even wrap an actor death of its own)."""
    return isinstance(e, RayActorError) and not isinstance(e, RayTaskError)


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
        self.shots = config.shots
        self.detectors = detectors
        self.max_in_flight = config.pipeline.max_in_flight
        self.batch_retries = config.pipeline.batch_retries
        self.retry_backoff_s = config.pipeline.retry_backoff_s
        self.chain = StageChain.for_files(config, catalog)
        self.timeline = DecodedTimeline()
        self.frames_sent = 0
        self.frames_done = 0
        self.peak_in_flight = 0
        self.retries = 0
        self.metrics = StreamMetrics(stream_id)

    async def run(self, first_seq: int = 0, raw: bool = False):
        """Yields, per FrameBatch and in order, the list of FrameResults now ready (the
        tracker may hold a few back: they come with a later batch, or last).

        With `raw`, yields a `DetectedBatch` per batch instead and leaves the chain to the
        caller; `first_seq` starts after the batches a caller already has."""
        self.timeline = DecodedTimeline()
        batches = file_batches(self.uri, self.stream_id, self.sampling, first_seq, self.timeline, self.shots)
        in_flight: deque[asyncio.Future] = deque()
        while True:
            # decoding blocks; a worker thread keeps the actor's event loop free
            batch = await asyncio.to_thread(next, batches, _DONE)
            if batch is _DONE:
                break
            in_flight.append(asyncio.ensure_future(self._detect(batch)))
            self.frames_sent += len(batch)
            self.metrics.decoded(len(batch))
            self.metrics.queue(None, len(in_flight))
            self.peak_in_flight = max(self.peak_in_flight, len(in_flight))
            if len(in_flight) >= self.max_in_flight:
                yield await self._next(in_flight, raw)
        while in_flight:
            yield await self._next(in_flight, raw)
        if raw:
            yield DetectedBatch(seq=-1, per_detector=[], arrival=np.zeros(0), decoded=self.timeline)
        else:
            yield self.chain.finish()
        log.info("stream %s: %d frames analysed", self.stream_id, self.frames_sent)

    async def _next(self, in_flight: deque, raw: bool) -> list[FrameResult] | DetectedBatch:
        batch, per_detector = await in_flight.popleft()
        self.frames_done += len(batch)
        self.metrics.analysed(len(batch))
        self.metrics.queue(None, len(in_flight))
        if raw:
            # the results carry the batch's cut flags, and the sharpness measured in its frames,
            # to the driver's chain
            per_detector = [mark_cuts(results, batch.cuts) for results in self.chain.measure(batch, per_detector)]
            return DetectedBatch(seq=batch.seq, per_detector=per_detector, arrival=batch.arrival)
        return self.chain.push(batch, per_detector)

    def status(self) -> dict:
        return {
            "stream_id": self.stream_id,
            "frames_sent": self.frames_sent,
            "frames_done": self.frames_done,
            "peak_in_flight": self.peak_in_flight,
            "max_in_flight": self.max_in_flight,
            "retries": self.retries,
        }

    def report(self, video: str, duration_s: float | None = None) -> ExposureReport:
        """Exposure of the results yielded so far; the duration is no more than decoding covered."""
        return self.chain.report(video, analysed_duration(duration_s, self.timeline))

    async def _detect(self, batch: FrameBatch) -> tuple[FrameBatch, list[list[FrameResult]]]:
        ref = ray.put(batch)
        calls = (self._call(name, handle, ref, batch.seq) for name, handle in self.detectors.items())
        return batch, list(await asyncio.gather(*calls))

    async def _call(self, name: str, handle: DeploymentHandle, ref: ray.ObjectRef, seq: int) -> list[FrameResult]:
        """One detector's results for one batch; sent again when its replica died with it."""
        attempt = 0
        while True:
            try:
                return await handle.remote(ref)
            except RayActorError as e:
                if not replica_died(e):
                    raise
                if attempt >= self.batch_retries:
                    raise RuntimeError(
                        f"stream {self.stream_id}, batch {seq}: the {name} detector's replica died "
                        f"{attempt + 1} times with it (pipeline.batch_retries: {self.batch_retries})"
                    ) from e
                wait = self.retry_backoff_s * 2**attempt
                attempt += 1
                self.retries += 1
                log.warning(
                    "stream %s, batch %d: the %s replica died with it (%s); retry %d of %d in %.2f s",
                    self.stream_id,
                    seq,
                    name,
                    type(e).__name__,
                    attempt,
                    self.batch_retries,
                    wait,
                )
                await asyncio.sleep(wait)
