"""data/batching.py: encoding, padding with a mask, and length buckets, against plain Python."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerbilstm.data.batching import MAX_WORD_CHARS, collate, encode, length_buckets
from nerbilstm.data.vocab import CASES, Vocab, casing

SENTENCES = [["John", "lives", "in", "Paris", "."], ["Hi"], ["The", "U.S.", "army", "left", "Baghdad", "in", "2003"]]
TAGS = [["B-per", "O", "O", "B-geo", "O"], ["O"], ["O", "B-geo", "O", "O", "B-geo", "O", "B-tim"]]


@pytest.fixture
def vocab() -> Vocab:
    return Vocab.build(SENTENCES, TAGS)


def test_encode_maps_words_chars_cases_and_tags(vocab):
    e = encode(["Paris", "Zanzibar"], vocab, ["B-geo", "O"])
    assert e.words == [vocab.word_index["paris"], 1]  # lowercased lookup; unseen -> <unk>
    assert e.chars[0] == tuple(vocab.char_index[c] for c in "Paris")
    assert e.chars[1][0] == 1  # 'Z' never seen
    assert e.cases == [CASES.index("title"), CASES.index("title")]
    assert e.tags == [vocab.label_index["B-geo"], vocab.label_index["O"]]
    assert encode(["x" * 100], vocab).chars[0].__len__() == MAX_WORD_CHARS


def test_collate_pads_with_a_mask(vocab):
    items = [encode(s, vocab, t) for s, t in zip(SENTENCES, TAGS)]
    batch = collate(items)
    B, T = len(items), max(len(s) for s in SENTENCES)
    assert batch.words.shape == (B, T) and batch.mask.shape == (B, T) and batch.chars.shape[:2] == (B, T)
    assert batch.lengths.tolist() == [len(s) for s in SENTENCES]
    for b, e in enumerate(items):
        n = len(e.words)
        assert batch.mask[b, :n].all() and not batch.mask[b, n:].any()
        assert batch.words[b, :n].tolist() == e.words and batch.tags[b, :n].tolist() == e.tags
        assert batch.cases[b, :n].tolist() == e.cases
        for t, chars in enumerate(e.chars):
            assert batch.chars[b, t, : len(chars)].tolist() == list(chars)
            assert not batch.chars[b, t, len(chars):].any()
        assert not batch.words[b, n:].any()


def test_collate_without_tags_and_with_an_empty_sentence(vocab):
    batch = collate([encode([], vocab), encode(["Hi"], vocab)])
    assert batch.tags is None and batch.mask.tolist() == [[False], [True]]


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 30), max_size=60), batch_size=st.integers(1, 9), shuffle=st.booleans(),
       seed=st.integers(0, 10))
def test_length_buckets_cover_every_index_once(lengths, batch_size, shuffle, seed):
    batches = length_buckets(lengths, batch_size, shuffle, seed)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    if not shuffle:  # sorted by length, ties in input order
        assert flat == sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    assert batches == length_buckets(lengths, batch_size, shuffle, seed)  # same seed, same batches


def test_length_buckets_group_similar_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(1000)]
    batches = length_buckets(lengths, 32, shuffle=True, seed=1)
    padding = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert padding < 0.05 * sum(lengths)


@pytest.mark.parametrize("word, case", [("paris", "lower"), ("PARIS", "upper"), ("Paris", "title"),
                                        ("McDonald", "mixed"), ("2003", "numeric"), ("B52", "has_digit"),
                                        ("...", "punct")])
def test_casing_classes(word, case):
    assert CASES[casing(word)] == case


def test_batch_to_moves_every_tensor(vocab):
    batch = collate([encode(SENTENCES[0], vocab, TAGS[0])]).to("cpu")
    assert isinstance(batch.words, torch.Tensor) and batch.tags is not None


def test_token_cache_is_bounded_by_bytes_and_skips_long_tokens(vocab, monkeypatch):
    import sys

    import nerbilstm.data.batching as batching

    long_tokens = [f"{i:05d}" + "x" * 100_000 for i in range(20)]
    for tok in long_tokens:
        assert encode([tok], vocab).words == [1]
    assert len(vocab.token_cache) == 0  # long tokens are encoded each time, never remembered
    limit = 50_000
    monkeypatch.setattr(batching, "CACHE_MAX_BYTES", limit)
    words = [f"w{i}" for i in range(5_000)]
    for i in range(0, len(words), 50):
        encoded = encode(words[i:i + 50], vocab)
        assert encoded.words == [1] * 50 and encoded.cases == [casing(w) for w in words[i:i + 50]]
        cache = vocab.token_cache
        size = sum(sys.getsizeof(t) + sys.getsizeof(e) + sys.getsizeof(e[1]) for t, e in cache.items())
        assert 0 < size <= limit, size
    again = encode(["Paris", words[-1], long_tokens[0]], vocab)  # cached or not, the same ids
    assert again.words == [vocab.word_index["paris"], 1, 1]
    assert again.chars[0] == tuple(vocab.char_index[c] for c in "Paris")
