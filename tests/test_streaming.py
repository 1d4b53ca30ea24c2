"""Streaming: a corpus is trained on without holding every sentence in memory."""

import random
import tracemalloc

import pytest

from nerbilstm.cli import main
from nerbilstm.data.dataset import StreamedTrain, stream_dataset
from nerbilstm.data.readers import read_corpus
from nerbilstm.data.sources import StreamedBatches, scan

from synthetic import synthetic_sentences


@pytest.fixture(scope="module")
def big_conll(tmp_path_factory):
    """A generated CoNLL file of 60,000 sentences (~700,000 tokens)."""
    path = tmp_path_factory.mktemp("stream") / "big.conll"
    rng = random.Random(0)
    base = synthetic_sentences(500, seed=9)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(60_000):
            s = rng.choice(base)
            f.write("".join(f"{tok}\t{tag}\n" for tok, tag in zip(s.tokens, s.tags)) + "\n")
    return path


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_streamed_epoch_memory_is_bounded(big_conll):
    data = scan(StreamedTrain(big_conll, canonical=False))
    vocab, n = data.vocab, data.n_sentences
    assert n == 60_000 and data.tag_counts["O"] > 0
    batches = StreamedBatches(StreamedTrain(big_conll, canonical=False), vocab, 32, seed=1, chunk=1000, count=n)
    seen = []
    streamed = peak_mb(lambda: seen.append(sum(len(b) for b in batches.epoch(1))))
    assert seen == [60_000]
    whole = peak_mb(lambda: read_corpus(big_conll))
    # One chunk of 1,000 encoded sentences at a time versus the whole corpus in memory.
    assert streamed < whole / 5, (streamed, whole)


def test_streamed_batches_are_deterministic_per_epoch(tmp_path):
    path = tmp_path / "c.conll"
    with open(path, "w", encoding="utf-8") as f:
        for s in synthetic_sentences(300, seed=1):
            f.write("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags)) + "\n")
    data = scan(StreamedTrain(path, canonical=False))
    vocab, n = data.vocab, data.n_sentences
    source = StreamedBatches(StreamedTrain(path, canonical=False), vocab, 16, seed=3, chunk=64, count=n)
    first = [[e.tokens for e in b] for b in source.epoch(2)]
    again = [[e.tokens for e in b] for b in source.epoch(2)]
    other = [[e.tokens for e in b] for b in source.epoch(3)]
    assert first == again and first != other
    assert sorted(map(tuple, (t for b in first for t in b))) == sorted(
        tuple(s.tokens) for s in read_corpus(path).sentences)


def test_canonical_split_when_streaming(tmp_path):
    path = tmp_path / "c.conll"
    sentences = synthetic_sentences(55, seed=2)
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            f.write("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags)) + "\n")
    data = stream_dataset(str(path))
    assert [s.tokens for s in data.test] == [s.tokens for s in sentences[0::10]]
    assert [s.tokens for s in data.dev] == [s.tokens for s in sentences[1::10]]
    assert len(list(data.train)) == 55 - 6 - 6


def test_train_with_stream_chunk(tmp_path):
    path = tmp_path / "c.conll"
    with open(path, "w", encoding="utf-8") as f:
        for s in synthetic_sentences(400, seed=3):
            f.write("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags)) + "\n")
    out = tmp_path / "m"
    assert main(["train", "--data", str(path), "--out", str(out), "--stream-chunk", "100", "--epochs", "2",
                 "--hidden-size", "16", "--layers", "1", "--lr", "0.01", "--batch-size", "16", "--no-progress",
                 "--no-plots", "--threads", "1"]) == 0
    assert (out / "model.safetensors").is_file()
