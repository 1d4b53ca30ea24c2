"""Where a training epoch's batches come from: all sentences in memory, or streamed from a file.

Both yield, for a given epoch, the same deterministic sequence of global batches (lists of
encoded sentences), so resuming at batch k of an epoch replays exactly what an uninterrupted
run would have seen.
"""

from __future__ import annotations

from collections import Counter
from itertools import count, islice
from typing import Iterable, Iterator

from nerbilstm.data.batching import Encoded, encode, length_buckets
from nerbilstm.data.vocab import Vocab


def scan(sentences: Iterable, min_count: int = 1) -> tuple[Vocab, Counter, int]:
    """One pass over the training sentences -> (vocabulary, tag counts, number of sentences)."""
    tags: Counter = Counter()
    n = 0

    def tokens():
        nonlocal n
        for s in sentences:
            n += 1
            tags.update(s.tags)
            yield s.tokens, s.tags

    pairs = tokens()
    vocab = Vocab.build_pairs(pairs, min_count)
    return vocab, tags, n


class InMemoryBatches:
    """Every training sentence encoded once; each epoch re-buckets them by length."""

    def __init__(self, sentences: Iterable, vocab: Vocab, batch_size: int, seed: int):
        self.encoded = [encode(s.tokens, vocab, s.tags) for s in sentences]
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.encoded)

    def epoch(self, epoch: int, min_batch: int = 1) -> Iterator[list[Encoded]]:
        lengths = [len(e.words) for e in self.encoded]
        for index in length_buckets(lengths, self.batch_size, shuffle=True, seed=self.seed * 1000 + epoch):
            if len(index) >= min_batch:
                yield [self.encoded[i] for i in index]

    def count_batches(self, epoch: int, min_batch: int = 1) -> int | None:
        return sum(1 for _ in self.epoch(epoch, min_batch))


class StreamedBatches:
    """Sentences re-read from their file every epoch, ``chunk`` at a time: only one chunk is
    encoded in memory; batches are length-bucketed and shuffled within the chunk."""

    def __init__(self, sentences: Iterable, vocab: Vocab, batch_size: int, seed: int, chunk: int, count: int):
        self.sentences, self.vocab = sentences, vocab
        self.batch_size, self.seed, self.chunk, self.count = batch_size, seed, chunk, count

    def __len__(self) -> int:
        return self.count

    def epoch(self, epoch: int, min_batch: int = 1) -> Iterator[list[Encoded]]:
        stream = iter(self.sentences)
        for part in count():
            encoded = [encode(s.tokens, self.vocab, s.tags) for s in islice(stream, self.chunk)]
            if not encoded:
                return
            lengths = [len(e.words) for e in encoded]
            seed = (self.seed * 1000 + epoch) * 1_000_003 + part
            for index in length_buckets(lengths, self.batch_size, shuffle=True, seed=seed):
                if len(index) >= min_batch:
                    yield [encoded[i] for i in index]

    def count_batches(self, epoch: int, min_batch: int = 1) -> int | None:
        return None  # unknown without reading the file again
