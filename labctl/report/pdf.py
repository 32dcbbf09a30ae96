"""Print a report's HTML to PDF with headless Chromium (Debian's ``chromium``).

The HTML is self-contained, so Chromium loads it from a local file with networking features
off; it runs with its own throw-away profile directory and a timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from labctl.report.html import write_atomic

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "PDF reports need headless Chromium: install it with 'sudo apt-get install chromium' "
    "(or set report.chromium in labctl.yaml to a Chrome/Chromium binary); "
    "HTML reports work without it"
)


class PdfError(RuntimeError):
    """The PDF could not be made; the message says why."""


class ChromiumMissing(PdfError):
    """No Chromium to print with."""


def find_chromium(configured: Path | None = None) -> Path:
    """The Chromium binary to use; :class:`ChromiumMissing` (with what to install) if none."""
    if configured is not None:
        if configured.is_file():
            return configured
        raise ChromiumMissing(
            f"report.chromium is {configured}, which does not exist; " + INSTALL_HINT
        )
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ChromiumMissing(INSTALL_HINT)


def html_to_pdf(html: str, out: Path, chromium: Path, timeout_s: float = 90.0) -> None:
    """Print ``html`` to ``out`` (written atomically)."""
    with tempfile.TemporaryDirectory(prefix="labctl-pdf-") as tmp:
        work = Path(tmp)
        page = work / "report.html"
        page.write_text(html, encoding="utf-8")
        target = work / "report.pdf"
        cmd = [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--no-pdf-header-footer",
            f"--user-data-dir={work / 'profile'}",
            f"--print-to-pdf={target}",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise PdfError(f"Chromium did not print the report within {timeout_s:g} s") from exc
        except OSError as exc:
            raise PdfError(f"cannot start {chromium}: {exc}") from exc
        if proc.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
            raise PdfError(f"Chromium could not print the report (exit {proc.returncode}): {tail}")
        write_atomic(out, target.read_bytes())
