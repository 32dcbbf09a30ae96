"""``labctl eval``: score data collected elsewhere with the lab's evaluators.

``labctl eval sensor`` runs the ``sensor-accuracy`` evaluator on CSV files: one reference
and one or more candidates. Exit code 0 when every candidate meets every criterion, 1 when
one does not, 2 for bad input (the message names the file and line; no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from labctl.cli.exit_codes import ExitCode
from labctl.evaluators.averaging import averaging_hours, averaging_label
from labctl.evaluators.base import Subject
from labctl.evaluators.csvdata import ALIASES, CsvError, CsvSeries, load_series
from labctl.evaluators.result import EvaluationResult, Metric, SubjectResult
from labctl.evaluators.sensor_accuracy import DEFAULT_UNIT, SensorAccuracyEvaluator
from labctl.trial.criteria import Criterion
from labctl.trial.durations import parse_duration

CHANNEL = "value"
"""The evaluated channel's name inside the evaluator: the CSV column it comes from."""


class InputError(click.ClickException):
    """Bad input: printed as ``Error: …`` on stderr, exit code 2."""

    exit_code = int(ExitCode.USAGE)


@click.group("eval")
def eval_group() -> None:
    """Score data collected elsewhere with the lab's evaluators."""


@eval_group.command("sensor")
@click.option(
    "--reference",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of the reference instrument (columns ts,value[,rh,temp,…]).",
)
@click.option(
    "--candidate",
    "candidates",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of a sensor to judge; repeat for several.",
)
@click.option(
    "--averaging",
    default="24h",
    show_default=True,
    help="Averaging the criteria apply to: a whole number of hours (1h, 24h, …).",
)
@click.option(
    "--criteria",
    "criteria_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping metric → {between|min|max}; default: EPA 2021 24-h PM2.5 targets.",
)
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    help="Condition column to break the 1-hour pairs down by; default: rh if present.",
)
@click.option(
    "--model",
    default=None,
    help="Model name shared by all candidates: enables EPA precision (SD, CV) across them.",
)
@click.option("--unit", default=DEFAULT_UNIT, show_default=True, help="Unit of the values.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def sensor_cmd(
    ctx: click.Context,
    reference: Path,
    candidates: tuple[Path, ...],
    averaging: str,
    criteria_file: Path | None,
    conditions: tuple[str, ...],
    model: str | None,
    unit: str,
    as_json: bool,
) -> None:
    """Judge candidate sensors against a collocated reference (US EPA 2021 targets).

    Prints one row per candidate and averaging (N, R², slope, intercept, RMSE, NRMSE, bias),
    pass/fail per criterion at the chosen averaging, and the conditions under which a
    candidate stops meeting its targets.
    """
    try:
        averaging_s = parse_duration(averaging)
        averaging_hours(averaging_s)
    except ValueError as exc:
        raise InputError(f"--averaging: {exc}") from None
    criteria, spec_conditions, bins = _load_criteria(criteria_file)

    series: dict[str, CsvSeries] = {}
    for path in (reference, *candidates):
        try:
            s = load_series(path, CHANNEL)
        except CsvError as exc:
            raise InputError(str(exc)) from None
        if s.key in series:
            raise InputError(
                f"{path}: two files are both called {s.key!r}; subjects are named by file stem"
            )
        series[s.key] = s
        for note in s.notes:
            click.echo(f"note: {note}", err=True)

    present = {c for s in series.values() for c in s.conditions}
    if conditions or spec_conditions is not None:
        chosen = [ALIASES.get(c, c) for c in (conditions or spec_conditions or [])]
        absent = [c for c in chosen if c not in present]
        if absent:
            raise InputError(
                f"condition {', '.join(map(repr, absent))} is not a column of any file "
                f"(columns found: {', '.join(sorted(present)) or 'none besides ts,value'})"
            )
    else:
        chosen = ["rh"] if "rh" in present else []
    subjects = [Subject(key=reference.stem, role="reference")] + [
        Subject(key=p.stem, role="dut", model=model or "") for p in candidates
    ]
    try:
        evaluator = SensorAccuracyEvaluator(
            subjects,
            CHANNEL,
            averaging_s=averaging_s,
            criteria=criteria,
            conditions=chosen,
            bins=bins,
            unit=unit,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for key, s in series.items():
        add = evaluator.add
        for ts, values in zip(s.ts, s.values, strict=True):
            add(key, ts, values)
    result = evaluator.result()

    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        _print(result, averaging_label(averaging_hours(averaging_s)), reference.stem)
    ctx.exit(int(ExitCode.PASS if result.passed else ExitCode.FAIL))


def _load_criteria(
    path: Path | None,
) -> tuple[dict[str, Criterion] | None, list[str] | None, dict[str, list[float]] | None]:
    """Criteria (and optionally conditions and bins) from a YAML file.

    The file is either a mapping of metric → criterion, or a mapping with ``criteria:`` and
    optionally ``conditions:`` and ``bins:`` as in a trial spec.
    """
    if path is None:
        return None, None, None
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a mapping like 'r2: {{min: 0.7}}'")
    conditions: list[str] | None = None
    bins: dict[str, list[float]] | None = None
    if "criteria" in data:
        extra = sorted(set(data) - {"criteria", "conditions", "bins"})
        if extra:
            raise InputError(f"{path}: unknown key {', '.join(map(repr, extra))}")
        raw_conditions = data.get("conditions")
        if raw_conditions is not None:
            if not isinstance(raw_conditions, list) or not all(
                isinstance(c, str) for c in raw_conditions
            ):
                raise InputError(f"{path}: conditions: expected a list of names")
            conditions = list(raw_conditions)
        raw_bins = data.get("bins")
        if raw_bins is not None:
            try:
                bins = {str(k): [float(e) for e in v] for k, v in dict(raw_bins).items()}
            except (TypeError, ValueError):
                raise InputError(f"{path}: bins: expected e.g. {{rh: [60, 75, 85]}}") from None
        data = data["criteria"]
        if not isinstance(data, dict) or not data:
            raise InputError(f"{path}: criteria: expected a mapping like 'r2: {{min: 0.7}}'")
    criteria: dict[str, Criterion] = {}
    for name, raw in data.items():
        try:
            criteria[str(name)] = Criterion.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                e["msg"].removeprefix("Value error, ") for e in exc.errors(include_url=False)
            )
            raise InputError(f"{path}: {name}: {problems}") from None
    return criteria, conditions, bins


def _fmt(m: Metric | None, digits: int = 3) -> str:
    if m is None or m.value is None:
        return "–"
    if m.name == "n":
        return f"{m.value:.0f}"
    return f"{m.value:.{digits}f}"


def _print(result: EvaluationResult, primary: str, reference: str) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped output has no terminal width; rich would squeeze the table into 80 columns.
        console = Console(highlight=False, width=max(console.width, 140))
    criteria = result.subjects[0].criteria if result.subjects else []
    targets = ", ".join(f"{c.metric} {c.target}" for c in criteria)
    table = Table(
        title=f"sensor-accuracy against {reference}; criteria at {primary}: {targets}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in ("candidate", "avg", "N", "R²", "slope", "intercept", "RMSE", "NRMSE %", "bias"):
        left = col in ("candidate", "avg")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    for c in criteria:
        table.add_column(c.metric, justify="center", no_wrap=True)
    for s in result.subjects:
        for label, metrics in s.by_averaging.items():
            by = {m.name: m for m in metrics}
            cells = [
                s.subject,
                label,
                _fmt(by.get("n")),
                _fmt(by.get("r2")),
                _fmt(by.get("slope")),
                _fmt(by.get("intercept")),
                _fmt(by.get("rmse")),
                _fmt(by.get("nrmse"), 1),
                _fmt(by.get("bias")),
            ]
            if label == primary:
                cells += [_verdict(o.passed) for o in s.criteria]
            else:
                cells += [""] * len(s.criteria)
            table.add_row(*cells)
    console.print(table)
    for s in result.subjects:
        console.print(f"{s.subject}: {_summary(s)}")
    for g in result.groups:
        by = {m.name: m for m in g.metrics}
        console.print(
            f"precision of {g.group} ({', '.join(g.members)}): SD {_fmt(by.get('sd'))} "
            f"{by['sd'].unit if 'sd' in by else ''}, CV {_fmt(by.get('cv'), 1)} % "
            f"over {_fmt(by.get('n'))} periods"
        )
    limitations = [lim for s in result.subjects for lim in s.limitations]
    if limitations:
        console.print("[bold]Limitations[/bold]")
        for lim in limitations:
            console.print(f"  • {lim.text}", markup=False)
    elif any(s.breakdown for s in result.subjects):
        console.print("No limitations found in the condition bins.")
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)


def _verdict(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[bold red]FAIL[/bold red]"


def _summary(s: SubjectResult) -> str:
    if s.passed:
        return "[green]PASS[/green]"
    failed = ", ".join(
        f"{o.metric} ({_value(o.value)}, target {o.target})" for o in s.criteria if not o.passed
    )
    return f"[bold red]FAIL[/bold red] — {failed}"


def _value(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"
