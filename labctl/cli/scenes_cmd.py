"""``labctl scenes``: synthetic street scenes with COCO ground truth."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from labctl.cli.common import fail
from labctl.cli.exit_codes import ExitCode
from labctl.scenes.conditions import ConditionsError, parse_conditions
from labctl.scenes.dataset import MAX_COUNT, MAX_SIDE, MIN_SIDE, DatasetError, make_dataset
from labctl.scenes.register import RegisterError, load_register


def _image_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` in pixels, e.g. ``1280x720``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise click.BadParameter(f"{width}x{height}: each side must be {MIN_SIDE} to {MAX_SIDE} px")
    return (width, height)


@click.group("scenes")
def scenes_group() -> None:
    """Synthetic street scenes with registered signboards and COCO ground truth."""


@scenes_group.command("make")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Dataset directory to create (must be absent or empty, unless --force).",
)
@click.option(
    "--count",
    required=True,
    type=click.IntRange(1, MAX_COUNT),
    help="Number of images.",
)
@click.option("--seed", required=True, type=click.IntRange(0), help="Seed; same seed, same files.")
@click.option(
    "--conditions",
    default="grid",
    show_default=True,
    metavar="SPEC",
    help="grid | sample | benign | inline sweeps 'blur=0,2,4;light=1,0.3' | a .json/.yaml file.",
)
@click.option(
    "--register",
    "register_path",
    type=click.Path(path_type=Path, exists=True),
    help="Reuse this register.json (or a dataset dir's) instead of generating one.",
)
@click.option(
    "--size",
    default="1280x720",
    show_default=True,
    metavar="WxH",
    callback=_image_size,
    help="Image size in pixels.",
)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes.")
@click.option("--force", is_flag=True, help="Replace an existing dataset at --out.")
def make(
    out: Path,
    count: int,
    seed: int,
    conditions: str,
    register_path: Path | None,
    size: tuple[int, int],
    jobs: int,
    force: bool,
) -> None:
    """Render COUNT street scenes with signboards into OUT (register, JPEGs, annotations.json)."""
    try:
        plan = parse_conditions(conditions)
    except ConditionsError as exc:
        fail(str(exc))
    register = None
    if register_path is not None:
        try:
            register = load_register(register_path)
        except RegisterError as exc:
            fail(str(exc))
    err = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("rendering", total=count)
        try:
            dataset = make_dataset(
                out,
                count,
                seed,
                plan,
                size,
                register,
                force=force,
                jobs=jobs,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
        except DatasetError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail(f"interrupted; {out} was left as it was", ExitCode.ABORTED)
    elapsed = time.perf_counter() - started
    gt = dataset.ground_truth
    err.print(
        f"[green]✔[/green] {out}: {len(gt.images)} images, {len(gt.annotations)} signboards "
        f"from a register of {len(dataset.register.signboards)}, "
        f"{elapsed:.1f} s ({1000 * elapsed / count:.0f} ms/image)",
        highlight=False,
    )
    grid = plan.grid_size()
    if count % grid:
        err.print(
            f"note: the grid has {grid} points; a count that is a multiple of it gives every "
            "condition value the same number of images",
            highlight=False,
        )
