"""``labctl run``: run a trial on the configured rig."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from labctl.cli.common import echo_json, fail, load_checked_spec, settings
from labctl.cli.render import console, print_record
from labctl.config import Settings
from labctl.serve.discovery import ServeInfo, read_info
from labctl.store.records import RunRecord
from labctl.store.runs import RunStore
from labctl.trial.durations import format_duration
from labctl.trial.runner import Progress as RunProgress
from labctl.trial.runner import TrialRunner


@click.command("run")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON at the end.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="When a device is reserved by another run, refuse instead of queueing.",
)
def run(spec: Path, as_json: bool, quiet: bool, no_wait: bool) -> None:
    """Run the trial in SPEC against the configured rig.

    Exit code: 0 every criterion holds, 1 the verdict is fail, 2 usage or spec error,
    3 rig fault, 130 stopped with Ctrl-C (the run is recorded as aborted).
    """
    s = settings()
    loaded, factory = load_checked_spec(spec)
    err = Console(stderr=True)
    served = read_info(s.data_dir)
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
    if served is not None:
        on_event(f"running through the controller at {served.url}")
        with progress:
            record = _run_on_controller(served, spec, not no_wait, on_progress, on_event)
        _finish(record, as_json, s.spool_dir, s.data_dir / "runs" / record.id, s.store_path, s)
    store = RunStore(s.store_path)
    runner = TrialRunner(
        s,
        loaded,
        factory,
        store,
        on_progress=on_progress,
        on_event=on_event,
        preflight_timeout_s=s.rig.preflight_timeout_s,
        wait=not no_wait,
        on_prompt=_operator_prompt(progress) if sys.stdin.isatty() else None,
    )
    with progress:
        record = asyncio.run(_run_with_signals(runner, err))
    _finish(record, as_json, s.spool_dir, runner.run_dir, s.store_path, s)


def _finish(
    record: RunRecord,
    as_json: bool,
    spool: Path,
    run_dir: Path,
    store: Path,
    s: Settings | None = None,
) -> None:
    out = console()
    # The verdict first: the report (a few seconds of plotting) comes after it.
    if as_json:
        echo_json(record.model_dump_json(indent=2))
    else:
        print_record(out, record)
        out.print(f"\nrun id   {record.id}")
        out.print(f"spool    {record.spool.directory if record.spool else spool}")
        out.print(f"run data {run_dir}")
        out.print(f"records  {store}  (labctl runs show {record.id})")
    report = _after_run_report(record, s) if s is not None else None
    if report is not None:
        if as_json:
            click.echo(f"report {report}", err=True)
        else:
            out.print(f"report   {report}")
    sys.exit(record.exit_code)


def _after_run_report(record: RunRecord, s: Settings) -> Path | None:
    """Write the run's report when configured (``report.after_run``); a report that cannot
    be written is a warning, never a change of the run's verdict or exit code."""
    if not s.report.after_run:
        return None
    from labctl.report.api import write_report

    try:
        return write_report(
            record,
            s.report.format,
            chromium=s.report.chromium,
            pdf_timeout_s=s.report.pdf_timeout_s,
        ).path
    except Exception as exc:  # the run is recorded; a report bug must not hide its verdict
        logging.getLogger(__name__).debug("report of %s failed", record.id, exc_info=True)
        Console(stderr=True).print(
            f"[yellow]warning: no report written: {exc} "
            f"(labctl report {record.id} --format html works without Chromium)[/yellow]",
            highlight=False,
        )
        return None


def _run_on_controller(
    info: ServeInfo,
    spec: Path,
    wait: bool,
    on_progress: Callable[[RunProgress], None],
    on_event: Callable[[str], None],
) -> RunRecord:
    """Submit the run to `labctl serve` and follow it; Ctrl-C asks the controller to abort."""
    with info.client(timeout=30) as c:
        r = c.post("/api/runs", json={"spec_path": str(spec.resolve()), "wait": wait})
        if r.status_code == 400:
            fail(str(r.json().get("detail", r.text)))
        r.raise_for_status()
        run_id = r.json()["id"]
        seen, aborted = 0, False
        while True:
            try:
                st = c.get(f"/api/runs/{run_id}", params={"since": seen, "wait_s": 0.5})
                st.raise_for_status()
            except KeyboardInterrupt:
                if aborted:
                    raise
                aborted = True
                on_event("stopping: asking the controller to abort the run")
                c.post(f"/api/runs/{run_id}/abort")
                continue
            body = st.json()
            for text in body["events"]:
                on_event(text)
            seen += len(body["events"])
            on_progress(
                RunProgress(
                    phase=body["phase"],
                    device_elapsed_s=body["device_elapsed_s"],
                    device_total_s=body["device_total_s"],
                    readings=body["readings"],
                    readings_per_s=body["readings_per_s"],
                    rejected=body["rejected"],
                    duplicates=0,
                )
            )
            if body["done"]:
                return RunRecord.model_validate(body["record"])


def _operator_prompt(progress: Progress) -> Callable[[str, float | None], Awaitable[None]]:
    """Ask the operator on the terminal; the answer is read in a thread (never on the loop)."""

    async def ask(text: str, timeout: float | None) -> None:  # noqa: ASYNC109
        progress.stop()
        try:
            question = f"{text} — press Enter when done"
            read = asyncio.to_thread(click.prompt, question, default="", show_default=False)
            await (asyncio.wait_for(read, timeout) if timeout else read)
        finally:
            progress.start()

    return ask


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
