"""Every registered environment passes gymnasium's ``check_env``, from one list.

Each environment's own test file checks it in depth; this file makes sure none is missed: a new
id in the registry without a way to build it here fails ``test_every_id_is_covered``. Engines
that need a game file get one made during the run, exactly as their own tests make it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs


def _textworld(tmp: Path) -> dict:
    pytest.importorskip("textworld")
    from test_textworld import tw_make

    return {"game_file": tw_make(tmp, 1234)}


def _alfworld(tmp: Path) -> dict:
    pytest.importorskip("alfworld")
    from test_alfworld import write_game

    return {"game_file": write_game(tmp / "game")}


def _scienceworld(tmp: Path) -> dict:
    pytest.importorskip("scienceworld")
    return {"task_names": ("find-animal",)}


# env id -> what it needs to be made here (a tmp folder in, kwargs out)
NEEDS: dict[str, Callable[[Path], dict]] = {
    "branchgym/Household-v0": lambda tmp: {},
    "branchgym/Household-v1": lambda tmp: {},
    "branchgym/SearchQA-v0": lambda tmp: {},
    "branchgym/PythonTool-v0": lambda tmp: {},
    "branchgym/WebShop-v0": lambda tmp: {},
    "branchgym/TextWorld-v0": _textworld,
    "branchgym/ALFWorld-v0": _alfworld,
    "branchgym/ScienceWorld-v0": _scienceworld,
}


def test_every_id_is_covered():
    assert set(branchgym.envs.env_ids()) == set(NEEDS)


@pytest.mark.parametrize("env_id", sorted(NEEDS))
def test_check_env(env_id, tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "alfworld_data"))
    env = branchgym.envs.make(env_id, **NEEDS[env_id](tmp_path))
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, info = env.reset(seed=3)
        assert isinstance(obs, str) and obs and isinstance(info.get("instruction"), str)
    finally:
        env.close()
