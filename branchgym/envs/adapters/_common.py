"""What the three engine adapters share: lazy engine imports, text spaces, actions and seeds.

The engines (TextWorld, ScienceWorld, ALFWorld) are optional, heavy installs; each adapter
imports its engine inside its constructor through ``require``, so ``import branchgym`` and the
registry never need them, and a missing engine names the pip package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import string
from types import ModuleType
from typing import Any

import gymnasium as gym

# Engine texts (a ScienceWorld room, TextWorld's opening) can pass the 4,096 characters the
# model environments allow; actions stay short so the checker's random samples stay cheap.
OBSERVATIONS = gym.spaces.Text(max_length=65_536, charset=string.printable)
ACTIONS = gym.spaces.Text(max_length=4096, charset=string.printable)
MAX_ACTION_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATES = re.compile("[\ud800-\udfff]")


def require(module: str, pip_name: str, load: bool = True) -> ModuleType | None:
    """Import an engine, or raise an ImportError that says which package to install.

    ``load=False`` only checks that it is installed, without running its import (ALFWorld's
    creates a data folder as it is imported).
    """
    try:
        if importlib.util.find_spec(module.partition(".")[0]) is None:
            raise ImportError(f"No module named {module.partition('.')[0]!r}")
        return importlib.import_module(module) if load else None
    except ImportError as exc:
        raise ImportError(
            f"this environment runs the real engine from the `{pip_name}` package, which is "
            f"not installed here: `pip install {pip_name}` ({exc})"
        ) from exc


def clean_action(action: Any) -> str:
    """The command an engine can take: one line, printable, bounded.

    Engines read a newline as the end of a command and a non-string as a crash, so anything
    the policy wrote becomes one line of text; a non-string becomes the empty command, which
    every engine answers with its own "say again" text. A lone surrogate (``"\\ud800"``, which
    no UTF-8 text holds but a Python str may) becomes U+FFFD: TextWorld and ScienceWorld
    encode the command as UTF-8 and would fail deep inside Jericho or py4j.
    """
    if not isinstance(action, str):
        return ""
    command = _CONTROL.sub(" ", action)[:MAX_ACTION_CHARS]
    return _SURROGATES.sub("\ufffd", command).strip()


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """A copy of an adapter's info for the caller, tuples turned into fresh lists: what the
    caller does to it never reaches the adapter's own record, which snapshots share."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in info.items()}
