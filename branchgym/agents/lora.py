"""LoRA adapters through peft: train a large model's low-rank adapters, not its weights.

With ``lora.rank > 0`` (``[lora]`` in a config file), ``branchgym train`` wraps the model in
peft's ``LoraConfig`` on ``target_modules``; only the adapters get gradients and optimiser
state. The run folder then keeps the frozen base once (``base/``), each checkpoint keeps only
the adapters, and at the end ``adapter/`` holds the adapters and ``policy/`` the merged model,
which loads as a plain Hugging Face model. Needs ``pip install branchgym[lora]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 0  # 0: train every weight (no adapters)
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


def require_peft():
    try:
        import peft
    except ImportError as exc:
        raise ImportError("LoRA needs peft: pip install 'branchgym[lora]'") from exc
    return peft


def with_lora(model: Any, cfg: LoRAConfig) -> Any:
    """``model`` with fresh LoRA adapters (the base weights frozen)."""
    peft = require_peft()
    config = peft.LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def load_lora(base: Any, adapter_dir: Path) -> Any:
    """The base model with the adapters saved in ``adapter_dir``, trainable again."""
    return require_peft().PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config")


def decoder(model: Any) -> Any:
    """The underlying ``*ForCausalLM`` (the model itself when it has no adapters)."""
    return model.get_base_model() if is_lora(model) else model


__all__ = ["LoRAConfig", "decoder", "is_lora", "load_lora", "require_peft", "with_lora"]
