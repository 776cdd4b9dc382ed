"""Screenshots with a real headless Chromium."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from kernelpilot.errors import KpError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if (p := shutil.which(name)):
            return p
    return None


def screenshot(page: str | Path, png: str | Path, width: int = 1280, height: int = 1800, timeout: float = 90) -> Path:
    """Render a local HTML file (or URL) to a PNG."""
    exe = chromium()
    if not exe:
        raise KpError("no Chromium found for the screenshot: apt-get install chromium")
    png = Path(png).resolve()
    url = page if str(page).startswith(("file:", "http:", "https:")) else Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="kp-chromium-") as prof:
        cmd = [exe, *FLAGS, f"--user-data-dir={prof}", f"--screenshot={png}", f"--window-size={width},{height}", url]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KpError(f"Chromium did not finish the screenshot within {timeout:g} s") from None
    if r.returncode or not png.exists():
        raise KpError(f"Chromium could not take the screenshot: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return png
