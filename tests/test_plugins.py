"""A third-party environment plugs in through the ``branchgym.envs`` entry-point group.

The test writes a tiny installed distribution (a ``.dist-info`` folder with an
``entry_points.txt``, exactly what pip leaves behind) and a module beside it, puts the folder
on ``sys.path``, and checks that ``branchgym.envs.make`` finds the environment with no edit to
branchgym, as the README's "Plugging in an environment" section promises.
"""

from __future__ import annotations

import sys
import textwrap

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs

MODULE = """
import string
import gymnasium as gym

ACTIONS = gym.spaces.Text(max_length=64, charset=string.printable)
OBSERVATIONS = gym.spaces.Text(max_length=128, charset=string.printable)


class Echo(gym.Env):
    observation_space = OBSERVATIONS
    action_space = ACTIONS

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "say hi", {"instruction": "say hi"}

    def step(self, action):
        won = action.strip() == "hi"
        return f"you said {action.strip()}", float(won), True, False, {"won": won}


def register():
    gym.register("thirdparty/Echo-v0", entry_point="thirdparty_echo:Echo")
"""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    (tmp_path / "thirdparty_echo.py").write_text(textwrap.dedent(MODULE))
    dist = tmp_path / "thirdparty_echo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[branchgym.envs]\necho = thirdparty_echo:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(branchgym.envs, "_plugins_loaded", False)
    yield
    gym.registry.pop("thirdparty/Echo-v0", None)
    sys.modules.pop("thirdparty_echo", None)


def test_a_third_party_env_is_found_through_its_entry_point(installed_plugin):
    env = branchgym.envs.make("thirdparty/Echo-v0")
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs == "say hi"
    assert env.step("hi")[1] == 1.0


def test_branchgym_envs_lists_builtins_and_the_plugin(installed_plugin):
    from typer.testing import CliRunner

    from branchgym.cli import app

    result = CliRunner().invoke(app, ["envs"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "[plugin: echo]" in lines["thirdparty/Echo-v0"]
    assert "search the corpus" in lines["branchgym/SearchQA-v0"]
    assert set(lines) >= set(branchgym.envs._BUILTIN)


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch, installed_plugin):
    (tmp_path / "thirdparty_broken.py").write_text(  # registers one id, then fails
        "import gymnasium as gym\n"
        "def register():\n"
        "    gym.register('thirdparty/Half-v0', entry_point='thirdparty_echo:Echo')\n"
        "    raise ImportError(\"optional engine 'foo' is not installed\")\n"
    )
    dist = tmp_path / "thirdparty_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[branchgym.envs]\nbroken = thirdparty_broken:register\n"
    )
    monkeypatch.setattr(branchgym.envs, "_broken", {})
    yield
    gym.registry.pop("thirdparty/Half-v0", None)
    sys.modules.pop("thirdparty_broken", None)


def test_a_broken_plugin_is_skipped_and_named_not_fatal(broken_plugin):
    from typer.testing import CliRunner

    from branchgym.cli import app

    with pytest.warns(UserWarning, match="plugin 'broken'.*failed to load and is skipped"):
        env = branchgym.envs.make("thirdparty/Echo-v0")  # the healthy plugin still loads
    assert env.reset(seed=0)[0] == "say hi"
    assert branchgym.envs.make("branchgym/SearchQA-v0").reset(seed=0)[0].startswith("Question")
    with pytest.raises(gym.error.NameNotFound, match="plugin 'broken' failed to load: Import"):
        branchgym.envs.make("foo/Engine-v0")
    with pytest.raises(gym.error.NameNotFound):  # a skipped plugin leaves no half of itself
        branchgym.envs.make("thirdparty/Half-v0")
    branchgym.envs._plugins_loaded = False  # `branchgym envs` in a fresh process
    branchgym.envs._broken.clear()
    result = CliRunner().invoke(app, ["envs"])
    assert result.exit_code == 0, result.output
    assert "thirdparty/Half-v0" not in result.output
    assert result.output.count("optional engine 'foo'") == 1, result.output  # said once
    assert "plugin 'broken' failed to load: ImportError: optional engine 'foo'" in result.output
