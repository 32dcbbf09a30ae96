"""``labctl run``: run a trial on the configured rig."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from labctl.cli.common import echo_json, load_checked_spec, settings
from labctl.cli.render import console, print_record
from labctl.store.records import RunRecord
from labctl.store.runs import RunStore
from labctl.trial.durations import format_duration
from labctl.trial.runner import Progress as RunProgress
from labctl.trial.runner import TrialRunner


@click.command("run")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON at the end.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(spec: Path, as_json: bool, quiet: bool) -> None:
    """Run the trial in SPEC against the configured rig.

    Exit code: 0 every criterion holds, 1 the verdict is fail, 2 usage or spec error,
    3 rig fault, 130 stopped with Ctrl-C (the run is recorded as aborted).
    """
    s = settings()
    loaded, factory = load_checked_spec(spec)
    store = RunStore(s.store_path)
    err = Console(stderr=True)
    show_progress = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.fields[phase]:<10}"),
        BarColumn(),
        TextColumn("{task.fields[device]}"),
        TextColumn("{task.fields[rate]} readings/s"),
        TextColumn("rejected {task.fields[rejected]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show_progress,
    )
    task: TaskID = progress.add_task(
        "trial", total=1.0, phase="starting", device="", rate="0", rejected=0
    )

    def on_progress(p: RunProgress) -> None:
        progress.update(
            task,
            completed=p.device_elapsed_s / p.device_total_s if p.device_total_s else 0,
            phase=p.phase,
            device=f"{format_duration(p.device_elapsed_s) if p.device_elapsed_s else '0s'} / "
            f"{format_duration(p.device_total_s)} device time",
            rate=f"{p.readings_per_s:,.0f}",
            rejected=p.rejected,
        )

    def on_event(text: str) -> None:
        if not quiet:
            progress.console.print(f"[dim]· {text}[/dim]", highlight=False)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runner = TrialRunner(
        s,
        loaded,
        factory,
        store,
        on_progress=on_progress,
        on_event=on_event,
        preflight_timeout_s=s.rig.preflight_timeout_s,
    )
    with progress:
        record = asyncio.run(_run_with_signals(runner, err))
    out = console()
    if as_json:
        echo_json(record.model_dump_json(indent=2))
    else:
        print_record(out, record)
        out.print(f"\nrun id   {record.id}")
        out.print(f"spool    {record.spool.directory if record.spool else s.spool_dir}")
        out.print(f"run data {runner.run_dir}")
        out.print(f"records  {s.store_path}  (labctl runs show {record.id})")
    sys.exit(record.exit_code)


async def _run_with_signals(runner: TrialRunner, err: Console) -> RunRecord:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            err.print(
                "[yellow]stopping: tearing down the rig and recording the run "
                "(Ctrl-C again to force)[/yellow]"
            )
            runner.abort.set()
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await runner.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
