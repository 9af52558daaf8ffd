"""Running detectors over frame batches in one process, without Ray.

This is what the Ray actors and deployments do, minus the distribution: it is used by the
benchmark, by `media-ray eval`, and in notebooks.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import cv2

from media_ray.detectors import Detector
from media_ray.model import Detection, FrameBatch, FrameResult, containment
from media_ray.model import iou as box_iou
from media_ray.tracking import DetectionTracker, TrackingConfig

log = logging.getLogger(__name__)


#: two boxes of one label overlapping this much (IoU), or one lying this much inside the
#: other (intersection over the smaller), are one logo seen by two detectors: one detector's
#: box may be loose where another's is tight, and one brand's marks do not nest
SAME_LOGO_IOU = 0.5
SAME_LOGO_INSIDE = 0.8


def merge_results(per_detector: Sequence[list[FrameResult]]) -> list[FrameResult]:
    """Combine several detectors' results for the same frames into one result per frame.

    A logo found by several detectors is reported once: of detections with the same label
    whose boxes overlap by `SAME_LOGO_IOU` or more, or one inside the other by
    `SAME_LOGO_INSIDE`, the highest-scoring is kept.
    """
    if not per_detector:
        raise ValueError("no detector results to merge")
    merged = list(per_detector[0])
    for results in per_detector[1:]:
        if len(results) != len(merged):
            raise ValueError("detectors returned different numbers of frames")
        merged = [a.merge(b) for a, b in zip(merged, results)]
    if len(per_detector) > 1:
        merged = [r.model_copy(update={"detections": one_per_logo(r.detections)}) for r in merged]
    return merged


def one_per_logo(detections: list[Detection]) -> list[Detection]:
    """The detections, highest score first, without those repeating a better one's logo."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if d.box is None or all(k.label != d.label or k.box is None
                                or (box_iou(k.box, d.box) < SAME_LOGO_IOU
                                    and containment(k.box, d.box) < SAME_LOGO_INSIDE) for k in kept):
            kept.append(d)
    return kept


def detect_batch(detectors: Sequence[Detector], batch: FrameBatch,
                 pool: ThreadPoolExecutor | None = None) -> list[FrameResult]:
    """Every detector's results for one batch, merged. With a pool, the detectors run at the
    same time (they spend their time in OpenCV, numpy and ONNX Runtime, which release the GIL),
    as they do in separate Ray deployments."""
    if pool is None or len(detectors) < 2:
        return merge_results([d.detect(batch) for d in detectors])
    return merge_results(list(pool.map(lambda d: d.detect(batch), detectors)))


@contextmanager
def _opencv_threads_shared(concurrent: int) -> Iterator[None]:
    """OpenCV's threads divided among detectors running side by side: each of its parallel
    loops otherwise starts a thread per core, and on a few cores the detectors' threads
    spin against each other (a third of the CPU time lost on two cores, measured)."""
    previous = cv2.getNumThreads()
    if concurrent > 1:
        cv2.setNumThreads(max(1, (os.cpu_count() or 1) // concurrent))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def run_local(batches: Iterable[FrameBatch], detectors: Sequence[Detector],
              tracking: TrackingConfig | None = None, concurrent: bool = True) -> Iterator[FrameResult]:
    """Frame results in time order, one batch at a time.

    With `concurrent`, the detectors of a batch run in threads of their own. With `tracking`,
    each stream's results pass through a `DetectionTracker` (hysteresis and bridging over
    time); they then come out a few frames late, and all of them by the end. Batches of
    several streams may be interleaved, each stream's in time order.
    """
    trackers: dict[str, DetectionTracker] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(detectors)), thread_name_prefix="detector") as pool, \
            _opencv_threads_shared(len(detectors) if concurrent else 1):
        for batch in batches:
            log.debug("batch %s/%d: %d frames", batch.stream_id, batch.seq, len(batch))
            results = detect_batch(detectors, batch, pool if concurrent else None)
            if tracking is None:
                yield from results
                continue
            tracker = trackers.setdefault(batch.stream_id, DetectionTracker(tracking))
            for r in results:
                yield from tracker.push(r)
    for tracker in trackers.values():
        yield from tracker.flush()
