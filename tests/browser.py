"""Headless Chromium for the page's tests: the system's Chromium driven through Playwright.

Playwright's own browser download is never used (`playwright install` is not part of the
set-up): the browser is the distribution's `chromium` package, found at MEDIA_RAY_CHROMIUM or
on the PATH. The flags suit a machine with no display, no GPU and no way out to the internet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str | None:
    """The Chromium executable to use, or None when there is none."""
    named = os.environ.get("MEDIA_RAY_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def fake_camera_flags(y4m: Path) -> list[str]:
    """Flags that make getUserMedia answer, without asking, with `y4m` played in a loop."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ]


@contextlib.contextmanager
def headless_chromium(camera: Path | None = None) -> Iterator[playwright.sync_api.Browser]:  # noqa: F821
    """A started headless Chromium (a Playwright `Browser`), closed on exit.

    With `camera`, a .y4m file, the browser's only camera plays that file.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no Chromium: install the 'chromium' package or set MEDIA_RAY_CHROMIUM")
    args = CHROMIUM_FLAGS + (fake_camera_flags(camera) if camera else [])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()
