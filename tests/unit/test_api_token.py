"""`media_ray.auth`: where the API token comes from, and what proves a caller has it."""

from __future__ import annotations

import stat

import pytest

from media_ray.auth import (
    ApiGuard,
    ResolvedToken,
    TokenError,
    bearer_token,
    resolve_token,
    session_value,
    tokens_match,
)
from media_ray.config import AuthConfig, MediaRayConfig

TOKEN = "a-configured-token-0123456789"


def test_a_configured_token_is_used_as_it_is(tmp_path):
    resolved = resolve_token(AuthConfig(token=TOKEN, token_file=str(tmp_path / "token")))
    assert resolved == ResolvedToken(TOKEN, generated=False, path=None)
    assert not (tmp_path / "token").exists()


def test_the_environment_sets_the_token(monkeypatch):
    monkeypatch.setenv("MEDIA_RAY_HTTP__AUTH__TOKEN", TOKEN)
    assert resolve_token(MediaRayConfig().http.auth).token == TOKEN


def test_without_a_token_one_is_generated_once_owner_only_and_then_read(tmp_path):
    path = tmp_path / "deep" / "token"
    first = resolve_token(AuthConfig(token_file=str(path)))
    assert first.generated and first.path == path and len(first.token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = resolve_token(AuthConfig(token_file=str(path)))
    assert again == ResolvedToken(first.token, generated=False, path=path)


def test_a_token_file_without_a_usable_token_is_an_error(tmp_path):
    path = tmp_path / "token"
    path.write_text("short\n")
    with pytest.raises(TokenError, match="16"):
        resolve_token(AuthConfig(token_file=str(path)))


def test_tokens_match_only_when_equal():
    assert tokens_match(TOKEN, TOKEN)
    for other in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        assert not tokens_match(other, TOKEN)
    assert not tokens_match(None, None) and not tokens_match("", "")


def test_the_bearer_header_is_parsed():
    assert bearer_token(f"Bearer {TOKEN}") == TOKEN
    assert bearer_token(f"bearer   {TOKEN} ") == TOKEN
    for header in (None, "", "Bearer", "Bearer  ", f"Basic {TOKEN}", TOKEN):
        assert bearer_token(header) is None


def test_the_session_cookie_is_derived_from_the_token_and_is_not_it():
    value = session_value(TOKEN)
    assert value == session_value(TOKEN) and TOKEN not in value
    assert value != session_value(TOKEN + "x")


def test_the_guard_admits_the_header_the_cookie_or_the_query_token():
    guard = ApiGuard(AuthConfig(token=TOKEN))
    assert guard.admits(authorization=f"Bearer {TOKEN}")
    assert guard.admits(cookie=session_value(TOKEN))
    assert guard.admits(query_token=TOKEN)
    assert not guard.admits()
    assert not guard.admits(authorization="Bearer wrong-token-0123456789", cookie=TOKEN, query_token="x")
    assert guard.session_for(TOKEN) == session_value(TOKEN) and guard.session_for("wrong") is None


def test_a_guard_without_a_token_admits_nothing():
    guard = ApiGuard(AuthConfig())
    assert not guard.admits(authorization="Bearer None", cookie="", query_token="")
    assert guard.session_for("anything") is None
