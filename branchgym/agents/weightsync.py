"""Handing the learner's updated weights to the generator, each version tagged.

Every policy that ``branchgym train`` samples with has ``sync_weights(model, version)``
(``WeightSync``), called after SFT and after each RL step, before the next rollout:

- ``hf``: the policy shares the learner's model, so there is nothing to copy; its KV cache is
  dropped (``sync_policy`` does this for ``HFPolicy``).
- ``vllm`` (``VLLMPolicy``) and ``openai`` (``OpenAIPolicy`` on a vLLM server): the weights
  are written as a Hugging Face folder ``<weights_dir>/v<version>`` (``write_weights``; with
  LoRA, the merged model), the engine loads them in place through ``collective_rpc``
  (``branchgym.agents.vllm_worker``), its prefix cache is reset (cached keys and values belong
  to the old weights), its weight version is set to ``version``, and older version folders
  are deleted. A server must read the folder at the same path, and needs
  ``VLLM_SERVER_DEV_MODE=1`` and ``--worker-extension-cls`` (README, "Policy backends").

The policy then reports ``version``, and the runner tags every group it samples with it.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from branchgym.agents.lora import is_lora

VERSION_PREFIX = "v"


@runtime_checkable
class WeightSync(Protocol):
    """A generator that takes new weights; ``version`` is the one it samples with now."""

    version: int | None

    def sync_weights(self, model: Any, version: int) -> None:
        """Make the generator sample with ``model``'s weights from now on, as ``version``."""
        ...


def sync_policy(policy: Any, model: Any, version: int) -> None:
    """``policy.sync_weights`` where it has one; else (``HFPolicy``, which holds ``model``
    itself) drop its cache."""
    if isinstance(policy, WeightSync):
        policy.sync_weights(model, version)
    else:
        policy.reset_cache()


def policy_version(policy: Any, default: int) -> int:
    """The version ``policy`` samples with: its own where it syncs, else ``default``."""
    version = getattr(policy, "version", None)
    return default if version is None else int(version)


def write_weights(model: Any, weights_dir: str | Path, version: int) -> Path:
    """``model``'s weights as a Hugging Face folder ``weights_dir/v<version>`` (absolute).

    The folder is written beside its final name and renamed into place, so a reader never
    sees half a checkpoint. With LoRA adapters, a merged copy is written (the model itself
    is left as it is)."""
    root = Path(weights_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{VERSION_PREFIX}{version:06d}"
    tmp = root / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    merged(model).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def merged(model: Any) -> Any:
    """``model`` as a plain Hugging Face model: with LoRA adapters, a merged copy."""
    return copy.deepcopy(model).merge_and_unload() if is_lora(model) else model


def prune_versions(weights_dir: str | Path, keep: Path) -> None:
    """Delete the version folders in ``weights_dir`` other than ``keep``."""
    for folder in Path(weights_dir).glob(f"{VERSION_PREFIX}[0-9]*"):
        if folder.is_dir() and folder.resolve() != Path(keep).resolve():
            shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "WeightSync",
    "merged",
    "policy_version",
    "prune_versions",
    "sync_policy",
    "write_weights",
]
