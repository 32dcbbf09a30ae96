"""``labctl spec check``: validate trial specs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from labctl.cli.common import evaluators
from labctl.cli.exit_codes import ExitCode
from labctl.trial.checks import check_spec
from labctl.trial.spec import SpecError


@click.group("spec")
def spec_group() -> None:
    """Work with trial specs."""


@spec_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(files: tuple[Path, ...]) -> None:
    """Validate FILES; errors name the file, line and field."""
    registry = evaluators()
    out, err = Console(), Console(stderr=True)
    bad = 0
    for path in files:
        try:
            loaded = check_spec(path, registry)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                err.print(f"[red]✘[/red] {problem}", highlight=False)
            continue
        out.print(
            f"[green]✔[/green] {path}: {loaded.spec.trial} ({loaded.spec.kind})", highlight=False
        )
    raise SystemExit(int(ExitCode.USAGE) if bad else 0)
