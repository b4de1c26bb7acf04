"""``branchgym/WebShop-v0``: find and buy what an instruction describes, on a real web shop.

The environment is a browser without a screen. It talks to the site (``site.py``, Starlette
served by uvicorn on 127.0.0.1) through httpx, and reads each HTML page in WebShop's text
mode (``render.py``): clickables in brackets, one line per block. Actions are WebShop's:
``search[key words]`` on the search page and ``click[label]`` for any bracketed label
(``click[B0K3X9...]``, ``click[red]``, ``click[Next >]``, ``click[Buy Now]``). Buying ends the
episode with WebShop's reward (``reward.py``); every other step scores 0. A malformed or
impossible action never raises: the observation says what was wrong, followed by the page,
and ``valid_action`` is False.

``info`` carries ``instruction``, ``admissible_commands`` (the page's clicks, and
``search[<query>]`` where there is a search bar), ``expert_plan`` (the oracle's remaining
actions: search the instruction's key words, turn to the target's page, open it, choose each
option, buy), ``won`` (reward 1) and ``valid_action``.

With no ``base_url`` the environment starts its own server on an ephemeral port and stops it
in ``close()``. The episode's state lives in the server's session; ``snapshot()`` holds the
session's JSON state and ``restore()`` starts a fresh session from it. Any failure of the
server (refused connection, timeout, an error status) raises ``ToolError`` naming the URL.
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import httpx

from branchgym.envs.errors import ToolError
from branchgym.envs.webshop.catalogue import PER_PAGE, Catalogue, build_catalogue, search, terms
from branchgym.envs.webshop.instructions import Instruction, make_instruction, split_of_seed
from branchgym.envs.webshop.render import Page, parse_page
from branchgym.trajectory import TaskRef

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)
SEARCH_TEMPLATE = "search[<query>]"
_ACTION = re.compile(r"\s*(search|click)\[(.*)\]\s*", re.IGNORECASE | re.DOTALL)
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class WebShopSnapshot:
    """A session's state as the site reported it (JSON text), and the last observation."""

    state: str
    obs: str


def expert_plan(cat: Catalogue, goal: Instruction, state: dict[str, Any]) -> list[str]:
    """The oracle's remaining actions from ``state``: they buy the target with the goal's
    options, which scores 1. It reuses the item or results page it is on where it can."""
    view, on_target = state["view"], state["asin"] == goal.asin
    if view == "done":
        return []
    chosen = state["options"] if on_target else {}
    finish = [f"click[{v}]" for n, v in goal.options if chosen.get(n) != v] + ["click[Buy Now]"]
    if view in ("item", "sub") and on_target:
        return (["click[< Prev]"] if view == "sub" else []) + finish
    fresh = [f"click[{v}]" for _, v in goal.options] + ["click[Buy Now]"]
    if view == "results" and goal.asin in (hits := search(cat.seed, state["query"])):
        pages = _turn_pages(state["page"], hits.index(goal.asin))
        return [*pages, f"click[{goal.asin}]", *fresh]
    back = [] if view == "search" else ["click[Back to Search]"]
    query = oracle_query(cat, goal)
    index = search(cat.seed, query).index(goal.asin)
    return [*back, f"search[{query}]", *_turn_pages(1, index), f"click[{goal.asin}]", *fresh]


def oracle_query(cat: Catalogue, goal: Instruction) -> str:
    """The instruction's key words; the target's title in the rare case they do not list it
    among the top results."""
    if goal.asin in search(cat.seed, goal.query):
        return goal.query
    return cat.by_asin[goal.asin].title


def _turn_pages(page: int, index: int) -> list[str]:
    delta = index // PER_PAGE + 1 - page
    return ["click[Next >]"] * delta if delta > 0 else ["click[< Prev]"] * -delta


class WebShopEnv(gym.Env[str, str]):
    """WebShop: search a real web shop over HTTP and buy what the instruction describes."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        base_url: str | None = None,
        catalogue_seed: int = 0,
        timeout_s: float = 5.0,
        render_mode: str | None = None,
    ) -> None:
        """``base_url``: a running site to browse (its catalogue seed wins); without it the
        env serves the catalogue of ``catalogue_seed`` itself. ``timeout_s`` bounds each
        connect, read and write, so a hung server becomes a ``ToolError``, not a hang."""
        from branchgym.envs.webshop.site import ShopServer

        self.observation_space = self.action_space = TEXT
        self.render_mode, self.timeout_s = render_mode, timeout_s
        self._server = None if base_url else ShopServer(catalogue_seed)
        self.base_url = (base_url or self._server.start()).rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s), trust_env=False
        )
        self._sid: str | None = None
        self._state: dict[str, Any] = {}
        self._page = Page("", (), None)
        self._last = ""
        try:
            seed = self._call("GET", "/api/info").json()["catalogue_seed"]
        except Exception:
            self.close()
            raise
        self.catalogue = build_catalogue(seed)

    # -- the gymnasium API ---------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if isinstance(task, TaskRef):
            episode, split = task.seed, task.split
        elif seed is not None:
            episode, split = seed, split_of_seed(seed)
        else:
            episode, split = int(self.np_random.integers(2**31)), "train"
        self._end_session()
        body = {"seed": episode, "split": split}
        self._enter(self._call("POST", "/api/sessions", json=body).json()["sid"])
        self._last = self._page.text
        return self._last, self._info(valid=True)

    def step(self, action: str):
        self._require()
        if self._state["view"] == "done":
            return self._invalid("The episode is over: the order is placed. Call reset().")
        move = self._resolve(action)
        if isinstance(move, str):
            return self._invalid(move)
        method, url, params = move
        self._page = parse_page(self._call(method, url, params=params).text)
        self._state = self._fetch_state()
        self._last = self._page.text
        done = self._state["view"] == "done"
        reward = float(self._state["reward"]) if done else 0.0
        return self._last, reward, done, False, self._info(valid=True)

    def snapshot(self) -> WebShopSnapshot:
        """The session's server-side state (as JSON text) and the last observation."""
        self._require()
        return WebShopSnapshot(json.dumps(self._state, sort_keys=True), self._last)

    def restore(self, snap: WebShopSnapshot) -> None:
        """Continue from ``snap`` in a fresh session of this env's server (any server with
        the same catalogue will do)."""
        self._end_session()
        body = {"state": json.loads(snap.state)}
        self._enter(self._call("POST", "/api/sessions", json=body).json()["sid"])
        self._last = snap.obs

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def close(self) -> None:
        """End the session, and stop the server if this env started it."""
        with contextlib.suppress(ToolError):  # a dead server has no session left to end
            self._end_session()
        self._http.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        super().close()

    # -- helpers -------------------------------------------------------------------------

    @property
    def goal(self) -> Instruction:
        """The current episode's instruction (the same one the site scores against)."""
        self._require()
        return make_instruction(self.catalogue, self._state["task_seed"], self._state["split"])

    def _resolve(self, action: Any) -> tuple[str, str, dict[str, str] | None] | str:
        """The request an action sends, or why it sends none."""
        match = _ACTION.fullmatch(action) if isinstance(action, str) else None
        if match is None:
            shown = ascii(action[:80]) if isinstance(action, str) else type(action).__name__
            return f"Invalid action {shown}: write search[key words] or click[a bracketed label]."
        verb, arg = match.group(1).lower(), " ".join(match.group(2).split())
        arg = _SURROGATES.sub("\ufffd", arg)  # no UTF-8 text holds a lone surrogate
        if verb == "search":
            if self._page.search_url is None:
                return "Invalid action: no search bar on this page; click[Back to Search] first."
            if not terms(arg):
                return "Invalid action: search[] needs key words, e.g. search[red lipstick]."
            return "GET", self._page.search_url, {self._page.search_field: arg}
        target = self._page.find(arg)
        if target is None:
            hint = " Use search[key words] to search." if self._page.search_url else ""
            return f"Invalid action: there is no [{ascii(arg)[1:-1][:80]}] on this page.{hint}"
        return target.method, target.url, None

    def _invalid(self, message: str):
        self._last = f"{message}\n{self._page.text}"
        done = self._state["view"] == "done"
        return self._last, 0.0, done, False, self._info(valid=False)

    def _info(self, valid: bool) -> dict[str, Any]:
        goal = self.goal
        clicks = dict.fromkeys(f"click[{c.text}]" for c in self._page.clickables)
        search_bar = [SEARCH_TEMPLATE] if self._page.search_url else []
        done = self._state["view"] == "done"
        return {
            "instruction": goal.text,
            "admissible_commands": search_bar + list(clicks) if not done else [],
            "expert_plan": expert_plan(self.catalogue, goal, self._state),
            "won": done and self._state["reward"] == 1.0,
            "valid_action": valid,
            "page": self._state["view"],
        }

    def _enter(self, sid: str) -> None:
        self._sid = sid
        self._page = parse_page(self._call("GET", f"/s/{sid}").text)
        self._state = self._fetch_state()

    def _fetch_state(self) -> dict[str, Any]:
        return self._call("GET", f"/api/sessions/{self._sid}").json()

    def _end_session(self) -> None:
        if self._sid is not None:
            sid, self._sid = self._sid, None
            self._call("DELETE", f"/api/sessions/{sid}")

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request to the site; every way it can fail becomes a ``ToolError``."""
        full = f"{self.base_url}{url}" if url.startswith("/") else url
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ToolError(
                f"WebShop server did not answer {method} {full} within {self.timeout_s} s "
                f"({type(exc).__name__}): is it hung?"
            ) from exc
        except httpx.HTTPError as exc:
            raise ToolError(
                f"WebShop server unreachable: {method} {full} failed with "
                f"{type(exc).__name__}: {exc}. Has it stopped?"
            ) from exc
        if response.status_code >= 400:
            raise ToolError(
                f"WebShop server answered {method} {full} with HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        return response

    def _require(self) -> None:
        if self._sid is None:
            raise gym.error.ResetNeeded("call reset() before step()")
