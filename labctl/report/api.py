"""Write a run's report: what ``labctl report``, ``labctl run`` and ``labctl rescore`` call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labctl.evaluators.base import evaluator_registry
from labctl.report.build import build_report
from labctl.report.html import render_html, write_atomic
from labctl.report.inputs import gather, run_dir
from labctl.report.pdf import find_chromium, html_to_pdf
from labctl.report.sections import section_registry
from labctl.store.records import RunRecord

Format = Literal["html", "pdf"]


@dataclass(frozen=True)
class Written:
    """Where a report went."""

    path: Path
    html: Path | None
    """The HTML beside a PDF (None when the HTML was the requested file)."""


def default_path(record: RunRecord, fmt: Format) -> Path:
    """``{data_dir}/runs/{id}/report.{html|pdf}``."""
    return run_dir(record) / f"report.{fmt}"


def write_report(
    record: RunRecord,
    fmt: Format = "html",
    out: Path | None = None,
    *,
    chromium: Path | None = None,
    pdf_timeout_s: float = 90.0,
) -> Written:
    """Build the report of ``record`` and write it as ``fmt``.

    For PDF the Chromium binary is looked up first (raising
    :class:`~labctl.report.pdf.ChromiumMissing` before any work) and the HTML is also written
    beside the run, so the two always match.
    """
    browser = find_chromium(chromium) if fmt == "pdf" else None
    inputs = gather(record, evaluator_registry())
    html = render_html(build_report(inputs, section_registry()))
    target = out or default_path(record, fmt)
    if fmt == "html":
        write_atomic(target, html.encode("utf-8"))
        return Written(target, None)
    assert browser is not None
    html_path = target.with_suffix(".html")
    write_atomic(html_path, html.encode("utf-8"))
    html_to_pdf(html, target, browser, pdf_timeout_s)
    return Written(target, html_path)
