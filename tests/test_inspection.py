"""branchgym show, export and replay on stored Household and SearchQA trajectories."""

from __future__ import annotations

import json
from typing import ClassVar

import gymnasium as gym
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

import branchgym.envs
from branchgym.agents.policy import Generation, ScriptedPolicy
from branchgym.cli import app
from branchgym.envs.wrappers import RestateInstruction
from branchgym.inspection import export_records
from branchgym.rollouts.manager import RolloutConfig, RolloutManager
from branchgym.rollouts.schema import SegmentRow
from branchgym.rollouts.store import TrajectoryStore
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

runner = CliRunner()
CONFIGS = {
    "branchgym/Household-v0": {"env_kwargs": {"max_receptacles": 8}, "restate_instruction": True},
    "branchgym/SearchQA-v0": {"env_kwargs": {}, "restate_instruction": False},
}


class PlanSpy(gym.Wrapper):
    """Remembers the expert's next action, so a scripted policy can follow (or leave) it."""

    plan: ClassVar[list[str]] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        PlanSpy.plan = info["expert_plan"]
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        PlanSpy.plan = out[4]["expert_plan"]
        return out


def expert_then_wander(codec, wander_every: int):
    calls = [0]

    def script(req):
        calls[0] += 1
        action = "look" if calls[0] % wander_every == 0 else PlanSpy.plan[0]
        ids = tuple(codec.action_ids(action))
        return Generation(ids, " " + action, (-0.1,) * len(ids), (0.4,) * len(ids), "stop")

    return script


@pytest.fixture
def stored(tmp_path, codec):
    """A store with one run per environment: expert paths with a few detours, one per task."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    with TrajectoryStore(url) as store:
        for env_id, config in CONFIGS.items():
            run = env_id.split("/")[1]
            store.create_run(run, config)

            def make(env_id=env_id, config=config):
                env = branchgym.envs.make(env_id, **config["env_kwargs"])
                env = RestateInstruction(env) if config["restate_instruction"] else env
                return PlanSpy(env)

            policy = ScriptedPolicy(expert_then_wander(codec, 4))
            cfg = RolloutConfig(samples_per_task=1, max_turns=12)
            manager = RolloutManager(make, policy, codec, cfg)
            for task in task_refs(env_id, "train", 3):
                store.write_groups(run, manager.rollout([task]))
    return url


def test_replay_confirms_every_stored_trajectory(stored):
    with TrajectoryStore(stored) as store:
        ids = [
            t
            for r in store.list_runs()
            for g in store.groups(r.id)
            for t in store.trajectory_ids(g)
        ]
    assert len(ids) == 6
    result = runner.invoke(app, ["replay", *map(str, ids), "--db", stored])
    assert result.exit_code == 0, result.output
    assert result.output.count("matches") == 6
    assert "0 steps" not in result.output


def test_replay_reports_a_tampered_observation(stored):
    with TrajectoryStore(stored) as store, store._sessions.begin() as session:
        session.execute(
            update(SegmentRow)
            .where(SegmentRow.group_id == 1, SegmentRow.seg_id == 2)
            .values(text="You see a dragon.")
        )
    result = runner.invoke(app, ["replay", "1", "--db", stored])
    assert result.exit_code == 1
    assert "DIFFERS" in result.output and "turn 1: observation differs" in result.output
    assert "You see a dragon." in result.output


def test_show_prints_turns_and_entropy(stored):
    result = runner.invoke(app, ["show", "4", "--db", stored])
    assert result.exit_code == 0, result.output
    assert "Question:" in result.output and "<search>" in result.output
    assert "▂" in result.output or "▁" in result.output  # the per-token entropy strip
    assert "end: " in result.output
    result = runner.invoke(app, ["show", "999", "--db", stored])
    assert result.exit_code == 2 and "no trajectory with id 999" in result.output


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_sft_ready_records(stored, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    args = ["export", "SearchQA-v0", "--format", fmt, "--out", str(out), "--db", stored]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        rows = pq.read_table(out).to_pylist()
    assert len(rows) == 3
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "user" and roles[1] == "assistant"
        assert len(row["token_ids"]) == len(row["loss_mask"])
        assert row["env_id"] == "branchgym/SearchQA-v0" and row["run"] == "SearchQA-v0"
    result = runner.invoke(app, ["export", "nope", "--out", str(out), "--db", stored])
    assert result.exit_code == 2 and "nope" in result.output


def _error_group(error_after_result: bool) -> Group:
    """A Fragile-v0 path whose last call failed: the error node follows a turn or a result."""

    def m(i, parent, text):
        return Segment(i, parent, SegmentKind.MODEL, (5,), text, (-0.1,), (0.2,))

    segs = [
        Segment(0, None, SegmentKind.ENV, (1,), "ready"),
        m(1, 0, " hi"),
        Segment(2, 1, SegmentKind.ENV, (2,), "you said hi"),
    ]
    if error_after_result:  # a branch whose restore failed: no second turn
        segs.append(Segment(3, 2, SegmentKind.ENV, (), "branch restore failed: boom"))
    else:  # the second call failed
        segs += [m(3, 2, " hang"), Segment(4, 3, SegmentKind.ENV, (), "environment error: ...")]
    leaf = len(segs) - 1
    traj = Trajectory(leaf, tuple(range(len(segs))), 0.0, EndReason.ENV_ERROR, n_turns=2)
    return Group(TaskRef("test/Fragile-v0", 0), 0, 0, tuple(segs), (traj,))


@pytest.mark.parametrize("after_result", [False, True])
def test_replay_stops_at_a_stored_error_without_calling_it_a_difference(tmp_path, after_result):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    with TrajectoryStore(url) as store:
        store.create_run("e", {"imports": ["tests.fragile_env"]})
        store.write_group("e", _error_group(after_result))
    result = runner.invoke(app, ["replay", "1", "--db", url])
    assert result.exit_code == 0, result.output
    assert "1 steps replayed, matches" in result.output
    assert "ended with an error" in result.output or "failed" in result.output


@pytest.mark.parametrize("after_result", [False, True])
def test_export_keeps_a_failed_calls_text_out_of_the_messages(tmp_path, after_result):
    with TrajectoryStore(f"sqlite:///{tmp_path / 'e.db'}") as store:
        store.create_run("e", {})
        store.write_group("e", _error_group(after_result))
        (row,) = export_records(store, "e")
    assert row["end_reason"] == "env_error"
    assert row["error"] == (
        "branch restore failed: boom" if after_result else "environment error: ..."
    )
    last = "user" if after_result else "assistant"  # the result, or the turn whose call failed
    assert row["messages"][-1]["role"] == last
    assert all(
        "error" not in m["content"] and "failed" not in m["content"] for m in row["messages"]
    )
    assert len(row["token_ids"]) == len(row["loss_mask"])


def test_cli_bad_input_is_one_readable_line(stored, tmp_path):
    cases = [
        (["rollout", "--env-kwargs", '{"bogus": 1}', "--db", stored], "cannot make"),
        (["rollout", "--n", "0", "--db", stored], "must be at least 1"),
        (
            ["export", "SearchQA-v0", "--out", str(tmp_path / "no" / "x.jsonl"), "--db", stored],
            "No such file",
        ),
        (
            ["show", "1", "--tokenizer", str(tmp_path / "nope"), "--db", stored],
            "cannot load a tokenizer",
        ),
        (["inspect", "[bold]x[/x]", "--db", stored], "no run '[bold]x[/x]'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def test_rescore_with_token_f1_writes_a_new_run(stored, codec):
    # The stored SearchQA paths answer exactly (EM 1, F1 1) or not at all: rescoring with F1
    # must keep every return, and a run of partial answers must change.
    result = runner.invoke(app, ["rescore", "SearchQA-v0", "--reward", "f1", "--db", stored])
    assert result.exit_code == 0, result.output
    assert "SearchQA-v0@f1: 3 trajectories re-scored, 0 returns changed" in result.output
    with TrajectoryStore(stored) as store:
        assert [r.id for r in store.list_runs()][-1] == "SearchQA-v0@f1"
        old = [t.ret for t in store.trajectory_rows("SearchQA-v0")]
        new = [t.ret for t in store.trajectory_rows("SearchQA-v0@f1")]
        assert old == new
        assert store.run_config("SearchQA-v0@f1")["rescored_from"] == "SearchQA-v0"
    result = runner.invoke(app, ["rescore", "Household-v0", "--reward", "f1", "--db", stored])
    assert result.exit_code == 2 and "no reward option 'f1'" in result.output


def test_rescore_never_writes_a_run_twice_and_its_trajectories_replay(stored):
    args = ["rescore", "SearchQA-v0", "--db", stored, "--reward"]
    assert runner.invoke(app, [*args, "f1"]).exit_code == 0
    again = runner.invoke(app, [*args, "f1"])
    assert again.exit_code == 2 and "exists already" in again.output
    bogus = runner.invoke(app, [*args, "bogus"])
    assert bogus.exit_code == 2 and "no reward option 'bogus'" in bogus.output
    with TrajectoryStore(stored) as store:
        runs = {r.id: r for r in store.list_runs()}
        assert "SearchQA-v0@bogus" not in runs  # nothing registered for a bad option
        assert runs["SearchQA-v0@f1"].n_trajectories == runs["SearchQA-v0"].n_trajectories
        assert store.run_config("SearchQA-v0@f1")["env_kwargs"]["reward"] == "f1"
        ids = [t for g in store.groups("SearchQA-v0@f1") for t in store.trajectory_ids(g)]
    result = runner.invoke(app, ["replay", *map(str, ids), "--db", stored])
    assert result.exit_code == 0, result.output


def test_rescore_partial_answers(tmp_path):
    from branchgym.inspection import replay, rescore

    env = branchgym.envs.make("branchgym/SearchQA-v0")
    _, info = env.reset(seed=3)
    gold = info["expert_plan"][-1][len("<answer>") : -len("</answer>")]
    m = lambda i, p, t: Segment(i, p, SegmentKind.MODEL, (5,), t, (-0.1,), (0.2,))  # noqa: E731
    segs = (
        Segment(
            0,
            None,
            SegmentKind.ENV,
            (1,),
            f"Question: {info['instruction']}",
        ),
        m(1, 0, f"<answer>{gold} city</answer>"),
        m(2, 0, f"<answer>{gold}</answer>"),
    )
    trajs = (
        Trajectory(1, (0, 1), 0.0, EndReason.TERMINATED),
        Trajectory(2, (0, 2), 1.0, EndReason.TERMINATED, won=True),
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with TrajectoryStore(url) as store:
        store.create_run("q", {})
        store.write_group("q", Group(TaskRef("branchgym/SearchQA-v0", 3), 0, 0, segs, trajs))
        new_run, n, changed = rescore(store, "q", "f1")
        (gid,) = store.groups(new_run)
        group = store.load_group(gid)
        # replayed under the reward it was re-scored with: the partial answer's F1 again
        fresh = [replay(store, t).ret for t in store.trajectory_ids(gid)]
    # "<gold> city" vs "<gold>" of w words: precision w/(w+1), recall 1 -> F1 2w/(2w+1)
    # (2/3 for a one-word answer, 0.8 for two); the exact answer stays 1
    words = len(gold.split())
    partial = 2 * words / (2 * words + 1)
    assert fresh == pytest.approx([partial, 1.0])
    assert (n, changed) == (2, 1)
    assert [t.ret for t in group.trajectories] == pytest.approx([partial, 1.0])
    assert group.trajectories[0].advantage < 0 < group.trajectories[1].advantage
    assert group.segments[1].reward == pytest.approx(partial)
