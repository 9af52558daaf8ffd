"""The Ray layer: StreamIngest, the detector deployments, placement failures."""

from __future__ import annotations

import pytest
from ray import serve

from actors.stream_ingest import StreamIngest
from media_ray.app.runtime import DeploymentTimeout, MediaRayRuntime
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig

DELAY = "support_detectors:DelayDetector"


def test_results_come_back_in_time_order_when_later_batches_finish_first(local_ray, sample):
    # two replicas, one request each at a time: odd batches overtake the slow even ones
    config = MediaRayConfig(
        sampling={"fps": 5, "batch_size": 4},
        pipeline={"max_in_flight": 3},
        tracking={"enabled": False},  # each label is seen once: keep them all
        placement={
            DELAY: {"replicas": 2, "num_cpus": 0.25, "max_batch_size": 1, "max_ongoing_requests": 1},
            "ingest": {"num_cpus": 0.25},
        },
        detectors={DELAY: {"slow_seconds": 0.5}},
        ray={"app_prefix": "order"},
    )
    runtime = MediaRayRuntime(config, BrandCatalog.from_names(["x"]), [DELAY])
    runtime.start()
    try:
        handles = {DELAY: serve.get_app_handle(runtime.app_name(DELAY))}
        ingest = StreamIngest.options(num_cpus=0.25).remote("s", str(sample["clip"]), config, handles)
        batches = [local_ray.get(ref) for ref in ingest.run.remote()]
        status = local_ray.get(ingest.status.remote())
    finally:
        runtime.stop()
    frames = [r for batch in batches for r in batch]
    assert len(frames) == 60
    assert [r.t for r in frames] == sorted(r.t for r in frames)
    assert all(r.detections[0].label == f"frame-{r.frame}" for r in frames)
    # bounded: never more batches in flight than allowed, and it did use the room it had
    assert status["peak_in_flight"] == 3 and status["frames_done"] == 60


def test_several_detectors_merge_into_one_result_per_frame(local_ray, sample):
    config = MediaRayConfig(
        sampling={"fps": 2, "batch_size": 8},
        tracking={"enabled": False},  # each label is seen once: keep them all
        placement={"default": {"num_cpus": 0.25}},
        detectors={DELAY: {"slow_seconds": 0.0}},
        ray={"app_prefix": "merge"},
    )
    with MediaRayRuntime(config, BrandCatalog.from_names(["x"]), [DELAY, "visual"]) as runtime:
        frames = [r for batch in runtime.analyse(str(sample["clip"])) for r in batch]
    assert len(frames) == 24
    assert all(len(r.detections) == 1 and "visual" in r.signals for r in frames)


def test_a_deployment_no_node_can_host_times_out_and_says_so(local_ray):
    config = MediaRayConfig(
        placement={"visual": {"label_selector": {"media-ray.io/tier": "nowhere"}}},
        pipeline={"ready_timeout_s": 5},
        ray={"app_prefix": "nowhere"},
    )
    runtime = MediaRayRuntime(config, BrandCatalog.from_names(["x"]), ["visual"])
    with pytest.raises(DeploymentTimeout, match="not ready after 5 s: no node offers"):
        runtime.start()
    assert "nowhere-visual" not in serve.status().applications
