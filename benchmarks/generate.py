"""Generation throughput of the HF backend and the vLLM engine on the tiny model.

    branchgym bench generate

Both backends get the same requests, as the rollout manager sends them: ``batch`` prefixes of
``prompt_tokens`` tokens (real household observations, cut or repeated to length), sampled at
temperature 1 for ``new_tokens`` tokens, with per-token log-probs and entropies (exact for HF,
from the top 20 for vLLM). Keys: tokens/s per batch size for each backend (the best of
``repeats`` runs, after a warm-up) and the vLLM / HF ratio. vLLM is optional: without it the
``vllm`` entries say why.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from branchgym.agents.hf import HFPolicy
from branchgym.agents.model import TinyModelConfig, tiny_model
from branchgym.agents.policy import GenerationRequest, SamplingParams
from branchgym.agents.protocol import TurnCodec
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.demos import env_corpus
from branchgym.envs import make

BATCHES = (1, 16, 64)


def _prefixes(codec: TurnCodec, n: int, length: int) -> list[tuple[int, ...]]:
    env = make("branchgym/Household-v0")
    out = []
    for seed in range(n):
        ids = codec.observation_ids(env.reset(seed=seed)[0])
        out.append(tuple((ids * (length // len(ids) + 1))[:length]))
    return out


def _throughput(policy, requests, repeats: int) -> float:
    policy.generate(requests)  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        gens = policy.generate(requests)
        elapsed = time.perf_counter() - start
        best = max(best, sum(len(g.token_ids) for g in gens) / elapsed)
    return best


def main(
    prompt_tokens: int = 64,
    new_tokens: int = 32,
    repeats: int = 3,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = train_tokenizer(env_corpus(lambda: make("branchgym/Household-v0"), 200, seed))
    codec = TurnCodec(tok)

    model = tiny_model(len(tok), tok.pad_token_id, codec.stop_id, TinyModelConfig())
    params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0)
    prefixes = _prefixes(codec, max(BATCHES), prompt_tokens)
    batches = {b: [GenerationRequest(p, params) for p in prefixes[:b]] for b in BATCHES}
    hf = HFPolicy(model, tok, tok.pad_token_id, seed=seed)
    result: dict = {"hf": {str(b): _throughput(hf, r, repeats) for b, r in batches.items()}}
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        result["vllm"] = _vllm(folder, batches, repeats, seed)
    if "error" not in result["vllm"]:
        result["vllm_over_hf"] = {b: result["vllm"][b] / result["hf"][b] for b in result["hf"]}
    config = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "repeats": repeats}
    return {"benchmark": "generate", "config": {**config, "threads": threads}, **result}


def _vllm(folder: str, batches: dict, repeats: int, seed: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for the JSON
    try:
        from branchgym.agents.vllm import VLLMPolicy

        policy = VLLMPolicy(folder, seed=seed)
    except ImportError as exc:
        return {"error": str(exc)}
    with policy:
        return {str(b): _throughput(policy, r, repeats) for b, r in batches.items()}
