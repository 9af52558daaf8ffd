"""Who may call the API, as FastAPI dependencies of `deployments.app`: the token check of every
route (`authorise`), a stream's viewer slots (`viewer_slot`) and the close of a refused WebSocket
(`refused_socket`). They find the replica's `MediaRayAPI` (its `guard`, `viewers` and `config`)
through Serve's replica context; the checks themselves are `media_ray.auth`'s.
"""

from __future__ import annotations

from fastapi import HTTPException, WebSocket, WebSocketException
from pydantic import BaseModel, Field
from ray import serve
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState

from media_ray.auth import SESSION_COOKIE, ApiGuard

#: routes anyone may call: the page, the health probe (for load balancers), signing in and out
#: (the mounted /static and FastAPI's /docs and /openapi.json are not routes with dependencies)
OPEN_ROUTES = frozenset({("GET", "/"), ("GET", "/api/health"), ("POST", "/api/session"), ("DELETE", "/api/session")})
#: WebSockets that only read
READ_SOCKETS = frozenset({"/ws/streams/{sid}"})


def _same_origin(conn: HTTPConnection) -> bool:
    """A WebSocket's Origin (if any) is this server: a cookie is not taken from another site's page."""
    origin = conn.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1].rstrip("/") == conn.headers.get("host")


async def authorise(conn: HTTPConnection) -> None:
    """The token check of every route (a dependency of the whole app)."""
    route = conn.scope.get("route")
    path = getattr(route, "path", conn.url.path)
    websocket = conn.scope["type"] == "websocket"
    method = "WEBSOCKET" if websocket else conn.scope.get("method", "GET")
    if (method, path) in OPEN_ROUTES:
        return
    guard: ApiGuard = serve.get_replica_context().servable_object.guard
    if guard.open_reads and (method in ("GET", "HEAD") or path in READ_SOCKETS):
        return
    cookie = conn.cookies.get(SESSION_COOKIE) if not websocket or _same_origin(conn) else None
    query_token = conn.query_params.get("token") if websocket else None
    if guard.admits(conn.headers.get("authorization"), cookie, query_token):
        return
    if websocket:
        raise WebSocketException(4401, "the API token is needed (Authorization: Bearer, the session cookie or ?token=)")
    raise HTTPException(
        401,
        "the API token is needed: Authorization: Bearer TOKEN, or the session cookie of POST /api/session",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def viewer_slot(ws: WebSocket, sid: str):
    """One of the stream's `http.limits.max_viewers_per_stream` viewers (of this replica), held
    while the socket is open; one more is closed with 4429. On the event loop, with no await
    between the count and its increment."""
    replica = serve.get_replica_context().servable_object
    viewers: dict[str, int] = replica.viewers
    limit = replica.config.http.limits.max_viewers_per_stream
    if viewers.get(sid, 0) >= limit:
        raise WebSocketException(4429, f"stream {sid} has {limit} viewers, the most it may have")
    viewers[sid] = viewers.get(sid, 0) + 1
    try:
        yield
    finally:
        viewers[sid] -= 1
        if viewers[sid] <= 0:
            viewers.pop(sid, None)


class SessionRequest(BaseModel):
    """Body of `POST /api/session`."""

    token: str = Field(min_length=1, max_length=512, description="the API token")


async def refused_socket(ws: WebSocket, exc: WebSocketException) -> None:
    """The exception handler of a refused WebSocket."""
    # accepted first, so that the client gets the close code and reason (a close before the
    # handshake is a bare HTTP 403)
    if ws.client_state == WebSocketState.CONNECTING:
        await ws.accept()
    if ws.client_state == WebSocketState.CONNECTED:
        await ws.close(code=exc.code, reason=(exc.reason or "")[:120])
