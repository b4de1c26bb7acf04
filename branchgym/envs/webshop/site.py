"""The WebShop site: a Starlette app, its session state, and the ways to serve it.

Where it sits: the far side of the loopback boundary. ``WebShopEnv`` browses it over HTTP
(httpx) exactly as a person does in a browser; ``serve()`` runs it in the foreground for
people, ``ShopServer`` in a background thread for an environment that starts its own.

Every session is one episode, kept server-side under a random id as a ``Session`` record:
the task (seed, split), the current view (search, results, item, sub-page, done), the query,
results page, item, chosen options and, once bought, the reward. A link is a GET that moves
the session (``/s/{sid}/item/B0...``) and answers with the new page; Buy Now is a POST.

The JSON API beside the pages is for programs, not people:
``POST /api/sessions`` with ``{"seed", "split"}`` starts a session, or with ``{"state"}``
starts one from a saved state (how an environment restores a snapshot into a fresh id);
``GET /api/sessions/{sid}`` returns the state; ``DELETE`` ends it; ``GET /api/info`` names
the catalogue seed.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from branchgym.envs.webshop import pages
from branchgym.envs.webshop.catalogue import Catalogue, build_catalogue, page_count, search
from branchgym.envs.webshop.instructions import Instruction, make_instruction
from branchgym.envs.webshop.reward import purchase_reward
from branchgym.tasks.suite import SPLIT_OFFSETS

VIEWS = ("search", "results", "item", "sub", "done")
MAX_SESSIONS = 10_000  # the oldest idle session goes first; branching makes many


class BadRequest(ValueError):
    """A request the site cannot follow: an unknown item, an option the item lacks."""


@dataclass(frozen=True)
class Session:
    """One episode's state; ``options`` pairs each chosen group with its value."""

    catalogue_seed: int
    task_seed: int
    split: str
    view: str = "search"
    query: str = ""
    page: int = 1
    asin: str = ""
    options: tuple[tuple[str, str], ...] = ()
    sub: str = ""
    reward: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any], cat: Catalogue) -> Session:
        """A session from its JSON state, checked against the catalogue: a snapshot from a
        site with another catalogue, or a hand-edited one, is refused, not half-restored."""
        try:
            state = cls(**{**data, "options": tuple(dict(data["options"]).items())})
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"not a session state: {exc}") from exc
        problem = _problem(state, cat)
        if problem:
            raise BadRequest(f"not a session state of this site: {problem}")
        return state


_TYPES: dict[str, type | tuple[type, ...]] = {
    "catalogue_seed": int, "task_seed": int, "split": str, "view": str, "query": str,
    "page": int, "asin": str, "sub": str, "reward": (int, float, type(None)),
}  # fmt: skip


def _problem(s: Session, cat: Catalogue) -> str:
    """What makes ``s`` impossible on this site ("" when nothing does)."""
    wrong = [k for k, t in _TYPES.items() if not isinstance(getattr(s, k), t)]
    offered = dict(cat.by_asin[s.asin].options) if s.asin in cat.by_asin else {}
    if wrong:
        return f"bad types for {wrong}"
    if s.catalogue_seed != cat.seed:
        return f"state is for catalogue {s.catalogue_seed}, not {cat.seed}"
    if s.view not in VIEWS or s.split not in SPLIT_OFFSETS:
        return f"bad view {s.view!r} or split {s.split!r}"
    if (s.asin or s.view in ("item", "sub", "done")) and s.asin not in cat.by_asin:
        return f"no item {s.asin!r}"
    if any(v not in offered.get(n, ()) for n, v in s.options):
        return f"item {s.asin} does not offer {dict(s.options)}"
    if (s.view == "sub") != (s.sub in pages.SUB_PAGES) or (s.view == "done") == (s.reward is None):
        return f"view {s.view!r} does not fit sub-page {s.sub!r} and reward {s.reward!r}"
    return ""


# -- transitions: one pure function per link; a finished session stays finished ----------


def go_search(s: Session, query: str) -> Session:
    return replace(s, view="results", query=query, page=1, asin="", options=(), sub="")


def go_results(s: Session, page: int) -> Session:
    pages_ = page_count(len(search(s.catalogue_seed, s.query)))
    return replace(s, view="results", page=min(max(1, page), pages_), asin="", options=(), sub="")


def go_home(s: Session) -> Session:
    return replace(s, view="search", query="", page=1, asin="", options=(), sub="")


def go_item(s: Session, asin: str, cat: Catalogue) -> Session:
    """A fresh item page from the results: no option chosen yet, as in WebShop."""
    if asin not in cat.by_asin:
        raise BadRequest(f"no item {asin}")
    return replace(s, view="item", asin=asin, options=(), sub="")


def _current(s: Session) -> str:
    if not s.asin:
        raise BadRequest("no item is open")
    return s.asin


def go_back_to_item(s: Session, cat: Catalogue) -> Session:
    _current(s)
    return replace(s, view="item", sub="")


def choose(s: Session, name: str, value: str, cat: Catalogue) -> Session:
    offered = dict(cat.by_asin[_current(s)].options)
    if value not in offered.get(name, ()):
        raise BadRequest(f"item {s.asin} offers no {name} {value!r}")
    chosen = {**dict(s.options), name: value}
    ordered = tuple((n, chosen[n]) for n in offered if n in chosen)
    return replace(s, view="item", options=ordered, sub="")


def go_sub(s: Session, name: str, cat: Catalogue) -> Session:
    _current(s)
    if name not in pages.SUB_PAGES:
        raise BadRequest(f"no sub-page {name!r}")
    return replace(s, view="sub", sub=name)


def buy(s: Session, cat: Catalogue) -> Session:
    product = cat.by_asin[_current(s)]
    parts = purchase_reward(product, dict(s.options), goal_of(s, cat))
    return replace(s, view="done", sub="", reward=parts.total)


def goal_of(s: Session, cat: Catalogue) -> Instruction:
    return make_instruction(cat, s.task_seed, s.split)


def render(sid: str, s: Session, cat: Catalogue) -> str:
    """The HTML of the session's current view."""
    goal = goal_of(s, cat)
    if s.view == "results":
        hits = search(cat.seed, s.query)
        return pages.results_page(sid, goal, hits, s.page, cat.by_asin)
    if s.view == "search" or not s.asin:
        return pages.search_page(sid, goal)
    product, chosen = cat.by_asin[s.asin], dict(s.options)
    if s.view == "item":
        return pages.item_page(sid, goal, product, chosen, s.page)
    if s.view == "sub":
        return pages.sub_page(sid, goal, product, s.sub)
    return pages.done_page(goal, product, chosen, s.reward or 0.0)


# -- the app ------------------------------------------------------------------------------


class Sessions:
    """Session states by id, oldest evicted first once ``MAX_SESSIONS`` are held."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def add(self, s: Session) -> str:
        sid = secrets.token_hex(8)
        self._by_id[sid] = s
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid

    def get(self, sid: str) -> Session | None:
        if sid in self._by_id:
            self._by_id.move_to_end(sid)
        return self._by_id.get(sid)

    def put(self, sid: str, s: Session) -> None:
        self._by_id[sid] = s

    def drop(self, sid: str) -> bool:
        return self._by_id.pop(sid, None) is not None


Move = Callable[[Session, Request, Catalogue], Session]

_MOVES: dict[str, Move] = {
    "search": lambda s, r, c: go_search(s, r.query_params.get("q", "")),
    "results": lambda s, r, c: go_results(s, _int(r.query_params.get("page", "1"))),
    "home": lambda s, r, c: go_home(s),
    "item": lambda s, r, c: go_back_to_item(s, c),
    "option": lambda s, r, c: choose(
        s, r.query_params.get("name", ""), r.query_params.get("value", ""), c
    ),
}


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise BadRequest(f"not a number: {text!r}") from exc


def _page(sid: str, sessions: Sessions, move: Callable[[Session], Session]) -> Response:
    """Apply ``move`` to session ``sid`` (unless it is finished) and answer its new page."""
    s = sessions.get(sid)
    if s is None:
        return HTMLResponse(pages.error_page(f"unknown session {sid}"), status_code=404)
    try:
        s = s if s.view == "done" else move(s)
    except BadRequest as exc:
        return HTMLResponse(pages.error_page(str(exc)), status_code=400)
    sessions.put(sid, s)
    return HTMLResponse(render(sid, s, sessions.cat))


def _page_routes(sessions: Sessions) -> list[Route]:
    cat = sessions.cat

    async def view(request: Request) -> Response:
        sid, name = request.path_params["sid"], request.path_params.get("move", "")
        if name not in _MOVES and name != "":
            return HTMLResponse(pages.error_page(f"no page {name!r}"), status_code=404)
        return _page(sid, sessions, lambda s: _MOVES[name](s, request, cat) if name else s)

    async def item(request: Request) -> Response:
        asin = request.path_params["asin"]
        return _page(request.path_params["sid"], sessions, lambda s: go_item(s, asin, cat))

    async def sub(request: Request) -> Response:
        name = request.path_params["name"]
        return _page(request.path_params["sid"], sessions, lambda s: go_sub(s, name, cat))

    async def purchase(request: Request) -> Response:
        return _page(request.path_params["sid"], sessions, lambda s: buy(s, cat))

    return [
        Route("/s/{sid}", view),
        Route("/s/{sid}/item/{asin}", item),
        Route("/s/{sid}/sub/{name}", sub),
        Route("/s/{sid}/buy", purchase, methods=["POST"]),
        Route("/s/{sid}/{move}", view),
    ]


def _api_routes(sessions: Sessions) -> list[Route]:
    cat = sessions.cat

    async def create(request: Request) -> Response:
        try:
            body = await request.json()
            if "state" in body:
                s = Session.from_json(body["state"], cat)
            else:
                s = _new_session(cat, body["seed"], body["split"])
        except (BadRequest, KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        return JSONResponse({"sid": sessions.add(s)}, status_code=201)

    async def state(request: Request) -> Response:
        sid = request.path_params["sid"]
        if request.method == "DELETE":
            return JSONResponse({"deleted": sessions.drop(sid)})
        s = sessions.get(sid)
        if s is None:
            return JSONResponse({"error": f"unknown session {sid}"}, status_code=404)
        return JSONResponse(s.to_json())

    async def info(request: Request) -> Response:
        return JSONResponse({"catalogue_seed": cat.seed, "products": len(cat.products)})

    return [
        Route("/api/info", info),
        Route("/api/sessions", create, methods=["POST"]),
        Route("/api/sessions/{sid}", state, methods=["GET", "DELETE"]),
    ]


def _new_session(cat: Catalogue, seed: Any, split: Any) -> Session:
    if not isinstance(seed, int) or split not in SPLIT_OFFSETS:
        raise BadRequest(f"seed must be an integer and split one of {sorted(SPLIT_OFFSETS)}")
    return Session(catalogue_seed=cat.seed, task_seed=seed, split=split)


def create_app(catalogue_seed: int = 0) -> Starlette:
    """The shop over the catalogue of ``catalogue_seed``, with its own session store."""
    sessions = Sessions(build_catalogue(catalogue_seed))

    async def landing(request: Request) -> Response:
        return HTMLResponse(pages.landing_page(tuple(SPLIT_OFFSETS)))

    async def start(request: Request) -> Response:
        q = request.query_params
        try:
            seed = _int(q.get("seed", "")) if q.get("seed") else secrets.randbelow(10**6)
            sid = sessions.add(_new_session(sessions.cat, seed, q.get("split", "train")))
        except BadRequest as exc:
            return HTMLResponse(pages.error_page(str(exc)), status_code=400)
        return RedirectResponse(f"/s/{sid}", status_code=303)

    routes = [Route("/", landing), Route("/start", start)]
    return Starlette(routes=routes + _api_routes(sessions) + _page_routes(sessions))


# -- serving ------------------------------------------------------------------------------


def serve(host: str = "127.0.0.1", port: int = 3000, catalogue_seed: int = 0) -> None:
    """Run the shop in the foreground (blocking) for a browser: open http://HOST:PORT/."""
    import uvicorn

    print(f"WebShop (catalogue {catalogue_seed}) on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(create_app(catalogue_seed), host=host, port=port, log_level="warning")


class ShopServer:
    """The shop on an ephemeral loopback port, served by uvicorn in a daemon thread: what an
    environment starts for itself when it is given no ``base_url``."""

    def __init__(self, catalogue_seed: int = 0, host: str = "127.0.0.1") -> None:
        import uvicorn

        self._sock = socket.socket()
        self._sock.bind((host, 0))  # bound here, so the port is known before the thread runs
        port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            create_app(catalogue_seed), log_level="warning", lifespan="off",
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name=f"webshop-{port}",
        )  # fmt: skip

    def start(self, timeout_s: float = 20.0) -> str:
        """Start serving; returns the base URL once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the WebShop server at {self.url} did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        """Stop serving and wait (a few seconds at most) for the thread to end."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
