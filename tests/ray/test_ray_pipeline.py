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


def test_a_job_on_a_joined_ray_reuses_the_detectors_a_previous_job_left_when_built_the_same(local_ray, sample):
    config = MediaRayConfig(sampling={"fps": 1}, placement={"default": {"num_cpus": 0.25}}, ray={"app_prefix": "reuse"})
    catalog = BrandCatalog.from_names(["x"])
    first = MediaRayRuntime(config, catalog, ["visual"], keep_deployments=True).start()
    first.stop()
    try:
        assert not first.owns_ray and first.reused == []
        assert serve.status().applications[first.app_name("visual")].status == "RUNNING"  # left for the next
        same = MediaRayRuntime(config, catalog, ["visual"], keep_deployments=True).start()
        assert same.reused == [same.app_name("visual")]
        frames = [r for batch in same.analyse(str(sample["clip"])) for r in batch]
        assert len(frames) == 12 and all("visual" in r.signals for r in frames)
        same.stop()
        # another catalogue is another build: deployed afresh, not reused
        other = MediaRayRuntime(config, BrandCatalog.from_names(["x", "y"]), ["visual"]).start()
        assert other.reused == []
        other.stop()  # keep_deployments off: it deletes what it deployed
        assert first.app_name("visual") not in serve.status().applications
    finally:
        for name in serve.status().applications:
            if name.startswith("reuse"):
                serve.delete(name)


def test_a_detector_with_autoscaling_adds_a_replica_while_its_queue_stays_deep(local_ray):
    import time

    import numpy as np

    from media_ray.model import FrameBatch
    from media_ray.topology import deployment_name

    scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0}
    config = MediaRayConfig(
        placement={DELAY: {"num_cpus": 0.1, "max_batch_size": 1, "max_ongoing_requests": 1, "autoscaling": scaling}},
        detectors={DELAY: {"slow_seconds": 0.5}},
        ray={"app_prefix": "scale"},
    )
    runtime = MediaRayRuntime(config, BrandCatalog.from_names(["x"]), [DELAY]).start()
    name = runtime.app_name(DELAY)

    def running() -> int:
        deployment = serve.status().applications[name].deployments[deployment_name(DELAY)]
        return deployment.replica_states.get("RUNNING", 0)

    try:
        assert running() == 1
        handle = serve.get_app_handle(name)
        frames = np.zeros((1, 8, 8, 3), np.uint8)
        deadline = time.monotonic() + 60
        replies = []
        while running() < 2 and time.monotonic() < deadline:  # a queue kept deep: even batches are slow
            replies += [handle.remote(FrameBatch("s", 2 * k, frames, np.zeros(1), np.zeros(1, int))) for k in range(6)]
            replies[-6].result(timeout_s=30)
        assert running() == 2
        assert all(r.result(timeout_s=60)[0].detections for r in replies)
    finally:
        runtime.stop()


def test_replicas_packed_on_a_node_share_its_cores_and_one_reserving_whole_cpus_computes_on_those(local_ray):
    from media_ray.detectors import usable_cores

    config = MediaRayConfig(
        placement={"default": {"num_cpus": 0.25}, "shape": {"num_cpus": 1}},
        ray={"app_prefix": "threads"},
    )
    runtime = MediaRayRuntime(config, BrandCatalog.from_names(["x"]), ["visual", "reference", "shape"]).start()
    try:
        threads = {
            name: serve.get_app_handle(runtime.app_name(name)).stats.remote().result()["threads"]
            for name in ("visual", "reference", "shape")
        }
    finally:
        runtime.stop()
    cores = len(usable_cores())
    # visual and reference reserve a quarter CPU each: they split the node's cores; shape has one CPU
    assert threads == {"visual": max(1, cores // 2), "reference": max(1, cores // 2), "shape": 1}
