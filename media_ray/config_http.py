"""The HTTP part of the configuration tree (`http`): the API's address, its token and its
limits. Part of `media_ray.config`, which re-exports these classes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ApiLimitsConfig", "AuthConfig", "HttpConfig"]


class ApiLimitsConfig(BaseModel):
    """What one request to the API may ask for; more is a 4xx with the limit in its message."""

    model_config = ConfigDict(extra="forbid")

    max_upload_bytes: int = Field(5_000_000, ge=1, description="largest brand image upload, in bytes (413)")
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description="largest brand image, width x height in pixels, read from its header before it is decoded (413)",
    )
    max_streams: int = Field(
        20, ge=1, description="streams a server runs at once (live, starting or reconnecting); one more is a 429"
    )
    max_viewers_per_stream: int = Field(
        20,
        ge=1,
        description="WebSocket viewers of one stream at once, counted by each API replica (with n replicas "
        "up to n times as many); one more is refused (close code 4429)",
    )
    max_ongoing_requests: int = Field(
        256,
        ge=8,
        description="requests one API replica serves at once, WebSocket viewers included: sized above "
        "max_streams x max_viewers_per_stream's share of a replica so that viewers never starve control calls",
    )


class AuthConfig(BaseModel):
    """Who may call the API (`media_ray.auth`). Writes always need the token; reads need it
    unless `open_reads`. With no token set, one is generated on the first start, kept in
    `token_file` and printed once."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(
        None,
        min_length=16,
        description="the API token (Authorization: Bearer TOKEN); set it with MEDIA_RAY_HTTP__AUTH__TOKEN",
    )
    token_file: str | None = Field(
        None, description="where a generated token is kept, mode 0600 (default ~/.media-ray/token)"
    )
    open_reads: bool = Field(
        False, description="let anyone read streams, frames, reports, brands and HLS (writes still need the token)"
    )


class HttpConfig(BaseModel):
    """The HTTP/WebSocket app of `media-ray serve`."""

    model_config = ConfigDict(extra="forbid")

    limits: ApiLimitsConfig = Field(default_factory=ApiLimitsConfig, description="request limits")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API authentication")

    host: str = Field("127.0.0.1", description="interface the HTTP proxy binds")
    port: int = Field(8000, ge=1, le=65535, description="port of the HTTP proxy")
    public_url: str | None = Field(
        None, description="base URL clients reach the app at, for links in the API (default http://host:port)"
    )

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
