"""The trajectory viewer in real headless Chromium (Playwright): runs -> group tree ->
trajectory, filters, and model output that holds HTML and must not run."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest
import uvicorn

from branchgym.rollouts.store import TrajectoryStore
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory
from branchgym.viewer import create_app

pytestmark = pytest.mark.chromium
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
E, M = SegmentKind.ENV, SegmentKind.MODEL


def seg(i, parent, kind, text, n=3, h=0.5):
    extra = {"logprobs": (-0.2,) * n, "entropies": tuple(h * (k + 1) for k in range(n))}
    return Segment(i, parent, kind, tuple(range(n)), text, **(extra if kind is M else {}))


def tree(step: int) -> Group:
    segs = (
        seg(0, None, E, "You are in a kitchen. Your task is to: find the mug."),
        seg(1, 0, M, "go to cabinet 1"),
        seg(2, 1, E, "You arrive at cabinet 1. It is closed."),
        seg(3, 2, M, "open cabinet 1", h=0.1),
        seg(4, 2, M, EVIL, n=5, h=0.9),
    )
    trajs = (
        Trajectory(3, (0, 1, 2, 3), 1.0, EndReason.TERMINATED, 0.5, True, 2, 2),
        Trajectory(4, (0, 1, 2, 4), 0.0, EndReason.TURN_LIMIT, -0.5, False, 2, 2),
    )
    return Group(TaskRef("branchgym/Household-v0", 40 + step), step, step, segs, trajs)


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    with TrajectoryStore(url) as store:
        store.create_run("demo-run", {})
        store.write_groups("demo-run", [tree(0), tree(1)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = uvicorn.Server(
        uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    web.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser.new_page()
        browser.close()


def test_runs_group_tree_and_trajectory_in_chromium(server, page):
    page.goto(server)
    assert page.title() == "branchgym · runs"
    assert page.locator("svg polyline").count() == 1  # the run's success curve
    page.click("a.run")
    assert "run demo-run" in page.inner_text("h1")
    assert page.locator("a.group").count() == 2
    page.click("text=group 1")
    assert "◆ branch ×2" in page.inner_text(".tree")
    leaves = page.locator("a.leaf")
    assert leaves.count() == 2 and "terminated R=1.00 A=+0.50" in leaves.nth(0).inner_text()
    leaves.nth(1).click()  # the trajectory whose action is hostile HTML
    assert "trajectory 2" in page.inner_text("h1")
    assert page.locator(".heat .tok").count() == 3 + 5  # one cell per generated token
    body = page.inner_text("body")
    assert EVIL in body  # shown as text ...
    assert page.evaluate("window.__pwned") is None  # ... and never run
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0


def test_filters_by_task_reward_and_end_reason(server, page):
    page.goto(f"{server}/run/demo-run?task=41")
    assert page.locator("a.group").all_inner_texts() == ["group 2"]
    page.goto(f"{server}/run/demo-run?min_return=2")
    assert page.locator("a.group").count() == 0
    page.goto(f"{server}/run/demo-run")
    page.select_option("select[name=end_reason]", "turn_limit")
    page.click("button[type=submit]")
    assert page.locator("a.group").count() == 2
    page.goto(f"{server}/traj/999")
    assert "no trajectory 999" in page.inner_text("h1")
