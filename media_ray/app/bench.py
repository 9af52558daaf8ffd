"""Benchmarks through Ray, each measured in one run on one machine.

- `media-ray bench`: decoding alone, the CLIP detector alone (no Ray), and the whole Ray
  pipeline with the same model. The CLIP model is randomly initialised at the size asked for
  (ViT-B/32 by default), so the figures measure compute, not accuracy, and need no download.
  The ratio printed last is the pipeline's frames/s over the slower of decoding and CLIP
  alone: how much of the attainable speed the distribution keeps.
- `media-ray bench-live`: live latency through the API for 1 and N simultaneous streams.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from media_ray.bench import make_bench_clip, percentile, rate
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.detectors import create
from media_ray.samples import numbered_brands, write_catalog
from media_ray.sources import batched, decode

log = logging.getLogger(__name__)


def run_bench(args: argparse.Namespace) -> int:
    from media_ray.random_clip_model import write_random_clip_model

    config = MediaRayConfig.load(args.config)
    config.sampling.fps = args.fps
    config.sampling.batch_size = args.batch_size
    with tempfile.TemporaryDirectory(prefix="media-ray-bench-") as tmp:
        tmp = Path(tmp)
        video = args.video or str(make_bench_clip(tmp, args.seconds))
        catalog = BrandCatalog.from_folder(write_catalog(tmp / "logos", numbered_brands(10)))
        model_dir = write_random_clip_model(tmp / "clip-model", args.preset)
        config.detectors.clip.model = str(model_dir)
        print(
            f"video {video}, {args.fps:g} frames/s analysed, batches of {args.batch_size}, "
            f"random CLIP {args.preset}, {len(catalog)} brands"
        )

        start = time.perf_counter()
        frames = sum(1 for _ in decode(video, args.fps, config.sampling.decode_threads))
        decode_fps = rate(frames, time.perf_counter() - start)
        print(f"decode alone          {decode_fps:8.2f} frames/s  ({frames} frames)")

        batches = list(batched(decode(video, args.fps), "bench", args.batch_size))
        detector = create("clip", catalog, config.params_for("clip"))
        detector.detect(batches[0])  # warm-up: first-call allocations
        start = time.perf_counter()
        for b in batches[1:]:
            detector.detect(b)
        clip_fps = rate(frames - len(batches[0]), time.perf_counter() - start)
        print(f"clip alone (no Ray)   {clip_fps:8.2f} frames/s")
        del detector, batches

        from media_ray.app.runtime import MediaRayRuntime

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
            pipeline_fps = rate(done, time.perf_counter() - first_at)
        print(f"ray pipeline          {pipeline_fps:8.2f} frames/s  ({done} frames after the first batch)")
        slower = min(decode_fps, clip_fps)
        print(
            f"pipeline / slower of decode and clip alone: {pipeline_fps / slower:.2f}  "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    return 0


def run_live_bench(args: argparse.Namespace) -> int:
    """Live latency: 1 and N simultaneous streams played as live, frame arrival at the ingest
    to its record on the WebSocket, with a random CLIP of the size asked for or the weight-free
    default set (`--detectors default`); then the most streams held with p95 under 2 s and
    no frame dropped. Autoscaling is the config's (`placement.NAME.autoscaling`)."""
    with tempfile.TemporaryDirectory(prefix="media-ray-live-bench-") as tmp:
        config, video, catalog, names = _live_bench_setup(args, Path(tmp))
        scaling = {n: config.placement_for(n).autoscaling for n in names}
        what = f"random CLIP {args.preset}" if names == ["clip"] else "+".join(names)
        print(
            f"video {video}, {args.fps:g} frames/s per stream, {what}, {len(catalog)} brands; autoscaling "
            + (", ".join(f"{n} {a.min_replicas}-{a.max_replicas} replicas" for n, a in scaling.items() if a) or "off")
            + "; latency = frame arrival at the ingest -> record on the WebSocket"
        )

        from ray import serve

        from media_ray.app.live_service import LiveService
        from media_ray.topology import app_name

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        held = 0
        with LiveService(config, catalog, names) as service:
            apps = {n: app_name(config.ray.app_prefix, n) for n in names}
            handles = [serve.get_app_handle(a) for a in apps.values()]
            for n in args.streams:
                run = _play_live(service.url, service.token.token, handles, video, n, args.seconds * 4 + 120)
                running = serve.status().applications
                replicas = ", ".join(
                    f"{n_}: {sum(d.replica_states.get('RUNNING', 0) for d in running[a].deployments.values())}"
                    for n_, a in apps.items()
                )
                print(
                    f"{n} stream(s): latency p50 {run['p50']:.2f} s, p95 {run['p95']:.2f} s; "
                    f"{run['analysed']} frames analysed, {run['dropped']} dropped; "
                    f"mean batch {run['mean_batch']:.1f} frames per model call; replicas {replicas}"
                )
                if run["p95"] < 2.0 and run["dropped"] == 0 and run["analysed"]:
                    held = max(held, n)
    print(f"held with p95 < 2 s and no frame dropped: {held} stream(s) at {args.fps:g} frames/s")
    return 0


def _live_bench_setup(args: argparse.Namespace, tmp: Path):
    """The config, video, catalogue and detector names of a live benchmark."""
    import socket

    from media_ray.random_clip_model import write_random_clip_model

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    video = args.video or str(make_bench_clip(tmp, args.seconds))
    catalog = BrandCatalog.from_folder(write_catalog(tmp / "logos", numbered_brands(10)))
    config = MediaRayConfig.load(args.config)
    config.detectors.clip.model = str(write_random_clip_model(tmp / "clip-model", args.preset))
    config.http.port = free_port()
    config.live.sampling.fps = args.fps
    config.live.sampling.batch_size = 1
    first = free_port()
    config.live.rtmp_ports = (first, first)
    if "://" not in video:  # the streams play this file: its folder is a media root (a URL: as configured)
        video = str(Path(video).resolve())
        config.live.policy.media_roots = [*config.live.policy.media_roots, str(Path(video).parent)]
    if args.detectors == "default":
        from media_ray.detectors import default_set

        names = [n for n in default_set(config.params_for)[0] if n != "clip"]
    else:
        names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    for name in names:  # batches across streams
        config.placement.setdefault(
            name,
            config.placement_for(name).model_copy(update={"max_batch_size": 8, "batch_wait_timeout_s": 0.05}),
        )
    return config, video, catalog, names


def _play_live(base: str, token: str, handles: list, video: str, n: int, timeout_s: float) -> dict:
    """`n` streams of `video` played as live and followed on their WebSockets to the end: their
    latencies (p50, p95), frames analysed and dropped, and frames per detector call."""
    import json
    import threading

    import httpx
    from websockets.sync.client import connect

    def stats() -> tuple[int, int]:
        figures = [h.stats.remote().result() for h in handles]
        return sum(f["calls"] for f in figures), sum(f["frames"] for f in figures)

    calls_before, frames_before = stats()
    headers = {"Authorization": f"Bearer {token}"}
    http = httpx.Client(base_url=base, headers=headers, timeout=60)
    latencies: list[float] = []
    lock = threading.Lock()
    ids = [
        http.post("/api/streams", json={"source": video, "name": f"s{i}"}).raise_for_status().json()["id"]
        for i in range(n)
    ]
    ws_base = base.replace("http://", "ws://")

    def follow(sid: str) -> None:
        with connect(f"{ws_base}/ws/streams/{sid}", open_timeout=10, additional_headers=headers) as ws:
            while True:
                try:
                    record = json.loads(ws.recv(timeout=2.0))
                except TimeoutError:
                    if http.get(f"/api/streams/{sid}").json()["state"] in ("ended", "failed"):
                        return
                    continue
                with lock:
                    latencies.append(time.time() - record["arrival"])

    threads = [threading.Thread(target=follow, args=(sid,)) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    statuses = [http.get(f"/api/streams/{sid}").json() for sid in ids]
    calls_after, frames_after = stats()
    for sid in ids:
        http.delete(f"/api/streams/{sid}")
    http.close()
    calls = calls_after - calls_before
    return {
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "analysed": sum(s["frames_analysed"] for s in statuses),
        "dropped": sum(s["frames_dropped"] for s in statuses),
        "mean_batch": (frames_after - frames_before) / calls if calls else float("nan"),
    }
