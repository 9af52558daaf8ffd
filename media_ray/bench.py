"""`media-ray bench`: decoding alone, the CLIP detector alone (no Ray), and the whole Ray
pipeline with the same model, measured in one run on one machine.

The CLIP model is randomly initialised at the size asked for (ViT-B/32 by default), so the
figures measure compute, not accuracy, and need no download. The ratio printed last is the
pipeline's frames/s over the slower of decoding and CLIP alone: how much of the attainable
speed the distribution keeps.
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
from media_ray.sources import batched, decode

log = logging.getLogger(__name__)


def make_bench_clip(folder: Path, seconds: float) -> Path:
    brands = numbered_brands(10)
    marks = {bid: make_mark(name, colour, seed=i) for i, (bid, (name, colour)) in enumerate(brands.items())}
    ids = list(brands)
    tracks = [Track(ids[i], i * seconds / 10, i * seconds / 10 + seconds / 4, (100 + 90 * i, 80), (200 + 60 * i, 400), 260)
              for i in range(10)]
    path = folder / "bench.mp4"
    render_clip(path, marks, tracks, seconds=seconds, fps=30, size=(1280, 720), seed=3)
    return path


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def run_bench(args: argparse.Namespace) -> int:
    from media_ray.randomclip import write_random_clip

    config = MediaRayConfig.load(args.config)
    config.sampling.fps = args.fps
    config.sampling.batch_size = args.batch_size
    with tempfile.TemporaryDirectory(prefix="media-ray-bench-") as tmp:
        tmp = Path(tmp)
        video = args.video or str(make_bench_clip(tmp, args.seconds))
        catalog = BrandCatalog.from_folder(write_catalog(tmp / "logos", numbered_brands(10)))
        model_dir = write_random_clip(tmp / "clip", args.preset)
        config.detectors["clip"] = {**config.params_for("clip"), "model": str(model_dir)}
        print(f"video {video}, {args.fps:g} frames/s analysed, batches of {args.batch_size}, "
              f"random CLIP {args.preset}, {len(catalog)} brands")

        start = time.perf_counter()
        frames = sum(1 for _ in decode(video, args.fps, config.sampling.decode_threads))
        decode_fps = _rate(frames, time.perf_counter() - start)
        print(f"decode alone          {decode_fps:8.2f} frames/s  ({frames} frames)")

        batches = list(batched(decode(video, args.fps), "bench", args.batch_size))
        detector = create("clip", catalog, config.params_for("clip"))
        detector.detect(batches[0])  # warm-up: first-call allocations
        start = time.perf_counter()
        for b in batches[1:]:
            detector.detect(b)
        clip_fps = _rate(frames - len(batches[0]), time.perf_counter() - start)
        print(f"clip alone (no Ray)   {clip_fps:8.2f} frames/s")
        del detector, batches

        from actors.runtime import MediaRayRuntime

        logging.getLogger("ray.serve").setLevel(logging.WARNING)

        with MediaRayRuntime(config, catalog, ["clip"]) as runtime:
            # steady state, as for CLIP alone: the clock starts when the first batch is back
            # (actor start-up and the replica's first call are left out), and counts the rest
            first_at, done = None, 0
            for results in runtime.analyse(video, stream_id="bench"):
                if first_at is None:
                    first_at = time.perf_counter()
                else:
                    done += len(results)
            pipeline_fps = _rate(done, time.perf_counter() - first_at)
        print(f"ray pipeline          {pipeline_fps:8.2f} frames/s  ({done} frames after the first batch)")
        slower = min(decode_fps, clip_fps)
        print(f"pipeline / slower of decode and clip alone: {pipeline_fps / slower:.2f}  "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0
