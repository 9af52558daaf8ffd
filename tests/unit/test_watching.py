"""The watch's core: a file is taken once it has stopped changing, once, and never again by a
watcher on the same ledger (no Ray; the clock is the test's)."""

from __future__ import annotations

import json

import pytest

from media_ray.sources import SourceError
from media_ray.watching import Ledger, WatchConfig, Watcher, check_source


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watcher(folder, ledger, clock, settle_s=2.0):
    return Watcher(str(folder), ledger, WatchConfig(poll_s=0.5, settle_s=settle_s), clock)


def test_a_growing_file_is_taken_once_it_has_stopped_changing_for_the_settle_time(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    clock = Clock()
    w = watcher(drop, Ledger(tmp_path / "ledger.jsonl"), clock)
    rec = drop / "rec.mp4"
    rec.write_bytes(b"a" * 100)
    (drop / "notes.txt").write_text("not a video")
    assert w.poll() == []  # first seen
    clock.now = 1.5
    with open(rec, "ab") as f:
        f.write(b"b" * 100)  # still being written
    assert w.poll() == []
    clock.now = 3.0
    assert w.poll() == []  # unchanged for 1.5 s only
    clock.now = 3.5
    taken = w.poll()
    assert [t.uri for t in taken] == [str(rec)] and taken[0].size == 200
    clock.now = 10.0
    assert w.poll() == []  # taken already


def test_what_the_ledger_holds_is_never_taken_again_by_a_later_watcher_but_a_rewritten_file_is(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (drop / name).write_bytes(b"x" * 10)
    clock = Clock()
    ledger = Ledger(tmp_path / "out" / "ledger.jsonl")
    w = watcher(drop, ledger, clock, settle_s=0)
    taken = w.poll()
    assert [t.uri for t in taken] == [str(drop / "a.mp4"), str(drop / "b.mp4")]
    for item in taken:
        ledger.record(item, "done", frames_analysed=3)
    lines = [json.loads(ln) for ln in (tmp_path / "out" / "ledger.jsonl").read_text().splitlines()]
    assert [(e["source"], e["output"], e["status"], e["frames_analysed"]) for e in lines] == [
        (str(drop / "a.mp4"), "a", "done", 3),
        (str(drop / "b.mp4"), "b", "done", 3),
    ]

    again = Ledger(tmp_path / "out" / "ledger.jsonl")  # a restart
    w2 = watcher(drop, again, clock, settle_s=0)
    assert w2.poll() == [] and (w2.listed, w2.known) == (2, 2)
    (drop / "b.mp4").write_bytes(b"y" * 20)  # rewritten: another recording of the same name
    retaken = w2.poll()
    assert [t.uri for t in retaken] == [str(drop / "b.mp4")]
    assert again.name_for(retaken[0]) == "b"  # into the same folder


def test_output_names_are_unique_and_a_torn_ledger_line_is_skipped(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "clip.mp4").write_bytes(b"1")
    (drop / "clip.mov").write_bytes(b"2")
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    taken = watcher(drop, ledger, Clock(), settle_s=0).poll()
    ledger.record(taken[0], "done")
    with open(path, "a") as f:
        f.write('{"source": "half a rec')  # a write cut short
    again = Ledger(path)
    assert len(again) == 1 and again.holds(taken[0]) and not again.holds(taken[1])
    assert sorted(again.name_for(t) for t in taken) == ["clip", "clip-2"]


def test_a_source_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(SourceError, match="not a folder"):
        check_source(str(tmp_path / "absent"))
