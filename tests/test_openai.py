"""The OpenAI-compatible client: parsing, retries, and clear errors from dead or slow servers.

The parsing and retry logic runs against httpx's MockTransport; the dead and the silent server
are real sockets, so the timeouts and connection errors are httpx's own.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import httpx
import pytest

from branchgym.agents.entropy import topk_entropy, topk_entropy_bounds
from branchgym.agents.openai import OpenAIPolicy, ServerConfig, ServerError, parse_completion
from branchgym.agents.policy import GenerationRequest, SamplingParams


def test_topk_entropy_charges_the_tail_at_the_kth_probability():
    # p = 0.5, 0.25 listed; tail r = 0.25 at p_k = 0.25: 0.5 ln2 + 0.25 ln4 + 0.25 ln4 = 1.5 ln2
    lps = [math.log(0.5), math.log(0.25)]
    assert topk_entropy(lps) == pytest.approx(1.5 * math.log(2))
    # A complete list is exact: the uniform distribution over 4 tokens has entropy ln 4.
    assert topk_entropy([math.log(0.25)] * 4) == pytest.approx(math.log(4))


def test_topk_entropy_bounds_bracket_the_truth():
    # Exact: 0.5, 0.25, then 0.05 x 5 over a vocabulary of 7; top-2 listed.
    probs = [0.5, 0.25] + [0.05] * 5
    exact = -sum(p * math.log(p) for p in probs)
    low, high = topk_entropy_bounds([math.log(0.5), math.log(0.25)], vocab_size=7)
    assert low == pytest.approx(1.5 * math.log(2))
    assert high == pytest.approx(exact)  # the tail here is uniform: the upper bound is exact
    assert low <= exact <= high
    # Given |V|, the estimate is the midpoint of the bounds.
    assert topk_entropy([math.log(0.5), math.log(0.25)], 7) == pytest.approx((low + high) / 2)
    with pytest.raises(ValueError, match="at least one"):
        topk_entropy([])


def completion(ids, logprobs, tops, finish="stop") -> dict:
    return {
        "choices": [
            {
                "text": "x",
                "finish_reason": finish,
                "logprobs": {
                    "tokens": [f"token_id:{i}" for i in ids],
                    "token_logprobs": logprobs,
                    "top_logprobs": [{f"token_id:{k}": v for k, v in t.items()} for t in tops],
                },
            }
        ]
    }


def test_parse_completion_keeps_token_ids_and_estimates_entropy():
    top = {5: math.log(0.5), 6: math.log(0.25)}
    gen = parse_completion(completion([5, 9], [math.log(0.5), -0.1], [top, {9: -0.1}], "length"))
    assert gen.token_ids == (5, 9) and gen.finish_reason == "length"
    assert gen.logprobs == (math.log(0.5), -0.1)
    assert gen.entropies[0] == pytest.approx(1.5 * math.log(2))
    assert not gen.entropy_exact


def test_parse_completion_says_what_the_server_must_support():
    bad = {"choices": [{"text": "x", "logprobs": None}]}
    with pytest.raises(ServerError, match="return_tokens_as_token_ids"):
        parse_completion(bad)
    text_keys = completion([1], [-0.1], [{1: -0.1}])
    text_keys["choices"][0]["logprobs"]["tokens"] = ["hello"]
    with pytest.raises(ServerError, match="token_id:N"):
        parse_completion(text_keys)


REQ = GenerationRequest((1, 2, 3), SamplingParams(max_new_tokens=4, stop_token_ids=(7,)))


def cfg(url: str = "http://server/v1", **kw) -> ServerConfig:
    return ServerConfig(url, "tiny", **{"backoff": 0.01, **kw})


def test_requests_carry_token_ids_and_are_retried_on_5xx():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if len(seen) < 3:
            return httpx.Response(503, text="warming up")
        return httpx.Response(200, json=completion([7], [-0.2], [{7: -0.2}]))

    policy = OpenAIPolicy(cfg(), transport=httpx.MockTransport(handler))
    (gen,) = policy.generate([REQ])
    assert gen.token_ids == (7,) and len(seen) == 3
    body = seen[0]
    assert body["prompt"] == [1, 2, 3] and body["stop_token_ids"] == [7]
    assert body["return_tokens_as_token_ids"] and body["logprobs"] == 20
    assert body["max_tokens"] == 4 and body["model"] == "tiny"


def test_a_4xx_fails_at_once_with_the_servers_message():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, text="max_logprobs is 5")

    policy = OpenAIPolicy(cfg(), transport=httpx.MockTransport(handler))
    with pytest.raises(ServerError, match=r"HTTP 400.*max_logprobs is 5"):
        policy.generate([REQ])
    assert len(calls) == 1


def test_a_dead_server_gives_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = OpenAIPolicy(cfg(f"http://127.0.0.1:{port}/v1", retries=1))
    with pytest.raises(ServerError, match=rf"127.0.0.1:{port}/v1 failed after 2 tries: cannot"):
        policy.generate([REQ, REQ])


def test_a_silent_server_times_out_instead_of_hanging():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    policy = OpenAIPolicy(cfg(url, timeout=0.3, retries=1))
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"no answer within 0.3 s"):
        policy.generate([REQ])
    assert time.monotonic() - start < 5
    server.close()


def test_generate_works_inside_a_running_event_loop():
    import asyncio

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion([7], [-0.2], [{7: -0.2}]))

    policy = OpenAIPolicy(cfg(), transport=httpx.MockTransport(handler))

    async def inside() -> int:
        return len(policy.generate([REQ, REQ]))

    assert asyncio.run(inside()) == 2


# -- choosing the backend from the CLI --------------------------------------------------------


def test_rollout_backend_options_fail_clearly_before_loading_anything(tmp_path):
    from typer.testing import CliRunner

    from branchgym.cli import app

    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = runner.invoke(app, ["rollout", "--backend", "openai", "--db", db])
    assert result.exit_code == 2 and "needs --model PATH" in result.output
    result = runner.invoke(app, ["rollout", "--backend", "openai", "--model", "x", "--db", db])
    assert result.exit_code == 2 and "needs --base-url" in result.output
    several = ["--base-url", "http://a:8000/v1,http://b:8000/v1"]
    result = runner.invoke(app, ["rollout", "--backend", "openai", "--model", "x", *several])
    assert result.exit_code == 2 and "several are for --ray" in result.output
    result = runner.invoke(app, ["rollout", "--backend", "tgi", "--db", db])
    assert result.exit_code == 2 and "unknown backend 'tgi'" in result.output
    assert not (tmp_path / "r.db").exists()


def test_rollout_against_a_dead_server_says_so_and_stores_no_tree(tmp_path, tiny_tok, tiny_lm):
    from typer.testing import CliRunner

    from branchgym.cli import app
    from branchgym.rollouts.store import TrajectoryStore

    folder = tmp_path / "policy"
    tiny_lm.save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["rollout", "--backend", "openai", "--model", str(folder), "--db", db, "--tasks", "1"]
    result = CliRunner().invoke(app, [*args, "--base-url", f"http://127.0.0.1:{port}/v1"])
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port}/v1 failed after 3 tries: cannot connect" in result.output
    with TrajectoryStore(db) as store:
        assert store.list_runs() == []  # the run is registered with its first groups only
