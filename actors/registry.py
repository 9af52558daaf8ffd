"""StreamRegistry: the live streams and the brand catalogue of a running media-ray.

One named actor holds what must be shared by every API replica: which streams exist and the
LiveIngest actor of each, the RTMP keys and ports issued, the tier serving each stream, and
the live catalogue (its version travels with every FrameBatch, so detector replicas pick up
a change without a restart). Finished streams' status and results stay in the results store
until removed. A pulled source is checked against `live.policy` (`media_ray.source_policy`)
before anything is made for its stream, and a stream whose ingest fails to start is undone.

A background task (`watch`, every `live.watch_every_s`) checks each running stream's ingest:
one that died (killed, its worker lost) is started again for the same stream, source, RTMP port
and key, continuing after the last record stored (`restarts` counts it); one whose stream is
over is released. A stream that ends, fails or is deleted gives back its LiveIngest actor and
RTMP port; a failed stream's HLS folder goes at once, an ended one's stays for replay until the
stream is deleted or the server stops. The last status of every stream is kept.
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
from actors.metrics import record_stream_states
from actors.store import connect_store
from media_ray.auth import tokens_match
from media_ray.catalog import Brand, BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.source_policy import SourcePolicy, SourceRefused
from media_ray.sources import SourceError
from media_ray.store import StoreUnavailable
from media_ray.streams import (
    StreamLimitReached,
    StreamRequest,
    StreamStartTimeout,
    StreamState,
    StreamStatus,
    new_push_key,
    new_stream_id,
    new_stream_key,
)
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
        self.uris: dict[str, str | None] = {}  # what each stream's ingest reads, for a restart
        self._busy: set[str] = set()  # streams being restarted, stopped or deleted
        self._failed_restarts: dict[str, int] = {}
        self._creating: set[str] = set()  # streams counted against max_streams while they start
        self.push_keys: dict[str, str] = {}  # webcam streams' secrets
        # the watch runs as a call of this actor to itself, so that it has the actor's event loop
        self._watch_ref = ray.get_runtime_context().current_actor.watch.remote()

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
        return self._set_catalog(BrandCatalog(brands))

    def _set_catalog(self, catalog: BrandCatalog) -> str:
        self._catalog = catalog
        for ingest in self.ingests.values():
            ingest.set_catalog_version.remote(catalog.version)
        log.info("catalogue is now %s (%d brands)", catalog.version, len(catalog))
        return catalog.version

    # -- streams ---------------------------------------------------------------------------
    async def create(self, request: StreamRequest) -> dict:
        """A new stream, answered with its secrets (`StreamCreated`); its key is in no status."""
        # the limit first of all: a refused stream leaves nothing behind
        await asyncio.gather(*(self._refresh(sid) for sid in self._running()), return_exceptions=True)
        running, limit = len(self._running()), self.config.http.limits.max_streams
        if running >= limit:
            raise StreamLimitReached(f"{running} streams are running: the limit (http.limits.max_streams) is {limit}")
        sid = new_stream_id()
        self._creating.add(sid)  # counted from now: no await came between the check and this
        try:
            return await self._create(sid, request)
        finally:
            self._creating.discard(sid)

    def _running(self) -> set[str]:
        return {sid for sid, s in self.statuses.items() if not s.state.terminal} | self._creating

    async def _refresh(self, sid: str) -> None:
        if sid not in self._creating:
            await asyncio.wait_for(self.get(sid), 10.0)

    async def _create(self, sid: str, request: StreamRequest) -> dict:
        # first, so that a refused source leaves nothing behind (no port, actor or folder);
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
        uri = self._source_uri(request, sid, pulled)
        secrets = self._secrets(sid, request.kind, uri)
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
            publish_url=secrets.get("publish_url"),
            hls_url=None if request.kind == "webcam" else f"/streams/{sid}/hls/index.m3u8",
        )
        hls_dir = None if request.kind == "webcam" else str(self.hls_root / sid)
        ingest = LiveIngest.options(
            **self.config.placement_for("ingest").ray_actor_options(),
            max_concurrency=self.config.live.ingest_concurrency,
        ).remote(status, uri, self.config, self._handles(detectors, tier), self._catalog.names_only(), hls_dir)
        self.ingests[sid] = ingest
        self.statuses[sid] = status
        self.uris[sid] = uri  # a restart of an ingest that dies at once reads the same source
        timeout = self.config.live.start_timeout_s
        try:
            return {**await asyncio.wait_for(ingest.start.remote(), timeout), **secrets}
        except asyncio.TimeoutError:
            self._undo(sid)
            cpus = self.config.placement_for("ingest").num_cpus
            raise StreamStartTimeout(
                f"the stream's ingest did not start within {timeout:g} s (live.start_timeout_s): no node "
                f"may have the {cpus:g} CPU it asks (placement.ingest) left; stop a stream or add a node"
            ) from None
        except BaseException as e:  # a cancelled create (the client gave up) is undone too
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
        self.push_keys.pop(sid, None)
        self.uris.pop(sid, None)
        shutil.rmtree(self.hls_root / sid, ignore_errors=True)

    def _secrets(self, sid: str, kind: str, uri: str | None) -> dict:
        """What only the creator of a stream is told: the RTMP key and full URL, the push key."""
        if kind == "webcam":
            self.push_keys[sid] = new_push_key()
            return {"push_key": self.push_keys[sid]}
        if kind == "rtmp" and uri is not None:
            server, key = self._publish_url(uri).rsplit("/", 1)
            return {"publish_url": server, "stream_key": key, "publish_url_with_key": f"{server}/{key}"}
        return {}

    async def rotate_key(self, sid: str) -> dict:
        """A new RTMP key for a stream (KeyError: no such stream; StreamError: not a running RTMP
        stream): the next publisher must use it."""
        status, ingest = self.statuses.get(sid), self.ingests.get(sid)
        if status is None:
            raise KeyError(sid)
        if status.kind != "rtmp" or ingest is None or status.publish_url is None or status.state.terminal:
            raise StreamError(f"stream {sid} is not a running RTMP stream: it has no key to rotate")
        key = new_stream_key()
        self.uris[sid] = await ingest.rotate_key.remote(key)  # a restarted ingest takes the new key too
        log.info("stream %s: its RTMP key was rotated", sid)
        return {
            "id": sid,
            "stream_key": key,
            "publish_url": status.publish_url,
            "publish_url_with_key": f"{status.publish_url}/{key}",
        }

    def webcam_ingest(self, sid: str, key: str | None) -> tuple[ray.actor.ActorHandle | None, int]:
        """The ingest of a webcam stream for a pusher of its key, else None and a close code:
        4404 (no such live webcam stream), 4403 (a wrong key)."""
        ingest, expected = self.ingests.get(sid), self.push_keys.get(sid)
        if ingest is None or expected is None:
            return None, 4404
        if not tokens_match(key, expected):
            return None, 4403
        return ingest, 0

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

    # -- the watch: restart what died, release what is over ---------------------------------
    async def watch(self) -> None:
        """Runs as long as the registry: checks every stream's ingest each `live.watch_every_s`."""
        while True:
            await asyncio.sleep(self.config.live.watch_every_s)
            sids = list(self.ingests)
            checked = await asyncio.gather(*(self._check(sid) for sid in sids), return_exceptions=True)
            for sid, outcome in zip(sids, checked):
                if isinstance(outcome, Exception):  # one stream's trouble must not end the watch
                    log.error("stream %s: checking its ingest failed: %r", sid, outcome)
            record_stream_states(s.state for s in self.statuses.values())

    async def _check(self, sid: str) -> None:
        ingest = self.ingests.get(sid)
        if ingest is None or sid in self._busy:
            return
        try:
            status = await asyncio.wait_for(ingest.get_status.remote(), max(10.0, 3 * self.config.live.watch_every_s))
            if sid not in self.uris:
                self.uris[sid] = await ingest.source_uri.remote()
        except (asyncio.TimeoutError, ray.exceptions.ActorUnavailableError):  # busy or unreachable: not dead
            log.warning("stream %s: its ingest did not answer the watch", sid)
            return
        except ray.exceptions.RayActorError as e:
            if self.ingests.get(sid) is ingest and sid not in self._busy:
                log.warning("stream %s: its ingest died (%s)", sid, type(e).__name__)
                await self._restart(sid)
            return
        self.statuses[sid] = StreamStatus(**status)
        if StreamState(status["state"]).terminal and await ingest.done.remote():
            self._release(sid)

    async def _restart(self, sid: str) -> None:
        """A new LiveIngest for a stream whose ingest died, after the last record stored."""
        status = self.statuses.get(sid)
        if status is None or status.state.terminal:
            self._release(sid)
            return
        if sid not in self.uris:  # died before the watch learnt its source
            self.statuses[sid] = status.update(state=StreamState.FAILED.value, reason="its ingest died")
            self._release(sid)
            return
        self._busy.add(sid)
        try:
            await self._start_again(sid, status)
            self._failed_restarts.pop(sid, None)
        except StoreUnavailable as e:  # where it got to is not known yet: the next watch tries again
            log.warning("stream %s: cannot restart its ingest yet: %s", sid, e)
        except Exception as e:
            tries = self._failed_restarts[sid] = self._failed_restarts.get(sid, 0) + 1
            log.warning("stream %s: restarting its ingest failed (%d): %s", sid, tries, e)
            if tries >= 3:
                self.statuses[sid] = status.update(state=StreamState.FAILED.value, reason=f"restart failed: {e}")
                self._release(sid)
        finally:
            self._busy.discard(sid)

    async def _start_again(self, sid: str, status: StreamStatus) -> None:
        meta = await self.store.get_meta(sid)
        last = await self.store.last(sid)
        saved = StreamStatus(**meta["status"]) if meta and "status" in meta else status
        prior = saved if saved.frames_analysed >= status.frames_analysed else status
        resume = None
        if last is not None:
            shift = (meta or {}).get("shift")
            resume = {
                "t": last["t"],
                "frame": last["frame"],
                "source_t": None if shift is None else last["t"] - shift,
            }
        again = prior.update(
            state=StreamState.RECONNECTING.value, reason="its ingest was lost: restarting", restarts=prior.restarts + 1
        )
        dead = self.ingests.get(sid)
        ingest = LiveIngest.options(
            **self.config.placement_for("ingest").ray_actor_options(),
            max_concurrency=self.config.live.ingest_concurrency,
        ).remote(
            again,
            self.uris[sid],
            self.config,
            self._handles(again.detectors, again.tier),
            self._catalog.names_only(),
            None if again.kind == "webcam" else str(self.hls_root / sid),
            resume,
        )
        self.statuses[sid] = again
        try:
            started = await ingest.start.remote()
        except BaseException:
            ray.kill(ingest)
            raise
        if dead is not None:
            ray.kill(dead)  # gone already; this only makes sure
        self.ingests[sid] = ingest
        self.statuses[sid] = StreamStatus(**started)
        log.warning("stream %s: its ingest was started again (restart %d)", sid, again.restarts)

    def _release(self, sid: str) -> None:
        """A stream that is over gives back its ingest actor and RTMP port, and, if it failed,
        its HLS folder; its last status stays."""
        ingest = self.ingests.pop(sid, None)
        if ingest is not None:
            ray.kill(ingest)
        self.rtmp_ports.pop(sid, None)
        self.uris.pop(sid, None)
        self._failed_restarts.pop(sid, None)
        status = self.statuses.get(sid)
        if status is not None and status.state == StreamState.FAILED:
            shutil.rmtree(self.hls_root / sid, ignore_errors=True)
        log.info("stream %s: released (%s)", sid, status.state.value if status else "unknown")

    async def list(self) -> list[dict]:
        return [await self.get(sid) for sid in sorted(self.statuses, key=lambda s: self.statuses[s].created_at)]

    async def get(self, sid: str) -> dict | None:
        ingest = None if sid in self._creating else self.ingests.get(sid)  # one starting may not be placed yet
        if ingest is not None:
            try:
                status = await ingest.get_status.remote()
                self.statuses[sid] = StreamStatus(**status)
                return status
            except ray.exceptions.RayActorError:
                pass  # the watch restarts it; until then its last status
        if sid in self.statuses:
            return self.statuses[sid].model_dump()
        meta = await self.store.get_meta(sid)
        return meta["status"] if meta else None

    async def ingest(self, sid: str):
        return self.ingests.get(sid)

    async def stop(self, sid: str) -> dict | None:
        """End a stream (its last frames analysed and stored) and release what it holds."""
        ingest = self.ingests.get(sid)
        if ingest is None:
            return await self.get(sid)
        self._busy.add(sid)
        try:
            status = await ingest.stop.remote()
            self.statuses[sid] = StreamStatus(**status)
        except ray.exceptions.RayActorError:  # died: its last status is what is known
            prior = self.statuses.get(sid)
            if prior is not None and not prior.state.terminal:
                self.statuses[sid] = prior.update(state=StreamState.ENDED.value, reason="stopped")
            status = self.statuses[sid].model_dump() if sid in self.statuses else None
        finally:
            self._release(sid)
            self._busy.discard(sid)
        return status

    async def delete(self, sid: str) -> bool:
        known = sid in self.statuses or await self.store.get_meta(sid) is not None
        if sid in self.ingests:
            await self.stop(sid)
        self.statuses.pop(sid, None)
        self.push_keys.pop(sid, None)
        await self.store.delete(sid)
        shutil.rmtree(self.hls_root / sid, ignore_errors=True)
        return known

    def hls_dir(self, sid: str) -> str | None:
        """The HLS folder of a stream this registry knows, or None."""
        if sid not in self.statuses:
            return None
        return str(self.hls_root / sid)

    async def shutdown(self) -> None:
        """Stop every stream; the HLS folders of the streams go too."""
        ray.cancel(self._watch_ref)
        for sid in list(self.ingests):
            try:
                await self.stop(sid)
            except Exception as e:  # stopping the others matters more
                log.warning("stream %s: stopping it failed: %s", sid, e)
        for sid in self.statuses:
            shutil.rmtree(self.hls_root / sid, ignore_errors=True)
