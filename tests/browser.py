"""Headless Chromium for tests: load a local page offline, read its DOM, take a screenshot.

Chromium comes from Debian's `chromium` package (.ci/run installs it). Every start gets
a new empty profile and the flags that keep it off the network: no background
networking, no component updates, no sync, and a proxy that points nowhere, so a page
that tries to load anything from outside fails instead of reaching a host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--hide-scrollbars",
    # Any request for another host goes to a closed port on this machine.
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)

RENDER_BUDGET_MS = 10_000
"""Virtual time the page gets to run its scripts before the DOM or screenshot is taken."""


def chromium_path() -> str:
    """Return the Chromium executable, or skip the test when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium is not installed (Debian package `chromium`)"
    if os.environ.get("CI"):
        pytest.fail(message + "; .ci/run installs it")
    pytest.skip(message)
    raise AssertionError("unreachable")


def _run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [
                chromium_path(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={RENDER_BUDGET_MS}",
                *args,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def dump_dom(page: Path) -> str:
    """Load `page` and return its DOM as HTML after its scripts have run."""
    result = _run(page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1600) -> Path:
    """Load `page` and save a screenshot of the window as `png`."""
    result = _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert png.is_file(), result.stderr[-2000:]
    return png


def ink_fraction(png: Path) -> float:
    """Return the share of pixels that are not the page background (the top-left pixel)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    background = pixels[0, 0]
    return float((pixels != background).any(axis=2).mean())
