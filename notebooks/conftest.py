"""The notebooks run as tests: `python -m pytest -q --nbmake notebooks/` (CI: `.ci/run`).

Each notebook runs in a kernel of its own, which inherits this environment: no model downloads,
and the throwaway Ray a notebook starts on this machine without Ray's token, as the tests run it
(`tests/conftest.py`); a notebook run by hand keeps the token on. Every notebook is `slow` (whole
clips, a Ray or a server): the fast lane, `-m "not slow"`, leaves them out.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker("slow")
