"""WebShop-v0: the reward formula by hand, the catalogue and splits, the text mode, and the
environment against the real site over loopback (check_env, the oracle, snapshots, malformed
actions, a browser, a server that hangs and then dies)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.errors import ToolError
from branchgym.envs.webshop.catalogue import Product, build_catalogue, search
from branchgym.envs.webshop.env import SEARCH_TEMPLATE, WebShopSnapshot
from branchgym.envs.webshop.instructions import Instruction, make_instruction, split_of_seed
from branchgym.envs.webshop.render import parse_page
from branchgym.envs.webshop.reward import phrase_in, purchase_reward, type_reward
from branchgym.envs.webshop.site import ShopServer
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import TaskRef

ENV_ID = "branchgym/WebShop-v0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shop():
    """One real server for the module; tests browse it through their own sessions."""
    server = ShopServer(catalogue_seed=0)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def env(shop):
    env = branchgym.envs.make(ENV_ID, base_url=shop)
    yield env
    env.close()


# -- the reward, by hand ------------------------------------------------------------------

LIPSTICK = Product(
    asin="B0TEST0001",
    title="Velo Classic Lipstick - Long Lasting, Cruelty Free, Vegan",
    product_type="lipstick",
    category=("Beauty & Personal Care", "Makeup", "Lips", "Lipstick"),
    attributes=("long lasting", "cruelty free", "vegan"),
    options=(("color", ("red", "nude")), ("finish", ("matte", "satin"))),
    price=17.99,
    rating=4.0,
    description="A tired old formula.",
    features=("Vegan: made with care.",),
    reviews=(),
)
GOAL = Instruction(
    text="i need long lasting paraben free lipstick with color: red and finish: matte",
    asin="B0TEST0001",
    product_type="lipstick",
    category=LIPSTICK.category,
    attributes=("long lasting", "paraben free"),
    options=(("color", "red"), ("finish", "matte")),
    price_upper=20.0,
    split="train",
    seed=0,
)


def test_type_reward_ladder():
    assert type_reward(True, False, 1.0) == 1.0
    assert type_reward(False, True, 0.15) == 1.0  # category match alone keeps 1
    assert type_reward(False, False, 0.5) == 1.0  # title share > 0.2 alone keeps 1
    assert type_reward(False, False, 0.2) == 0.5  # 0.2 is not > 0.2 and nothing else matches
    assert type_reward(True, True, 0.05) == 0.1  # under 0.1 overrides the matches
    assert type_reward(True, True, 0.0) == 0.0  # no goal noun in the title: nothing


def test_purchase_reward_by_hand():
    # attrs: long lasting listed, paraben free nowhere -> 1 of 2; options: red wanted, satin
    # not (and not in the text) -> 1 of 2; 17.99 <= 20 -> 1. (1 + 1 + 1) / (2 + 2 + 1) = 0.6
    parts = purchase_reward(LIPSTICK, {"color": "red", "finish": "satin"}, GOAL)
    assert (parts.r_type, parts.attr_matches, parts.option_matches, parts.price_ok) == (
        1.0, 1, 1, True,
    )  # fmt: skip
    assert parts.total == pytest.approx(0.6)
    # over budget: (1 + 1 + 0) / 5 = 0.4
    cheap = replace(GOAL, price_upper=10.0)
    assert purchase_reward(LIPSTICK, {"color": "red", "finish": "satin"}, cheap).total == 0.4
    # an attribute found only in the description counts: (2 + 2 + 1) / 5 = 1
    said = replace(LIPSTICK, description="Paraben free, always.")
    assert purchase_reward(said, {"color": "red", "finish": "matte"}, GOAL).total == 1.0
    # no options chosen: (1 + 0 + 1) / 5 = 0.4; three matching values are capped at two
    assert purchase_reward(LIPSTICK, {}, GOAL).total == pytest.approx(0.4)
    three = {"color": "red", "shade": "red", "finish": "matte"}
    assert purchase_reward(LIPSTICK, three, GOAL).option_matches == 2


def test_purchase_reward_type_term_by_hand():
    # nail polish shares 2 category levels, but no goal noun ("lipstick") is in its title:
    # title score 0 -> r_type 0, whatever else matches
    polish = replace(
        LIPSTICK, title="Velo Nail Polish - Long Lasting", product_type="nail polish",
        category=("Beauty & Personal Care", "Makeup", "Nails", "Nail Polish"),
    )  # fmt: skip
    parts = purchase_reward(polish, {"color": "red", "finish": "matte"}, GOAL)
    assert parts.category_match and parts.title_score == 0.0 and parts.total == 0.0
    # 1 of 5 goal nouns ("set") in the title: 0.2, not > 0.2; other type, 1 shared level ->
    # r_type 0.5. attrs 0 of 1, option red 1 of 1, price ok: 0.5 * (0 + 1 + 1) / 3 = 1/3
    pencils = replace(
        LIPSTICK, title="Ovo Colored Pencils Set", product_type="colored pencils",
        category=("Office Products", "Pencils"), attributes=(), features=(), description="",
    )  # fmt: skip
    goal = replace(
        GOAL, product_type="lipstick pencil crayon liner set", attributes=("vegan",),
        options=(("color", "red"),), category=("Beauty & Personal Care", "Pencils"),
    )  # fmt: skip
    parts = purchase_reward(pencils, {"color": "red"}, goal)
    assert (parts.r_type, parts.title_score, parts.category_match) == (0.5, 0.2, False)
    assert parts.total == pytest.approx(1 / 3)


def test_phrases_match_whole_words_only():
    assert phrase_in("long lasting", "Long-Lasting formula")
    assert not phrase_in("red", "A tired old formula.")  # WebShop's substring test would hit


# -- catalogue and instructions ------------------------------------------------------------


def test_catalogue_is_seeded_and_well_formed():
    cat = build_catalogue(0)
    assert build_catalogue.__wrapped__(0) == cat and build_catalogue.__wrapped__(1) != cat
    assert len(cat.products) == 640 and len(cat.by_asin) == 640
    nav = {"back to search", "< prev", "next >", "description", "features", "reviews", "buy now"}
    for p in cat.products:
        values = [v for _, vs in p.options for v in vs]
        assert len(set(values)) == len(values) and not nav & set(values)  # clicks unambiguous
        assert not any(phrase_in(v, p.text) for v in values)  # no option credit from text
        assert (p.title + p.text).isascii()
    assert search(0, "") == () and search(0, "zzzz qqqq") == ()


def test_splits_hold_out_type_attribute_pairs():
    cat = build_catalogue(0)
    assert [split_of_seed(s) for s in (0, 9_999_999, 10_000_000, 20_000_000)] == [
        "train", "train", "seen", "unseen",
    ]  # fmt: skip
    for split in ("train", "seen", "unseen"):
        for task in task_refs(ENV_ID, split, 200):
            goal = make_instruction(cat, task.seed, split)
            target = cat.by_asin[goal.asin]
            held = {(goal.product_type, a) in cat.held_out for a in goal.attributes}
            assert (True in held) == (split == "unseen")
            assert set(goal.attributes) <= set(target.attributes)
            assert dict(goal.options).keys() == dict(target.options).keys()
            assert target.price <= goal.price_upper and goal.product_type in goal.text
            assert make_instruction(cat, task.seed, split) == goal
    with pytest.raises(ValueError, match="unknown split"):
        make_instruction(cat, 0, "test")


def test_text_mode_of_html():
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body><h1>Shop</h1>"
        "<p>Page 1 <a href='/a?x=1&amp;y=2'>Next &gt;</a></p><div>two  words</div>"
        "<form method='post' action='/buy'><button>Buy Now</button></form>"
        "<form method='get' action='/find'><input name='q'><button>Search</button></form>"
    )
    page = parse_page(html)
    assert page.text == "Shop\nPage 1 [Next >]\ntwo words\n[Buy Now]\n[Search]"
    assert [(c.text, c.method, c.url) for c in page.clickables] == [
        ("Next >", "GET", "/a?x=1&y=2"), ("Buy Now", "POST", "/buy"),
    ]  # fmt: skip
    assert page.search_url == "/find" and page.find("  buy   NOW ").url == "/buy"


# -- the environment against the real site -------------------------------------------------


def test_check_env(env):
    check_env(env.unwrapped, skip_render_check=True)


def run_oracle(env, task) -> float:
    _obs, info = env.reset(options={"task": task})
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(info["expert_plan"][0])
        assert info["valid_action"] and not truncated and env.observation_space.contains(obs)
        if terminated:
            return reward
    raise AssertionError(f"the oracle did not finish task {task}")


@pytest.mark.parametrize("split", ["train", "seen", "unseen"])
def test_oracle_reaches_full_reward(env, split):
    rewards = [run_oracle(env, task) for task in task_refs(ENV_ID, split, 100)]
    assert sum(rewards) / len(rewards) >= 0.95


def test_expert_plan_recovers_from_wandering(env):
    """From wherever random clicks lead (wrong items, sub-pages, later result pages), the
    plan still ends in a full-reward purchase."""
    rng = random.Random(0)
    for seed in range(30):
        _obs, info = env.reset(seed=seed)
        for _ in range(rng.randint(1, 6)):
            choices = [c for c in info["admissible_commands"] if c != "click[Buy Now]"]
            action = rng.choice(choices)
            if action == SEARCH_TEMPLATE:
                action = f"search[{rng.choice(['red', 'dog bed large', info['instruction']])}]"
            _obs, _r, _t, _tr, info = env.step(action)
            assert info["valid_action"], action
        for action in info["expert_plan"]:
            _obs, reward, terminated, _tr, info = env.step(action)
        assert terminated and reward == 1.0 and info["won"] and info["expert_plan"] == []


def _strip(results):
    return [(o, r, t, tr, i) for o, r, t, tr, i in results]


def test_snapshot_restore_equivalence(env, shop):
    _obs, info = env.reset(seed=7)
    plan = info["expert_plan"]
    for action in plan[:2]:  # search, open the target
        env.step(action)
    snap = env.unwrapped.snapshot()
    actions = [plan[2], "click[Reviews]", "click[nonexistent]", "click[< Prev]", *plan[3:]]
    after = _strip(env.step(a) for a in actions)
    assert after[-1][1] == 1.0 and after[-1][2]
    other = branchgym.envs.make(ENV_ID, base_url=shop)
    try:
        other.reset(seed=99)
        other.unwrapped.restore(snap)
        assert other.unwrapped._sid != env.unwrapped._sid  # a fresh session on the server
        assert _strip(other.step(a) for a in actions) == after
    finally:
        other.close()
    env.unwrapped.restore(snap)  # the same snapshot branches again, in the same env
    assert _strip(env.step(a) for a in actions) == after


def test_restore_refuses_a_state_from_another_catalogue(env):
    env.reset(seed=1)
    snap = env.unwrapped.snapshot()
    alien = WebShopSnapshot(snap.state.replace('"catalogue_seed": 0', '"catalogue_seed": 5'), "")
    with pytest.raises(ToolError, match=r"HTTP 400.*catalogue 5"):
        env.unwrapped.restore(alien)


@pytest.mark.parametrize(
    ("setup", "action", "problem"),
    [
        ([], "search[]", "needs key words"),
        ([], "search[ ?! ]", "needs key words"),
        ([], "buy the red one", "write search[key words] or click"),
        ([], "", "write search[key words] or click"),
        ([], "click[Search]", "Use search[key words]"),
        (["search[red]"], "click[nonexistent]", "no [nonexistent] on this page"),
        (["search[red]"], "click[]", "no [] on this page"),
        (["search[red]"], "search[blue]", "no search bar on this page"),
        (["search[red]"], "click[Buy Now]", "no [Buy Now] on this page"),
    ],
)
def test_malformed_actions_are_observations(env, setup, action, problem):
    env.reset(seed=3)
    for step in setup:
        env.step(step)
    page = env.unwrapped._page.text
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.startswith("Invalid action") and problem in obs and obs.endswith(page)
    assert (reward, terminated, truncated, info["valid_action"]) == (0.0, False, False, False)


def test_stepping_after_the_purchase(env):
    _obs, info = env.reset(seed=4)
    for action in info["expert_plan"]:
        env.step(action)
    obs, reward, terminated, _tr, info = env.step("click[Buy Now]")
    assert "episode is over" in obs and (reward, terminated) == (0.0, True)
    assert not info["valid_action"] and info["admissible_commands"] == []


def test_browser_pages_are_the_env_pages(env, shop):
    """Walk the oracle's path twice: as a browser (following the HTML's links and forms with
    plain httpx) and as the env. Every page reads the same."""
    task = TaskRef(ENV_ID, 10_000_005, "seen")
    obs, info = env.reset(options={"task": task})
    with httpx.Client(base_url=shop, trust_env=False, follow_redirects=True) as web:
        assert "<form" in web.get("/").text
        html = web.get("/start", params={"seed": task.seed, "split": task.split}).text
        assert html.lower().startswith("<!doctype html>") and parse_page(html).text == obs
        for action in info["expert_plan"]:
            page = parse_page(html)
            if action.startswith("search["):
                html = web.get(page.search_url, params={"q": action[7:-1]}).text
            else:
                target = page.find(action[6:-1])
                html = web.request(target.method, target.url).text
            obs, *_ = env.step(action)
            assert parse_page(html).text == obs
    assert "Your score (min 0.0, max 1.0): 1.0000" in obs


def test_env_starts_and_closes_its_own_server(env):
    _obs, info = env.reset(seed=11)
    env.step(info["expert_plan"][0])
    snap = env.unwrapped.snapshot()
    own = branchgym.envs.make(ENV_ID)
    url = own.unwrapped.base_url
    own.unwrapped.restore(snap)  # a snapshot moves between servers of one catalogue
    assert own.unwrapped._page.text == env.unwrapped._page.text
    own.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/info", trust_env=False, timeout=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def subprocess_shop():
    """``serve()`` in its own process, so a test can freeze and kill it."""
    port = _free_port()
    code = f"from branchgym.envs.webshop import serve; serve(port={port})"
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=environ, stdout=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/api/info", trust_env=False, timeout=1)
            break
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, "serve() did not start"
            time.sleep(0.1)
    yield proc, url
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.chaos
def test_server_that_hangs_then_dies_mid_episode(subprocess_shop):
    proc, url = subprocess_shop
    env = branchgym.envs.make(ENV_ID, base_url=url, timeout_s=1.0)
    _obs, info = env.reset(seed=5)
    env.step(info["expert_plan"][0])
    proc.send_signal(signal.SIGSTOP)  # alive but silent: the kernel still takes connections
    start = time.monotonic()
    with pytest.raises(ToolError, match=rf"did not answer GET {url}/s/\w+/item/B0\w+ within 1.0 s"):
        env.step(info["expert_plan"][1])
    assert time.monotonic() - start < 4
    proc.kill()
    proc.wait(timeout=10)
    start = time.monotonic()
    with pytest.raises(ToolError, match=rf"unreachable: GET {url}/s/\w+/item/B0\w+ failed"):
        env.step(info["expert_plan"][1])
    assert time.monotonic() - start < 3
    env.close()  # a dead server does not make close() fail or hang


@pytest.mark.chromium
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_a_person_can_shop_in_chromium(shop):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    goal = make_instruction(build_catalogue(0), 3, "train")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        page = browser.new_page()
        page.goto(f"{shop}/")
        page.fill("input[name=seed]", "3")
        page.click("button:text-is('Start')")
        assert goal.text in page.inner_text("#instruction")
        page.fill("input[name=q]", goal.query)
        page.click("button:text-is('Search')")
        while not page.locator(f"a:text-is('{goal.asin}')").count():
            page.click("a:text-is('Next >')")
        page.click(f"a:text-is('{goal.asin}')")
        for _name, value in goal.options:
            page.click(f"a:text-is('{value}')")
        page.click("button:text-is('Buy Now')")
        assert page.inner_text("#reward") == "1.0000"
        browser.close()


def test_site_refuses_impossible_requests(shop):
    """Hand-typed URLs and hand-edited states get a 4xx, never a 500 or a broken session."""
    with httpx.Client(base_url=shop, trust_env=False) as web:
        sid = web.post("/api/sessions", json={"seed": 1, "split": "train"}).json()["sid"]
        state = web.get(f"/api/sessions/{sid}").json()
        assert state["view"] == "search" and state["catalogue_seed"] == 0
        bad_states = [
            {**state, "view": "item"},  # an item page with no item
            {**state, "view": "sub", "sub": "Nope", "asin": build_catalogue(0).products[0].asin},
            {**state, "view": "done"},  # done without a reward
            {**state, "page": "2"},
            {**state, "extra": 1},
        ]
        for bad in bad_states:
            assert web.post("/api/sessions", json={"state": bad}).status_code == 400, bad
        assert web.post("/api/sessions", json={"seed": "x", "split": "train"}).status_code == 400
        assert web.post("/api/sessions", content=b"not json").status_code == 400
        assert web.get(f"/s/{sid}/option", params={"name": "color", "value": "red"}).is_client_error
        assert web.get(f"/s/{sid}/item/B0NOPE").status_code == 400
        assert web.get(f"/s/{sid}/teleport").status_code == 404
        assert web.get("/s/nope").status_code == web.get("/api/sessions/nope").status_code == 404
        assert web.get("/start", params={"split": "test"}).status_code == 400
        assert web.delete(f"/api/sessions/{sid}").json() == {"deleted": True}
        assert web.get(f"/s/{sid}").status_code == 404


def test_branchgym_serve_shop_serves_the_site():
    """``branchgym serve shop --port P`` from the console script: the landing page answers."""
    import shutil
    import socket
    import subprocess
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("branchgym")
    assert exe is not None
    proc = subprocess.Popen([exe, "serve", "shop", "--port", str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
