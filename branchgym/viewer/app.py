"""The viewer's Starlette app: runs and their curves, a group's tree, a trajectory's entropy.

Every route is a GET that reads the store; nothing writes. Text from trajectories reaches the
page only through Jinja's autoescaping.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape
from sqlalchemy import case, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from branchgym.rollouts.schema import GroupRow, TrajectoryRow
from branchgym.rollouts.store import TrajectoryStore
from branchgym.trajectory import Group, Segment, SegmentKind
from branchgym.viewer.templates import TEMPLATES

_JINJA = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True))
_H_SCALE = 3.0  # nats at full colour


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_JINJA.get_template(name).render(**context), status_code=status)


def _curve(values: list[float]) -> str:
    """SVG polyline points of values in [0, 1], left to right (numbers only: safe to inline)."""
    if not values:
        return ""
    step = 260 / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{58 - 56 * v:.1f}" for i, v in enumerate(values))


@dataclass(frozen=True)
class _GroupInfo:
    id: int
    step: int
    env_id: str
    seed: int
    n: int
    best: float
    ends: str
    end_set: frozenset[str]


def _group_infos(store: TrajectoryStore, run_id: str) -> list[_GroupInfo]:
    query = (
        select(GroupRow.id, GroupRow.step, GroupRow.env_id, GroupRow.task_seed, TrajectoryRow)
        .join(TrajectoryRow, TrajectoryRow.group_id == GroupRow.id)
        .where(GroupRow.run_id == run_id)
        .order_by(GroupRow.id)
    )
    rows: dict[int, list] = defaultdict(list)
    meta: dict[int, tuple] = {}
    with store.sessions() as session:
        for gid, step, env_id, seed, traj in session.execute(query):
            rows[gid].append(traj)
            meta[gid] = (step, env_id, seed)
    infos = []
    for gid, trajs in rows.items():
        ends = Counter(t.end_reason for t in trajs)
        text = ", ".join(f"{k} {v}" for k, v in sorted(ends.items()))
        step, env_id, seed = meta[gid]
        best = max(t.ret for t in trajs)
        infos.append(_GroupInfo(gid, step, env_id, seed, len(trajs), best, text, frozenset(ends)))
    return infos


def _success_curve(store: TrajectoryStore, run_id: str) -> list[float]:
    """Share of won trajectories per step, aggregated in the database (a run can hold
    millions of trajectories; the page needs one number per step)."""
    query = (
        select(GroupRow.step, func.avg(case((TrajectoryRow.won, 1.0), else_=0.0)))
        .join(TrajectoryRow, TrajectoryRow.group_id == GroupRow.id)
        .where(GroupRow.run_id == run_id)
        .group_by(GroupRow.step)
        .order_by(GroupRow.step)
    )
    with store.sessions() as session:
        return [float(v) for _, v in session.execute(query)]


def _nodes(group: Group, traj_ids: list[int]) -> list[dict]:
    kids: dict[int | None, list[Segment]] = defaultdict(list)
    for seg in group.segments:
        kids[seg.parent_id].append(seg)
    leaves = {
        t.leaf_id: {"id": tid, "end": t.end_reason.value, "ret": t.ret, "adv": t.advantage}
        for t, tid in zip(group.trajectories, traj_ids, strict=True)
    }

    def node(seg: Segment) -> dict:
        model = seg.kind is SegmentKind.MODEL
        return {
            "kind": seg.kind.value,
            "tag": "act" if model else ("prompt" if seg.parent_id is None else "result"),
            "text": seg.text.strip()[:160],
            "mean_h": sum(seg.entropies) / len(seg.entropies) if model and seg.entropies else None,
            "branches": len(kids[seg.id]) if seg.parent_id is not None else 0,
            "leaf": leaves.get(seg.id),
            "children": [node(c) for c in kids[seg.id]],
        }

    return [node(root) for root in kids[None]]


def create_app(db_url: str, tokenizer: Any = None) -> Starlette:
    """The viewer for the store at ``db_url``; ``tokenizer`` adds token text to the heat map."""
    store = TrajectoryStore(db_url)

    async def index(request: Request) -> HTMLResponse:
        runs = [
            {
                "id": r.id,
                "created": r.created_at.strftime("%Y-%m-%d %H:%M"),
                "n_groups": r.n_groups,
                "n_trajectories": r.n_trajectories,
                "mean": "–" if r.mean_return is None else f"{r.mean_return:.3f}",
                "curve": _curve(_success_curve(store, r.id)),
            }
            for r in store.list_runs()
        ]
        return _page("index", title="runs", runs=runs)

    async def run(request: Request) -> HTMLResponse:
        run_id = request.path_params["run_id"]
        try:
            store.run_config(run_id)
        except KeyError:
            return _page("base", 404, title=f"no run {run_id}")
        q = request.query_params
        f = {k: q.get(k, "") for k in ("task", "min_return", "end_reason")}
        infos = _group_infos(store, run_id)
        ends = sorted({e for g in infos for e in g.end_set})
        shown = [g for g in infos if _matches(g, f)]
        points = _curve(_success_curve(store, run_id))
        return _page(
            "run", title=f"run {run_id}", groups=shown, f=f, end_reasons=ends, points=points
        )

    async def group(request: Request) -> HTMLResponse:
        gid = int(request.path_params["gid"])
        try:
            g = store.load_group(gid)
        except KeyError:
            return _page("base", 404, title=f"no group {gid}")
        tids = store.trajectory_ids(gid)
        run_id = store.locate_trajectory(tids[0])[0] if tids else "?"
        roots = _nodes(g, tids)
        return _page(
            "group", title=f"group {gid}", run=run_id, step=g.step, task=g.task, roots=roots
        )

    async def trajectory(request: Request) -> HTMLResponse:
        tid = int(request.path_params["tid"])
        try:
            run_id, gid, index = store.locate_trajectory(tid)
        except KeyError:
            return _page("base", 404, title=f"no trajectory {tid}")
        g = store.load_group(gid)
        traj = g.trajectories[index]
        turns = [_turn(seg, tokenizer) for seg in g.path(traj)]
        return _page("traj", title=f"trajectory {tid}", run=run_id, gid=gid, traj=traj, turns=turns)

    routes = [
        Route("/", index),
        Route("/run/{run_id:path}", run),
        Route("/group/{gid:int}", group),
        Route("/traj/{tid:int}", trajectory),
    ]
    return Starlette(routes=routes)


def _matches(g: _GroupInfo, f: dict[str, str]) -> bool:
    if f["task"] and f["task"] != str(g.seed):
        return False
    if f["end_reason"] and f["end_reason"] not in g.end_set:
        return False
    try:
        return not f["min_return"] or g.best >= float(f["min_return"])
    except ValueError:
        return True  # an unreadable number filters nothing


def _turn(seg: Segment, tokenizer: Any) -> dict:
    model = seg.kind is SegmentKind.MODEL
    tokens = []
    if model:
        for tok, h in zip(seg.token_ids, seg.entropies, strict=True):
            text = tokenizer.decode([tok]) if tokenizer is not None else ""
            alpha = min(1.0, (max(h, 0.0) / _H_SCALE) ** 0.5)  # sqrt: low entropies still show
            tokens.append({"h": h, "alpha": f"{alpha:.3f}", "text": text})
    tag = "act" if model else ("prompt" if seg.parent_id is None else "result")
    return {"kind": seg.kind.value, "tag": tag, "text": seg.text.strip(), "tokens": tokens}
