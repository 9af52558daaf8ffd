"""The driver's side: connect to (or start) Ray, deploy the detectors, run StreamIngests.

`MediaRayRuntime` is what the CLI and notebooks use to analyse sources on Ray. It starts a
local Ray when the config says `address: local` (the default) and connects to a cluster
otherwise; each detector is a Serve application named `<prefix>-<detector>`, and a tiered
detector has one application per tier, `<prefix>-<detector>-<tier>`, each placed by its
tier's node label.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

import ray
from ray import serve

from actors.stream_ingest import StreamIngest
from deployments.detectors import detector_app
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.exposure import ExposureReport
from media_ray.model import FrameResult
from media_ray.topology import app_name, plan_apps

log = logging.getLogger(__name__)


class DeploymentTimeout(RuntimeError):
    """Detector deployments that did not become ready in time (often: no node matches)."""


class DeploymentFailed(RuntimeError):
    """A detector deployment that failed to start (its replicas raised)."""


def connect_ray(config: MediaRayConfig) -> bool:
    """Start or join Ray as the config says; True when this call started it."""
    if ray.is_initialized():
        return False
    ray.init(
        address=config.ray.address,
        namespace=config.ray.namespace,
        include_dashboard=config.ray.dashboard,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=False,
    )
    return True


def wait_for_apps(names: list[str], timeout_s: float) -> None:
    """Wait until the Serve applications run; a failed one or the time-out raises."""
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        apps = serve.status().applications
        for name in list(pending):
            status = apps.get(name)
            if status is None:
                continue
            if status.status == "RUNNING":
                pending.discard(name)
            elif status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise DeploymentFailed(f"{name}: {_failure_reason(status)}")
        if pending and time.monotonic() > deadline:
            raise DeploymentTimeout(
                f"{', '.join(sorted(pending))} not ready after {timeout_s:.0f} s: no node offers the "
                "resources or labels its placement asks for (see `placement` in the config)"
            )
        if pending:
            time.sleep(0.2)


class FileAnalysis:
    """The results of one source from its StreamIngest; the actor goes when they have been read."""

    def __init__(self, ingest: ray.actor.ActorHandle, uri: str, duration_s: float | None, timeout_s: float):
        self.ingest = ingest
        self.uri = uri
        self.duration_s = duration_s
        self.timeout_s = timeout_s
        self.report: ExposureReport | None = None

    def __iter__(self) -> Iterator[list[FrameResult]]:
        try:
            try:  # an actor no node can take would wait for ever
                ray.get(self.ingest.status.remote(), timeout=self.timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise DeploymentTimeout(
                    f"the StreamIngest actor was not placed after {self.timeout_s:.0f} s: "
                    "no node offers what `placement.ingest` asks for"
                ) from None
            for ref in self.ingest.run.remote():
                yield ray.get(ref)
            self.report = ray.get(self.ingest.report.remote(self.uri, self.duration_s))
        finally:
            ray.kill(self.ingest)


class MediaRayRuntime:
    def __init__(
        self,
        config: MediaRayConfig,
        catalog: BrandCatalog,
        detectors: list[str],
        tiers: list[str] | None = None,
    ):
        self.config = config
        self.catalog = catalog
        self.detectors = list(detectors)
        self.apps = plan_apps(config, self.detectors, tiers)
        self._started_ray = False
        self._deployed: list[str] = []

    @property
    def owns_ray(self) -> bool:
        """Whether this runtime started the Ray it runs on (and shuts it down on stop)."""
        return self._started_ray

    def app_name(self, detector: str, tier: str | None = None) -> str:
        return app_name(self.config.ray.app_prefix, detector, tier)

    def start(self, http: bool = False) -> MediaRayRuntime:
        """Deploy the detectors and wait for the untiered ones (tiers may stay pending: a
        stream then falls back to another tier)."""
        try:
            self._started_ray = connect_ray(self.config)
            if http:
                serve.start(http_options={"host": self.config.http.host, "port": self.config.http.port})
            else:
                serve.start(proxy_location="Disabled")
            targets = [
                serve.RunTarget(
                    detector_app(a.detector, self.catalog, self.config, a.tier),
                    name=a.name,
                    route_prefix=None,
                )
                for a in self.apps
            ]
            serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
            self._deployed = [a.name for a in self.apps]
            wait_for_apps([a.name for a in self.apps if a.tier is None], self.config.pipeline.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def analyse(self, uri: str, stream_id: str | None = None, duration_s: float | None = None) -> FileAnalysis:
        """One source analysed by a StreamIngest: iterate for its frame results, batch by batch in
        time order; then `report` holds its exposure (`duration_s`: the video's, when known)."""
        stream_id = stream_id or uuid.uuid4().hex[:8]
        handles = {a.detector: serve.get_app_handle(a.name) for a in self.apps if a.tier is None}
        ingest = StreamIngest.options(**self.config.placement_for("ingest").ray_actor_options()).remote(
            stream_id, uri, self.config, handles, self.catalog
        )
        return FileAnalysis(ingest, uri, duration_s, self.config.pipeline.ready_timeout_s)

    def stop(self) -> None:
        if self._started_ray:
            # the whole local Ray goes, Serve with it
            ray.shutdown()
        elif ray.is_initialized():
            for name in self._deployed:
                serve.delete(name)
        self._deployed.clear()

    def __enter__(self) -> MediaRayRuntime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _failure_reason(status) -> str:
    """The exception line of a failed deployment's message (Serve puts the whole traceback there)."""
    for dep in status.deployments.values():
        lines = [ln.strip() for ln in (dep.message or "").splitlines() if ln.strip()]
        errors = [m.group(1) for ln in lines if (m := re.match(r"^[\w.]+(?:Error|Exception): (.*)", ln))]
        if errors:
            return errors[-1]
    return (status.message or str(status.status)).strip().splitlines()[0]
