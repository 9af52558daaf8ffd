"""Benchmarks, each measured in one run on one machine.

The benchmarks of the core, without Ray (those through Ray are in `media_ray.app.bench`):

- `media-ray bench-detectors`: the weight-free detectors (the default set unless others are
  named) on a clip and catalogue of the user's, or a generated 1280x720 clip and 10-brand
  catalogue: each alone, then the set side by side with the temporal stage, as `analyze` and
  `eval` run them in one process. Frames are decoded first, so the figures are analysis only.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.detectors import create
from media_ray.samples import Track, make_mark, numbered_brands, render_clip, write_catalog
from media_ray.shots import with_cuts
from media_ray.sources import batched, decode

log = logging.getLogger(__name__)


def make_bench_clip(folder: Path, seconds: float, background: str = "noise") -> Path:
    """A 1280x720 clip in which each of 10 generated brands appears in turn, on a generated
    background (`samples.BACKGROUNDS`)."""
    brands = numbered_brands(10)
    marks = {bid: make_mark(name, colour, seed=i) for i, (bid, (name, colour)) in enumerate(brands.items())}
    ids = list(brands)
    tracks = [
        Track(
            ids[i],
            i * seconds / 10,
            i * seconds / 10 + seconds / 4,
            (100 + 90 * i, 80),
            (200 + 60 * i, 400),
            260,
        )
        for i in range(10)
    ]
    path = folder / "bench.mp4"
    render_clip(path, marks, tracks, seconds=seconds, fps=30, size=(1280, 720), seed=3, background=background)
    return path


def rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def run_detector_bench(args: argparse.Namespace) -> int:
    from media_ray.chain import StageChain, run_local
    from media_ray.detectors import default_set
    from media_ray.sources import probe

    config = MediaRayConfig.load(args.config)
    batch_size = args.batch_size or config.sampling.batch_size
    with tempfile.TemporaryDirectory(prefix="media-ray-bench-") as tmp_name:
        tmp = Path(tmp_name)
        video = args.video or str(make_bench_clip(tmp, args.seconds, args.background))
        brands = args.brands or write_catalog(tmp / "logos", numbered_brands(10))
        catalog = BrandCatalog.from_folder(brands)
        if args.detectors:
            names = [n.strip() for n in args.detectors.split(",") if n.strip()]
        else:
            names, _ = default_set(config.params_for)
        detectors = [create(n, catalog, config.params_for(n)) for n in names]
        info = probe(video)
        start = time.perf_counter()
        decoded = decode(video, args.fps, config.sampling.decode_threads)
        batches = list(with_cuts(batched(decoded, "bench", batch_size), config.shots))
        frames = sum(len(b) for b in batches)
        decode_fps = rate(frames, time.perf_counter() - start)
        print(
            f"video {video} ({info.width}x{info.height}), {frames} frames at {args.fps:g} frames/s, "
            f"{len(catalog)} brands, batches of {batch_size}, {os.cpu_count()} cores"
        )
        print(f"{'decode':<28}{decode_fps:8.2f} frames/s")
        warm, timed = batches[:1], batches[1:]
        timed_frames = frames - len(warm[0]) if warm else 0
        for detector in detectors:
            detector.detect(warm[0])  # first-call allocations
            start = time.perf_counter()
            for b in timed:
                detector.detect(b)
            print(f"{detector.name + ' alone':<28}{rate(timed_frames, time.perf_counter() - start):8.2f} frames/s")
        config.sampling.fps = args.fps
        list(run_local(warm, detectors, StageChain.for_files(config, catalog), in_flight=config.pipeline.max_in_flight))
        start = time.perf_counter()
        analysed = sum(
            1
            for _ in run_local(
                timed, detectors, StageChain.for_files(config, catalog), in_flight=config.pipeline.max_in_flight
            )
        )
        set_fps = rate(analysed, time.perf_counter() - start)
        label = "+".join(names) + (" +tracking" if config.tracking.enabled else "")
        print(f"{'set, side by side':<28}{set_fps:8.2f} frames/s  ({label}; load average {os.getloadavg()[0]:.1f})")
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]
