"""`media-ray bench-scale`: how the default set's frame rate grows with the cores it is given.

A *worker* is one process pinned to `cores_per_worker` cores (1 by default), running the
detectors side by side through the stage chain as `run_local` does, with its numeric
libraries' threads set to its cores. The frames are decoded once, before anything is timed,
into a file every worker maps; the batches are dealt to the workers in turn (batch k to
worker k mod n), so each has a like share of the clip. Every worker builds its detectors
and warms them on a batch of its own, then all start together; the figure is the frames
analysed over the time from that start until the last worker is done. With 1 and 2
workers on a 2-core machine it says what a second core adds; on a 16-core node, what 16 do.

The core only, without Ray: it runs where Ray cannot be installed (the GPU machine).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from media_ray.detectors import usable_cores

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScaleRow:
    workers: int
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _pin(cores: list[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


def _worker(spec: dict[str, Any], k: int, n: int, start: Any, done: Any) -> None:
    """One worker: its batches of the mapped frames through the detectors; puts
    (frames analysed, start time, end time) on `done`, or an error's text."""
    try:
        from media_ray.catalog import BrandCatalog
        from media_ray.chain import StageChain, run_local
        from media_ray.config import MediaRayConfig
        from media_ray.detectors import create, set_compute_threads
        from media_ray.model import FrameBatch

        _pin(spec["cores"][k])
        set_compute_threads(len(spec["cores"][k]))
        config = MediaRayConfig.model_validate(spec["config"])
        catalog = BrandCatalog.from_folder(spec["brands"])
        detectors = [create(name, catalog, config.params_for(name)) for name in spec["detectors"]]
        frames = np.load(spec["frames"], mmap_mode="r")
        times, cuts = np.load(spec["times"]), np.load(spec["cuts"])
        size = spec["batch_size"]

        def batch(seq: int) -> FrameBatch:
            lo, hi = seq * size, min(len(frames), (seq + 1) * size)
            b = FrameBatch.stack("scale", seq, list(np.asarray(frames[lo:hi])), list(times[lo:hi]), list(range(lo, hi)))
            return dataclasses.replace(b, cuts=np.asarray(cuts[lo:hi], bool))

        count = -(-len(frames) // size)
        mine = [batch(seq) for seq in range(k, count, n)]
        warm = batch((k + 1) % count)
        list(run_local([warm], detectors, StageChain.for_files(config, catalog)))
        start.wait()
        t0 = time.perf_counter()
        chain = StageChain.for_files(config, catalog)
        analysed = sum(1 for _ in run_local(mine, detectors, chain, in_flight=config.pipeline.max_in_flight))
        done.put((analysed, t0, time.perf_counter()))
    except Exception as e:  # reported by the parent, which stops the run
        done.put(f"worker {k}: {type(e).__name__}: {e}")


def measure(spec: dict[str, Any], workers: int, cores_per_worker: int, timeout_s: float) -> ScaleRow:
    """Frames/s of the set over `workers` processes of `cores_per_worker` cores each."""
    cores = usable_cores()
    if workers * cores_per_worker > len(cores):
        raise ValueError(
            f"{workers} workers of {cores_per_worker} cores need {workers * cores_per_worker} cores; "
            f"this process may use {len(cores)}"
        )
    spec = {**spec, "cores": [cores[i * cores_per_worker : (i + 1) * cores_per_worker] for i in range(workers)]}
    ctx = mp.get_context("spawn")
    start, done = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(spec, k, workers, start, done), daemon=True) for k in range(workers)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=timeout_s)
        reports = [done.get(timeout=timeout_s) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [r for r in reports if isinstance(r, str)]
    if errors:
        raise RuntimeError("; ".join(errors))
    frames = sum(r[0] for r in reports)
    seconds = max(r[2] for r in reports) - min(r[1] for r in reports)
    return ScaleRow(workers, frames, seconds)


def prepare(video: str, brands: str, detectors: list[str], config, folder: Path) -> dict[str, Any]:
    """Decode the clip once (with its shot cuts) into files the workers map; what they need."""
    from media_ray.shots import with_cuts
    from media_ray.sources import batched, decode

    size = config.sampling.batch_size
    batches = list(with_cuts(batched(decode(video, config.sampling.fps), "scale", size), config.shots))
    frames = np.concatenate([b.frames for b in batches])
    times = np.concatenate([b.times for b in batches])
    cuts = np.concatenate([b.cuts if len(b.cuts) == len(b) else np.zeros(len(b), bool) for b in batches])
    paths = {name: str(folder / f"{name}.npy") for name in ("frames", "times", "cuts")}
    np.save(paths["frames"], frames)
    np.save(paths["times"], times)
    np.save(paths["cuts"], cuts)
    return {
        **paths,
        "brands": brands,
        "detectors": detectors,
        "config": config.model_dump(mode="json"),
        "batch_size": size,
        "frame_count": len(frames),
    }


def run_scale(
    video: str | None,
    brands: str | None,
    detectors: list[str] | None,
    config,
    workers: list[int],
    cores_per_worker: int = 1,
    seconds: float = 20.0,
    timeout_s: float = 900.0,
) -> tuple[dict[str, Any], list[ScaleRow]]:
    """The set's frames/s with each number of `workers`, measured one after the other in
    this run; and what was measured (clip, frames, detectors)."""
    from media_ray.bench import make_bench_clip
    from media_ray.detectors import default_set
    from media_ray.samples import numbered_brands, write_catalog

    with tempfile.TemporaryDirectory(prefix="media-ray-scale-") as tmp_name:
        tmp = Path(tmp_name)
        video = video or str(make_bench_clip(tmp, seconds, "scenery"))
        brands = brands or str(write_catalog(tmp / "logos", numbered_brands(10)))
        names = detectors or default_set(config.params_for)[0]
        spec = prepare(video, brands, names, config, tmp)
        rows = []
        for n in workers:
            rows.append(measure(spec, n, cores_per_worker, timeout_s))
            log.info("bench-scale: %d workers: %.2f frames/s", n, rows[-1].fps)
        about = {"video": video, "frames": spec["frame_count"], "detectors": names, "cores": len(usable_cores())}
        return about, rows
