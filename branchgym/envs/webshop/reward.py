"""WebShop's purchase reward (``web_agent_site/engine/goal.py: get_reward``), as pure functions.

Where it sits: the site calls ``purchase_reward`` when a session clicks Buy Now and reports
the number on the confirmation page; the environment returns it as the step's reward.

    reward = r_type * (attr_matches + option_matches + price_ok) / (n_attrs + n_options + 1)

- ``r_type`` (``get_type_reward``) starts at 1; it drops to 0.5 when neither the product
  type (WebShop's ``query``) matches, nor two or more category levels, nor more than 20% of
  the goal's type nouns appear in the bought title; to 0.1 when under 10% of them appear; to
  0 when none do. WebShop takes the nouns from spaCy; here they are the words of the goal's
  product-type name, which every generated title contains.
- ``attr_matches`` (``get_attribute_reward``): goal attributes the product lists, or whose
  phrase appears in its title, features or description.
- ``option_matches`` (``get_option_reward``): chosen option values among the goal's values,
  or whose phrase appears in the product's text.
- ``price_ok``: the product's price is at most the goal's bound.

Two changes, both because the catalogue is generated: WebShop's fuzzy matches
(``thefuzz.token_set_ratio > 85``) become exact matches of normalised phrases, since
attributes and options come from one vocabulary; and its substring tests become whole-word
phrase tests, so option "red" is not found in "tired". Option matches are capped at the
number of goal options, so the reward never passes 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from branchgym.envs.webshop.catalogue import Product
from branchgym.envs.webshop.instructions import Instruction


@dataclass(frozen=True)
class RewardParts:
    """Every term of one purchase's reward, for logs and tests."""

    r_type: float
    query_match: bool
    category_match: bool
    title_score: float
    attr_matches: int
    option_matches: int
    price_ok: bool
    total: float


def normalize(phrase: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", phrase.lower()))


def phrase_in(phrase: str, text: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, case and punctuation aside."""
    return f" {normalize(phrase)} " in f" {normalize(text)} "


def type_reward(query_match: bool, category_match: bool, title_score: float) -> float:
    """``get_type_reward``'s ladder: 1, 0.5, 0.1 or 0. The later rules override the earlier."""
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


def title_score(title: str, goal_nouns: Sequence[str]) -> float:
    """Share of the goal's type nouns found in the bought title (0.2 when there are none)."""
    if not goal_nouns:
        return 0.2
    words = set(normalize(title).split())
    return len(set(goal_nouns) & words) / len(set(goal_nouns))


def attribute_matches(goal_attrs: Sequence[str], product: Product) -> int:
    listed = {normalize(a) for a in product.attributes}
    return sum(normalize(g) in listed or phrase_in(g, product.text) for g in goal_attrs)


def option_matches(chosen: Mapping[str, str], goal_values: Sequence[str], product: Product) -> int:
    wanted = {normalize(v) for v in goal_values}
    hits = sum(normalize(v) in wanted or phrase_in(v, product.text) for v in chosen.values())
    return min(hits, len(goal_values))


def total_reward(
    r_type: float, attrs: int, options: int, price_ok: bool, n_attrs: int, n_options: int
) -> float:
    return r_type * (attrs + options + float(price_ok)) / (n_attrs + n_options + 1)


def purchase_reward(product: Product, chosen: Mapping[str, str], goal: Instruction) -> RewardParts:
    """The reward for buying ``product`` with options ``chosen`` under ``goal``."""
    query_match = product.product_type == goal.product_type
    category_match = len(set(product.category) & set(goal.category)) >= 2
    score = title_score(product.title, normalize(goal.product_type).split())
    r_type = type_reward(query_match, category_match, score)
    attrs = attribute_matches(goal.attributes, product)
    opts = option_matches(chosen, [v for _, v in goal.options], product)
    price_ok = product.price <= goal.price_upper
    total = total_reward(r_type, attrs, opts, price_ok, len(goal.attributes), len(goal.options))
    return RewardParts(r_type, query_match, category_match, score, attrs, opts, price_ok, total)
