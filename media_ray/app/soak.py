"""Soak: live streams for a long while, and whether anything grows that should not.

    python -m media_ray.app.soak [--minutes 20] [--streams 4] [--every 30] [--warmup 3] [--out soak.json]

Starts `media-ray serve` in this process on 127.0.0.1 (the sample clip and catalogue, the
reference detector), opens `--streams` RTMP streams, each fed by an `ffmpeg` publisher looping
the clip in real time, and every `--every` seconds samples: the resident memory of every
process of the local Ray (by process name), the object store's bytes, the alive actors by
class and the object references Ray tracks. After `--warmup` minutes the samples are the
baseline; at the end it prints, per process kind, the growth of the mean of the last three
samples over the mean of the first three after warm-up, and exits 1 if any grows by 10 % or
more, an actor or reference is left over, or a stream stopped being analysed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

log = logging.getLogger(__name__)

#: growth (after warm-up) that fails the soak
LIMIT = 0.10


def _ray_processes() -> dict[str, int]:
    """Resident bytes of this process and of every process it started, by `kind [pid]`."""
    me = psutil.Process()
    rss: dict[str, int] = defaultdict(int)
    for p in [me, *me.children(recursive=True)]:
        try:
            # a Ray worker's title names the method it runs now: the actor class is what stays
            name = "driver" if p.pid == me.pid else p.name().split(".")[0]
            rss[f"{name} [{p.pid}]"] += p.memory_info().rss
        except psutil.Error:
            continue
    return dict(rss)


def _object_store() -> tuple[int, int, int]:
    """Object store bytes and objects, and the object references Ray tracks (what `ray memory` shows)."""
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=False, num_entries=100_000)
    found = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects", text)
    refs = len(re.findall(r"\|\s*[A-Z_]+_(?:REFERENCE|MEMORY|TASK|OBJECT|HANDLE)\s*\|", text))
    return (int(found.group(1)) * 2**20, int(found.group(2)), refs) if found else (0, 0, refs)


def _alive_actors() -> dict[str, int]:
    import ray._private.state as state  # the GCS's table, as `ray list actors` shows it, without a dashboard

    return dict(Counter(a.get("ActorClassName", "?") for a in state.actors().values() if a.get("State") == "ALIVE"))


def sample(client: httpx.Client, sids: list[str]) -> dict:
    store, objects, refs = _object_store()
    frames = {sid: client.get(f"/api/streams/{sid}").json().get("frames_analysed", 0) for sid in sids}
    return {
        "t": time.time(),
        "rss": _ray_processes(),
        "object_store": store,
        "objects": objects,
        "actors": _alive_actors(),
        "refs": refs,
        "frames_analysed": frames,
    }


def _growth(before: list[float], after: list[float]) -> float:
    base = statistics.mean(before)
    return (statistics.mean(after) - base) / base if base else 0.0


def summarise(samples: list[dict], warmup_s: float) -> tuple[list[str], bool]:
    """Lines of the report, and whether the soak passed."""
    t0 = samples[0]["t"]
    steady = [s for s in samples if s["t"] - t0 >= warmup_s]
    if len(steady) < 6:
        return [f"only {len(steady)} samples after warm-up: run longer"], False
    first, last = steady[:3], steady[-3:]
    lines, ok = [], True
    kinds = sorted(set().union(*(s["rss"] for s in steady)))
    lines.append(f"{'process':60s} {'after warm-up MiB':>18s} {'at the end MiB':>15s} {'growth':>8s}")
    for kind in kinds:  # a process that came or went shows 0 on one side
        a = [s["rss"].get(kind, 0) / 2**20 for s in first]
        b = [s["rss"].get(kind, 0) / 2**20 for s in last]
        g = _growth(a, b)
        ok &= g < LIMIT or statistics.mean(b) < 20  # a process of a few MiB is noise, not a leak
        lines.append(f"{kind:60s} {statistics.mean(a):18.1f} {statistics.mean(b):15.1f} {100 * g:7.1f}%")
    store_a = [s["object_store"] / 2**20 for s in first]
    store_b = [s["object_store"] / 2**20 for s in last]
    g = _growth(store_a, store_b)
    ok &= g < LIMIT or statistics.mean(store_b) < 50
    lines.append(
        f"{'object store':60s} {statistics.mean(store_a):18.1f} {statistics.mean(store_b):15.1f} {100 * g:7.1f}%"
    )
    refs_a, refs_b = statistics.mean(s["refs"] for s in first), statistics.mean(s["refs"] for s in last)
    ok &= refs_b <= max(refs_a * (1 + LIMIT), refs_a + 20)
    lines.append(f"{'object references':60s} {refs_a:18.0f} {refs_b:15.0f}")
    if first[0]["actors"] != last[-1]["actors"]:
        ok = False
    lines.append(f"actors after warm-up {first[0]['actors']}; at the end {last[-1]['actors']}")
    progress = {
        sid: last[-1]["frames_analysed"][sid] - first[0]["frames_analysed"][sid] for sid in last[-1]["frames_analysed"]
    }
    ok &= all(n > 0 for n in progress.values())
    lines.append(f"frames analysed per stream after warm-up: {progress}")
    return lines, ok


def _publisher(ffmpeg: str, clip: Path, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ffmpeg, "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "flv", url],
        stdin=subprocess.DEVNULL,
    )


def run(args: argparse.Namespace) -> int:
    from ray import serve

    from media_ray.app.live_service import LiveService
    from media_ray.catalog import BrandCatalog
    from media_ray.config import MediaRayConfig
    from media_ray.samples import write_sample

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("soak: the ffmpeg CLI is needed (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="media-ray-soak-"))
    logos, clip = write_sample(work)
    token = secrets.token_urlsafe(24)
    config = MediaRayConfig(
        http={"host": "127.0.0.1", "port": args.port, "auth": {"token": token}},
        live={"rtmp_ports": (args.rtmp_port, args.rtmp_port + args.streams + 1), "hls_dir": str(work / "hls")},
        ray={"namespace": "media-ray-soak", "app_prefix": "soak"},
        placement={"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
    )
    service = LiveService(config, BrandCatalog.from_folder(logos), ["reference"]).start()
    publishers: list[subprocess.Popen] = []
    samples: list[dict] = []
    try:
        client = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        sids = []
        for n in range(args.streams):
            created = client.post("/api/streams", json={"source": "rtmp", "name": f"soak-{n}"}).json()
            sids.append(created["id"])
            publishers.append(_publisher(ffmpeg, clip, created.get("publish_url_with_key") or created["publish_url"]))
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(args.every)
            samples.append(sample(client, sids))
            s = samples[-1]
            print(
                f"{(s['t'] - samples[0]['t']) / 60:5.1f} min  rss {sum(s['rss'].values()) / 2**20:8.1f} MiB  "
                f"object store {s['object_store'] / 2**20:6.1f} MiB ({s['objects']} objects)  refs {s['refs']:5d}  "
                f"frames {sum(s['frames_analysed'].values())}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for p in publishers:
            p.terminate()
        for p in publishers:
            p.wait(timeout=30)
        service.stop()
        serve.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    lines, ok = summarise(samples, args.warmup * 60)
    print("\n".join(lines))
    print("soak: PASS" if ok else "soak: FAIL")
    if args.out:
        Path(args.out).write_text(json.dumps(samples, indent=1))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m media_ray.app.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="how long the streams run")
    ap.add_argument("--streams", type=int, default=4, help="looping RTMP streams")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=3.0, help="minutes before the baseline")
    ap.add_argument("--port", type=int, default=8765, help="HTTP port on 127.0.0.1")
    ap.add_argument("--rtmp-port", type=int, default=19350, help="first RTMP port on 127.0.0.1")
    ap.add_argument("--out", help="write every sample to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
