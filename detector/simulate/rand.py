"""Cheap draws from a seeded ``random.Random`` for code that runs per line.

``Random.randint``/``choice`` go through Python-level ``_randbelow`` and cost ~10x a
``random()`` call; the simulator draws millions of them, so hot paths use these instead.
They are deterministic for a given generator state, like the originals.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def fast_randint(rng: random.Random) -> Callable[[int, int], int]:
    """randint(a, b), both ends included."""
    rand = rng.random

    def ri(a: int, b: int) -> int:
        return a + int(rand() * (b - a + 1))

    return ri


def fast_choice(rng: random.Random) -> Callable[[Sequence[T]], T]:
    rand = rng.random

    def pick(seq: Sequence[T]) -> T:
        return seq[int(rand() * len(seq))]

    return pick
