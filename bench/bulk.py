"""Bulk analysis side by side: one `media-ray analyze` over a folder of copies of one clip, with
its default concurrency and with `--concurrency 1`, in one run; prints both wall times, their
ratio, and whether every file's frames.jsonl is the same in both.

    python bench/bulk.py [--files 8] [--seconds 30] [--fps 5] [--concurrency 0] [--work DIR]

Both commands start their own local Ray (or join one that runs, when RAY_ADDRESS says so), so
the start-up cost is in both.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(work: Path, files: int, seconds: float) -> tuple[Path, Path]:
    from media_ray.bench import make_bench_clip
    from media_ray.samples import numbered_brands, write_catalog

    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    logos = write_catalog(work / "logos", numbered_brands(10))
    clip = make_bench_clip(work, seconds, "scenery")
    for k in range(files):
        shutil.copy(clip, clips / f"rec{k:02d}.mp4")
    return clips, logos


def analyze(clips: Path, logos: Path, out: Path, fps: float, extra: list[str]) -> float:
    cmd = ["media-ray", "analyze", str(clips), "--brands", str(logos), "--fps", str(fps), "--out", str(out)]
    cmd += ["--no-progress", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    heads = [ln for ln in proc.stderr.splitlines() if ln.startswith(("analysing", "first analysed"))]
    print("  " + "\n  ".join(heads), flush=True)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--fps", type=float, default=5)
    ap.add_argument("--concurrency", default="0", help="the bulk run's --concurrency (0: as many as CPUs)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="media-ray-bulk-"))
    clips, logos = make_folder(work, args.files, args.seconds)
    print(f"{args.files} copies of a {args.seconds:g} s 1280x720 clip at {args.fps:g} frames/s in {clips}")
    print("one at a time (--concurrency 1):", flush=True)
    serial = analyze(clips, logos, work / "serial", args.fps, ["--concurrency", "1"])
    print(f"  {serial:.1f} s")
    print(f"at once (--concurrency {args.concurrency}):", flush=True)
    together = analyze(clips, logos, work / "together", args.fps, ["--concurrency", args.concurrency])
    print(f"  {together:.1f} s")
    names = sorted(p.stem for p in clips.glob("*.mp4"))
    same = all(
        (work / "serial" / n / "frames.jsonl").read_bytes() == (work / "together" / n / "frames.jsonl").read_bytes()
        for n in names
    )
    print(f"wall time at once / one at a time: {together / serial:.2f}; outputs identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
