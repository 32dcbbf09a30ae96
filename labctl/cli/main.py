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
    from labctl.cli import eval_cmd, run_cmd, runs_cmd, spec_cmd

    cli.add_command(run_cmd.run)
    cli.add_command(runs_cmd.runs_group)
    cli.add_command(spec_cmd.spec_group)
    cli.add_command(eval_cmd.eval_group)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - only outside a run
        sys.exit(ExitCode.ABORTED)


if __name__ == "__main__":
    main()
