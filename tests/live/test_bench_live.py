"""`media-ray bench-live` as a user runs it: streams played as live through the API (with its
token) and followed on their WebSockets to the end."""

from __future__ import annotations

import re

from cli_support import media_ray


def test_bench_live_plays_a_stream_through_the_api_and_accounts_for_every_frame():
    proc = media_ray("bench-live", "--detectors", "visual", "--streams", 1, "--seconds", 4, "--fps", 2, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = re.search(r"1 stream\(s\): .* (\d+) frames analysed, (\d+) dropped; .* replicas visual: 1", proc.stdout)
    assert run, proc.stdout
    assert int(run.group(1)) + int(run.group(2)) == 8  # 4 s at 2 frames/s, each analysed or dropped
    assert re.search(r"held with p95 < 2 s and no frame dropped: [01] stream\(s\) at 2 frames/s", proc.stdout)
