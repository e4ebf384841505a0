"""A real headless browser for the report tests: Debian's Chromium, offline, with a throw-away profile."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)


def open_in_chromium(page: Path, tmp: Path) -> tuple[str, "object"]:
    """Headless Chromium on the file: the DOM after load (--dump-dom) and a 1200x2000 screenshot (as an
    array). Offline, throw-away profile, no sandbox (root in containers)."""
    from matplotlib.image import imread

    shot = tmp / "shot.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000"]
    uri = page.resolve().as_uri()
    # One start for both (about half the time); a Chromium that writes only the DOM gets a second start.
    proc = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2000", "--dump-dom", uri],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if not shot.is_file():
        subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2000", uri], capture_output=True,
                       timeout=120, check=True)
    return proc.stdout, imread(shot)


def assert_renders(page: Path, tmp: Path) -> int:
    """Every <img> decoded in the browser (the page's own self-check) and the screenshot is not blank."""
    dom, pixels = open_in_chromium(page, tmp)
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:2000]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, f"the page's load script did not run: {body.group(0)}"
    assert int(loaded.group(1)) == int(total.group(1)) > 0
    assert pixels.shape[:2] == (2000, 1200)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05 and (rgb.min(axis=-1) < 0.5).mean() > 0.01  # text and charts, not a white page
    return int(total.group(1))


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH or at /usr/bin/chromium (Debian: "
                                    "apt-get install chromium; .ci/run installs it when it can)")
