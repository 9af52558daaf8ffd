"""`bench-scale`'s workers: processes pinned to cores, sharing out one decoded clip."""

from __future__ import annotations

import pytest
from cli_support import assert_one_line_error, media_ray

from media_ray.config import MediaRayConfig
from media_ray.scale import measure, prepare, usable_cores


@pytest.fixture(scope="module")
def spec(sample, tmp_path_factory):
    config = MediaRayConfig()
    config.sampling.fps = 5.0
    folder = tmp_path_factory.mktemp("scale")
    return prepare(str(sample["clip"]), str(sample["logos"]), ["visual", "reference"], config, folder)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_frame_is_analysed_once_whatever_the_workers(spec, workers):
    if workers > len(usable_cores()):
        pytest.skip("needs two cores")
    row = measure(spec, workers, 1, timeout_s=300)
    assert row.workers == workers and row.frames == spec["frame_count"] > 0
    assert row.seconds > 0 and row.fps > 0


def test_more_workers_than_cores_is_refused(spec):
    with pytest.raises(ValueError, match="cores"):
        measure(spec, len(usable_cores()) + 1, 1, timeout_s=60)


@pytest.mark.parametrize("args", [["--workers", "0"], ["--workers", "a,b"], ["--workers", "4096"]])
def test_the_cli_refuses_bad_worker_counts_in_one_line(args):
    assert_one_line_error(media_ray("bench-scale", *args, timeout=120))
