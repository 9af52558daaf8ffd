"""`media-ray eval`'s figures per brand: counts attributed to brands, pooled, printed and kept."""

from __future__ import annotations

import argparse
import json

from media_ray.evaluation import Counts, run_eval, score


def _gt(*frames: list[dict], fps: int = 10) -> dict:
    return {"fps": fps, "n_frames": len(frames), "frames": [{"objects": list(f)} for f in frames]}


def _obj(brand, box, visible=1.0) -> dict:
    return {"brand": brand, "bbox_xyxy": list(box), "visible_frac": visible, "distractor": False}


def _det(label, box, score=0.9) -> dict:
    return {"label": label, "score": score, "box": list(box)}


A, B = (100, 100, 200, 200), (400, 100, 500, 200)


def test_counts_go_to_the_logos_brand_or_the_reported_label():
    gt = _gt(
        [_obj("acme", A), _obj("globex", B)],
        [_obj("acme", A), _obj("globex", B, visible=0.2)],  # globex optional here
    )
    records = [
        {"t": 0.0, "detections": [_det("acme", A), _det("initech", B)]},
        {"t": 0.1, "detections": [_det("acme", B), _det("globex", B)]},
    ]
    c = score(gt, records, {})
    acme, globex, initech = c.brands["acme"], c.brands["globex"], c.brands["initech"]
    assert (acme.box_tp, acme.box_fp, acme.box_fn) == (1, 1, 1)
    assert (acme.presence_tp, acme.presence_fp, acme.presence_fn) == (2, 0, 0)
    assert (globex.box_tp, globex.box_fp, globex.box_fn) == (0, 0, 1)  # the optional match counts neither way
    assert (globex.presence_tp, globex.presence_fp, globex.presence_fn) == (0, 0, 1)
    assert (initech.box_fp, initech.presence_fp, initech.box_tp) == (1, 1, 0)
    # the brands' counts add up to the clip's
    for k in ("box_tp", "box_fp", "box_fn", "presence_tp", "presence_fp", "presence_fn"):
        assert sum(getattr(b, k) for b in c.brands.values()) == getattr(c, k), k
    f = acme.figures()
    assert f["box_precision"] == 0.5 and f["box_recall"] == 0.5 and f["presence_precision"] == 1.0


def test_brand_counts_pool_over_clips():
    gt = _gt([_obj("acme", A)])
    hit = score(gt, [{"t": 0.0, "detections": [_det("acme", A)]}], {})
    miss = score(gt, [{"t": 0.0, "detections": [_det("globex", B)]}], {})
    total = sum((hit, miss), Counts())
    assert (total.brands["acme"].box_tp, total.brands["acme"].box_fn) == (1, 1)
    assert total.brands["globex"].box_fp == 1 and total.box_tp == 1
    assert hit.brands["acme"].box_fn == 0  # the clips' own counts are left as they were


def test_eval_prints_and_keeps_the_brands_figures(sample, tmp_path, capsys):
    out = tmp_path / "out"
    args = argparse.Namespace(
        clips=[str(sample["folder"])],
        brands=str(sample["logos"]),
        fps=5.0,
        detectors="reference",
        out=str(out),
        config=None,
    )
    assert run_eval(args) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    clip_row = next(i for i, line in enumerate(lines) if line.startswith("sample"))
    brand_head = next(i for i, line in enumerate(lines) if line.startswith("brand "))
    assert brand_head > clip_row
    kept = json.loads((out / "eval.json").read_text())
    assert set(kept) == {"clips", "overall", "brands"} and list(kept["clips"]) == ["sample"]
    clip = kept["clips"]["sample"]
    assert clip["box_precision"] == float(lines[clip_row].split()[2])
    assert kept["brands"] and set(kept["brands"]) == set(clip["brands"])
    for brand, f in kept["brands"].items():
        row = next(line for line in lines[brand_head:] if line.split()[0] == brand).split()
        assert [int(v) for v in row[1:4]] == [f["box_tp"], f["box_fp"], f["box_fn"]]
        assert [int(v) for v in row[6:9]] == [f["presence_tp"], f["presence_fp"], f["presence_fn"]]
    assert sum(f["box_tp"] for f in kept["brands"].values()) == clip["box_tp"]
