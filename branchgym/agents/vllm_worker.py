"""A vLLM worker extension: load a policy version's weights from a folder, in place.

vLLM mixes this class into each of its workers when named by ``worker_extension_cls``:
``VLLMPolicy`` names it for its own engine, and a server that ``branchgym train --backend
openai`` trains through is started with ``--worker-extension-cls
branchgym.agents.vllm_worker.WeightSyncWorker`` (and ``VLLM_SERVER_DEV_MODE=1``, which opens
``POST /collective_rpc``). The trainer calls ``branchgym_load_weights`` through
``collective_rpc`` with the folder it wrote (``branchgym.agents.weightsync``).

Why not vLLM's own ``reload_weights`` alone: on vLLM's CPU backend every linear layer, the
logits layer included, computes with a prepacked (oneDNN) copy of its weight. With tied
embeddings the logits layer shares the embedding matrix but loads nothing of its own, so
``reload_weights`` never repacks it: the engine embeds tokens with the new matrix and scores
them with the old one (measured: log-probs off by up to 4.7 nats after a weight update). After
the reload this repacks every embedding layer from its (new) weight. On GPUs nothing is packed
and the repack is skipped.

Imports nothing but vLLM, and only when called: every worker of a server imports this module.
"""

from __future__ import annotations

from typing import Any

EXTENSION = "branchgym.agents.vllm_worker.WeightSyncWorker"
LOAD_METHOD = "branchgym_load_weights"
PING_METHOD = "branchgym_weight_sync_ready"


class WeightSyncWorker:
    """Methods added to vLLM's worker (``self`` is the worker)."""

    def branchgym_load_weights(self, weights_path: str) -> str:
        """Load the checkpoint in ``weights_path`` (a Hugging Face folder) into the model."""
        self.reload_weights(weights_path=weights_path)  # type: ignore[attr-defined]
        _repack_embeddings(self.model_runner.get_model())  # type: ignore[attr-defined]
        return weights_path

    def branchgym_weight_sync_ready(self) -> str:
        """Answers ``ok``: the extension is loaded (checked before a run starts)."""
        return "ok"


def _repack_embeddings(model: Any) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers.vocab_parallel_embedding import (
        UnquantizedEmbeddingMethod,
        VocabParallelEmbedding,
    )

    for module in model.modules():
        if isinstance(module, VocabParallelEmbedding) and isinstance(
            module.quant_method, UnquantizedEmbeddingMethod
        ):
            module.quant_method.process_weights_after_loading(module)
