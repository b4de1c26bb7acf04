"""Generated shopping instructions, split into train / seen / unseen, and the oracle's query.

Where it sits: the site draws a session's goal from (task seed, split) to score a purchase,
and the environment draws the same goal to show the instruction and plan the oracle; both
call ``make_instruction`` on the catalogue of the same seed.

An instruction is WebShop's synthetic goal: a target product, one to three of its attributes,
one value for each of its option groups and a price bound a little above its price ("i need
long lasting lipstick that is vegan, in red color and matte finish, and price lower than 30.00
dollars"). Any product that matches as well scores as well: the target only guarantees that
one exists. ``train`` and ``seen`` ask only for (type, attribute) pairs outside the
catalogue's ``held_out`` set; ``unseen`` always asks for at least one held-out pair, an
attribute the policy has seen with other types of the department but never with this one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from branchgym.envs.webshop.catalogue import Catalogue, Product, build_catalogue
from branchgym.tasks.suite import SPLIT_OFFSETS

HELD_OUT_SPLITS = frozenset({"unseen"})
PRICE_STEPS = tuple(10.0 * i for i in range(1, 100))  # WebShop's PRICE_RANGE


@dataclass(frozen=True)
class Instruction:
    """One task's goal. ``options`` pairs each option group of the target with its value."""

    text: str
    asin: str  # the target: one product that earns the full reward
    product_type: str
    category: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_upper: float
    split: str
    seed: int

    @property
    def query(self) -> str:
        """The instruction's key words, the oracle's search: type, attributes, option values."""
        return " ".join([self.product_type, *self.attributes, *(v for _, v in self.options)])


def split_of_seed(seed: int) -> str:
    """The split whose seed range holds ``seed`` (``branchgym.tasks.suite``'s offsets), for a
    plain ``reset(seed=...)`` with no ``TaskRef`` to name it."""
    return max((off, name) for name, off in SPLIT_OFFSETS.items() if off <= max(seed, 0))[1]


@lru_cache(maxsize=16)
def _candidates(seed: int, split: str) -> tuple[Product, ...]:
    """Products that can be the target of a ``split`` goal."""
    cat = build_catalogue(seed)
    held = split in HELD_OUT_SPLITS
    return tuple(p for p in cat.products if _split_attributes(cat, p, held))


def _split_attributes(cat: Catalogue, p: Product, held: bool) -> list[str]:
    return [a for a in p.attributes if ((p.product_type, a) in cat.held_out) == held]


def _goal_attributes(cat: Catalogue, p: Product, split: str, rng: random.Random) -> list[str]:
    """Held-out splits: one held-out attribute and maybe one seen; others: one or two seen."""
    seen = _split_attributes(cat, p, held=False)
    if split in HELD_OUT_SPLITS:
        chosen = [rng.choice(_split_attributes(cat, p, held=True))]
        chosen += rng.sample(seen, rng.randint(0, min(1, len(seen))))
    else:
        chosen = rng.sample(seen, rng.randint(1, min(2, len(seen))))
    rng.shuffle(chosen)
    return chosen


def price_bound(price: float, rng: random.Random) -> float:
    """WebShop's bound: the larger of two of the four multiples of ten above the price."""
    above = [p for p in PRICE_STEPS if p > price][:4]
    return sorted(rng.sample(above, 2))[1]


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _text(rng: random.Random, ptype: str, attrs: list[str], options: list[tuple[str, str]],
          upper: float) -> str:  # fmt: skip
    """Three phrasings, as people (and WebShop's annotators) write them."""
    colon = " and ".join(f"{name}: {value}" for name, value in options)
    natural = _and([f"{value} {name}" for name, value in options])
    templates = (
        f"i need {_and(attrs)} {ptype} with {colon}, and price lower than {upper:.2f} dollars",
        f"i am looking for {ptype} that is {_and(attrs)}, in {natural}, under {upper:.0f} dollars",
        f"find me {ptype} that is {_and(attrs)} with {colon}, for less than {upper:.2f} dollars",
    )
    return rng.choice(templates)


def make_instruction(cat: Catalogue, seed: int, split: str) -> Instruction:
    """The goal of task ``seed`` in ``split``: the same arguments always give the same goal."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_OFFSETS)}")
    rng = random.Random(seed)
    target = rng.choice(_candidates(cat.seed, split))
    attrs = _goal_attributes(cat, target, split, rng)
    options = [(name, rng.choice(values)) for name, values in target.options]
    upper = price_bound(target.price, rng)
    text = _text(rng, target.product_type, attrs, options, upper)
    return Instruction(text, target.asin, target.product_type, target.category, tuple(attrs),
                       tuple(options), upper, split, seed)  # fmt: skip
