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

    source: str = Field(description="'rtmp', 'webcam', or a URL or path to pull")
    name: str | None = None
    fps: float | None = Field(None, gt=0, le=60)
    detectors: list[str] | None = None
    tier: str | None = Field(None, description="detector tier to ask for (local, lan, cloud)")

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
    publish_url: str | None = None
    hls_url: str | None = None
    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    frame_width: int | None = Field(None, description="width of the analysed frames: the pixels boxes are in")
    frame_height: int | None = Field(None, description="height of the analysed frames")
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def update(self, **changes: Any) -> StreamStatus:
        if "state" in changes:  # model_copy does not validate: a plain string becomes the enum
            changes["state"] = StreamState(changes["state"])
        return self.model_copy(update={**changes, "updated_at": time.time()})


def new_stream_id() -> str:
    return secrets.token_hex(4)


def new_stream_key() -> str:
    """An RTMP stream key: unguessable, URL-safe."""
    return secrets.token_urlsafe(12)
