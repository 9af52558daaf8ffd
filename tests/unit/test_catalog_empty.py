"""An empty catalogue (a server started without brands): every detector takes it and finds
nothing, and takes brands added later; a file analysis still needs brands."""

from __future__ import annotations

import numpy as np
import pytest
from cli_support import assert_one_line_error, media_ray

from media_ray.catalog import BrandCatalog, CatalogError
from media_ray.detectors import create
from media_ray.model import FrameBatch
from media_ray.samples import write_sample


def _batch(sample) -> FrameBatch:
    import av

    frames = []
    with av.open(str(sample["clip"])) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in (50, 75):  # 2 s and 3 s: acme is on screen
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 2:
                break
    return FrameBatch.stack("empty", 0, frames, [2.0, 3.0], [50, 75])


@pytest.mark.parametrize("detector", ["reference", "shape", "visual"])
def test_a_detector_with_an_empty_catalogue_finds_nothing_then_finds_an_added_brand(detector, sample):
    empty = BrandCatalog([])
    assert len(empty) == 0 and empty.version
    d = create(detector, empty)
    batch = _batch(sample)
    assert all(r.detections == [] for r in d.detect(batch))
    d.set_catalog(BrandCatalog([BrandCatalog.from_folder(sample["logos"])["acme"]]))
    found = [det.label for r in d.detect(batch) for det in r.detections]
    if detector != "visual":  # visual reports signals, not brands
        assert "acme" in found


def test_clip_with_an_empty_catalogue_scores_nothing(tiny_clip_model_dir):
    d = create("clip", BrandCatalog([]), {"model": str(tiny_clip_model_dir)})
    frames = np.random.default_rng(0).integers(0, 255, (2, 180, 320, 3), dtype=np.uint8)
    results = d.detect(FrameBatch.stack("empty", 0, list(frames), [0.0, 0.5], [0, 1]))
    assert [r.detections for r in results] == [[], []]
    d.set_catalog(BrandCatalog.from_names(["Nike"]))
    assert len(d.detect(FrameBatch.stack("empty", 1, list(frames), [1.0, 1.5], [2, 3]))) == 2


def test_names_that_are_all_blank_are_refused():
    with pytest.raises(CatalogError, match="no brand names"):
        BrandCatalog.from_names(["", "  "])


def test_analyze_still_needs_a_catalogue(tmp_path):
    _, clip = write_sample(tmp_path)
    proc = media_ray("analyze", clip, "--out", tmp_path / "o")
    assert_one_line_error(proc, "brand catalogue is needed")
