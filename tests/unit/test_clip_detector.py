"""The `clip` detector on a randomly initialised CLIP (real tokenizer, random weights), offline."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from media_ray.catalog import BrandCatalog  # noqa: E402
from media_ray.detectors import DetectorError, create, parse_params  # noqa: E402
from media_ray.detectors.clip import ClipDetector, ClipParams, crop_boxes  # noqa: E402
from media_ray.model import FrameBatch  # noqa: E402
from media_ray.random_clip_model import CLIP_VOCAB_SIZE, RandomClipModelError, clip_bpe_path, write_random_clip_model  # noqa: E402


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    try:
        clip_bpe_path()  # located, never imported: importing open_clip needs torchvision
    except RandomClipModelError as e:
        pytest.skip(str(e))
    return write_random_clip_model(tmp_path_factory.mktemp("clip-tiny"), "tiny")


def _logo(shape: str, colour: tuple[int, int, int]) -> np.ndarray:
    """A small RGBA mark on a transparent background, as BGRA for cv2.imwrite."""
    img = np.zeros((60, 120, 4), np.uint8)
    bgra = (colour[2], colour[1], colour[0], 255)
    if shape == "circle":
        cv2.circle(img, (60, 30), 25, bgra, -1)
    else:
        cv2.rectangle(img, (10, 10), (110, 50), bgra, -1)
        cv2.putText(img, "AB", (35, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255, 255), 2)
    return img


@pytest.fixture(scope="module")
def folder_catalog(tmp_path_factory) -> BrandCatalog:
    folder = tmp_path_factory.mktemp("brands")
    cv2.imwrite(str(folder / "acme.png"), _logo("circle", (220, 30, 30)))
    cv2.imwrite(str(folder / "zenith.png"), _logo("box", (20, 60, 200)))
    (folder / "brands.json").write_text(
        json.dumps(
            [
                {
                    "id": "acme",
                    "name": "Acme",
                    "aliases": ["ACME Corp"],
                    "prompts": ["a red circle logo"],
                    "hex": "#dc1e1e",
                },
                {"id": "zenith", "name": "Zenith", "prompts": ["a blue box with white letters"]},
                {"id": "textonly", "name": "Nike", "aliases": ["Swoosh"]},
            ]
        )
    )
    cat = BrandCatalog.from_folder(folder)
    assert len(cat.with_images()) == 2 and len(cat) == 3
    return cat


@pytest.fixture(scope="module")
def names_catalog() -> BrandCatalog:
    return BrandCatalog.from_names(["Nike", "Coca-Cola", "Adidas"])


def _batch(n: int = 3, width: int = 320, height: int = 180, seed: int = 0) -> FrameBatch:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (n, height, width, 3), dtype=np.uint8)
    frames[0, 20:80, 30:150] = (220, 30, 30)  # some structure, not only noise
    return FrameBatch.stack("test", 0, list(frames), [i * 0.5 for i in range(n)], list(range(10, 10 + n)))


def _check_results(results, batch: FrameBatch, catalog: BrandCatalog) -> None:
    width, height = batch.size
    assert len(results) == len(batch)
    for r, t, i in zip(results, batch.times, batch.indices):
        assert r.t == pytest.approx(float(t)) and r.frame == int(i)
        assert (r.width, r.height) == (width, height)
        labels = [d.label for d in r.detections]
        assert len(labels) == len(set(labels)), "one detection per brand per frame at most"
        for d in r.detections:
            assert d.label in catalog.ids
            assert d.detector == "clip"
            assert 0.0 <= d.score <= 1.0
            if d.box is not None:
                x0, y0, x1, y1 = d.box
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        r.record()  # serialisable


# --- the random model and its tokenizer --------------------------------------------------------


def test_tokenizer_is_the_real_clip_bpe(clip_folder):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(clip_folder)
    assert len(tok) == CLIP_VOCAB_SIZE
    # the ids of OpenAI's tokenizer
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    ids = tok("the nike logo")["input_ids"]
    assert ids[0] == 49406 and ids[-1] == 49407
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["the</w>", "nike</w>", "logo</w>"]
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True) == "the nike logo"
    # rarer words split into real sub-words, never unknowns
    ids = tok("Heineken Zalando Ümlaut")["input_ids"]
    assert tok.unk_token_id not in ids[1:-1]


def test_random_clip_folder(clip_folder, tmp_path):
    from transformers import CLIPConfig

    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"):
        assert (clip_folder / name).is_file(), name
    cfg = CLIPConfig.from_pretrained(clip_folder)
    assert cfg.text_config.vocab_size == CLIP_VOCAB_SIZE
    pre = json.loads((clip_folder / "preprocessor_config.json").read_text())
    assert pre["image_mean"][0] == pytest.approx(0.48145466)
    # same seed, same weights
    again = write_random_clip_model(tmp_path / "again", "tiny")
    digest = [hashlib.sha256((f / "model.safetensors").read_bytes()).hexdigest() for f in (clip_folder, again)]
    assert digest[0] == digest[1]


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["folder_catalog", "names_catalog"])
def test_detect_well_formed(clip_folder, which, request):
    catalog = request.getfixturevalue(which)
    batch = _batch()
    det = ClipDetector(catalog, ClipParams(model=str(clip_folder), min_score=0.0))
    results = det.detect(batch)
    _check_results(results, batch, catalog)
    for r in results:  # min_score 0: every brand, once, in every frame
        assert sorted(d.label for d in r.detections) == sorted(catalog.ids)
        assert [d.score for d in r.detections] == sorted((d.score for d in r.detections), reverse=True)
    # the same frames give the same results
    again = det.detect(batch)
    assert [r.record() for r in again] == [r.record() for r in results]


def test_detect_default_threshold(clip_folder, folder_catalog):
    batch = _batch(2)
    det = ClipDetector(folder_catalog, ClipParams(model=str(clip_folder)))
    results = det.detect(batch)
    _check_results(results, batch, folder_catalog)
    assert all(d.score >= det.params.min_score for r in results for d in r.detections)


def test_boxes_follow_tiles(clip_folder, names_catalog):
    batch = _batch(2, width=300, height=200)
    whole = ClipDetector(names_catalog, ClipParams(model=str(clip_folder), tiles=1, min_score=0.0))
    assert all(d.box is None for r in whole.detect(batch) for d in r.detections)
    tiled = ClipDetector(
        names_catalog, ClipParams(model=str(clip_folder), tiles=(3, 2), whole_frame=False, min_score=0.0)
    )
    results = tiled.detect(batch)
    _check_results(results, batch, names_catalog)
    grid = set(crop_boxes(300, 200, (3, 2), tiled.params.overlap, whole_frame=False))
    for r in results:
        for d in r.detections:
            assert d.box is not None and tuple(int(v) for v in d.box) in grid


def test_crop_boxes_cover_the_frame():
    boxes = crop_boxes(1280, 720, (2, 2), 0.2)
    assert boxes[0] == (0, 0, 1280, 720) and len(boxes) == 5
    mask = np.zeros((720, 1280), bool)
    for x0, y0, x1, y1 in boxes[1:]:
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720
        mask[y0:y1, x0:x1] = True
    assert mask.all()
    assert crop_boxes(1280, 720, (1, 1), 0.2) == [(0, 0, 1280, 720)]


def test_set_catalog_and_empty_batch(clip_folder, names_catalog, folder_catalog):
    det = ClipDetector(names_catalog, ClipParams(model=str(clip_folder), min_score=0.0))
    det.set_catalog(folder_catalog)
    results = det.detect(_batch(1))
    assert sorted(d.label for d in results[0].detections) == sorted(folder_catalog.ids)
    empty = FrameBatch("test", 1, np.zeros((0, 90, 160, 3), np.uint8), np.zeros(0), np.zeros(0, np.int64))
    assert det.detect(empty) == []


def test_created_by_name_and_model_shared(clip_folder, names_catalog, folder_catalog):
    a = create("clip", names_catalog, {"model": str(clip_folder)})
    b = ClipDetector(folder_catalog, ClipParams(model=str(clip_folder), tiles=3))
    assert isinstance(a, ClipDetector)
    assert a.clip.model is b.clip.model
    assert a.clip.tokenizer is b.clip.tokenizer


# --- parameters and availability ----------------------------------------------------------------


def test_params():
    assert ClipParams(tiles=3).tiles == (3, 3)
    assert ClipParams(tiles="3x2").tiles == (3, 2)
    assert parse_params("clip", {}).tiles == (2, 2)
    for bad in (
        {"tiles": 0},
        {"templates": ["no placeholder"]},
        {"min_score": 2},
        {"nope": 1},
        {"dtype": "int8"},
    ):
        with pytest.raises(DetectorError):
            parse_params("clip", bad)


def test_unavailable_reason(clip_folder, tmp_path, monkeypatch):
    assert ClipDetector.unavailable_reason(ClipParams(model=str(clip_folder))) is None

    missing = ClipDetector.unavailable_reason(ClipParams(model=str(tmp_path / "missing")))
    assert missing and "\n" not in missing and "--clip-model" in missing

    (tmp_path / "empty").mkdir()
    no_config = ClipDetector.unavailable_reason(ClipParams(model=str(tmp_path / "empty")))
    assert no_config and "config.json" in no_config and "\n" not in no_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    not_cached = ClipDetector.unavailable_reason(ClipParams(model="media-ray-tests/no-such-clip-model"))
    assert time.monotonic() - start < 5
    assert not_cached and "\n" not in not_cached and "--clip-model" in not_cached


def test_bad_folder_raises(clip_folder, names_catalog, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorError):
        ClipDetector(names_catalog, ClipParams(model=str(tmp_path / "empty")))
    # a config without weights
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((clip_folder / "config.json").read_text())
    with pytest.raises(DetectorError) as e:
        ClipDetector(names_catalog, ClipParams(model=str(no_weights)))
    assert "\n" not in str(e.value)
    # garbage weights
    garbage = tmp_path / "garbage"
    shutil.copytree(clip_folder, garbage)
    (garbage / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DetectorError) as e:
        ClipDetector(names_catalog, ClipParams(model=str(garbage)))
    assert "\n" not in str(e.value) and "--clip-model" in str(e.value)
    # a broken config
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(DetectorError):
        ClipDetector(names_catalog, ClipParams(model=str(broken)))
