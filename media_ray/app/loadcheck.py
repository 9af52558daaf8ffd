"""`python -m media_ray.app.loadcheck`: how the control API answers at its limits.

Starts a local `media-ray serve` in this process (a generated sample clip and catalogue, the
reference detector), fills it to `http.limits.max_streams` (webcam streams, which decode
nothing, and one file stream played live with `max_viewers_per_stream` WebSocket viewers), and
prints the p50/p95/max latency of each kind of control call over a fixed number of calls, and
whether the stream after the limit got its 429. Measured, never asserted: a report to read.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from websockets.sync.client import connect

#: length of the generated clip: it plays (paced, as live) through the whole check
CLIP_S = 150.0


def _running(http: httpx.Client) -> int:
    return sum(s["state"] not in ("ended", "failed") for s in http.get("/api/streams").json())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Timings:
    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)

    def time(self, kind: str, client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
        t0 = time.perf_counter()
        response = client.request(method, path, **kwargs)
        self.calls[kind].append(time.perf_counter() - t0)
        return response

    def table(self) -> str:
        lines = [f"{'call':34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"]
        for kind, values in self.calls.items():
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            lines.append(
                f"{kind:34} {len(values):>4} {statistics.median(values) * 1e3:8.1f} {p95 * 1e3:8.1f} "
                f"{ordered[-1] * 1e3:8.1f}"
            )
        return "\n".join(lines)


def _viewer(url: str, headers: dict, stop: threading.Event, counts: list[int], i: int) -> None:
    with contextlib.suppress(Exception), connect(url, open_timeout=60, additional_headers=headers) as ws:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                ws.recv(timeout=0.5)
                counts[i] += 1


def _start(folder: Path, token: str):
    from media_ray.app.live_service import LiveService
    from media_ray.catalog import BrandCatalog
    from media_ray.config import MediaRayConfig
    from media_ray.samples import write_sample

    logos, clip = write_sample(folder, seconds=CLIP_S)
    port, rtmp = _free_port(), _free_port()
    config = MediaRayConfig(
        http={"host": "127.0.0.1", "port": port, "auth": {"token": token}},
        live={"rtmp_ports": (rtmp, rtmp + 1), "policy": {"media_roots": [str(folder)]}},
        placement={"default": {"num_cpus": 0.1}},
        ray={"namespace": "media-ray-loadcheck", "app_prefix": f"load{port}"},
    )
    service = LiveService(config, BrandCatalog.from_folder(logos), ["reference"]).start()
    return service, clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls measured of each kind")
    args = parser.parse_args(argv)
    token = secrets.token_urlsafe(32)
    timings = Timings()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        service, clip = _start(Path(tmp), token)
        limits = service.config.http.limits
        headers = {"Authorization": f"Bearer {token}"}
        http = httpx.Client(base_url=service.url, headers=headers, timeout=120)
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            webcams = []
            while _running(http) < limits.max_streams - 1:  # webcam streams: nothing to decode
                r = timings.time("POST /api/streams (webcam)", http, "POST", "/api/streams", json={"source": "webcam"})
                if r.status_code != 201:
                    print(f"stream {len(webcams) + 1}: {r.status_code} {r.text[:200]}")
                    break
                webcams.append(r.json()["id"])
            file_stream = timings.time(
                "POST /api/streams (file)", http, "POST", "/api/streams", json={"source": str(clip)}
            )
            sid = file_stream.json()["id"]
            counts = [0] * limits.max_viewers_per_stream
            url = f"{service.url.replace('http://', 'ws://')}/ws/streams/{sid}"
            for i in range(limits.max_viewers_per_stream):
                threads.append(threading.Thread(target=_viewer, args=(url, headers, stop, counts, i), daemon=True))
                threads[-1].start()
            over = timings.time(
                "POST /api/streams (over the limit)", http, "POST", "/api/streams", json={"source": "webcam"}
            )
            for _ in range(args.calls):
                timings.time("GET /api/health", http, "GET", "/api/health")
                timings.time("GET /api/streams", http, "GET", "/api/streams")
                timings.time("GET /api/streams/{id}", http, "GET", f"/api/streams/{sid}")
                timings.time("GET /api/streams/{id}/frames", http, "GET", f"/api/streams/{sid}/frames?limit=100")
            for _ in range(min(args.calls, len(webcams))):
                timings.time("DELETE /api/streams/{id}", http, "DELETE", f"/api/streams/{webcams.pop()}")
                r = timings.time("POST /api/streams (webcam)", http, "POST", "/api/streams", json={"source": "webcam"})
                if r.status_code == 201:
                    webcams.append(r.json()["id"])
            running = [s for s in http.get("/api/streams").json() if s["state"] not in ("ended", "failed")]
            print(
                f"streams running: {len(running)} (limit {limits.max_streams}); viewers of the file stream: "
                f"{sum(1 for t in threads if t.is_alive())}, records they received: {sum(counts)}"
            )
            print(f"stream {limits.max_streams + 1}: {over.status_code} {over.json().get('detail', '')}")
            print(timings.table())
            print(f"total {time.perf_counter() - started:.0f} s")
        finally:
            stop.set()
            for t in threads:
                t.join(5)
            http.close()
            service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
