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

Training through a vLLM server hands it new weights with ``sync_weights(model, version)``
(``branchgym.agents.weightsync``): they are written to ``weights_dir/v<version>``, which the
server must read at the same path, and loaded by ``POST /collective_rpc`` (the worker extension
``branchgym.agents.vllm_worker``), then ``/reset_prefix_cache`` and ``/update_weight_version``.
Those endpoints exist only on a server started with ``VLLM_SERVER_DEV_MODE=1`` and
``--worker-extension-cls branchgym.agents.vllm_worker.WeightSyncWorker``; without them, or
with the server down, the sync raises a ``ServerError`` that says which.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from branchgym.agents.entropy import topk_entropy
from branchgym.agents.policy import Generation, GenerationRequest
from branchgym.agents.vllm_worker import EXTENSION, LOAD_METHOD, PING_METHOD
from branchgym.agents.weightsync import prune_versions, write_weights

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
    sync_timeout: float = 600.0  # seconds for the server to load new weights


class OpenAIPolicy:
    """Generates through an OpenAI-compatible server; ``vocab_size`` is the model's |V|.

    ``weights_dir`` (for ``sync_weights``) is a folder the server reads at the same path;
    ``mirrors`` are policies on other servers that load every version this one loads.
    ``version`` is the policy version the server samples with: None until the first sync."""

    def __init__(
        self,
        cfg: ServerConfig,
        vocab_size: int | None = None,
        seed: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
        weights_dir: str | Path | None = None,
        mirrors: Sequence[OpenAIPolicy] = (),
    ) -> None:
        self.cfg = cfg
        self.mirrors = list(mirrors)  # other servers that take every weight update too
        self.vocab_size = vocab_size
        self._rng = random.Random(seed)
        self._transport = transport  # httpx.MockTransport in unit tests
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.version: int | None = None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        seeds = [self._rng.randrange(2**31) for _ in requests]
        return _run(self.agenerate(requests, seeds))

    # -- weights

    @property
    def server_root(self) -> str:
        """The server's address without the ``/v1`` of the OpenAI routes."""
        root = self.cfg.base_url.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root

    def check_weight_sync(self) -> None:
        """Raise ``ServerError`` unless the server can take weights (dev mode and the worker
        extension): asked before a run spends time on SFT."""
        _run(self._admin([("/collective_rpc", {"method": PING_METHOD})]))

    def sync_weights(self, model: Any, version: int) -> None:
        """Sample with ``model``'s weights from now on (``branchgym.agents.weightsync``)."""
        if self.weights_dir is None:
            raise ValueError(
                "OpenAIPolicy.sync_weights needs weights_dir: a folder the server reads at the "
                "same path (branchgym train: backend.weights_dir, default <run>/generator)"
            )
        self.load_weights(write_weights(model, self.weights_dir, version), version)

    def load_weights(self, folder: str | Path, version: int) -> None:
        """Have the server load the Hugging Face checkpoint in ``folder`` (a path it reads),
        reset its prefix cache and take ``version`` as its weight version."""
        rpc = {"method": LOAD_METHOD, "kwargs": {"weights_path": str(folder)}}
        calls = [
            ("/collective_rpc", rpc | {"timeout": self.cfg.sync_timeout}),
            ("/reset_prefix_cache", None),
            ("/update_weight_version", {"new_version": str(version)}),
        ]
        _run(self._admin(calls))
        self.version = version
        for mirror in self.mirrors:  # the other servers (--ray spreads workers over them)
            mirror.load_weights(folder, version)
        if self.weights_dir is not None and Path(folder).parent == self.weights_dir.resolve():
            prune_versions(self.weights_dir, Path(folder))

    async def _admin(self, calls: list[tuple[str, dict | None]]) -> list[Any]:
        root, out = self.server_root, []
        timeout = httpx.Timeout(self.cfg.sync_timeout, connect=self.cfg.connect_timeout)
        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else {}
        async with httpx.AsyncClient(
            base_url=root, headers=headers, timeout=timeout, transport=self._transport
        ) as client:
            for path, body in calls:
                try:
                    resp = await client.post(path, json=body)
                except httpx.TimeoutException:
                    raise ServerError(
                        f"{root}{path}: no answer within {self.cfg.sync_timeout:g} s"
                    ) from None
                except httpx.TransportError as exc:
                    raise ServerError(
                        f"cannot reach {root} to hand it new weights ({path}): {exc!r}"
                    ) from None
                _check_admin(root, path, resp)
                out.append(resp.json() if resp.content else None)
        return out

    def reset_cache(self) -> None:
        """Nothing to do: ``load_weights`` resets the server's prefix cache."""

    def reseed(self, seed: int) -> None:
        """Restart the sampling seeds' stream from ``seed``."""
        self._rng = random.Random(seed)

    def sampler_state(self) -> Any:
        return self._rng.getstate()

    def set_sampler_state(self, state: Any) -> None:
        self._rng.setstate(state)

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


def _check_admin(root: str, path: str, resp: httpx.Response) -> None:
    """A ``ServerError`` in one line for a weight-update call the server refused."""
    if resp.status_code == 404:
        raise ServerError(
            f"{root}{path} does not exist (HTTP 404): start the vLLM server with "
            "VLLM_SERVER_DEV_MODE=1, which opens its weight-update endpoints"
        )
    text = resp.text[:400]
    if resp.status_code != 200 and ("branchgym_" in text or "not implemented" in text.lower()):
        raise ServerError(
            f"{root} lacks branchgym's vLLM worker extension: start the server with "
            f"--worker-extension-cls {EXTENSION}"
        )
    if resp.status_code != 200:
        raise ServerError(f"{root}{path} refused (HTTP {resp.status_code}): {text}")
    if path == "/reset_prefix_cache" and not resp.json().get("success", False):
        raise ServerError(f"{root} did not reset its prefix cache (requests still running?)")


def _run(coro):
    try:
        asyncio.get_running_loop()
        inside_loop = True
    except RuntimeError:
        inside_loop = False
    # Called from inside an event loop, run in a thread of its own rather than block it.
    return _run_in_thread(coro) if inside_loop else asyncio.run(coro)


def _run_in_thread(coro) -> Any:
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
