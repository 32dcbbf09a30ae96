"""Helpers shared by CLI commands: settings, errors in words, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from labctl.cli.exit_codes import ExitCode
from labctl.config import ConfigError, Settings, load_settings
from labctl.evaluators.base import EvaluatorFactory, evaluator_registry
from labctl.plugins import PluginError, PluginRegistry
from labctl.trial.checks import check_spec
from labctl.trial.spec import LoadedSpec, SpecError


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise SystemExit(int(code))


def settings() -> Settings:
    """Settings from file and environment, or exit 2 with the problem in words."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc))


def evaluators() -> PluginRegistry[type[EvaluatorFactory]]:
    """Installed evaluators, or exit 2."""
    try:
        return evaluator_registry()
    except PluginError as exc:
        fail(str(exc))


def load_checked_spec(path: Path) -> tuple[LoadedSpec, type[EvaluatorFactory]]:
    """A validated spec and its evaluator, or exit 2."""
    registry = evaluators()
    try:
        loaded = check_spec(path, registry)
    except SpecError as exc:
        fail(str(exc))
    return loaded, registry.get(loaded.spec.kind)


def echo_json(text: str) -> None:
    """JSON on stdout, nothing else."""
    click.echo(text)
