"""``labctl runs``: list and show recorded runs."""

from __future__ import annotations

import json

import click

from labctl.cli.common import echo_json, fail, settings
from labctl.cli.render import console, print_record, runs_table
from labctl.store.runs import RunStore, StoreError


@click.group("runs")
def runs_group() -> None:
    """Recorded runs in this data directory."""


@runs_group.command("list")
@click.option("--trial", help="Only runs of this trial.")
@click.option("--limit", default=50, show_default=True, help="How many runs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def list_runs(trial: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    store = RunStore(settings().store_path)
    runs = store.list(trial=trial, limit=limit)
    if as_json:
        echo_json(json.dumps([r.__dict__ for r in runs], indent=2))
        return
    console().print(runs_table(runs))


@runs_group.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="The full run record as JSON.")
def show(run: str, as_json: bool) -> None:
    """Show RUN (an id or a unique prefix)."""
    store = RunStore(settings().store_path)
    try:
        rec = store.get(run)
    except StoreError as exc:
        fail(str(exc))
    if as_json:
        echo_json(rec.model_dump_json(indent=2))
        return
    print_record(console(), rec)
