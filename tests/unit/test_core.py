"""The core without Ray: decoding, catalogue, configuration, exposure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from media_ray.boxes import union_area
from media_ray.catalog import BrandCatalog, CatalogError
from media_ray.config import ExposureConfig, MediaRayConfig
from media_ray.detectors import DetectorError, create, detector_class
from media_ray.exposure import ExposureAggregator
from media_ray.model import Detection, FrameResult
from media_ray.sources import SourceError, batched, decode, probe


def test_core_imports_no_ray():
    """Every core module imported (all but the driver subpackage, media_ray.app) loads no Ray;
    lint-imports checks the same of every import statement, those inside functions too."""
    code = (
        "import sys, pkgutil, importlib, media_ray, media_ray.detectors\n"
        "for m in pkgutil.walk_packages(media_ray.__path__, 'media_ray.'):\n"
        "    if not m.name.startswith('media_ray.app'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decode_samples_frames_at_the_requested_rate_with_times_and_indices(sample):
    frames = list(decode(str(sample["clip"]), fps=5))
    assert len(frames) == 60  # 12 s at 5 frames/s
    for k, f in enumerate(frames):
        assert abs(f.t - k * 0.2) <= 1 / 25 + 1e-6  # within one source frame
        assert f.index == round(f.t * 25)
        assert f.rgb.shape == (360, 640, 3) and f.rgb.dtype == np.uint8


def test_batches_are_numbered_and_keep_frame_order(sample):
    batches = list(batched(decode(str(sample["clip"]), fps=2), "s1", 8))
    assert [b.seq for b in batches] == [0, 1, 2]
    assert [len(b) for b in batches] == [8, 8, 8]
    times = np.concatenate([b.times for b in batches])
    assert np.all(np.diff(times) > 0)
    assert batches[0].size == (640, 360)


def test_probe_describes_the_video(sample):
    info = probe(str(sample["clip"]))
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(25)
    assert info.duration_s == pytest.approx(12, abs=0.1)
    assert info.expected_frames(5) == 60


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.mp4", "no such file"),
        (lambda p: (p / "text.mp4").write_text("not a video") and p / "text.mp4", "cannot open"),
        (lambda p: p, "is a folder"),
    ],
)
def test_probe_rejects_what_is_not_a_video(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        probe(str(make(tmp_path)))


def test_unknown_source_scheme_is_refused():
    with pytest.raises(SourceError, match="unsupported source scheme"):
        probe("gopher://example/video")


def test_catalog_reads_images_and_brands_json_as_list_or_mapping(tmp_path):
    mark = np.zeros((20, 30, 4), np.uint8)
    mark[..., 3] = 255
    for bid in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{bid}.png"), mark)
    (tmp_path / "brands.json").write_text(
        json.dumps([{"id": "a", "name": "Alpha", "hex": "FF0000", "aliases": ["ALF"], "prompts": ["a red A"]}])
    )
    cat = BrandCatalog.from_folder(tmp_path)
    assert cat.ids == ["a", "b"]
    assert cat["a"].name == "Alpha" and cat["a"].colour == (255, 0, 0) and cat["a"].names == ("Alpha", "ALF")
    assert cat["b"].name == "b" and cat["b"].image.shape == (20, 30, 4)
    (tmp_path / "brands.json").write_text(json.dumps({"a": {"name": "Alpha"}, "c": {"name": "Text only"}}))
    cat2 = BrandCatalog.from_folder(tmp_path)
    assert cat2.ids == ["a", "b", "c"] and cat2["c"].image is None
    assert cat2.version != cat.version


def test_catalog_of_plain_names_is_text_only():
    cat = BrandCatalog.from_names(["Red Bull", " Nike ", ""])
    assert cat.ids == ["red-bull", "nike"] and cat["nike"].name == "Nike"


def test_empty_brand_folder_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="holds no images"):
        BrandCatalog.from_folder(tmp_path)


def test_config_reads_yaml_and_the_environment_overrides_it(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(
        "sampling: {fps: 2, batch_size: 4}\nplacement:\n  clip: {num_gpus: 1, "
        "label_selector: {media-ray.io/tier: cloud}}\ndetectors: {clip: {tiles: 3}}\n"
    )
    monkeypatch.setenv("MEDIA_RAY_SAMPLING__FPS", "3")
    cfg = MediaRayConfig.load(path)
    assert cfg.sampling.fps == 3 and cfg.sampling.batch_size == 4
    assert cfg.placement_for("clip").ray_actor_options()["label_selector"] == {"media-ray.io/tier": "cloud"}
    assert cfg.placement_for("visual").num_gpus == 0
    assert cfg.detectors.clip.tiles == (3, 3) and cfg.params_for("clip")["tiles"] == (3, 3)


def test_detectors_are_chosen_by_name_or_import_path():
    assert detector_class("visual").name == "visual"
    assert detector_class("support_detectors:DelayDetector").name == "delay"
    with pytest.raises(DetectorError, match="unknown detector 'nope'"):
        detector_class("nope")
    with pytest.raises(DetectorError, match="parameter colours"):
        create("visual", BrandCatalog.from_names(["x"]), {"colours": 0})


def test_visual_detector_measures_each_frame(sample):
    batch = next(batched(decode(str(sample["clip"]), fps=1), "s", 3))
    results = create("visual", BrandCatalog.from_names(["x"])).detect(batch)
    assert len(results) == 3 and all(not r.detections for r in results)
    v = results[0].signals["visual"]
    assert 0 <= v["brightness"] <= 1 and 0 <= v["saturation"] <= 1 and v["contrast"] > 0
    assert abs(sum(c["share"] for c in v["dominant_colours"]) - 1) < 1e-3


def _frame(t, *dets, w=100, h=100):
    return FrameResult(
        t=t,
        frame=int(t * 10),
        width=w,
        height=h,
        detections=[Detection(label=l, score=s, box=b, detector="x") for l, s, b in dets],
    )


def test_exposure_merges_short_gaps_and_drops_short_appearances():
    agg = ExposureAggregator(
        BrandCatalog.from_names(["A"]), fps=5, config=ExposureConfig(merge_gap_s=0.5, min_duration_s=0.3)
    )
    seen = {0.0, 0.2, 0.4, 0.8, 1.0, 3.0}  # 0.6 missed (bridged); 3.0 alone (too short)
    for k in range(20):
        t = round(k * 0.2, 3)
        agg.add(_frame(t, ("a", 0.5 + t / 10, (0, 0, 50, 20))) if t in seen else _frame(t))
    rep = agg.report("v.mp4", duration_s=4.0)
    a = rep.brands["a"]
    assert rep.frames_analysed == 20 and a.name == "A"
    assert [(x.start, x.end) for x in a.appearances] == [(0.0, 1.2)]
    assert a.exposure_s == pytest.approx(1.2)
    assert a.max_share == pytest.approx(0.1) and a.appearances[0].mean_share == pytest.approx(0.1)
    assert a.appearances[0].max_score == pytest.approx(0.6)


def test_share_of_screen_counts_overlapping_boxes_once():
    assert union_area([(0, 0, 10, 10), (5, 5, 15, 15)], 100, 100) == pytest.approx(175)
    assert union_area([(-10, -10, 10, 10)], 5, 5) == pytest.approx(25)
    assert union_area([], 10, 10) == 0


def test_frame_record_has_exactly_the_contract_keys():
    rec = _frame(1.0, ("a", 0.91234, (1.04, 2, 3, 4.06)), ("b", 0.5, None)).record()
    assert set(rec) == {"t", "frame", "detections"}
    assert rec["detections"][0] == {"label": "a", "score": 0.9123, "box": [1.0, 2, 3, 4.1], "detector": "x"}
    assert rec["detections"][1]["box"] is None


def test_analyze_and_eval_take_the_same_videos_from_a_folder(tmp_path):
    from media_ray.app.cli import expand_videos
    from media_ray.evaluation import find_clips

    for name in ("a.mp4", "b.flv", "c.mpeg", "d.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    for stem in "abcd":
        (tmp_path / f"{stem}.gt.json").write_text("{}")
    expected = ["a.mp4", "b.flv", "c.mpeg", "d.MOV"]
    assert [Path(v).name for v in expand_videos([str(tmp_path)])] == expected
    assert [v.name for v, _ in find_clips([str(tmp_path)])] == expected


def test_a_brand_image_from_bytes_is_read_as_the_catalogue_reads_its_files(tmp_path):
    """16-bit and grey PNGs, JPEGs: the API's uploads and a catalogue folder give the same RGBA."""
    import cv2

    from media_ray.catalog import decode_brand_image

    rgba16 = np.zeros((20, 30, 4), np.uint16)
    rgba16[4:16, 5:25] = (65535, 32896, 0, 65535)  # BGRA: an orange mark, opaque
    grey = np.full((10, 10), 128, np.uint8)
    for name, img in (("sixteen.png", rgba16), ("grey.png", grey)):
        cv2.imwrite(str(tmp_path / name), img)
    catalog = BrandCatalog.from_folder(tmp_path)
    for name in ("sixteen", "grey"):
        uploaded = decode_brand_image((tmp_path / f"{name}.png").read_bytes())
        assert uploaded.dtype == np.uint8 and uploaded.shape[2] == 4
        assert np.array_equal(uploaded, catalog[name].image)
    assert tuple(catalog["sixteen"].image[10, 10]) == (0, 128, 255, 255)


def test_the_configuration_reference_is_current_and_describes_every_field():
    from media_ray.configdoc import render, undocumented

    assert undocumented() == []
    reference = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert reference.read_text() == render(), "run: media-ray config-reference > docs/configuration.md"


def test_every_knob_is_in_the_tree_and_set_from_the_environment(monkeypatch):
    """Reconnect timing, same-logo thresholds and live tracking, once code literals, are config."""
    monkeypatch.setenv("MEDIA_RAY_LIVE__SOURCE__BACKOFF__MAX_S", "7")
    monkeypatch.setenv("MEDIA_RAY_MERGE__SAME_LOGO_IOU", "0.6")
    monkeypatch.setenv("MEDIA_RAY_TRACKING__LIVE", "true")
    cfg = MediaRayConfig.load()
    assert cfg.live.source.backoff.max_s == 7 and cfg.merge.same_logo_iou == 0.6 and cfg.tracking.live
    from media_ray.buffering import Backoff, BackoffConfig

    assert Backoff().max_s == BackoffConfig().max_s  # one source of defaults
