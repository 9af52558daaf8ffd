"""The HTTP/WebSocket face of media-ray: a FastAPI app as the Serve ingress deployment.

Everything the player page does is an API call here. Streams and the catalogue live in the
StreamRegistry actor; frame records are read from the results store, so any replica of this
deployment can serve any stream, and every WebSocket client gets every record (fan-out).

Every route needs the API token (`media_ray.auth`), checked by one dependency of the whole app
(`deployments.access`), except the page, `/static`, `/api/health`, `/docs`, `/openapi.json` and the
session routes; with `http.auth.open_reads` reads (GET routes, the follow socket, HLS) need none.
A WebSocket refused after its handshake is closed with a code: 4401 (no or a wrong token), 4403
(a wrong webcam push key), 4404 (no such stream), 4429 (the stream has its most viewers).
"""

import asyncio
import io
import json
import logging
import mimetypes
import re
from pathlib import Path

import PIL.Image
import ray
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Request,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
)
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.store import connect_store
from deployments.access import SessionRequest, authorise, refused_socket, viewer_slot
from media_ray.auth import SESSION_COOKIE, ApiGuard
from media_ray.catalog import Brand, CatalogError, decode_brand_image, parse_colour
from media_ray.config import MediaRayConfig
from media_ray.store import OLDEST
from media_ray.streams import (
    BRAND_ID_PATTERN,
    STREAM_ID_PATTERN,
    StreamCreated,
    StreamKey,
    StreamLimitReached,
    StreamRequest,
    StreamStartTimeout,
    StreamState,
    StreamStatus,
)
from media_ray.topology import REGISTRY_NAME, BrandExists, StreamError

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("video/mp2t", ".ts")

api = FastAPI(
    title="media-ray",
    description="Brands in live and recorded video, on Ray.",
    dependencies=[Depends(authorise)],
)
if STATIC.is_dir():
    api.mount("/static", StaticFiles(directory=STATIC), name="static")


# handlers are registered before `serve.ingress` takes the app
@api.exception_handler(RequestValidationError)
async def _invalid_request(request, exc: RequestValidationError):
    # the offending input is left out: a NaN or a megabyte of it must not break or bloat the answer
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


@api.exception_handler(CatalogError)
async def _catalog_error(request, exc: CatalogError):
    return JSONResponse(status_code=422, content={"detail": str(exc)})


api.add_exception_handler(WebSocketException, refused_socket)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class MediaRayAPI:
    async def __init__(self, config: MediaRayConfig, registry_host: DeploymentHandle | None = None):
        self.config = config
        # the stream registry of this application, from its host (`deployments.serve_app`), else by name
        if registry_host is not None:
            self.registry = await registry_host.registry.remote()
        else:
            self.registry = ray.get_actor(REGISTRY_NAME, namespace=config.ray.namespace)
        self.store = connect_store(config.store, namespace=config.ray.namespace)
        self.guard = ApiGuard(config.http.auth)  # `deployments.access` reads it
        self.viewers: dict[str, int] = {}  # WebSocket viewers of each stream on this replica

    # Serve ships these methods to the replica by value: helpers they call live on the class

    @staticmethod
    def _brand_json(b: Brand) -> dict:
        return {
            "id": b.id,
            "name": b.name,
            "aliases": list(b.aliases),
            "prompts": list(b.prompts),
            "hex": "{:02X}{:02X}{:02X}".format(*b.colour) if b.colour else None,
            "has_image": b.image is not None,
            "images": len(b.images),  # reference images: a catalogue's BRAND/ folder may hold several
        }

    @staticmethod
    async def _until_closed(ws: WebSocket) -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError):
            return

    # -- page ----------------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    async def index(self):
        page = STATIC / "index.html"
        if not page.exists():
            raise HTTPException(404, "the player page is not installed")
        return FileResponse(page)

    @api.get("/api/health")
    async def health(self) -> dict:
        apps = {
            name: s.status.value if hasattr(s.status, "value") else str(s.status)
            for name, s in serve.status().applications.items()
        }
        return {"ok": True, "applications": apps, "streams": len(await self.registry.list.remote())}

    # -- session -----------------------------------------------------------------------------
    @api.post("/api/session")
    async def open_session(self, body: SessionRequest, request: Request) -> JSONResponse:
        """Trade the token for an HttpOnly session cookie (the page's sign-in); a wrong one is a 401."""
        value = self.guard.session_for(body.token)
        if value is None:
            raise HTTPException(401, "wrong token", headers={"WWW-Authenticate": "Bearer"})
        response = JSONResponse({"session": True})
        response.set_cookie(
            SESSION_COOKIE,
            value,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @api.delete("/api/session")
    async def close_session(self) -> JSONResponse:
        response = JSONResponse({"session": False})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- streams ---------------------------------------------------------------------------
    @api.post("/api/streams", status_code=201, response_model=StreamCreated)
    async def create_stream(self, request: StreamRequest) -> dict:
        """A new stream; the answer alone holds its secrets (`stream_key`, `push_key`)."""
        try:
            return await self.registry.create.remote(request)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, StreamError):
                raise HTTPException(422, str(e.cause)) from None
            if isinstance(e.cause, StreamLimitReached):
                raise HTTPException(429, str(e.cause)) from None
            if isinstance(e.cause, StreamStartTimeout):
                raise HTTPException(503, str(e.cause)) from None
            raise

    @api.post("/api/streams/{sid}/key", response_model=StreamKey)
    async def rotate_key(self, sid: str) -> dict:
        """A new RTMP stream key: the next publisher must use it, the old one is refused."""
        try:
            return await self.registry.rotate_key.remote(sid)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, KeyError):
                raise HTTPException(404, f"no stream {sid}") from None
            if isinstance(e.cause, StreamError):
                raise HTTPException(409, str(e.cause)) from None
            raise

    @api.get("/api/streams", response_model=list[StreamStatus])
    async def list_streams(self) -> list[dict]:
        return await self.registry.list.remote()

    @api.get("/api/streams/{sid}", response_model=StreamStatus)
    async def get_stream(self, sid: str) -> dict:
        return await self._status(sid)

    @api.delete("/api/streams/{sid}")
    async def delete_stream(self, sid: str) -> dict:
        if not re.match(STREAM_ID_PATTERN, sid) or not await self.registry.delete.remote(sid):
            raise HTTPException(404, f"no stream {sid[:64]}")
        return {"deleted": sid}

    @api.get("/api/streams/{sid}/frames")
    async def frames(self, sid: str, since: float | None = None, limit: int = 1000) -> list[dict]:
        await self._status(sid)
        return await self.store.history(sid, since=since, limit=max(1, min(limit, 10_000)))

    @api.get("/api/streams/{sid}/report")
    async def report(self, sid: str) -> dict:
        await self._status(sid)
        meta = await self.store.get_meta(sid)
        if not meta or "report" not in meta:
            raise HTTPException(404, f"no report yet for {sid}")
        return meta["report"]

    @api.get("/streams/{sid}/hls/{name}", include_in_schema=False)
    async def hls(self, sid: str, name: str):
        """A file of the stream's own HLS folder: the id must be a stream's, the name a plain
        file name, and neither the folder nor the file a symbolic link."""
        if not re.match(STREAM_ID_PATTERN, sid) or not re.match(r"^[A-Za-z0-9_-]{1,64}\.(m3u8|ts|m4s|mp4)$", name):
            raise HTTPException(404, "no such segment")
        folder = await self.registry.hls_dir.remote(sid)
        if folder is None:
            raise HTTPException(404, "no such segment")
        folder, path = Path(folder), Path(folder) / name
        if folder.is_symlink() or path.is_symlink() or not path.is_file() or path.resolve().parent != folder.resolve():
            raise HTTPException(404, "no such segment")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def _finished(self, sid: str) -> bool:
        status = await self.registry.get.remote(sid)
        return status is None or StreamState(status["state"]).terminal

    async def _status(self, sid: str) -> dict:
        if not re.match(STREAM_ID_PATTERN, sid):  # no stream has such an id: nothing to look up
            raise HTTPException(404, f"no stream {sid[:64]}")
        status = await self.registry.get.remote(sid)
        if status is None:
            raise HTTPException(404, f"no stream {sid[:64]}")
        return status

    # -- brands ------------------------------------------------------------------------------
    @api.get("/api/brands")
    async def brands(self) -> list[dict]:
        return [self._brand_json(b) for b in await self.registry.catalog.remote()]

    async def _read_brand_image(self, image: UploadFile | None):
        """The upload as RGBA, within the configured bytes and pixels (413 beyond them)."""
        if image is None:
            return None
        limits = self.config.http.limits
        data = await image.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"the image is over the upload limit of {limits.max_upload_bytes} bytes")
        try:
            with PIL.Image.open(io.BytesIO(data)) as header:  # the header only: nothing decoded yet
                width, height = header.size
        except (PIL.UnidentifiedImageError, OSError, ValueError):
            raise HTTPException(422, "the image cannot be read (PNG, JPEG or WebP expected)") from None
        if width * height > limits.max_image_pixels:
            raise HTTPException(
                413, f"the image of {width}x{height} pixels is over the limit of {limits.max_image_pixels} pixels"
            )
        return decode_brand_image(data)

    async def _save_brand(
        self, brand_id: str, name: str, prompts: str, aliases: str, hex: str, image: UploadFile | None, replace: bool
    ) -> dict:
        rgba = await self._read_brand_image(image)
        split = lambda s: tuple(p.strip() for p in s.split(",") if p.strip())  # noqa: E731
        brand = Brand(
            id=brand_id,
            name=name or brand_id,
            aliases=split(aliases),
            prompts=split(prompts),
            colour=parse_colour(hex),
            image=rgba,
        )
        try:
            version = await self.registry.add_brand.remote(brand, replace)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, BrandExists):
                raise HTTPException(409, str(e.cause)) from None
            raise
        return {**self._brand_json(brand), "catalog_version": version}

    @api.post("/api/brands", status_code=201)
    async def add_brand(
        self,
        id: str = Form(..., pattern=BRAND_ID_PATTERN, description="letters, digits, '_', '.', '-'; at most 64"),
        name: str = Form("", max_length=200),
        prompts: str = Form("", max_length=2000, description="comma-separated"),
        aliases: str = Form("", max_length=2000, description="comma-separated"),
        hex: str = Form("", max_length=7, description="main colour, RRGGBB"),
        image: UploadFile | None = File(None),
    ) -> dict:
        """Add a brand; an id that exists is a 409 (PUT /api/brands/{id} replaces)."""
        return await self._save_brand(id, name, prompts, aliases, hex, image, replace=False)

    @api.put("/api/brands/{brand_id}")
    async def replace_brand(
        self,
        brand_id: str = Path_(..., pattern=BRAND_ID_PATTERN),
        name: str = Form("", max_length=200),
        prompts: str = Form("", max_length=2000),
        aliases: str = Form("", max_length=2000),
        hex: str = Form("", max_length=7),
        image: UploadFile | None = File(None),
    ) -> dict:
        """Add a brand or replace the one with this id."""
        return await self._save_brand(brand_id, name, prompts, aliases, hex, image, replace=True)

    @api.delete("/api/brands/{brand_id}")
    async def remove_brand(self, brand_id: str) -> dict:
        try:
            version = await self.registry.remove_brand.remote(brand_id)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, KeyError):
                raise HTTPException(404, f"no brand {brand_id}") from None
            if isinstance(e.cause, CatalogError):
                raise HTTPException(422, str(e.cause)) from None
            raise
        return {"deleted": brand_id, "catalog_version": version}

    # -- WebSockets ----------------------------------------------------------------------------
    @api.websocket("/ws/streams/{sid}", dependencies=[Depends(viewer_slot)])
    async def follow(self, ws: WebSocket, sid: str) -> None:
        """Every frame record of the stream: what is kept first, then each as it is produced."""
        await ws.accept()
        # each message is a record with its `cursor`; `?after=CURSOR` resumes right after that record
        from media_ray.store import StoreUnavailable

        closed = asyncio.ensure_future(self._until_closed(ws))
        cursor = ws.query_params.get("after") or OLDEST
        unavailable = False
        try:
            while not closed.done():
                reading = asyncio.ensure_future(self.store.follow_entries(sid, cursor, timeout_s=5.0))
                await asyncio.wait({reading, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    reading.cancel()
                    break
                try:
                    entries, cursor = reading.result()
                except ValueError as e:  # ?after= names no entry of this store
                    await ws.close(code=4400, reason=str(e)[:120])
                    break
                except StoreUnavailable as e:  # a store restarting: read again, the cursor is kept
                    if not unavailable:
                        log.warning("stream %s: the store is unavailable to a follower (%s); retrying", sid, e)
                    unavailable = True
                    await asyncio.wait({closed}, timeout=1.0)
                    continue
                if unavailable:
                    log.info("stream %s: the store answers a follower again", sid)
                    unavailable = False
                for entry_cursor, record in entries:
                    await ws.send_text(json.dumps({**record, "cursor": entry_cursor}))
                if not entries and await self._finished(sid):
                    await ws.close(code=1000, reason="the stream has ended")
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.cancel()

    @api.websocket("/ws/webcam/{sid}")
    async def webcam(self, ws: WebSocket, sid: str) -> None:
        """JPEG frames from the page's camera, one binary message each; `?key=` is the stream's
        push key (from its create response). A text message closes the socket with 1003."""
        ingest, code = await self.registry.webcam_ingest.remote(sid, ws.query_params.get("key"))
        if ingest is None:
            reason = f"no live webcam stream {sid}" if code == 4404 else "a wrong or missing push key (?key=)"
            raise WebSocketException(code, reason)
        await ws.accept()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    await ws.close(code=1003, reason="binary messages only: one JPEG frame each")
                    return
                await ingest.push_jpeg.remote(data)
        except (WebSocketDisconnect, RuntimeError):
            pass


def api_app(config: MediaRayConfig, registry_host: serve.Application | None = None) -> serve.Application:
    """The ingress; `registry_host` is the bound deployment that makes the stream registry."""
    return MediaRayAPI.options(name="MediaRayAPI", max_ongoing_requests=config.http.limits.max_ongoing_requests).bind(
        config, registry_host
    )
