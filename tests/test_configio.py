"""Config files: overrides on a preset, strict checking, TOML round trips, fuzzed files."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from branchgym.config import PRESETS, TrainConfig, preset, validate, validate_fields
from branchgym.configio import ConfigError, apply_overrides, read_mapping, to_toml


def test_overrides_reach_nested_fields_and_keep_the_rest():
    base = preset("smoke")
    cfg = apply_overrides(
        base, {"seed": 3, "rl": {"steps": 7, "sil": True}, "rollout": {"aepo": {"budget": 9}}}
    )
    assert (cfg.seed, cfg.rl.steps, cfg.rl.sil, cfg.rollout.aepo.budget) == (3, 7, True, 9)
    assert cfg.rl.tasks_per_step == base.rl.tasks_per_step
    assert cfg.rollout.aepo.split_beta == base.rollout.aepo.split_beta
    assert replace(cfg, seed=base.seed, rl=base.rl, rollout=base.rollout) == base


def test_ints_become_floats_and_optional_fields_take_none():
    cfg = apply_overrides(TrainConfig(), {"learner": {"lr": 1}, "db": None})
    assert cfg.learner.lr == 1.0 and isinstance(cfg.learner.lr, float)
    assert cfg.db is None
    assert apply_overrides(TrainConfig(), {"db": "sqlite:///x.db"}).db == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sedd": 1}, "sedd: unknown key; allowed: env_id, env_kwargs"),
        ({"rl": {"stepz": 1}}, "rl.stepz: unknown key; allowed: steps,"),
        ({"seed": "3"}, "seed: expected int, got str '3'"),
        ({"seed": True}, "seed: expected int, got bool True"),
        ({"rl": {"sil": 1}}, "rl.sil: expected bool, got int 1"),
        ({"learner": {"lr": "fast"}}, "learner.lr: expected float, got str 'fast'"),
        (
            {"rollout": {"algo": "ppo"}},
            "rollout.algo: 'ppo' is not one of ['grpo', 'arpo', 'aepo']",
        ),
        ({"rl": 5}, "rl: expected a table, got int"),
        ({"env_kwargs": [1]}, "env_kwargs: expected a table, got a list"),
        ({"db": 5}, "db: expected str, got int 5"),
        (
            {"learner": {"clip_cov_bounds": ["a", "b"]}},
            "learner.clip_cov_bounds[0]: expected float, got str 'a'",
        ),
        (
            {"learner": {"clip_cov_bounds": [1.0]}},
            "learner.clip_cov_bounds: expected a list of 2 items, got 1",
        ),
        ({"lora": {"target_modules": ["q_proj", 3]}}, "lora.target_modules[1]: expected str"),
    ],
)
def test_every_mistake_names_its_key_and_what_is_allowed(data, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainConfig(), data)
    assert message in str(err.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_toml(tmp_path, name):
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(preset(name), preset=name))
    data = read_mapping(path)
    assert data.pop("preset") == name
    assert apply_overrides(TrainConfig(), data) == preset(name)


def test_yaml_and_json_files_read_the_same(tmp_path):
    (tmp_path / "a.yaml").write_text("seed: 4\nrl:\n  steps: 3\n")
    (tmp_path / "a.json").write_text(json.dumps({"seed": 4, "rl": {"steps": 3}}))
    (tmp_path / "a.toml").write_text("seed = 4\n[rl]\nsteps = 3\n")
    loaded = [read_mapping(tmp_path / f"a.{ext}") for ext in ("yaml", "json", "toml")]
    assert loaded[0] == loaded[1] == loaded[2] == {"seed": 4, "rl": {"steps": 3}}
    (tmp_path / "empty.yaml").write_text("")
    assert read_mapping(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "seed = = 1", "bad.toml: not valid TOML"),
        ("bad.yaml", "seed: [1, 2", "bad.yaml: not valid YAML"),
        ("bad.json", "{seed: 1}", "bad.json: not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", "the top level must be a table of keys, not a list"),
        ("cfg.ini", "[rl]", "unknown config format '.ini'"),
    ],
)
def test_malformed_files_give_one_clear_error(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match="^.*" + message.replace("[", r"\[").replace(".", r"\.")):
        read_mapping(tmp_path / name)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        read_mapping(tmp_path / "nope.toml")


def _load(path) -> TrainConfig | None:
    """What ``train --config`` does with a file: a config, or ConfigError; nothing else."""
    try:
        data = read_mapping(path)
        data.pop("preset", None)
        return validate(apply_overrides(preset("smoke"), data))
    except ConfigError:
        return None


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.fuzz
@FUZZ
@given(text=st.text(max_size=200), suffix=st.sampled_from([".toml", ".yaml", ".json"]))
def test_fuzz_arbitrary_file_text(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("cfg") / f"c{suffix}"
    path.write_text(text, encoding="utf-8")
    _load(path)  # any exception other than ConfigError fails the test


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
keys = st.sampled_from(["seed", "rl", "rollout", "learner", "env_kwargs", "db", "bogus", "model"])


@pytest.mark.fuzz
@FUZZ
@given(data=st.dictionaries(keys, json_values | st.dictionaries(st.text(max_size=12), json_values)))
def test_fuzz_well_formed_files_with_arbitrary_values(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_text(json.dumps(data))
    cfg = _load(path)
    assert cfg is None or isinstance(cfg, TrainConfig)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rl": {"steps": -1}}, "rl.steps: must be >= 0, got -1"),
        ({"rollout": {"samples_per_task": 0}}, "rollout.samples_per_task: must be >= 1, got 0"),
        ({"learner": {"lr": -0.1}}, "learner.lr: must be in [0.0, inf], got -0.1"),
        ({"rollout": {"temperature": 0.0}}, "rollout.temperature: must be in [1e-06, inf]"),
        ({"sft": {"noise": float("nan")}}, "sft.noise: must be in [0.0, 1.0], got nan"),
        ({"rollout": {"arpo": {"initial": 9, "budget": 4}}}, "exceeds rollout.arpo.budget (4)"),
        ({"ray": {"env_workers": -1}}, "ray.env_workers >= 0"),
        ({"learner": {"pack_length": -1}}, "learner.pack_length: must be >= 0"),
        (
            {"backend": {"backend": "vllm"}, "ray": {"enabled": True}, "db": "postgresql://h/db"},
            "--ray samples in its",
        ),
        ({"backend": {"backend": "openai", "base_url": "http://a/v1,http://b/v1"}}, "need --ray"),
    ],
)
def test_values_a_run_cannot_start_with_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        validate(apply_overrides(TrainConfig(), data))
    assert message in str(err.value)


def test_lists_become_tuples_of_the_declared_items():
    cfg = apply_overrides(TrainConfig(), {"learner": {"clip_cov_bounds": [1, 2.5]}})
    assert cfg.learner.clip_cov_bounds == (1.0, 2.5)
    assert all(isinstance(b, float) for b in cfg.learner.clip_cov_bounds)
    cfg = apply_overrides(TrainConfig(), {"lora": {"target_modules": ["q_proj"]}})
    assert cfg.lora.target_modules == ("q_proj",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"eval": {"split": "foo"}}, "eval.split: 'foo' is not one of ['train', 'seen', 'unseen']"),
        ({"learner": {"clip_cov_bounds": [5.0, 1.0]}}, "learner.clip_cov_bounds: must be [low, "),
        (
            {"learner": {"replay_clip_cov_bounds": [40.0, 1.0]}},
            "learner.replay_clip_cov_bounds: must be [low, high] with low < high, got [40.0, 1.0]",
        ),
        ({"learner": {"clip_cov_ratio": 2.0}}, "learner.clip_cov_ratio: must be in [0.0, 1.0]"),
        ({"learner": {"kl_cov_ratio": -0.1}}, "learner.kl_cov_ratio: must be in [0.0, 1.0]"),
        # 128 / 3 is not whole; 128 / 64 = 2 is, but 64 heads do not group into 3 kv heads
        ({"model": {"heads": 3}}, "model.heads: model.hidden_size (128) must split into"),
        ({"model": {"heads": 64, "kv_heads": 3}}, "model.kv_heads: model.heads (64) must be"),
        ({"model": {"hidden_size": 12, "heads": 4}}, "heads of an even size"),  # head size 3
        ({"model": {"kv_heads": 0}}, "model.kv_heads: must be >= 1, got 0"),
    ],
)
def test_values_checked_on_their_own_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        validate_fields(apply_overrides(TrainConfig(), data))
    assert message in str(err.value)


def test_environments_may_live_in_the_rollout_workers():
    ray = {"ray": {"enabled": True, "env_workers": 0}, "db": "postgresql://h/db"}
    cfg = apply_overrides(TrainConfig(), ray)
    assert validate(cfg).ray.env_workers == 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    assert validate(preset(name)) == preset(name)
