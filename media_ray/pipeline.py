"""Running detectors over frame batches in one process, without Ray.

This is what the Ray actors and deployments do, minus the distribution: it is used by the
benchmark, by `media-ray eval`, and in notebooks.
"""
from __future__ import annotations

import logging
from typing import Iterable, Iterator, Sequence

from media_ray.detectors import Detector
from media_ray.model import FrameBatch, FrameResult

log = logging.getLogger(__name__)


def merge_results(per_detector: Sequence[list[FrameResult]]) -> list[FrameResult]:
    """Combine several detectors' results for the same frames into one result per frame."""
    if not per_detector:
        raise ValueError("no detector results to merge")
    merged = list(per_detector[0])
    for results in per_detector[1:]:
        if len(results) != len(merged):
            raise ValueError("detectors returned different numbers of frames")
        merged = [a.merge(b) for a, b in zip(merged, results)]
    return merged


def detect_batch(detectors: Sequence[Detector], batch: FrameBatch) -> list[FrameResult]:
    return merge_results([d.detect(batch) for d in detectors])


def run_local(batches: Iterable[FrameBatch], detectors: Sequence[Detector]) -> Iterator[FrameResult]:
    """Frame results in time order, one batch at a time."""
    for batch in batches:
        log.debug("batch %s/%d: %d frames", batch.stream_id, batch.seq, len(batch))
        yield from detect_batch(detectors, batch)
