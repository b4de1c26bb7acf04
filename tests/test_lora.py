"""LoRA through peft: only the adapters train, generation and scoring see them, and a LoRA run
checkpoints its adapters, resumes after a kill and ends with a plain merged policy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

pytest.importorskip("peft")  # the `lora` extra; CI installs it

import branchgym.envs
from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, LearnerConfig
from branchgym.agents.logprobs import sequence_logprobs
from branchgym.agents.lora import LoRAConfig, is_lora, with_lora
from branchgym.agents.policy import GenerationRequest, SamplingParams
from branchgym.demos import expert_demos
from branchgym.runlog import read_rows
from branchgym.tasks.suite import task_refs
from tests.conftest import build_tiny_lm

ENV_ID = "branchgym/Household-v0"


def lora_lm(tok):
    return with_lora(build_tiny_lm(tok), LoRAConfig(rank=4, target_modules=("q_proj", "v_proj")))


def test_only_the_adapters_train(tiny_tok, codec):
    model = lora_lm(tiny_tok)
    assert is_lora(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    tasks = task_refs(ENV_ID, "train", 4)
    demos = expert_demos(lambda: branchgym.envs.make(ENV_ID), tasks, codec, noise=0.0, seed=0)
    learner = Learner(model, tiny_tok.pad_token_id, LearnerConfig(lr=1e-2))
    losses = [learner.sft_step(demos) for _ in range(10)]
    assert losses[-1] < losses[0]
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    n_state = len(learner.optimizer.state_dict()["state"])
    assert n_state == len(trainable)  # no optimiser state for frozen weights


def test_fresh_adapters_leave_scores_and_greedy_tokens_unchanged(tiny_tok, codec):
    base = build_tiny_lm(tiny_tok)
    adapted = lora_lm(tiny_tok)  # same seed, so the same base weights; LoRA's B starts at 0
    ids = torch.tensor([codec.observation_ids("You are in the middle of a room.", first=True)])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        scored = sequence_logprobs(adapted, ids, mask), sequence_logprobs(base, ids, mask)
    for a, b in zip(*scored, strict=True):
        torch.testing.assert_close(a, b)
    params = SamplingParams(max_new_tokens=6, temperature=0.0, stop_token_ids=(codec.stop_id,))
    request = [GenerationRequest(tuple(ids[0].tolist()), params, session="s")]
    pad = tiny_tok.pad_token_id
    assert [g.token_ids for g in HFPolicy(adapted, tiny_tok, pad).generate(request)] == [
        g.token_ids for g in HFPolicy(base, tiny_tok, pad).generate(request)
    ]


CONFIG = """
preset = "smoke"
[lora]
rank = 4
[rl]
steps = 4
checkpoint_every = 1
"""


@pytest.mark.slow
def test_a_killed_lora_run_resumes_and_ends_with_a_merged_policy(tmp_path):
    from transformers import AutoModelForCausalLM

    (tmp_path / "lora.toml").write_text(CONFIG)
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "branchgym.cli", "train", "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--config", str(tmp_path / "lora.toml")])
    while proc.poll() is None:
        runs = list(out.glob("*/metrics.jsonl"))
        if runs and len(read_rows(runs[0].parent)) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    (run_dir,) = out.iterdir()
    assert not (run_dir / "summary.json").exists(), "the run ended before the kill"
    ckpt = json.loads((run_dir / "checkpoint.json").read_text())["dir"]
    assert (run_dir / ckpt / "adapter_model.safetensors").exists()  # adapters only
    assert not (run_dir / ckpt / "model.safetensors").exists()
    done = subprocess.run([*cmd, "--resume", run_dir.name], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["step"] for r in read_rows(run_dir)] == [0, 1, 2, 3]
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "policy")
    assert not is_lora(merged) and (run_dir / "adapter" / "adapter_config.json").exists()
