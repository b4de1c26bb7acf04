"""Schema versions of the trajectory store: opening a store brings any database to the head.

A fresh database gets exactly ``schema.Base.metadata``; one made before migrations (by
``create_all``) is stamped as revision 0001 and keeps its rows; an older revision is upgraded;
a revision from a newer branchgym is refused. The upgrade test puts a throwaway revision on
top of the package's head in a copy of the migrations folder; 0002's own upgrade of rows
written at 0001 has its own test.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text

from branchgym.rollouts import engine as engine_module
from branchgym.rollouts import migrations
from branchgym.rollouts.schema import Base
from branchgym.rollouts.store import SCHEMA_HEAD, StoreError, TrajectoryStore, schema_revision
from tests.test_store import make_group

NEXT = "zz_test_upgrade"
NEXT_REVISION = f'''"""Test only: a column on runs, added by rebuilding the table (batch mode)."""

import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{SCHEMA_HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", recreate="always") as batch:
        batch.drop_column("note")
'''


def url_in(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def differences(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database equal the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE})
        return compare_metadata(context, Base.metadata)


def same_group(a, b) -> bool:
    """Equal trees (log-probs and entropies come back at float32 precision, so not those)."""
    return a.trajectories == b.trajectories and [
        (s.id, s.parent_id, s.kind, s.token_ids, s.text) for s in a.segments
    ] == [(s.id, s.parent_id, s.kind, s.token_ids, s.text) for s in b.segments]


@pytest.fixture
def newer_branchgym(tmp_path, monkeypatch):
    """Call it to make this process's branchgym one revision newer than the package's."""
    folder = tmp_path / "migrations"
    shutil.copytree(
        migrations.SCRIPT_LOCATION, folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    (folder / "versions" / f"{NEXT}.py").write_text(NEXT_REVISION)
    scripts = ScriptDirectory(str(folder))

    def upgrade_code() -> None:
        monkeypatch.setattr(migrations, "SCRIPT_LOCATION", str(folder))
        monkeypatch.setattr(migrations, "_scripts", lambda: scripts)
        monkeypatch.setattr(migrations, "SCHEMA_HEAD", NEXT)

    return upgrade_code


def test_fresh_database_is_at_head_and_equals_the_models(tmp_path):
    assert ScriptDirectory(migrations.SCRIPT_LOCATION).get_current_head() == SCHEMA_HEAD
    with TrajectoryStore(url_in(tmp_path)) as store:
        assert schema_revision(store.engine) == SCHEMA_HEAD
        assert differences(store.engine) == []
        with store.engine.begin() as conn:  # the comparison does see a missing index
            conn.execute(text("DROP INDEX ix_trajectories_advantage"))
        assert [d[0] for d in differences(store.engine)] == ["add_index"]


def test_revision_0001_has_the_layout_the_legacy_check_expects(tmp_path):
    engine = create_engine(url_in(tmp_path))
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), migrations.LEGACY_REVISION)
        inspector = inspect(conn)
        found = {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
            if name != migrations.VERSION_TABLE
        }
    engine.dispose()
    legacy = ScriptDirectory(migrations.SCRIPT_LOCATION).get_revision("0001").module.layout()
    assert found == legacy


def test_legacy_database_is_stamped_and_keeps_its_rows(tmp_path, monkeypatch):
    # branchgym before migrations: create_all on open, no version table
    with monkeypatch.context() as old:
        old.setattr(engine_module, "_migrate", lambda engine, url: Base.metadata.create_all(engine))
        with TrajectoryStore(url_in(tmp_path)) as store:
            store.create_run("r", {"lr": 1e-6})
            gid = store.write_group("r", make_group(step=3))
            assert migrations.VERSION_TABLE not in inspect(store.engine).get_table_names()
            with store.engine.begin() as conn:  # the columns revision 0001 did not have
                conn.execute(text("ALTER TABLE segments DROP COLUMN tool_result"))
    with TrajectoryStore(url_in(tmp_path)) as store:
        assert schema_revision(store.engine) == SCHEMA_HEAD
        assert same_group(store.load_group(gid), make_group(step=3))
        assert store.run_config("r") == {"lr": 1e-6}
        store.write_group("r", make_group(step=4))
        assert len(store.groups("r")) == 2


def test_version_less_tables_of_another_layout_are_refused(tmp_path):
    engine = create_engine(url_in(tmp_path))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id VARCHAR(128) PRIMARY KEY, owner TEXT)"))
    engine.dispose()
    with pytest.raises(StoreError, match="do not match revision 0001") as info:
        TrajectoryStore(url_in(tmp_path))
    assert "store.db" in str(info.value) and "no table groups" in str(info.value)


def test_revision_from_a_newer_branchgym_is_refused(tmp_path):
    url = url_in(tmp_path)
    TrajectoryStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE branchgym_schema_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(StoreError) as info:
        TrajectoryStore(url)
    message = str(info.value)
    assert message == (
        f"the store at {url!r} has schema revision 9999_future, newer than this branchgym "
        f"knows (head {SCHEMA_HEAD}); upgrade branchgym"
    )


def test_opening_a_current_store_again_only_reads(tmp_path):
    url = url_in(tmp_path)
    with TrajectoryStore(url) as store:
        store.create_run("r", {})
        gid = store.write_group("r", make_group())
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(statement.strip().split()[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        with TrajectoryStore(url) as store:
            assert statements and set(statements) <= {"SELECT", "PRAGMA"}
            assert same_group(store.load_group(gid), make_group())
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_older_revision_is_upgraded_and_keeps_its_rows(tmp_path, newer_branchgym):
    url = url_in(tmp_path)
    with TrajectoryStore(url) as store:
        store.create_run("r", {})
        gid = store.write_group("r", make_group())
    newer_branchgym()
    with TrajectoryStore(url) as store:
        assert schema_revision(store.engine) == NEXT
        columns = [c["name"] for c in inspect(store.engine).get_columns("runs")]
        assert columns[-1] == "note"
        # the rebuilt runs table did not take the groups pointing at it along
        assert same_group(store.load_group(gid), make_group())
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def _open_at_once(url: str, start) -> None:
    start.wait(timeout=60)  # all open the fresh database at once: they race to migrate it
    with TrajectoryStore(url) as store:
        store.create_run("shared", {})


def open_in_four_processes(url: str) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_at_once, args=(url, start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4


def test_four_processes_open_a_fresh_sqlite_database_at_once(tmp_path):
    url = url_in(tmp_path)
    open_in_four_processes(url)
    assert schema_revision(url) == SCHEMA_HEAD


@pytest.mark.postgres
def test_four_processes_migrate_a_fresh_postgres_database_at_once(postgres_url):
    from tests.test_postgres import fresh_db

    url = fresh_db(postgres_url)
    open_in_four_processes(url)
    assert schema_revision(url) == SCHEMA_HEAD
    engine = create_engine(url)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_revision_0002_marks_the_env_segments_written_before_it_as_tool_results(tmp_path):
    # Before 0002 every env segment after the prompt counted as a tool result; rows written
    # then keep that meaning, and new rows store what the step said.
    engine = create_engine(url_in(tmp_path))
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), "0001")
        conn.execute(text("INSERT INTO runs VALUES ('r', '2026-01-01', '{}', '')"))
        conn.execute(
            text(
                "INSERT INTO groups (id, run_id, step, policy_version, worker, env_id, "
                "task_seed, split, task_type, instruction) VALUES (1, 'r', 0, 0, 'w', 'e', 0, "
                "'train', 't', 'i')"
            )
        )
        for seg_id, parent, kind in ((0, None, "env"), (1, 0, "model"), (2, 1, "env")):
            conn.execute(
                text(
                    "INSERT INTO segments VALUES (1, :s, :s, :p, :k, x'', x'', x'', 1, '', 0, NULL)"
                ),
                {"s": seg_id, "p": parent, "k": kind},
            )
    engine.dispose()
    with TrajectoryStore(url_in(tmp_path)) as store:
        assert schema_revision(store.engine) == SCHEMA_HEAD
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT seg_id, tool_result FROM segments ORDER BY seg_id"))
            assert [tuple(r) for r in rows] == [(0, 0), (1, 0), (2, 1)]
