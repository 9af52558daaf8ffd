"""StreamRegistry: the live streams and the brand catalogue of a running media-ray.

One named actor holds what must be shared by every API replica: which streams exist and the
LiveIngest actor of each, the RTMP keys and ports issued, the tier serving each stream, and
the live catalogue (its version travels with every FrameBatch, so detector replicas pick up
a change without a restart). Finished streams' status and results stay in the results store
until removed. A pulled source is checked against `live.policy` (`media_ray.source_policy`)
before anything is made for its stream, and a stream whose ingest fails to start is undone.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

import ray
from ray import serve

from actors.live_ingest import LiveIngest
from actors.store import connect_store
from media_ray.catalog import Brand, BrandCatalog, CatalogError
from media_ray.config import MediaRayConfig
from media_ray.source_policy import SourcePolicy, SourceRefused
from media_ray.sources import SourceError
from media_ray.streams import StreamRequest, StreamStatus, new_stream_id, new_stream_key
from media_ray.topology import BrandExists, StreamError, plan_apps

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class StreamRegistry:
    """Started by the driver with `max_concurrency=live.registry_concurrency`."""

    def __init__(self, config: MediaRayConfig, catalog: BrandCatalog, detectors: list[str]):
        self.config = config
        self._catalog = catalog
        self.detectors = list(detectors)
        self.apps = plan_apps(config, self.detectors, config.live.tiers or None)
        self.store = connect_store(config.store, namespace=config.ray.namespace)
        self.ingests: dict[str, ray.actor.ActorHandle] = {}
        self.statuses: dict[str, StreamStatus] = {}
        self.rtmp_ports: dict[str, int] = {}
        self.policy = SourcePolicy(config.live.policy)
        self.hls_root = Path(config.live.hls_dir or Path(tempfile.gettempdir()) / "media-ray" / "hls")
        self.hls_root.mkdir(parents=True, exist_ok=True)

    # -- catalogue -----------------------------------------------------------------------
    def catalog(self) -> BrandCatalog:
        return self._catalog

    def add_brand(self, brand: Brand, replace: bool = False) -> str:
        """Add a brand; one whose id exists is refused unless `replace`."""
        if not replace and any(b.id == brand.id for b in self._catalog):
            raise BrandExists(f"brand {brand.id!r} exists; PUT /api/brands/{brand.id} replaces it")
        brands = [b for b in self._catalog if b.id != brand.id] + [brand]
        return self._set_catalog(BrandCatalog(brands))

    def remove_brand(self, brand_id: str) -> str:
        brands = [b for b in self._catalog if b.id != brand_id]
        if len(brands) == len(self._catalog):
            raise KeyError(brand_id)
        if not brands:
            raise CatalogError("the catalogue cannot be emptied")
        return self._set_catalog(BrandCatalog(brands))

    def _set_catalog(self, catalog: BrandCatalog) -> str:
        self._catalog = catalog
        for ingest in self.ingests.values():
            ingest.set_catalog_version.remote(catalog.version)
        log.info("catalogue is now %s (%d brands)", catalog.version, len(catalog))
        return catalog.version

    # -- streams ---------------------------------------------------------------------------
    async def create(self, request: StreamRequest) -> dict:
        # first of all, so that a refused source leaves nothing behind (no port, actor or folder);
        # in a thread: resolving a host name blocks
        pulled = None
        if request.kind == "pull":
            try:
                pulled = await asyncio.to_thread(self.policy.check, request.source)
            except SourceRefused as e:
                raise StreamError(str(e)) from None
        detectors = request.detectors or self.config.live.detectors or self.detectors
        unknown = [d for d in detectors if d not in self.detectors]
        if unknown:
            raise StreamError(
                f"detectors not deployed here: {', '.join(unknown)} (deployed: {', '.join(self.detectors)})"
            )
        tier, fallback = self._choose_tier(request.tier, detectors)
        sid = new_stream_id()
        uri = self._source_uri(request, sid, pulled)
        status = StreamStatus(
            id=sid,
            name=request.name or sid,
            source=request.source,
            kind=request.kind,
            fps=request.fps or self.config.live.sampling.fps,
            detectors=detectors,
            tier_requested=request.tier,
            tier=tier,
            fallback=fallback,
            publish_url=self._publish_url(uri) if request.kind == "rtmp" else None,
            hls_url=None if request.kind == "webcam" else f"/streams/{sid}/hls/index.m3u8",
        )
        hls_dir = None if request.kind == "webcam" else str(self.hls_root / sid)
        ingest = LiveIngest.options(
            **self.config.placement_for("ingest").ray_actor_options(),
            max_concurrency=self.config.live.ingest_concurrency,
        ).remote(status, uri, self.config, self._handles(detectors, tier), self._catalog, hls_dir)
        self.ingests[sid] = ingest
        self.statuses[sid] = status
        try:
            return await ingest.start.remote()
        except Exception as e:
            self._undo(sid)
            cause = getattr(e, "cause", e)
            if isinstance(cause, (SourceError, OSError)):
                raise StreamError(f"the stream could not start: {cause}") from None
            raise

    def _undo(self, sid: str) -> None:
        """Forget a stream whose ingest did not start: its actor, port and HLS folder."""
        ingest = self.ingests.pop(sid, None)
        if ingest is not None:
            ray.kill(ingest)
        self.statuses.pop(sid, None)
        self.rtmp_ports.pop(sid, None)
        shutil.rmtree(self.hls_root / sid, ignore_errors=True)

    def _source_uri(self, request: StreamRequest, sid: str, pulled: str | None) -> str | None:
        if request.kind == "webcam":
            return None
        if request.kind == "rtmp":
            port = self._free_rtmp_port()
            if port is None:
                raise StreamError("no RTMP port left (live.rtmp_ports)")
            self.rtmp_ports[sid] = port
            return f"rtmp://{self.config.live.rtmp_host}:{port}/live/{new_stream_key()}"
        return pulled  # as the policy checked it (a local path resolved)

    def _publish_url(self, listen_uri: str) -> str:
        host = self.config.live.rtmp_public_host or self.config.live.rtmp_host
        return listen_uri.replace(f"//{self.config.live.rtmp_host}:", f"//{host}:", 1)

    def _free_rtmp_port(self) -> int | None:
        first, last = self.config.live.rtmp_ports
        used = set(self.rtmp_ports.values())
        return next((p for p in range(first, last + 1) if p not in used), None)

    def _handles(self, detectors: list[str], tier: str | None) -> dict:
        return {
            a.detector: serve.get_app_handle(a.name)
            for a in self.apps
            if a.detector in detectors and a.tier in (None, tier)
        }

    def _choose_tier(self, requested: str | None, detectors: list[str]) -> tuple[str | None, bool]:
        """The first tier, the requested one first, whose tiered detectors are running."""
        tiers = self.config.live.tiers
        if not tiers or not any(d in self.config.live.tiered_detectors for d in detectors):
            return None, False
        if requested is not None and requested not in tiers:
            raise StreamError(f"unknown tier {requested!r} (tiers: {', '.join(tiers)})")
        order = ([requested] if requested else []) + [t for t in tiers if t != requested]
        running = {name for name, s in serve.status().applications.items() if s.status == "RUNNING"}
        for tier in order:
            names = [a.name for a in self.apps if a.tier == tier and a.detector in detectors]
            if names and all(n in running for n in names):
                return tier, requested is not None and tier != requested
        raise StreamError(f"no tier is running ({', '.join(order)}): no node offers what their placement asks")

    async def list(self) -> list[dict]:
        return [await self.get(sid) for sid in sorted(self.statuses, key=lambda s: self.statuses[s].created_at)]

    async def get(self, sid: str) -> dict | None:
        ingest = self.ingests.get(sid)
        if ingest is not None:
            try:
                status = await ingest.get_status.remote()
                self.statuses[sid] = StreamStatus(**status)
                return status
            except ray.exceptions.RayActorError:
                self.ingests.pop(sid, None)
        if sid in self.statuses:
            return self.statuses[sid].model_dump()
        meta = await self.store.get_meta(sid)
        return meta["status"] if meta else None

    async def ingest(self, sid: str):
        return self.ingests.get(sid)

    async def stop(self, sid: str) -> dict | None:
        ingest = self.ingests.get(sid)
        if ingest is None:
            return await self.get(sid)
        status = await ingest.stop.remote()
        self.statuses[sid] = StreamStatus(**status)
        self.rtmp_ports.pop(sid, None)
        return status

    async def delete(self, sid: str) -> bool:
        known = sid in self.statuses or await self.store.get_meta(sid) is not None
        if sid in self.ingests:
            await self.stop(sid)
            ray.kill(self.ingests.pop(sid))
        self.statuses.pop(sid, None)
        await self.store.delete(sid)
        shutil.rmtree(self.hls_root / sid, ignore_errors=True)
        return known

    def hls_dir(self, sid: str) -> str | None:
        """The HLS folder of a stream this registry knows, or None."""
        if sid not in self.statuses:
            return None
        return str(self.hls_root / sid)

    async def shutdown(self) -> None:
        for sid in list(self.ingests):
            await self.stop(sid)
