"""``labctl report``, ``labctl compare`` and ``labctl rescore``: documents from recorded runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

import click

from labctl.cli.common import echo_json, fail, load_checked_spec, settings
from labctl.cli.exit_codes import ExitCode
from labctl.cli.render import console, print_record
from labctl.config import Settings
from labctl.store.records import RunRecord
from labctl.store.runs import RunStore, StoreError


def _get(store: RunStore, run: str) -> RunRecord:
    try:
        return store.get(run)
    except StoreError as exc:
        fail(str(exc))


def make_report(
    s: Settings, record: RunRecord, fmt: Literal["html", "pdf"], out: Path | None
) -> Path:
    """Write the report of ``record``; exit 2 with what to install when Chromium is missing,
    3 when the PDF cannot be printed."""
    from labctl.report.api import write_report
    from labctl.report.pdf import ChromiumMissing, PdfError

    try:
        written = write_report(
            record,
            fmt,
            out,
            chromium=s.report.chromium,
            pdf_timeout_s=s.report.pdf_timeout_s,
        )
    except ChromiumMissing as exc:
        fail(str(exc))
    except PdfError as exc:
        fail(str(exc), ExitCode.RIG_FAULT)
    except OSError as exc:
        fail(f"cannot write the report: {exc}", ExitCode.RIG_FAULT)
    return written.path


@click.command("report")
@click.argument("run")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "pdf"]),
    default=None,
    help="html (default from config) or pdf (needs headless Chromium).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write it (default: runs/RUN/report.FORMAT in the data directory).",
)
def report(run: str, fmt: Literal["html", "pdf"] | None, out: Path | None) -> None:
    """Write the report of RUN: summary and verdict, criteria, limitations, plots, data
    quality and provenance, as one self-contained HTML file or a PDF."""
    s = settings()
    rec = _get(RunStore(s.store_path), run)
    t0 = time.monotonic()
    path = make_report(s, rec, fmt or s.report.format, out)
    click.echo(f"report {path}  ({time.monotonic() - t0:.1f} s)")


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="The matrix as JSON on stdout.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the matrix as an HTML document.",
)
def compare(runs: tuple[str, ...], as_json: bool, out: Path | None) -> None:
    """Compare the candidates of one or more runs of a trial: criteria × candidates, the best
    value of each criterion marked (★)."""
    from rich.table import Table
    from rich.text import Text

    from labctl.report.build import compare_report
    from labctl.report.compare import CompareError, matrix
    from labctl.report.html import render_html, write_atomic
    from labctl.report.numbers import num

    s = settings()
    store = RunStore(s.store_path)
    records = [_get(store, r) for r in runs]
    try:
        m = matrix(records)
    except CompareError as exc:
        fail(str(exc))
    if out is not None:
        write_atomic(out, render_html(compare_report(records)).encode("utf-8"))
    if as_json:
        echo_json(
            json.dumps(
                {
                    "trial": m.trial,
                    "runs": m.runs,
                    "criteria": {n: m.targets[n] for n in m.criteria},
                    "rows": [
                        {
                            "run": r.run,
                            "subject": r.subject,
                            "model": r.model,
                            "passed": r.passed,
                            "cells": {
                                k: {
                                    "value": c.value,
                                    "target": c.target,
                                    "passed": c.passed,
                                    "best": c.best,
                                }
                                for k, c in r.cells.items()
                            },
                        }
                        for r in m.rows
                    ],
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"Comparison: {m.trial} ({len(m.runs)} run{'s' * (len(m.runs) > 1)})")
    table.add_column("candidate", no_wrap=True)
    table.add_column("model", no_wrap=True)
    for n in m.criteria:
        table.add_column(f"{n}\n{' / '.join(m.targets[n])}", justify="right", no_wrap=True)
    table.add_column("verdict", justify="center")
    for row in m.rows:
        cells: list[Text | str] = [row.label(m.several_runs), row.model]
        for n in m.criteria:
            c = row.cells.get(n)
            if c is None:
                cells.append("—")
                continue
            style = "bold red" if not c.passed else ("bold cyan" if c.best else "green")
            cells.append(Text(num(c.value) + (" ★" if c.best else ""), style=style))
        cells.append(
            Text("PASS", style="bold green") if row.passed else Text("FAIL", style="bold red")
        )
        table.add_row(*cells)
    out_console = console()
    out_console.print(table)
    out_console.print("★ best of each criterion; red misses its target")
    if out is not None:
        out_console.print(f"report {out}")


@click.command("rescore")
@click.argument("run")
@click.option(
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The revised spec (criteria, bins, averaging) to judge RUN's recorded data by.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new run record as JSON.")
@click.option("--no-report", is_flag=True, help="Do not write the new run's report.")
def rescore_cmd(run: str, spec_path: Path, as_json: bool, no_report: bool) -> None:
    """Re-evaluate RUN from its spool against a revised spec, without the devices.

    The new verdict is a new run record linked to RUN (``rescored_from``). Exit code as for
    ``labctl run``: 0 pass, 1 fail, 2 usage or spec error.
    """
    from labctl.rescore import RescoreError, rescore

    s = settings()
    store = RunStore(s.store_path)
    original = _get(store, run)
    loaded, factory = load_checked_spec(spec_path)
    try:
        record = rescore(original, loaded, factory, s.data_dir)
    except RescoreError as exc:
        fail(str(exc))
    store.start(record.model_copy(update={"status": "running", "exit_code": -1}))
    store.finish(record)
    report_path = None
    if not no_report and s.report.after_run:
        report_path = make_report(s, record, s.report.format, None)
    if as_json:
        echo_json(record.model_dump_json(indent=2))
        if report_path is not None:
            click.echo(f"report {report_path}", err=True)
    else:
        out = console()
        print_record(out, record)
        out.print(f"\nrun id   {record.id}  (re-score of {record.rescored_from})")
        if report_path is not None:
            out.print(f"report   {report_path}")
    sys.exit(record.exit_code)
