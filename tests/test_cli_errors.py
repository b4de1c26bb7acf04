"""The CLI's rule for a user's mistake: one line (or typer's "Invalid value" box), exit code 2,
no traceback, and nothing left behind. Each case here once crashed later, or did nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from branchgym.cli import app
from branchgym.plots import moving_average
from branchgym.rollouts.store import TrajectoryStore
from tests.test_store import make_group

runner = CliRunner()


def flat(output: str) -> str:
    """The output on one line, with rich's box borders between wrapped lines removed."""
    return " ".join(output.split()).replace("│ │ ", "")


def train_with(tmp_path, toml: str, *flags: str):
    """``train --config c.toml`` with ``toml`` as the file, into an empty ``tmp_path/out``."""
    (tmp_path / "c.toml").write_text(toml)
    out = tmp_path / "out"
    args = ["train", "--config", str(tmp_path / "c.toml"), "--out", str(out), *flags]
    return runner.invoke(app, args), out


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[eval]\nsplit = "foo"\n', "eval.split: 'foo' is not one of"),
        (
            '[learner]\ncov_penalty = "clip_cov"\nclip_cov_bounds = ["a", "b"]\n',
            "learner.clip_cov_bounds[0]: expected float, got str 'a'",
        ),
        (
            '[learner]\ncov_penalty = "clip_cov"\nclip_cov_bounds = [1.0]\n',
            "learner.clip_cov_bounds: expected a list of 2 items, got 1",
        ),
        ("[model]\nheads = 3\n", "model.heads: model.hidden_size (64) must split into"),
        ("[rl]\nsteps = -1\n", "rl.steps: must be >= 0, got -1"),
        ('env_id = "branchgym/Nope-v0"\n', "env_id: no environment 'branchgym/Nope-v0'"),
        ('preset = "bogus"\n', "preset: unknown preset 'bogus'"),
    ],
)
def test_a_config_files_mistakes_name_the_file_and_start_nothing(tmp_path, toml, message):
    preset = [] if "preset" in toml else ["--preset", "smoke"]
    result, out = train_with(tmp_path, toml, *preset)
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "--config" in text and f"c.toml: {message}" in text
    assert not out.exists()


def test_env_kwargs_the_env_does_not_take_fail_before_the_run(tmp_path):
    result, out = train_with(tmp_path, "env_kwargs = {bogus_kw = 1}\n", "--preset", "smoke")
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "cannot make branchgym/Household-v0 with env_kwargs {'bogus_kw': 1}" in text
    assert "unexpected keyword argument 'bogus_kw'" in text
    assert not out.exists()


def test_an_env_without_an_expert_plan_is_told_before_the_run(tmp_path, monkeypatch):
    import branchgym.envs
    import tests.fragile_env  # noqa: F401  registers test/Plain-v0: its info is empty

    monkeypatch.setitem(branchgym.envs._plugin_ids, "test/Plain-v0", "tests")
    result, out = train_with(tmp_path, "", "--preset", "smoke", "--env", "test/Plain-v0")
    assert result.exit_code == 2, result.output
    assert "test/Plain-v0 gives no info['expert_plan']" in flat(result.output)
    assert "demos = 0 under [sft]" in flat(result.output)
    assert not out.exists()


def test_branching_an_env_without_snapshots_is_told_before_the_run(tmp_path, monkeypatch):
    import branchgym.envs
    import tests.fragile_env  # noqa: F401  registers test/Plain-v0: no snapshot()

    monkeypatch.setitem(branchgym.envs._plugin_ids, "test/Plain-v0", "tests")
    toml = '[sft]\ndemos = 0\n[rollout]\nalgo = "arpo"\n'
    result, out = train_with(tmp_path, toml, "--preset", "smoke", "--env", "test/Plain-v0")
    assert result.exit_code == 2, result.output
    assert "arpo branches paths from environment snapshots" in flat(result.output)
    assert not out.exists()  # not after SFT, at the first RL step


@pytest.mark.parametrize("command", [["train", "--preset", "smoke"], ["experiment", "compare"]])
def test_an_out_that_is_a_file_is_refused(tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "below"):
        result = runner.invoke(app, [*command, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert f"{afile} is a file, not a folder" in flat(result.output)
    assert afile.read_text() == "mine"


def test_an_out_dir_from_the_config_file_is_blamed_on_the_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    (tmp_path / "c.toml").write_text(f'preset = "smoke"\nout_dir = "{afile}"\n')
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2, result.output
    assert "--config" in flat(result.output) and "out_dir" in flat(result.output)
    assert "--out " not in flat(result.output)
    assert f"{afile} is a file, not a folder" in flat(result.output)


@pytest.mark.parametrize("flag", ["--ray", "--no-ray", "--chat-template"])
def test_resume_refuses_every_override(tmp_path, flag):
    result = runner.invoke(app, ["train", "--resume", "r", "--out", str(tmp_path), flag])
    assert result.exit_code == 2, result.output
    assert "a resumed run keeps its own config" in flat(result.output)


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["inspect", "r1"],
        ["show", "1"],
        ["export", "r1", "--out", "x.jsonl"],
        ["replay", "1"],
        ["view"],
        ["rescore", "r1", "--reward", "f1"],
    ],
)
def test_read_only_commands_create_no_database(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--db", "sqlite:///typo.db"])
    assert result.exit_code == 2, result.output
    assert flat(result.output) == "error: no database at typo.db"
    assert list(tmp_path.iterdir()) == []


def test_runs_on_an_empty_store_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    TrajectoryStore(url).close()
    result = runner.invoke(app, ["runs", "--db", url])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"no runs in {url}\n"


def test_inspect_of_a_step_the_run_lacks_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with TrajectoryStore(url) as store:
        store.create_run("r1", {})
        store.create_run("empty", {})
        store.write_groups("r1", [make_group(0), make_group(1)])
    result = runner.invoke(app, ["inspect", "r1", "--step", "5", "--db", url])
    assert result.exit_code == 2
    assert flat(result.output) == "error: run 'r1' has no step 5 (steps 0..1)"
    result = runner.invoke(app, ["inspect", "empty", "--db", url])
    assert result.exit_code == 2
    assert flat(result.output) == "error: run 'empty' has no groups yet"
    assert runner.invoke(app, ["inspect", "r1", "--step", "1", "--db", url]).exit_code == 0


@pytest.mark.parametrize("command", [["plot", "."], ["report", "."]])
def test_a_window_below_one_is_refused(command):
    result = runner.invoke(app, [*command, "--window", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--window'" in flat(result.output)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        moving_average([1.0], 0)  # the library's callers get a clear error too


@pytest.mark.parametrize("command", [["serve", "shop"], ["view"]])
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_outside_0_to_65535_is_refused(command, port):
    result = runner.invoke(app, [*command, "--port", port])
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in flat(result.output)


@pytest.mark.parametrize("command", ["show", "view"])
def test_a_mistyped_tokenizer_folder_fails_at_once_offline(tmp_path, command):
    # A fresh process: the hub reads HF_HUB_OFFLINE when transformers is first imported, so
    # the command must set it before its imports; online, 'policyy' (a valid repo id) would
    # be looked up on the hub, with retries, for most of a minute.
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    TrajectoryStore(url).close()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    args = [sys.executable, "-m", "branchgym.cli", command, "--tokenizer", "policyy", "--db", url]
    args += ["1"] if command == "show" else []
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    output = flat(done.stdout + done.stderr)
    assert output == "error: cannot load a tokenizer from 'policyy' (--tokenizer)"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('boom')\n", "RuntimeError('boom')"),
        ("def f(:\n", "SyntaxError("),
    ],
)
def test_an_import_module_that_raises_is_one_line(tmp_path, monkeypatch, source, message):
    name = f"plugin_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = runner.invoke(app, ["rollout", "--import", name, "--tasks", "1", "--db", db])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert text.startswith(f"error: cannot import '{name}' (--import): {message}")
    assert not (tmp_path / "r.db").exists()


def test_compare_checks_its_config_file_before_any_run(tmp_path):
    (tmp_path / "c.toml").write_text("[rl]\nsil_warmup = -1\n")
    out = tmp_path / "out"
    args = ["experiment", "compare", "--config", str(tmp_path / "c.toml"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "c.toml: rl.sil_warmup" in flat(result.output)
    assert not out.exists()
