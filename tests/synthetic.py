"""A tiny made-up corpus with learnable entities, for end-to-end tests (no real data needed)."""

import random

from nerbilstm.data.readers import Sentence

PEOPLE = ["John Smith", "Mary Jones", "Ahmed Ali", "Li Wei", "Anna Berg"]
PLACES = ["Paris", "London", "New York", "Baghdad", "Tokyo"]
ORGS = ["the United Nations", "NATO", "the World Bank"]
DAYS = ["Monday", "Friday", "Sunday"]


def _tag_words(phrase: str, kind: str | None) -> tuple[list[str], list[str]]:
    words = phrase.split()
    if kind is None:
        return words, ["O"] * len(words)
    tags = []
    for i, w in enumerate(words):
        if w == "the":
            tags.append("O")
        elif not tags or tags[-1] == "O":
            tags.append("B-" + kind)
        else:
            tags.append("I-" + kind)
    return words, tags


def synthetic_sentences(n: int, seed: int = 0) -> list[Sentence]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        parts = [(rng.choice(PEOPLE), "per"), ("visited", None), (rng.choice(PLACES), "geo"), ("on", None),
                 (rng.choice(DAYS), "tim")]
        if rng.random() < 0.5:
            parts += [("with", None), (rng.choice(ORGS), "org")]
        parts.append((".", None))
        tokens, tags = [], []
        for phrase, kind in parts:
            w, t = _tag_words(phrase, kind)
            tokens += w
            tags += t
        out.append(Sentence(tokens, tags, line=k + 1))
    return out
