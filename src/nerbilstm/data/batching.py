"""Turning sentences into padded tensors with masks, and bucketing them by length."""

from __future__ import annotations

import itertools
import random
import sys
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from nerbilstm.data.vocab import Vocab, casing

MAX_WORD_CHARS = 30  # longer tokens (URLs, garbage) keep their first characters only


@dataclass
class Encoded:
    """One sentence as ids; lists of length n (chars: n lists)."""

    tokens: list[str]
    words: list[int]
    chars: list[Sequence[int]]
    cases: list[int]
    tags: list[int] | None


@dataclass
class Batch:
    """A padded batch, batch first. words/cases/tags: (B, T) long; chars: (B, T, L) long;
    mask: (B, T) bool, True on real tokens (left-aligned); pretrained: (B, T, E) float or None,
    with pretrained_mask (B, T) bool marking words outside the vocabulary that the pretrained
    table knows (their vector replaces the unknown word's)."""

    words: Tensor
    chars: Tensor
    cases: Tensor
    mask: Tensor
    tags: Tensor | None = None
    pretrained: Tensor | None = None
    pretrained_mask: Tensor | None = None

    def to(self, device) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in moved.items()})

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(1)


CACHE_MAX_TOKEN_CHARS = 64  # longer tokens are encoded each time, never remembered
CACHE_MAX_BYTES = 16 * 2**20  # about this much memory per vocabulary (~50,000 tokens); emptied when full


class TokenCache(dict):
    """token -> (word id, char ids, casing class), with a running estimate of its size in bytes."""

    nbytes = 0


def _entry_bytes(token: str, chars: tuple) -> int:
    # the key string, the char tuple, the entry tuple and the dict slot; ints below 256 are shared
    return sys.getsizeof(token) + sys.getsizeof(chars) + 200


def encode(tokens: Sequence[str], vocab: Vocab, tags: Sequence[str] | None = None) -> Encoded:
    """Map one sentence to ids. Unknown tags must be caught by the caller (see check_labels).

    The ids of each distinct token of at most CACHE_MAX_TOKEN_CHARS characters are computed
    once per vocabulary and remembered, in a cache of at most about CACHE_MAX_BYTES.
    """
    cache = vocab.token_cache
    if not isinstance(cache, TokenCache):
        cache = vocab.token_cache = TokenCache(cache)
        cache.nbytes = sum(_entry_bytes(t, e[1]) for t, e in cache.items())
    char_index = vocab.char_index
    ids = []
    for t in tokens:
        entry = cache.get(t)
        if entry is None:
            entry = (vocab.word_id(t), tuple(char_index.get(c, 1) for c in t[:MAX_WORD_CHARS]), casing(t))
            if len(t) <= CACHE_MAX_TOKEN_CHARS:
                size = _entry_bytes(t, entry[1])
                if cache.nbytes + size > CACHE_MAX_BYTES:
                    cache.clear()
                    cache.nbytes = 0
                cache[t] = entry
                cache.nbytes += size
        ids.append(entry)
    return Encoded(
        tokens=list(tokens),
        words=[e[0] for e in ids],
        chars=[e[1] for e in ids],
        cases=[e[2] for e in ids],
        tags=None if tags is None else [vocab.label_index[t] for t in tags],
    )


def _positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items of the given lengths laid end to end: (item of each element, index within its item)."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    return owner, np.arange(int(lengths.sum())) - starts[owner]


def collate(items: Sequence[Encoded], pretrained=None) -> Batch:
    """Pad a list of encoded sentences into a Batch.

    pretrained: a PretrainedEmbeddings or None; when given, out-of-vocabulary words it knows
    get its vector (a word never seen in training still gets its pretrained meaning).
    """
    B = len(items)
    lengths = np.fromiter((len(e.words) for e in items), np.int64, B)
    n = int(lengths.sum())
    T = max(1, int(lengths.max(initial=0)))
    rows, cols = _positions(lengths)

    def flat(seqs) -> np.ndarray:
        return np.fromiter(itertools.chain.from_iterable(seqs), np.int64, n)

    words = np.zeros((B, T), dtype=np.int64)
    cases = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=bool)
    words[rows, cols] = flat(e.words for e in items)
    cases[rows, cols] = flat(e.cases for e in items)
    mask[rows, cols] = True
    tags = None
    if items[0].tags is not None:
        tags = np.zeros((B, T), dtype=np.int64)
        tags[rows, cols] = flat(e.tags for e in items)
    char_lengths = np.fromiter((len(c) for e in items for c in e.chars), np.int64, n)
    L = max(1, int(char_lengths.max(initial=0)))
    chars = np.zeros((B, T, L), dtype=np.int64)
    token, k = _positions(char_lengths)
    chars[rows[token], cols[token], k] = np.fromiter(
        itertools.chain.from_iterable(c for e in items for c in e.chars), np.int64, int(char_lengths.sum()))
    batch = Batch(torch.from_numpy(words), torch.from_numpy(chars), torch.from_numpy(cases),
                  torch.from_numpy(mask), None if tags is None else torch.from_numpy(tags))
    if pretrained is not None:
        unknown = [(b, t, tok) for b, e in enumerate(items) for t, (tok, w) in enumerate(zip(e.tokens, e.words)) if w == 1]
        if unknown:
            vectors, found = pretrained.vectors_for([tok for _, _, tok in unknown])
            vec = np.zeros((B, T, vectors.shape[1]), dtype=np.float32)
            known = np.zeros((B, T), dtype=bool)
            for (b, t, _), v, ok in zip(unknown, vectors, found):
                if ok:
                    vec[b, t] = v
                    known[b, t] = True
            if known.any():
                batch.pretrained = torch.from_numpy(vec)
                batch.pretrained_mask = torch.from_numpy(known)
    return batch


def length_buckets(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Batches of sentence indices with similar lengths (less padding), in random order if shuffle.

    Sorting by length with random tie-breaks, then shuffling whole batches, keeps every epoch
    different while each batch stays tight. ``max_tokens`` also caps a batch's padded size
    (sentences x longest length), so that long sentences come in smaller batches.
    """
    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random() if shuffle else i))
    if max_tokens is None:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        batches = []
        for i in order:  # sorted by length: the sentence added is the batch's longest
            if not batches or len(batches[-1]) >= batch_size or (len(batches[-1]) + 1) * lengths[i] > max_tokens:
                batches.append([])
            batches[-1].append(i)
    if shuffle:
        rng.shuffle(batches)
    return batches
