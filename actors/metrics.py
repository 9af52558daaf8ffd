"""media-ray's metrics, as Ray exports them to Prometheus (`ray.util.metrics`).

Every metric is defined once here (`METRICS`) and recorded by the Ray layer: the ingests
(`StreamMetrics`: frames decoded, analysed, dropped and lost per stream, what waits in its
queue), the detector deployments (`DetectorMetrics`: detections per brand, frames per model
call, model latency) and the registry (`record_stream_states`: streams by state). The core
records nothing itself: it keeps plain counts (`LiveSource.frames`, `DropOldestBuffer.dropped`)
that the wrappers read.

Ray exports them on each node's metrics port (`ray.metrics_export_port` for a local Ray,
`ray start --metrics-export-port` on a cluster), prefixed `ray_`, a counter with `_total` and a
histogram as `_bucket`, `_sum` and `_count` (`exported_names`); `cluster/grafana-media-ray.json`
charts them.

Tags, and why each stays bounded: `stream`, a stream id, of which at most
`http.limits.max_streams` live streams and `pipeline.files_in_flight` files run at once; `brand`,
an id of the brand catalogue (a label a detector reports outside it is counted as `other`);
`detector`, a deployed detector's name; `state`, the five stream states. A stream's gauges go
with its ingest actor, but Ray 2.60 goes on exporting a dead worker's counters until the node
stops: each stream started leaves its (up to 4) counter series on the node's metrics port for
the life of the Ray it ran on.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ray.util.metrics import Counter, Gauge, Histogram, Metric

from media_ray.model import FrameResult
from media_ray.streams import StreamState

#: what a brand id outside the catalogue is counted as (a user's detector may report any label)
OTHER_BRAND = "other"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: type[Metric]
    description: str
    tags: tuple[str, ...]
    boundaries: tuple[float, ...] = ()


_SPECS = (
    MetricSpec("media_ray_frames_decoded", Counter, "frames decoded (sampled) from a stream's source", ("stream",)),
    MetricSpec("media_ray_frames_analysed", Counter, "frames of a stream analysed and passed on", ("stream",)),
    MetricSpec(
        "media_ray_frames_dropped",
        Counter,
        "frames of a live stream dropped, the oldest waiting, because the detectors fell behind",
        ("stream",),
    ),
    MetricSpec(
        "media_ray_frames_lost",
        Counter,
        "frames of a live stream lost with their batch (a detector failed or its replica died)",
        ("stream",),
    ),
    MetricSpec("media_ray_queue_frames", Gauge, "frames of a live stream waiting to be batched", ("stream",)),
    MetricSpec(
        "media_ray_batches_in_flight", Gauge, "batches of a stream sent to the detectors, not back", ("stream",)
    ),
    MetricSpec(
        "media_ray_detections", Counter, "detections a detector made, per brand (before merging)", ("brand", "detector")
    ),
    MetricSpec(
        "media_ray_batch_frames",
        Histogram,
        "frames per model call of a detector replica (batches of many streams joined)",
        ("detector",),
        (1, 2, 4, 8, 16, 32, 64),
    ),
    # Ray exports a histogram's `_sum` estimated from its buckets' midpoints: the exact mean
    # frames per call is this counter over the histogram's `_count`
    MetricSpec("media_ray_model_frames", Counter, "frames the model calls of a detector held", ("detector",)),
    MetricSpec(
        "media_ray_model_latency_seconds",
        Histogram,
        "seconds a detector took over one model call",
        ("detector",),
        (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ),
    MetricSpec("media_ray_streams", Gauge, "live streams the registry knows, by state", ("state",)),
)
METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

#: the suffixes Prometheus shows each kind with
_SUFFIXES: dict[type[Metric], tuple[str, ...]] = {
    Counter: ("_total",),
    Gauge: ("",),
    Histogram: ("_bucket", "_sum", "_count"),
}


def exported_names(spec: MetricSpec) -> tuple[str, ...]:
    """The series names of a metric on Ray's metrics port (what PromQL names)."""
    return tuple(f"ray_{spec.name}{suffix}" for suffix in _SUFFIXES[spec.kind])


@functools.cache
def metric(name: str) -> Metric:
    """The metric of this process (made on first use: only where Ray runs)."""
    spec = METRICS[name]
    if spec.kind is Histogram:
        return Histogram(spec.name, spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tags)
    return spec.kind(spec.name, spec.description, tag_keys=spec.tags)


def _inc(name: str, value: float, tags: dict[str, str]) -> None:
    if value > 0:  # a Ray counter takes increments only
        metric(name).inc(float(value), tags=tags)


class StreamMetrics:
    """What one ingest records under its stream's tag. `totals` takes the running counts the core
    keeps (frames its source decoded, frames its buffer dropped) and records what is new."""

    def __init__(self, stream_id: str):
        self.tags = {"stream": stream_id}
        self._seen: dict[str, int] = {}

    def decoded(self, frames: int) -> None:
        _inc("media_ray_frames_decoded", frames, self.tags)

    def analysed(self, frames: int) -> None:
        _inc("media_ray_frames_analysed", frames, self.tags)

    def lost(self, frames: int) -> None:
        _inc("media_ray_frames_lost", frames, self.tags)

    def totals(self, decoded: int | None = None, dropped: int | None = None) -> None:
        for name, total in (("media_ray_frames_decoded", decoded), ("media_ray_frames_dropped", dropped)):
            if total is not None:
                _inc(name, total - self._seen.get(name, 0), self.tags)
                self._seen[name] = total

    def queue(self, frames: int | None, batches: int) -> None:
        """What waits: frames in the stream's buffer (None: it has none), batches at the detectors."""
        if frames is not None:
            metric("media_ray_queue_frames").set(frames, tags=self.tags)
        metric("media_ray_batches_in_flight").set(batches, tags=self.tags)


class DetectorMetrics:
    """What a detector replica records of each model call."""

    def __init__(self, detector: str):
        self.tags = {"detector": detector}

    def call(self, frames: int, seconds: float, results: Iterable[FrameResult], brands: set[str]) -> None:
        metric("media_ray_batch_frames").observe(frames, tags=self.tags)
        _inc("media_ray_model_frames", frames, self.tags)
        metric("media_ray_model_latency_seconds").observe(seconds, tags=self.tags)
        found: dict[str, int] = {}
        for result in results:
            for d in result.detections:
                brand = d.label if d.label in brands else OTHER_BRAND
                found[brand] = found.get(brand, 0) + 1
        for brand, count in found.items():
            _inc("media_ray_detections", count, {**self.tags, "brand": brand})


def record_stream_states(states: Iterable[StreamState]) -> None:
    """How many streams are in each state (every state, so that one left empty reads 0)."""
    counts = dict.fromkeys(StreamState, 0)
    for state in states:
        counts[StreamState(state)] += 1
    for state, count in counts.items():
        metric("media_ray_streams").set(count, tags={"state": state.value})
