"""Finds and runs the benchmarks in the source checkout's ``benchmarks/`` folder.

A benchmark is a module ``benchmarks/<name>.py`` with a ``main(**options) -> dict`` whose
result is JSON. ``branchgym bench NAME --set key=value`` calls it with typed options (the types
come from ``main``'s defaults).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


class BenchError(ValueError):
    """An unknown benchmark or a bad option."""


def available() -> list[str]:
    """Benchmark names as typed on the command line: ``env_step.py`` is ``env-step``."""
    return sorted(
        p.stem.replace("_", "-") for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_")
    )


def _load(name: str):
    path = BENCH_DIR / f"{name.replace('-', '_')}.py"
    if not path.is_file():
        have = ", ".join(available()) or f"none (no {BENCH_DIR}: benchmarks ship with the source)"
        raise BenchError(f"no benchmark {name!r}; available: {have}")
    spec = importlib.util.spec_from_file_location(f"branchgym_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(main, pairs: Sequence[str]) -> dict:
    params = inspect.signature(main).parameters
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in params:
            raise BenchError(f"bad --set {pair!r}; options are {', '.join(params)}")
        try:
            options[key] = _parse(raw, params[key].default)
        except ValueError as exc:
            raise BenchError(f"--set {key}: {exc}") from exc
    return options


def _parse(raw: str, default):
    """``raw`` as the type of ``default``; a ``None`` default (chosen at run time) takes a
    boolean, an integer, a float or else the string."""
    if isinstance(default, bool) or (default is None and raw.lower() in ("true", "false")):
        return raw.lower() in ("1", "true", "yes")
    if default is not None:
        return type(default)(raw)
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def run_benchmark(name: str, pairs: Sequence[str] = ()) -> dict:
    module = _load(name)
    return module.main(**_options(module.main, pairs))
