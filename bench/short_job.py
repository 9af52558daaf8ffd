"""A short job side by side, in one run: the naive single-process SIFT loop (bench/naive_sift.py)
against `media-ray analyze` of the same 15 s 1280x720 clip at 5 frames/s, from a cold start (a
Ray of its own) and on a Ray already running (`ray start --head`, RAY_ADDRESS), the second time
the detectors are already deployed there.

    python bench/short_job.py [--seconds 15] [--fps 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_clip(work: Path, seconds: float) -> tuple[Path, Path]:
    from media_ray.bench import make_bench_clip
    from media_ray.samples import numbered_brands, write_catalog

    logos = write_catalog(work / "logos", numbered_brands(10))
    return make_bench_clip(work, seconds, "scenery"), logos


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("analysing", "first", "naive"))]
    return wall, "; ".join(said)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--fps", type=float, default=5)
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="media-ray-short-"))
    work.mkdir(parents=True, exist_ok=True)
    clip, logos = make_clip(work, args.seconds)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    analyze = ["media-ray", "analyze", str(clip), "--brands", str(logos), "--fps", str(args.fps), "--no-progress"]

    naive, said = timed([sys.executable, str(HERE / "naive_sift.py"), str(clip), str(logos), "--fps", str(args.fps)])
    print(f"naive loop: {naive:.1f} s ({said})", flush=True)
    cold, said = timed([*analyze, "--out", str(work / "cold")], env)
    print(f"analyze, cold: {cold:.1f} s ({said})", flush=True)
    bare, said = timed([*analyze, "--out", str(work / "bare")], {**env, "MEDIA_RAY_RAY__DASHBOARD": "false"})
    print(f"analyze, cold, Ray dashboard off: {bare:.1f} s ({said})", flush=True)

    port = free_port()
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(8)  # the head's start-up is not the job's
        joined = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        first, said = timed([*analyze, "--out", str(work / "first")], joined)
        print(f"analyze on a running Ray, first job (deploys): {first:.1f} s ({said})", flush=True)
        warm, said = timed([*analyze, "--out", str(work / "warm")], joined)
        print(f"analyze on a running Ray, next job (reuses): {warm:.1f} s ({said})", flush=True)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
    same = all((work / k / "frames.jsonl").read_bytes() == (work / "cold" / "frames.jsonl").read_bytes()
               for k in ("bare", "first", "warm"))  # fmt: skip
    print(
        f"analyze / naive loop: cold {cold / naive:.2f} (dashboard off {bare / naive:.2f}), "
        f"running Ray first job {first / naive:.2f}, "
        f"next job {warm / naive:.2f}; outputs identical: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
