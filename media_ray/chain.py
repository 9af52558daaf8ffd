"""The stage chain, defined once: decode -> batch -> detect -> merge -> track -> exposure.

Every runner goes through it: `run_local` in this process (`media-ray eval`, the benchmarks,
notebooks), the `StreamIngest` actor for files on Ray and the `LiveIngest` actor for live
streams. A runner decides only how the detect stage is carried out (detector objects here,
Serve deployments there) and how batches are scheduled; the stages around it are here:

- decode and batch: `file_batches` for a file or URL (frames sampled at `sampling.fps`,
  `sampling.batch_size` to a FrameBatch); a live runner stacks what its buffer hands out with
  `FrameBatch.stack`, sampled by the same `FrameSampler`. One `ShotCutFinder` per stream
  flags the frames that start a shot (`FrameBatch.cuts`, with `shots.enabled`).
- merge, track, exposure: a `StageChain` per stream. `push(batch, per_detector)` takes every
  detector's results for one batch, keeps one detection per logo (`merge`), passes them
  through the `DetectionTracker` (hysteresis and bridging, which holds `tracking.delay`
  analysed frames back; a cut ends every track), adds the results that are ready to the
  exposure tally and returns them in time order; `finish()` returns the rest at the end of
  the stream. Before merging, `measure` gives each boxed detection its `sharpness`, measured
  in the batch's frames: the one place where frames and detections meet (a driver that gets
  results without frames has the ingest call it).

So a file analysed in this process, through `StreamIngest`, or played as a live source (with
`tracking.live` on) gives the same detections frame for frame.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import cv2
import numpy as np

from media_ray.boxes import nms
from media_ray.catalog import BrandCatalog
from media_ray.config import ExposureConfig, MediaRayConfig, MergeConfig, SamplingConfig
from media_ray.detectors import Detector, usable_cores
from media_ray.exposure import ExposureAggregator, ExposureReport
from media_ray.model import Detection, FrameBatch, FrameResult, mark_cuts
from media_ray.sharpness import with_sharpness
from media_ray.shots import ShotCutFinder, ShotParams
from media_ray.sources import DecodedFrame, DecodedTimeline, batched, decode
from media_ray.tracking import DetectionTracker, TrackingConfig

log = logging.getLogger(__name__)


def file_batches(
    uri: str,
    stream_id: str,
    sampling: SamplingConfig,
    first_seq: int = 0,
    timeline: DecodedTimeline | None = None,
    shots: ShotParams | None = None,
) -> Iterator[FrameBatch]:
    """The decode and batch stages for a file or URL: FrameBatches numbered from 0, with their
    shot cuts (`shots`, default `ShotParams()`).

    With `first_seq`, the batches before it are left out (decoded, not converted), and the rest
    are the same batches, same frames, numbers and cuts, as from the start: a resumed analysis
    goes on where the results stopped. `timeline` follows how far decoding got.
    """
    shots = shots or ShotParams()
    skip = first_seq * sampling.batch_size
    # the cut finder compares with the frame before: the last one skipped is converted for it
    prime = 1 if shots.enabled and skip else 0
    frames = decode(uri, sampling.fps, sampling.decode_threads, skip=skip - prime, timeline=timeline)
    if not shots.enabled:
        return batched(frames, stream_id, sampling.batch_size, first_seq)
    return _with_cuts(frames, stream_id, sampling.batch_size, first_seq, ShotCutFinder(shots), prime)


def _with_cuts(
    frames: Iterator[DecodedFrame], stream_id: str, batch_size: int, first_seq: int, finder: ShotCutFinder, prime: int
) -> Iterator[FrameBatch]:
    for f in itertools.islice(frames, prime):
        finder.flags(f.rgb[None])
    for batch in batched(frames, stream_id, batch_size, first_seq):
        yield dataclasses.replace(batch, cuts=finder.flags(batch.frames))


def merge_results(per_detector: Sequence[list[FrameResult]], merge: MergeConfig | None = None) -> list[FrameResult]:
    """Several detectors' results for the same frames as one result per frame.

    A logo found by several detectors is reported once: of detections with the same label
    whose boxes overlap by `merge.same_logo_iou` or more, or one inside the other by
    `merge.same_logo_inside`, the highest-scoring is kept.
    """
    if not per_detector:
        raise ValueError("no detector results to merge")
    merge = merge or MergeConfig()
    merged = list(per_detector[0])
    for results in per_detector[1:]:
        if len(results) != len(merged):
            raise ValueError("detectors returned different numbers of frames")
        merged = [a.merge(b) for a, b in zip(merged, results)]
    if len(per_detector) > 1:
        merged = [r.model_copy(update={"detections": one_per_logo(r.detections, merge)}) for r in merged]
    return merged


def one_per_logo(detections: list[Detection], merge: MergeConfig | None = None) -> list[Detection]:
    """The detections, highest score first, without those repeating a better one's logo."""
    merge = merge or MergeConfig()
    keep = nms(
        [d.box for d in detections],
        [d.score for d in detections],
        [d.label for d in detections],
        iou=merge.same_logo_iou,
        inside=merge.same_logo_inside,
        same_label=True,
    )
    return [detections[i] for i in keep]


class StageChain:
    """Merge, track and exposure for one stream's batches, pushed in time order."""

    def __init__(
        self,
        catalog: BrandCatalog | None,
        fps: float,
        *,
        tracking: TrackingConfig | None = None,
        merge: MergeConfig | None = None,
        exposure: ExposureConfig | None = None,
    ):
        self.merge = merge or MergeConfig()
        self.quality = (exposure or ExposureConfig()).quality
        self.tracker = DetectionTracker(tracking) if tracking is not None and tracking.enabled else None
        self.exposure = ExposureAggregator(catalog, fps, exposure)
        self.frames_in = 0
        self.frames_out = 0

    @classmethod
    def for_files(cls, config: MediaRayConfig, catalog: BrandCatalog | None) -> StageChain:
        """The chain of a file or URL analysed as a whole (`analyze`, `eval`)."""
        return cls(
            catalog,
            config.sampling.fps,
            tracking=config.tracking,
            merge=config.merge,
            exposure=config.exposure,
        )

    @classmethod
    def for_live(cls, config: MediaRayConfig, catalog: BrandCatalog | None, fps: float) -> StageChain:
        """The chain of a live stream: tracking only with `tracking.live`, since it holds
        `tracking.delay` analysed frames back before a viewer sees them."""
        tracking = config.tracking if config.tracking.live else None
        return cls(catalog, fps, tracking=tracking, merge=config.merge, exposure=config.exposure)

    def push(self, batch: FrameBatch, per_detector: Sequence[list[FrameResult]]) -> list[FrameResult]:
        """Every detector's results for the next batch; returns the results now ready. Each
        result carries its frame's `arrival` (wall-clock time at the ingest) and cut flag from
        the batch."""
        return self.push_results(self.measure(batch, per_detector), batch.arrival, batch.cuts)

    def measure(self, batch: FrameBatch, per_detector: Sequence[list[FrameResult]]) -> list[list[FrameResult]]:
        """Every detector's results for the batch with each boxed detection's `sharpness`
        measured in the batch's frames (`media_ray.sharpness`)."""
        return [with_sharpness(batch.frames, results, self.quality) for results in per_detector]

    def push_results(
        self,
        per_detector: Sequence[list[FrameResult]],
        arrival: Sequence[float] | np.ndarray = (),
        cuts: Sequence[bool] | np.ndarray = (),
    ) -> list[FrameResult]:
        """`push` without the batch's frames: the detectors' results and the frames' arrival
        times (and cut flags, unless the results carry them), as a driver gets them from a
        StreamIngest."""
        merged = mark_cuts(merge_results(per_detector, self.merge), cuts)
        if self.frames_in == 0 and merged and merged[0].cut:
            # a stream's first frame starts its first shot, and is no cut between two
            merged[0] = merged[0].model_copy(update={"cut": False})
        if len(arrival) == len(merged):
            merged = [r.model_copy(update={"arrival": float(a)}) for r, a in zip(merged, arrival)]
        self.frames_in += len(merged)
        if self.tracker is None:
            ready = merged
        else:
            ready = [out for r in merged for out in self.tracker.push(r)]
        return self._emit(ready)

    def finish(self) -> list[FrameResult]:
        """The results still held back, at the end of the stream."""
        return self._emit(self.tracker.flush() if self.tracker is not None else [])

    def report(self, video: str, duration_s: float | None = None) -> ExposureReport:
        """Exposure of the results returned so far."""
        return self.exposure.report(video, duration_s)

    def _emit(self, ready: list[FrameResult]) -> list[FrameResult]:
        for r in ready:
            self.exposure.add(r)
        self.frames_out += len(ready)
        return ready


def detect_batch(detectors: Sequence[Detector], batch: FrameBatch) -> list[list[FrameResult]]:
    """The detect stage in this process, one detector after another: every detector's results
    for one batch (`run_local` runs them side by side)."""
    return [d.detect(batch) for d in detectors]


@contextmanager
def _opencv_threads_shared(concurrent: int) -> Iterator[None]:
    """OpenCV's threads divided among detectors running side by side: each of its parallel
    loops otherwise starts a thread per core, and on a few cores the detectors' threads
    spin against each other (a third of the CPU time lost on two cores, measured)."""
    previous = cv2.getNumThreads()
    if concurrent > 1:
        cv2.setNumThreads(max(1, len(usable_cores()) // concurrent))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def run_local(
    batches: Iterable[FrameBatch],
    detectors: Sequence[Detector],
    chain: StageChain,
    concurrent: bool = True,
    in_flight: int = 4,
) -> Iterator[FrameResult]:
    """One stream's frame results in time order, through `chain`, in this process.

    With `concurrent`, each detector runs in a thread of its own and takes the batches in
    order, up to `in_flight` batches ahead of the oldest one not yet back from every detector
    (`pipeline.max_in_flight`, as a file's batches flow to separate Ray deployments): a quick
    detector goes on with the next batches while a slow one finishes, and decoding goes on
    beside them, so no core waits for the slowest detector of each batch. Results held back
    by the chain's tracker come out a few frames late, and all of them by the end.
    """
    if not concurrent or len(detectors) < 2:
        for batch in batches:
            log.debug("batch %s/%d: %d frames", batch.stream_id, batch.seq, len(batch))
            yield from chain.push(batch, detect_batch(detectors, batch))
        yield from chain.finish()
        return
    # one thread a detector: a detector sees its batches one at a time, in order
    pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"detector-{d.name}") for d in detectors]
    sent: deque[tuple[FrameBatch, list[Future]]] = deque()
    try:
        with _opencv_threads_shared(len(detectors)):
            for batch in batches:
                log.debug("batch %s/%d: %d frames", batch.stream_id, batch.seq, len(batch))
                sent.append((batch, [pool.submit(d.detect, batch) for pool, d in zip(pools, detectors)]))
                while len(sent) >= max(1, in_flight):
                    done, futures = sent.popleft()
                    yield from chain.push(done, [f.result() for f in futures])
            while sent:
                done, futures = sent.popleft()
                yield from chain.push(done, [f.result() for f in futures])
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    yield from chain.finish()
