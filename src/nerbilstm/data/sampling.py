"""Repeat-factor sampling of training sentences that hold rare entity types (--repeat-threshold).

The rule is LVIS's (Gupta et al., 2019, "LVIS: a dataset for large vocabulary instance
segmentation", section 4.2), with sentences for images and entity types for categories: a type
found in a fraction ``f`` of the training sentences gets the factor ``max(1, sqrt(t / f))``, and a
sentence is seen ``r`` times per epoch on average, ``r`` the largest factor of the types it holds
(1 without entities). Each epoch draws ``floor(r)`` copies plus one more with probability
``r - floor(r)``, from a generator seeded by the run's seed and the epoch, so a resumed run sees
the same batches. Unlike class weights in the loss, the rare types' sentences come with their
other entities and their ``O`` tokens, so precision is not bought off against recall.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Iterable, Sequence

from nerbilstm.tags import entity_type

__all__ = ["RepeatFactors", "sentence_types"]


def sentence_types(tags: Iterable[str]) -> frozenset[str]:
    """The entity types a sentence's tags hold."""
    return frozenset(t for t in map(entity_type, tags) if t is not None)


class RepeatFactors:
    """Each entity type's repeat factor, from how many training sentences hold it.

    ``type_sets``: the number of training sentences holding each set of types (counted by
    ``scan``); ``threshold``: ``t`` above, 0 turns the sampling off (every factor 1).
    """

    def __init__(self, type_sets: Counter, threshold: float):
        self.threshold = threshold
        self.n_sentences = sum(type_sets.values())
        held: Counter = Counter()
        for types, count in type_sets.items():
            for t in types:
                held[t] += count
        self.fractions = {t: held[t] / self.n_sentences for t in sorted(held)}
        self.factors = {t: max(1.0, math.sqrt(threshold / f)) if threshold > 0 else 1.0
                        for t, f in self.fractions.items()}
        self.expected_sentences = sum(count * self.of_types(types) for types, count in type_sets.items())

    @property
    def active(self) -> bool:
        """Whether any sentence is repeated."""
        return any(r > 1.0 for r in self.factors.values())

    def of_types(self, types: Iterable[str]) -> float:
        """A sentence's repeat factor: the largest of its types' (1 for none)."""
        return max((self.factors.get(t, 1.0) for t in types), default=1.0)

    def of(self, tags: Sequence[str]) -> float:
        return self.of_types(sentence_types(tags))

    def draw(self, rates: Sequence[float], seed: int) -> list[int]:
        """Indices into ``rates`` (a sentence's factor each), index i ``floor(r_i)`` times and once
        more with probability ``r_i - floor(r_i)``; in index order, so batching decides the order."""
        rng = random.Random(seed)
        drawn: list[int] = []
        for i, r in enumerate(rates):
            whole = int(r)
            copies = whole + (1 if r > whole and rng.random() < r - whole else 0)
            drawn.extend([i] * copies)
        return drawn

    def describe(self) -> str:
        """One line for the training log: which types are repeated and what it costs an epoch."""
        if not self.active:
            return (f"--repeat-threshold {self.threshold:g}: every entity type is in at least that fraction of the "
                    f"training sentences; nothing is repeated")
        boosted = ", ".join(f"{t} x{r:.2f} (in {self.fractions[t]:.2%} of sentences)"
                            for t, r in sorted(self.factors.items(), key=lambda kv: -kv[1]) if r > 1.0)
        return (f"--repeat-threshold {self.threshold:g}: sentences repeated per epoch for {boosted}; "
                f"about {self.expected_sentences:,.0f} sentences an epoch instead of {self.n_sentences:,}")
