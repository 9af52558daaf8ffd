"""Live streams as the API speaks of them: what a user asks for, and what a stream reports.

Only the data lives here (no Ray): the registry and ingest actors in `actors/` keep and update
these values, and the FastAPI app in `deployments/` serves them.
"""

from __future__ import annotations

import secrets
import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

#: `source` values that are not URLs or paths: the stream's frames are pushed to media-ray
PUSH_SOURCES = ("rtmp", "webcam")


class StreamState(str, Enum):
    """Where a stream is: `starting`, `live` (frames flow), `reconnecting` (a pulled source
    dropped or could not be opened, and is retried), then `ended` or `failed`.

    `ended` and `failed` are terminal (`TERMINAL_STATES`, `state.terminal`): the stream is over
    and does not go live again; a new stream is needed. A str Enum: a state equals its string value
    (`StreamState.ENDED == "ended"`), and JSON carries the plain string.
    """

    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for `ended` and `failed`: the stream is over."""
        return self in TERMINAL_STATES


#: the states that end a stream
TERMINAL_STATES = frozenset({StreamState.ENDED, StreamState.FAILED})


class StreamRequest(BaseModel):
    """Body of `POST /api/streams`."""

    source: str = Field(min_length=1, max_length=2048, description="'rtmp', 'webcam', or a URL or path to pull")
    name: str | None = Field(None, max_length=200, description="shown on the page (default: the id)")
    fps: float | None = Field(None, gt=0, le=60, allow_inf_nan=False, description="frames analysed per second")
    detectors: list[str] | None = Field(None, max_length=16, description="detectors to run (default: the server's)")
    tier: str | None = Field(None, max_length=64, description="detector tier to ask for (local, lan, cloud)")

    @property
    def kind(self) -> str:
        return self.source if self.source in PUSH_SOURCES else "pull"


class StreamStatus(BaseModel):
    id: str
    name: str
    source: str
    kind: str
    state: StreamState = StreamState.STARTING
    reason: str | None = None
    fps: float
    detectors: list[str]
    tier_requested: str | None = None
    tier: str | None = None  # the tier serving it; differs from the request after a fallback
    fallback: bool = False
    publish_url: str | None = Field(
        None,
        description="RTMP server URL to publish to (rtmp://HOST:PORT/live), without the stream key: "
        "the key is in the create (and key rotation) response only",
    )
    hls_url: str | None = None
    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    batches_lost: int = Field(0, description="batches whose detector call failed (a replica lost mid-call, an error)")
    frames_lost: int = Field(0, description="frames of the lost batches: received, never analysed")
    restarts: int = Field(0, description="times the stream's ingest was started again after it died")
    frame_width: int | None = Field(None, description="width of the analysed frames: the pixels boxes are in")
    frame_height: int | None = Field(None, description="height of the analysed frames")
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def update(self, **changes: Any) -> StreamStatus:
        if "state" in changes:  # model_copy does not validate: a plain string becomes the enum
            changes["state"] = StreamState(changes["state"])
        return self.model_copy(update={**changes, "updated_at": time.time()})


class StreamCreated(StreamStatus):
    """Answer of `POST /api/streams`: the status, and the stream's secrets, shown to its creator
    only (no list, get or stored status holds them)."""

    stream_key: str | None = Field(None, description="RTMP stream key (rtmp streams); rotate it with POST .../key")
    publish_url_with_key: str | None = Field(None, description="publish_url/stream_key: what OBS or ffmpeg publish to")
    push_key: str | None = Field(None, description="webcam streams: the ?key= that /ws/webcam/{id} needs")


class StreamKey(BaseModel):
    """Answer of `POST /api/streams/{id}/key`: the new RTMP key; the old one is refused from now."""

    id: str
    stream_key: str
    publish_url: str
    publish_url_with_key: str


class StreamLimitReached(Exception):
    """As many streams run as `http.limits.max_streams` allows (429)."""


class StreamStartTimeout(Exception):
    """A stream's ingest did not start in time, e.g. no node had the CPU it asks for (503)."""


#: what a stream id looks like (`new_stream_id`); anything else names no stream
STREAM_ID_PATTERN = r"^[0-9a-f]{8}$"
#: what a brand id sent to the API may look like: a file stem in a catalogue folder
BRAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def new_stream_id() -> str:
    return secrets.token_hex(4)


def new_stream_key() -> str:
    """An RTMP stream key: unguessable, URL-safe."""
    return secrets.token_urlsafe(12)


def new_push_key() -> str:
    """A webcam stream's push key (`/ws/webcam/{id}?key=`): unguessable, URL-safe."""
    return secrets.token_urlsafe(16)
