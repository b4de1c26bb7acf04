"""The trajectory store and the replay buffer on a real PostgreSQL server.

Four writer processes write groups into one run at once: none is lost and none duplicated.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from branchgym.rollouts.replay import ReplayBuffer, ReplayConfig
from branchgym.rollouts.store import StoreError, TrajectoryStore
from tests.test_attribution import GROUP as TREE
from tests.test_replay import SPEC, group
from tests.test_store import assert_rows_match_core_path

pytestmark = pytest.mark.postgres
WRITERS, GROUPS_EACH = 4, 25


def fresh_db(url: str) -> str:
    """A new, empty database on the server (no tables yet), so tests do not share rows."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with TrajectoryStore(url) as store, store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text(f"CREATE DATABASE {name}")
        )
    return url.rsplit("/", 1)[0] + f"/{name}"


def test_tree_round_trip(postgres_url):
    url = fresh_db(postgres_url)
    with TrajectoryStore(url) as store:
        store.create_run("r", {"db": "postgres"})
        gid = store.write_group("r", TREE)
        back = store.load_group(gid)
    assert back.trajectories == TREE.trajectories
    assert [(s.id, s.parent_id, s.kind, s.token_ids) for s in back.segments] == [
        (s.id, s.parent_id, s.kind, s.token_ids) for s in TREE.segments
    ]


def test_model_text_with_nul_characters_round_trips(postgres_url):
    """PostgreSQL refuses NUL in text columns; sampled text can hold it (a tiny model's bytes)."""
    from dataclasses import replace

    odd = "a\x00b \x1b0 \x1b\x1b end\x00"
    segments = tuple(replace(s, text=odd) if s.id == 1 else s for s in TREE.segments)
    tree = replace(TREE, segments=segments)
    with TrajectoryStore(fresh_db(postgres_url)) as store:
        store.create_run("r", {})
        back = store.load_group(store.write_group("r", tree))
    assert [s.text for s in back.segments] == [s.text for s in tree.segments]


def test_rows_match_the_core_insert_path(postgres_url):
    """Segments and trajectories go in by COPY on PostgreSQL: the same rows as Core inserts."""
    assert_rows_match_core_path(fresh_db(postgres_url), fresh_db(postgres_url))


def test_failed_write_leaves_nothing_and_unknown_run_is_refused(postgres_url):
    from dataclasses import replace

    bad = replace(TREE.trajectories[-1], tool_calls=2**40)  # out of the int4 column's range
    tree = replace(TREE, trajectories=(*TREE.trajectories[:-1], bad))
    with TrajectoryStore(fresh_db(postgres_url)) as store:
        store.create_run("r", {})
        with pytest.raises(DataError, match="out of range"):  # COPY's error, as SQLAlchemy's
            store.write_group("r", tree)
        with pytest.raises(StoreError, match="create_run"):
            store.write_group("nope", TREE)
        assert store.list_runs()[0].n_groups == 0
        gid = store.write_group("r", TREE)  # the connection is usable again
        assert store.load_group(gid).trajectories == TREE.trajectories


def _writer(url: str, worker: int, start) -> None:
    from dataclasses import replace

    start.wait()  # all four open the fresh database at once: tables are created in a race
    with TrajectoryStore(url) as store:
        store.create_run("shared", {})  # every writer races to create the same run
        for step in range(GROUPS_EACH):
            store.write_group("shared", replace(TREE, step=step, worker=f"w{worker}"))


def test_four_writer_processes_lose_and_duplicate_nothing(postgres_url):
    url = fresh_db(postgres_url)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(url, w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    with TrajectoryStore(url) as store:
        (run,) = store.list_runs()
        assert run.n_groups == WRITERS * GROUPS_EACH
        assert run.n_trajectories == WRITERS * GROUPS_EACH * len(TREE.trajectories)
        with store.engine.connect() as conn:
            pairs = conn.execute(text("SELECT worker, step FROM groups")).all()
    assert sorted(pairs) == sorted((f"w{w}", s) for w in range(WRITERS) for s in range(GROUPS_EACH))


def test_replay_buffer_on_postgres(postgres_url):
    url = fresh_db(postgres_url)
    with TrajectoryStore(url) as store:
        store.create_run("r", {})
        buffer = ReplayBuffer(store, "r", ReplayConfig(baseline_entries=2))
        for version, spec in enumerate(SPEC):
            buffer.admit([store.write_group("r", group(version, *spec))])
        assert len(buffer) == 5
        assert buffer.baseline()[0] == pytest.approx(0.375)  # trimmed to the last two groups
        assert buffer.evict(11) == 2
