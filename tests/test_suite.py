"""Task suites: disjoint seeded splits, and JSONL files that round-trip exactly."""

from __future__ import annotations

import pytest

from branchgym.tasks.suite import SuiteError, load_suite, save_suite, task_refs
from branchgym.trajectory import TaskRef


def test_splits_are_disjoint_seed_ranges():
    seeds = {s: {t.seed for t in task_refs("x", s, 1000)} for s in ("train", "seen", "unseen")}
    assert not (seeds["train"] & seeds["seen"]) and not (seeds["seen"] & seeds["unseen"])
    with pytest.raises(ValueError, match="unknown split"):
        task_refs("x", "test", 1)


def test_a_suite_round_trips_through_jsonl(tmp_path):
    tasks = task_refs("branchgym/Household-v1", "unseen", 5, start=3)
    tasks.append(TaskRef("branchgym/SearchQA-v0", 7, "seen", "hop2", "Who founded X?"))
    path = tmp_path / "suite.jsonl"
    assert save_suite(tasks, path) == 6
    assert load_suite(path) == tasks


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not JSON"),
        ('{"seed": 1}', "needs at least env_id and seed"),
        ('{"env_id": "x", "seed": "1"}', "seed must be an integer"),
        ('{"env_id": "x", "seed": 1, "colour": "red"}', "unknown fields ['colour']"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"env_id": "x", "seed": 0}\n\n' + line + "\n")
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    assert f"{path}:3" in str(exc.value) and problem in str(exc.value)


def test_split_of_seed_inverts_the_offsets():
    from branchgym.tasks.suite import split_of_seed

    for split in ("train", "seen", "unseen"):
        assert {split_of_seed(t.seed) for t in task_refs("x", split, 50, start=7)} == {split}
    assert split_of_seed(-1) == "train"
