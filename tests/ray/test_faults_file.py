"""`analyze` on Ray keeps going when a detector replica or the file's ingest actor dies mid-file.

A real local Ray and Serve; a slow test detector gives the time to kill things while a file is
being analysed. Every disturbed run must deliver exactly the records of an undisturbed one.
"""

from __future__ import annotations

import os
import signal

import pytest
import ray
from ray._private import state  # the dashboard (and so ray.util.state) is off in the tests' Ray

from media_ray.app.runtime import MediaRayRuntime
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig

SLOW = "support_detectors:SlowDetector"
FRAMES = 60  # the 12 s sample at 5 frames/s
KILL_AFTER = 16  # frames delivered before the fault


def config(prefix: str, **slow) -> MediaRayConfig:
    return MediaRayConfig(
        sampling={"fps": 5, "batch_size": 4},
        pipeline={"max_in_flight": 2, "batch_retries": 6, "retry_backoff_s": 0.5, "ingest_restarts": 2},
        placement={
            SLOW: {"replicas": 1, "num_cpus": 0.1, "max_batch_size": 1},
            "ingest": {"num_cpus": 0.1},
        },
        detectors={SLOW: {"seconds_per_batch": 0.3, **slow}},
        ray={"app_prefix": prefix},
    )


@pytest.fixture(scope="module")
def runtime(local_ray):
    rt = MediaRayRuntime(config("faults"), BrandCatalog.from_names(["steady"]), [SLOW]).start()
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def undisturbed(runtime, sample):
    analysis = runtime.analyse(str(sample["clip"]), stream_id="calm")
    records = [r.record() for results in analysis for r in results]
    return records, analysis.report


def run_with_fault(runtime, sample, fault):
    """Analyse the sample; once KILL_AFTER frames are in, `fault(analysis)` once. Returns the
    records, the analysis, and the ingest's retry count read after the fault."""
    analysis = runtime.analyse(str(sample["clip"]), stream_id="hit")
    records: list[dict] = []
    retries = None
    faulted_at = None
    for results in analysis:
        records += [r.record() for r in results]
        if faulted_at is None and len(records) >= KILL_AFTER:
            fault(analysis)
            faulted_at = len(records)
        elif faulted_at is not None and retries is None and len(records) >= faulted_at + 8:
            retries = ray.get(analysis.ingest.status.remote())["retries"]
    assert faulted_at is not None and faulted_at < FRAMES  # the fault came mid-file
    return records, analysis, retries


def replica(app: str):
    """The live replica actor of a Serve application: (name, pid)."""
    alive = [
        (a["Name"], a["Pid"])
        for a in state.actors().values()
        if a["State"] == "ALIVE" and a["Name"].startswith(f"SERVE_REPLICA::{app}#")
    ]
    assert len(alive) == 1, alive
    return alive[0]


def assert_same_as_undisturbed(records, undisturbed):
    expected, _ = undisturbed
    assert len(expected) == FRAMES
    frames = [r["frame"] for r in records]
    assert frames == sorted(set(frames)) and len(frames) == FRAMES  # each frame once, in order
    assert records == expected


def test_the_undisturbed_run_is_a_fair_reference(undisturbed):
    records, report = undisturbed
    assert [r["frame"] for r in records] == [5 * i for i in range(FRAMES)]
    # tracking bridged the detector's one-frame gaps: its state matters for what comes out
    assert any(d["detector"] == "tracking" for r in records for d in r["detections"])
    assert report.frames_analysed == FRAMES and report.duration_s == pytest.approx(12.0, abs=0.05)


def test_a_replica_killed_mid_file_has_its_batches_retried_and_every_frame_comes_once(runtime, sample, undisturbed):
    app = runtime.app_name(SLOW)

    def kill_replica(_analysis):
        name, _pid = replica(app)
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    records, analysis, retries = run_with_fault(runtime, sample, kill_replica)
    assert_same_as_undisturbed(records, undisturbed)
    assert retries is not None and retries >= 1
    assert analysis.restarts == 0
    assert analysis.report == undisturbed[1]


def test_a_replica_whose_process_is_sigkilled_mid_file_loses_no_frame(runtime, sample, undisturbed):
    app = runtime.app_name(SLOW)

    def sigkill_replica(_analysis):
        _name, pid = replica(app)
        os.kill(pid, signal.SIGKILL)

    records, _analysis, retries = run_with_fault(runtime, sample, sigkill_replica)
    assert_same_as_undisturbed(records, undisturbed)
    assert retries is not None and retries >= 1


def test_the_ingest_actor_killed_mid_file_is_restarted_and_resumes_after_the_last_frame(runtime, sample, undisturbed):
    def kill_ingest(analysis):
        ray.kill(analysis.ingest, no_restart=False)

    records, analysis, _retries = run_with_fault(runtime, sample, kill_ingest)
    assert_same_as_undisturbed(records, undisturbed)
    assert analysis.restarts == 1
    # the report covers the whole file, not only what came after the restart
    assert analysis.report == undisturbed[1]


def test_a_truncated_file_on_ray_reports_the_duration_that_was_analysed(runtime, sample, tmp_path):
    data = sample["clip"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    analysis = runtime.analyse(str(cut), stream_id="cut", duration_s=12.0)
    records = [r.record() for results in analysis for r in results]
    assert 5 < len(records) < FRAMES
    assert records[-1]["t"] < analysis.report.duration_s <= records[-1]["t"] + 0.2 + 1e-6


def test_a_detector_that_raises_fails_the_run_with_its_message_and_is_not_retried(local_ray, sample):
    rt = MediaRayRuntime(config("broken", fail_at_frame=100), BrandCatalog.from_names(["steady"]), [SLOW]).start()
    try:
        analysis = rt.analyse(str(sample["clip"]), stream_id="broken")
        got: list[int] = []
        with pytest.raises(Exception, match="broken on purpose at frame 100") as err:
            for results in analysis:
                got += [r.frame for r in results]
        assert not isinstance(err.value, ray.exceptions.RayActorError) or isinstance(
            err.value, ray.exceptions.RayTaskError
        )
        assert analysis.restarts == 0 and max(got, default=-1) < 100
    finally:
        rt.stop()
