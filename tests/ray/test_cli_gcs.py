"""`media-ray analyze gs://... --out gs://...` as a user runs it, against a local Cloud Storage
emulator (127.0.0.1): the videos read from the bucket, the results read back from it."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from cli_support import media_ray
from gcs_emulator import gcs, objects  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_analyze_reads_objects_and_writes_every_result_file_under_the_gs_prefix(gcs, sample, tmp_path):  # noqa: F811
    bucket = gcs.create_bucket(f"media-{uuid.uuid4().hex[:8]}")
    for name in ("first", "second"):
        bucket.blob(f"recordings/{name}.mp4").upload_from_filename(str(sample["clip"]))
    out = f"gs://{bucket.name}/results/"
    proc = media_ray(
        "analyze",
        f"gs://{bucket.name}/recordings/",  # a folder of objects
        "--brands",
        sample["logos"],
        "--detectors",
        "reference,visual",
        "--fps",
        2,
        "--out",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    written = objects(gcs, bucket.name, "results/")
    for name in ("first", "second"):
        for part in ("frames.jsonl", "report.json", "signals.jsonl"):
            assert f"results/{name}/{part}" in written, sorted(written)
        rows = [json.loads(line) for line in written[f"results/{name}/frames.jsonl"].decode().splitlines()]
        assert len(rows) == 24
        report = json.loads(written[f"results/{name}/report.json"])
        assert report["video"] == f"gs://{bucket.name}/recordings/{name}.mp4"
        assert report["frames_analysed"] == 24 and {"acme", "globex"} <= set(report["brands"])
    summary = list(csv.DictReader(io.StringIO(written["results/summary.csv"].decode())))
    assert [(r["video"], r["output"], r["status"]) for r in summary] == [
        (f"gs://{bucket.name}/recordings/{n}.mp4", f"{out}{n}", "done") for n in ("first", "second")
    ]
    assert f"under {out}" in proc.stderr
