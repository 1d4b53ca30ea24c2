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


def write_tiny_vectors(sentences, path) -> None:
    """A GloVe-style text table of 4-dim random vectors for the sentences' words (lowercased), so
    tests train with no large embedding table."""
    import numpy as np

    words = sorted({w.lower() for s in sentences for w in s.tokens})
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=4)) + "\n")


def write_tiny_corpus(root, n: int = 120, dev: int = 30):
    """``root/corpus.csv`` (GMB layout, n made-up sentences), ``root/dev.conll`` (its first ``dev``)
    and ``root/emb.txt`` (write_tiny_vectors)."""
    from nerbilstm.data.readers import write_conll, write_gmb_csv

    sents = synthetic_sentences(n, seed=1)
    write_gmb_csv(sents, root / "corpus.csv")
    write_conll(sents[:dev], root / "dev.conll")
    write_tiny_vectors(sents, root / "emb.txt")


# Tag alphabets for property tests of the tag schemes and metrics.
BIO = ["O", "B-a", "I-a", "B-b", "I-b"]
IOBES = BIO + ["E-a", "S-a", "E-b", "S-b"]


def quiet(fn, *args, **kw):
    """``fn(*args, **kw)`` with warnings silenced (seqeval and scikit-learn warn on empty classes)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)

