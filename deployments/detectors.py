"""Detectors as Ray Serve deployments: one thin class over any core detector.

A replica loads its detector once in `__init__`. Calls carry one FrameBatch each (an ObjectRef
at the call site, resolved from the object store by Serve); `@serve.batch` gathers the calls
of many streams into one model call, run in a worker thread so the replica's event loop keeps
accepting requests. Placement (resources, replicas, node labels) comes from the config tree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import numpy as np
import ray
from ray import serve

from actors.metrics import DetectorMetrics
from media_ray.catalog import BrandCatalog
from media_ray.config import MediaRayConfig, PlacementConfig
from media_ray.detectors import create, set_compute_threads, usable_cores
from media_ray.model import FrameBatch, FrameResult
from media_ray.topology import REGISTRY_NAME, deployment_name

log = logging.getLogger(__name__)

_BATCH_DEFAULTS = PlacementConfig()


@serve.deployment
class DetectorDeployment:
    def __init__(
        self,
        detector: str,
        catalog: BrandCatalog,
        params: dict,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        threads: int = 0,
        fingerprint: str = "",
        namespace: str = "",
        sharing: int = 1,
    ):
        self._fingerprint = fingerprint
        self._threads = threads = replica_threads(threads, sharing)
        set_compute_threads(threads)
        self.detector = create(detector, catalog, params)
        set_compute_threads(threads)  # again: creating it may have imported torch
        self._catalog_lock = asyncio.Lock()
        self._calls = 0
        self._frames = 0
        self._metrics = DetectorMetrics(detector)
        # where the stream registry is: the config's namespace (a replica's own is its deployer's)
        self._namespace = namespace or ray.get_runtime_context().namespace
        self.detect.set_max_batch_size(max_batch_size)
        self.detect.set_batch_wait_timeout_s(batch_wait_timeout_s)
        log.info("%s ready with %d brands, %d compute threads", detector, len(catalog), threads)

    async def __call__(self, batch: FrameBatch) -> list[FrameResult]:
        if batch.catalog_version and batch.catalog_version != self.detector.catalog.version:
            await self._refresh_catalog(batch.catalog_version)
        return await self.detect(batch)

    async def _refresh_catalog(self, version: str) -> None:
        """Brands changed while running: take the catalogue the batch was sent with."""
        async with self._catalog_lock:
            if self.detector.catalog.version == version:
                return
            registry = ray.get_actor(REGISTRY_NAME, namespace=self._namespace)
            catalog = await registry.catalog.remote()
            await asyncio.to_thread(self.detector.set_catalog, catalog)
            log.info("catalogue %s -> %s (%d brands)", version, catalog.version, len(catalog))

    # the sizes are set per replica in __init__, from its placement
    @serve.batch(
        max_batch_size=_BATCH_DEFAULTS.max_batch_size,
        batch_wait_timeout_s=_BATCH_DEFAULTS.batch_wait_timeout_s,
    )
    async def detect(self, batches: list[FrameBatch]) -> list[list[FrameResult]]:
        return await asyncio.to_thread(self._detect_together, batches)

    def fingerprint(self) -> str:
        """What this replica was built from (`MediaRayRuntime` reuses a running application
        whose fingerprint is its own)."""
        return self._fingerprint

    def stats(self) -> dict:
        """Model calls made by this replica, the frames they held, its compute threads and the
        node it runs on."""
        return {
            "threads": self._threads,
            "calls": self._calls,
            "frames": self._frames,
            "mean_batch_frames": self._frames / self._calls if self._calls else 0.0,
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def _detect_together(self, batches: list[FrameBatch]) -> list[list[FrameResult]]:
        """Run batches of the same frame size as one detector call, then split the results."""
        self._calls += 1
        frames = sum(len(b) for b in batches)
        self._frames += frames
        started = time.perf_counter()
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, b in enumerate(batches):
            groups[b.frames.shape[1:]].append(i)
        out: list[list[FrameResult]] = [[] for _ in batches]
        for members in groups.values():
            if len(members) == 1:
                out[members[0]] = self.detector.detect(batches[members[0]])
                continue
            parts = [batches[i] for i in members]
            joined = FrameBatch(
                stream_id="+".join(p.stream_id for p in parts),
                seq=parts[0].seq,
                frames=np.concatenate([p.frames for p in parts]),
                times=np.concatenate([p.times for p in parts]),
                indices=np.concatenate([p.indices for p in parts]),
                cuts=_joined_cuts(parts),
                catalog_version=parts[0].catalog_version,
            )
            results = self.detector.detect(joined)
            start = 0
            for i, p in zip(members, parts):
                out[i] = results[start : start + len(p)]
                start += len(p)
        brands = {b.id for b in self.detector.catalog}
        self._metrics.call(frames, time.perf_counter() - started, (r for rs in out for r in rs), brands)
        log.debug("detected %d batches, %d frames", len(batches), frames)
        return out


def _joined_cuts(parts: list[FrameBatch]) -> np.ndarray:
    """The cut flags of batches of several streams joined into one call: where one stream's
    frames follow another's, a new shot begins (nothing may be carried from one to the other);
    a part whose shots are not known is all cuts (a detector then takes each frame alone)."""
    cuts = [p.cuts.copy() if len(p.cuts) == len(p) else np.ones(len(p), bool) for p in parts]
    for c in cuts:
        c[:1] = True
    return np.concatenate(cuts)


def replica_threads(threads: int, sharing: int) -> int:
    """A replica's compute threads: `threads` when set; else the CPUs Ray reserved for it when
    they are whole ones; else (a fraction of a CPU: replicas packed on a node) its node's cores
    shared among the `sharing` detector replicas deployed together. Every replica spinning
    a thread a core, four detectors on two cores cost 13 % more wall time and OCR twice the CPU
    (measured)."""
    if threads:
        return threads
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    if cpus >= 1:
        return int(cpus)
    return max(1, len(usable_cores()) // max(1, sharing))


def detector_app(
    detector: str,
    catalog: BrandCatalog,
    config: MediaRayConfig,
    tier: str | None = None,
    fingerprint: str = "",
    sharing: int = 1,
) -> serve.Application:
    """The Serve application of one detector (of one tier), placed as the config says;
    `sharing`: the detector replicas deployed with it that may share its node's cores."""
    placement = config.placement_for(detector, tier)
    scaling: dict = (
        {"autoscaling_config": placement.autoscaling.serve_options()}
        if placement.autoscaling is not None
        else {"num_replicas": placement.replicas}
    )
    return DetectorDeployment.options(
        name=deployment_name(detector),
        **scaling,
        ray_actor_options=placement.ray_actor_options(),
        max_ongoing_requests=placement.max_ongoing_requests,
    ).bind(
        detector,
        catalog,
        config.params_for(detector),
        placement.max_batch_size,
        placement.batch_wait_timeout_s,
        placement.threads,
        fingerprint,
        namespace=config.ray.namespace,
        sharing=sharing,
    )
