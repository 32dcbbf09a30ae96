"""Render a :class:`~labctl.report.model.Report` to one self-contained HTML file.

Jinja2 with autoescaping on: every string (vendor model names, rejection details, the spec
text) is escaped. Styles are inline and images are ``data:`` URIs, so the file opens
anywhere, offline, and prints to the same PDF.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from labctl.report.model import Report

_DATA_URI = re.compile(r"^data:image/(png|svg\+xml);base64,[A-Za-z0-9+/=]*$")


def _safe_data_uri(uri: str) -> str:
    if not _DATA_URI.match(uri):
        raise ValueError("report images must be embedded base64 data: URIs")
    return uri


def _css_string(text: str) -> str:
    """Text safe inside a CSS string in the page footer (no quotes, backslashes, angles)."""
    return re.sub(r"[\"'&\\<>\n\r]", " ", text)


def environment() -> Environment:
    """A fresh Jinja2 environment for the report templates (autoescape on, strict)."""
    env = Environment(
        loader=PackageLoader("labctl.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters["repr"] = repr
    env.filters["safe_data_uri"] = _safe_data_uri
    return env


def render_html(report: Report) -> str:
    """The report as one HTML document."""
    template = environment().get_template("report.html.j2")
    footer = _css_string(f"{report.title} · {report.subtitle}")[:160]
    return template.render(report=report, footer=footer)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
