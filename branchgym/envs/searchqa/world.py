"""The fictional world behind SearchQA: entities, facts, passages and multi-hop questions.

Every name is made up from syllables, so no pretrained model can know an answer: it has to be
retrieved. People are born in cities and work for companies; companies are based in cities
and were founded by people; cities lie in countries. Each entity has one passage stating its
facts, and a question follows a chain of 1 to 3 facts from a named entity to the answer.

The splits ask disjoint questions (``question_split``): ``unseen`` asks about subjects no
other split asks about (about one in six people and companies), and ``seen`` asks questions
that training never asks (about one in six of the other template and subject pairs) about
subjects training asks other questions about.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from functools import lru_cache

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "eo"]
_CODAS = ["", "n", "r", "l", "s", "th", "x"]


@dataclass(frozen=True)
class World:
    """Facts as ``relation -> {subject: object}``, and one passage per entity."""

    facts: dict[str, dict[str, str]]
    passages: tuple[str, ...]
    people: tuple[str, ...]
    companies: tuple[str, ...]


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    chain: tuple[str, ...]  # the entities to look up, in order: the oracle searches each
    hops: int


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    ).capitalize()


def _names(rng: random.Random, n: int, parts: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = " ".join(_word(rng, 2) for _ in range(parts))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


@lru_cache(maxsize=4)
def build_world(seed: int = 0, people: int = 60, companies: int = 20, cities: int = 15) -> World:
    """The world of ``seed``: the same seed always gives the same names, facts and passages."""
    rng = random.Random(seed)
    taken: set[str] = set()
    country = _names(rng, 5, 1, taken)
    city = _names(rng, cities, 1, taken)
    company = [f"{n} Works" for n in _names(rng, companies, 1, taken)]
    person = _names(rng, people, 2, taken)
    facts = {
        "country": {c: rng.choice(country) for c in city},
        "based": {c: rng.choice(city) for c in company},
        "founder": {c: rng.choice(person) for c in company},
        "born": {p: rng.choice(city) for p in person},
        "employer": {p: rng.choice(company) for p in person},
    }
    passages = (
        [
            f"{p} was born in {facts['born'][p]} and works for {facts['employer'][p]}."
            for p in person
        ]
        + [
            f"{c} is based in {facts['based'][c]}. It was founded by {facts['founder'][c]}."
            for c in company
        ]
        + [f"{c} is a city in {facts['country'][c]}." for c in city]
    )
    return World(facts, tuple(passages), tuple(person), tuple(company))


# (template, relations followed from the subject, subject kind)
_TEMPLATES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Where was {} born?", ("born",), "person"),
    ("Who does {} work for?", ("employer",), "person"),
    ("Who founded {}?", ("founder",), "company"),
    ("In which country was {} born?", ("born", "country"), "person"),
    ("In which city is the employer of {} based?", ("employer", "based"), "person"),
    ("In which country is {} based?", ("based", "country"), "company"),
    ("In which country is the employer of {} based?", ("employer", "based", "country"), "person"),
    ("In which country was the founder of {} born?", ("founder", "born", "country"), "company"),
)


def question_split(template: str, subject: str) -> str:
    """The one split that asks ``template`` about ``subject`` (a stable hash, not Python's)."""
    if zlib.crc32(subject.encode()) % 6 == 0:
        return "unseen"
    return "seen" if zlib.crc32(f"{template}|{subject}".encode()) % 6 == 0 else "train"


def make_question(world: World, seed: int, max_hops: int = 3, split: str = "train") -> Question:
    """The question of task ``seed`` in ``split``: a template of at most ``max_hops`` facts and
    a subject, drawn again until the pair belongs to ``split``."""
    rng = random.Random(seed)
    templates = [t for t in _TEMPLATES if len(t[1]) <= max_hops]
    for _ in range(10_000):
        template, relations, kind = rng.choice(templates)
        subject = rng.choice(world.people if kind == "person" else world.companies)
        if question_split(template, subject) == split:
            break
    else:
        raise ValueError(f"no question of at most {max_hops} hops belongs to split {split!r}")
    chain, value = [subject], subject
    for rel in relations:
        value = world.facts[rel][value]
        chain.append(value)
    # the last hop's object is the answer; every entity before it must be looked up
    return Question(template.format(subject), value, tuple(chain[:-1]), len(relations))
