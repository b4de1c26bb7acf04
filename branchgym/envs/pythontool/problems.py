"""Seeded problems for ``PythonTool-v0``: arithmetic and word problems that need computation.

``make_problem(seed, split)`` picks one of the generators below with ``random.Random(seed)`` and
fills it in, drawing again until the problem belongs to ``split`` (``problem_split``), so the
seed and split fully determine the problem and no held-out problem is a training one. Each
``Problem`` carries its gold answer, computed here, and a reference solution: a short
stdlib-only Python program that prints that answer. The program is what the environment's
expert runs in the sandbox; where a closed form exists the gold answer uses it and the program
counts by brute force, so the two check each other.
Answers are integers written in full, or amounts rounded to the cent (``"1234.50"``).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One question: its text, gold answer, and a program that prints the answer."""

    kind: str
    text: str
    answer: str
    solution: str


def _product(rng: random.Random) -> Problem:
    a, b, c = (rng.randint(10_000, 999_999) for _ in range(3))
    text = f"What is {a} * {b} * {c}? Answer with the exact integer."
    return Problem("product", text, str(a * b * c), f"print({a} * {b} * {c})")


def _power_mod(rng: random.Random) -> Problem:
    base, exponent = rng.randint(2, 999), rng.randint(10_000, 10**9)
    modulus = rng.choice((1_000_003, 998_244_353, 10**9 + 7, rng.randint(1_000, 99_999)))
    text = f"What is the remainder when {base}^{exponent} is divided by {modulus}?"
    solution = f"print(pow({base}, {exponent}, {modulus}))"
    return Problem("power_mod", text, str(pow(base, exponent, modulus)), solution)


def _power_sum(rng: random.Random) -> Problem:
    n, p = rng.randint(1_000, 99_999), rng.choice((2, 3))
    closed = n * (n + 1) * (2 * n + 1) // 6 if p == 2 else (n * (n + 1) // 2) ** 2
    text = f"What is the sum of k^{p} for k = 1, 2, ..., {n}?"
    solution = f"print(sum(k**{p} for k in range(1, {n} + 1)))"
    return Problem("power_sum", text, str(closed), solution)


def _divisible(rng: random.Random) -> Problem:
    n = rng.randint(10_000, 300_000)
    a, b, c = rng.sample(range(3, 30), 3)
    lab, lac, lbc = math.lcm(a, b), math.lcm(a, c), math.lcm(b, c)
    a_or_b = n // a + n // b - n // lab
    a_or_b_and_c = n // lac + n // lbc - n // math.lcm(a, b, c)
    text = (
        f"How many integers from 1 to {n} (inclusive) are divisible by {a} or by {b}, "
        f"but not by {c}?"
    )
    solution = (
        f"print(sum(1 for k in range(1, {n} + 1) if (k % {a} == 0 or k % {b} == 0) "
        f"and k % {c} != 0))"
    )
    return Problem("divisible", text, str(a_or_b - a_or_b_and_c), solution)


def _primes(rng: random.Random) -> Problem:
    n = rng.randint(10_000, 300_000)
    sieve = bytearray([1]) * n
    sieve[:2] = b"\0\0"
    for i in range(2, math.isqrt(n - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    solution = (
        f"n = {n}\nis_prime = [True] * n\nis_prime[0] = is_prime[1] = False\n"
        "for i in range(2, int(n**0.5) + 1):\n    if is_prime[i]:\n"
        "        for j in range(i * i, n, i):\n            is_prime[j] = False\n"
        "print(sum(is_prime))"
    )
    text = f"How many prime numbers are less than {n}?"
    return Problem("primes", text, str(sum(sieve)), solution)


def _change(rng: random.Random) -> Problem:
    cents = rng.randint(100, 2_000)
    coins = rng.choice(((1, 5, 10, 25), (1, 2, 5, 10, 20, 50), (1, 5, 10, 25, 50, 100)))
    ways = [1] + [0] * cents
    for coin in coins:
        for total in range(coin, cents + 1):
            ways[total] += ways[total - coin]
    listed = ", ".join(map(str, coins))
    text = f"In how many ways can you pay exactly {cents} cents with coins of {listed} cents?"
    solution = (
        f"ways = [1] + [0] * {cents}\nfor coin in ({listed}):\n"
        f"    for total in range(coin, {cents} + 1):\n"
        "        ways[total] += ways[total - coin]\nprint(ways[-1])"
    )
    return Problem("change", text, str(ways[-1]), solution)


def _digit_sum(rng: random.Random) -> Problem:
    base, exponent = rng.choice((2, 3, 7)), rng.randint(200, 3_000)
    text = f"What is the sum of the decimal digits of {base}^{exponent}?"
    solution = f"print(sum(int(d) for d in str({base}**{exponent})))"
    return Problem("digit_sum", text, str(sum(map(int, str(base**exponent)))), solution)


def _fibonacci(rng: random.Random) -> Problem:
    n, modulus = rng.randint(1_000, 200_000), rng.choice((1_000_007, 10**9 + 7, 999_983))
    a, b = 0, 1
    for _ in range(n):
        a, b = b, (a + b) % modulus
    text = f"With F(0) = 0, F(1) = 1 and F(n) = F(n-1) + F(n-2), what is F({n}) mod {modulus}?"
    solution = f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, (a + b) % {modulus}\nprint(a)"
    return Problem("fibonacci", text, str(a), solution)


_PERIODS = {"yearly": 1, "quarterly": 4, "monthly": 12}


def _interest(rng: random.Random) -> Problem:
    principal, rate = rng.randint(500, 50_000), rng.choice((1.5, 2.25, 3.0, 3.75, 4.5, 5.0, 6.25))
    years, (period, n) = rng.randint(2, 30), rng.choice(sorted(_PERIODS.items()))
    expression = f"{principal} * (1 + {rate} / 100 / {n}) ** ({n} * {years})"
    balance = principal * (1 + rate / 100 / n) ** (n * years)  # the same float expression
    text = (
        f"A deposit of ${principal} earns {rate}% annual interest, compounded {period}. "
        f"What is the balance after {years} years, rounded to the nearest cent?"
    )
    return Problem("interest", text, f"{balance:.2f}", f'print(f"{{{expression}:.2f}}")')


def _factory(rng: random.Random) -> Problem:
    machines, per_hour = rng.randint(3, 60), rng.randint(40, 900)
    hours, days, every = rng.randint(6, 24), rng.randint(20, 365), rng.randint(7, 97)
    made = machines * per_hour * hours * days
    text = (
        f"A factory runs {machines} machines, each making {per_hour} parts an hour, "
        f"{hours} hours a day for {days} days. Every {_ordinal(every)} part made is defective. "
        "How many parts are not defective?"
    )
    solution = f"made = {machines} * {per_hour} * {hours} * {days}\nprint(made - made // {every})"
    return Problem("factory", text, str(made - made // every), solution)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


GENERATORS: tuple[Callable[[random.Random], Problem], ...] = (
    _product,
    _power_mod,
    _power_sum,
    _divisible,
    _primes,
    _change,
    _digit_sum,
    _fibonacci,
    _interest,
    _factory,
)


def problem_split(problem: Problem) -> str:
    """The one split whose tasks may ask ``problem`` (a stable hash of its text): held-out
    splits never repeat a training problem, as small generators would by chance."""
    bucket = zlib.crc32(problem.text.encode()) % 10
    return "unseen" if bucket == 0 else "seen" if bucket == 1 else "train"


def make_problem(seed: int, split: str = "train") -> Problem:
    """The problem for ``seed`` in ``split``: the same seed always gives the same problem."""
    rng = random.Random(seed)
    for _ in range(10_000):
        problem = GENERATORS[rng.randrange(len(GENERATORS))](rng)
        if problem_split(problem) == split:
            return problem
    raise ValueError(f"no problem found for split {split!r}")
