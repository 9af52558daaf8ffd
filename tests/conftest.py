"""Fixtures: a generated clip with known logo tracks, a catalogue, a local Ray.

Everything is made here; the tests need no data from outside the repository.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Ray workers (Serve replicas) inherit the environment: they find the test-only detectors
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(TESTS))
# a throwaway local Ray per test session needs no token
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """A 12 s 640x360 clip with two brands of a three-brand catalogue on known tracks."""
    from media_ray.samples import write_sample

    folder = tmp_path_factory.mktemp("sample")
    logos, clip = write_sample(folder)
    gt = json.loads(clip.with_name("sample.gt.json").read_text())
    return {"logos": logos, "clip": clip, "gt": gt, "folder": folder}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A small randomly initialised CLIP saved as a user's local model folder would be."""
    from media_ray.randomclip import write_random_clip

    return write_random_clip(tmp_path_factory.mktemp("clip"), "tiny")


@pytest.fixture(scope="session")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="media-ray-tests")
    yield ray
    ray.shutdown()
