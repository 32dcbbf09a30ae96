"""The ``labctl`` command line."""

from __future__ import annotations

import sys

import click

from labctl import __version__
from labctl.cli.exit_codes import ExitCode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Drive a proof-of-concept testbed: rigs, trials, evaluators and metrics."""


def _register() -> None:
    from labctl.cli import devices_cmd, eval_cmd, run_cmd, runs_cmd, serve_cmd, spec_cmd

    cli.add_command(run_cmd.run)
    cli.add_command(serve_cmd.serve)
    cli.add_command(devices_cmd.devices_group)
    cli.add_command(runs_cmd.runs_group)
    cli.add_command(spec_cmd.spec_group)
    cli.add_command(eval_cmd.eval_group)

    from labctl.cli import eval_detections

    eval_cmd.eval_group.add_command(eval_detections.detections_cmd)

    from labctl.cli import serial_cmd

    cli.add_command(serial_cmd.serial_group)

    from labctl.cli import broker_cmd, vendor_cmd

    cli.add_command(broker_cmd.broker_group)
    cli.add_command(vendor_cmd.vendor_group)

    from labctl.cli import vendor_check_cmd

    vendor_cmd.vendor_group.add_command(vendor_check_cmd.check)

    from labctl.cli import report_cmd

    cli.add_command(report_cmd.report)
    cli.add_command(report_cmd.compare)
    cli.add_command(report_cmd.rescore_cmd)

    from labctl.cli import scenes_cmd

    cli.add_command(scenes_cmd.scenes_group)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - only outside a run
        sys.exit(ExitCode.ABORTED)


if __name__ == "__main__":
    main()
