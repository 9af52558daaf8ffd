"""One stage chain: the same file analysed without Ray, through StreamIngest, and played as a
live source gives the same detections frame for frame, tracking included."""

from __future__ import annotations

import time

import pytest
from conftest import start_live_app

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.live]


def _detections(records: list[dict]) -> dict[int, list[dict]]:
    """Frame number -> its detections, from frame records (live ones carry `arrival` too)."""
    return {r["frame"]: r["detections"] for r in records}


def test_a_file_gives_the_same_detections_without_ray_through_stream_ingest_and_live(local_ray, sample):
    from media_ray.app.runtime import MediaRayRuntime
    from media_ray.catalog import BrandCatalog
    from media_ray.chain import StageChain, file_batches, run_local
    from media_ray.config import MediaRayConfig
    from media_ray.detectors import create

    clip = str(sample["clip"])
    catalog = BrandCatalog.from_folder(sample["logos"])
    config = MediaRayConfig(
        sampling={"fps": 5, "batch_size": 4},
        tracking={"live": True},
        placement={"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        ray={"namespace": "media-ray-tests", "app_prefix": "threeways"},
    )

    # 1. in this process, no Ray
    chain = StageChain.for_files(config, catalog)
    local = [
        r.record()
        for r in run_local(file_batches(clip, "local", config.sampling), [create("reference", catalog)], chain)
    ]

    # 2. through StreamIngest and the Serve deployment
    with MediaRayRuntime(config, catalog, ["reference"]) as runtime:
        on_ray = [r.record() for results in runtime.analyse(clip) for r in results]

    # 3. played as a live source through `media-ray serve`
    app = start_live_app(sample, detectors=("reference",), tracking={"live": True})
    try:
        sid = app.http.post("/api/streams", json={"source": clip, "fps": 5}, timeout=60).json()["id"]
        deadline = time.monotonic() + 120
        status = {}
        while time.monotonic() < deadline:
            status = app.http.get(f"/api/streams/{sid}", timeout=30).json()
            if status["state"] in ("ended", "failed"):
                break
            time.sleep(0.5)
        assert status["state"] == "ended" and status["frames_dropped"] == 0, status
        live = app.http.get(f"/api/streams/{sid}/frames", params={"limit": 10000}, timeout=30).json()
    finally:
        app.service.stop()

    assert len(local) == 60 and sum(bool(r["detections"]) for r in local) > 20
    assert _detections(on_ray) == _detections(local)
    assert _detections(live) == _detections(local)
