"""Choosing a policy backend: ``hf`` (default), ``vllm`` or ``openai``.

``hf`` samples with the model in this process (the embedded tiny model or ``--model PATH``).
``vllm`` runs the vLLM engine on the model folder ``--model PATH``. ``openai`` sends requests
to a server at ``--base-url`` that serves ``--model PATH`` (vLLM or SGLang); only the folder's
tokenizer and config are read here, for the turn protocol and the vocabulary size.

The two remote backends need a model whose tokenizer already holds the turn protocol's tokens
(a policy folder written by ``branchgym train``): the server's vocabulary cannot grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from branchgym.agents.model import ModelLoadError
from branchgym.agents.policy import Policy
from branchgym.agents.protocol import turn_format

Backend = Literal["hf", "vllm", "openai"]
BACKENDS: tuple[str, ...] = ("hf", "vllm", "openai")


@dataclass(frozen=True)
class BackendConfig:
    backend: Backend = "hf"
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    served_model: str | None = None  # openai: the served name; default: the model path
    timeout: float = 60.0  # openai: seconds to wait for one answer


def check_backend(cfg: BackendConfig, model_path: str | None) -> None:
    """Raise ``ValueError`` naming the missing option, before anything is loaded."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    if cfg.backend != "hf" and not model_path:
        raise ValueError(
            f"--backend {cfg.backend} needs --model PATH: a policy folder (as written by "
            "`branchgym train`) to serve, and to read the tokenizer from"
        )
    if cfg.backend == "openai" and not cfg.base_url:
        raise ValueError("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")


def remote_tokenizer(path: str, chat_template: bool = False):
    """The tokenizer and vocabulary size of a served model folder, checked for the protocol."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        vocab_size = int(AutoConfig.from_pretrained(path).vocab_size)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer and config from {path!r}: {exc}") from exc
    fmt = turn_format(tokenizer, chat_template)
    vocab = tokenizer.get_vocab()
    missing = [t for t in fmt.special_tokens() if t not in vocab]
    if missing:  # (a pad token is only needed where this process runs the model)
        raise ModelLoadError(
            f"{path!r} lacks the turn protocol's tokens {missing}; serve a "
            "policy folder written by `branchgym train` (or save `load_pretrained(path)`'s model "
            "and tokenizer and serve that), or use the model's own chat template "
            "(--chat-template)"
        )
    return tokenizer, vocab_size


def remote_policy(cfg: BackendConfig, model_path: str, vocab_size: int, seed: int) -> Policy:
    """The ``vllm`` or ``openai`` policy for a model folder."""
    if cfg.backend == "vllm":
        from branchgym.agents.vllm import VLLMPolicy

        return VLLMPolicy(model_path, seed=seed)
    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    assert cfg.base_url is not None
    server = ServerConfig(cfg.base_url, cfg.served_model or model_path, timeout=cfg.timeout)
    return OpenAIPolicy(server, vocab_size=vocab_size, seed=seed)
