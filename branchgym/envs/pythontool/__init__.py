"""``branchgym/PythonTool-v0``: computation problems, a Python tool and its sandbox."""

from branchgym.envs.pythontool.env import PythonToolEnv, answer_match
from branchgym.envs.pythontool.problems import Problem, make_problem
from branchgym.envs.pythontool.sandbox import (
    DEFAULT_LIMITS,
    RunResult,
    SandboxError,
    SandboxLimits,
    run_python,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Problem",
    "PythonToolEnv",
    "RunResult",
    "SandboxError",
    "SandboxLimits",
    "answer_match",
    "make_problem",
    "run_python",
]
