"""The typed blocks a report is made of.

Builders produce these plain values; only :mod:`labctl.report.html` turns them into markup
(with autoescaping), so no evaluator section ever writes HTML and no vendor-supplied string
(a model name, a rejection detail) reaches the page unescaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["", "pass", "fail", "best", "muted"]
Tone = Literal["", "pass", "fail", "note"]


@dataclass(frozen=True)
class Cell:
    """One table cell. ``value`` is the exact number behind ``text`` (kept in the page as a
    ``data-value`` attribute, so a reader or a test can check it against the run record)."""

    text: str
    value: float | None = None
    status: Status = ""
    key: str = ""
    """What the number is, e.g. ``criterion/airsense/as10-0001/rmse``."""
    unit: str = ""


@dataclass(frozen=True)
class Table:
    """A table with a header row."""

    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text."""

    text: str
    tone: Tone = ""
    kind: Literal["paragraph"] = "paragraph"


@dataclass(frozen=True)
class Bullets:
    """A list of sentences."""

    items: list[str]
    tone: Tone = ""
    kind: Literal["bullets"] = "bullets"


@dataclass(frozen=True)
class Figure:
    """An embedded image (a ``data:`` URI, never a link to fetch)."""

    data_uri: str
    caption: str
    alt: str
    kind: Literal["figure"] = "figure"


@dataclass(frozen=True)
class Facts:
    """Label/value pairs (a definition list)."""

    items: list[tuple[str, str]]
    kind: Literal["facts"] = "facts"


@dataclass(frozen=True)
class Preformatted:
    """Verbatim text such as the spec file."""

    text: str
    caption: str = ""
    kind: Literal["pre"] = "pre"


Block = Table | Paragraph | Bullets | Figure | Facts | Preformatted


@dataclass(frozen=True)
class Section:
    """A numbered part of the report."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """A whole report, ready to render."""

    title: str
    subtitle: str
    verdict: str
    """``PASS`` or ``FAIL`` (or the run status when there is no verdict)."""
    verdict_text: str
    run_id: str
    generated_at: str
    labctl_version: str
    sections: list[Section]
