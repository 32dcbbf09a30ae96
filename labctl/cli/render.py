"""Tables for the terminal: verdicts, runs."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

from labctl.evaluators.result import EvaluationResult
from labctl.store.records import RunRecord
from labctl.store.runs import RunSummary


def console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables into 80 columns when output is piped."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table: 3 significant decimals, '—' when missing."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.3g}"


def when(ts: float | None) -> str:
    """UTC time for tables."""
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def verdict_table(result: EvaluationResult) -> Table:
    """One row per candidate, one column per criterion (target in the header), then verdict."""
    targets: dict[str, str] = {}
    for s in result.subjects:
        for c in s.criteria:
            targets.setdefault(c.metric, c.target)
    table = Table(title=f"Verdict ({result.evaluator})", show_lines=False)
    table.add_column("candidate", no_wrap=True)
    table.add_column("model", no_wrap=True)
    for name, target in targets.items():
        table.add_column(f"{name}\n{target}", justify="right", no_wrap=True)
    table.add_column("verdict", justify="center", no_wrap=True)
    for s in result.subjects:
        cells: list[Text | str] = [s.subject, s.model]
        by = {c.metric: c for c in s.criteria}
        for name in targets:
            outcome = by.get(name)
            if outcome is None:
                cells.append("")
                continue
            cells.append(
                Text(
                    f"{fmt(outcome.value)} {'✔' if outcome.passed else '✘'}",
                    style="green" if outcome.passed else "bold red",
                )
            )
        cells.append(
            Text("PASS", style="bold green") if s.passed else Text("FAIL", style="bold red")
        )
        table.add_row(*cells)
    return table


def limitations(result: EvaluationResult) -> list[str]:
    """Every limitation the evaluator named, in words."""
    return [lim.text for s in result.subjects for lim in s.limitations]


def print_record(console: Console, rec: RunRecord) -> None:
    """A run in full: header, verdict table, limitations, data locations."""
    console.print(f"[bold]{rec.trial}[/bold] — {rec.title}")
    console.print(
        f"run {rec.id}  status [bold]{rec.status}[/bold]  rig {rec.rig}  "
        f"{when(rec.started_at)} → {when(rec.ended_at)} UTC"
    )
    if rec.message:
        console.print(f"[yellow]{rec.message}[/yellow]")
    if rec.evaluation is not None:
        console.print(verdict_table(rec.evaluation))
        lims = limitations(rec.evaluation)
        if lims:
            console.print("[bold]Limitations found[/bold]")
            for text in lims:
                console.print(f"  • {text}")
        else:
            console.print("No limitation found in the condition breakdown.")
        for g in rec.evaluation.groups:
            figures = ", ".join(
                f"{m.name} {fmt(m.value)}{' ' + m.unit if m.unit else ''}" for m in g.metrics
            )
            console.print(f"Precision across {g.group} ({len(g.members)} units): {figures}")
    c = rec.counters
    rejected = sum(c.rejected.values())
    console.print(
        f"readings {c.readings:,} (evaluated {c.readings_evaluated:,}), duplicates "
        f"{c.duplicates:,}, rejected messages {rejected:,}"
        + (f" {dict(c.rejected)}" if rejected else "")
    )
    for sink in rec.sinks:
        state = "caught up" if sink.caught_up else f"behind ({sink.last_error or 'slow'})"
        console.print(f"TSDB {sink.name}: {sink.points_written:,} points written, {state}")


def runs_table(runs: list[RunSummary]) -> Table:
    """``labctl runs list``."""
    table = Table(title="Runs")
    for col in ("run", "trial", "status", "started (UTC)", "ended (UTC)", "rig"):
        table.add_column(col)
    styles = {"passed": "green", "failed": "red", "faulted": "red", "aborted": "yellow"}
    for r in runs:
        table.add_row(
            r.id,
            r.trial,
            Text(r.status, style=styles.get(r.status, "")),
            when(r.started_at),
            when(r.ended_at),
            r.rig,
        )
    return table
