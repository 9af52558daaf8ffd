"""Fixtures: a generated clip with known logo tracks, a catalogue, a local Ray.

Everything is made here; the tests need no data from outside the repository.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Ray workers (Serve replicas) inherit the environment: they find the test-only detectors
# (and the test modules of each folder, for functions they send to workers)
LANES = ("unit", "quality", "ray", "live", "browser")
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(TESTS), *(str(TESTS / lane) for lane in LANES), os.environ.get("PYTHONPATH")])
)
sys.path.insert(0, str(TESTS))
# a throwaway local Ray per test session needs no token
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


#: what the tests of each folder need, as markers: `pytest -m "not slow"` is the fast lane
FOLDER_MARKS = {
    "unit": (),
    "quality": ("quality",),
    "ray": ("ray", "slow"),
    "live": ("live", "slow"),
    "browser": ("browser", "slow"),
}


def pytest_collection_modifyitems(items):
    for item in items:
        for mark in FOLDER_MARKS.get(Path(item.path).parent.name, ()):
            item.add_marker(mark)
        if "local_ray" in getattr(item, "fixturenames", ()):  # a Ray anywhere is slow
            item.add_marker("ray")
            item.add_marker("slow")


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """A 12 s 640x360 clip with two brands of a three-brand catalogue on known tracks."""
    from media_ray.samples import write_sample

    folder = tmp_path_factory.mktemp("sample")
    logos, clip = write_sample(folder)
    gt = json.loads(clip.with_name("sample.gt.json").read_text())
    return {"logos": logos, "clip": clip, "gt": gt, "folder": folder}


@pytest.fixture(scope="session")
def tiny_clip_model_dir(tmp_path_factory):
    """A small randomly initialised CLIP saved as a user's local model folder would be."""
    from media_ray.random_clip_model import write_random_clip_model

    return write_random_clip_model(tmp_path_factory.mktemp("clip"), "tiny")


@pytest.fixture(scope="session")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="media-ray-tests")
    yield ray
    ray.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: ports a test app is to bind later; below them Ray's workers take theirs (10002-19999)
_LATE_PORTS = range(20000, 32000)
_late_ports_issued: set[int] = set()


def free_ports(n: int) -> list[int]:
    """[first, last] of `n` consecutive ports on 127.0.0.1, free now, not issued before by
    this process (another process draws its own at random from 12000), and outside the
    system's ephemeral range, for a server that binds them long after (an app's RTMP
    listeners, when a stream is created): a port of the ephemeral range, as `free_port` gives,
    can be taken meanwhile by any process's outgoing connection."""
    import random
    import socket

    low, high = 32768, 60999
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        pass
    candidates = [p for p in _LATE_PORTS if not low <= p <= high and not low <= p + n - 1 <= high]

    def bindable(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    for first in random.sample(candidates, min(200, len(candidates))):
        block = range(first, first + n)
        if _late_ports_issued.isdisjoint(block) and all(bindable(p) for p in block):
            _late_ports_issued.update(block)
            return [first, first + n - 1]  # a list: YAML writes it plainly
    raise RuntimeError(f"no {n} consecutive free ports in {_LATE_PORTS} outside the ephemeral range")


#: the API token of the test apps (`start_live_app`), unless a test gives its own
TEST_TOKEN = "media-ray-test-token-0123456789abcdef"


class LiveApp:
    """A running `media-ray serve` (in this process) and the sample it is meant for.

    `token` is its API token, `headers` the header that carries it, and `http` an httpx client
    of the app that sends it: `app.http.get("/api/streams")`."""

    def __init__(self, service, sample, catalog):
        import httpx

        self.service = service
        self.base_url = service.url
        self.ws_url = self.base_url.replace("http://", "ws://")
        self.sample = sample
        self.catalog = catalog
        self.config = service.config
        self.token = service.config.http.auth.token
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.service.stop()


def source_policy_for(*media_roots) -> dict:
    """`live.policy` for a test app: files under `media_roots`, and http servers on 127.0.0.1."""
    return {"media_roots": [str(r) for r in media_roots], "allowed_hosts": ["127.0.0.1"]}


def start_live_app(
    sample,
    store: dict | None = None,
    detectors=("reference",),
    tracking: dict | None = None,
    http_limits: dict | None = None,
    auth: dict | None = None,
    **live,
):
    """`media-ray serve` for `sample`; its source policy accepts files of the sample's folder and
    http servers on 127.0.0.1 (`live["policy"]` replaces it). Its API token is `TEST_TOKEN`
    (`auth` adds to or replaces `http.auth`), `http_limits` sets `http.limits`."""
    from ray import serve

    from media_ray.app.live_service import LiveService
    from media_ray.catalog import BrandCatalog
    from media_ray.config import MediaRayConfig

    serve.shutdown()  # other tests run Serve without its HTTP proxy
    port = free_port()
    config = MediaRayConfig(
        http={
            "host": "127.0.0.1",
            "port": port,
            "limits": http_limits or {},
            "auth": {"token": TEST_TOKEN, **(auth or {})},
        },
        live={
            "sampling": {"fps": 5, "batch_size": 2},
            "rtmp_ports": free_ports(4),
            "policy": source_policy_for(sample["folder"]),
            **live,
        },
        tracking=tracking or {},
        store=store or {},
        # the ingests as `media-ray serve` places them by default: http.limits.max_streams fit
        placement={"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.01}},
        ray={"namespace": "media-ray-tests", "app_prefix": f"live{port}"},
    )
    catalog = BrandCatalog.from_folder(sample["logos"])
    return LiveApp(LiveService(config, catalog, list(detectors)).start(), sample, catalog)


@pytest.fixture(scope="module")
def live_app(local_ray, sample):
    """The live app with the embedded store and the reference detector."""
    app = start_live_app(sample)
    yield app
    app.stop()


def close_code(url: str, **kwargs) -> int | None:
    """The close code a WebSocket gets before any message, or None when it stays open."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, open_timeout=10, **kwargs) as ws:
        try:
            ws.recv(timeout=3)
        except TimeoutError:
            return None
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
    return None
