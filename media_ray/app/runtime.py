"""The driver's side: connect to (or start) Ray, deploy the detectors, run StreamIngests.

`MediaRayRuntime` is what the CLI and notebooks use to analyse sources on Ray. It starts a
local Ray when the config says `address: local` (the default) and connects to a cluster
otherwise; each detector is a Serve application named `<prefix>-<detector>`, and a tiered
detector has one application per tier, `<prefix>-<detector>-<tier>`, each placed by its
tier's node label.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import ray
from ray import serve
from ray.exceptions import RayActorError

from actors.stream_ingest import StreamIngest, replica_died
from deployments.detectors import detector_app
from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain
from media_ray.config import MediaRayConfig
from media_ray.exposure import ExposureReport
from media_ray.model import FrameResult
from media_ray.sources import DecodedTimeline, analysed_duration
from media_ray.topology import app_name, plan_apps

log = logging.getLogger(__name__)


class DeploymentTimeout(RuntimeError):
    """Detector deployments that did not become ready in time (often: no node matches)."""


class DeploymentFailed(RuntimeError):
    """A detector deployment that failed to start (its replicas raised)."""


def connect_ray(config: MediaRayConfig) -> ray.client_builder.BaseContext | None:
    """Start or join Ray as the config says: the context of the Ray this call started or joined
    (its `dashboard_url`), None when this process was on a Ray already.

    Ray's token authentication (on unless `RAY_AUTH_MODE=disabled`) is what keeps the Ray
    ports safe: Ray 2.60 binds its GCS, raylet and worker (Serve replica) gRPC ports on every
    interface, whatever the node address, so a client without the token must be refused there.
    A local Ray's dashboard binds loopback only; its token file is made readable by its owner only.
    """
    if ray.is_initialized():
        return None
    # (Ray itself warns when RAY_AUTH_MODE=disabled turns the token off)
    address = ray_address(config)
    local = address == "local"
    if not local:
        _token_auth_as_ray_start_does()
    else:
        # the workers of a local Ray inherit this: glibc's default of 8 arenas a core lets
        # threads that pass frames around (decoders, OpenCV) hold freed memory for ever
        os.environ.setdefault("MALLOC_ARENA_MAX", str(config.ray.malloc_arenas))
    context = ray.init(
        address=address,
        # a cluster's GCS is configured where it starts (`ray start`), not by a client
        _system_config={"task_events_max_num_task_in_gcs": config.ray.task_events_kept} if local else None,
        namespace=config.ray.namespace,
        include_dashboard=config.ray.dashboard,
        dashboard_host="127.0.0.1",
        # 0: Ray picks a free port (a cluster's nodes are given theirs by `ray start`)
        _metrics_export_port=(config.ray.metrics_export_port or None) if local else None,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=False,
    )
    _owner_only(Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token")))
    return context


def _token_auth_as_ray_start_does() -> None:
    """Joining a running Ray: turn token authentication on when a token is at hand and
    RAY_AUTH_MODE is unset, as `ray start` does for the cluster itself (Ray 2.60's `ray.init` of
    an address leaves it off, and the cluster then refuses the driver)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray: its own rules apply
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def ray_address(config: MediaRayConfig) -> str:
    """The Ray to run on: `ray.address`, except that `local` joins the Ray that Ray's own
    RAY_ADDRESS names (a `ray start --head` kept running between jobs)."""
    if config.ray.address == "local" and os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    return config.ray.address


def _owner_only(path: Path) -> None:
    """Ray writes a generated token readable by everyone; only its owner should read it."""
    try:
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as e:
        log.warning("cannot restrict %s: %s", path, e)


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
    """The results of one source from its StreamIngest; the actor goes when they have been read.

    The stage chain (merge, tracking, exposure) runs here, on the driver: the ingest yields each
    batch's detector results (`DetectedBatch`), so its death loses nothing but work in flight.
    Ray restarts it (`pipeline.ingest_restarts`) and it goes on after the last batch received
    here, so every frame is delivered once, in order, and the report covers the whole file.
    """

    def __init__(
        self,
        ingest: ray.actor.ActorHandle,
        uri: str,
        duration_s: float | None,
        timeout_s: float,
        chain: StageChain | None = None,
        restarts: int = 0,
    ):
        self.ingest = ingest
        self.uri = uri
        self.duration_s = duration_s
        self.timeout_s = timeout_s
        self.chain = chain or StageChain(None, 1.0)
        self.max_restarts = restarts
        self.restarts = 0
        self.decoded: DecodedTimeline | None = None
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
            next_seq = 0
            while True:
                try:
                    for ref in self.ingest.run.remote(next_seq, True):
                        item = ray.get(ref)
                        if item.decoded is not None:
                            self.decoded = item.decoded
                            continue
                        next_seq = item.seq + 1
                        yield self.chain.push_results(item.per_detector, item.arrival)
                    break
                except RayActorError as e:
                    if not replica_died(e) or self.restarts >= self.max_restarts:
                        raise
                    self.restarts += 1
                    log.warning(
                        "%s: the StreamIngest actor died (%s); restart %d of %d, going on from batch %d",
                        self.uri,
                        type(e).__name__,
                        self.restarts,
                        self.max_restarts,
                        next_seq,
                    )
                    self._wait_until_back()
            yield self.chain.finish()
            self.report = self.chain.report(self.uri, analysed_duration(self.duration_s, self.decoded))
        finally:
            ray.kill(self.ingest)

    def _wait_until_back(self) -> None:
        """Until the restarted actor answers: a call made while Ray restarts it fails with
        ActorUnavailableError, which is the same death, not another one."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                ray.get(self.ingest.status.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class MediaRayRuntime:
    def __init__(
        self,
        config: MediaRayConfig,
        catalog: BrandCatalog,
        detectors: list[str],
        tiers: list[str] | None = None,
        keep_deployments: bool = False,
    ):
        """`keep_deployments`: on a Ray this runtime joined (not one it started), leave the
        detector applications running when it stops, for the next job to reuse."""
        self.config = config
        self.catalog = catalog
        self.detectors = list(detectors)
        self.apps = plan_apps(config, self.detectors, tiers)
        self.keep_deployments = keep_deployments
        self._started_ray = False  # a local Ray of this runtime's own
        self._joined_ray = False  # a running Ray (RAY_ADDRESS, `ray.address`) this runtime connected to
        self._ray_context: ray.client_builder.BaseContext | None = None
        self._deployed: list[str] = []
        self.reused: list[str] = []  # applications found running as this runtime would deploy them

    @property
    def owns_ray(self) -> bool:
        """Whether this runtime started the Ray it runs on (and shuts it down on stop)."""
        return self._started_ray

    @property
    def dashboard_url(self) -> str | None:
        """The Ray dashboard of the Ray this runtime started or joined, if it has one."""
        url = getattr(self._ray_context, "dashboard_url", None)
        return f"http://{url}" if url and "://" not in url else url or None

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes the metrics of the local Ray this runtime started (a cluster's
        are on each node's metrics port)."""
        if not self._started_ray:
            return None
        here = ray.get_runtime_context().get_node_id()
        node = next((n for n in ray.nodes() if n["NodeID"] == here), None)
        if node is None or not node.get("MetricsExportPort"):
            return None
        return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"

    def app_name(self, detector: str, tier: str | None = None) -> str:
        return app_name(self.config.ray.app_prefix, detector, tier)

    def start(self, http: bool = False) -> MediaRayRuntime:
        """Deploy the detectors and wait for the untiered ones (tiers may stay pending: a
        stream then falls back to another tier)."""
        try:
            self._ray_context = connect_ray(self.config)
            connected = self._ray_context is not None
            self._started_ray = connected and ray_address(self.config) == "local"
            self._joined_ray = connected and not self._started_ray
            if http:
                serve.start(http_options={"host": self.config.http.host, "port": self.config.http.port})
            else:
                serve.start(proxy_location="Disabled")
            prints = {a.name: self._fingerprint(a.detector, a.tier) for a in self.apps}
            self.reused = [] if self._started_ray else [n for n, fp in prints.items() if _running_as(n, fp)]
            sharing = sum(self.config.placement_for(a.detector, a.tier).packed_replicas() for a in self.apps)
            targets = [
                serve.RunTarget(
                    detector_app(a.detector, self.catalog, self.config, a.tier, prints[a.name], sharing),
                    name=a.name,
                    route_prefix=None,
                )
                for a in self.apps
                if a.name not in self.reused
            ]
            if targets:
                serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
            self._deployed = [a.name for a in self.apps]
            wait_for_apps([a.name for a in self.apps if a.tier is None], self.config.pipeline.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _fingerprint(self, detector: str, tier: str | None) -> str:
        """What a detector application is built from: the detector, its parameters, placement and
        the catalogue; two runtimes with the same fingerprint can share the application."""
        placement = self.config.placement_for(detector, tier)
        what = [detector, tier or "", self.catalog.version, repr(self.config.params_for(detector))]
        what.append(placement.model_dump_json())
        return hashlib.sha256("\n".join(what).encode()).hexdigest()[:16]

    def files_in_flight(self, files: int) -> int:
        """How many of `files` to analyse at once: `pipeline.files_in_flight`, or with 0 as many
        as the cluster has CPUs (at least 2: one file's decoding and its detector calls leave a
        core idle between batches)."""
        wanted = self.config.pipeline.files_in_flight
        if wanted == 0:
            wanted = max(2, int(ray.cluster_resources().get("CPU", 1)))
        return max(1, min(wanted, files))

    def analyse(self, uri: str, stream_id: str | None = None, duration_s: float | None = None) -> FileAnalysis:
        """One source analysed by a StreamIngest: iterate for its frame results, batch by batch in
        time order; then `report` holds its exposure (`duration_s`: the video's, when known; the
        report states no more than decoding covered)."""
        stream_id = stream_id or uuid.uuid4().hex[:8]
        handles = {a.detector: serve.get_app_handle(a.name) for a in self.apps if a.tier is None}
        pipeline = self.config.pipeline
        ingest = StreamIngest.options(
            **self.config.placement_for("ingest").ray_actor_options(), max_restarts=pipeline.ingest_restarts
        ).remote(stream_id, uri, self.config, handles, self.catalog.names_only())
        chain = StageChain.for_files(self.config, self.catalog)
        return FileAnalysis(ingest, uri, duration_s, pipeline.ready_timeout_s, chain, pipeline.ingest_restarts)

    def stop(self) -> None:
        if ray.is_initialized() and not self._started_ray and not self.keep_deployments:
            for name in self._deployed:
                serve.delete(name)
        if self._started_ray or self._joined_ray:
            # a local Ray goes whole, Serve with it; from a joined one this only disconnects
            ray.shutdown()
        self._started_ray = self._joined_ray = False
        self._deployed.clear()

    def __enter__(self) -> MediaRayRuntime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _running_as(name: str, fingerprint: str) -> bool:
    """Whether the Serve application `name` runs, built from `fingerprint`."""
    status = serve.status().applications.get(name)
    if status is None or status.status != "RUNNING":
        return False
    try:
        return serve.get_app_handle(name).fingerprint.remote().result(timeout_s=10) == fingerprint
    except Exception:  # an application of another build, or one going away: deploy ours
        log.debug("%s cannot be reused", name, exc_info=True)
        return False


def _failure_reason(status) -> str:
    """The exception line of a failed deployment's message (Serve puts the whole traceback there)."""
    for dep in status.deployments.values():
        lines = [ln.strip() for ln in (dep.message or "").splitlines() if ln.strip()]
        errors = [m.group(1) for ln in lines if (m := re.match(r"^[\w.]+(?:Error|Exception): (.*)", ln))]
        if errors:
            return errors[-1]
    return (status.message or str(status.status)).strip().splitlines()[0]
