"""`media-ray bench-detectors`: the weight-free detectors measured in this process (no Ray)."""

from __future__ import annotations

import re

import pytest
from cli_support import media_ray

from media_ray.config import MediaRayConfig
from media_ray.detectors import default_set

pytestmark = [pytest.mark.slow, pytest.mark.quality]


def test_bench_detectors_measures_each_detector_and_the_set(tmp_path):
    """The benchmark runs on its generated 1280x720 clip and 10-brand catalogue and prints a
    rate for decoding, each detector of the default set, and the set side by side."""
    proc = media_ray("bench-detectors", "--seconds", "2", "--fps", "3", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "(1280x720)" in lines[0] and "10 brands" in lines[0]
    rates = {
        name: float(rate)
        for name, rate in (re.match(r"(.+?)\s+([\d.]+) frames/s", line).groups() for line in lines[1:])
    }
    names, _ = default_set(MediaRayConfig().params_for)  # `ocr` where RapidOCR is installed
    assert {"reference", "shape", "visual"} <= set(names)
    assert set(rates) == {"decode", "set, side by side"} | {f"{n} alone" for n in names}
    assert all(r > 0 for r in rates.values()), rates
