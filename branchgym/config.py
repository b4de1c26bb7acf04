"""The typed configuration of ``branchgym train``, and its presets.

Every default is declared here, once. A preset is a named set of overrides on these defaults;
command-line flags override the preset.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from branchgym.agents.backends import BACKENDS, BackendConfig, server_urls
from branchgym.agents.learner import LearnerConfig
from branchgym.agents.lora import LoRAConfig
from branchgym.agents.model import TinyModelConfig
from branchgym.configio import ConfigError
from branchgym.distributed import RayConfig
from branchgym.rollouts.manager import RolloutConfig
from branchgym.rollouts.replay import ReplayConfig
from branchgym.tasks.suite import SPLIT_OFFSETS


@dataclass(frozen=True)
class SFTConfig:
    """Cold start: supervised fine-tuning on the expert's demonstrations."""

    demos: int = 2000  # expert episodes on training seeds
    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 16  # small batches: the tiny model needs many updates more than big ones
    noise: float = 0.5  # share of search-phase `go to` steps replaced by a search detour


@dataclass(frozen=True)
class RLConfig:
    """The RL phase: GRPO group rollouts and PPO-clip updates."""

    steps: int = 100
    tasks_per_step: int = 8
    std_normalize: bool = True  # False: Dr.GRPO advantages R - mean(R)
    drop_uniform_groups: bool = True  # groups whose returns are all equal carry no signal
    attribution: Literal["soft", "hard"] = "soft"  # ARPO's advantage attribution on trees
    sil: bool = False  # SPEAR self-imitation: replay stored positive-advantage trajectories
    sil_coef: float = 1.0  # c in the SIL weight w(t) = c (1 - cos(pi t / T)) / 2, then c
    sil_warmup: int = 200  # T
    sil_mode: Literal["separate", "mixed"] = "separate"  # own PPO step, or in the step's batch
    tool_bonus_horizon: int = 0  # SPEAR's tool-call reward mu(t) min(1, 0.1 n) until T; 0: off
    checkpoint_every: int = 10  # RL steps between checkpoints (and after SFT, and at the end)
    token_budget: int = 0  # > 0: stop RL once this many tokens were generated (steps is a cap)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: the same episodes for the SFT and the RL policy.

    The headline is the policy as RL trains it: sampled at ``temperature`` (the rollouts'
    temperature by default). ``greedy`` adds an argmax evaluation beside it.
    """

    episodes: int = 400
    temperature: float = 1.0
    greedy: bool = True
    batch_size: int = 200
    split: str = "seen"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``branchgym train`` does, in one place."""

    env_id: str = "branchgym/Household-v0"
    env_kwargs: dict = field(default_factory=dict)
    restate_instruction: bool = True  # append the task to every observation (RestateInstruction)
    seed: int = 0
    out_dir: str = "runs"
    db: str | None = None  # any SQLAlchemy URL; default: SQLite in the run folder
    threads: int = 1  # torch threads; one is fastest for the tiny model on a busy 2-core box
    vocab_size: int = 1024
    model_path: str | None = None  # a Hugging Face model folder instead of the embedded model
    chat_template: bool = False  # turns in the model's own chat template (needs model_path)
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank 0: full fine-tuning
    ray: RayConfig = field(default_factory=RayConfig)  # enabled: rollouts on Ray actors
    eval: EvalConfig = field(default_factory=EvalConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)  # the generator: hf, vllm, openai


# (key path, test, what it must be): the values a run cannot start with
_POSITIVE = ">= 1"
_NON_NEGATIVE = ">= 0"
_RULES: tuple[tuple[str, str], ...] = (
    ("seed", _NON_NEGATIVE),
    ("threads", _POSITIVE),
    ("vocab_size", _POSITIVE),
    ("sft.demos", _NON_NEGATIVE),
    ("sft.epochs", _NON_NEGATIVE),
    ("sft.batch_size", _POSITIVE),
    ("rl.steps", _NON_NEGATIVE),
    ("rl.tasks_per_step", _POSITIVE),
    ("rl.checkpoint_every", _POSITIVE),
    ("rl.token_budget", _NON_NEGATIVE),
    ("rl.sil_warmup", _NON_NEGATIVE),
    ("rl.tool_bonus_horizon", _NON_NEGATIVE),
    ("rollout.samples_per_task", _POSITIVE),
    ("rollout.max_turns", _POSITIVE),
    ("rollout.max_action_tokens", _POSITIVE),
    ("rollout.max_total_tokens", _POSITIVE),
    ("rollout.env_workers", _POSITIVE),
    ("rollout.arpo.budget", _POSITIVE),
    ("rollout.arpo.initial", _POSITIVE),
    ("rollout.aepo.budget", _POSITIVE),
    ("learner.minibatch_size", _POSITIVE),
    ("learner.micro_batch_size", _POSITIVE),
    ("learner.ppo_epochs", _POSITIVE),
    ("learner.pack_length", _NON_NEGATIVE),
    ("learner.head_chunk", _POSITIVE),
    ("replay.batch_size", _POSITIVE),
    ("model.hidden_size", _POSITIVE),
    ("model.layers", _POSITIVE),
    ("model.heads", _POSITIVE),
    ("model.kv_heads", _POSITIVE),
    ("model.intermediate_size", _POSITIVE),
    ("model.max_positions", _POSITIVE),
    ("lora.rank", _NON_NEGATIVE),
    ("ray.max_staleness", _NON_NEGATIVE),
    ("eval.episodes", _POSITIVE),
    ("eval.batch_size", _POSITIVE),
)
_FLOATS: tuple[tuple[str, float, float], ...] = (  # (key path, low, high), inclusive
    ("sft.lr", 0.0, math.inf),
    ("sft.noise", 0.0, 1.0),
    ("learner.lr", 0.0, math.inf),
    ("learner.eps_low", 0.0, 1.0),
    ("learner.eps_high", 0.0, math.inf),
    ("learner.clip_cov_ratio", 0.0, 1.0),  # fractions of the valid tokens, not percentages
    ("learner.replay_clip_cov_ratio", 0.0, 1.0),
    ("learner.kl_cov_ratio", 0.0, 1.0),
    ("rollout.temperature", 1e-6, math.inf),  # RL scores tokens under it: it must be > 0
    ("rollout.env_timeout", 1e-3, math.inf),
    ("eval.temperature", 0.0, math.inf),
)


def validate(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` if a run can start with it; else ``ConfigError`` naming the key and the range."""
    validate_fields(cfg)
    if cfg.ray.enabled and (cfg.db is None or cfg.db.startswith("sqlite")):
        raise ConfigError(
            "ray: every worker writes to the store, so it must be a database server they all "
            "reach: --db postgresql://USER@HOST:PORT/DB"
        )
    if (cfg.ray.enabled and cfg.ray.rollout_workers < 1) or cfg.ray.env_workers < 0:
        raise ConfigError(
            "ray.rollout_workers must be >= 1, ray.env_workers >= 0 (0: environments live in "
            "the rollout workers)"
        )
    _validate_backend(cfg)
    _validate_staleness(cfg)
    if cfg.rollout.arpo.initial > cfg.rollout.arpo.budget:
        raise ConfigError(
            f"rollout.arpo.initial ({cfg.rollout.arpo.initial}) exceeds rollout.arpo.budget "
            f"({cfg.rollout.arpo.budget}): the full samples are part of the budget"
        )
    return cfg


def validate_fields(cfg: TrainConfig) -> TrainConfig:
    """The checks each value (or table) passes on its own, whatever the other options are:
    what a config file's values can be held to before the command line's flags apply."""
    for path, rule in _RULES:
        value = _get(cfg, path)
        if value < (1 if rule == _POSITIVE else 0):
            raise ConfigError(f"{path}: must be {rule}, got {value}")
    for path, low, high in _FLOATS:
        value = _get(cfg, path)
        if not low <= value <= high:  # also catches NaN
            raise ConfigError(f"{path}: must be in [{low}, {high}], got {value}")
    if cfg.eval.split not in SPLIT_OFFSETS:
        raise ConfigError(f"eval.split: {cfg.eval.split!r} is not one of {list(SPLIT_OFFSETS)}")
    for key in ("clip_cov_bounds", "replay_clip_cov_bounds"):
        low, high = getattr(cfg.learner, key)
        if not low < high:  # Clip-Cov picks tokens with low < Cov < high: none would qualify
            raise ConfigError(
                f"learner.{key}: must be [low, high] with low < high, got {[low, high]}"
            )
    _validate_model(cfg.model)
    return cfg


def _validate_model(model: TinyModelConfig) -> None:
    """The embedded model's shape: whole heads, whole query groups, and even head sizes
    (rotary embeddings rotate pairs of dimensions)."""
    if model.hidden_size % model.heads or (model.hidden_size // model.heads) % 2:
        raise ConfigError(
            f"model.heads: model.hidden_size ({model.hidden_size}) must split into "
            f"model.heads ({model.heads}) heads of an even size"
        )
    if model.heads % model.kv_heads:
        raise ConfigError(
            f"model.kv_heads: model.heads ({model.heads}) must be a multiple of "
            f"model.kv_heads ({model.kv_heads})"
        )


def _validate_backend(cfg: TrainConfig) -> None:
    backend = cfg.backend.backend
    if backend not in BACKENDS:
        raise ConfigError(f"backend.backend: {backend!r} is not one of {list(BACKENDS)}")
    if backend == "vllm" and cfg.ray.enabled:
        raise ConfigError(
            "backend vllm: --ray samples in its workers, with their own HF copies (hf) or "
            "through vLLM servers (backend openai, --base-url URL[,URL...])"
        )
    if len(server_urls(cfg.backend)) > 1 and not cfg.ray.enabled:
        raise ConfigError(
            "backend.base_url: several servers need --ray (its rollout workers share them)"
        )
    if backend == "openai" and not cfg.backend.base_url:
        raise ConfigError("backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
    if backend == "openai" and not cfg.model_path:
        raise ConfigError(
            "backend openai needs --model PATH: the policy folder the server serves (one written "
            "by `branchgym train`), the server started on it before the run"
        )


def steps_ahead(cfg: TrainConfig) -> int:
    """How many steps' rollouts may run ahead of the learner under ``ray.max_staleness``.

    Each step takes one update (two with SPEAR's separate self-imitation step), so a rollout
    sent ``n`` steps early samples weights ``n`` (or ``2n``) versions older than the learner's
    when it is trained on."""
    updates = 2 if cfg.rl.sil and cfg.rl.sil_mode == "separate" else 1
    return cfg.ray.max_staleness // updates


def _validate_staleness(cfg: TrainConfig) -> None:
    if not cfg.ray.max_staleness:
        return
    if not cfg.ray.enabled:
        raise ConfigError(
            "ray.max_staleness: asynchronous rollouts run on Ray's workers while the learner "
            "updates; add --ray (or set it to 0)"
        )
    if cfg.backend.backend != "hf":
        raise ConfigError(
            "ray.max_staleness: vLLM servers load every version in place, under the rollouts "
            "that run ahead; asynchronous rollouts need the workers' own copies (backend hf)"
        )
    if steps_ahead(cfg) == 0:
        raise ConfigError(
            f"ray.max_staleness = {cfg.ray.max_staleness}: each step makes two updates with "
            "rl.sil_mode = 'separate', so rollouts can run a step ahead from 2 on"
        )


def config_json(cfg: TrainConfig) -> dict:
    """``cfg`` as plain JSON values (paths and the like as strings), as a run folder stores it."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def _get(cfg, path: str):
    for key in path.split("."):
        cfg = getattr(cfg, key)
    return cfg


def _quickstart() -> TrainConfig:
    # An 8-receptacle kitchen: the 0.5M-parameter model clones the searching expert to about
    # half success in five minutes on one core, which leaves GRPO signal in most groups.
    # RL at lr 1e-4: since RL starts from a fresh AdamW state, 3e-4 took steps large enough to
    # undo the warm start on one seed of three (README, "Results").
    base = TrainConfig(env_kwargs={"max_receptacles": 8})
    return replace(base, learner=replace(base.learner, lr=1e-4))


def _smoke() -> TrainConfig:
    base = TrainConfig()
    return replace(
        base,
        env_kwargs={"max_receptacles": 8},
        vocab_size=600,
        model=TinyModelConfig(hidden_size=64, layers=1, heads=2, kv_heads=1, intermediate_size=128),
        sft=replace(base.sft, demos=64, epochs=1),
        rl=replace(base.rl, steps=2, tasks_per_step=2, checkpoint_every=1),
        rollout=replace(
            base.rollout,
            samples_per_task=4,
            max_turns=6,
            arpo=replace(base.rollout.arpo, budget=4, initial=2),
            aepo=replace(base.rollout.aepo, budget=4),
        ),
        learner=replace(base.learner, minibatch_size=8, micro_batch_size=8),
        replay=replace(base.replay, batch_size=2),
        eval=replace(base.eval, episodes=16, batch_size=16),
    )


def _searchqa() -> TrainConfig:
    # One SFT epoch: five (the quickstart's) clone the oracle to 100% greedy exact match on
    # SearchQA, which leaves RL nothing to learn (README, "Results on SearchQA"). RL at lr
    # 1e-4, as the quickstart's: over three seeds it gained more than 3e-4 (same section).
    base = TrainConfig(env_id="branchgym/SearchQA-v0")
    return replace(base, sft=replace(base.sft, epochs=1), learner=replace(base.learner, lr=1e-4))


PRESETS = {"quickstart": _quickstart, "smoke": _smoke, "searchqa": _searchqa}


def preset_for_env(env_id: str) -> str:
    """The preset whose recipe was tuned for ``env_id``: what ``train --env ID`` starts from
    when no ``--preset`` is given (the quickstart's when none was)."""
    tuned = [name for name in ("searchqa",) if PRESETS[name]().env_id == env_id]
    return tuned[0] if tuned else "quickstart"


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
