"""Handing weights to the generator without vLLM: the versioned weight folders, the server
calls and their one-line errors, the ``[backend]`` config and the ``train`` flags.

The server's side runs against httpx's MockTransport; the dead server is a real closed port.
The real engine and server are in ``tests/test_vllm_sync.py`` (marker ``vllm``).
"""

from __future__ import annotations

import importlib.util
import json
import socket

import httpx
import pytest
from typer.testing import CliRunner

from branchgym.agents.openai import OpenAIPolicy, ServerConfig, ServerError
from branchgym.agents.vllm_worker import EXTENSION, LOAD_METHOD, PING_METHOD
from branchgym.agents.weightsync import policy_version, sync_policy, write_weights
from branchgym.cli import app
from branchgym.config import TrainConfig, preset, validate
from branchgym.configio import ConfigError, apply_overrides


def test_write_weights_gives_one_complete_folder_per_version(tmp_path, tiny_lm):
    from transformers import AutoModelForCausalLM

    first = write_weights(tiny_lm, tmp_path / "gen", 3)
    assert first == (tmp_path / "gen" / "v000003").resolve()
    loaded = AutoModelForCausalLM.from_pretrained(first)
    saved = loaded.state_dict()
    for name, tensor in tiny_lm.state_dict().items():
        assert tensor.equal(saved[name]), name
    write_weights(tiny_lm, tmp_path / "gen", 4)
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["v000003", "v000004"]


def _recording_server(calls: list, answers: dict | None = None) -> httpx.MockTransport:
    answers = answers or {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.url.path, body))
        if request.url.path in answers:
            return answers[request.url.path]
        if request.url.path == "/reset_prefix_cache":
            return httpx.Response(200, json={"success": True})
        return httpx.Response(200, json={"results": ["ok"]})

    return httpx.MockTransport(handler)


def test_openai_sync_loads_resets_and_tags_the_version(tmp_path, tiny_lm):
    calls: list = []
    policy = OpenAIPolicy(
        ServerConfig("http://server:8000/v1", "tiny"),
        transport=_recording_server(calls),
        weights_dir=tmp_path / "gen",
    )
    assert policy.version is None and policy.server_root == "http://server:8000"
    policy.sync_weights(tiny_lm, 1)
    policy.sync_weights(tiny_lm, 2)
    folder = str((tmp_path / "gen" / "v000002").resolve())
    load = {"method": LOAD_METHOD, "kwargs": {"weights_path": folder}, "timeout": 600.0}
    assert calls[3:] == [
        ("/collective_rpc", load),
        ("/reset_prefix_cache", None),
        ("/update_weight_version", {"new_version": "2"}),
    ]
    assert policy.version == 2 and policy_version(policy, 0) == 2
    assert [p.name for p in (tmp_path / "gen").iterdir()] == ["v000002"]  # older ones go


def test_hf_sync_only_drops_the_cache():
    class HF:  # what HFPolicy offers: no sync_weights, no version
        dropped = 0

        def reset_cache(self):
            self.dropped += 1

    policy = HF()
    sync_policy(policy, model=None, version=5)
    assert policy.dropped == 1 and policy_version(policy, 5) == 5


NO_EXTENSION = (  # vLLM's answer when the method is not on its worker
    "Call to collective_rpc method failed: Worker failed with error "
    "''CPUWorker' object has no attribute 'branchgym_load_weights''"
)


@pytest.mark.parametrize(
    ("path", "answer", "says"),
    [
        ("/collective_rpc", httpx.Response(404, json={"detail": "Not Found"}), "DEV_MODE=1"),
        (
            "/collective_rpc",
            httpx.Response(500, json={"error": {"message": NO_EXTENSION}}),
            f"--worker-extension-cls {EXTENSION}",
        ),
        ("/reset_prefix_cache", httpx.Response(200, json={"success": False}), "prefix cache"),
        ("/collective_rpc", httpx.Response(500, text="engine dead"), "HTTP 500): engine dead"),
    ],
)
def test_a_server_that_cannot_take_weights_says_what_to_do(tmp_path, tiny_lm, path, answer, says):
    calls: list = []
    policy = OpenAIPolicy(
        ServerConfig("http://server:8000/v1", "tiny"),
        transport=_recording_server(calls, {path: answer}),
        weights_dir=tmp_path,
    )
    with pytest.raises(ServerError, match="http://server:8000") as err:
        policy.sync_weights(tiny_lm, 1)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert policy.version is None


def test_check_weight_sync_pings_the_extension():
    calls: list = []
    policy = OpenAIPolicy(ServerConfig("http://s/v1", "m"), transport=_recording_server(calls))
    policy.check_weight_sync()
    assert calls == [("/collective_rpc", {"method": PING_METHOD})]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_server_fails_the_sync_in_one_line(tmp_path, tiny_lm):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    policy = OpenAIPolicy(ServerConfig(url, "m", connect_timeout=1), weights_dir=tmp_path)
    with pytest.raises(ServerError, match=r"cannot reach http://127\.0\.0\.1"):
        policy.sync_weights(tiny_lm, 1)


def test_backend_config_is_checked_before_a_run():
    base = preset("smoke")
    ray = {"ray": {"enabled": True}, "db": "postgresql://x"}
    for data, says in [
        ({"backend": {"backend": "tgi"}}, "is not one of"),
        ({"backend": {"backend": "openai"}}, "--base-url"),
        ({"backend": {"backend": "openai", "base_url": "http://x/v1"}}, "--model PATH"),
        ({"backend": {"backend": "vllm"}, **ray}, "--ray"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate(apply_overrides(base, data))
        assert says in str(err.value)
    cfg = apply_overrides(TrainConfig(), {"backend": {"backend": "vllm", "weights_dir": "/w"}})
    assert validate(cfg).backend.weights_dir == "/w"


runner = CliRunner()


def test_train_with_a_dead_server_fails_fast_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    args = ["train", "--preset", "smoke", "--out", str(tmp_path / "runs"), "--backend", "openai"]
    args += ["--base-url", url, "--model", str(tmp_path / "policy")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "cannot reach http://127.0.0.1" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_train_without_vllm_says_how_to_install_it(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "vllm" else find_spec(name, *a),
    )
    args = ["train", "--preset", "smoke", "--out", str(tmp_path), "--backend", "vllm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "the vllm backend needs vLLM: pip install" in result.output
    assert list(tmp_path.iterdir()) == []
