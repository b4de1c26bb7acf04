"""A ``Policy`` over any OpenAI-compatible completions server (vLLM, SGLang), on httpx.

Each request goes to ``POST {base_url}/completions`` as token ids in and token ids out
(``return_tokens_as_token_ids``), so the trained tokens are exactly the sampled ones: nothing
is re-tokenised. Per-token entropies are estimated from the top ``top_logprobs`` log-probs with
the tail mass accounted for (``branchgym.agents.entropy``; pass ``vocab_size`` for the better
estimate), and flagged ``entropy_exact=False``.

Requests of one ``generate`` call are sent concurrently (at most ``max_concurrency`` at once)
so the server batches them. Every request has connect and read timeouts; connection failures,
timeouts, 429 and 5xx answers are retried with exponential backoff, and after the last try the
call raises ``ServerError`` naming the server and what went wrong. It never hangs: the whole
call is bounded by ``retries + 1`` timeouts plus the backoff.

For a vLLM server, start it with ``--max-logprobs 20`` (or more than ``top_logprobs``); the
log-probs it returns are those of the distribution the token was sampled from only with
``--logprobs-mode processed_logprobs`` when the temperature is not 1.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from branchgym.agents.entropy import topk_entropy
from branchgym.agents.policy import Generation, GenerationRequest

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_TOKEN_PREFIX = "token_id:"


class ServerError(RuntimeError):
    """The server could not be reached, timed out, or answered with something unusable."""


@dataclass(frozen=True)
class ServerConfig:
    """Where the server is and how patiently to talk to it."""

    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the served model name
    api_key: str | None = None
    timeout: float = 60.0  # seconds to wait for one answer
    connect_timeout: float = 5.0
    retries: int = 2  # tries after the first, for connection errors, timeouts, 429 and 5xx
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    top_logprobs: int = 20
    max_concurrency: int = 64


class OpenAIPolicy:
    """Generates through an OpenAI-compatible server; ``vocab_size`` is the model's |V|."""

    def __init__(
        self,
        cfg: ServerConfig,
        vocab_size: int | None = None,
        seed: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.vocab_size = vocab_size
        self._rng = random.Random(seed)
        self._transport = transport  # httpx.MockTransport in unit tests

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        seeds = [self._rng.randrange(2**31) for _ in requests]
        coro = self.agenerate(requests, seeds)
        try:
            asyncio.get_running_loop()
            inside_loop = True
        except RuntimeError:
            inside_loop = False
        # Called from inside an event loop, run in a thread of its own rather than block it.
        return _run_in_thread(coro) if inside_loop else asyncio.run(coro)

    async def agenerate(
        self, requests: Sequence[GenerationRequest], seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """The async form of ``generate``: one completion per request, sent concurrently."""
        seeds = seeds or [self._rng.randrange(2**31) for _ in requests]
        gate = asyncio.Semaphore(self.cfg.max_concurrency)
        async with self._client() as client:

            async def one(req: GenerationRequest, seed: int) -> Generation:
                async with gate:
                    answer = await self._post(client, _body(self.cfg, req, seed))
                    return parse_completion(answer, self.cfg.top_logprobs, self.vocab_size)

            return list(
                await asyncio.gather(*(one(r, s) for r, s in zip(requests, seeds, strict=True)))
            )

    def _client(self) -> httpx.AsyncClient:
        cfg = self.cfg
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        return httpx.AsyncClient(
            base_url=cfg.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout),
            limits=httpx.Limits(max_connections=cfg.max_concurrency),
            transport=self._transport,
        )

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        cfg, last = self.cfg, ""
        for attempt in range(cfg.retries + 1):
            if attempt:
                await asyncio.sleep(cfg.backoff * 2 ** (attempt - 1))
            try:  # the outer bound also catches a server that trickles bytes forever
                resp = await asyncio.wait_for(
                    client.post("/completions", json=body), cfg.timeout + cfg.connect_timeout
                )
            except (httpx.TimeoutException, asyncio.TimeoutError):
                last = f"no answer within {cfg.timeout:g} s"
                continue
            except httpx.ConnectError as exc:
                last = f"cannot connect: {exc!r}"
                continue
            except httpx.TransportError as exc:  # e.g. the server died in mid-answer
                last = f"the connection broke: {exc!r}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code != 200:
                raise ServerError(
                    f"{cfg.base_url} refused the completion request "
                    f"(HTTP {resp.status_code}): {resp.text[:500]}"
                )
            try:
                return resp.json()
            except ValueError as exc:
                raise ServerError(f"{cfg.base_url} answered with invalid JSON: {exc}") from exc
        raise ServerError(f"{cfg.base_url} failed after {cfg.retries + 1} tries: {last}")


def _body(cfg: ServerConfig, req: GenerationRequest, seed: int) -> dict[str, Any]:
    params = req.params
    return {
        "model": cfg.model,
        "prompt": list(req.prefix),
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "logprobs": cfg.top_logprobs,
        "return_tokens_as_token_ids": True,
        "stop_token_ids": list(params.stop_token_ids),
        "stop": list(params.stop),
        "include_stop_str_in_output": True,
        "skip_special_tokens": True,
        "seed": seed,
    }


def parse_completion(
    payload: dict[str, Any], top_k: int = 20, vocab_size: int | None = None
) -> Generation:
    """A ``Generation`` from one ``/completions`` answer, or a ``ServerError`` saying why not.

    vLLM adds the sampled token to a position's ``top_logprobs`` when it is not among the top
    ``top_k``; the entropy estimate uses the top ``top_k`` only."""
    try:
        choice = payload["choices"][0]
        lp = choice["logprobs"]
        tokens, chosen, tops = lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]
        ids = tuple(_token_id(t) for t in tokens)
        logprobs = tuple(float(x) for x in chosen)
        entropies = tuple(
            topk_entropy(sorted(t.values(), reverse=True)[:top_k], vocab_size) for t in tops
        )
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        text = str(choice.get("text", ""))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ServerError(
            f"the completion answer lacks token ids or log-probs ({exc!r}); the server must "
            f"support `logprobs` and `return_tokens_as_token_ids`: {str(payload)[:300]}"
        ) from exc
    if not len(ids) == len(logprobs) == len(entropies):
        raise ServerError("the completion answer's tokens and log-probs differ in length")
    return Generation(ids, text, logprobs, entropies, finish, entropy_exact=False)


def _token_id(token: str) -> int:
    if not token.startswith(_TOKEN_PREFIX):
        raise ValueError(f"token {token!r} is not of the form 'token_id:N'")
    return int(token[len(_TOKEN_PREFIX) :])


def _run_in_thread(coro) -> list[Generation]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, name="branchgym-openai", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
