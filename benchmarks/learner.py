"""One learner update: throughput, the memory of log-probs and entropies, and (on a GPU) MFU.

    branchgym bench learner

- ``tokens_per_s``: trained tokens per second of ``Learner.rl_step`` (forward, backward and
  AdamW) on ``batch`` sequences of ``seq_len`` tokens: the embedded tiny model on a CPU, a
  randomly initialised Qwen2-0.5B-shaped model in bf16 on a GPU.
- ``naive_peak_mb`` / ``chunked_peak_mb``: the peak memory of log-probs plus entropies, and
  their backward pass, over ``tokens`` (4,096) positions at Qwen's vocabulary (151,936) and
  hidden size (896): all logits at once, against ``head_logprobs`` in chunks of ``chunk``
  positions (the learner's ``HEAD_CHUNK``) under activation checkpointing, as the learner
  runs. Each is measured in a fresh process as the rise of its peak resident memory (on a GPU:
  ``max_memory_allocated``) above the inputs'. Goal: ``chunked_peak_mb <= 0.25 * naive_peak_mb``.
- ``mfu`` (GPU only): model FLOPs utilisation of a whole ``rl_step`` (forward, backward,
  AdamW) on ``rows`` rows of 4,096 tokens, each packed with trajectories of 256 to 2,048
  tokens: ``6 * params * tokens / time`` over the GPU's bf16 peak (``peak_tflops``; 989 for an
  H100 SXM). Attention FLOPs are not counted. On a GPU the learner runs with document-masked
  flex attention, ``LearnerConfig(compile=True)`` and 1,024-position head slices by default
  (``--set attn=sdpa compile=false head_chunk=256`` for the plain path). ``null`` on a CPU.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import torch

from branchgym.agents.logprobs import HEAD_CHUNK

QWEN_VOCAB, QWEN_HIDDEN = 151_936, 896


def _peak_in_child(mode: str, tokens: int, chunk: int, device: str) -> float:
    """Run ``_measure`` in a fresh interpreter, so each peak starts from a clean process."""
    code = (
        f"import sys; sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r}); "
        f"from learner import _measure; print(_measure({mode!r}, {tokens}, {chunk}, {device!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _measure(mode: str, tokens: int, chunk: int, device: str) -> float:
    import resource

    from branchgym.agents.logprobs import chunk_stats, head_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(QWEN_HIDDEN, QWEN_VOCAB, bias=False, device=device)
    hidden = torch.randn(1, tokens, QWEN_HIDDEN, device=device, requires_grad=True)
    targets = torch.randint(0, QWEN_VOCAB, (1, tokens), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if mode == "naive":
        logp, ent = chunk_stats(head, hidden, targets, 1.0)
    else:
        logp, ent = head_logprobs(head, hidden, targets, 1.0, chunk)
    (-(logp.mean()) - 0.01 * ent.mean()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 2**20


def _qwen2_05b(seq_len: int, attn: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=QWEN_HIDDEN,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=seq_len,
        tie_word_embeddings=True,
        attn_implementation=attn,
    )
    return Qwen2ForCausalLM(config).to("cuda", torch.bfloat16)


def _samples(rng: random.Random, vocab: int, lengths: list[int]):
    from branchgym.agents.learner import TokenSample

    return [
        TokenSample(
            tuple(rng.randrange(2, vocab) for _ in range(n)),
            tuple(-1.0 for _ in range(n)),
            (False,) + (True,) * (n - 1),
            advantage=rng.choice((-1.0, 1.0)),
        )
        for n in lengths
    ]


def _packed_lengths(rng: random.Random, rows: int, seq_len: int) -> list[int]:
    """Trajectory lengths (256 to 2,048 tokens) that fill ``rows`` rows of ``seq_len`` exactly."""
    lengths = []
    for _ in range(rows):
        left = seq_len
        while left > 2048 + 256:
            n = rng.randrange(256, 2049)
            lengths.append(n)
            left -= n
        lengths += [left // 2, left - left // 2] if left > 2048 else [left]
    return lengths


def _throughput(
    device: str, batch: int, seq_len: int, steps: int, attn: str, compile_: bool, chunk: int
) -> tuple[float, str, float]:
    from branchgym.agents.learner import Learner, LearnerConfig

    rng = random.Random(0)
    if device == "cuda":  # packed rows of seq_len tokens, ``batch`` rows per forward pass
        model = _qwen2_05b(seq_len, attn)
        name = f"qwen2-0.5b-shape, bf16, {attn}" + (", compiled" if compile_ else "")
        lengths = _packed_lengths(rng, batch, seq_len)
        cfg = LearnerConfig(
            minibatch_size=len(lengths),
            micro_batch_size=len(lengths),
            pack_length=seq_len,
            compile=compile_,
            head_chunk=chunk,
        )
    else:
        from branchgym.agents.model import TinyModelConfig, tiny_model

        model = tiny_model(1024, 0, 1, TinyModelConfig(max_positions=seq_len))
        name = "tiny (embedded default), fp32"
        lengths = [seq_len] * batch
        cfg = LearnerConfig(minibatch_size=batch, micro_batch_size=batch, compile=compile_)
    samples = _samples(rng, model.config.vocab_size, lengths)
    learner = Learner(model, 0, cfg)
    for _ in range(2 if compile_ else 1):  # warm-up (and compilation)
        learner.rl_step(samples, rng)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        learner.rl_step(samples, rng)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / steps
    params = sum(p.numel() for p in model.parameters())
    tokens = sum(lengths)
    return (tokens - len(lengths)) / elapsed, name, 6 * params * tokens / elapsed


def main(
    tokens: int = 4096,
    chunk: int = HEAD_CHUNK,
    batch: int = 16,
    seq_len: int = 256,
    steps: int = 3,
    peak_tflops: float = 989.0,
    threads: int = 1,
    rows: int = 4,
    attn: str | None = None,
    compile: bool | None = None,
    head_chunk: int | None = None,
) -> dict:
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    if gpu:  # the 0.5B shape at 4,096-token packed sequences
        batch, seq_len = rows, 4096
    # on a GPU by default: document-masked flex attention, compiled, 1,024-position head slices
    attn = attn or ("flex_attention" if gpu else "sdpa")
    compile = gpu if compile is None else compile
    head_chunk = head_chunk or (1024 if gpu else HEAD_CHUNK)
    naive = _peak_in_child("naive", tokens, chunk, device)
    chunked = _peak_in_child("chunked", tokens, chunk, device)
    tok_s, model_name, flops = _throughput(device, batch, seq_len, steps, attn, compile, head_chunk)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": model_name,
        "tokens_per_s": round(tok_s, 1),
        "naive_peak_mb": round(naive, 1),
        "chunked_peak_mb": round(chunked, 1),
        "chunked_over_naive": round(chunked / naive, 4),
        "memory_goal_met": chunked <= 0.25 * naive,
        "mfu": round(flops / (peak_tflops * 1e12), 4) if device == "cuda" else None,
    }
    if device == "cpu":
        result["note"] = "no GPU here: mfu is measured on a GPU only (not yet measured)"
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
