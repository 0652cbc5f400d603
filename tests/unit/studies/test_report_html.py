"""The HTML report in a real browser: headless Chromium (Debian package ``chromium``); skipped where absent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium (apt-get install chromium)")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--dump-dom",
)


def browser_problems(page: Path, profile: Path) -> list[str]:
    """What a reader would miss: images whose file is absent or not an image, and any console message."""
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 or "<body" not in done.stdout:
        return [f"chromium failed (exit {done.returncode}): {done.stderr[-2000:]}"]
    problems = []
    for src in re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", done.stdout):  # as the browser parsed the page
        target = page.parent / unquote(urlparse(src).path)
        if not target.is_file() or target.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"image {src}: missing or not a PNG")
    # the report has no script, so any console message (an error, an uncaught exception) is a problem
    problems += [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return problems


@needs_chromium
def test_the_html_report_shows_every_image_without_console_errors(saved_report: Path, tmp_path: Path) -> None:
    page = saved_report / "report.html"
    assert "<img" in page.read_text()
    assert browser_problems(page, tmp_path / "profile") == []


@needs_chromium
def test_the_browser_check_finds_a_missing_image_and_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='gone.png'><script>undefinedFn()</script></body></html>")
    problems = browser_problems(page, tmp_path / "profile")
    assert any("gone.png" in p for p in problems) and any("undefinedFn" in p for p in problems)
