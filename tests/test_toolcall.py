"""The shared tool-call protocol: what parses, what is refused and why, and custom tags."""

from __future__ import annotations

import pytest

from branchgym.envs.toolcall import ToolCall, ToolProtocol

PY = ToolProtocol(tools=("python", "answer"))


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("<python>print(1)</python>", ToolCall("python", "print(1)")),
        ("  <answer> 42 </answer>\n", ToolCall("answer", "42")),
        # reasoning before the call is allowed; the call must end the turn
        ("I should compute it. <python>x=1</python>", ToolCall("python", "x=1")),
        # code may hold < and >; only the protocol's own tags count
        ("<python>print(1 < 2 > 0)</python>", ToolCall("python", "print(1 < 2 > 0)")),
        ("<python>print('<b>bold</b>')</python>", ToolCall("python", "print('<b>bold</b>')")),
    ],
)
def test_well_formed_calls_parse(action, call):
    assert PY.parse(action) == call


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ("", "Malformed"),
        ("print(1)", "Malformed"),
        ("<python></python>", "Empty <python>"),
        ("<python>1</answer>", "<python> closed by </answer>"),
        ("<python>1", "never closed"),
        ("1</python>", "closes nothing"),
        ("<search>x</search>", "Unknown tool <search>"),
        ("<python><answer>1</answer></python>", "Nested"),
        ("<python>1</python><answer>1</answer>", "One tool call per turn: found 2"),
        ("<python>1</python> and then", "Text after </python>"),
        ("<result>1</result>", "written by the environment"),
    ],
)
def test_bad_calls_say_what_was_wrong(action, problem):
    parsed = PY.parse(action)
    assert isinstance(parsed, str) and problem in parsed


def test_non_text_actions_are_refused_not_raised():
    assert "expected text" in PY.parse(None)  # type: ignore[arg-type]


def test_tags_are_configurable_and_give_the_stop_strings():
    proto = ToolProtocol(tools=("tool_call", "final"), result_tag="obs")
    assert proto.stop == ("</tool_call>", "</final>")
    assert proto.parse("<tool_call>q</tool_call>") == ToolCall("tool_call", "q")
    assert "Unknown tool <python>" in proto.parse("<python>1</python>")
    assert proto.result("out") == "<obs> out </obs>"


@pytest.mark.parametrize("tools", [(), ("a", "a"), ("bad tag",)])
def test_bad_protocols_are_refused(tools):
    with pytest.raises(ValueError):
        ToolProtocol(tools=tools)


def test_searchqa_tags_are_configurable():
    import branchgym.envs

    env = branchgym.envs.make("branchgym/SearchQA-v0", tags=("lookup", "final", "doc"))
    _, info = env.reset(seed=3)
    assert env.get_wrapper_attr("stop_strings") == ("</lookup>", "</final>")
    assert info["expert_plan"][0].startswith("<lookup>")
    obs, *_ = env.step(info["expert_plan"][0])
    assert obs.startswith("<doc>") and obs.endswith("</doc>")
    *_, reward_info = env.step(info["expert_plan"][-1])
    assert reward_info["won"]
