"""`media-ray watch DIR` as a user runs it: recordings dropped one after another (one written
slowly while the watch runs) are each analysed once, and a restarted watch takes none again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from cli_support import read_frames
from gcs_emulator import gcs, objects  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.ray]

POLL_S, SETTLE_S = 0.3, 2.5
#: the slow writer's pause: longer than a poll, shorter than the settle time
PAUSE_S = 1.0


class Watch:
    """A `media-ray watch` subprocess whose stderr lines are collected as they come."""

    def __init__(self, drop, out, logos, config):
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        args = ["watch", drop, "--brands", logos, "--detectors", "reference", "--fps", 1, "--out", out]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media_ray.app.cli", *map(str, args), "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, words: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [ln for ln in self.lines if words in ln]
            if found:
                return found[0]
            assert self.proc.poll() is None, "\n".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"no {words!r} in:\n" + "\n".join(self.lines))

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        rc = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        return rc


def ledger(out) -> list[dict]:
    path = out / "watch-ledger.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def wait_for_ledger(out, n: int, watch: Watch, timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = ledger(out)
        if len(entries) >= n:
            return entries
        assert watch.proc.poll() is None, "\n".join(watch.lines)
        time.sleep(0.2)
    raise AssertionError(f"{len(ledger(out))} of {n} files analysed:\n" + "\n".join(watch.lines))


def test_watch_takes_each_landed_recording_once_and_a_restart_takes_none_again(sample, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    config = tmp_path / "watch.yaml"
    config.write_text(f"watch: {{poll_s: {POLL_S}, settle_s: {SETTLE_S}}}\n")
    clip = sample["clip"].read_bytes()

    watch = Watch(drop, out, sample["logos"], config)
    watch.wait_for("0 of 0 videos there were analysed before")
    shutil.copy(sample["clip"], drop / "first.mp4")
    wait_for_ledger(out, 1, watch)
    shutil.copy(sample["clip"], drop / "second.mp4")
    with open(drop / "third.mp4", "wb") as f:  # a recording still being written
        f.write(clip[: len(clip) // 2])
        f.flush()
        time.sleep(PAUSE_S)
        f.write(clip[len(clip) // 2 :])
    entries = wait_for_ledger(out, 3, watch)
    assert watch.stop(signal.SIGINT) == 0, "\n".join(watch.lines)
    assert "watch stopped: 3 files analysed" in watch.lines[-1]

    entries = ledger(out)
    assert sorted(e["source"] for e in entries) == sorted(str(drop / f"{n}.mp4") for n in ("first", "second", "third"))
    assert all(e["status"] == "done" and e["size"] == len(clip) and e["frames_analysed"] == 12 for e in entries)
    written = {}
    for name in ("first", "second", "third"):
        frames = out / name / "frames.jsonl"
        assert len(read_frames(frames)) == 12
        report = json.loads((out / name / "report.json").read_text())
        assert report["video"] == str(drop / f"{name}.mp4") and "acme" in report["brands"]
        written[name] = frames.stat().st_mtime_ns

    again = Watch(drop, out, sample["logos"], config)
    again.wait_for("3 of 3 videos there were analysed before")
    assert again.stop(signal.SIGTERM) == 0, "\n".join(again.lines)
    assert not any(ln.startswith("taking") for ln in again.lines)
    assert len(ledger(out)) == 3
    assert {n: (out / n / "frames.jsonl").stat().st_mtime_ns for n in written} == written


def test_watch_of_a_gs_prefix_writes_results_and_its_ledger_to_gs_and_a_restart_reads_it_back(
    gcs,  # noqa: F811
    sample,
    tmp_path,
):
    import uuid

    bucket = gcs.create_bucket(f"watch-{uuid.uuid4().hex[:8]}")
    source, out = f"gs://{bucket.name}/landing/", f"gs://{bucket.name}/results/"
    config = tmp_path / "watch.yaml"
    config.write_text(f"watch: {{poll_s: {POLL_S}, settle_s: {SETTLE_S}}}\n")
    bucket.blob("landing/match.mp4").upload_from_filename(str(sample["clip"]))

    watch = Watch(source, out, sample["logos"], config)
    watch.wait_for(f"wrote {out}match")
    assert watch.stop(signal.SIGTERM) == 0, "\n".join(watch.lines)
    written = objects(gcs, bucket.name, "results/")
    assert {"results/match/frames.jsonl", "results/match/report.json", "results/watch-ledger.jsonl"} <= set(written)
    assert len(written["results/match/frames.jsonl"].decode().splitlines()) == 12
    [entry] = [json.loads(ln) for ln in written["results/watch-ledger.jsonl"].decode().splitlines()]
    assert entry["source"] == source + "match.mp4" and entry["status"] == "done"

    again = Watch(source, out, sample["logos"], config)
    again.wait_for("1 of 1 videos there were analysed before")
    assert again.stop(signal.SIGINT) == 0, "\n".join(again.lines)
    assert not any(ln.startswith("taking") for ln in again.lines)
