"""The driver's side: connect to (or start) Ray, deploy the detectors, run StreamIngests.

`MediaRayRuntime` is what the CLI and notebooks use to analyse sources on Ray. It starts a
local Ray when the config says `address: local` (the default) and connects to a cluster
otherwise; detectors are deployed as Serve applications named `<prefix>-<detector>`.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Iterator

import ray
from ray import serve

from actors.stream_ingest import StreamIngest
from deployments.detectors import detector_app
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.model import FrameResult

log = logging.getLogger(__name__)


class DeploymentTimeout(RuntimeError):
    """Detector deployments that did not become ready in time (often: no node matches)."""


class DeploymentFailed(RuntimeError):
    """A detector deployment that failed to start (its replicas raised)."""


class MediaRayRuntime:
    def __init__(self, config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]):
        self.config = config
        self.catalog = catalog
        self.detectors = list(detectors)
        self._started_ray = False
        self._apps: dict[str, str] = {}

    def app_name(self, detector: str) -> str:
        return f"{self.config.ray.app_prefix}-{detector}"

    def start(self) -> "MediaRayRuntime":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.config.ray.address, namespace=self.config.ray.namespace,
                     include_dashboard=self.config.ray.dashboard, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=False)
            self._started_ray = True
        serve.start(proxy_location="Disabled")
        targets = []
        for name in self.detectors:
            self._apps[name] = self.app_name(name)
            targets.append(serve.RunTarget(detector_app(name, self.catalog, self.config),
                                           name=self._apps[name], route_prefix=None))
        serve.run_many(targets, wait_for_ingress_deployment_creation=False,
                       wait_for_applications_running=False)
        self.wait_ready(self.config.pipeline.ready_timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(self._apps.values())
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
                    "resources or labels its placement asks for (see `placement` in the config)")
            if pending:
                time.sleep(0.2)

    def analyse(self, uri: str, stream_id: str | None = None) -> Iterator[list[FrameResult]]:
        """Frame results of one source, batch by batch, in time order."""
        stream_id = stream_id or uuid.uuid4().hex[:8]
        handles = {name: serve.get_app_handle(app) for name, app in self._apps.items()}
        ingest = StreamIngest.options(**self.config.placement_for("ingest").ray_actor_options()).remote(
            stream_id, uri, self.config.sampling, handles, self.config.pipeline.max_in_flight)
        try:
            for ref in ingest.run.remote():
                yield ray.get(ref)
        finally:
            ray.kill(ingest)

    def stop(self) -> None:
        if self._started_ray:
            # the whole local Ray goes, Serve with it
            ray.shutdown()
        else:
            for app in self._apps.values():
                serve.delete(app)
        self._apps.clear()

    def __enter__(self) -> "MediaRayRuntime":
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
