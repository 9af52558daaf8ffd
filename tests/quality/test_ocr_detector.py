"""The `ocr` detector on generated frames: brand names written at known places."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("rapidocr_onnxruntime")

from media_ray.boxes import iou  # noqa: E402
from media_ray.catalog import BrandCatalog  # noqa: E402
from media_ray.detectors import create, default_set, detector_class, parse_params  # noqa: E402
from media_ray.model import FrameBatch  # noqa: E402

W, H = 1280, 720
FONT = cv2.FONT_HERSHEY_DUPLEX


def _write(
    frame: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour=(30, 30, 160)
) -> tuple[float, float, float, float]:
    """Write text on the frame; returns its box (the glyphs' bounds)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 4)
    cv2.putText(frame, text, origin, FONT, scale, colour, 4, cv2.LINE_AA)
    x, y = origin
    return float(x), float(y - th), float(x + tw), float(y + base // 2)


def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(170, 240, (H // 32, W // 32, 3), dtype=np.uint8)
    return cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> BrandCatalog:
    folder = tmp_path_factory.mktemp("logos")
    (folder / "brands.json").write_text(
        json.dumps(
            [
                {"id": "globex", "name": "Globex"},
                {"id": "initech", "name": "Initech Corp", "aliases": ["Initech"]},
            ]
        )
    )
    return BrandCatalog.from_folder(folder)


@pytest.fixture(scope="module")
def scene():
    named, plain, alias = _background(1), _background(2), _background(3)
    box_named = _write(named, "GLOBEX", (420, 380), 3.0)
    _write(plain, "HELLO WORLD", (300, 380), 2.5)
    box_alias = _write(alias, "Initech", (700, 200), 2.0, colour=(150, 20, 20))
    return {"frames": [named, plain, alias], "boxes": [box_named, None, box_alias]}


@pytest.fixture(scope="module")
def results(catalog, scene):
    frames = scene["frames"]
    batch = FrameBatch.stack("test", 0, frames, [0.0, 0.2, 0.4], [0, 1, 2])
    return create("ocr", catalog).detect(batch)


def test_reports_a_brand_whose_name_is_read_with_the_box_of_the_text(scene, results):
    dets = results[0].detections
    assert [d.label for d in dets] == ["globex"]
    assert dets[0].detector == "ocr" and 0.0 < dets[0].score <= 1.0
    assert iou(dets[0].box, scene["boxes"][0]) >= 0.5, (dets[0].box, scene["boxes"][0])


def test_reports_nothing_where_other_text_or_none_is_read(results):
    assert results[1].detections == []


def test_reads_an_alias(scene, results):
    dets = results[2].detections
    assert [d.label for d in dets] == ["initech"]
    assert iou(dets[0].box, scene["boxes"][2]) >= 0.5


def test_is_in_the_default_set_where_rapidocr_is_installed():
    names, left_out = default_set(lambda name: {})
    assert "ocr" in names and "ocr" not in left_out
    assert detector_class("ocr").unavailable_reason(parse_params("ocr", {})) is None


def test_the_engine_runs_its_models_with_onnx_runtimes_memory_arena_and_reads_the_same(catalog, scene):
    """RapidOCR makes its sessions with the arena off; the detector makes them again with it
    on (faster, measured), and the sessions still read what they read before."""
    import onnxruntime as ort

    detector = create("ocr", catalog)
    engine = detector._reader()
    sessions = [
        holder.session
        for holder in (engine.text_det.infer, engine.text_rec.session)
        if isinstance(holder.session, ort.InferenceSession)
    ]
    assert len(sessions) == 2
    assert all(s.get_session_options().enable_cpu_mem_arena for s in sessions)
    frame = scene["frames"][0]
    with_arena = engine(frame)[0]
    plain = detector._make_engine(
        intra_op_num_threads=1, inter_op_num_threads=1, det_limit_side_len=960, det_limit_type="max"
    )
    assert not plain.text_det.infer.session.get_session_options().enable_cpu_mem_arena
    without = plain(frame)[0]
    assert [line[1] for line in with_arena] == [line[1] for line in without]
    assert any("GLOBEX" in line[1] for line in with_arena)


def test_a_name_is_read_only_as_whole_words_of_a_line(catalog):
    """'Globex' names Globex; 'Globexia' (a longer word) does not, on a generated frame too."""
    frame = _background(21)
    _write(frame, "GLOBEXIA", (380, 380), 3.0)
    assert create("ocr", catalog).detect(FrameBatch.stack("test", 0, [frame], [0.0], [0]))[0].detections == []
    detector = create("ocr", catalog)
    assert [b for b, _, _ in detector._names_in("Initech Corp")] == ["initech"]
    assert [b for b, _, _ in detector._names_in("by INITECH, 2024")] == ["initech"]
    assert detector._names_in("Initechnology") == [] and detector._names_in("globexia") == []
    # with whole_words off a name is found inside a word, as before
    loose = create("ocr", catalog, {"whole_words": False})
    assert [b for b, _, _ in loose._names_in("globexia")] == ["globex"]


def test_a_misread_name_must_be_unambiguous_and_not_another_name_read_exactly(tmp_path):
    (tmp_path / "brands.json").write_text(
        json.dumps(
            [{"id": f"brand{k}", "name": f"Brand {k}"} for k in range(1, 11)] + [{"id": "pepsi", "name": "Pepsi"}]
        )
    )
    detector = create("ocr", BrandCatalog.from_folder(tmp_path))
    assert [b for b, _, _ in detector._names_in("BRAND 10")] == ["brand10"]  # not also "Brand 1"
    assert detector._names_in("BRAND") == []  # as close to every "Brand N": names none
    [(brand, closeness, _)] = detector._names_in("EPSI")  # a letter lost: still Pepsi
    assert brand == "pepsi" and 0.85 <= closeness < 1.0


def _shot(seed: int, text: str | None, origins: list[tuple[int, int]]):
    """Frames of one shot: the same background, the name written at each origin in turn."""
    frames, boxes = [], []
    for origin in origins:
        frame = _background(seed)
        boxes.append(_write(frame, text, origin, 3.0) if text else None)
        frames.append(frame)
    return frames, boxes


def test_a_name_read_on_a_key_frame_is_followed_until_a_cut(catalog):
    moving, boxes = _shot(5, "GLOBEX", [(420, 380), (432, 384), (444, 388), (456, 392)])
    after, _ = _shot(6, None, [(0, 0), (0, 0)])  # a new shot without the name
    frames = moving + after
    cuts = np.array([True, False, False, False, True, False])
    batch = dataclasses.replace(
        FrameBatch.stack("test", 0, frames, [i * 0.2 for i in range(6)], list(range(6))), cuts=cuts
    )
    results = create("ocr", catalog, {"read_every_s": 10.0}).detect(batch)
    for result, box in zip(results[:4], boxes):
        [d] = result.detections
        assert d.label == "globex" and iou(d.box, box) >= 0.5
    assert all(r.detections == [] for r in results[4:])


def test_a_name_that_goes_is_not_followed(catalog):
    frames, boxes = _shot(7, "GLOBEX", [(420, 380)])
    gone, _ = _shot(7, None, [(0, 0), (0, 0)])  # the same shot, the name painted over
    batch = dataclasses.replace(
        FrameBatch.stack("test", 0, frames + gone, [0.0, 0.2, 0.4], [0, 1, 2]), cuts=np.array([True, False, False])
    )
    results = create("ocr", catalog, {"read_every_s": 10.0}).detect(batch)
    assert [d.label for d in results[0].detections] == ["globex"]
    assert results[1].detections == [] and results[2].detections == []


def _emblem_over_name() -> np.ndarray:
    """A reference image, RGBA: a disc with the brand's name under it, on transparency."""
    rgba = np.zeros((300, 420, 4), np.uint8)
    cv2.circle(rgba, (210, 100), 90, (200, 30, 30, 255), -1)
    cv2.putText(rgba, "VANTA", (60, 270), FONT, 2.6, (20, 20, 120, 255), 6, cv2.LINE_AA)
    return rgba


def test_the_box_is_the_brands_whole_mark_laid_out_around_its_name(tmp_path):
    logo = _emblem_over_name()
    cv2.imwrite(str(tmp_path / "vanta.png"), cv2.cvtColor(logo, cv2.COLOR_RGBA2BGRA))
    catalog = BrandCatalog.from_folder(tmp_path)
    frame, plain = _background(8), _background(9)
    x, y, s = 380, 160, 1.2
    small = cv2.resize(logo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    alpha = small[..., 3:] / 255.0
    h, w = small.shape[:2]
    frame[y : y + h, x : x + w] = (small[..., :3] * alpha + frame[y : y + h, x : x + w] * (1 - alpha)).astype(np.uint8)
    ys, xs = np.nonzero(small[..., 3] >= 128)
    mark = (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1)
    batch = FrameBatch.stack("test", 0, [frame, plain], [0.0, 0.2], [0, 1])
    [d] = create("ocr", catalog).detect(batch)[0].detections
    assert d.label == "vanta" and iou(d.box, mark) >= 0.5, (d.box, mark)
    [word] = create("ocr", catalog, {"mark_box": False}).detect(batch)[0].detections
    assert iou(word.box, mark) < 0.5  # the word alone is not the mark
    assert create("ocr", catalog).detect(batch)[1].detections == []


def _crest_over_name() -> np.ndarray:
    """A reference image, RGBA: a striped star in a ring over the brand's name, on transparency."""
    rgba = np.zeros((340, 420, 4), np.uint8)
    cv2.circle(rgba, (210, 120), 105, (30, 60, 160, 255), 14)
    angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
    radii = np.where(np.arange(10) % 2 == 0, 88, 36)
    star = np.stack([210 + radii * np.cos(angles), 120 + radii * np.sin(angles)], 1).astype(np.int32)
    cv2.fillPoly(rgba, [star], (200, 40, 30, 255))
    for y in range(60, 190, 18):
        cv2.line(rgba, (150, y), (270, y + 10), (250, 220, 60, 255), 4)
    cv2.putText(rgba, "KESTRA", (40, 310), FONT, 2.4, (20, 20, 120, 255), 6, cv2.LINE_AA)
    return rgba


def _paste(frame: np.ndarray, rgba: np.ndarray, x: int, y: int, s: float):
    """The reference pasted into the frame at (x, y), scaled by s; returns the mark's bounds."""
    small = cv2.resize(rgba, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    alpha = small[..., 3:] / 255.0
    h, w = small.shape[:2]
    frame[y : y + h, x : x + w] = (small[..., :3] * alpha + frame[y : y + h, x : x + w] * (1 - alpha)).astype(np.uint8)
    ys, xs = np.nonzero(small[..., 3] >= 128)
    return (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1)


def test_a_mark_much_larger_than_its_name_is_boxed_only_where_it_is_seen_around_the_name(tmp_path):
    """The layout check: the crest over the name is boxed whole; the name written alone is
    reported without a box (the brand is there, its mark is not), on the frames it is followed
    into too; a frame without the name gives nothing."""
    logo = _crest_over_name()
    cv2.imwrite(str(tmp_path / "kestra.png"), cv2.cvtColor(logo, cv2.COLOR_RGBA2BGRA))
    catalog = BrandCatalog.from_folder(tmp_path)
    whole, alone, plain = _background(11), _background(12), _background(13)
    mark = _paste(whole, logo, 420, 140, 1.1)
    word = _write(alone, "KESTRA", (430, 520), 2.6, colour=(20, 20, 120))
    frames = [whole, alone, alone, plain]
    batch = dataclasses.replace(
        FrameBatch.stack("test", 0, frames, [0.0, 0.2, 0.4, 0.6], [0, 1, 2, 3]),
        cuts=np.array([True, True, False, True]),
    )
    detector = create("ocr", catalog)
    assert "kestra" in detector._marks  # the mark is laid out over several name boxes: checked
    results = detector.detect(batch)
    [found] = results[0].detections
    assert found.label == "kestra" and iou(found.box, mark) >= 0.5, (found.box, mark)
    for followed in results[1:3]:
        [named] = followed.detections
        assert named.label == "kestra" and named.box is None
    assert results[3].detections == []
    # without the check, the name alone would have been given the whole mark's box
    trusting = create("ocr", catalog, {"layout_min_points": 0}).detect(batch)
    [guessed] = trusting[1].detections
    assert guessed.box is not None and iou(guessed.box, word) < 0.5


def _counting_reads(detector):
    """The detector, with a count of the frames it reads (the rest are followed)."""
    reads = []
    read = detector._read

    def counted(rgb, mark):
        reads.append(1)
        return read(rgb, mark)

    detector._read = counted
    return reads


def _one_frame_batches(frames, times, live: bool, cuts=None, stream="cam", first_seq=0):
    for k, (frame, t) in enumerate(zip(frames, times)):
        batch = FrameBatch.stack(stream, first_seq + k, [frame], [t], [k], live=live)
        yield dataclasses.replace(batch, cuts=np.array([bool(cuts[k]) if cuts else k == 0]))


def test_a_live_stream_sent_a_frame_a_batch_is_read_every_few_seconds_and_followed_between(catalog):
    moving, boxes = _shot(5, "GLOBEX", [(420, 380), (432, 384), (444, 388), (456, 392)])
    gone, _ = _shot(5, None, [(0, 0)])  # the same shot, the name painted over
    frames, times = moving + gone, [0.0, 0.5, 1.0, 1.5, 2.0]
    detector = create("ocr", catalog, {"read_every_s": 10.0})
    reads = _counting_reads(detector)
    results = [detector.detect(b)[0] for b in _one_frame_batches(frames, times, live=True)]
    assert len(reads) == 1  # the first frame; the next three follow the name, the last loses it
    for result, box in zip(results[:4], boxes):
        [d] = result.detections
        assert d.label == "globex" and iou(d.box, box) >= 0.5
    assert results[4].detections == []


def test_a_cut_a_gap_in_the_batches_or_a_file_makes_the_next_frame_read_again(catalog):
    frames, _ = _shot(5, "GLOBEX", [(420, 380), (432, 384), (444, 388)])
    times = [0.0, 0.5, 1.0]
    for live, cuts, reads_wanted in ((True, [True, True, False], 2), (False, None, 3)):
        detector = create("ocr", catalog, {"read_every_s": 10.0})
        reads = _counting_reads(detector)
        for b in _one_frame_batches(frames, times, live=live, cuts=cuts):
            [d] = detector.detect(b)[0].detections
            assert d.label == "globex"
        assert len(reads) == reads_wanted, (live, cuts)
    # a batch that does not follow the stream's last one (another replica took those) is read
    detector = create("ocr", catalog, {"read_every_s": 10.0})
    reads = _counting_reads(detector)
    batches = list(_one_frame_batches(frames, times, live=True))
    detector.detect(batches[0])
    detector.detect(batches[2])
    assert len(reads) == 2
