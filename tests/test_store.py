"""Tests for the SQL trajectory store: round-trips, atomic writes, run listing, engine setup."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from branchgym.rollouts import schema
from branchgym.rollouts.schema import GroupRow, SegmentRow, TrajectoryRow
from branchgym.rollouts.store import StoreError, TrajectoryStore
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory


def make_group(step: int = 0, rets: tuple[float, float] = (1.0, 0.0)) -> Group:
    """A branched tree: env prompt 0 -> model 1 -> env obs 2 -> model 3, and model 4 off 0."""
    segments = (
        Segment(0, None, SegmentKind.ENV, (101, 102, 103), "Find the capital of France."),
        Segment(
            1,
            0,
            SegmentKind.MODEL,
            (7, 8, 9, 10),
            '<tool>search("capital of France")</tool>',
            logprobs=(-0.1, -0.2345678, -1.5, -0.0001),
            entropies=(0.3, 0.71, 1.234567, 0.0),
            entropy_exact=False,
        ),
        Segment(
            2, 1, SegmentKind.ENV, (201, 202), "Paris is the capital of France.", tool_result=True
        ),
        Segment(
            3,
            2,
            SegmentKind.MODEL,
            (11, 12),
            "<answer>Paris</answer>",
            logprobs=(-0.05, -0.3),
            entropies=(0.2, 0.1),
            reward=1.0,
            end_reason=EndReason.ANSWERED,
        ),
        Segment(
            4,
            0,
            SegmentKind.MODEL,
            (13, 14, 15),
            "<answer>Lyon</answer>",
            logprobs=(-2.0, -0.7, -0.9),
            entropies=(1.1, 0.9, 0.4),
            end_reason=EndReason.ANSWERED,
        ),
    )
    trajectories = (
        Trajectory(3, (0, 1, 2, 3), rets[0], EndReason.ANSWERED, 0.7071, True, 2, 1),
        Trajectory(4, (0, 4), rets[1], EndReason.ANSWERED, -0.7071, False, 1, 0),
    )
    task = TaskRef("search-qa", 1234, "train", "qa", "Find the capital of France.")
    return Group(task, step, 5, segments, trajectories, worker="w0")


@pytest.fixture
def store(tmp_path: Path):
    with TrajectoryStore(f"sqlite:///{tmp_path / 'runs.db'}") as s:
        s.create_run("r1", {"lr": 1e-6, "algo": "aepo"}, code_version="abc123")
        yield s


def count_rows(store: TrajectoryStore) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (GroupRow.__table__, SegmentRow.__table__, TrajectoryRow.__table__)
        )


def core_write(store: TrajectoryStore, run_id: str, group: Group) -> None:
    """Write ``group`` the way the store did before its rows bypassed SQLAlchemy's parameter
    processing: Core ``executemany`` inserts of ``schema``'s values."""
    with store.sessions.begin() as session:
        row = schema.group_row(run_id, group)
        session.add(row)
        session.flush()
        segs = [schema.segment_values(s, i) for i, s in enumerate(group.segments)]
        trajs = [schema.trajectory_values(t) for t in group.trajectories]
        for table, rows in ((SegmentRow, segs), (TrajectoryRow, trajs)):
            session.execute(insert(table), [{"group_id": row.id, **r} for r in rows])


def stored_rows(store: TrajectoryStore) -> dict[str, list[tuple]]:
    """Every row of the group tables (on SQLite with each value's storage class)."""
    out = {}
    with store.engine.connect() as conn:
        for table in (GroupRow.__table__, SegmentRow.__table__, TrajectoryRow.__table__):
            order = table.primary_key.columns
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
            if conn.dialect.name == "sqlite":
                kinds = select(*(func.typeof(c) for c in table.columns)).order_by(*order)
                out[table.name + " types"] = [tuple(r) for r in conn.execute(kinds)]
    return out


def assert_rows_match_core_path(url_a: str, url_b: str) -> None:
    """The store's own write and ``core_write`` leave the same rows in two fresh databases."""
    from tests.test_attribution import GROUP as TREE

    odd = "tab\tnew\nline back\\slash %s %(x)s ? ' \" \x00 \x1b ü\r"
    base = make_group()
    texts = Group(
        base.task, 1, 5, tuple(replace(s, text=odd) for s in base.segments), base.trajectories
    )
    with TrajectoryStore(url_a) as a, TrajectoryStore(url_b) as b:
        for store in (a, b):
            store.create_run("r", {})
        for group in (base, TREE, texts):
            a.write_group("r", group)
            core_write(b, "r", group)
        assert stored_rows(a) == stored_rows(b)


def test_rows_match_the_core_insert_path(tmp_path: Path) -> None:
    assert_rows_match_core_path(f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")


def test_round_trip_preserves_structure(store: TrajectoryStore) -> None:
    group = make_group()
    loaded = store.load_group(store.write_group("r1", group))

    assert loaded.task == group.task
    assert (loaded.step, loaded.policy_version, loaded.worker) == (0, 5, "w0")
    assert [s.id for s in loaded.segments] == [0, 1, 2, 3, 4]
    for got, want in zip(loaded.segments, group.segments, strict=True):
        assert got.parent_id == want.parent_id
        assert got.kind is want.kind
        assert got.token_ids == want.token_ids
        assert got.text == want.text
        assert got.end_reason == want.end_reason
        assert got.entropy_exact == want.entropy_exact
        assert got.tool_result == want.tool_result
        assert got.reward == want.reward
        assert isinstance(got.token_ids, tuple) and isinstance(got.logprobs, tuple)
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-6)
        assert got.entropies == pytest.approx(want.entropies, abs=1e-6)
    # Scalars are float64 columns: exact, not approximate.
    assert loaded.trajectories == group.trajectories
    assert loaded.returns == group.returns
    assert [loaded.path(t) for t in loaded.trajectories]  # every path resolves


def test_round_trip_is_exact_for_float32_values(store: TrajectoryStore) -> None:
    seg = Segment(
        1, 0, SegmentKind.MODEL, (5, 6), "hi", logprobs=(-0.5, -0.25), entropies=(1.0, 0.125)
    )
    root = Segment(0, None, SegmentKind.ENV, (), "")
    group = Group(
        TaskRef("e", 1),
        step=3,
        policy_version=0,
        segments=(root, seg),
        trajectories=(Trajectory(1, (0, 1), 0.1 + 0.2, EndReason.LENGTH, advantage=1 / 3),),
    )
    assert store.load_group(store.write_group("r1", group)) == group


def test_segment_order_is_preserved(store: TrajectoryStore) -> None:
    base = make_group()
    shuffled = Group(
        base.task, 0, 5, tuple(reversed(base.segments)), base.trajectories, worker="w0"
    )
    loaded = store.load_group(store.write_group("r1", shuffled))
    assert [s.id for s in loaded.segments] == [4, 3, 2, 1, 0]


def test_failure_mid_group_leaves_nothing(
    store: TrajectoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(traj: Trajectory) -> dict:
        raise RuntimeError("disk on fire")

    # Raises after the group row was flushed inside the transaction.
    monkeypatch.setattr(schema, "trajectory_values", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.write_group("r1", make_group())
    assert count_rows(store) == (0, 0, 0)


def test_unstorable_value_leaves_nothing(store: TrajectoryStore) -> None:
    base = make_group()
    bad = Segment(5, 3, SegmentKind.ENV, (2**40,), "overflow")
    group = Group(base.task, 0, 5, (*base.segments, bad), base.trajectories)
    with pytest.raises(ValueError, match="int32"):
        store.write_group("r1", group)
    assert count_rows(store) == (0, 0, 0)
    assert store.groups("r1") == []


def test_nan_return_is_rejected_atomically(store: TrajectoryStore) -> None:
    # SQLite stores NaN as NULL, which the NOT NULL return column refuses.
    with pytest.raises(SQLAlchemyError, match="NOT NULL"):
        store.write_group("r1", make_group(rets=(math.nan, 0.0)))
    assert count_rows(store) == (0, 0, 0)


def test_unknown_run_is_refused(store: TrajectoryStore) -> None:
    with pytest.raises(StoreError, match="create_run"):
        store.write_group("nope", make_group())
    assert count_rows(store) == (0, 0, 0)


def test_write_groups_and_step_filter(store: TrajectoryStore) -> None:
    ids = store.write_groups("r1", [make_group(0), make_group(0), make_group(1)])
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert store.groups("r1") == ids
    assert store.groups("r1", step=0) == ids[:2]
    assert store.groups("r1", step=1) == ids[2:]
    assert store.groups("other") == []
    rows = store.trajectory_rows("r1", step=1)
    assert [(r.group_id, r.leaf_id, r.won) for r in rows] == [(ids[2], 3, True), (ids[2], 4, False)]


def test_list_runs_counts(store: TrajectoryStore) -> None:
    store.create_run("r2", {})
    store.write_groups("r1", [make_group(rets=(1.0, 0.0)), make_group(rets=(1.0, 1.0))])
    runs = {r.id: r for r in store.list_runs()}
    assert set(runs) == {"r1", "r2"}
    assert (runs["r1"].n_groups, runs["r1"].n_trajectories) == (2, 4)
    assert runs["r1"].mean_return == pytest.approx(0.75)
    assert (runs["r2"].n_groups, runs["r2"].n_trajectories, runs["r2"].mean_return) == (0, 0, None)
    assert runs["r1"].created_at is not None


def test_create_run_is_idempotent(store: TrajectoryStore) -> None:
    store.create_run("r1", {"lr": 99.0}, code_version="other")
    store.create_run("r1", {"lr": 99.0})
    assert [r.id for r in store.list_runs()] == ["r1"]
    assert store.run_config("r1") == {"lr": 1e-6, "algo": "aepo"}  # first config wins


def test_load_unknown_group_raises(store: TrajectoryStore) -> None:
    with pytest.raises(KeyError):
        store.load_group(12345)


@pytest.mark.parametrize(
    "url",
    [
        "not a url at all",
        "nosuchdialect://user:hunter2@host/db",
        "postgresql://alice:hunter2@127.0.0.1:1/branchgym",
    ],
)
def test_bad_url_raises_store_error(url: str) -> None:
    with pytest.raises(StoreError) as info:
        TrajectoryStore(url)
    message = str(info.value)
    assert "cannot open trajectory store" in message
    assert "hunter2" not in message  # passwords never leak into errors


def test_unwritable_sqlite_path_names_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    with pytest.raises(StoreError, match="missing-dir"):
        TrajectoryStore(url)


def test_sqlite_wal_and_foreign_keys(store: TrajectoryStore) -> None:
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def test_token_arrays_are_packed_bytes(store: TrajectoryStore) -> None:
    group = make_group()
    gid = store.write_group("r1", group)
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT seg_id, token_ids, logprobs, entropies, typeof(token_ids) "
                "FROM segments WHERE group_id = :g ORDER BY seg_id"
            ),
            {"g": gid},
        ).all()
        paths = conn.execute(
            text("SELECT segment_ids FROM trajectories WHERE group_id = :g ORDER BY id"),
            {"g": gid},
        ).scalars()
        assert [len(p) for p in paths] == [4 * 4, 4 * 2]
    for (seg_id, tokens, logps, ents, sql_type), seg in zip(rows, group.segments, strict=True):
        assert seg_id == seg.id
        assert sql_type == "blob"
        assert isinstance(tokens, bytes) and len(tokens) == 4 * len(seg.token_ids)
        assert len(logps) == 4 * len(seg.logprobs) and len(ents) == 4 * len(seg.entropies)
    assert rows[1][1] == (7).to_bytes(4, "little") + b"".join(
        i.to_bytes(4, "little") for i in (8, 9, 10)
    )


def test_context_manager_closes(tmp_path: Path) -> None:
    with TrajectoryStore(f"sqlite:///{tmp_path / 'a.db'}") as s:
        s.create_run("x", {})
    # Reopening the same file sees the committed run.
    with TrajectoryStore(f"sqlite:///{tmp_path / 'a.db'}") as s:
        assert [r.id for r in s.list_runs()] == ["x"]


def test_load_path_reads_only_the_trajectory_s_segments(tmp_path: Path) -> None:
    from tests.test_attribution import GROUP as TREE

    with TrajectoryStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        store.create_run("r", {})
        gid = store.write_group("r", TREE)
        ids = store.trajectory_ids(gid)
        group, traj = store.load_path(ids[1])  # path B: root, m1, e1, m2b, e2, m3
        assert traj == TREE.trajectories[1]
        assert [s.id for s in group.segments] == [0, 1, 2, 4, 5, 6]
        assert group.trajectories == (traj,) and group.task == TREE.task
        with pytest.raises(KeyError, match="no trajectory"):
            store.load_path(999)


@given(st.text())
def test_text_codec_round_trips_and_never_writes_nul(text):
    from branchgym.rollouts.schema import decode_text, encode_text

    stored = encode_text(text)
    assert "\x00" not in stored and decode_text(stored) == text
    if "\x00" not in text and "\x1b" not in text:
        assert stored == text  # ordinary text is stored as it is


def test_a_reader_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(StoreError, match=f"no database at {missing}"):
        TrajectoryStore(f"sqlite:///{missing}", create=False)
    assert not missing.exists()
    with TrajectoryStore(f"sqlite:///{missing}"):  # a writer creates it
        pass
    with TrajectoryStore(f"sqlite:///{missing}", create=False) as store:
        assert store.list_runs() == []
    with TrajectoryStore("sqlite://", create=False) as store:  # in memory: nothing to miss
        assert store.list_runs() == []


def test_steps_lists_a_runs_steps_in_order(store: TrajectoryStore) -> None:
    store.write_groups("r1", [make_group(3), make_group(0), make_group(3)])
    assert store.steps("r1") == [0, 3]
    assert store.steps("nope") == []


def test_runs_from_two_out_folders_sharing_a_store_get_their_own_ids(tmp_path) -> None:
    # Run ids are folder names ("<time>-seed<N>"), unique within one --out folder only; with
    # a shared --db a second run started in the same second must not write into the first's.
    from branchgym.config import TrainConfig
    from branchgym.runner import _claim_run, _new_run_dir

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    name = "20261125-120000-seed0"
    with TrajectoryStore(url) as store:
        first = _claim_run(store, _new_run_dir(tmp_path / "a", name), name, TrainConfig())
        second_cfg = TrainConfig(seed=7)
        second = _claim_run(store, _new_run_dir(tmp_path / "b", name), name, second_cfg)
        assert (first.name, second.name) == (name, f"{name}-2")
        assert not (tmp_path / "b" / name).exists() and second.is_dir()
        assert store.run_config(second.name)["seed"] == 7
        assert store.run_config(first.name)["seed"] == 0
        assert store.create_run(first.name, {}) is False  # a resume finds it, unchanged
