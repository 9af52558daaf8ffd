"""schemathesis against the app's own OpenAPI schema: whatever a client sends, with the token or
without it, the API answers with a 2xx/4xx and a JSON body, never a 5xx, and keeps answering
`/api/health`. The number of cases and their answers are printed (`-s`) for the closing note."""

from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from conftest import start_live_app
from hypothesis import HealthCheck, settings

#: answers seen, by (with token?, status): printed when the module's app stops
ANSWERS: collections.Counter = collections.Counter()
#: routes anyone may call: probes, and signing in and out
OPEN = ("/api/health", "/api/session")


@pytest.fixture(scope="module")
def fuzzed_app(local_ray, sample):
    app = start_live_app(sample, http_limits={"max_streams": 4})
    yield app
    app.service.stop()
    print(f"\nschemathesis: {sum(ANSWERS.values())} cases; answers {dict(sorted(ANSWERS.items()))}")


@pytest.fixture(scope="module")
def api_schema(fuzzed_app):
    return schemathesis.openapi.from_url(f"{fuzzed_app.base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case, fuzzed_app):
    for authorised in (True, False):
        headers = dict(getattr(fuzzed_app, "headers", {})) if authorised else {}
        response = case.call(headers=headers, timeout=30)
        ANSWERS[("token" if authorised else "no token", response.status_code)] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        if not authorised and case.path not in OPEN:
            # refused; a body that cannot be parsed is refused before the token is looked at
            assert response.status_code in (400, 401, 405, 422), response.status_code
    assert httpx.get(f"{fuzzed_app.base_url}/api/health", timeout=30).status_code == 200
