"""PythonTool-v0: seeded problems, answer matching, tool calls, errors as observations, the
reference solver's reward, the checker and snapshots. (The sandbox's escape tests are in
test_sandbox.py.)"""

from __future__ import annotations

import string
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.errors import ToolError
from branchgym.envs.pythontool import DEFAULT_LIMITS, answer_match, make_problem
from branchgym.envs.pythontool.problems import GENERATORS
from branchgym.tasks.suite import task_refs

ENV_ID = "branchgym/PythonTool-v0"


def make(**kw):
    return branchgym.envs.make(ENV_ID, **kw)


def test_problems_are_seeded_and_cover_every_kind():
    problems = [make_problem(seed) for seed in range(300)]
    assert problems == [make_problem(seed) for seed in range(300)]
    assert len({p.text for p in problems}) == 300
    assert len({p.kind for p in problems}) == len(GENERATORS)
    for p in problems:
        assert set(p.text + p.solution) <= set(string.printable)
        assert "print(" in p.solution and len(p.solution) < 1000


@pytest.mark.parametrize(
    ("prediction", "gold", "score"),
    [
        ("42", "42", 1.0),
        ("42.0", "42", 1.0),  # numbers compare by value
        ("+42.000", "42", 1.0),
        ("1,234,567", "1234567", 1.0),  # thousands separators are ignored
        ("$1,234.50", "1234.50", 1.0),
        ("1234.5", "1234.50", 1.0),
        ("1e3", "1000", 1.0),
        ("1234.51", "1234.50", 0.0),  # cents count
        ("41", "42", 0.0),
        ("forty-two", "42", 0.0),
        ("The answer", "answer", 1.0),  # not numbers: SQuAD exact match
    ],
)
def test_answer_match(prediction, gold, score):
    assert answer_match(prediction, gold) == score


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ("", "Malformed"),
        ("print(1)", "Malformed"),
        ("<python></python>", "Empty"),
        ("<python>print(1)</answer>", "Unbalanced"),
        ("<search>x</search>", "Unknown tool"),
        ("<python>1</python><answer>2</answer>", "One tool call per turn"),
        ("<result>3</result>", "written by the environment"),
    ],
)
def test_bad_calls_are_observations_not_exceptions(action, problem):
    env = make()
    env.reset(seed=1)
    obs, reward, terminated, _truncated, info = env.step(action)
    assert problem in obs and reward == 0.0 and not terminated
    assert info["valid_action"] is False and info["tool_call"] is False


def _solve(task) -> float:
    env = make()
    _obs, info = env.reset(options={"task": task})
    total = 0.0
    for _ in range(4):
        _obs, reward, terminated, _, info = env.step(info["expert_plan"][0])
        total += reward
        if terminated:
            return total * info["won"]
    return 0.0


def test_reference_solver_reaches_full_reward():
    # 200 held-out problems, each run through the sandbox; four at a time (each is a process).
    with ThreadPoolExecutor(4) as pool:
        rewards = list(pool.map(_solve, task_refs(ENV_ID, "seen", 200)))
    assert sum(rewards) / len(rewards) >= 0.95
    assert sum(rewards) == 200  # measured: every one, so a drop means a broken generator


def test_expert_plan_runs_the_program_until_the_answer_is_printed():
    env = make()
    _obs, info = env.reset(seed=7)
    program, answer = info["expert_plan"]
    obs, _, _, _, info = env.step("<python>print('not yet')</python>")
    assert info["expert_plan"] == [program, answer] and info["tool_call"] is True
    obs, reward, terminated, _, info = env.step(program)
    assert answer[len("<answer>") : -len("</answer>")] in obs and info["tool_call"] is True
    assert info["expert_plan"] == [answer] and reward == 0.0 and not terminated


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("print('partial')\n1 / 0", "partial\nError: ZeroDivisionError: division by zero"),
        ("def f(:\n    pass", "Error: SyntaxError"),
        ("import time\ntime.sleep(30)", "Error: Timed out after 1 s."),
        ("while True:\n    pass", "Error: "),  # CPU or wall clock, whichever comes first
        ("x = bytearray(10**10)", "Error: MemoryError (memory limit 256 MiB)"),
        ("open('/etc/passwd').read()", "Error: PermissionError: sandbox: open is not allowed"),
        ("import sys\nsys.exit(3)", "Error: Exited with status 3."),
        ("x = 6 * 7", "(no output: use print())"),
        ("print('\\u00e9\\x00')", "\\xe9\\x00"),  # kept printable for the observation space
    ],
)
def test_code_errors_come_back_as_observations(code, expected):
    limits = replace(DEFAULT_LIMITS, wall_seconds=1.0, cpu_seconds=1, memory_bytes=256 * 2**20)
    env = make(limits=limits)
    env.reset(seed=3)
    obs, reward, terminated, _, info = env.step(f"<python>{code}</python>")
    assert obs.startswith("<result> ") and obs.endswith(" </result>")
    assert expected in obs and reward == 0.0 and not terminated
    assert info["valid_action"] is True and info["tool_call"] is True
    assert env.observation_space.contains(obs)


def test_long_output_is_cut_for_the_observation():
    env = make(max_output_chars=100)
    env.reset(seed=3)
    obs, *_ = env.step("<python>print('x' * 10**6)</python>")
    assert "[output truncated]" in obs and len(obs) < 200


def test_a_sandbox_that_cannot_start_raises_tool_error(monkeypatch):
    env = make()
    env.reset(seed=3)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(ToolError):
        env.step("<python>print(1)</python>")


def test_wrong_answers_score_zero_and_tags_can_be_renamed():
    env = make(tags=("py", "final", "out"))
    assert env.unwrapped.stop_strings == ("</py>", "</final>")
    _obs, info = env.reset(seed=11)
    assert info["expert_plan"][0].startswith("<py>") and info["expert_plan"][-1].startswith(
        "<final>"
    )
    obs, _, _, _, _ = env.step("<py>print(2 + 2)</py>")
    assert obs == "<out> 4 </out>"
    _, reward, terminated, _, info = env.step("<final>-1</final>")
    assert terminated and reward == 0.0 and not info["won"]


def test_check_env_and_snapshot_restore_equivalence():
    env = make()
    check_env(env.unwrapped, skip_render_check=True)
    _obs, info = env.reset(seed=5)
    env.step("<python>print(1 + 1)</python>")
    snap = env.unwrapped.snapshot()
    actions = (info["expert_plan"][0], "<python>print(3 * 3)</python>", info["expert_plan"][-1])
    after = [env.step(a) for a in actions]
    other = make()
    other.reset(seed=99)
    other.unwrapped.restore(snap)
    again = [other.step(a) for a in actions]
    assert [(o, r, t, i["expert_plan"]) for o, r, t, _, i in after] == [
        (o, r, t, i["expert_plan"]) for o, r, t, _, i in again
    ]
    assert after[-1][1] == 1.0
