"""Shared fixtures: an offline Hugging Face hub, one torch thread, a tiny tokenizer and model.

The machine these tests run on is small and often busy, so everything here is as cheap as it can
be: the tokenizer is trained once per session on 60 household episodes, and the model is a
one-layer Llama-style model with a 32-wide hidden state (a few tens of thousands of parameters).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

import branchgym.envs
from branchgym.agents.model import TinyModelConfig, tiny_model
from branchgym.agents.protocol import TurnCodec
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.demos import env_corpus

HOUSEHOLD = "branchgym/Household-v0"
TINY = TinyModelConfig(hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield


def make_household(**kwargs):
    return branchgym.envs.make(HOUSEHOLD, **kwargs)


@pytest.fixture(scope="session")
def tiny_tok():
    return train_tokenizer(env_corpus(make_household, 60, 0), vocab_size=600)


@pytest.fixture(scope="session")
def codec(tiny_tok):
    return TurnCodec(tiny_tok)


def build_tiny_lm(tok, cfg: TinyModelConfig = TINY, seed: int = 0):
    torch.manual_seed(seed)
    stop_id = TurnCodec(tok).stop_id
    return tiny_model(len(tok), tok.pad_token_id, stop_id, cfg)


@pytest.fixture
def tiny_lm(tiny_tok):
    return build_tiny_lm(tiny_tok)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session (marker ``postgres``)."""
    from branchgym.testing import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def vllm_cpu_env(tmp_path_factory):
    """What vLLM's CPU backend needs here: a small KV cache and a cache folder of its own;
    the environment is restored after the module."""
    scratch = tmp_path_factory.mktemp("vllm")
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(scratch)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def train_in_subprocess(config: Path, db: str, out: Path) -> None:
    """``python -m branchgym.cli train --config CONFIG --db DB --out OUT`` in a process of its
    own, as a user runs it (Ray and vLLM start workers from it); fails the test with the end of
    its stderr."""
    cmd = [sys.executable, "-m", "branchgym.cli", "train", "--config", str(config)]
    done = subprocess.run(
        [*cmd, "--db", db, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def group_rows(url: str) -> list[tuple]:
    """``(step, policy_version, worker)`` of every stored group, by step and id."""
    from sqlalchemy import text

    from branchgym.rollouts.store import TrajectoryStore

    query = text("SELECT step, policy_version, worker FROM groups ORDER BY step, id")
    with TrajectoryStore(url) as store, store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query).all()]
