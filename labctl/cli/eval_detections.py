"""``labctl eval detections``: judge a COCO results file against COCO ground truth.

The figures are pycocotools' (AP@[.5:.95], AP50, AP75, AR@100, …, computed by the lab's own
implementation, equal to pycocotools to rounding), the operating point of all detections
given (precision, recall, F1 and identification accuracy at IoU ≥ 0.5), bootstrap 95 %
intervals and a breakdown by the images' scene conditions. Latency is not measured offline.

Default criteria (without ``--criteria``): AP50 ≥ 0.5. Exit code 0 when every criterion holds,
1 when one does not, 2 for bad input (the message names the file and the entry).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from labctl.cli.eval_cmd import InputError, _load_criteria
from labctl.cli.exit_codes import ExitCode
from labctl.evaluators.breakdown import DEFAULT_EDGES
from labctl.evaluators.coco_data import CocoError, load_ground_truth, load_results
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator
from labctl.evaluators.result import EvaluationResult, SubjectResult


@click.command("detections")
@click.option(
    "--gt",
    "gt_path",
    required=True,
    type=click.Path(path_type=Path),
    help="COCO ground truth: annotations.json, or a `labctl scenes make` directory.",
)
@click.option(
    "--dt",
    "dt_path",
    required=True,
    type=click.Path(path_type=Path),
    help='COCO results: [{"image_id", "category_id", "bbox": [x, y, w, h], "score", "ref"?}].',
)
@click.option(
    "--criteria",
    "criteria_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping metric → {between|min|max} (or criteria:/conditions:/bins: as in a "
    "trial spec); default: ap50 ≥ 0.5.",
)
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    help="Image condition to break down by (light, blur, size, …); default: every condition "
    "the images carry that has default bins.",
)
@click.option(
    "--iou",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="IoU threshold of the operating point (precision, recall, F1, identification).",
)
@click.option(
    "--bootstrap",
    default=200,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Resamples of the images for the 95 % intervals of AP50 and recall (0: none).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def detections_cmd(
    ctx: click.Context,
    gt_path: Path,
    dt_path: Path,
    criteria_file: Path | None,
    conditions: tuple[str, ...],
    iou: float,
    bootstrap: int,
    seed: int,
    as_json: bool,
) -> None:
    """Judge detections (a COCO results file) against COCO ground truth.

    Prints AP, AP50, AP75, AR@100, precision, recall, F1 and identification accuracy with
    95 % intervals, pass/fail per criterion, a breakdown by image condition and the
    conditions under which a criterion stops holding.
    """
    try:
        gt = load_ground_truth(gt_path)
        dt = load_results(dt_path, gt)
    except CocoError as exc:
        raise InputError(str(exc)) from None
    criteria, spec_conditions, bins = _load_criteria(criteria_file)
    present = {k for c in gt.conditions for k in c}
    chosen = list(conditions or spec_conditions or [])
    absent = [c for c in chosen if c not in present]
    if absent:
        raise InputError(
            f"condition {', '.join(map(repr, absent))} is not a condition of any image in "
            f"{gt.source} (found: {', '.join(sorted(present)) or 'none'})"
        )
    if not chosen:
        chosen = [c for c in DEFAULT_EDGES if c in present]
    try:
        evaluator = DetectionAccuracyEvaluator(
            gt,
            criteria=criteria,
            conditions=chosen,
            bins=bins,
            iou=iou,
            bootstrap=bootstrap,
            seed=seed,
        )
        result = evaluator.score_results(dt_path.stem, dt)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        _print(result, gt_path)
    ctx.exit(int(ExitCode.PASS if result.passed else ExitCode.FAIL))


ROWS: tuple[tuple[str, str], ...] = (
    ("ap", "AP@[.5:.95]"),
    ("ap50", "AP50"),
    ("ap75", "AP75"),
    ("ar100", "AR@100"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("id_accuracy", "identification accuracy"),
    ("frames", "images"),
    ("gt_objects", "objects (not crowd)"),
    ("detections", "detections"),
)
BIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("AP50", "ap50"),
    ("recall", "recall"),
    ("precision", "precision"),
    ("id acc", "id_accuracy"),
)
COUNTS = frozenset({"frames", "gt_objects", "detections"})


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _print(result: EvaluationResult, gt_path: Path) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 120))
    for s in result.subjects:
        console.print(_metrics(s, gt_path))
        console.print(f"{s.subject}: {_summary(s)}")
        if s.breakdown:
            console.print(_bins(s))
    limitations = [lim for s in result.subjects for lim in s.limitations]
    if limitations:
        console.print("[bold]Limitations[/bold]")
        for lim in limitations:
            console.print(f"  • {lim.text}", markup=False)
    elif any(s.breakdown for s in result.subjects):
        console.print("No limitations found in the condition bins.")
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)


def _metrics(s: SubjectResult, gt_path: Path) -> Table:
    table = Table(
        title=f"detection-accuracy: {s.subject} against {gt_path}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("95 % CI", justify="right", no_wrap=True)
    table.add_column("criterion", justify="left", no_wrap=True)
    by = {m.name: m for m in s.metrics}
    outcomes = {o.metric: o for o in s.criteria}
    names = [(k, label) for k, label in ROWS] + [(o, o) for o in outcomes if o not in dict(ROWS)]
    for key, label in names:
        m = by.get(key)
        o = outcomes.get(key)
        value = None if m is None else m.value
        ci = "" if m is None or m.ci95 is None else f"{m.ci95[0]:.3f} – {m.ci95[1]:.3f}"
        verdict = "" if o is None else f"{o.target} {_verdict(o.passed)}"
        table.add_row(label, _num(value, 0 if key in COUNTS else 3), ci, verdict)
    return table


def _bins(s: SubjectResult) -> Table:
    table = Table(title=f"{s.subject} by condition", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("bin", no_wrap=True)
    table.add_column("images", justify="right")
    table.add_column("objects", justify="right")
    for header, _ in BIN_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("fails", no_wrap=True)
    for b in s.breakdown:
        images = b.metrics.get("images")
        verdict = ", ".join(b.failed) if b.failed else ("" if b.n >= 10 else "(too few to judge)")
        table.add_row(
            b.label,
            _num(images, 0),
            str(b.n),
            *[_num(b.metrics.get(key)) for _, key in BIN_COLUMNS],
            f"[red]{verdict}[/red]" if b.failed else verdict,
        )
    return table


def _verdict(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[bold red]FAIL[/bold red]"


def _summary(s: SubjectResult) -> str:
    if s.passed:
        return "[green]PASS[/green]"
    failed = ", ".join(
        f"{o.metric} ({_num(o.value)}, target {o.target})" for o in s.criteria if not o.passed
    )
    return f"[bold red]FAIL[/bold red] — {failed}"
