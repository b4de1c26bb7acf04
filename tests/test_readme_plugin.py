"""The README's "Plug in your own environment" example, run exactly as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def block(kind: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- plugin-example:{kind} -->\n```{kind}\n(.*?)```", text, re.S)
    assert match, f"README lost its plugin-example:{kind} block"
    return match.group(1)


@pytest.mark.slow
def test_readme_plugin_example_runs(tmp_path):
    (tmp_path / "my_counter.py").write_text(block("python"))
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block("bash")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"trees": 2' in out.stdout and '"trajectories_per_tree": 8.0' in out.stdout
    assert out.stdout.count("group ") == 2  # both trees drawn by `branchgym inspect`
    assert "prompt The counter shows 0. Make it show" in out.stdout
    assert "R=" in out.stdout  # every leaf carries its return


def test_branching_a_plain_env_names_the_methods_to_add(tmp_path):
    plain = (
        block("python")
        .replace("def snapshot", "def _snapshot")
        .replace("def restore", "def _restore")
    )
    (tmp_path / "my_counter.py").write_text(plain)
    cmd = "branchgym rollout --import my_counter --env my/Counter-v0 --algo arpo --n 2 --tasks 1"
    out = subprocess.run(
        ["bash", "-c", cmd + " --db sqlite:///c.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "snapshot()/restore()" in out.stdout + out.stderr
