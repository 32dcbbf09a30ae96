"""Python trial files: a ``SPEC`` mapping (the YAML fields) and ``async def run(trial)``.

Trial files are trusted lab code, like the YAML specs next to them; nothing a vendor sends is
ever executed. The file is imported under a private module name, so two trials with the same
file name never share state.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import traceback
from pathlib import Path

from pydantic import ValidationError

from labctl.trial.spec import LoadedSpec, SpecError, TrialSpec


def load_python_trial(path: Path, text: str, known_kinds: set[str] | None) -> LoadedSpec:
    """Import a Python trial file and validate its ``SPEC``; raise :class:`SpecError`."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    module_name = f"labctl_trial_{digest[:16]}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(path, [f"{path}: cannot be imported as a Python file"])
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = frames[-1].lineno if frames else getattr(exc, "lineno", 1)
        raise SpecError(path, [f"{path}:{line}: {type(exc).__name__}: {exc}"]) from exc
    data = getattr(module, "SPEC", None)
    if not isinstance(data, dict):
        raise SpecError(path, [f"{path}:1: a Python trial defines SPEC = {{'trial': …, …}}"])
    run = getattr(module, "run", None)
    if run is None or not inspect.iscoroutinefunction(run):
        raise SpecError(path, [f"{path}:1: a Python trial defines 'async def run(trial)'"])
    try:
        spec = TrialSpec.model_validate(data, context={"scripted": True})
    except ValidationError as exc:
        problems = [
            f"{path}: SPEC.{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise SpecError(path, problems) from exc
    if known_kinds is not None and spec.kind not in known_kinds:
        kinds = ", ".join(sorted(known_kinds)) or "none installed"
        raise SpecError(path, [f"{path}: SPEC.kind: no evaluator called {spec.kind!r} ({kinds})"])
    return LoadedSpec(spec=spec, path=path, sha256=digest, text=text, script=run)
