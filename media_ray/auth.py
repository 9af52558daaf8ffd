"""The API token of `media-ray serve`: where it comes from, and how a request proves it has it.

`resolve_token(config.http.auth)` is called by the driver before it deploys the app: the token
is `auth.token` (which `MEDIA_RAY_HTTP__AUTH__TOKEN` sets), else the one kept in `token_file`
(default `~/.media-ray/token`), else a new one, written there owner-only (0600) and reported as
`generated` so the CLI prints it once. The driver then puts it into `config.http.auth.token`,
and the API replicas check requests against it with `ApiGuard`.

A request proves it has the token with `Authorization: Bearer TOKEN`, or with the session cookie
that `POST /api/session` sets: its value is an HMAC of the token (`session_value`), so the
cookie never holds the token itself and changing the token ends every session. A WebSocket may
also pass `?token=TOKEN`. Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from media_ray.config_http import AuthConfig

log = logging.getLogger(__name__)

#: where a generated token is kept when `http.auth.token_file` is unset
DEFAULT_TOKEN_FILE = "~/.media-ray/token"
#: the session cookie `POST /api/session` sets
SESSION_COOKIE = "media_ray_session"
_SESSION_CONTEXT = b"media-ray session cookie v1"
#: a token read from a file must be at least this long (as `http.auth.token` must)
MIN_TOKEN_LENGTH = 16


class TokenError(Exception):
    """The token file cannot be read or written, or holds no usable token."""


@dataclass(frozen=True)
class ResolvedToken:
    """The API token and where it came from: `generated` is True when it was made just now
    (and written to `path`), which is when the CLI prints it."""

    token: str
    generated: bool
    path: Path | None  # the token file read or written; None for a configured token


def token_path(auth: AuthConfig) -> Path:
    return Path(os.path.expanduser(auth.token_file or DEFAULT_TOKEN_FILE))


def resolve_token(auth: AuthConfig) -> ResolvedToken:
    """The configured token, else the token file's, else a new one written to the token file."""
    if auth.token:
        return ResolvedToken(auth.token, generated=False, path=None)
    path = token_path(auth)
    if path.is_file():
        try:
            token = path.read_text().strip()
        except OSError as e:
            raise TokenError(f"cannot read the token file {path}: {e}") from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenError(f"the token file {path} holds no token of at least {MIN_TOKEN_LENGTH} characters")
        if path.stat().st_mode & 0o077:
            log.warning("the token file %s can be read by others: chmod 600 it", path)
        return ResolvedToken(token, generated=False, path=path)
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # created owner-only: the token is never readable by others, not even for a moment
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as e:
        raise TokenError(f"cannot write the token file {path}: {e}") from None
    log.info("generated an API token in %s", path)
    return ResolvedToken(token, generated=True, path=path)


def tokens_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; nothing matches a missing token."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def session_value(token: str) -> str:
    """The session cookie's value for `token`: an HMAC of it, never the token itself."""
    return hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class ApiGuard:
    """Checks what a request presents against the API token. With no token configured nothing
    is admitted (a replica never runs open by mistake); `open_reads` admits reads without one."""

    def __init__(self, auth: AuthConfig):
        self.token = auth.token
        self.open_reads = auth.open_reads
        self._session = session_value(auth.token) if auth.token else None
        if not self.token:
            log.error("no API token is configured (http.auth.token): every call that needs one is refused")

    def admits(
        self,
        authorization: str | None = None,
        cookie: str | None = None,
        query_token: str | None = None,
    ) -> bool:
        """Whether any of the bearer header, the session cookie or a `?token=` is right."""
        if self.token is None:
            return False
        return (
            tokens_match(bearer_token(authorization), self.token)
            or tokens_match(cookie, self._session)
            or tokens_match(query_token, self.token)
        )

    def session_for(self, token: str | None) -> str | None:
        """The session cookie's value for a right token, or None."""
        if self._session is None or not tokens_match(token, self.token):
            return None
        return self._session
