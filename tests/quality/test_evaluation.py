"""`media-ray eval`: the scoring rules, and a whole run over a generated clip."""

from __future__ import annotations

import argparse

import pytest

from media_ray.evaluation import find_clips, run_eval, score


def _gt(*frames: list[dict], fps: int = 10) -> dict:
    return {"fps": fps, "n_frames": len(frames), "frames": [{"objects": list(f)} for f in frames]}


def _obj(brand, box, visible=1.0, distractor=False) -> dict:
    return {"brand": brand, "bbox_xyxy": list(box), "visible_frac": visible, "distractor": distractor}


def _det(label, box, score=0.9) -> dict:
    return {"label": label, "score": score, "box": list(box)}


def test_box_matches_need_the_label_and_half_overlap():
    gt = _gt([_obj("acme", (100, 100, 200, 200))], [_obj("acme", (100, 100, 200, 200))])
    records = [
        {"t": 0.0, "detections": [_det("acme", (110, 110, 210, 210))]},
        {"t": 0.1, "detections": [_det("globex", (100, 100, 200, 200)), _det("acme", (150, 150, 250, 250))]},
    ]
    c = score(gt, records, {})
    assert (c.box_tp, c.box_fp, c.box_fn) == (1, 2, 1)
    assert (c.presence_tp, c.presence_fp, c.presence_fn) == (2, 1, 0)


def test_small_or_hidden_logos_are_optional_and_distractors_count_as_hits():
    gt = _gt(
        [
            _obj("acme", (100, 100, 120, 200)),  # 20 px wide: optional
            _obj("globex", (300, 300, 400, 400), visible=0.3),  # mostly hidden: optional
            _obj("spam", (500, 500, 600, 600), distractor=True),
        ]
    )
    records = [{"t": 0.0, "detections": [_det("acme", (100, 100, 120, 200)), _det("spam", (500, 500, 600, 600))]}]
    c = score(gt, records, {})
    assert (c.box_tp, c.box_fp, c.box_fn) == (0, 1, 0)
    assert c.distractor_hits == 1


def test_exposure_error_is_relative_to_the_true_seconds():
    gt = _gt(*([[_obj("acme", (0, 0, 100, 100))]] * 10 + [[]] * 10))  # 1.0 s at 10 fps
    c = score(gt, [{"t": 0.0, "detections": []}], {"acme": 1.5, "globex": 0.25})
    assert c.exposure_error == pytest.approx(0.75)


def test_eval_scores_a_generated_clip(sample, capsys):
    args = argparse.Namespace(
        clips=[str(sample["folder"])],
        brands=str(sample["logos"]),
        fps=5.0,
        detectors="reference",
        out=None,
        config=None,
    )
    assert find_clips(args.clips) == [(sample["clip"], sample["clip"].with_name("sample.gt.json"))]
    assert run_eval(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("sample"))
    cells = row.split()
    box_precision, box_recall = float(cells[2]), float(cells[3])
    assert box_precision >= 0.9 and box_recall >= 0.5, out
