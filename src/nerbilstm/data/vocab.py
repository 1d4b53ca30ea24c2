"""Vocabularies of words, characters and labels, and the casing classes of words."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from nerbilstm.tags import sort_labels

PAD = "<pad>"
UNK = "<unk>"

# Casing classes: GloVe 6B is lowercased, so the model sees the case of a word here.
CASES = ("other", "lower", "upper", "title", "mixed", "numeric", "has_digit", "punct")


def casing(word: str) -> int:
    """Index into CASES of a word's casing class."""
    if word.isdigit():
        return CASES.index("numeric")
    if any(ch.isdigit() for ch in word):
        return CASES.index("has_digit")
    if word.islower():
        return CASES.index("lower")
    if word.isupper():
        return CASES.index("upper")
    if word[:1].isupper() and (len(word) == 1 or word[1:].islower()):
        return CASES.index("title")
    if any(ch.isalpha() for ch in word):
        return CASES.index("mixed")
    if word and all(not ch.isalnum() for ch in word):
        return CASES.index("punct")
    return CASES.index("other")


def normalize_word(word: str) -> str:
    """The form a word is looked up by in the word vocabulary (lowercase, as GloVe 6B)."""
    return word.lower()


@dataclass
class Vocab:
    """Index maps; index 0 is padding and 1 the unknown item in words and chars."""

    words: list[str] = field(default_factory=lambda: [PAD, UNK])
    chars: list[str] = field(default_factory=lambda: [PAD, UNK])
    labels: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.char_index = {c: i for i, c in enumerate(self.chars)}
        self.label_index = {t: i for i, t in enumerate(self.labels)}
        # token -> (word id, char ids, casing class), filled by data.batching.encode.
        self.token_cache: dict[str, tuple[int, tuple[int, ...], int]] = {}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], tag_lists: Iterable[list[str]], min_count: int = 1) -> "Vocab":
        return cls.build_pairs(zip(token_lists, tag_lists), min_count)

    @classmethod
    def build_pairs(cls, pairs: Iterable[tuple[list[str], list[str]]], min_count: int = 1) -> "Vocab":
        """From (tokens, tags) of each sentence, in one pass (the sentences may be streamed)."""
        words, chars, tags = Counter(), Counter(), Counter()
        for tokens, sent_tags in pairs:
            words.update(normalize_word(t) for t in tokens)
            for t in tokens:
                chars.update(t)
            tags.update(sent_tags)
        word_list = [PAD, UNK] + sorted(w for w, n in words.items() if n >= min_count)
        char_list = [PAD, UNK] + sorted(chars)
        return cls(word_list, char_list, sort_labels(tags))

    def word_id(self, word: str) -> int:
        return self.word_index.get(normalize_word(word), 1)

    def to_dict(self) -> dict:
        return {"words": self.words, "chars": self.chars, "labels": self.labels}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        return cls(list(data["words"]), list(data["chars"]), list(data["labels"]))
